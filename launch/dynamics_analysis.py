"""Analyses a finished dynamics sweep and writes its findings under <workdir>/analysis/.

  python -m launch.dynamics_analysis --workdir=runs/dynamics
  python -m launch.dynamics_analysis --workdir=runs/dynamics --data_dir=../shared/data --rerun
  python -m launch.dynamics_analysis --config=configs/dynamics_analysis.py:smoke --workdir=runs/dynamics_smoke
"""

import os

# The analysis' spectra-free work is XLA's; OpenBLAS threads would only fight it for the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from absl import flags  # pylint: disable=wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from launch import common  # pylint: disable=wrong-import-position
from mpcodec.core import configuration  # pylint: disable=wrong-import-position
from mpcodec.studies.dynamics import analysis  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to configs/dynamics_analysis.py[:arg]; default: its get_config().",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a dynamics sweep (holds dynamics/).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data directory for --rerun and the mechanisms (else "
                                "$MPCODEC_DATA_DIR).")
_RERUN = flags.DEFINE_bool("rerun", False, "Re-train the planned runs with checkpoints at the planned steps "
                           "(into <workdir>/analysis/rerun/) and measure the mechanisms there.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  raw = _CONFIG.value
  if raw is None:
    from configs import dynamics_analysis  # pylint: disable=g-import-not-at-top
    raw = dynamics_analysis.get_config()
  cfg = configuration.parse(analysis.AnalysisConfig, raw)
  report = analysis.analyze(_WORKDIR.value, cfg, data_dir=_DATA_DIR.value, rerun=_RERUN.value)
  print("\n".join(analysis.summary_lines(report)))


if __name__ == "__main__":
  common.run(main)
