"""The replication table: each claim of the earlier study beside our per-seed result, its interval and verdict.

Each claim is a quotation; the figure it asserts is read from the quotation itself (`figure_of`), and
its margin (how far our value may lie from it and still reproduce it) is declared beside it in CLAIMS
with its reason. Our result is a statistic computed once per seed number over the whole grid (seed i
of every run is one replicate of the grid: it shares the seed scheme's key i), so the seed is the unit;
a count over the pooled grid is never tested as one number. Every verdict comes from the statistics
layer (`mpcodec.core.stats`, rules in docs/replication.md):
- a claimed figure c: TOST equivalence within c +- margin (`stats.test_equivalence`): "replicates" when
  the 90% t interval over seeds lies inside the band, "does not replicate" when the 95% interval lies
  wholly outside it, "inconclusive" otherwise;
- a claimed direction ("MLPs show more jumps than CNNs"): `stats.test_direction_claim`;
- Holm over the table's tested claims (`stats.replication_family`): one table, one family;
- "cannot be tested": a smoke run, fewer than `stats.MIN_SEEDS` seeds with a value, nothing to compute
  it on (no run of the family, no jump), or what the claim is about is not measured here.
What each claim is computed from, against which null: the `statistic` of its entry in CLAIMS; the
earlier study's own statistic (a raw count or fraction) is shown beside as `raw_result`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mpcodec.core import stats
from mpcodec.studies.dynamics.series import RunSeries

VERDICTS = stats.REPLICATION_VERDICTS
FIVE_POINTS = "a fraction: 5 percentage points is the smallest difference read as another finding"


@dataclasses.dataclass(frozen=True)
class Claim:
  key: str
  quote: str                  # the earlier study's words
  figure: str                 # the part of the quote that states the figure ("83.3%", "2,991", "49 of 55", "all")
  statistic: str              # what we compute per seed, and against which null
  raw_statistic: str          # the earlier study's own statistic, shown beside
  margin: stats.Margin | None = None   # None for a claimed direction
  expected_sign: int = 0               # +1 / -1 for a claimed direction


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
          "fraction of runs in which every layer's primary-measure series settles at the first measurement",
          "the same", stats.Margin(0.05, "absolute", FIVE_POINTS)),
    Claim("jump_count", "2,991 jumps", "2,991",
          "jumps per grid replicate in excess of the detector's false positives (observed minus the mean "
          "count in surrogates matched to each series: its fitted trend and AR(1), same length, penalty and "
          "minimum size), per run over all measures and layers, scaled to the earlier study's 55 experiments",
          "jumps found per run, scaled to 55 experiments",
          stats.Margin(0.2, "relative", "a count from a thresholded detector on another grid: a fifth is the "
                       "smallest difference read as another finding")),
    Claim("jumps_first_10pct", "83.3% in the first 10% of training", "83.3%",
          "share of a seed's jumps at a true step below 10% of training, corrected by the validity harness' "
          "recall at each jump's position and size and its false positives by position",
          "the raw share of detected jumps", stats.Margin(0.05, "absolute", FIVE_POINTS)),
    Claim("jumps_after_50pct", "0% after 50%", "0%",
          "share of a seed's jumps at a true step above 50% of training, corrected as above",
          "the raw share of detected jumps",
          stats.Margin(0.05, "absolute", FIVE_POINTS + " (a relative margin around 0 is empty)")),
    Claim("transformer_output_projections", "transformer jumps: 100% in output projections", "100%",
          "share of a seed's transformer jumps in measured output-projection layers", "the same",
          stats.Margin(0.05, "absolute", FIVE_POINTS)),
    Claim("cnn_first_conv", "CNNs: 51% of jumps in the first convolutional layer", "51%",
          "share of a seed's CNN jumps in the first convolutional layer (the first layer's share of the CNN "
          "series searched, its base rate, is in the context)", "the same",
          stats.Margin(0.10, "absolute", "the figure rests on 9 CNN experiments (297 jumps), so it is itself "
                       "uncertain by more than 5 points")),
    Claim("mlp_more_than_cnn", "MLPs show more jumps than CNNs", "more",
          "per seed: excess jumps per measured MLP series minus per measured CNN series (MLPs measure ~6 "
          "layers, CNNs ~3, so a per-run count compares depths, not families)",
          "jumps found per MLP series minus per CNN series", None, +1),
    Claim("strong_critical_periods", "49 of 55 experiments show strong critical periods (coordination > 30%, "
          "loss correlation > 30%)", "49 of 55",
          "fraction of runs (primary measure) whose coordination above max(1/L, circular-shift null) and "
          "falling-loss fraction above its base rate each reach 30% of the room above that null",
          "fraction of runs with raw coordination > 0.3 and falling fraction > 0.3 (coordination >= 1/L "
          "makes every run of 3 layers or fewer pass the first)", stats.Margin(0.05, "absolute", FIVE_POINTS)),
    Claim("mean_loss_correlation", "mean loss correlation 56.8%", "56.8%",
          "mean over runs of the fraction of critical windows over which the loss falls (primary measure); "
          "its base rate and the excess over it are in the context and the critical-period effects",
          "the same", stats.Margin(0.05, "absolute", FIVE_POINTS)),
)
EARLIER_EXPERIMENTS = 55   # the earlier study's grid, as its first claim quotes ("all 55 experiments")


@dataclasses.dataclass(frozen=True)
class PerSeed:
  """A claim's per-seed values (NaN: that seed has nothing to compute it on), its raw counterpart and
  context, or the reason it cannot be computed at all."""
  values_S: np.ndarray | None = None
  raw_S: np.ndarray | None = None
  context: Mapping | None = None
  untestable: str | None = None


def _mean(values_S) -> float | None:
  if values_S is None:
    return None
  finite = np.asarray(values_S, np.float64)
  finite = finite[np.isfinite(finite)]
  return float(finite.mean()) if finite.size else None


def _test(claim: Claim, per_seed: PerSeed, smoke: bool) -> tuple[stats.ReplicationResult, int]:
  """(result, seeds dropped for having no value)."""
  claimed = figure_of(claim)
  if per_seed.untestable is not None:
    result = stats.ReplicationResult.untestable(claim.key, per_seed.untestable,
                                                math.nan if claimed is None else claimed, claim.margin)
    return result, 0
  values_S = np.asarray(per_seed.values_S, np.float64)
  finite_S = values_S[np.isfinite(values_S)]
  if claim.margin is None:
    result = stats.test_direction_claim(finite_S, claim.expected_sign, name=claim.key, smoke=smoke)
  else:
    result = stats.test_equivalence(finite_S, claimed, claim.margin, name=claim.key, smoke=smoke)
  return result, int(values_S.size - finite_S.size)


def _row(claim: Claim, result: stats.ReplicationResult, per_seed: PerSeed, dropped: int) -> dict:
  finite = lambda x: float(x) if x is not None and np.isfinite(x) else None
  reason = result.reason
  if dropped and result.verdict != "cannot be tested":
    reason += f"; {dropped} seed(s) without a value left out"
  elif dropped and result.n:
    reason += f" ({dropped} further seed(s) without a value)"
  return {"key": claim.key, "claim": claim.quote, "statistic": claim.statistic,
          "claimed": figure_of(claim), "expected_sign": claim.expected_sign or None,
          "margin": finite(result.margin), "margin_kind": result.margin_kind or None,
          "margin_reason": result.margin_reason or None,
          "result": finite(result.estimate), "ci_low": finite(result.low), "ci_high": finite(result.high),
          "confidence": result.confidence if result.n else None, "num_seeds": int(result.n),
          "num_seeds_dropped": dropped, "raw_statistic": claim.raw_statistic, "raw_result": _mean(per_seed.raw_S),
          "p_for": finite(result.p_for), "p_against": finite(result.p_against),
          "p_for_adjusted": finite(result.p_for_adjusted), "p_against_adjusted": finite(result.p_against_adjusted),
          "family_size": result.family_size, "verdict": result.verdict, "reason": reason,
          "context": stats.to_json(dict(per_seed.context or {}))}


def _share(seed_numbers, jumps, select_J: np.ndarray, numerator_J: np.ndarray) -> np.ndarray:
  """Per seed: the fraction of its selected jumps that satisfy numerator (NaN for a seed without any)."""
  values = []
  for seed in seed_numbers:
    mine = select_J & (jumps["seed"] == seed)
    values.append(float(numerator_J[mine].mean()) if mine.any() else np.nan)
  return np.asarray(values)


def per_seed_inputs(runs: Sequence[RunSeries], jumps: Mapping[str, np.ndarray], series: Mapping[str, np.ndarray],
                    excess: Mapping[str, np.ndarray], by_family: Mapping[str, Mapping[str, np.ndarray]],
                    timing: Mapping[str, np.ndarray], critical: Mapping[str, np.ndarray],
                    stable_at_start_S: np.ndarray, seed_numbers: Sequence[int], primary: str,
                    output_projection: Callable[[str], bool]) -> dict[str, PerSeed]:
  """Each claim's PerSeed from the analysis' per-seed quantities (see CLAIMS for what each is)."""
  out = {"stable_at_step_0": PerSeed(stable_at_start_S, stable_at_start_S,
                                     {"num_runs": len(runs), "measure": primary})}
  out["jump_count"] = PerSeed(
      excess["excess"] * EARLIER_EXPERIMENTS, excess["observed"] * EARLIER_EXPERIMENTS,
      {"num_runs": len(runs), "total_jumps_all_seeds": int(np.asarray(jumps["step"]).size),
       "expected_false_jumps_all_seeds": float(np.sum(series["expected_false_jumps"])),
       "observed_per_run": _mean(excess["observed"]), "expected_false_per_run": _mean(excess["expected"])})
  if not np.asarray(jumps["step"]).size:
    for key in ("jumps_first_10pct", "jumps_after_50pct"):
      out[key] = PerSeed(untestable="no jump was detected in any series")
  else:
    out["jumps_first_10pct"] = PerSeed(timing["first_corrected"], timing["first_raw"])
    out["jumps_after_50pct"] = PerSeed(timing["late_corrected"], timing["late_raw"])

  transformer_runs = [r for r in runs if r.family == "transformer"]
  measured = sorted({l for r in transformer_runs for l in r.layer_names})
  projections = [l for l in measured if output_projection(l)]
  if not transformer_runs:
    out["transformer_output_projections"] = PerSeed(untestable="no transformer run in the sweep")
  elif not projections:
    out["transformer_output_projections"] = PerSeed(
        untestable="output projections are not measured layers here; the transformers' measured layers are "
        f"{', '.join(measured)} (residual streams)", context={"measured_layers": measured})
  else:
    share = _share(seed_numbers, jumps, jumps["family"] == "transformer", np.isin(jumps["layer"], projections))
    out["transformer_output_projections"] = PerSeed(share, share)

  cnn_J = jumps["family"] == "cnn"
  if not any(r.family == "cnn" for r in runs):
    out["cnn_first_conv"] = PerSeed(untestable="no CNN run in the sweep")
  elif not cnn_J.any():
    out["cnn_first_conv"] = PerSeed(untestable="no jump was detected in any CNN series")
  else:
    share = _share(seed_numbers, jumps, cnn_J, jumps["layer_index"] == 0)
    cnn_N = series["family"] == "cnn"
    out["cnn_first_conv"] = PerSeed(share, share, {
        "first_layer_share_of_cnn_series": float(np.mean(series["layer_index"][cnn_N] == 0))})

  missing = [f for f in ("mlp", "cnn") if f not in {r.family for r in runs}]
  if missing:
    out["mlp_more_than_cnn"] = PerSeed(untestable=f"no {' or '.join(m.upper() for m in missing)} run in the sweep")
  else:
    mlp, cnn = by_family["mlp"], by_family["cnn"]
    out["mlp_more_than_cnn"] = PerSeed(mlp["excess"] - cnn["excess"], mlp["observed"] - cnn["observed"], {
        "mlp_excess_per_series": _mean(mlp["excess"]), "cnn_excess_per_series": _mean(cnn["excess"]),
        "mlp_series_per_seed": _mean(mlp["num_series"]), "cnn_series_per_seed": _mean(cnn["num_series"])})

  multi_layer = [r for r in runs if r.num_layers >= 2]
  if not multi_layer:
    for key in ("strong_critical_periods", "mean_loss_correlation"):
      out[key] = PerSeed(untestable="no run with two or more measured layers")
  else:
    out["strong_critical_periods"] = PerSeed(critical["strong"], critical["strong_raw"], {
        "measure": primary, "coordination_effect": _mean(critical["coordination_effect"]),
        "loss_excess": _mean(critical["loss_excess"])})
    out["mean_loss_correlation"] = PerSeed(critical["falling_fraction"], critical["falling_fraction"], {
        "measure": primary, "mean_base_rate": _mean(critical["base_rate"]),
        "excess_over_base_rate": _mean(critical["loss_excess"])})
  return out


def replication_table(inputs: Mapping[str, PerSeed], smoke: bool = False) -> list[dict]:
  """One row per claim in CLAIMS, in order, decided together (Holm over the tested claims)."""
  tested = [_test(claim, inputs[claim.key], smoke) for claim in CLAIMS]
  decided = stats.replication_family([result for result, _ in tested])
  return [_row(claim, result, inputs[claim.key], dropped)
          for claim, result, (_, dropped) in zip(CLAIMS, decided, tested)]
