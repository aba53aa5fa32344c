"""Tests of the bootstrap CI, effect sizes and verdict logic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpcodec.core import stats


def test_bootstrap_ci_covers_true_mean_with_normal_theory_width():
  rng = np.random.default_rng(3)
  values = rng.normal(loc=2.0, scale=1.0, size=60)
  estimate, low, high = stats.bootstrap_ci(values, rng_seed=0)
  assert estimate == pytest.approx(values.mean())
  assert low < 2.0 < high
  # The percentile interval of a mean is close to the normal-theory +-1.96 sd / sqrt(n) interval.
  expected_half_width = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
  assert (high - low) / 2 == pytest.approx(expected_half_width, rel=0.15)


def test_bootstrap_ci_is_deterministic_and_uses_the_statistic():
  values = np.array([1.0, 2.0, 3.0, 10.0, 11.0])
  assert stats.bootstrap_ci(values, rng_seed=5) == stats.bootstrap_ci(values, rng_seed=5)
  estimate, low, high = stats.bootstrap_ci(values, statistic=np.median, num_resamples=2000)
  assert estimate == 3.0
  assert low >= 1.0 and high <= 11.0 and low <= high
  # Percentile bootstrap by hand: the same resamples give the same quantiles.
  rng = np.random.default_rng(0)
  idx = rng.integers(0, 5, size=(2000, 5))
  medians = [float(np.median(values[row])) for row in idx]
  assert (low, high) == pytest.approx(tuple(np.quantile(medians, [0.025, 0.975])))


def numpy_percentile_bootstrap(values, rng_seed, num_resamples, confidence=0.95):
  """The percentile bootstrap written out: resample seeds with replacement, take the tail quantiles."""
  rng = np.random.default_rng(rng_seed)
  means = values[rng.integers(0, values.size, size=(num_resamples, values.size))].mean(axis=1)
  tail = (1 - confidence) / 2
  return tuple(np.quantile(means, [tail, 1 - tail]))


@pytest.mark.parametrize("size", [3, 16, 64])
def test_bootstrap_ci_equals_the_written_out_percentile_bootstrap(size):
  """scipy.stats.bootstrap draws the same resamples as the plain numpy formulation, so the intervals of
  every report are the same as they were when the bootstrap was written out here."""
  values = np.random.default_rng(size).normal(0.3, 1.0, size)
  _, low, high = stats.bootstrap_ci(values, rng_seed=7, num_resamples=4000)
  np.testing.assert_allclose((low, high), numpy_percentile_bootstrap(values, 7, 4000), rtol=1e-12)


def test_bootstrap_ci_single_value_and_bad_input():
  estimate, low, high = stats.bootstrap_ci([4.0])
  assert estimate == 4.0 and math.isnan(low) and math.isnan(high)
  with pytest.raises(ValueError, match="NaN"):
    stats.bootstrap_ci([1.0, float("nan")])
  with pytest.raises(ValueError, match="non-empty"):
    stats.bootstrap_ci([])
  with pytest.raises(ValueError, match="confidence"):
    stats.bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_effect_sizes_against_hand_computation():
  differences = [1.0, 2.0, 3.0, 6.0]
  mean = 3.0
  sd = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + 0 + (6 - mean) ** 2) / 3)
  assert stats.cohens_dz(differences) == pytest.approx(mean / sd)
  assert math.isnan(stats.cohens_dz([1.0]))
  assert math.isnan(stats.cohens_dz([2.0, 2.0]))
  a, b = [1.0, 2.0, 3.0], [4.0, 6.0]
  pooled = math.sqrt((2.0 + 2.0) / 3)  # sum of squares 2 in a, 2 in b, 3 dof
  assert stats.pooled_sd(a, b) == pytest.approx(pooled)
  assert stats.standardized_mean_difference(a, b) == pytest.approx((2.0 - 5.0) / pooled)
  assert math.isnan(stats.standardized_mean_difference([1.0], [2.0]))


@pytest.mark.parametrize("low,high,sign,expected", [
    (0.1, 0.5, 1, "supported"),
    (0.1, 0.5, -1, "contradicted"),
    (-0.5, -0.1, -1, "supported"),
    (-0.5, -0.1, 1, "contradicted"),
    (-0.1, 0.5, 1, "inconclusive"),
    (-0.1, 0.5, -1, "inconclusive"),
    (0.0, 0.5, 1, "inconclusive"),
    (float("nan"), float("nan"), 1, "inconclusive"),
])
def test_verdict(low, high, sign, expected):
  assert stats.verdict(low, high, sign) == expected


def test_verdict_rejects_bad_sign():
  with pytest.raises(ValueError, match="expected_sign"):
    stats.verdict(0.1, 0.2, 0)
