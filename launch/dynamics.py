"""Trains the dynamics grid (every seed of a configuration at once) and writes series, table and plots.

  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics
  python -m launch.dynamics --config=configs/dynamics.py:smoke --workdir=/tmp/dynamics_smoke
  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --arch=cnn_32_64 \
      --dataset=mnist,kmnist
  # the same grid split over two processes (or machines sharing the workdir): each trains its own runs
  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --shard=1/2
  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --shard=2/2
"""

import os

# LAPACK (the spectra of the measures) runs in scipy's OpenBLAS; its own worker threads fight XLA's for
# the cores and made each decomposition up to 40x slower on a 2-core machine. Set before numpy loads it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from absl import app, flags, logging
from ml_collections import config_flags
import tqdm

from launch import common
from mpcodec.core import configuration, sharding
from mpcodec.data import registry
from mpcodec.studies.dynamics import report as report_dynamics
from mpcodec.studies.dynamics import sweep as dynamics_sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to configs/dynamics.py[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; outputs go to <workdir>/dynamics/.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, f"Data directory (else ${registry.DATA_DIR_ENV}).")
_ARCH = flags.DEFINE_string("arch", "", "Only these architectures (comma-separated).")
_DATASET = flags.DEFINE_string("dataset", "", "Only these datasets (comma-separated).")
_SHARD = flags.DEFINE_string(
    "shard", "1/1", "I/N: train only the I-th of N disjoint parts of the selected runs (1-based), so N "
    "processes or machines sharing the workdir split the grid. Parts are balanced by estimated FLOPs "
    "(compile, data loading and spectra not counted); the first shard writes the plan to the workdir and "
    "the others read it, so all shards must run the same config and selection. The table covers all "
    "selected runs.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Retrain runs finished with a different config.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  sharding.maybe_initialize_distributed()
  sweep = configuration.parse(dynamics_sweep.SweepConfig, _CONFIG.value)
  runs = dynamics_sweep.select_runs(sweep.runs, _ARCH.value, _DATASET.value)
  if not runs:
    raise app.UsageError(f"--arch={_ARCH.value!r} --dataset={_DATASET.value!r} select no run of the "
                         f"config; its runs are {list(sweep.runs)}")
  try:
    shard_index, num_shards = dynamics_sweep.parse_shard(_SHARD.value)
  except ValueError as e:
    raise app.UsageError(f"--shard: {e}") from e
  grid = configuration.parse(dynamics_sweep.SweepConfig,
                             {**configuration.to_dict(sweep), "runs": list(runs)})
  if num_shards > 1:
    runs = dynamics_sweep.sweep_shard(grid, shard_index, num_shards, _WORKDIR.value)
  if not runs:
    raise app.UsageError(f"--shard={_SHARD.value} gets no run: the selection has only {len(grid.runs)}")
  sweep = configuration.parse(dynamics_sweep.SweepConfig,
                              {**configuration.to_dict(sweep), "runs": list(runs)})
  if num_shards > 1:
    logging.info("shard %d/%d: %d of the %d selected runs: %s", shard_index, num_shards, len(runs),
                 len(grid.runs), ", ".join(runs))
  data_dir = registry.resolve_data_dir(_DATA_DIR.value)
  num_steps = sweep.base.num_steps
  runs_bar = tqdm.tqdm(total=len(runs), desc="configurations", unit="run", position=0)
  steps_bar = tqdm.tqdm(total=num_steps, desc="steps", unit="step", position=1, leave=False)

  def on_run_start(index, total, run):
    del index, total
    steps_bar.reset(total=num_steps)
    steps_bar.set_description(run)

  def on_chunk(done, total):
    del total
    steps_bar.n = done
    steps_bar.refresh()

  def on_run_end(run, record, skipped):
    runs_bar.update(1)
    if skipped:
      logging.info("%s: already finished, skipped", run)
    elif record.get("status") == "finished":
      accuracy = record["final_test_accuracy"]
      logging.info("%s: test accuracy %.3f (%.3f..%.3f) over %d seeds; compile %.1fs, run %.1fs", run,
                   sum(accuracy) / len(accuracy), min(accuracy), max(accuracy), len(accuracy),
                   record["compile_seconds"], record["run_seconds"])
    else:
      logging.warning("%s: %s", run, record.get("message", record.get("status")))

  hooks = dynamics_sweep.SweepHooks(on_run_start=on_run_start, on_chunk=on_chunk, on_run_end=on_run_end)
  records = dynamics_sweep.run_sweep(sweep, _WORKDIR.value, data_dir, overwrite=_OVERWRITE.value,
                                     hooks=hooks)
  steps_bar.close()
  runs_bar.close()
  # The table lists every selected run, so a shard shows the others' runs as finished or not run yet;
  # running any shard again once all have finished (everything is skipped) rewrites the whole table.
  table = report_dynamics.write_accuracy_table(_WORKDIR.value, records, grid)
  print(table)


if __name__ == "__main__":
  common.run(main)
