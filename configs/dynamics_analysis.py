"""Analysis of a finished dynamics sweep: convergence order, jumps and their types, critical periods,
checkpoints around jumps, mechanisms, and the replication table of the earlier study.

  python -m launch.dynamics_analysis --workdir=runs/dynamics
  # also re-train the planned runs with checkpoints around their jumps, and measure mechanisms there
  python -m launch.dynamics_analysis --workdir=runs/dynamics --data_dir=../shared/data --rerun
  # seconds-long settings for a smoke sweep (fewer surrogates, trials and resamples)
  python -m launch.dynamics_analysis --config=configs/dynamics_analysis.py:smoke --workdir=runs/dynamics_smoke
Override any knob, e.g. --config.primary_measure=effective_rank --config.rerun_runs='("mlp_128_64@mnist",)'.
"""

from mpcodec.core import configuration
from mpcodec.studies.dynamics.analysis import AnalysisConfig

PRESETS = {
    # Seconds-long: fewer bootstrap resamples, validity trials, surrogates (matched to each series and
    # per penalty), penalties on the curve and null shifts; one jump per seed in the checkpoint plan. The
    # detector keeps its defaults (its penalty calibration is what the validity bars were measured with).
    # A smoke analysis gives no verdict: every hypothesis and claim reads "cannot be tested".
    "smoke": {
        "smoke": True, "bootstrap_resamples": 1000, "validity_trials": 20, "validity_null_trials": 100,
        "surrogates_per_series": 2, "penalty_curve_targets": (0.5, 1.0, 2.0), "penalty_curve_surrogates": 2,
        "critical_surrogates": 99, "coordination_shifts": 200, "jumps_per_seed": 1,
    },
}


# Every default is AnalysisConfig's (mpcodec/studies/dynamics/analysis.py); this file changes none.
get_config = configuration.config_file(AnalysisConfig, presets=PRESETS)
