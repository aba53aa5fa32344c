"""Tests of critical periods: velocity, Fourier surrogates and their calibration on noise, coordination
against its circular-shift null, loss correlation against its base rate (numpy references, planted
bursts and loss drops)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mpcodec.core.errors import ConfigError, DataError
from mpcodec.metrics import critical_periods as cp

M = 401
STEPS = np.arange(M) * 5
NUM_SEEDS = 10
NUM_LAYERS = 6
NUM_SHIFTS = 200

# Every test runs these on (NUM_SEEDS, M, NUM_LAYERS) series so that each compiles once; alpha is traced.
_seed_periods = jax.jit(cp.seed_critical_periods, static_argnums=3)
_coordination = jax.jit(jax.vmap(cp.coordination))
_coordination_null = jax.jit(jax.vmap(cp.coordination_null, in_axes=(0, 0, None)), static_argnums=2)
_loss_correlation = jax.jit(jax.vmap(cp.loss_correlation))


def _periods(series_SxMxL, alpha=0.05, seed=0):
  return _seed_periods(series_SxMxL, STEPS, _keys(NUM_SEEDS, seed), 199, alpha)


def _keys(count, seed=0):
  return jax.random.split(jax.random.key(seed), count)


def _ar1(rng, phi, shape):
  noise = rng.normal(size=shape + (M,))
  x = np.zeros_like(noise)
  x[..., 0] = noise[..., 0] / np.sqrt(1 - phi**2)
  for t in range(1, M):
    x[..., t] = phi * x[..., t - 1] + noise[..., t]
  return x.astype(np.float32)


def _reference_windows(mask):
  """(start, end) of each maximal run of True, by a plain loop."""
  windows, start = [], None
  for t, value in enumerate(mask):
    if value and start is None:
      start = t
    if not value and start is not None:
      windows.append((start, t - 1))
      start = None
  if start is not None:
    windows.append((start, len(mask) - 1))
  return windows


def _reference_coordination(mask_LxW):
  fractions = [mask_LxW[:, t].mean() for t in range(mask_LxW.shape[1]) if mask_LxW[:, t].any()]
  return float(np.mean(fractions)) if fractions else 0.0


def _reference_base_rate(loss, span):
  pairs = [loss[a + span] < loss[a] for a in range(len(loss) - span)]
  return float(np.mean(pairs))


def _reference_loss_correlation(mask_LxW, loss):
  falls, bases = [], []
  for mask in mask_LxW:
    for start, end in _reference_windows(mask):
      falls.append(loss[end + 1] < loss[start])
      bases.append(_reference_base_rate(loss, end + 1 - start))
  if not falls:
    return 0.0, 0.0, 0
  return float(np.mean(falls)), float(np.mean(bases)), len(falls)


def test_velocity_matches_numpy_on_uneven_steps():
  rng = np.random.default_rng(0)
  series = rng.normal(size=(3, 12)).astype(np.float32)
  # Rounding jitter of a constant (a few float32 ulps) is no motion: velocity 0.
  series[2] = 4.0 + rng.integers(0, 3, size=12) * np.spacing(np.float32(4.0))
  assert np.ptp(series[2]) > 0
  steps = np.cumsum(rng.integers(1, 9, size=12))
  expected = np.zeros((3, 11))
  for i in range(2):
    span = series[i].max() - series[i].min()
    for t in range(11):
      expected[i, t] = (series[i, t + 1] - series[i, t]) / (steps[t + 1] - steps[t]) / span
  np.testing.assert_allclose(np.asarray(cp.velocity(series, steps)), expected, rtol=1e-5, atol=1e-7)


def test_phase_randomised_keeps_mean_and_amplitude_spectrum():
  rng = np.random.default_rng(1)
  for length in (64, 65):
    values = (rng.normal(size=length) + np.linspace(0, 3, length)).astype(np.float32)
    surrogate = np.asarray(cp.phase_randomised(values, jax.random.key(0)))
    np.testing.assert_allclose(np.abs(np.fft.rfft(surrogate)), np.abs(np.fft.rfft(values)), rtol=1e-3,
                               atol=1e-3)
    assert surrogate.mean() == pytest.approx(values.mean(), abs=1e-5)
    assert np.max(np.abs(surrogate - values)) > 0.5


def test_noise_alone_is_critical_at_the_calibrated_family_wise_rate():
  """White and AR(1) 0.8 noise: about alpha = 5% of series hold any critical interval at all."""
  rng = np.random.default_rng(2)
  for phi in (0.0, 0.8):
    noise = _ar1(rng, phi, (7, NUM_SEEDS, NUM_LAYERS))  # 420 series
    critical = [np.asarray(_periods(np.swapaxes(batch, 1, 2), seed=i).critical)
                for i, batch in enumerate(noise)]
    rate = float(np.mean(np.stack(critical).any(axis=-1)))
    assert 0.02 <= rate <= 0.09, (phi, rate)


def test_a_planted_jump_is_critical_where_it_happens():
  rng = np.random.default_rng(3)
  series = rng.normal(size=(NUM_SEEDS, M, NUM_LAYERS)).astype(np.float32)
  series[:, 201:, :] += 10.0
  critical = np.asarray(_periods(series, seed=1).critical)
  assert np.mean(critical[:, :, 200]) >= 0.95
  assert np.mean(critical.sum(axis=-1) == 1) >= 0.9  # and, mostly, nowhere else


def test_coordination_and_its_null_match_numpy():
  rng = np.random.default_rng(4)
  masks = rng.random((NUM_SEEDS, NUM_LAYERS, M - 1)) < 0.03
  masks[2] = False
  np.testing.assert_allclose(np.asarray(_coordination(masks)), [_reference_coordination(m) for m in masks],
                             rtol=1e-6)
  keys = _keys(NUM_SEEDS, 5)
  null = np.asarray(_coordination_null(masks, keys, NUM_SHIFTS))
  for s in range(3):
    offsets = np.asarray(cp.shift_offsets(keys[s], NUM_SHIFTS, NUM_LAYERS, M - 1))[:20]
    assert offsets.min() >= 0 and offsets.max() < M - 1
    expected = [_reference_coordination(np.stack([np.roll(masks[s, layer], offsets[d, layer])
                                                  for layer in range(NUM_LAYERS)]))
                for d in range(20)]
    np.testing.assert_allclose(null[s, :20], expected, rtol=1e-6)


def _coordination_effect(series_SxMxL, alpha):
  periods = _periods(series_SxMxL, alpha, seed=6)
  observed = np.asarray(_coordination(periods.critical))
  null = np.asarray(_coordination_null(periods.critical, _keys(NUM_SEEDS, 7), NUM_SHIFTS)).mean(axis=1)
  return cp.effect_over_seeds(observed, null, expected_sign=1), observed


def test_coordination_of_independent_noise_matches_its_null():
  rng = np.random.default_rng(8)
  noise = rng.normal(size=(NUM_SEEDS, M, NUM_LAYERS)).astype(np.float32)
  # alpha = 0.5 so that noise alone produces windows whose alignment can be measured. They are single,
  # scattered intervals: each critical interval holds one layer of six, as under the null.
  effect, observed = _coordination_effect(noise, 0.5)
  assert np.all(observed > 0)
  assert abs(effect["observed"] - 1 / NUM_LAYERS) < 0.02 and abs(effect["effect"]) < 0.02, effect
  # Denser independent masks overlap by chance as often as their shifted copies do.
  masks = rng.random((NUM_SEEDS, NUM_LAYERS, M - 1)) < 0.1
  observed = np.asarray(_coordination(masks))
  null = np.asarray(_coordination_null(masks, _keys(NUM_SEEDS, 8), NUM_SHIFTS))
  effect = cp.effect_over_seeds(observed, null.mean(axis=1))
  assert observed.mean() > 0.2 and effect["verdict"] == "inconclusive" and abs(effect["effect"]) < 0.02


def test_planted_simultaneous_bursts_coordinate_above_the_null():
  rng = np.random.default_rng(9)
  series = rng.normal(size=(NUM_SEEDS, M, NUM_LAYERS)).astype(np.float32)
  for s in range(NUM_SEEDS):
    for jump in rng.choice(np.arange(20, M - 20), size=3, replace=False):
      series[s, jump:, :] += 10.0 * rng.choice([-1.0, 1.0])
  effect, observed = _coordination_effect(series, 0.05)
  assert np.all(observed > 0.8)
  assert effect["verdict"] == "supported" and effect["ci_low"] > 0.4, effect


def test_loss_correlation_and_base_rate_match_numpy():
  rng = np.random.default_rng(10)
  masks = rng.random((NUM_SEEDS, NUM_LAYERS, M - 1)) < 0.02
  masks[0, 0, -3:] = True  # a window that runs to the last interval
  masks[3] = False
  loss = np.cumsum(rng.normal(size=(NUM_SEEDS, M)) - 0.02, axis=1).astype(np.float32)
  loss[1, 100:110] = loss[1, 99]  # ties: a flat loss does not fall
  out = _loss_correlation(masks, loss)
  for s in range(4):
    fraction, base, count = _reference_loss_correlation(masks[s], loss[s])
    assert int(out.num_windows[s]) == count
    assert float(out.falling_fraction[s]) == pytest.approx(fraction, abs=1e-6)
    assert float(out.base_rate[s]) == pytest.approx(base, abs=1e-5)
  base_M = np.asarray(jax.jit(cp.falling_base_rate)(loss[2]))
  np.testing.assert_allclose(base_M[1:50], [_reference_base_rate(loss[2], k) for k in range(1, 50)],
                             atol=1e-6)


def test_planted_critical_windows_at_loss_drops_beat_the_base_rate():
  rng = np.random.default_rng(11)
  series = rng.normal(size=(NUM_SEEDS, M, NUM_LAYERS)).astype(np.float32)
  loss = np.cumsum(0.1 * rng.normal(size=(NUM_SEEDS, M)), axis=1).astype(np.float32)
  for s in range(NUM_SEEDS):
    for jump in rng.choice(np.arange(20, M - 20), size=4, replace=False):
      series[s, jump:, :] += 10.0
      loss[s, jump:] -= 2.0
  periods = _periods(series, seed=12)
  out = _loss_correlation(periods.critical, loss)
  assert np.all(np.asarray(out.num_windows) > 0)
  effect = cp.effect_over_seeds(out.falling_fraction, out.base_rate, expected_sign=1)
  assert effect["observed"] > 0.9 and effect["null"] < 0.7
  assert effect["verdict"] == "supported" and effect["ci_low"] > 0.2, effect


def test_per_seed_functions_vmap_like_a_loop():
  rng = np.random.default_rng(13)
  series = rng.normal(size=(NUM_SEEDS, M, NUM_LAYERS)).astype(np.float32)
  batched = _periods(series, 0.5, seed=14)
  keys = _keys(NUM_SEEDS, 14)
  single_periods = jax.jit(cp.layer_critical_periods, static_argnums=3)
  for s in range(2):
    single = single_periods(series[s], STEPS, keys[s], 199, 0.5)
    np.testing.assert_allclose(np.asarray(batched.threshold[s]), np.asarray(single.threshold), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(batched.critical[s]), np.asarray(single.critical))
  # coordination, its null and loss_correlation are checked seed by seed against numpy loops above.


def test_effect_over_seeds_counts_exclusions_and_needs_five_seeds():
  effect = cp.effect_over_seeds([0.1, 0.2, 0.15, 0.3, 0.12, 0.18], [0.5, 0.6, 0.55, 0.0, 0.52, 0.61],
                                expected_sign=1, valid_S=[True, True, True, False, True, True])
  assert effect["num_excluded"] == 1 and effect["num_seeds"] == 5
  assert effect["verdict"] == "contradicted" and effect["ci_high"] < 0 and effect["p_value"] < 0.05
  few = cp.effect_over_seeds([0.9, 0.8, 0.7, 0.9, 0.8], [0.1] * 5, valid_S=[True, False, True, True, True])
  assert few["verdict"] == "cannot be tested" and "4 usable" in few["reason"] and few["effect"] == pytest.approx(0.725)
  smoke = cp.effect_over_seeds([0.9, 0.8, 0.7, 0.9, 0.8, 0.85], [0.1] * 6, smoke=True)
  assert smoke["verdict"] == "cannot be tested" and smoke["reason"] == "smoke run"


def test_uncoordinated_layers_have_no_effect_against_the_floor():
  """Layers critical at disjoint intervals: coordination is exactly 1/L, which a raw threshold of 0.3
  passes for L = 3, but coordination minus max(1/L, its null) is 0 and never supported."""
  rng = np.random.default_rng(15)
  num_layers, num_seeds = 3, 8
  masks = np.zeros((num_seeds, num_layers, M - 1), bool)
  for s in range(num_seeds):
    starts = rng.choice(np.arange(0, M - 10, 10), size=3 * num_layers, replace=False)
    for i, start in enumerate(starts):
      masks[s, i % num_layers, start:start + rng.integers(1, 5)] = True
  observed = np.asarray(jax.vmap(cp.coordination)(masks))
  np.testing.assert_allclose(observed, 1 / num_layers, rtol=1e-6)
  assert float(cp.coordination_floor(num_layers)) == pytest.approx(1 / 3)
  null = np.asarray(jax.vmap(cp.coordination_null, in_axes=(0, 0, None))(masks, _keys(num_seeds, 16), 100))
  floor_or_null = np.maximum(float(cp.coordination_floor(num_layers)), null.mean(axis=1))
  effect = cp.effect_over_seeds(observed, floor_or_null, expected_sign=1)
  assert np.all(observed > 0.3) and effect["effect"] <= 1e-6 and effect["verdict"] != "supported", effect


def test_bad_input_raises_one_clear_error():
  with pytest.raises(DataError, match="steps"):
    cp.velocity(np.zeros((2, 10)), np.arange(9))
  with pytest.raises(DataError, match="layer_critical_periods"):
    cp.critical_periods(np.zeros((2, 10)), np.arange(10), jax.random.key(0))
  with pytest.raises(ConfigError, match="alpha"):
    cp.surrogate_threshold(np.zeros(10), jax.random.key(0), alpha=1.5)
  with pytest.raises(DataError, match="layers >= 2"):
    cp.coordination(np.zeros((1, 10), bool))
  with pytest.raises(DataError, match="intervals \\+ 1"):
    cp.loss_correlation(np.zeros((2, 10), bool), np.zeros(10))
  with pytest.raises(DataError, match="NaN"):
    cp.effect_over_seeds([0.1, np.nan, 0.2], [0.0, 0.0, 0.0])
