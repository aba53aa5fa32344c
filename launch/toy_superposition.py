"""Trains the toy superposition models and writes metrics, the phase diagram and a report.

  python -m launch.toy_superposition --config=configs/toy_superposition.py --workdir=runs/toy
  python -m launch.toy_superposition --config=configs/toy_superposition.py:smoke --workdir=runs/toy_smoke
"""

from absl import flags
from absl import logging
from ml_collections import config_flags

from launch import common
from mpcodec.studies.toy_superposition import run
from mpcodec.studies.toy_superposition.config import parse_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (checkpoints/, metrics/, plots/, report.md).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard checkpoints and outputs of a different config in --workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def check():
  cfg = parse_config(_CONFIG.value)
  return {"config": f"{common.config_name(_CONFIG)} ({cfg.num_seeds} seeds)", "data": "generated features",
          "workdir": common.check_workdir(_WORKDIR.value), "devices": common.devices()}


def main(argv):
  del argv
  run.main(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value, log=logging.info)


if __name__ == "__main__":
  common.run(main, check)
