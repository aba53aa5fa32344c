"""Trains the mono->poly experiment for every seed at once, then analyses its checkpoints.

  python -m launch.mono_poly --config=configs/mono_poly.py --workdir=runs/mono_poly
  python -m launch.mono_poly --config=configs/mono_poly.py:smoke --workdir=runs/mono_poly_smoke
  python -m launch.mono_poly --config=configs/mono_poly.py:smoke --workdir=runs/mono_poly_smoke --check_only
"""

from absl import flags
from ml_collections import config_flags

from launch import common
from mpcodec.studies.mono_poly import run
from mpcodec.studies.mono_poly.config import parse_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, plots, report).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard checkpoints of a different config in --workdir.")
_ANALYZE = flags.DEFINE_bool("analyze", True, "Run the analysis (launch.analyze_mono_poly) after training.")
flags.mark_flags_as_required(["config", "workdir"])


def check():
  cfg = parse_config(_CONFIG.value)
  return {"config": f"{common.config_name(_CONFIG)} ({cfg.num_seeds} seeds)", "data": "generated bars",
          "workdir": common.check_workdir(_WORKDIR.value), "devices": common.devices(distributed=True)}


def main(argv):
  del argv
  run.main(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value, analyze=_ANALYZE.value)


if __name__ == "__main__":
  common.run(main, check)
