"""SmolLM2 in Flax: parity with the PyTorch transformers reference on the real GGUF file (token ids, top-20
logits, next-token log-probabilities, hidden-state norms, greedy continuations), the taps against numpy,
and the bad inputs (mismatched vocabulary, unknown layer, long prompt). A tiny planted Llama GGUF checks
the loader, the query/key row order and the KV-cache generation against an independent numpy decoder
that rotates in llama.cpp's interleaved layout."""

import functools
import json

import gguf
import jax
import numpy as np
import pytest

from mpcodec.core.errors import ActivationError
from mpcodec.models import llama, smollm2
from mpcodec.models.pretrained import PretrainedWeightsError
from tests.models.test_gguf_weights import planted_q8_0, quantize_q4_1, write_gguf
from tests.support import require_data


@functools.lru_cache(maxsize=None)
def _load(model_dir):
  return smollm2.load(model_dir)


@pytest.fixture(scope="module")
def model_dir():
  return str(require_data("smollm2") / "smollm2")


@pytest.fixture(scope="module")
def model(model_dir):
  return _load(model_dir)


@pytest.fixture(scope="module")
def reference(model_dir):
  with open(f"{model_dir}/reference_outputs.json", encoding="utf-8") as f:
    return json.load(f)["prompts"]


TAPS = (("embeddings", "final_norm", "block_0/attention", "block_0/ffn_hidden")
        + tuple(f"block_{i}/residual" for i in range(30)))


@pytest.fixture(scope="module")
def forward(model, reference):
  """All 8 prompts in one left-padded batch: logits and taps."""
  tokens = model.tokenize([case["prompt"] for case in reference])
  logits, acts = model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT, capture=TAPS)
  return tokens, np.asarray(logits), {k: np.asarray(v) for k, v in acts.items()}


def test_parity_with_the_transformers_reference(reference, forward):
  tokens, logits, acts = forward
  assert len(reference) == 8
  length = tokens.input_ids_BxT.shape[1]
  for row, case in enumerate(reference):
    n = len(case["input_ids"])
    assert tokens.input_ids_BxT[row, length - n:].tolist() == case["input_ids"], case["prompt"]
    assert tokens.attention_mask_BxT[row].sum() == n
    last = logits[row, -1]
    assert np.argsort(-last, kind="stable")[:20].tolist() == case["last_logits_top20_ids"], case["prompt"]
    np.testing.assert_allclose(last[case["last_logits_top20_ids"]], case["last_logits_top20_values"], rtol=1e-3)
    logprobs = np.asarray(jax.nn.log_softmax(logits[row, length - n:], axis=-1))
    next_logprobs = [logprobs[t, case["input_ids"][t + 1]] for t in range(n - 1)]
    np.testing.assert_allclose(next_logprobs, case["next_token_logprobs"], atol=1e-3, err_msg=case["prompt"])
    # transformers' hidden states: the embedding, blocks 0..28's outputs, then the final RMSNorm's output.
    states = [acts["embeddings"]] + [acts[f"block_{i}/residual"] for i in range(29)] + [acts["final_norm"]]
    norms = [np.linalg.norm(s[row, -1].astype(np.float64)) for s in states]
    np.testing.assert_allclose(norms, case["hidden_state_norms_last_token"], rtol=1e-4, err_msg=case["prompt"])
  assert tokens.num_truncated == 0


def test_greedy_continuations_match_the_reference(model, reference, forward):
  tokens = forward[0]
  new_ids, logprobs = model.generate(model.params, tokens, max_new_tokens=20)
  for row, case in enumerate(reference):
    assert new_ids[row].tolist() == case["greedy_continuation_ids"], (case["prompt"], model.decode(new_ids[row]))
  assert np.all(logprobs <= 0) and np.all(np.isfinite(logprobs))
  # The first new token is the argmax of the forward pass's last logits.
  assert new_ids[:, 0].tolist() == forward[1][:, -1].argmax(-1).tolist()


def _rms(x, g, eps):
  return g * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def test_block_taps_against_numpy(model, forward):
  _, _, acts = forward
  blk = {k: np.asarray(v[0], np.float64) for k, v in _flat(model.params["blocks"]).items()}
  h = acts["embeddings"].astype(np.float64) + acts["block_0/attention"]
  y = _rms(h, blk["ffn_norm/scale"], model.config.rms_eps)
  gate, up = y @ blk["ffn_gate/kernel"], y @ blk["ffn_up/kernel"]
  hidden = gate / (1 + np.exp(-gate)) * up
  assert acts["block_0/ffn_hidden"].shape[-1] == 1536
  np.testing.assert_allclose(acts["block_0/ffn_hidden"], hidden, rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(acts["block_0/residual"], h + hidden @ blk["ffn_down/kernel"], rtol=1e-3, atol=1e-3)


def _flat(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


def test_add_and_replace_steer_and_splice(model, forward):
  tokens, logits, acts = forward
  ids, mask = tokens.input_ids_BxT, tokens.attention_mask_BxT
  spliced, _ = model.apply(model.params, ids, mask, replace={"block_3/residual": acts["block_3/residual"]})
  np.testing.assert_allclose(np.asarray(spliced)[:, -1], logits[:, -1], rtol=1e-5, atol=1e-4)
  vector = np.random.default_rng(0).standard_normal(576).astype(np.float32) * 50
  steered, steered_acts = model.apply(model.params, ids, mask, capture=("block_3/residual",),
                                      add={"block_3/residual": vector})
  np.testing.assert_allclose(np.asarray(steered_acts["block_3/residual"]), acts["block_3/residual"] + vector,
                             rtol=1e-5, atol=1e-3)
  assert np.max(np.abs(np.asarray(steered)[:, -1] - logits[:, -1])) > 0.5
  only = model.activations(model.params, ids, mask, ["block_0/ffn_hidden"])
  assert list(only) == ["block_0/ffn_hidden"]
  np.testing.assert_array_equal(np.asarray(only["block_0/ffn_hidden"]), acts["block_0/ffn_hidden"])


def test_bad_layer_name_lists_the_valid_ones(model, forward):
  tokens = forward[0]
  with pytest.raises(ActivationError, match=r"unknown capture layer name \['block_30/residual'\]; valid layer "
                                            r"names: \['embeddings', 'block_0/attention'") as e:
    model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT, capture=("block_30/residual",))
  assert "block_29/residual" in str(e.value) and "\n" not in str(e.value)
  with pytest.raises(ActivationError, match="unknown add layer name"):
    model.generate(model.params, tokens, 2, add={"block_0/mlp": np.zeros(576)})


def test_a_prompt_longer_than_the_context_is_truncated_and_counted(model):
  ids, cut = model.token_ids(["one two three four five six seven", "short", "a b c d e f g h"], max_length=4)
  assert cut == 2 and [len(row) for row in ids] == [4, 1, 4]
  assert model.tokenize(["one two three four five six seven"], max_length=4).num_truncated == 1


# A tiny planted Llama: 2 blocks, d_model 32, 2 query heads and 1 key/value head of 16, FFN 64.
TINY = dict(layers=2, d=32, heads=2, kv=1, head_dim=16, ffn=64)


def _bytes_to_unicode():
  """GPT-2's byte -> printable character map (a fact of the byte-level BPE format)."""
  keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
  chars, extra = {}, 0
  for b in range(256):
    if b in keep:
      chars[b] = chr(b)
    else:
      chars[b] = chr(256 + extra)
      extra += 1
  return chars


def _tiny_gguf(path, extra_tokens=0, drop=()):
  rng = np.random.default_rng(5)
  tokens = ["<|endoftext|>"] + [_bytes_to_unicode()[b] for b in range(256)] + ["Ġt", "Ġth", "Ġthe"]
  tokens += [f"<extra_{i}>" for i in range(extra_tokens)]
  merges = ["Ġ t", "Ġt h", "Ġth e"]
  vocab = 260
  embed_raw, embed = planted_q8_0(rng, vocab, TINY["d"])
  tensors = {"token_embd.weight": (embed_raw, gguf.GGMLQuantizationType.Q8_0),
             "output_norm.weight": rng.uniform(0.5, 1.5, TINY["d"]).astype(np.float32)}
  values = {"token_embd.weight": embed, "output_norm.weight": tensors["output_norm.weight"]}
  shapes = {"attn_q": (TINY["heads"] * 16, 32), "attn_k": (16, 32), "attn_v": (16, 32), "attn_output": (32, 32),
            "ffn_gate": (64, 32), "ffn_up": (64, 32), "ffn_down": (32, 64)}
  for i in range(TINY["layers"]):
    for name, (rows, cols) in shapes.items():
      q = rng.integers(0, 16, (rows, cols))
      d = np.full((rows, cols // 32), 0.08, np.float16)
      m = np.full((rows, cols // 32), -0.6, np.float16)
      tensors[f"blk.{i}.{name}.weight"] = (quantize_q4_1(q, d, m), gguf.GGMLQuantizationType.Q4_1)
      values[f"blk.{i}.{name}.weight"] = (np.float32(d[0, 0]) * q + np.float32(m[0, 0])).astype(np.float32)
    for name in ("attn_norm", "ffn_norm"):
      values[f"blk.{i}.{name}.weight"] = tensors[f"blk.{i}.{name}.weight"] = rng.uniform(
          0.5, 1.5, 32).astype(np.float32)
  for name in drop:
    del tensors[name]
  metadata = {"llama.block_count": TINY["layers"], "llama.embedding_length": 32, "llama.feed_forward_length": 64,
              "llama.attention.head_count": TINY["heads"], "llama.attention.head_count_kv": TINY["kv"],
              "llama.rope.dimension_count": 16, "llama.rope.freq_base": 10000.0, "llama.context_length": 64,
              "llama.attention.layer_norm_rms_epsilon": 1e-5, "tokenizer.ggml.model": "gpt2",
              "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
              "tokenizer.ggml.token_type": [3] + [1] * (len(tokens) - 1), "tokenizer.ggml.eos_token_id": 0,
              "tokenizer.ggml.padding_token_id": 0}
  path.mkdir()
  write_gguf(path / "tiny.gguf", tensors, metadata=metadata)
  return str(path), values


def _numpy_logits(w, ids):
  """The decoder in float64 on GGUF-layout weights, rotating adjacent pairs (llama.cpp's layout)."""
  h = w["token_embd.weight"][ids].astype(np.float64)
  n, e = len(ids), TINY["head_dim"]
  theta = np.arange(n)[:, None] * 10000.0 ** (-np.arange(0, e, 2) / e)

  def rope(x):   # (n, heads, e): pairs (2j, 2j+1) turn by theta_j
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    return np.stack([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1).reshape(x.shape)

  for i in range(TINY["layers"]):
    p = lambda name: w[f"blk.{i}.{name}.weight"].astype(np.float64)
    x = _rms(h, p("attn_norm"), 1e-5)
    q = rope((x @ p("attn_q").T).reshape(n, TINY["heads"], e))
    k = rope((x @ p("attn_k").T).reshape(n, TINY["kv"], e))
    v = (x @ p("attn_v").T).reshape(n, TINY["kv"], e)
    heads = []
    for head in range(TINY["heads"]):
      g = head // (TINY["heads"] // TINY["kv"])
      s = q[:, head] @ k[:, g].T / np.sqrt(e) + np.triu(np.full((n, n), -np.inf), 1)
      prob = np.exp(s - s.max(-1, keepdims=True))
      heads.append(prob / prob.sum(-1, keepdims=True) @ v[:, g])
    h = h + np.concatenate(heads, -1) @ p("attn_output").T
    y = _rms(h, p("ffn_norm"), 1e-5)
    gate = y @ p("ffn_gate").T
    h = h + (gate / (1 + np.exp(-gate)) * (y @ p("ffn_up").T)) @ p("ffn_down").T
  return _rms(h, w["output_norm.weight"], 1e-5) @ w["token_embd.weight"].T


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  path, values = _tiny_gguf(tmp_path_factory.mktemp("tiny") / "model")
  return smollm2.load(path), values


def test_tiny_model_matches_a_numpy_decoder_in_the_interleaved_layout(tiny):
  model, values = tiny
  assert model.config == llama.LlamaConfig(vocab_size=260, hidden_size=32, num_layers=2, num_heads=2,
                                           num_kv_heads=1, head_dim=16, intermediate_size=64,
                                           rms_eps=float(np.float32(1e-5)),
                                           rope_base=10000.0, max_positions=64)
  prompts = [[5, 70, 258, 33, 90, 12, 40], [259, 7, 100]]
  tokens = model.pad(prompts)
  logits, _ = model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT)
  for row, ids in enumerate(prompts):
    np.testing.assert_allclose(np.asarray(logits)[row, -len(ids):], _numpy_logits(values, ids), rtol=1e-4,
                               atol=1e-4)
  # Greedy generation with the cache against the numpy decoder re-run over the growing sequence.
  new_ids, _ = model.generate(model.params, tokens, max_new_tokens=5)
  for row, ids in enumerate(prompts):
    seq = list(ids)
    for _ in range(5):
      seq.append(int(np.argmax(_numpy_logits(values, seq)[-1])))
    assert new_ids[row].tolist() == seq[len(ids):]


def test_tiny_model_sampling_and_steering(tiny):
  model, values = tiny
  tokens = model.pad([[5, 70, 258], [259, 7, 100]])
  greedy, _ = model.generate(model.params, tokens, 6)
  assert model.generate(model.params, tokens, 6, temperature=1.0, top_k=1, seed=3)[0].tolist() == greedy.tolist()
  a = model.generate(model.params, tokens, 6, temperature=2.0, seed=1)[0]
  assert a.tolist() == model.generate(model.params, tokens, 6, temperature=2.0, seed=1)[0].tolist()
  draws = {tuple(model.generate(model.params, tokens, 6, temperature=2.0, seed=s)[0][0]) for s in range(4)}
  assert len(draws) > 1
  last_logits = np.asarray(model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT)[0])[:, -1]
  top3 = np.argsort(-last_logits, axis=-1)[:, :3]
  firsts = np.stack([model.generate(model.params, tokens, 6, temperature=50.0, top_k=3, seed=s)[0][:, 0]
                     for s in range(8)], axis=1)
  for row in range(2):
    assert set(firsts[row]) <= set(top3[row]) and len(set(firsts[row])) > 1
  vector = np.random.default_rng(1).standard_normal(32).astype(np.float32) * 3
  steered_logits, _ = model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT,
                                  add={"block_0/residual": vector})
  first, _ = model.generate(model.params, tokens, 1, add={"block_0/residual": vector})
  assert first[:, 0].tolist() == np.asarray(steered_logits)[:, -1].argmax(-1).tolist()
  assert model.tokenizer.encode(" the", add_special_tokens=False).ids == [259]
  assert model.tokenizer.encode("<|endoftext|>12", add_special_tokens=False).ids == [0, 1 + ord("1"), 1 + ord("2")]


def test_a_vocabulary_that_does_not_fit_the_embedding_is_refused(tmp_path):
  path, _ = _tiny_gguf(tmp_path / "model", extra_tokens=3)
  with pytest.raises(smollm2.ModelDirError, match="its vocabulary has 263 tokens but the embedding table has "
                                                  "260 rows") as e:
    smollm2.load(path)
  assert "\n" not in str(e.value)


def test_a_missing_tensor_is_named(tmp_path):
  path, _ = _tiny_gguf(tmp_path / "model", drop=("blk.1.ffn_up.weight",))
  with pytest.raises(PretrainedWeightsError, match=r"missing tensor blk.1.ffn_up.weight for parameter "
                                                   r"block_1/ffn_up/kernel"):
    smollm2.load(path)


def test_model_dir_resolution(tmp_path, monkeypatch):
  monkeypatch.delenv(smollm2.MODEL_DIR_ENV, raising=False)
  monkeypatch.setattr(smollm2, "_package_model_dir", lambda: None)
  with pytest.raises(smollm2.ModelDirError, match="no SmolLM2 model directory"):
    smollm2.resolve_model_dir()
  (tmp_path / "smollm2").mkdir()
  with pytest.raises(smollm2.ModelDirError, match="holds no .gguf file"):
    smollm2.resolve_model_dir(data_dir=str(tmp_path))
  (tmp_path / "smollm2" / "m.gguf").write_bytes(b"")
  assert smollm2.resolve_model_dir(data_dir=str(tmp_path)) == str(tmp_path / "smollm2")
  monkeypatch.setenv(smollm2.MODEL_DIR_ENV, str(tmp_path / "elsewhere"))
  with pytest.raises(smollm2.ModelDirError, match=r"from \$MPCODEC_SMOLLM2_DIR\) does not exist"):
    smollm2.resolve_model_dir(data_dir=str(tmp_path))
  assert smollm2.resolve_model_dir(str(tmp_path / "smollm2")) == str(tmp_path / "smollm2")


def test_the_row_order_matters_keeping_llama_cpp_rows_disagrees(tmp_path, monkeypatch):
  """Without undoing llama.cpp's row permutation the planted decoder no longer matches numpy."""
  path, values = _tiny_gguf(tmp_path / "model")
  monkeypatch.setattr(smollm2, "unpermute_rows", lambda heads: smollm2.pretrained.LINEAR_TO_KERNEL)
  model = smollm2.load(path)
  ids = [5, 70, 258, 33, 90, 12, 40]
  tokens = model.pad([ids])
  logits, _ = model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT)
  assert np.max(np.abs(np.asarray(logits)[0] - _numpy_logits(values, ids))) > 1e-2
