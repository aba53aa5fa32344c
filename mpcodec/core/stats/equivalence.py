"""Replication of an earlier claim by equivalence: two one-sided t tests against a declared margin.

A claimed figure c replicates when our per-seed values show the true value within c +- margin (TOST at
alpha: the (1 - 2 alpha) t interval lies inside the band); it does not replicate when they show it
outside the band (the (1 - alpha) t interval lies wholly outside: one-sided tests of each band edge at
alpha / 2, so the error stays <= alpha even when the margin is small beside the noise); otherwise the
result is inconclusive. Noise cannot make a claim replicate: wider seed spread widens the interval,
which then fits inside the band less often. A claimed direction ("A has more than B") replicates as a
hypothesis is supported. Holm within a replication table: `replication_family`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.stats

from mpcodec.core.stats.hypotheses import holm, one_sample_t
from mpcodec.core.stats.intervals import seed_moments
from mpcodec.core.stats.rules import (ALPHA, MIN_SEEDS, ReplicationVerdict, as_values, check_alpha,
                                          check_min_seeds, check_sign, fmt_p, untestable_reason)


@dataclasses.dataclass(frozen=True)
class Margin:
  """How far from a claimed figure our value may lie and still replicate it, and why.

  kind "absolute": the band is claim +- value; "relative": claim +- value * |claim|.
  """
  value: float
  kind: Literal["absolute", "relative"]
  reason: str

  def __post_init__(self):
    if not (math.isfinite(self.value) and self.value > 0):
      raise ValueError(f"Margin.value must be a positive number, got {self.value!r}")
    if self.kind not in ("absolute", "relative"):
      raise ValueError(f"Margin.kind must be 'absolute' or 'relative', got {self.kind!r}")
    if not self.reason.strip():
      raise ValueError("Margin.reason: say why this margin (e.g. 'a fraction: 5 percentage points')")

  def half_width(self, claim: float) -> float:
    """The band's half width around `claim`, in the claim's units."""
    if self.kind == "absolute":
      return float(self.value)
    if claim == 0:
      raise ValueError("a relative margin around a claim of 0 is empty; use an absolute margin")
    return float(self.value) * abs(float(claim))


@dataclasses.dataclass(frozen=True)
class ReplicationResult:
  """One claim's replication test. kind "equivalence" (a figure, `claim` +- `margin`) or "direction"
  (a sign, `expected_sign`). low / high: the t interval at `confidence` (1 - 2 alpha for a figure, the
  interval TOST reads; 1 - alpha for a direction). p_for: the test whose rejection means "replicates"
  (TOST; the t test in the claimed direction), p_against: "does not replicate"; *_adjusted: Holm within
  the table of `family_size` tested claims."""
  name: str
  kind: Literal["equivalence", "direction"]
  claim: float
  expected_sign: int
  margin: float
  margin_kind: str
  margin_reason: str
  estimate: float
  low: float
  high: float
  confidence: float
  n: int
  sd: float
  p_for: float
  p_against: float
  p_for_adjusted: float
  p_against_adjusted: float
  family_size: int
  alpha: float
  verdict: ReplicationVerdict
  reason: str

  @classmethod
  def untestable(cls, name: str, reason: str, claim: float = math.nan, margin: Margin | None = None,
                 alpha: float = ALPHA) -> ReplicationResult:
    """A "cannot be tested" row with nothing measured (no run of that kind, the quantity not measured)."""
    nan = math.nan
    width = margin.half_width(claim) if margin is not None and math.isfinite(claim) else nan
    return cls(name, "equivalence" if math.isfinite(claim) else "direction", float(claim), 0, width,
               margin.kind if margin else "", margin.reason if margin else "", nan, nan, nan, nan, 0, nan,
               nan, nan, nan, nan, 0, alpha, "cannot be tested", reason)


def equivalence_p_values(estimate, standard_error, df, claim: float, half_width: float
                         ) -> tuple[np.ndarray, np.ndarray]:
  """(p_for, p_against) of an estimate with its standard error and t degrees of freedom (element-wise).

  p_for = max(P(T >= (est - (c - d)) / se), P(T <= (est - (c + d)) / se)): TOST of H0 |mu - c| >= d.
  p_against = min(1, 2 min(P(T <= (est - (c - d)) / se), P(T >= (est - (c + d)) / se))): H0 |mu - c| <= d,
  each edge at alpha / 2. A 0 / 0 ratio (no spread, estimate on an edge) counts as not significant.
  Schuirmann (1987), J. Pharmacokinet. Biopharm. 15(6).
  """
  with np.errstate(divide="ignore", invalid="ignore"):
    t_lower = (np.asarray(estimate, np.float64) - (claim - half_width)) / standard_error
    t_upper = (np.asarray(estimate, np.float64) - (claim + half_width)) / standard_error
  p_for = np.maximum(scipy.stats.t.sf(t_lower, df), scipy.stats.t.cdf(t_upper, df))
  p_against = np.minimum(1.0, 2 * np.minimum(scipy.stats.t.cdf(t_lower, df), scipy.stats.t.sf(t_upper, df)))
  undefined = np.isnan(t_lower) | np.isnan(t_upper)
  return np.where(undefined, 1.0, p_for), np.where(undefined, 1.0, p_against)


def tost(values_xS, claim: float, half_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean, p_for, p_against) of per-seed values over the last axis against claim +- half_width."""
  mean, _, se, n = seed_moments(values_xS)
  if n < 2:
    nan = np.full(mean.shape, np.nan)
    return mean, nan, nan
  return (mean,) + equivalence_p_values(mean, se, n - 1, claim, half_width)


def direction_p_values(values_xS, expected_sign: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean, p_for, p_against) of a claimed sign over the last axis: twice the one-sided t p-value in the
  claimed and in the other direction (capped at 1), so p_for < alpha exactly when `test_hypothesis`
  says "supported"."""
  expected_sign = check_sign(expected_sign)
  mean, _, t, _ = one_sample_t(values_xS)
  n = np.asarray(values_xS).shape[-1]
  if n < 2:
    return mean, t, t
  signed = np.where(np.isnan(t), 0.0, t * expected_sign)
  p_for = np.minimum(1.0, 2 * scipy.stats.t.sf(signed, n - 1))
  p_against = np.minimum(1.0, 2 * scipy.stats.t.cdf(signed, n - 1))
  return mean, p_for, p_against


def replication_verdicts(p_for, p_against, alpha: float = ALPHA) -> np.ndarray:
  """Element-wise: p_for < alpha -> "replicates", p_against < alpha -> "does not replicate", else
  "inconclusive" (the two cannot both hold: the first puts the estimate inside the band, the second
  outside)."""
  return np.where(np.asarray(p_for) < alpha, "replicates",
                  np.where(np.asarray(p_against) < alpha, "does not replicate", "inconclusive"))


def _num(x: float) -> str:
  return f"{x:.4g}"


def _decided(result: ReplicationResult, p_for_adjusted: float, p_against_adjusted: float,
             family_size: int) -> ReplicationResult:
  verdict = str(replication_verdicts(p_for_adjusted, p_against_adjusted, result.alpha))
  interval = (f"{100 * result.confidence:g}% interval [{_num(result.low)}, {_num(result.high)}] over "
              f"{result.n} seeds")
  if result.kind == "equivalence":
    band = f"{_num(result.claim)} +- {_num(result.margin)} ({result.margin_kind} margin)"
    text = {"replicates": f"{interval} lies inside {band}",
            "does not replicate": (f"the estimate {_num(result.estimate)} lies outside {band}, beyond noise "
                                   f"(its {100 * (1 - result.alpha):g}% interval lies wholly outside)"),
            "inconclusive": f"{interval} is neither inside {band} nor clearly outside it"}[verdict]
    tests = f"TOST p = {fmt_p(result.p_for)}, non-equivalence p = {fmt_p(result.p_against)}"
  else:
    side = "above" if result.expected_sign > 0 else "below"
    text = {"replicates": f"{interval} lies {side} 0, as claimed",
            "does not replicate": f"{interval} lies on the other side of 0 than claimed",
            "inconclusive": f"{interval} includes 0"}[verdict]
    tests = (f"t test p = {fmt_p(result.p_for)} in the claimed direction, {fmt_p(result.p_against)} in the "
             "other")
  if family_size > 1:
    tests += (f"; Holm over {family_size} claims: {fmt_p(p_for_adjusted)}, "
              f"{fmt_p(p_against_adjusted)}")
  return dataclasses.replace(result, p_for_adjusted=float(p_for_adjusted),
                             p_against_adjusted=float(p_against_adjusted), family_size=family_size,
                             verdict=verdict, reason=f"{text} ({tests}; alpha = {result.alpha:g})")


def _result(name, kind, claim, expected_sign, margin, width, estimate, sd, se, n, df, confidence, p_for,
            p_against, why_not, alpha) -> ReplicationResult:
  if n >= 2 and math.isfinite(se):
    half = float(scipy.stats.t.ppf((1 + confidence) / 2, df)) * se
    low, high = estimate - half, estimate + half
  else:
    low = high = math.nan
  result = ReplicationResult(name, kind, float(claim), expected_sign, width, margin.kind if margin else "",
                             margin.reason if margin else "", float(estimate), low, high, confidence, n,
                             float(sd), float(p_for), float(p_against), math.nan, math.nan, 0, alpha,
                             "cannot be tested", why_not or "")
  if why_not is not None:
    return dataclasses.replace(result, p_for=math.nan, p_against=math.nan)
  return _decided(result, float(p_for), float(p_against), 1)


def test_equivalence(values_S, claim: float, margin: Margin, *, name: str, min_seeds: int = MIN_SEEDS,
                     smoke: bool = False, alpha: float = ALPHA) -> ReplicationResult:
  """Tests that per-seed values `values_S` replicate the claimed figure `claim` within `margin`.

  TOST and the non-equivalence test of `equivalence_p_values` on the seeds' mean, standard error and
  n - 1 df; verdict by `replication_verdicts`; "cannot be tested" for a smoke run or fewer than
  `min_seeds` seeds. Schuirmann (1987), J. Pharmacokinet. Biopharm. 15(6).
  """
  values_S = as_values(values_S, "values_S", allow_empty=True)
  alpha = check_alpha(alpha)
  width = margin.half_width(claim)
  why_not = untestable_reason(values_S.size, check_min_seeds(min_seeds), smoke)
  if values_S.size == 0:
    return ReplicationResult.untestable(name, why_not, claim, margin, alpha)
  mean, sd, se = (float(x) for x in seed_moments(values_S)[:3])
  _, p_for, p_against = tost(values_S, claim, width)
  return _result(name, "equivalence", claim, 0, margin, width, mean, sd, se, values_S.size, values_S.size - 1,
                 1 - 2 * alpha, p_for, p_against, why_not, alpha)


test_equivalence.__test__ = False


def equivalence_from_estimate(estimate: float, standard_error: float, n: int, claim: float, margin: Margin, *,
                              name: str, df: float | None = None, min_seeds: int = MIN_SEEDS,
                              smoke: bool = False, alpha: float = ALPHA) -> ReplicationResult:
  """`test_equivalence` for a statistic that is not a mean of per-seed values (a ratio of seed means, a
  fit), given its standard error over `n` independent seeds and t degrees of freedom `df` (n - 1 by
  default; math.inf for a normal approximation). The standard error must come from the seeds (e.g. the
  delta method, a jackknife over seeds): a count pooled over tokens has no seed-level error, so compute
  it once per seed and call `test_equivalence` instead. Schuirmann (1987).
  """
  alpha = check_alpha(alpha)
  if not (math.isfinite(estimate) and math.isfinite(standard_error) and standard_error >= 0):
    raise ValueError(f"estimate and standard_error must be finite (standard_error >= 0), got {estimate!r}, "
                     f"{standard_error!r}")
  df = (n - 1) if df is None else df
  if not df > 0:
    raise ValueError(f"df must be positive, got {df!r}")
  width = margin.half_width(claim)
  why_not = untestable_reason(n, check_min_seeds(min_seeds), smoke)
  p_for, p_against = equivalence_p_values(estimate, standard_error, df, claim, width)
  return _result(name, "equivalence", claim, 0, margin, width, estimate, standard_error * math.sqrt(n),
                 standard_error, n, df, 1 - 2 * alpha, p_for, p_against, why_not, alpha)


def test_direction_claim(values_S, expected_sign: int, *, name: str, min_seeds: int = MIN_SEEDS,
                         smoke: bool = False, alpha: float = ALPHA) -> ReplicationResult:
  """Tests a claimed sign of a per-seed effect ("MLPs show more jumps than CNNs": expected_sign +1 on
  MLP minus CNN): replicates when the (1 - alpha) t interval excludes 0 on the claimed side, does not
  replicate when it excludes 0 on the other, else inconclusive (`direction_p_values`)."""
  values_S = as_values(values_S, "values_S", allow_empty=True)
  alpha = check_alpha(alpha)
  expected_sign = check_sign(expected_sign)
  why_not = untestable_reason(values_S.size, check_min_seeds(min_seeds), smoke)
  if values_S.size == 0:
    return dataclasses.replace(ReplicationResult.untestable(name, why_not, alpha=alpha),
                               expected_sign=expected_sign)
  mean, sd, se = (float(x) for x in seed_moments(values_S)[:3])
  _, p_for, p_against = direction_p_values(values_S, expected_sign)
  return _result(name, "direction", math.nan, expected_sign, None, math.nan, mean, sd, se, values_S.size,
                 values_S.size - 1, 1 - alpha, p_for, p_against, why_not, alpha)


test_direction_claim.__test__ = False


def replication_family(results: Sequence[ReplicationResult]) -> list[ReplicationResult]:
  """The rows of one replication table, each verdict re-decided after Holm within the table: on the
  p_for values (for "replicates") and, apart, on the p_against values (for "does not replicate").
  "cannot be tested" rows keep their verdict and do not count. Holm (1979)."""
  results = list(results)
  alphas = {r.alpha for r in results}
  if len(alphas) > 1:
    raise ValueError(f"replication_family: one alpha per table, got {sorted(alphas)}")
  tested = [i for i, r in enumerate(results) if r.verdict != "cannot be tested"]
  if not tested:
    return results
  p_for = holm([results[i].p_for for i in tested])
  p_against = holm([results[i].p_against for i in tested])
  for j, i in enumerate(tested):
    results[i] = _decided(results[i], float(p_for[j]), float(p_against[j]), len(tested))
  return results
