"""The replication table: each claim of the earlier study beside our computed result, CI and verdict.

Each claim is a quotation; the figure it asserts is read from the quotation itself (`figure_of`). Our
result is a statistic computed per seed number over the whole grid (seed i of every run is one
replicate of the grid: it shares the seed scheme's key i), with a percentile bootstrap CI over seeds.
Verdicts:
- "replicates": the claimed figure lies within the CI widened by the tolerance (an absolute one for
  fractions, a relative one for counts), or for a comparison the CI excludes 0 on the claimed side;
- "does not replicate": otherwise;
- "cannot be tested": fewer than 3 seeds, nothing to compute it on (no run of the family, no jumps),
  or what the claim is about is not measured here; the reason says which.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mpcodec.core import stats
from mpcodec.studies.dynamics.sweep_series import MIN_SEEDS, RunSeries

VERDICTS = ("replicates", "does not replicate", "cannot be tested")


@dataclasses.dataclass(frozen=True)
class Claim:
  key: str
  quote: str           # the earlier study's words
  figure: str          # the part of the quote that states the figure ("83.3%", "2,991", "49 of 55", "all")
  statistic: str       # what we compute for it


def figure_of(claim: Claim) -> float | None:
  """The number a claim asserts, parsed from its quotation: "83.3%" -> 0.833, "49 of 55" -> 49/55,
  "2,991" -> 2991, "all" -> 1.0; None for a claim without a figure (a comparison)."""
  if claim.figure not in claim.quote:
    raise ValueError(f"claim {claim.key}: figure {claim.figure!r} is not part of its quote")
  text = claim.figure.strip()
  if text == "all":
    return 1.0
  if text == "more":
    return None
  match = re.fullmatch(r"(\d+) of (\d+)", text)
  if match:
    return int(match.group(1)) / int(match.group(2))
  if text.endswith("%"):
    return float(text[:-1]) / 100.0
  return float(text.replace(",", ""))


CLAIMS = (
    Claim("stable_at_step_0", "all 55 experiments stabilise at step 0", "all",
          "fraction of runs in which every layer's primary-measure series settles at the first measurement"),
    Claim("jump_count", "2,991 jumps", "2,991",
          "jumps per grid replicate (one seed of every run, all measures and layers), scaled to the earlier "
          "study's 55 experiments"),
    Claim("jumps_first_10pct", "83.3% in the first 10% of training", "83.3%",
          "fraction of a seed's jumps at a true step below 10% of the run's training steps"),
    Claim("jumps_after_50pct", "0% after 50%", "0%",
          "fraction of a seed's jumps at a true step above 50% of the run's training steps"),
    Claim("transformer_output_projections", "transformer jumps: 100% in output projections", "100%",
          "fraction of transformer jumps in measured output-projection layers"),
    Claim("cnn_first_conv", "CNNs: 51% of jumps in the first convolutional layer", "51%",
          "fraction of CNN jumps in the first convolutional layer"),
    Claim("mlp_more_than_cnn", "MLPs show more jumps than CNNs", "more",
          "mean jumps per MLP run minus mean jumps per CNN run, per seed"),
    Claim("strong_critical_periods", "49 of 55 experiments show strong critical periods (coordination > 30%, "
          "loss correlation > 30%)", "49 of 55",
          "fraction of runs whose seed has coordination > 0.3 and loss-falling fraction > 0.3 "
          "(primary measure)"),
    Claim("mean_loss_correlation", "mean loss correlation 56.8%", "56.8%",
          "mean over runs of the fraction of critical windows over which the loss falls (primary measure)"),
)
EARLIER_EXPERIMENTS = 55   # the earlier study's grid, as its first claim quotes ("all 55 experiments")


def _ci_row(claim: Claim, values_S: np.ndarray, tolerance: float, relative: bool, num_resamples: int,
            context: Mapping | None = None) -> dict:
  """A figure claim's row from per-seed values (NaN = that seed has nothing to compute it on)."""
  claimed = figure_of(claim)
  finite_S = values_S[np.isfinite(values_S)]
  row = {"key": claim.key, "claim": claim.quote, "statistic": claim.statistic, "claimed": claimed,
         "result": float(finite_S.mean()) if finite_S.size else None, "ci_low": None, "ci_high": None,
         "num_seeds": int(finite_S.size), "verdict": "cannot be tested", "reason": None,
         "context": dict(context or {})}
  if finite_S.size < MIN_SEEDS:
    row["reason"] = (f"{finite_S.size} seed(s) with a value (of {values_S.size}); a CI over seeds needs at "
                     f"least {MIN_SEEDS}")
    return row
  estimate, low, high = stats.bootstrap_ci(finite_S, num_resamples=num_resamples)
  margin = tolerance * abs(claimed) if relative else tolerance
  row.update(result=estimate, ci_low=low, ci_high=high, tolerance=margin,
             verdict="replicates" if low - margin <= claimed <= high + margin else "does not replicate")
  return row


def _untestable(claim: Claim, reason: str, context: Mapping | None = None) -> dict:
  return {"key": claim.key, "claim": claim.quote, "statistic": claim.statistic, "claimed": figure_of(claim),
          "result": None, "ci_low": None, "ci_high": None, "num_seeds": 0, "verdict": "cannot be tested",
          "reason": reason, "context": dict(context or {})}


def _per_seed(seed_numbers: Sequence[int], jumps: Mapping[str, np.ndarray], select_J: np.ndarray,
              numerator_J: np.ndarray) -> np.ndarray:
  """Per seed: the fraction of its selected jumps that satisfy numerator (NaN for a seed without any)."""
  values = []
  for seed in seed_numbers:
    mine = select_J & (jumps["seed"] == seed)
    values.append(float(numerator_J[mine].mean()) if mine.any() else np.nan)
  return np.asarray(values)


def _jumps_per_run(seed_numbers, runs: Sequence[RunSeries], jumps, family: str | None) -> np.ndarray:
  """(seeds,) mean number of jumps per run of the family (all measures and layers) of each seed."""
  values = []
  for seed in seed_numbers:
    counts = [int(np.sum((jumps["run"] == r.run) & (jumps["seed"] == seed))) for r in runs
              if (family is None or r.family == family) and seed in r.seeds]
    values.append(float(np.mean(counts)) if counts else np.nan)
  return np.asarray(values)


def replication_table(runs: Sequence[RunSeries], jumps: Mapping[str, np.ndarray],
                      stable_at_start_S: np.ndarray,
                      critical_per_run: Mapping, primary: str, fraction_tolerance: float,
                      count_tolerance: float, num_resamples: int,
                      output_projection: Callable[[str], bool]) -> list[dict]:
  """One row per claim in CLAIMS (see the module docstring for how each is decided)."""
  seed_numbers = sorted({int(s) for r in runs for s in r.seeds})
  rows = []
  claims = {c.key: c for c in CLAIMS}
  row = _ci_row(claims["stable_at_step_0"], stable_at_start_S, fraction_tolerance, False, num_resamples,
                {"num_runs": len(runs), "measure": primary})
  rows.append(row)

  all_J = np.ones(np.asarray(jumps["step"]).size, bool)
  per_run_S = _jumps_per_run(seed_numbers, runs, jumps, None)
  rows.append(_ci_row(claims["jump_count"], per_run_S * EARLIER_EXPERIMENTS, count_tolerance, True,
                      num_resamples, {"num_runs": len(runs), "total_jumps_all_seeds": int(all_J.sum()),
                                      "mean_jumps_per_run": float(np.nanmean(per_run_S)) if np.isfinite(
                                          per_run_S).any() else None}))
  if not all_J.any():
    for key in ("jumps_first_10pct", "jumps_after_50pct"):
      rows.append(_untestable(claims[key], "no jump was detected in any series"))
  else:
    rows.append(_ci_row(claims["jumps_first_10pct"], _per_seed(seed_numbers, jumps, all_J,
                                                               jumps["fraction"] < 0.1),
                        fraction_tolerance, False, num_resamples))
    rows.append(_ci_row(claims["jumps_after_50pct"], _per_seed(seed_numbers, jumps, all_J,
                                                               jumps["fraction"] > 0.5),
                        fraction_tolerance, False, num_resamples))

  transformer_runs = [r for r in runs if r.family == "transformer"]
  measured = sorted({l for r in transformer_runs for l in r.layer_names})
  projections = [l for l in measured if output_projection(l)]
  claim = claims["transformer_output_projections"]
  if not transformer_runs:
    rows.append(_untestable(claim, "no transformer run in the sweep"))
  elif not projections:
    rows.append(_untestable(claim, "output projections are not measured layers here; the transformers' "
                            f"measured layers are {', '.join(measured)} (residual streams)",
                            {"measured_layers": measured}))
  else:
    in_transformer_J = jumps["family"] == "transformer"
    in_projection_J = np.isin(jumps["layer"], projections)
    rows.append(_ci_row(claim, _per_seed(seed_numbers, jumps, in_transformer_J, in_projection_J),
                        fraction_tolerance, False, num_resamples))

  claim = claims["cnn_first_conv"]
  cnn_J = jumps["family"] == "cnn"
  if not any(r.family == "cnn" for r in runs):
    rows.append(_untestable(claim, "no CNN run in the sweep"))
  elif not cnn_J.any():
    rows.append(_untestable(claim, "no jump was detected in any CNN series"))
  else:
    rows.append(_ci_row(claim, _per_seed(seed_numbers, jumps, cnn_J, jumps["layer_index"] == 0),
                        fraction_tolerance, False, num_resamples))

  rows.append(_comparison(claims["mlp_more_than_cnn"], runs, jumps, seed_numbers, num_resamples))

  strong, falling = [], []
  for seed in seed_numbers:
    flags, fractions = [], []
    for r in runs:
      if seed not in r.seeds or r.num_layers < 2:
        continue
      values = critical_per_run[(r.run, primary)]
      s = int(np.flatnonzero(r.seeds == seed)[0])
      has = values["num_windows"][s] > 0
      flags.append(bool(has and values["coordination"][s] > 0.3 and values["loss_falling_fraction"][s] > 0.3))
      if has:
        fractions.append(float(values["loss_falling_fraction"][s]))
    strong.append(float(np.mean(flags)) if flags else np.nan)
    falling.append(float(np.mean(fractions)) if fractions else np.nan)
  base = [float(np.mean(critical_per_run[(r.run, primary)]["loss_base_rate"][
      critical_per_run[(r.run, primary)]["num_windows"] > 0])) for r in runs
      if r.num_layers >= 2 and np.any(critical_per_run[(r.run, primary)]["num_windows"] > 0)]
  rows.append(_ci_row(claims["strong_critical_periods"], np.asarray(strong), fraction_tolerance, False,
                      num_resamples,
                      {"measure": primary, "note": "thresholds as quoted; see critical_periods for the same "
                       "quantities against their nulls"}))
  rows.append(_ci_row(claims["mean_loss_correlation"], np.asarray(falling), fraction_tolerance, False,
                      num_resamples, {"measure": primary,
                                      "mean_base_rate": float(np.mean(base)) if base else None}))
  return rows


def _comparison(claim: Claim, runs, jumps, seed_numbers, num_resamples: int) -> dict:
  families = {r.family for r in runs}
  missing = [f for f in ("mlp", "cnn") if f not in families]
  if missing:
    return _untestable(claim, f"no {' or '.join(m.upper() for m in missing)} run in the sweep")
  difference_S = (_jumps_per_run(seed_numbers, runs, jumps, "mlp")
                  - _jumps_per_run(seed_numbers, runs, jumps, "cnn"))
  finite_S = difference_S[np.isfinite(difference_S)]
  row = {"key": claim.key, "claim": claim.quote, "statistic": claim.statistic, "claimed": None,
         "result": float(finite_S.mean()) if finite_S.size else None, "ci_low": None, "ci_high": None,
         "num_seeds": int(finite_S.size), "verdict": "cannot be tested", "reason": None, "context": {}}
  if finite_S.size < MIN_SEEDS:
    row["reason"] = (f"{finite_S.size} seed(s) with MLP and CNN runs; a CI over seeds needs at least "
                     f"{MIN_SEEDS}")
    return row
  estimate, low, high = stats.bootstrap_ci(finite_S, num_resamples=num_resamples)
  decided = stats.verdict(low, high, +1)
  row.update(result=estimate, ci_low=low, ci_high=high,
             verdict="replicates" if decided == "supported" else "does not replicate",
             reason=None if decided == "supported" else (
                 "CNNs show more jumps per run" if decided == "contradicted"
                 else "the CI includes no difference"))
  return row
