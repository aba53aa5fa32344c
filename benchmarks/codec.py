"""Benchmark of SAE training throughput at the pilot shape (d=768, 4,096 latents, k=32, batch 1,024).

  python -m benchmarks.codec
  python -m benchmarks.codec --steps=20 --repeats=3 --seeds=8 --aux_k=0
  python -m benchmarks.codec --analysis_tokens=32768    # the part-2 analyses at this shape instead

With `--analysis_tokens=T`, times the codec's analyses (`studies.codec.analysis.compute`: OR gates and
their nulls, validation, co-activation, tax, themes, for one SAE run and one Squeezer run of `--neurons`
neurons, K = `--squeezer_k`) on T held-out ground-truth tokens at the shape above, compile included,
and prints wall and process CPU seconds and the number of roommate pairs read.

Times one jitted lax.scan of `--steps` training steps (batches pre-generated on the device, so data
generation is not timed) for: the sparse decoder (k active rows gathered; sparse weight gradients),
the dense-decoder reference, and the sparse decoder with `--seeds` seeds vmapped. Compile time is
measured apart. Each variant runs `--repeats` times, alternating, and the fastest is kept, so load from
other processes touches all alike; process CPU time is printed too. GFLOP/s counts each variant's own
work: sparse 2·B·D·N (encoder) + 10·B·k·D (gathered values, decoder and their gradients); dense
10·B·D·N (encoder and decoder matmuls, forward and backward).

With --torch_baseline (default; skipped with a line saying so when torch is not installed) the same
batches train a straightforward PyTorch Top-K SAE (benchmarks/baselines/topk_sae.py: dense scatter of
the k values, `torch.topk`, Adam) and the ratio of the sparse decoder's tokens/s to it is printed.
"""

import dataclasses
import os
import time

from absl import flags
import jax
import jax.numpy as jnp

from benchmarks import results
from launch import common
from mpcodec.core.errors import ConfigError
from mpcodec.sae import autoencoder as sae
from mpcodec.core.optim import OptimConfig

_DIM = flags.DEFINE_integer("dim", 768, "Input width D.")
_LATENTS = flags.DEFINE_integer("latents", 4096, "SAE latents N.")
_K = flags.DEFINE_integer("k", 32, "Active latents per token.")
_BATCH = flags.DEFINE_integer("batch", 1024, "Tokens per step.")
_STEPS = flags.DEFINE_integer("steps", 10, "Steps per timed scan.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions per variant (fastest kept).")
_SEEDS = flags.DEFINE_integer("seeds", 8, "Seeds vmapped in the multi-seed variant.")
_AUX_K = flags.DEFINE_integer("aux_k", 0, "AuxK latents (0 = AuxK off, as in the dense baseline).")
_ANALYSIS_TOKENS = flags.DEFINE_integer("analysis_tokens", 0, "If > 0: time the analyses on this many "
                                        "held-out tokens instead of SAE training.")
_NEURONS = flags.DEFINE_integer("neurons", 768, "Squeezer neurons M (with --analysis_tokens).")
_SQUEEZER_K = flags.DEFINE_integer("squeezer_k", 64, "Squeezer K (with --analysis_tokens).")
_TORCH = flags.DEFINE_bool("torch_baseline", True, "Also time a straightforward PyTorch Top-K SAE "
                           "(benchmarks/baselines/topk_sae.py; needs torch, the 'bench' extra).")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch intra-op threads (0 = torch's default).")


def _time_analyses() -> None:
  """The analyses of one SAE run and one Squeezer run at the benchmark's shape (states at initialisation)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from mpcodec.sae import squeezer  # pylint: disable=import-outside-toplevel
  from mpcodec.studies.codec import analysis, sources  # pylint: disable=import-outside-toplevel
  from mpcodec.studies.codec.pipeline import folded_sae_states  # pylint: disable=import-outside-toplevel
  d, n, k = _DIM.value, _LATENTS.value, _K.value
  source = sources.GroundTruthSource(sources.GroundTruthConfig(num_atoms=n, dim=d, k_true=k))
  sample = jnp.asarray(next(source.batches(1024, 0)))
  sae_cfg = sae.SAEConfig(num_latents=n, k=k)
  state = sae.init_state(jax.random.PRNGKey(0), sample, k, sae_cfg, 10)
  folded = folded_sae_states(jax.tree.map(lambda a: a[None], state))
  squeezer_cfg = squeezer.SqueezerConfig(k=_SQUEEZER_K.value).as_sae_config(_NEURONS.value)
  squeezed = squeezer.init_state(jax.random.PRNGKey(1), jax.tree.map(lambda a: a[0], folded), sample, sae_cfg,
                                 squeezer_cfg, 10)
  stage = analysis.SqueezerStage("squeezer", _NEURONS.value, squeezer_cfg,
                                 jax.tree.map(lambda a: a[None], squeezed), np.zeros(1, int),
                                 [{"k": k, "seed_index": 0, "squeezer_k": _SQUEEZER_K.value}], {})
  cfg = analysis.AnalysisConfig(num_tokens=_ANALYSIS_TOKENS.value)
  wall, cpu = time.perf_counter(), time.process_time()
  out = analysis.compute(cfg, source=source, sae_states=folded, sae_cfg=sae_cfg,
                         sae_labels=[{"k": k, "seed_index": 0}], stages=[stage], sae_metrics={},
                         primary_squeezer_k=_SQUEEZER_K.value)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  pairs = out["squeezer_records"][0]["or_gates"]["num_roommate_pairs"]
  print(f"analyses of 1 SAE run ({n} latents, k={k}, d={d}) and 1 Squeezer run ({_NEURONS.value} neurons, "
        f"K={_SQUEEZER_K.value}) on {_ANALYSIS_TOKENS.value} tokens: wall {wall:.1f} s, process CPU {cpu:.1f} s "
        f"(compile included; {os.cpu_count()} cores); {pairs} roommate pairs")


def _scan_fn(cfg: sae.SAEConfig, num_seeds: int):
  step = lambda state, x: sae.train_step(state, x, cfg, _STEPS.value)
  if num_seeds > 1:
    step = jax.vmap(step, in_axes=(0, None))
  return jax.jit(lambda states, batches: jax.lax.scan(step, states, batches), donate_argnums=0)


def _init(cfg: sae.SAEConfig, sample, num_seeds: int):
  init = lambda key: sae.init_state(key, sample, cfg.k, cfg, _STEPS.value)
  keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
  return jax.jit(jax.vmap(init))(keys) if num_seeds > 1 else jax.jit(init)(keys[0])


def check():
  sizes = {"dim": _DIM, "latents": _LATENTS, "k": _K, "batch": _BATCH, "steps": _STEPS, "repeats": _REPEATS,
           "seeds": _SEEDS, "neurons": _NEURONS, "squeezer_k": _SQUEEZER_K}
  for name, holder in sizes.items():
    if holder.value < 1:
      raise ConfigError(f"--{name} must be >= 1, got {holder.value}")
  if not _K.value <= _LATENTS.value:
    raise ConfigError(f"--k={_K.value} must be <= --latents={_LATENTS.value}")
  what = (f"analyses on {_ANALYSIS_TOKENS.value} tokens" if _ANALYSIS_TOKENS.value > 0
          else f"SAE training, {_STEPS.value} steps x {_REPEATS.value} repeats")
  return {"benchmark": f"{what} at D={_DIM.value} N={_LATENTS.value} k={_K.value}", "data": "generated",
          "torch baseline": "on" if results.torch_peer(_TORCH) else "off", "devices": common.devices()}


def main(argv):
  del argv
  if _ANALYSIS_TOKENS.value > 0:
    _time_analyses()
    return
  d, n, k, b, steps = _DIM.value, _LATENTS.value, _K.value, _BATCH.value, _STEPS.value
  base = sae.SAEConfig(num_latents=n, k=k, aux_k=_AUX_K.value, b_dec_init="mean",
                       optim=OptimConfig(learning_rate=1e-4, warmup_steps=0, schedule="cosine"))
  batches = jax.random.normal(jax.random.PRNGKey(1), (steps, b, d), jnp.float32)
  variants = {
      "sparse decoder, 1 seed": (base, 1),
      "dense decoder, 1 seed": (dataclasses.replace(base, decoder="dense"), 1),
      f"sparse decoder, {_SEEDS.value} seeds vmapped": (base, _SEEDS.value),
  }
  flops = {"sparse": 2 * b * d * n + 10 * b * k * d, "dense": 10 * b * d * n}
  print(f"SAE training benchmark: D={d} N={n} k={k} batch={b}, {steps} steps per scan, "
        f"aux_k={_AUX_K.value}, {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"load average {os.getloadavg()[0]:.2f} (other processes slow every variant alike); "
        f"CPU {results.cpu_model()}")
  compiled, states, best = {}, {}, {}
  for name, (cfg, seeds) in variants.items():
    states[name] = _init(cfg, batches[0], seeds)
    fn = _scan_fn(cfg, seeds)
    start = time.perf_counter()
    compiled[name] = fn.lower(states[name], batches).compile()
    print(f"  compile {name}: {time.perf_counter() - start:.1f} s")
    best[name] = (float("inf"), float("inf"))
  for _ in range(_REPEATS.value):
    for name in variants:
      wall0, cpu0 = time.perf_counter(), time.process_time()
      states[name], metrics = compiled[name](states[name], batches)
      jax.block_until_ready(metrics)
      wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
      best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
  tokens_per_s, cpu_s = {}, {}
  for name, (cfg, seeds) in variants.items():
    wall, cpu = best[name]
    tokens = seeds * steps * b
    tokens_per_s[name], cpu_s[name] = tokens / wall, cpu
    gflops = seeds * steps * flops[cfg.decoder] / wall / 1e9
    print(f"  {name:32s} {tokens / wall:10,.0f} tokens/s  {gflops:7.1f} GFLOP/s  "
          f"(best of {_REPEATS.value}: {wall:.3f} s wall, {cpu:.3f} s process CPU for {tokens} tokens)")
  names = list(variants)
  print(f"  sparse / dense throughput ratio: {tokens_per_s[names[0]] / tokens_per_s[names[1]]:.2f}x")
  print(f"  {_SEEDS.value} seeds vmapped / 1 seed (tokens/s): "
        f"{tokens_per_s[names[2]] / tokens_per_s[names[0]]:.2f}x")
  work = f"Top-K SAE training, d {d}, {n} latents, k {k}, batch {b}"
  sparse = tokens_per_s[names[0]]
  rows = [results.Row("codec", work, "tokens/s", sparse, "mpcodec dense decoder", tokens_per_s[names[1]],
                      {"mpcodec": cpu_s[names[0]], "peer": cpu_s[names[1]]})]
  if results.torch_peer(_TORCH):
    from benchmarks.baselines import topk_sae  # pylint: disable=g-import-not-at-top
    torch_rate, torch_cpu = topk_sae.tokens_per_second(jax.device_get(batches), n, k, _REPEATS.value,
                                                       _TORCH_THREADS.value)
    print(f"  PyTorch Top-K SAE {torch_rate:10,.0f} tokens/s (best of {_REPEATS.value}: {torch_cpu:.3f} s process "
          f"CPU); sparse decoder / PyTorch: {sparse / torch_rate:.2f}x")
    rows.append(results.Row("codec", work, "tokens/s", sparse, "PyTorch Top-K SAE", torch_rate,
                            {"mpcodec": cpu_s[names[0]], "peer": torch_cpu}))
  else:
    if _TORCH.value:
      print("  PyTorch is not installed (pip install -e '.[bench]'): no PyTorch Top-K SAE")
    rows.append(results.Row("codec", work, "tokens/s", sparse, "PyTorch Top-K SAE",
                            note=results.peer_not_run(_TORCH.value)))
  results.write(rows)


if __name__ == "__main__":
  common.run(main, check)
