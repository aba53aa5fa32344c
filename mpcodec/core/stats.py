"""Statistics across seeds on the host: percentile bootstrap CIs, standardized effects, verdicts.

Each seed is one independent replicate, so uncertainty is resampled over seeds. A verdict is computed
from the confidence interval only, so it can come out either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.stats

Verdict = Literal["supported", "contradicted", "inconclusive"]


def _as_values(values, name: str = "values") -> np.ndarray:
  values = np.asarray(values, dtype=np.float64)
  if values.ndim != 1 or values.size == 0:
    raise ValueError(f"{name}: expected a non-empty 1-D array, got shape {values.shape}")
  if not np.all(np.isfinite(values)):
    raise ValueError(f"{name}: contains NaN or Inf ({int(np.sum(~np.isfinite(values)))} entries)")
  return values


def bootstrap_ci(values_S, rng_seed: int = 0, num_resamples: int = 10000, confidence: float = 0.95,
                 statistic: Callable[..., np.ndarray] = np.mean) -> tuple[float, float, float]:
  """Percentile bootstrap: (statistic(values), low, high) over resamples of the seeds with replacement.

  low / high are the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the statistic over
  `num_resamples` resamples (`scipy.stats.bootstrap`, percentile method, resamples drawn from
  `np.random.default_rng(rng_seed)`); `statistic` must accept `axis=` (np.mean, np.median, ...). With a
  single value the interval is undefined: returns (value, nan, nan). Efron & Tibshirani (1993), ch. 13.
  """
  values_S = _as_values(values_S, "values_S")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
  if num_resamples < 1:
    raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
  estimate = float(statistic(values_S))
  num_values = values_S.size
  if num_values < 2:
    return estimate, math.nan, math.nan
  result = scipy.stats.bootstrap((values_S,), statistic, n_resamples=num_resamples, vectorized=True,
                                 confidence_level=confidence, method="percentile",
                                 rng=np.random.default_rng(rng_seed))
  return estimate, float(result.confidence_interval.low), float(result.confidence_interval.high)


def cohens_dz(differences_S) -> float:
  """Cohen's d_z of paired (per-seed) differences: mean(d) / sd(d), sd with ddof=1.

  NaN when fewer than 2 differences or when they have zero spread (the ratio is undefined).
  Cohen (1988), Statistical Power Analysis, section 2.3.
  """
  differences_S = _as_values(differences_S, "differences_S")
  if differences_S.size < 2:
    return math.nan
  spread = float(np.std(differences_S, ddof=1))
  return float(np.mean(differences_S)) / spread if spread > 0 else math.nan


def pooled_sd(group_a, group_b) -> float:
  """Pooled standard deviation sqrt(((n_a - 1) var_a + (n_b - 1) var_b) / (n_a + n_b - 2)).

  NaN when n_a + n_b < 3 (no degrees of freedom left).
  """
  group_a = _as_values(group_a, "group_a")
  group_b = _as_values(group_b, "group_b")
  dof = group_a.size + group_b.size - 2
  if dof < 1:
    return math.nan
  sum_squares = (np.sum(np.square(group_a - group_a.mean()))
                 + np.sum(np.square(group_b - group_b.mean())))
  return float(math.sqrt(sum_squares / dof))


def standardized_mean_difference(group_a, group_b) -> float:
  """Cohen's d between two independent groups: (mean(a) - mean(b)) / pooled_sd(a, b).

  NaN when the pooled SD is zero or undefined. Cohen (1988), section 2.2.
  """
  spread = pooled_sd(group_a, group_b)
  if not spread > 0:
    return math.nan
  return (float(np.mean(group_a)) - float(np.mean(group_b))) / spread


def verdict(low: float, high: float, expected_sign: int) -> Verdict:
  """'supported' if the CI excludes 0 on the expected side, 'contradicted' if on the other side.

  Otherwise (CI contains 0, or is NaN) 'inconclusive'. expected_sign is +1 (effect > 0 predicted)
  or -1 (effect < 0 predicted).
  """
  if expected_sign not in (1, -1):
    raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
  low, high = float(low), float(high)
  if not (math.isfinite(low) and math.isfinite(high)):
    return "inconclusive"
  if low > 0:
    return "supported" if expected_sign == 1 else "contradicted"
  if high < 0:
    return "supported" if expected_sign == -1 else "contradicted"
  return "inconclusive"
