"""Seed-sweep throughput: S seeds vmapped in one program vs a Python loop over single-seed runs.

  python -m launch.benchmark_mono_poly                        # the mono->poly MLP, S = 1, 8, 64
  python -m launch.benchmark_mono_poly --seeds=1,8,64,256 --steps=500

For each S it times the same total work (S seeds x --steps steps) done two ways, each after its own
compile (reported apart): a Python loop calling one jitted single-seed run S times, and one jitted
vmapped run of all S seeds (minibatch order shared or per seed). It prints seed-steps per second, the
ratio measured in the same process, and the achieved GFLOP/s (matmul FLOPs of forward + backward).
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp

from configs import mono_poly as mono_poly_config
from mpcodec.studies.mono_poly import experiment as mono_poly

_SEEDS = flags.DEFINE_list("seeds", ["1", "8", "64"], "Numbers of seeds to compare.")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps per seed in each timed run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats; the best is reported.")
_SHARED = flags.DEFINE_bool("shared_data_order", True, "Seeds share one minibatch order.")


def matmul_flops_per_seed_step(cfg) -> float:
  """Forward matmul FLOPs x 3 (forward, input gradient, weight gradient) for one minibatch."""
  widths = [cfg.data.image_size * cfg.data.image_size * 3, *cfg.model.hidden_widths, 2]
  forward = sum(2 * cfg.batch_size * a * b for a, b in zip(widths[:-1], widths[1:]))
  return 3.0 * forward


def best_time(fn, repeats):
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return best


def main(argv):
  del argv
  base = mono_poly_config.get_config()
  base.shared_data_order = _SHARED.value
  cfg = mono_poly.parse_config(base)
  train_set, _ = mono_poly.make_datasets(cfg)
  x, y = train_set["x"], train_set["y_phase1"]
  steps = mono_poly.phase_steps(cfg, "phase1")
  num_steps = _STEPS.value
  flops = matmul_flops_per_seed_step(cfg)
  print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}, backend {jax.default_backend()}")
  print(f"model {cfg.model.hidden_widths}, batch {cfg.batch_size}, {num_steps} steps per seed, "
        f"shared data order: {cfg.shared_data_order}, {flops / 1e6:.2f} MFLOP per seed-step")

  def single(state, key):
    return steps.run_steps(state, mono_poly.order_key(cfg, "phase1", key), 0, x, y, num_steps)

  single_jit = jax.jit(single)
  init = jax.jit(jax.vmap(lambda k: steps.init(jax.random.fold_in(k, 0), x)))
  header = (f"{'S':>5} {'loop seed-steps/s':>18} {'vmap seed-steps/s':>18} {'ratio':>6} "
            f"{'loop GFLOP/s':>13} {'vmap GFLOP/s':>13} {'compile loop s':>15} {'compile vmap s':>15}")
  print(header)
  for num_seeds in [int(s) for s in _SEEDS.value]:
    keys = jax.vmap(mono_poly.seed_key)(jnp.arange(num_seeds))
    states = init(keys)
    one_state = jax.tree.map(lambda a: a[0], states)

    start = time.perf_counter()
    compiled_single = single_jit.lower(one_state, keys[0]).compile()
    compile_loop = time.perf_counter() - start
    per_seed = [jax.tree.map(lambda a, i=i: a[i], states) for i in range(num_seeds)]

    def loop():
      return [compiled_single(per_seed[i], keys[i]) for i in range(num_seeds)]

    in_axes = (0, None if cfg.shared_data_order else 0)
    sweep = jax.jit(jax.vmap(single, in_axes=in_axes))
    sweep_key = keys[0] if cfg.shared_data_order else keys
    start = time.perf_counter()
    compiled_sweep = sweep.lower(states, sweep_key).compile()
    compile_vmap = time.perf_counter() - start

    loop_time = best_time(loop, _REPEATS.value)
    vmap_time = best_time(lambda: compiled_sweep(states, sweep_key), _REPEATS.value)
    work = num_seeds * num_steps
    loop_rate, vmap_rate = work / loop_time, work / vmap_time
    print(f"{num_seeds:>5} {loop_rate:>18,.0f} {vmap_rate:>18,.0f} {vmap_rate / loop_rate:>6.2f} "
          f"{loop_rate * flops / 1e9:>13.2f} {vmap_rate * flops / 1e9:>13.2f} {compile_loop:>15.2f} "
          f"{compile_vmap:>15.2f}")


if __name__ == "__main__":
  app.run(main)
