"""Analyses a finished dynamics sweep and writes its findings under <workdir>/analysis/.

  python -m launch.dynamics_analysis --workdir=runs/dynamics
  python -m launch.dynamics_analysis --workdir=runs/dynamics --data_dir=../shared/data --rerun
  python -m launch.dynamics_analysis --config=configs/dynamics_analysis.py:smoke --workdir=runs/dynamics_smoke

The workdir is one that launch.dynamics wrote. --data_dir defaults to $MPCODEC_DATA_DIR.
"""

import os

# The analysis' spectra-free work is XLA's; OpenBLAS threads would only fight it for the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from absl import flags  # pylint: disable=wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from launch import common  # pylint: disable=wrong-import-position
from mpcodec.core import configuration  # pylint: disable=wrong-import-position
from mpcodec.core.errors import ConfigError  # pylint: disable=wrong-import-position
from mpcodec.studies.dynamics import analysis  # pylint: disable=wrong-import-position
from mpcodec.studies.dynamics import series as sweep_series  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to configs/dynamics_analysis.py[:arg]; default: its get_config().",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a dynamics sweep (holds dynamics/).")
_DATA_DIR = common.define_data_dir("Real-data folder for --rerun and the mechanisms")
_RERUN = flags.DEFINE_bool("rerun", False, "Re-train the planned runs with checkpoints at the planned steps "
                           "(into <workdir>/analysis/rerun/) and measure the mechanisms there.")
flags.mark_flags_as_required(["workdir"])


def _config():
  raw = _CONFIG.value
  if raw is None:
    from configs import dynamics_analysis  # pylint: disable=g-import-not-at-top
    raw = dynamics_analysis.get_config()
  return configuration.parse(analysis.AnalysisConfig, raw)


def check():
  cfg = _config()
  configuration.check_values(cfg)
  config = common.config_name(_CONFIG) if _CONFIG.value is not None else "configs/dynamics_analysis.py"
  producer = "launch.dynamics"
  # Without --rerun the data are read only to measure mechanisms at checkpoints an earlier re-run saved.
  given = _DATA_DIR.value or os.environ.get(common.DATA_DIR_ENV)
  data = common.data_dir(_DATA_DIR.value) if given or _RERUN.value else "none given (--rerun needs it)"
  workdir = common.check_input_workdir(_WORKDIR.value, ("dynamics",), producer)
  if workdir is None:
    return {"config": config, "data": data, "workdir": common.pending(_WORKDIR.value, producer)}
  sweep = sweep_series.load_sweep(workdir)
  finished = [run.run for run in sweep.runs]
  unknown = [r for r in cfg.rerun_runs if r not in finished]
  if unknown:
    raise ConfigError(f"config.rerun_runs: {unknown} are not finished runs of the sweep; its runs are {finished}")
  if _RERUN.value:
    datasets = [r.partition("@")[2] for r in (cfg.rerun_runs or finished)]
    data = common.check_datasets(common.data_dir(_DATA_DIR.value), datasets)
  return {"config": config, "data": data,
          "workdir": f"{common.check_workdir(workdir)}, {len(finished)} finished runs",
          "devices": common.devices()}


def main(argv):
  del argv
  report = analysis.analyze(_WORKDIR.value, _config(), data_dir=_DATA_DIR.value, rerun=_RERUN.value)
  print("\n".join(analysis.summary_lines(report)))


if __name__ == "__main__":
  common.run(main, check)
