"""Tests of stabilisation, depth-order correlation and convergence order: numpy references and planted
settling (decay then flat, a trend, stationary noise, bottom-up and top-down layer stacks)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import scipy.stats

from mpcodec.core.errors import ConfigError, DataError, MpcodecError
from mpcodec.metrics import convergence

M = 401

_stabilisation = jax.jit(convergence.stabilisation)
_band = jax.jit(convergence.stabilisation_band)
_index = jax.jit(convergence.stabilisation_index)
_depth_order = jax.jit(convergence.depth_order_correlation)


def _reference_band(series_SxMxL, tail_fraction=0.2, family_alpha=0.05, seed_multiplier=1.0):
  num_seeds, num_measurements, num_layers = series_SxMxL.shape
  tail = max(3, math.ceil(tail_fraction * num_measurements))
  finals = np.zeros((num_seeds, num_layers))
  band = np.zeros((num_seeds, num_layers))
  for s in range(num_seeds):
    for layer in range(num_layers):
      y = series_SxMxL[s, -tail:, layer].astype(np.float64)
      slope, intercept = np.polyfit(np.arange(tail), y, 1)
      r = y - (slope * np.arange(tail) + intercept)
      phi = min(max(sum(r[i] * r[i + 1] for i in range(tail - 1)) / sum(r * r), 0.0), 0.9)
      inflation = (1 + phi) / (1 - phi)
      sigma = math.sqrt(float(np.sum(r**2)) / max(tail - 2 * inflation, tail / 4))
      dof = max(math.floor(tail * (1 - phi**2) / (1 + phi**2)) - 2, 3)
      quantile = scipy.stats.t.ppf(1 - family_alpha / (2 * num_measurements), dof)
      finals[s, layer] = y.mean()
      band[s, layer] = quantile * sigma * math.sqrt(1 + inflation / tail)
  spread = np.std(finals, axis=0, ddof=1) if num_seeds > 1 else np.zeros(num_layers)
  resolution = 16 * np.finfo(np.float32).eps * np.max(np.abs(series_SxMxL), axis=1)
  return np.maximum(np.maximum(band, seed_multiplier * spread[None, :]), resolution)


def _reference_index(series_M, band, tail_fraction=0.2):
  num_measurements = len(series_M)
  tail = max(3, math.ceil(tail_fraction * num_measurements))
  y = series_M[-tail:].astype(np.float64)
  final = y.mean()
  slope = np.polyfit(np.arange(tail), y, 1)[0]
  if abs(slope) * (tail - 1) > band:
    return num_measurements
  index = 0
  for t in range(num_measurements):
    if abs(series_M[t] - final) > band:
      index = t + 1
  return index


def _settling_stack(rng, settle_at_L, num_seeds=5, noise=0.01):
  """Layers that fall linearly from 1 to 0 until their settling index, then stay at 0, plus noise."""
  t_M = np.arange(M)
  clean_ML = np.stack([np.clip(1 - t_M / settle, 0, None) for settle in settle_at_L], axis=1)
  return (clean_ML[None] + noise * rng.normal(size=(num_seeds, M, len(settle_at_L)))).astype(np.float32)


def test_band_and_index_match_numpy_reference():
  rng = np.random.default_rng(0)
  series = _settling_stack(rng, [60, 150, 250, 300, 350], noise=0.05)
  series[:, :, 2] += rng.normal(size=(5, 1))  # seeds end at different levels: the seed spread counts
  ar = np.zeros((5, M))
  for t in range(1, M):
    ar[:, t] = 0.7 * ar[:, t - 1] + 0.05 * rng.normal(size=5)
  series[:, :, 3] += ar  # autocorrelated residuals widen the band
  band = np.asarray(_band(series))
  np.testing.assert_allclose(band, _reference_band(series), rtol=2e-4)
  assert band[0, 2] == pytest.approx(np.std(series[:, -81:, 2].mean(axis=1), ddof=1), rel=1e-4)
  assert band[0, 3] > 1.5 * band[0, 4]
  out = _stabilisation(series)
  expected = np.array([[_reference_index(series[s, :, layer], band[s, layer]) for layer in range(5)]
                       for s in range(5)])
  np.testing.assert_array_equal(np.asarray(out["index"]), expected)
  np.testing.assert_allclose(np.asarray(out["final_level"]), series[:, -81:, :].mean(axis=1), atol=1e-6)


def test_decay_then_flat_settles_where_it_flattens_and_a_trend_never_settles():
  rng = np.random.default_rng(1)
  flat = _settling_stack(rng, [100] * 5)
  index = np.asarray(_stabilisation(flat)["index"])
  # The band is about 4 noise SDs = 4 measurements of the ramp: settling is seen just before 100. The
  # flat part's noise leaves the band later in about family_alpha = 5% of series (here 2 of 25).
  assert np.mean((index >= 90) & (index <= 101)) >= 0.8, index
  assert np.all(index >= 90) and np.all(index < M), index
  trend = (np.arange(M)[None, :, None] / M + 0.01 * rng.normal(size=(5, M, 5))).astype(np.float32)
  out = _stabilisation(trend)
  assert np.all(np.asarray(out["index"]) == M) and np.all(np.asarray(out["never_stable"]))


def test_stationary_noise_is_stable_from_the_start_at_the_family_wise_rate():
  """Noise around a constant level is at its final level from the first measurement: index 0, except
  for the ~5% of series whose noise leaves the band somewhere (family-wise); never "never stable"."""
  rng = np.random.default_rng(2)
  white = rng.normal(size=(5, M, 40))
  ar = np.zeros((5, M, 40))
  for t in range(1, M):
    ar[:, t] = 0.8 * ar[:, t - 1] + rng.normal(size=(5, 40))
  for noise in (white, ar):
    out = _stabilisation(noise.astype(np.float32))
    index = np.asarray(out["index"])
    assert 0.90 <= np.mean(index == 0) <= 1.0
    assert not np.any(np.asarray(out["never_stable"]))
    assert not np.any(np.asarray(out["constant"]))


def test_a_narrower_band_would_let_noise_decide():
  """The band's family-wise quantile matters: at 2 SD instead, noise alone makes stable-at-0 rare."""
  rng = np.random.default_rng(3)
  noise = rng.normal(size=(5, M, 40)).astype(np.float32)
  band = np.full((5, 40), 2.0, np.float32)
  index = np.asarray(_index(np.swapaxes(noise, 1, 2), band))
  assert np.mean(index == 0) < 0.05 and np.median(index) > M / 2


def test_constant_series_settles_at_zero_and_is_flagged():
  series = np.full((3, 50, 2), 3.3, np.float32)
  series[:, :, 1] = np.linspace(0, 1, 50)[None, :]
  out = _stabilisation(series)
  np.testing.assert_array_equal(np.asarray(out["index"])[:, 0], 0)
  np.testing.assert_array_equal(np.asarray(out["constant"]), [[True, False]] * 3)
  np.testing.assert_array_equal(np.asarray(out["index"])[:, 1], 50)


def test_stabilisation_index_vmaps_over_seeds():
  rng = np.random.default_rng(4)
  series_SxLxM = rng.normal(size=(3, 4, 60)).cumsum(axis=-1).astype(np.float32)
  band_SxL = np.abs(rng.normal(size=(3, 4))).astype(np.float32) * 3
  vmapped = jax.jit(jax.vmap(convergence.stabilisation_index))(series_SxLxM, band_SxL)
  looped = [_index(series_SxLxM[s], band_SxL[s]) for s in range(3)]
  np.testing.assert_array_equal(np.asarray(vmapped), np.stack(looped))
  runs = np.stack([np.swapaxes(series_SxLxM, 1, 2)] * 2)
  batched = jax.jit(jax.vmap(convergence.stabilisation_band))(runs)
  np.testing.assert_allclose(np.asarray(batched[1]), np.asarray(_band(runs[1])), rtol=1e-6)


def test_depth_order_correlation_matches_scipy_with_ties():
  rng = np.random.default_rng(5)
  steps = rng.integers(0, 4, size=(20, 6)).astype(np.float32)
  steps[0] = 7.0  # every layer settles together: no ranking
  depth = np.arange(6, dtype=np.float32)
  rho, tied = _depth_order(steps, depth)
  rho, tied = np.asarray(rho), np.asarray(tied)
  assert rho[0] == 0 and tied[0] and not np.any(tied[1:])
  for s in range(1, 20):
    assert rho[s] == pytest.approx(scipy.stats.spearmanr(depth, steps[s]).statistic, abs=1e-6)


def test_planted_bottom_up_and_top_down_stacks_are_recognised():
  rng = np.random.default_rng(6)
  settle_L = [60, 100, 140, 180, 220]
  depth = np.arange(5)
  for order, settle in (("bottom-up", settle_L), ("top-down", settle_L[::-1])):
    series = _settling_stack(rng, settle)
    index = _stabilisation(series)["index"]
    rho, _ = _depth_order(index, depth)
    result = convergence.convergence_order(rho)
    assert result["order"] == order, result
    assert (result["ci_low"] > 0) if order == "bottom-up" else (result["ci_high"] < 0)


def test_convergence_order_simultaneous_unclear_and_too_few_seeds():
  assert convergence.convergence_order(np.zeros(5))["order"] == "simultaneous"
  assert convergence.convergence_order([0.1, -0.05, 0.0, 0.05, -0.1])["order"] == "simultaneous"
  unclear = convergence.convergence_order([0.9, -0.9, 0.8, -0.7, 0.1])
  assert unclear["order"] == "unclear" and unclear["ci_low"] < -0.3 < 0.3 < unclear["ci_high"]
  few = convergence.convergence_order([0.9, 0.8])
  assert few["order"] == "cannot be tested" and few["ci_low"] is None and "2 seed" in few["reason"]


def test_bad_input_raises_one_clear_error():
  with pytest.raises(DataError, match="seeds, measurements, layers"):
    convergence.stabilisation_band(np.zeros((5, 10)))
  with pytest.raises(ConfigError, match="tail_fraction"):
    convergence.stabilisation_band(np.zeros((2, 10, 3)), tail_fraction=1.5)
  with pytest.raises(DataError, match="band_N needs the leading shape"):
    convergence.stabilisation_index(np.zeros((4, 10)), np.zeros(3))
  with pytest.raises(DataError, match="too short"):
    convergence.stabilisation_index(np.zeros((4, 3)), np.zeros(4))
  with pytest.raises(DataError, match="at least 2 layers"):
    convergence.depth_order_correlation(np.zeros((3, 1)), np.zeros(1))
  with pytest.raises(MpcodecError, match="NaN"):
    convergence.convergence_order([0.1, float("nan"), 0.2])
