"""Intervals and effect sizes over seeds: Student t, BCa and percentile bootstrap, Cohen's d.

Each seed is one independent replicate. The Student t interval on per-seed values is the default; the
BCa bootstrap is for a statistic that is not a mean; the percentile bootstrap (`bootstrap_ci`) stays for
the callers that still use it, but with few seeds it is anti-conservative (its false-positive rate under
a null is 26.8% at 2 seeds, 12% at 3 and 7.8% at 5 against a nominal 2.5% per side).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable

import numpy as np
import scipy.stats

from mpcodec.core.stats.rules import MIN_SEEDS, as_values, check_min_seeds


@dataclasses.dataclass(frozen=True)
class Interval:
  """An estimate over seeds with its interval; sd is the seeds' standard deviation (ddof=1)."""
  estimate: float
  low: float
  high: float
  n: int
  sd: float
  method: str
  confidence: float


def seed_moments(values_xS) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
  """(mean, sd, standard error, n) over the last (seed) axis; sd with ddof=1, NaN for one seed."""
  values_xS = np.asarray(values_xS, dtype=np.float64)
  num_seeds = values_xS.shape[-1]
  mean = values_xS.mean(axis=-1)
  if num_seeds < 2:
    nan = np.full(mean.shape, np.nan)
    return mean, nan, nan, num_seeds
  sd = values_xS.std(axis=-1, ddof=1)
  return mean, sd, sd / math.sqrt(num_seeds), num_seeds


def t_interval(values_S, confidence: float = 0.95) -> Interval:
  """Student t interval of the mean over seeds: mean +- t_{(1+c)/2, n-1} sd / sqrt(n).

  Exact for normal per-seed values and robust to moderate skew from about 5 seeds; NaN bounds for a
  single seed. Student (1908), Biometrika 6(1).
  """
  values_S = as_values(values_S, "values_S")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
  mean, sd, se, n = seed_moments(values_S)
  if n < 2:
    low = high = math.nan
  else:
    half = float(scipy.stats.t.ppf((1 + confidence) / 2, n - 1)) * float(se)
    low, high = float(mean) - half, float(mean) + half
  return Interval(float(mean), low, high, n, float(sd), "Student t", confidence)


def bca_interval(values_S, statistic: Callable[..., np.ndarray], confidence: float = 0.95,
                 num_resamples: int = 10000, rng_seed: int = 0, min_seeds: int = MIN_SEEDS) -> Interval:
  """Bias-corrected and accelerated bootstrap interval of `statistic` over seeds (a median, a ratio).

  scipy.stats.bootstrap(method="BCa"), resamples from np.random.default_rng(rng_seed); `statistic` must
  accept `axis=`. The BCa interval is anti-conservative below about 10 seeds (it is built on the
  resampled seeds, which cannot show tails they do not hold), so it is refused below `min_seeds`; for a
  mean use `t_interval`. Efron (1987), JASA 82(397).
  """
  values_S = as_values(values_S, "values_S")
  min_seeds = check_min_seeds(min_seeds)
  if values_S.size < min_seeds:
    raise ValueError(f"bca_interval: {values_S.size} seeds, at least {min_seeds} needed (a bootstrap over "
                     "fewer seeds is anti-conservative)")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
  estimate = float(statistic(values_S))
  sd = float(np.std(values_S, ddof=1))
  if np.all(values_S == values_S[0]):
    # Every resample is the same: the interval is the point (scipy would warn and return NaN).
    return Interval(estimate, estimate, estimate, values_S.size, sd, "BCa bootstrap", confidence)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
    result = scipy.stats.bootstrap((values_S,), statistic, n_resamples=num_resamples, vectorized=True,
                                   confidence_level=confidence, method="BCa",
                                   rng=np.random.default_rng(rng_seed))
  return Interval(estimate, float(result.confidence_interval.low), float(result.confidence_interval.high),
                  values_S.size, sd, "BCa bootstrap", confidence)


def bootstrap_ci(values_S, rng_seed: int = 0, num_resamples: int = 10000, confidence: float = 0.95,
                 statistic: Callable[..., np.ndarray] = np.mean) -> tuple[float, float, float]:
  """Percentile bootstrap: (statistic(values), low, high) over resamples of the seeds with replacement.

  low / high are the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the statistic over
  `num_resamples` resamples (`scipy.stats.bootstrap`, percentile method, resamples drawn from
  `np.random.default_rng(rng_seed)`); `statistic` must accept `axis=` (np.mean, np.median, ...). With a
  single value the interval is undefined: returns (value, nan, nan). Anti-conservative with few seeds:
  verdicts use `t_interval` / `test_hypothesis` instead. Efron & Tibshirani (1993), ch. 13.
  """
  values_S = as_values(values_S, "values_S")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
  if num_resamples < 1:
    raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
  estimate = float(statistic(values_S))
  if values_S.size < 2:
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
  differences_S = as_values(differences_S, "differences_S")
  if differences_S.size < 2:
    return math.nan
  spread = float(np.std(differences_S, ddof=1))
  return float(np.mean(differences_S)) / spread if spread > 0 else math.nan


def pooled_sd(group_a, group_b) -> float:
  """Pooled standard deviation sqrt(((n_a - 1) var_a + (n_b - 1) var_b) / (n_a + n_b - 2)).

  NaN when n_a + n_b < 3 (no degrees of freedom left).
  """
  group_a = as_values(group_a, "group_a")
  group_b = as_values(group_b, "group_b")
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
