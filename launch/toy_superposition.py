"""Trains the toy superposition models and writes metrics, the phase diagram and a report.

  python -m launch.toy_superposition --config=configs/toy_superposition.py --workdir=runs/toy
"""

from absl import flags
from absl import logging
from ml_collections import config_flags

from launch import common
from mpcodec.studies.toy_superposition import report as toy_superposition

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (metrics/, plots/, report.md).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  toy_superposition.main(_CONFIG.value, _WORKDIR.value, log=logging.info)


if __name__ == "__main__":
  common.run(main)
