"""Seed-sweep throughput: S seeds vmapped in one program vs a Python loop over single-seed runs, and the
default run through the one run loop against the same program as one pure call.

  python -m benchmarks.mono_poly                        # the mono->poly MLP, S = 1, 8, 64
  python -m benchmarks.mono_poly --seeds=1,8,64,256 --steps=500

For each S it times the same total work (S seeds x --steps steps) done two ways, each after its own
compile (reported apart): a Python loop calling one jitted single-seed run S times, and one jitted
vmapped run of all S seeds (minibatch order shared or per seed). It prints seed-steps per second, the
ratio measured in the same process, and the achieved GFLOP/s (matmul FLOPs of forward + backward).
With --torch_baseline (default; skipped with a line saying so when torch is not installed) it also times
the earlier study's PyTorch loop over the S seeds (benchmarks/baselines/seed_loop.py: the same MLP,
batch, optimizer and steps) and prints the ratio of the vmapped run to it.

With --run_loop (default) it then trains the default config (both phases, every checkpoint) through
`experiment.train` in a scratch workdir and times the same program as one jitted pure call
(`loop.pure_sweep`), and prints the loop's share of the pure rate (the target is >= 80%).
"""

import tempfile
import time

from absl import flags
import jax

from benchmarks import results
from configs import mono_poly as mono_poly_config
from launch import common
from mpcodec.core import loop as run_loop
from mpcodec.core.errors import ConfigError
from mpcodec.studies.mono_poly import experiment as mono_poly

_SEEDS = flags.DEFINE_list("seeds", ["1", "8", "64"], "Numbers of seeds to compare.")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps per seed in each timed run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats; the best is reported.")
_SHARED = flags.DEFINE_bool("shared_data_order", True, "Seeds share one minibatch order.")
_RUN_LOOP = flags.DEFINE_bool("run_loop", True, "Also time the default run through the run loop.")
_TORCH = flags.DEFINE_bool("torch_baseline", True, "Also time the PyTorch loop over seeds "
                           "(benchmarks/baselines/seed_loop.py; needs torch, the 'bench' extra).")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 1, "torch intra-op threads (0 = torch's default).")


def matmul_flops_per_seed_step(cfg) -> float:
  """Forward matmul FLOPs x 3 (forward, input gradient, weight gradient) for one minibatch."""
  widths = [cfg.data.image_size * cfg.data.image_size * 3, *cfg.model.hidden_widths, 2]
  forward = sum(2 * cfg.batch_size * a * b for a, b in zip(widths[:-1], widths[1:]))
  return 3.0 * forward


def best_time(fn, repeats, cpu_seconds=None):
  """Fastest wall time of `repeats` calls; the process CPU time of that call goes into `cpu_seconds`."""
  best = float("inf")
  for _ in range(repeats):
    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    wall = time.perf_counter() - start
    if wall < best:
      best = wall
      if cpu_seconds is not None:
        cpu_seconds[:] = [time.process_time() - cpu]
  return best


def _seed_counts() -> list[int]:
  try:
    counts = [int(s) for s in _SEEDS.value]
  except ValueError:
    counts = []
  if not counts or min(counts) < 1:
    raise ConfigError(f"--seeds must list numbers of seeds >= 1, e.g. 1,8,64; got {','.join(_SEEDS.value)}")
  return counts


def check():
  counts = _seed_counts()
  if _STEPS.value < 1 or _REPEATS.value < 1:
    raise ConfigError(f"--steps and --repeats must be >= 1, got {_STEPS.value} and {_REPEATS.value}")
  base = mono_poly_config.get_config()
  base.shared_data_order = _SHARED.value
  cfg = mono_poly.parse_config(base)
  for num_seeds in counts:
    mono_poly.parse_config({**base.to_dict(), "num_seeds": num_seeds})
  return {"config": f"configs/mono_poly.py ({cfg.num_seeds} seeds for the run loop)",
          "benchmark": f"seeds {','.join(map(str, counts))} x {_STEPS.value} steps", "data": "generated bars",
          "torch baseline": "on" if results.torch_peer(_TORCH) else "off", "devices": common.devices()}


def main(argv):
  del argv
  counts = _seed_counts()
  base = mono_poly_config.get_config()
  base.shared_data_order = _SHARED.value
  cfg = mono_poly.parse_config(base)
  cfg_dict = base.to_dict()
  train_set, _ = mono_poly.make_datasets(cfg)
  x, y = train_set["x"], train_set["y_phase1"]
  steps = mono_poly.phase_steps(cfg, "phase1")
  num_steps = _STEPS.value
  flops = matmul_flops_per_seed_step(cfg)
  torch_baseline = results.torch_peer(_TORCH)
  print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}, backend {jax.default_backend()}; "
        f"CPU {results.cpu_model()}")
  if _TORCH.value and not torch_baseline:
    print("PyTorch is not installed (pip install -e '.[bench]'): no PyTorch loop over seeds")
  print(f"model {cfg.model.hidden_widths}, batch {cfg.batch_size}, {num_steps} steps per seed, "
        f"shared data order: {cfg.shared_data_order}, {flops / 1e6:.2f} MFLOP per seed-step")

  def single(state, key):
    return steps.run_steps(state, mono_poly.order_key(cfg, "phase1", key), 0, x, y, num_steps)

  single_jit = jax.jit(single)
  init = jax.jit(jax.vmap(lambda k: steps.init(k["init"], x)))
  header = (f"{'S':>5} {'loop seed-steps/s':>18} {'vmap seed-steps/s':>18} {'ratio':>6} "
            f"{'loop GFLOP/s':>13} {'vmap GFLOP/s':>13} {'compile loop s':>15} {'compile vmap s':>15}")
  print(header)
  rows = []
  for num_seeds in counts:
    keys = mono_poly.seed_keys(mono_poly.parse_config({**cfg_dict, "num_seeds": num_seeds}))
    states = init(keys)
    one_state = jax.tree.map(lambda a: a[0], states)
    seed = lambda i: jax.tree.map(lambda k: k[i], keys)

    start = time.perf_counter()
    compiled_single = single_jit.lower(one_state, seed(0)).compile()
    compile_loop = time.perf_counter() - start
    per_seed = [jax.tree.map(lambda a, i=i: a[i], states) for i in range(num_seeds)]

    def loop():
      return [compiled_single(per_seed[i], seed(i)) for i in range(num_seeds)]

    sweep = jax.jit(jax.vmap(single))
    start = time.perf_counter()
    compiled_sweep = sweep.lower(states, keys).compile()
    compile_vmap = time.perf_counter() - start

    loop_cpu, vmap_cpu = [0.0], [0.0]
    loop_time = best_time(loop, _REPEATS.value, loop_cpu)
    vmap_time = best_time(lambda: compiled_sweep(states, keys), _REPEATS.value, vmap_cpu)
    work = num_seeds * num_steps
    loop_rate, vmap_rate = work / loop_time, work / vmap_time
    print(f"{num_seeds:>5} {loop_rate:>18,.0f} {vmap_rate:>18,.0f} {vmap_rate / loop_rate:>6.2f} "
          f"{loop_rate * flops / 1e9:>13.2f} {vmap_rate * flops / 1e9:>13.2f} {compile_loop:>15.2f} "
          f"{compile_vmap:>15.2f}")
    work_name = f"mono->poly, {num_seeds} seed{'s' * (num_seeds != 1)} x {num_steps} steps"
    rows.append(results.Row("mono_poly", work_name, "seed-steps/s", vmap_rate, "JAX loop over seeds",
                            loop_rate, {"mpcodec": vmap_cpu[0], "peer": loop_cpu[0]}))
    if torch_baseline:
      from benchmarks.baselines import seed_loop  # pylint: disable=g-import-not-at-top
      phase = cfg.phase("phase1")
      torch_rate, torch_cpu = seed_loop.seed_steps_per_second(
          jax.device_get(x), jax.device_get(y), cfg.model.hidden_widths, cfg.batch_size, num_seeds, num_steps,
          phase.optimizer.learning_rate, _TORCH_THREADS.value)
      print(f"{'':>5} PyTorch loop over seeds {torch_rate:,.0f} seed-steps/s: vmapped / PyTorch "
            f"{vmap_rate / torch_rate:.2f}x (process CPU {vmap_cpu[0]:.2f} s against {torch_cpu:.2f} s)")
      rows.append(results.Row("mono_poly", work_name, "seed-steps/s", vmap_rate, "PyTorch loop over seeds",
                              torch_rate, {"mpcodec": vmap_cpu[0], "peer": torch_cpu}))
    else:
      rows.append(results.Row("mono_poly", work_name, "seed-steps/s", vmap_rate, "PyTorch loop over seeds",
                              note=results.peer_not_run(_TORCH.value)))
  results.write(rows)

  if _RUN_LOOP.value:
    time_run_loop(cfg)


def time_run_loop(cfg) -> None:
  """The default run (both phases, every checkpoint) through the run loop vs the same program pure."""
  program = mono_poly.make_program(cfg)
  keys = mono_poly.seed_keys(cfg)
  pure = jax.jit(run_loop.pure_sweep(program))
  start = time.perf_counter()
  compiled = pure.lower(keys).compile()
  compile_pure = time.perf_counter() - start
  pure_time = best_time(lambda: compiled(keys), 2)
  seed_steps = cfg.num_seeds * (cfg.phase1.steps + cfg.phase2.steps)
  with tempfile.TemporaryDirectory() as workdir:
    outcome = mono_poly.train(cfg, workdir)
  checkpoints = sum(len(p.boundaries()) and len([s for _, s in p.boundaries() if p.is_checkpoint_step(s)]) + 1
                    for p in program.phases)
  pure_rate = seed_steps / pure_time
  print(f"\ndefault run, {cfg.num_seeds} seeds x {cfg.phase1.steps + cfg.phase2.steps} steps:")
  print(f"  one pure call          {pure_rate:>10,.0f} seed-steps/s  (best of 2: {pure_time:.2f} s; "
        f"compile {compile_pure:.2f} s)")
  print(f"  through the run loop   {outcome.seed_steps_per_second:>10,.0f} seed-steps/s  ({outcome.train_seconds:.2f} s "
        f"with {checkpoints} checkpoints; compile {outcome.compile_seconds:.2f} s)")
  print(f"  run loop / pure call: {outcome.seed_steps_per_second / pure_rate:.0%} (target >= 80%)")


if __name__ == "__main__":
  common.run(main, check)
