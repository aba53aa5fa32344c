"""Trains the mono->poly experiment for every seed at once, then analyses its checkpoints.

  python -m launch.mono_poly --config=configs/mono_poly.py --workdir=runs/mono_poly
  python -m launch.mono_poly --config=configs/mono_poly.py:smoke --workdir=/tmp/smoke
"""

from absl import flags, logging
from ml_collections import config_flags
import tqdm

from launch import common
from mpcodec.core import sharding
from mpcodec.studies.mono_poly import analysis as mono_poly_run
from mpcodec.studies.mono_poly import experiment as mono_poly

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, plots, report).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard checkpoints of a different config in --workdir.")
_ANALYZE = flags.DEFINE_bool("analyze", True, "Run the analysis (launch.analyze_mono_poly) after training.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  sharding.maybe_initialize_distributed()
  cfg = mono_poly.parse_config(_CONFIG.value)
  total = cfg.phase1.steps + cfg.phase2.steps
  with tqdm.tqdm(total=total, desc=f"mono->poly, {cfg.num_seeds} seeds", unit="step") as progress:
    mono_poly.run_experiment(cfg, _WORKDIR.value, overwrite=_OVERWRITE.value, progress=progress)
  if _ANALYZE.value:
    report = mono_poly_run.analyze(_WORKDIR.value)
    print(mono_poly_run.summary_text(report))
  logging.info("outputs in %s", _WORKDIR.value)


if __name__ == "__main__":
  common.run(main)
