"""From a sweep's dimensionality series to the study's findings: `analyze(workdir, ...)`.

Reads every finished run under `<workdir>/dynamics/` (bad input stops before any work, see
`sweep_series`), then computes, all from the saved series:
1. each layer's stabilisation step and each run's convergence order (`stabilisation_analysis`);
2. jumps in every series, with a null-calibrated detector and its validity table, counted against
   surrogates matched to each series, over a range of penalties, and timed with a correction for the
   detector's recall and false positives by position (`jump_analysis`);
3. jump types by clustering, with their stability across seed halves (`jump_types`);
4. critical periods against surrogate, circular-shift, 1/L-floor and base-rate nulls (`critical_analysis`);
5. a checkpoint plan around representative jumps and matched controls (`checkpoint_plan`), and with
   `rerun` the re-run that saves those checkpoints, checked bit for bit against the saved series;
6. mechanistic measures at the planned checkpoints, jumps against controls (`mechanism_effects`);
7. the study's hypotheses (jumps beyond false positives, coordination beyond floor and chance, falling
   loss beyond its base rate; one family, Holm) and the replication table of the earlier study's claims
   (`replication`), both through `mpcodec.core.stats`: no verdict below `stats.MIN_SEEDS` seeds or for a
   smoke run (`smoke`), which the report states in a banner.
Everything is computed before anything is written; the outputs then go to `<workdir>/analysis/`
(`analysis_report.write_outputs`), each file atomically.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import jax

import numpy as np

from mpcodec.core import configuration, progress as progress_lib, stats
from mpcodec.core.errors import ConfigError
from mpcodec.metrics import changepoint_validity, changepoints
from mpcodec.studies.dynamics.report import analysis as analysis_report
from mpcodec.studies.dynamics.analyze import checkpoint_plan
from mpcodec.studies.dynamics.analyze import critical as critical_analysis
from mpcodec.studies.dynamics.analyze import jumps as jump_analysis
from mpcodec.studies.dynamics.analyze import jump_types
from mpcodec.studies.dynamics.analyze import mechanisms as mechanism_effects
from mpcodec.studies.dynamics.analyze import replication
from mpcodec.studies.dynamics.analyze import stabilisation as stabilisation_analysis
from mpcodec.studies.dynamics.grid import MEASURE_NAMES
from mpcodec.studies.dynamics.series import SweepSeries, load_sweep
from mpcodec.studies.dynamics.train import rerun as rerun_stage


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
  """Knobs of the analysis of a dynamics sweep (configs/dynamics_analysis.py)."""

  primary_measure: str = "participation_ratio"   # the measure of the headline figures and the dashboard
  measures: tuple[str, ...] = ()                 # measures analysed; empty = every one the sweep saved
  seed: int = 0                                  # surrogates, nulls, clustering
  smoke: bool = False                            # a smoke run: figures only, every verdict "cannot be tested"
  bootstrap_resamples: int = 10000
  # Stabilisation (mpcodec.metrics.convergence.stabilisation_band).
  tail_fraction: float = 0.2
  family_alpha: float = 0.05
  seed_multiplier: float = 1.0
  # Jumps (mpcodec.metrics.changepoints) and the validity harness run with the same detector.
  detector: changepoints.DetectorConfig = changepoints.DetectorConfig()
  min_jump_factor: float = 1.0                   # x the typical seed-to-seed SD of the layer's series
  validity_trials: int = 200                     # planted series per size, layout and noise
  validity_null_trials: int = 1000               # series per null (pure noise, drift, decay, AR(1) 0.8)
  validity_measurements: int = 0                 # series length of the harness; 0 = the sweep's most common
  surrogates_per_series: int = 10                # matched jump-free surrogates per measured series
  penalty_curve_targets: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)   # false positives per 1,000
  penalty_curve_surrogates: int = 4              # matched surrogates per primary-measure series, per target
  # Jump types.
  min_types: int = 2
  max_types: int = 8
  min_jumps_to_cluster: int = 30
  # Critical periods (mpcodec.metrics.critical_periods).
  loss_series: Literal["train_loss", "test_loss"] = "train_loss"
  critical_surrogates: int = 199
  critical_alpha: float = 0.05
  coordination_shifts: int = 1000
  # Checkpoint plan.
  jumps_per_seed: int = 3
  window_margin: int = 1                         # measurements before and after a jump's window
  rerun_runs: tuple[str, ...] = ()               # with --rerun: only these arch@dataset runs; empty = all
  plots: bool = True

  def checks(self):
    yield "primary_measure", self.primary_measure in MEASURE_NAMES, (
        f"unknown measure {self.primary_measure!r}; valid: {list(MEASURE_NAMES)}")
    for i, name in enumerate(self.measures):
      yield f"measures[{i}]", name in MEASURE_NAMES, f"unknown measure {name!r}; valid: {list(MEASURE_NAMES)}"
    yield ("bootstrap_resamples", self.bootstrap_resamples >= 100,
           f"must be >= 100, got {self.bootstrap_resamples}")
    yield "min_jump_factor", self.min_jump_factor >= 0, f"must be >= 0, got {self.min_jump_factor}"
    yield "validity_trials", self.validity_trials >= 5, f"must be >= 5, got {self.validity_trials}"
    yield ("validity_null_trials", self.validity_null_trials >= 5,
           f"must be >= 5, got {self.validity_null_trials}")
    yield ("validity_measurements", self.validity_measurements == 0 or self.validity_measurements >= 20,
           f"must be 0 (the sweep's length) or >= 20, got {self.validity_measurements}")
    yield ("surrogates_per_series", self.surrogates_per_series >= 1,
           f"must be >= 1, got {self.surrogates_per_series}")
    yield ("penalty_curve_targets", all(t > 0 for t in self.penalty_curve_targets),
           f"every target must be > 0, got {self.penalty_curve_targets}")
    yield ("penalty_curve_surrogates", self.penalty_curve_surrogates >= 1,
           f"must be >= 1, got {self.penalty_curve_surrogates}")
    yield "min_types", self.min_types >= 2, f"must be >= 2, got {self.min_types}"
    yield "max_types", self.max_types >= self.min_types, f"must be >= min_types, got {self.max_types}"
    yield ("critical_surrogates", self.critical_surrogates >= 19,
           f"must be >= 19, got {self.critical_surrogates}")
    yield "critical_alpha", 0 < self.critical_alpha < 1, f"must lie in (0, 1), got {self.critical_alpha}"
    yield ("coordination_shifts", self.coordination_shifts >= 1,
           f"must be >= 1, got {self.coordination_shifts}")
    yield "jumps_per_seed", self.jumps_per_seed >= 1, f"must be >= 1, got {self.jumps_per_seed}"
    yield "window_margin", self.window_margin >= 0, f"must be >= 0, got {self.window_margin}"


# The harness needs room for early, middle and late steps at least min_segment apart.
MIN_VALIDITY_MEASUREMENTS = 20


def validity_length(sweep: SweepSeries, cfg: AnalysisConfig) -> int:
  """Series length of the validity harness: the config's, else the sweep's most common length (400 when
  that is too short for the harness)."""
  if cfg.validity_measurements:
    return cfg.validity_measurements
  lengths = [r.num_measurements for r in sweep.runs]
  common = max(set(lengths), key=lambda n: (lengths.count(n), n))
  return common if common >= MIN_VALIDITY_MEASUREMENTS else 400


def is_output_projection(layer: str) -> bool:
  """Whether a measured layer is an attention output projection (the zoo's `block_i/attention/out`)."""
  return layer.endswith("/out") or "proj" in layer


def _measures(sweep: SweepSeries, cfg: AnalysisConfig) -> tuple[str, ...]:
  wanted = cfg.measures or sweep.measure_names
  missing = [m for m in wanted if m not in sweep.measure_names]
  if missing or cfg.primary_measure not in sweep.measure_names:
    raise ConfigError(f"config.measures: {missing or [cfg.primary_measure]} not saved by every run of the "
                      f"sweep; saved: {list(sweep.measure_names)}")
  return tuple(wanted)


class _Stages:
  """Progress over the analysis' stages, and the seconds each took."""

  def __init__(self, bar):
    self.bar, self.seconds, self._name, self._start = bar, {}, None, 0.0

  def __call__(self, name: str) -> None:
    self.done()
    self._name, self._start = name, time.perf_counter()
    self.bar.set_description(f"dynamics analysis: {name}")

  def done(self) -> None:
    if self._name is not None:
      self.seconds[self._name] = time.perf_counter() - self._start
      self.bar.update(1)
      self._name = None


STAGES = ("validity", "convergence", "jumps", "jump nulls", "types", "critical periods", "plan", "re-run",
          "mechanisms", "replication", "writing")


def no_verdict_reason(sweep: SweepSeries, cfg: AnalysisConfig) -> str | None:
  """Why the analysis gives no verdict at all (a smoke run, too few seeds in every run, series too short
  for the detector's validity table, as a smoke sweep's are), or None."""
  if cfg.smoke:
    return "smoke run (the analysis' :smoke preset)"
  most = max((r.num_seeds for r in sweep.runs), default=0)
  if most < stats.MIN_SEEDS:
    return f"at most {most} usable seed(s) per run, at least {stats.MIN_SEEDS} needed"
  longest = max((r.num_measurements for r in sweep.runs), default=0)
  if longest < MIN_VALIDITY_MEASUREMENTS:
    return (f"smoke sweep: series of at most {longest} measurements, fewer than the "
            f"{MIN_VALIDITY_MEASUREMENTS} the detector's validity table needs")
  return None


def hypotheses(excess: dict, critical: dict, smoke: bool) -> list[dict]:
  """The study's hypotheses, one declared family (Holm), each on per-seed values over the grid:
  jumps beyond the detector's false positives, coordination beyond max(1/L, its null), the loss falling
  in critical windows beyond its base rate."""
  family = {
      "jumps exceed the detector's false positives on matched surrogates (excess jumps per run)":
          excess["excess"],
      "critical periods of a run's layers coincide beyond 1/L and the circular-shift null "
      "(coordination - max(1/L, null))": critical["coordination_effect"],
      "the loss falls across critical windows more often than its base rate (falling - base)":
          critical["loss_excess"]}
  values = {name: np.asarray(v, np.float64)[np.isfinite(v)] for name, v in family.items()}
  results = stats.test_family(values, 1, smoke=smoke)
  return [{**stats.to_json(results[name]), "num_seeds_dropped": int(np.sum(~np.isfinite(family[name])))}
          for name in family]


def analyze(workdir: str, cfg: AnalysisConfig = AnalysisConfig(), data_dir: str | None = None,
            rerun: bool = False) -> dict[str, Any]:
  """Analyses the sweep under `workdir` and writes `<workdir>/analysis/`; returns report.json's content.

  With `rerun`, the planned runs are trained again with checkpoints at the planned steps (data from
  `data_dir`, else $MPCODEC_DATA_DIR) and the mechanisms are measured there; without it they are
  measured only if an earlier re-run left every planned checkpoint, and otherwise carry the reason.
  """
  configuration.check_values(cfg)
  sweep = load_sweep(workdir)
  measures = _measures(sweep, cfg)
  unknown = [r for r in cfg.rerun_runs if r not in {run.run for run in sweep.runs}]
  if unknown:
    raise ConfigError(f"config.rerun_runs: {unknown} are not finished runs of the sweep; its runs are "
                      f"{[run.run for run in sweep.runs]}")
  key = jax.random.PRNGKey(cfg.seed)
  smoke_reason = no_verdict_reason(sweep, cfg)
  smoke = smoke_reason is not None
  with progress_lib.bar(len(STAGES), "dynamics analysis", unit="stage") as bar:
    stage = _Stages(bar)
    stage("validity")
    length = validity_length(sweep, cfg)
    # The same penalty table as the sweep's series of that length: the table describes the detector
    # exactly as it was applied.
    validity = changepoint_validity.validity_table(
        cfg.detector, jax.random.fold_in(key, 1), num_measurements=length, trials=cfg.validity_trials,
        null_trials=cfg.validity_null_trials,
        table=jump_analysis.penalty_table(length, cfg.detector, cfg.seed))
    stage("convergence")
    convergence_rows, orders, stabilisation = stabilisation_analysis.convergence_rows(
        sweep.runs, measures, cfg.tail_fraction, cfg.family_alpha, cfg.seed_multiplier,
        cfg.bootstrap_resamples, smoke_reason)
    seed_numbers = sorted({int(s) for r in sweep.runs for s in r.seeds})
    stable_at_start_S = stabilisation_analysis.stable_at_start_per_seed(
        sweep.runs, stabilisation, cfg.primary_measure, seed_numbers)
    stage("jumps")
    jumps, detection = jump_analysis.detect_jumps(sweep.runs, measures, cfg.detector, cfg.seed,
                                                  cfg.min_jump_factor)
    stage("jump nulls")
    series = jump_analysis.matched_excess(detection, measures, cfg.detector, cfg.seed, cfg.surrogates_per_series)
    curve = jump_analysis.penalty_curve(detection, measures, cfg.primary_measure, cfg.detector, cfg.seed,
                                        cfg.penalty_curve_targets, cfg.penalty_curve_surrogates)
    excess = jump_analysis.excess_per_seed(series, seed_numbers)
    by_family = {f: jump_analysis.per_series_by_family(series, seed_numbers, f) for f in ("mlp", "cnn")}
    timing = jump_analysis.timing_fractions(jumps, series, sweep.runs, validity, seed_numbers)
    stage("types")
    types = jump_types.fit_types(jumps, cfg.min_types, cfg.max_types, cfg.min_jumps_to_cluster, cfg.seed)
    stage("critical periods")
    critical_rows, critical_per_run = critical_analysis.critical_rows(
        sweep.runs, measures, jax.random.fold_in(key, 3), cfg.loss_series, cfg.critical_surrogates,
        cfg.critical_alpha, cfg.coordination_shifts)
    critical_effects = critical_analysis.run_effects(sweep.runs, critical_per_run, cfg.primary_measure, smoke)
    critical_grid = critical_analysis.grid_per_seed(sweep.runs, critical_per_run, cfg.primary_measure,
                                                    seed_numbers)
    stage("plan")
    plan = checkpoint_plan.plan_checkpoints(sweep.runs, jumps, types["labels"], cfg.jumps_per_seed,
                                            cfg.window_margin)
    stage("re-run")
    records = {r.run: r.record for r in sweep.runs}
    rerun_outcomes = (rerun_stage.rerun(workdir, plan, records, data_dir, runs=cfg.rerun_runs)
                      if rerun else None)
    stage("mechanisms")
    mechanisms = _mechanisms(workdir, sweep, plan, data_dir, cfg, smoke)
    stage("replication")
    inputs = replication.per_seed_inputs(sweep.runs, jumps, series, excess, by_family, timing, critical_grid,
                                         stable_at_start_S, seed_numbers, cfg.primary_measure,
                                         is_output_projection)
    table = replication.replication_table(inputs, smoke)
    study_hypotheses = hypotheses(excess, critical_grid, smoke)
    stage("writing")
    findings = analysis_report.Findings(
        sweep=sweep, measures=measures, config=configuration.to_dict(cfg), validity=validity,
        convergence_rows=convergence_rows, orders=orders, stable_at_start_S=stable_at_start_S,
        seed_numbers=seed_numbers, jumps=jumps, detection=detection, types=types,
        critical_rows=critical_rows, critical_per_run=critical_per_run,
        critical_effects=critical_effects, plan=plan, rerun=rerun_outcomes, mechanisms=mechanisms,
        replication=table, stage_seconds=stage.seconds, series=series, penalty_curve=curve,
        timing=timing, hypotheses=study_hypotheses,
        no_verdict_reason=smoke_reason)
    report = analysis_report.write_outputs(workdir, findings, cfg.primary_measure, cfg.plots)
    stage.done()
  return report


def _mechanisms(workdir: str, sweep: SweepSeries, plan: dict, data_dir: str | None, cfg: AnalysisConfig,
                smoke: bool) -> dict[str, Any]:
  """Mechanism values at the planned windows, their effects and the three answers (or the reason not)."""
  value_rows, skipped = [], []
  families = {r.family for r in sweep.runs}
  for run in sweep.runs:
    run_plan = plan["runs"][run.run]
    if not run_plan["windows"]:
      skipped.append(f"{run.run}: {run_plan['reason']}")
      continue
    if not rerun_stage.has_checkpoints(workdir, run.run, run_plan["checkpoint_steps"]):
      skipped.append(f"{run.run}: the planned checkpoints are not saved yet (run the analysis with --rerun)")
      continue
    values = mechanism_effects.checkpoint_measures(workdir, run.run, run.record, run_plan["checkpoint_steps"],
                                                   data_dir)
    value_rows += mechanism_effects.window_values(run.run, run.family, run_plan["windows"],
                                                  run_plan["seeds"], values)
  effects = mechanism_effects.mechanism_effects(value_rows, smoke)
  reason = None if value_rows else (_summarise(skipped) if skipped else "no planned window")
  return {"values": value_rows, "effects": effects, "skipped": skipped, "reason": reason,
          "answers": mechanism_effects.answers(effects, families, reason)}


def _summarise(skipped: list[str]) -> str:
  """'k run(s): reason; ...' from 'run: reason' lines."""
  by_reason: dict[str, list[str]] = {}
  for line in skipped:
    run, _, reason = line.partition(": ")
    by_reason.setdefault(reason, []).append(run)
  return "; ".join(f"{len(runs)} run(s): {reason}" for reason, runs in by_reason.items())


def summary_lines(report: dict[str, Any]) -> list[str]:
  """A few lines for the launcher to print: where things are and the replication verdicts."""
  exclusions = report["exclusions"]
  lines = [f"{len(report['runs'])} runs analysed ({exclusions['num_diverged_runs']} diverged runs and "
           f"{exclusions['num_excluded_seeds']} seeds left out); "
           f"{report['jumps']['total']} jumps; analysis in {sum(report['seconds'].values()):.1f} s"]
  if report.get("smoke"):
    lines.append(f"no verdicts: {report['no_verdict_reason']}")
  for row in report["replication"]:
    lines.append(f"  {row['verdict']:>18}: {row['claim']}")
  return lines
