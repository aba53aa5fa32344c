"""Hypotheses over seeds: one-sample Student t on per-seed values, Holm within a family, one verdict.

A hypothesis predicts the sign of an effect measured once per seed (a paired difference, an excess over
a base rate). Verdict: "supported" when the two-sided one-sample t test of mean 0 rejects at alpha
(Holm-adjusted within its family) with the predicted sign, "contradicted" when it rejects with the other
sign, "inconclusive" otherwise, "cannot be tested" for a smoke run or fewer than MIN_SEEDS seeds. The
false "supported" rate under a null is then at most alpha / 2 for roughly symmetric per-seed values
(tested by simulation). Skewed values inflate the side against the skew (a centred exponential: about
11% at 5 seeds): test ratios and rare-event counts on the log scale, and make a per-seed value a mean
over many units.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats

from mpcodec.core.stats.intervals import seed_moments, t_interval
from mpcodec.core.stats.rules import (ALPHA, MIN_SEEDS, HypothesisVerdict, as_values, check_alpha,
                                          check_min_seeds, check_sign, fmt_p, untestable_reason)


@dataclasses.dataclass(frozen=True)
class HypothesisResult:
  """One hypothesis' test over seeds. low / high: the unadjusted (`confidence` = 1 - alpha) t interval.

  p_value is the two-sided one-sample t test of mean 0; p_adjusted its Holm adjustment within the
  family of `family_size` tested hypotheses (equal to p_value for a family of one). The verdict reads
  p_adjusted, so an interval that excludes 0 can go with "inconclusive" in a family, never the reverse.
  k_of_n: seeds whose value has the predicted sign.
  """
  name: str
  expected_sign: int
  estimate: float
  low: float
  high: float
  confidence: float
  n: int
  sd: float
  cohens_dz: float
  t: float
  p_value: float
  p_adjusted: float
  family_size: int
  alpha: float
  k_of_n: int
  verdict: HypothesisVerdict
  reason: str

  @classmethod
  def untestable(cls, name: str, expected_sign: int, reason: str, alpha: float = ALPHA) -> HypothesisResult:
    """A "cannot be tested" result with nothing measured (no run of that kind, no event to count)."""
    nan = math.nan
    return cls(name, check_sign(expected_sign), nan, nan, nan, 1 - alpha, 0, nan, nan, nan, nan, nan, 0,
               alpha, 0, "cannot be tested", reason)


def one_sample_t(values_xS, null: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(mean, sd, t, two-sided p) over the last (seed) axis: t = (mean - null) / (sd / sqrt(n)), n - 1 df.

  Zero spread: t = +-inf and p = 0 when the mean differs from the null, t = NaN and p = 1 when it
  equals it; one seed: t = p = NaN. Student (1908), Biometrika 6(1).
  """
  mean, sd, se, n = seed_moments(values_xS)
  if n < 2:
    return mean, sd, np.full(mean.shape, np.nan), np.full(mean.shape, np.nan)
  with np.errstate(divide="ignore", invalid="ignore"):
    t = (mean - null) / se
  p = 2 * scipy.stats.t.sf(np.abs(t), n - 1)
  p = np.where(np.isnan(t), 1.0, p)
  return mean, sd, t, p


def holm(p_values) -> np.ndarray:
  """Holm-Bonferroni adjusted p-values over the last axis; NaN entries are not part of the family.

  Sorted ascending, p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j)) with m the number of finite
  p-values; reject where the adjusted p < alpha. Controls the family-wise error at alpha under any
  dependence. Holm (1979), Scand. J. Statist. 6(2).
  """
  p = np.asarray(p_values, dtype=np.float64)
  if p.ndim == 0:
    raise ValueError("p_values: expected at least one axis (the family), got a scalar")
  if np.any((p < 0) | (p > 1)):
    raise ValueError("p_values: every p-value must lie in [0, 1]")
  missing = np.isnan(p)
  family_size = np.sum(~missing, axis=-1, keepdims=True)
  order = np.argsort(np.where(missing, np.inf, p), axis=-1, kind="stable")
  sorted_p = np.take_along_axis(p, order, axis=-1)
  rank = np.arange(p.shape[-1])
  scaled = np.minimum(1.0, (family_size - rank) * sorted_p)
  running = np.fmax.accumulate(scaled, axis=-1)
  running = np.where(np.isnan(sorted_p), np.nan, running)
  adjusted = np.empty_like(p)
  np.put_along_axis(adjusted, order, running, axis=-1)
  return adjusted


def hypothesis_verdicts(p_adjusted, estimate, expected_sign: int, alpha: float = ALPHA) -> np.ndarray:
  """Element-wise verdict: significant (p_adjusted < alpha) with the expected sign -> "supported", with
  the other sign -> "contradicted", else "inconclusive" (a NaN p is not significant)."""
  expected_sign = check_sign(expected_sign)
  significant = np.asarray(p_adjusted) < alpha
  side = np.sign(np.asarray(estimate)) * expected_sign
  return np.where(significant & (side > 0), "supported",
                  np.where(significant & (side < 0), "contradicted", "inconclusive"))


def _decided(result: HypothesisResult, p_adjusted: float, family_size: int) -> HypothesisResult:
  verdict = str(hypothesis_verdicts(p_adjusted, result.estimate, result.expected_sign, result.alpha))
  text = f"t({result.n - 1}) = {result.t:.3g}, p = {fmt_p(result.p_value)}"
  if family_size > 1:
    text += f", Holm-adjusted over {family_size} = {fmt_p(p_adjusted)}"
  text += f"; {result.k_of_n}/{result.n} seeds with the predicted sign; "
  text += {"supported": f"significant at alpha = {result.alpha:g} with the predicted sign",
           "contradicted": f"significant at alpha = {result.alpha:g} against the predicted sign",
           "inconclusive": f"not significant at alpha = {result.alpha:g}"}[verdict]
  return dataclasses.replace(result, p_adjusted=float(p_adjusted), family_size=family_size, verdict=verdict,
                             reason=text)


def test_hypothesis(values_S, expected_sign: int, *, name: str, min_seeds: int = MIN_SEEDS,
                    smoke: bool = False, alpha: float = ALPHA) -> HypothesisResult:
  """Tests that the per-seed effect `values_S` has sign `expected_sign` (+1 or -1), alone.

  Two-sided one-sample t test of mean 0 (`one_sample_t`), verdict by `hypothesis_verdicts` at alpha;
  "cannot be tested" (with the reason) for a smoke run or fewer than `min_seeds` seeds, the figures
  still reported. Use `hypothesis_family` / `test_family` for a declared family (Holm).
  """
  values_S = as_values(values_S, "values_S", allow_empty=True)
  expected_sign = check_sign(expected_sign)
  alpha = check_alpha(alpha)
  n = values_S.size
  k_of_n = int(np.sum(np.sign(values_S) == expected_sign))
  if n == 0:
    return dataclasses.replace(HypothesisResult.untestable(name, expected_sign, "0 seeds", alpha),
                               reason=untestable_reason(0, check_min_seeds(min_seeds), smoke))
  interval = t_interval(values_S, confidence=1 - alpha)
  mean, sd, t, p = (float(x) for x in one_sample_t(values_S))
  result = HypothesisResult(name, expected_sign, mean, interval.low, interval.high, 1 - alpha, n, sd,
                            mean / sd if sd > 0 else math.nan, t, p, math.nan, 0, alpha, k_of_n,
                            "cannot be tested", "")
  why_not = untestable_reason(n, check_min_seeds(min_seeds), smoke)
  if why_not is not None:
    return dataclasses.replace(result, p_value=math.nan, t=math.nan, reason=why_not)
  return _decided(result, p, 1)


test_hypothesis.__test__ = False  # Not a pytest test, though its name starts with "test".


def hypothesis_family(results: Sequence[HypothesisResult]) -> list[HypothesisResult]:
  """The results of one declared family, each verdict re-decided from Holm-adjusted p-values.

  The family is the hypotheses that could be tested ("cannot be tested" ones keep their verdict and
  do not count in m); all must share one alpha. Holm (1979), Scand. J. Statist. 6(2).
  """
  results = list(results)
  alphas = {r.alpha for r in results}
  if len(alphas) > 1:
    raise ValueError(f"hypothesis_family: one alpha per family, got {sorted(alphas)}")
  tested = [i for i, r in enumerate(results) if r.verdict != "cannot be tested"]
  adjusted = holm([results[i].p_value for i in tested]) if tested else []
  for i, p_adjusted in zip(tested, adjusted):
    results[i] = _decided(results[i], float(p_adjusted), len(tested))
  return results


def test_family(values_by_name: Mapping[str, np.ndarray], expected_signs: Mapping[str, int] | int, *,
                min_seeds: int = MIN_SEEDS, smoke: bool = False, alpha: float = ALPHA) -> dict[str, HypothesisResult]:
  """`test_hypothesis` of each named per-seed effect, then `hypothesis_family` over them (Holm)."""
  signs = expected_signs if isinstance(expected_signs, Mapping) else {k: expected_signs for k in values_by_name}
  missing = sorted(set(values_by_name) - set(signs))
  if missing:
    raise ValueError(f"expected_signs: no sign for {', '.join(missing)}")
  results = [test_hypothesis(v, signs[k], name=k, min_seeds=min_seeds, smoke=smoke, alpha=alpha)
             for k, v in values_by_name.items()]
  return {r.name: r for r in hypothesis_family(results)}


test_family.__test__ = False


def base_rate_excess(observed_S, base_rate_S) -> np.ndarray:
  """Per-seed excess of an observed fraction over its base rate (the fraction a null gives that seed):
  observed - base, the paired differences that `test_hypothesis(..., expected_sign=+1)` reads."""
  observed_S = as_values(observed_S, "observed_S", allow_empty=True)
  base_rate_S = as_values(base_rate_S, "base_rate_S", allow_empty=True)
  if observed_S.shape != base_rate_S.shape:
    raise ValueError(f"base_rate_S: expected shape {observed_S.shape} (one base rate per seed of observed_S), "
                     f"got {base_rate_S.shape}")
  return observed_S - base_rate_S


def verdict(low: float, high: float, expected_sign: int) -> HypothesisVerdict:
  """'supported' if the CI excludes 0 on the expected side, 'contradicted' if on the other side.

  Otherwise (CI contains 0, or is NaN) 'inconclusive'. expected_sign is +1 (effect > 0 predicted)
  or -1 (effect < 0 predicted). Applies no seed minimum and no family correction: new code uses
  `test_hypothesis` / `test_family`.
  """
  expected_sign = check_sign(expected_sign)
  low, high = float(low), float(high)
  if not (math.isfinite(low) and math.isfinite(high)):
    return "inconclusive"
  if low > 0:
    return "supported" if expected_sign == 1 else "contradicted"
  if high < 0:
    return "supported" if expected_sign == -1 else "contradicted"
  return "inconclusive"
