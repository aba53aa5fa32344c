"""Trains a Top-K SAE and then the Squeezer on an activation source; writes checkpoints, metrics, plots.

  python -m launch.codec --config=configs/codec.py --workdir=runs/codec
  python -m launch.codec --config=configs/codec.py:smoke --workdir=runs/codec_smoke
  python -m launch.codec --config=configs/codec.py:source=mono_poly --config.source.workdir=runs/mono_poly \
      --workdir=runs/codec_mono_poly

The same command again resumes an interrupted run and skips finished stages.
"""

from absl import flags
from ml_collections import config_flags

from launch import common
from mpcodec.studies.codec import run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to configs/codec.py[:args].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, plots, report.md).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard checkpoints of a different config in --workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  run.main(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)


if __name__ == "__main__":
  common.run(main)
