"""Trains a Top-K SAE and then the Squeezer on an activation source; writes checkpoints, metrics, plots.

  python -m launch.codec --config=configs/codec.py --workdir=runs/codec
  python -m launch.codec --config=configs/codec.py:smoke --workdir=/tmp/codec_smoke
  python -m launch.codec --config=configs/codec.py:source=mono_poly --config.source.workdir=runs/mono_poly \
      --workdir=runs/codec_mono_poly
"""

from absl import flags, logging
from ml_collections import config_flags
import tqdm

from launch import common
from mpcodec.studies.codec import pipeline as train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to configs/codec.py[:args].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, plots, report.md).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  cfg = train.parse_codec_config(_CONFIG.value)
  total = (0 if cfg.sae_checkpoint else cfg.sae_loop.steps) + cfg.squeezer_loop.steps
  with tqdm.tqdm(total=total, desc="codec (SAE, then Squeezer)", unit="step") as progress:
    train.run_codec(cfg, _WORKDIR.value, on_chunk=progress.update)
  logging.info("outputs in %s", _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
