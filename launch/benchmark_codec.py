"""Benchmark of SAE training throughput at the pilot shape (d=768, 4,096 latents, k=32, batch 1,024).

  python -m launch.benchmark_codec
  python -m launch.benchmark_codec --steps=20 --repeats=3 --seeds=8 --aux_k=0

Times one jitted lax.scan of `--steps` training steps (batches pre-generated on the device, so data
generation is not timed) for: the sparse decoder (k active rows gathered; sparse weight gradients),
the dense-decoder reference, and the sparse decoder with `--seeds` seeds vmapped. Compile time is
measured apart. Each variant runs `--repeats` times, alternating, and the fastest is kept, so load from
other processes touches all alike; process CPU time is printed too. GFLOP/s counts each variant's own
work: sparse 2·B·D·N (encoder) + 10·B·k·D (gathered values, decoder and their gradients); dense
10·B·D·N (encoder and decoder matmuls, forward and backward).
"""

import dataclasses
import os
import time

from absl import app, flags
import jax
import jax.numpy as jnp

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


def _scan_fn(cfg: sae.SAEConfig, num_seeds: int):
  step = lambda state, x: sae.train_step(state, x, cfg, _STEPS.value)
  if num_seeds > 1:
    step = jax.vmap(step, in_axes=(0, None))
  return jax.jit(lambda states, batches: jax.lax.scan(step, states, batches), donate_argnums=0)


def _init(cfg: sae.SAEConfig, sample, num_seeds: int):
  init = lambda key: sae.init_state(key, sample, cfg.k, cfg, _STEPS.value)
  keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
  return jax.jit(jax.vmap(init))(keys) if num_seeds > 1 else jax.jit(init)(keys[0])


def main(argv):
  del argv
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
        f"load average {os.getloadavg()[0]:.2f} (other processes slow every variant alike)")
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
  tokens_per_s = {}
  for name, (cfg, seeds) in variants.items():
    wall, cpu = best[name]
    tokens = seeds * steps * b
    tokens_per_s[name] = tokens / wall
    gflops = seeds * steps * flops[cfg.decoder] / wall / 1e9
    print(f"  {name:32s} {tokens / wall:10,.0f} tokens/s  {gflops:7.1f} GFLOP/s  "
          f"(best of {_REPEATS.value}: {wall:.3f} s wall, {cpu:.3f} s process CPU for {tokens} tokens)")
  names = list(variants)
  print(f"  sparse / dense throughput ratio: {tokens_per_s[names[0]] / tokens_per_s[names[1]]:.2f}x")
  print(f"  {_SEEDS.value} seeds vmapped / 1 seed (tokens/s): "
        f"{tokens_per_s[names[2]] / tokens_per_s[names[0]]:.2f}x")


if __name__ == "__main__":
  app.run(main)
