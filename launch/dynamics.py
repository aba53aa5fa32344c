"""Trains the dynamics grid (every seed of a configuration at once) and writes series, table and plots.

  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --data_dir=../shared/data
  python -m launch.dynamics --config=configs/dynamics.py:smoke --workdir=runs/dynamics_smoke \
      --data_dir=../shared/data
  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --arch=cnn_32_64 \
      --dataset=mnist,kmnist --data_dir=../shared/data
  # the same grid split over two processes (or machines sharing the workdir): each trains its own runs
  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --shard=1/2 --data_dir=../shared/data
  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --shard=2/2 --data_dir=../shared/data
  # in a SLURM array job (sbatch --array=1-4) the shard comes from SLURM_ARRAY_TASK_ID / _COUNT

--data_dir defaults to $MPCODEC_DATA_DIR.
"""

import os

# LAPACK (the spectra of the measures) runs in scipy's OpenBLAS; its own worker threads fight XLA's for
# the cores and made each decomposition up to 40x slower on a 2-core machine. Set before numpy loads it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from absl import flags  # pylint: disable=wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from launch import common  # pylint: disable=wrong-import-position
from mpcodec.core.errors import ConfigError  # pylint: disable=wrong-import-position
from mpcodec.studies.dynamics import run  # pylint: disable=wrong-import-position
from mpcodec.studies.dynamics.train import shards  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to configs/dynamics.py[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; outputs go to <workdir>/dynamics/.")
_DATA_DIR = common.define_data_dir()
_ARCH = flags.DEFINE_string("arch", "", "Only these architectures (comma-separated).")
_DATASET = flags.DEFINE_string("dataset", "", "Only these datasets (comma-separated).")
_SHARD = flags.DEFINE_string(
    "shard", None, "I/N: train only the I-th of N disjoint parts of the selected runs (1-based), so N "
    "processes or machines sharing the workdir split the grid. Parts are balanced by estimated FLOPs; the "
    "first shard writes the plan to the workdir and the others read it, so all shards must run the same "
    "config and selection. Default: from a SLURM array task's id and count, else 1/1.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Retrain runs finished with a different config.")
flags.mark_flags_as_required(["config", "workdir"])


def check():
  # The selection as the run makes it; a shard plan not on disk yet is not written (the first shard of the
  # run writes it, from estimates that lower every model), but a shard it would leave empty is refused.
  grid, _, _ = run.select(_CONFIG.value, _WORKDIR.value, _ARCH.value, _DATASET.value, "1/1")
  shard = run.shard_from_environment(_SHARD.value)
  try:
    index, count = shards.parse_shard(shard)
  except ValueError as e:
    raise ConfigError(f"--shard: {e}") from e
  if count > 1:
    if os.path.exists(shards.shard_plan_path(_WORKDIR.value, grid.runs, count)):
      runs = shards.sweep_shard(grid, index, count, _WORKDIR.value)   # reads the plan on disk
    else:
      runs = grid.runs[:1] if index <= len(grid.runs) else ()
    if not runs:
      raise ConfigError(f"--shard={shard} gets no run: the selection has only {len(grid.runs)}")
  data_dir = common.data_dir(_DATA_DIR.value)
  datasets = [r.partition("@")[2] for r in grid.runs]
  return {"config": f"{common.config_name(_CONFIG)} ({len(grid.runs)} runs, shard {index}/{count})",
          "data": common.check_datasets(data_dir, datasets), "workdir": common.check_workdir(_WORKDIR.value),
          "devices": common.devices(distributed=True)}


def main(argv):
  del argv
  run.main(_CONFIG.value, _WORKDIR.value, _DATA_DIR.value, _ARCH.value, _DATASET.value, _SHARD.value,
           _OVERWRITE.value)


if __name__ == "__main__":
  common.run(main, check)
