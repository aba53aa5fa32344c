"""Where mono->poly's time goes as the seed axis grows: XLA's own cost model of the compiled vmapped run
(FLOPs and bytes accessed per seed-step) beside the measured rate, and each seed's working set against
the CPU's caches.

  python -m benchmarks.mono_poly_profile                      # S = 1, 8, 16, 32, 64
  python -m benchmarks.mono_poly_profile --seeds=8,64 --steps=200

For each S: seed-steps per second of the jitted vmapped run (best of --repeats), the FLOPs and bytes
accessed per seed-step from `compiled.cost_analysis()` (which counts the scan's body, one step, once), the achieved GFLOP/s and GB/s, and the bytes one
seed carries from step to step (parameters and Adam moments) and touches per step (plus a minibatch and
its activations). When S seeds' working set outgrows the last-level cache, every step streams the
parameters from memory and the rate per seed falls to the memory bandwidth's.
"""

import os
import time

from absl import flags
import jax
import numpy as np

from benchmarks import results
from configs import mono_poly as mono_poly_config
from launch import common
from mpcodec.core.errors import ConfigError
from mpcodec.studies.mono_poly import experiment as mono_poly

_SEEDS = flags.DEFINE_list("seeds", ["1", "8", "16", "32", "64"], "Numbers of seeds to profile.")
_STEPS = flags.DEFINE_integer("steps", 200, "Training steps per seed in each timed run.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed repeats; the best is reported.")


def _cache_sizes() -> dict[str, int]:
  """Bytes of each data/unified cache level the kernel reports (index name -> bytes)."""
  sizes, root = {}, "/sys/devices/system/cpu/cpu0/cache"
  for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    try:
      with open(os.path.join(root, entry, "type")) as f:
        kind = f.read().strip()
      with open(os.path.join(root, entry, "level")) as f:
        level = f.read().strip()
      with open(os.path.join(root, entry, "size")) as f:
        text = f.read().strip()
    except OSError:
      continue
    if kind != "Instruction":
      scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
      sizes[f"L{level}"] = int(text.rstrip("KM")) * scale
  return sizes


def _cost(compiled) -> dict[str, float]:
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return {"flops": float(analysis.get("flops", np.nan)), "bytes": float(analysis.get("bytes accessed", np.nan))}


def _seed_counts() -> list[int]:
  try:
    counts = [int(s) for s in _SEEDS.value]
  except ValueError:
    counts = []
  if not counts or min(counts) < 1 or _STEPS.value < 1 or _REPEATS.value < 1:
    raise ConfigError(f"--seeds must list numbers of seeds >= 1 and --steps, --repeats be >= 1; got "
                      f"{','.join(_SEEDS.value)}, {_STEPS.value}, {_REPEATS.value}")
  return counts


def check():
  counts = _seed_counts()
  mono_poly.parse_config(mono_poly_config.get_config())
  return {"config": "configs/mono_poly.py", "profile": f"seeds {','.join(map(str, counts))} x {_STEPS.value} steps",
          "devices": common.devices()}


def main(argv):
  del argv
  counts = _seed_counts()
  cfg = mono_poly.parse_config(mono_poly_config.get_config())
  train_set, _ = mono_poly.make_datasets(cfg)
  x, y = train_set["x"], train_set["y_phase1"]
  steps = mono_poly.phase_steps(cfg, "phase1")
  num_steps = _STEPS.value

  def single(state, key):
    return steps.run_steps(state, mono_poly.order_key(cfg, "phase1", key), 0, x, y, num_steps)

  init = jax.jit(jax.vmap(lambda k: steps.init(k["init"], x)))
  caches = _cache_sizes()
  print(f"CPU {results.cpu_model()}, {os.cpu_count()} cores; caches: "
        + ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in caches.items()))
  print(f"model {cfg.model.hidden_widths}, batch {cfg.batch_size}, {num_steps} steps per seed")
  print(f"{'S':>4} {'seed-steps/s':>13} {'MFLOP/seed-step':>16} {'MB/seed-step':>13} {'GFLOP/s':>8} "
        f"{'GB/s':>6} {'state MiB (S seeds)':>20} {'CPU s / wall s':>15}")
  for num_seeds in counts:
    keys = mono_poly.seed_keys(mono_poly.parse_config({**mono_poly_config.get_config().to_dict(),
                                                       "num_seeds": num_seeds}))
    states = init(keys)
    state_bytes = sum(a.nbytes for a in jax.tree.leaves(states))
    compiled = jax.jit(jax.vmap(single)).lower(states, keys).compile()
    cost = _cost(compiled)
    best, cpu_ratio = float("inf"), 0.0
    for _ in range(_REPEATS.value):
      start, cpu = time.perf_counter(), time.process_time()
      jax.block_until_ready(compiled(states, keys))
      wall = time.perf_counter() - start
      if wall < best:
        best, cpu_ratio = wall, (time.process_time() - cpu) / wall
    work = num_seeds * num_steps
    rate = work / best
    # XLA's cost model counts a loop's body once: the scan's body is one step of every seed.
    flops, moved = cost["flops"] / num_seeds, cost["bytes"] / num_seeds
    print(f"{num_seeds:>4} {rate:>13,.0f} {flops / 1e6:>16.2f} {moved / 1e6:>13.2f} {rate * flops / 1e9:>8.2f} "
          f"{rate * moved / 1e9:>6.2f} {state_bytes / 2**20:>20.2f} {cpu_ratio:>15.2f}")


if __name__ == "__main__":
  common.run(main, check)
