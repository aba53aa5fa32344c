"""Checkpoint policy: the default mono->poly run through the run loop at the default checkpoint plan and at
"every 500 steps or 30 s", each as a share of the same program's speed as one pure call.

  python -m benchmarks.checkpoint_policy
  python -m benchmarks.checkpoint_policy --every=500 --interval_s=30 --repeats=2

The default plan checkpoints phase 1 every 100 steps, phase 2 and the control arm every 200. The other
policy checkpoints every --every steps and at any chunk end --interval_s seconds after the last save
(`loop.CheckpointPolicy`; such a checkpoint is a resume point, removed when its phase ends). Chunks end
at the same steps under both (multiples of chunk_steps), so both compute the same bits. Each run trains
the whole default config in a scratch folder; its rate counts training time only (compile apart), and the
pure call's rate is the best of --repeats + 1 calls after its compile. The CPU model is printed beside
the shares: these machines differ, and the share depends on how long a save takes against a chunk.
"""

import tempfile
import time

from absl import flags
import jax

from benchmarks import results as bench_results
from configs import mono_poly as mono_poly_config
from launch import common
from mpcodec.core import loop
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import ConfigError
from mpcodec.studies.mono_poly import experiment as mono_poly

_EVERY = flags.DEFINE_integer("every", 500, "Steps between planned checkpoints under the timed policy.")
_INTERVAL = flags.DEFINE_float("interval_s", 30.0, "Seconds after the last save when a chunk end saves too.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Runs through the loop per policy (the best is reported).")


def _configs():
  base = mono_poly_config.get_config()
  if _EVERY.value < 1 or _REPEATS.value < 1:
    raise ConfigError(f"--every and --repeats must be >= 1, got {_EVERY.value} and {_REPEATS.value}")
  loop.CheckpointPolicy(_INTERVAL.value)   # ConfigError for a bad --interval_s
  timed = base.to_dict()
  timed["phase1"]["checkpoint_every"] = timed["phase2"]["checkpoint_every"] = _EVERY.value
  return mono_poly.parse_config(base), mono_poly.parse_config(timed)


def check():
  default, _ = _configs()
  return {"config": f"configs/mono_poly.py ({default.num_seeds} seeds)", "data": "generated bars",
          "policies": f"default plan vs every {_EVERY.value} steps or {_INTERVAL.value:g} s",
          "devices": common.devices()}


class _CountedSaves:
  """Counts the checkpoints the loop writes (CheckpointStore.save wrapped while a run trains)."""

  def __init__(self):
    self.count = 0

  def __enter__(self):
    self.original = CheckpointStore.save

    def counted(store, *args, **kwargs):
      self.count += 1
      return self.original(store, *args, **kwargs)

    CheckpointStore.save = counted
    return self

  def __exit__(self, *exc):
    CheckpointStore.save = self.original


def through_loop(cfg, policy) -> tuple[float, int]:
  """(seed-steps per second of training, checkpoints written) of one run of `cfg` through the loop."""
  program = mono_poly.make_program(cfg)
  with tempfile.TemporaryDirectory() as root, _CountedSaves() as saves:
    outcome = loop.run(program, mono_poly.seed_keys(cfg), root, seed_labels=cfg.seeds,
                       config=mono_poly.training_config(cfg), checkpoint_policy=policy)
  return outcome.seed_steps_per_second, saves.count


def main(argv):
  del argv
  default, timed = _configs()
  program = mono_poly.make_program(default)
  keys = mono_poly.seed_keys(default)
  seed_steps = default.num_seeds * sum(p.num_steps for p in program.phases)
  print(f"CPU: {bench_results.cpu_model()}; devices: {jax.devices()[0].device_kind} x {jax.device_count()}, "
        f"backend {jax.default_backend()}")
  print(f"default mono->poly run: {default.num_seeds} seeds x {seed_steps // default.num_seeds} steps "
        f"({', '.join(p.name for p in program.phases)}), chunks of {program.phases[0].chunk_every} steps")

  start = time.perf_counter()
  pure = jax.jit(loop.pure_sweep(program)).lower(keys).compile()
  compile_pure = time.perf_counter() - start
  best = float("inf")
  for _ in range(_REPEATS.value + 1):
    start = time.perf_counter()
    jax.block_until_ready(pure(keys))
    best = min(best, time.perf_counter() - start)
  pure_rate = seed_steps / best
  print(f"  one pure call                  {pure_rate:>9,.0f} seed-steps/s (best {best:.2f} s; compile "
        f"{compile_pure:.2f} s)")

  rows = {"default plan": (default, loop.CheckpointPolicy()),
          f"every {_EVERY.value} steps or {_INTERVAL.value:g} s": (timed, loop.CheckpointPolicy(_INTERVAL.value))}
  results = {name: (0.0, 0) for name in rows}
  for _ in range(_REPEATS.value):   # alternated, so that a slow spell of the machine hits both
    for name, (cfg, policy) in rows.items():
      rate, saves = through_loop(cfg, policy)
      if rate > results[name][0]:
        results[name] = (rate, saves)
  for name, (rate, saves) in results.items():
    print(f"  loop, {name:<24} {rate:>9,.0f} seed-steps/s, {saves:>3} checkpoints written: "
          f"{rate / pure_rate:.0%} of the pure call")


if __name__ == "__main__":
  common.run(main, check)
