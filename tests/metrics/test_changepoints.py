"""Jump detector: exact forward selection against numpy, size floor, invariances, and the validity harness."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from mpcodec.core.errors import DataError
from mpcodec.metrics import changepoint_model as model
from mpcodec.metrics import changepoint_surrogates as surrogates
from mpcodec.metrics import changepoint_validity as validity
from mpcodec.metrics import changepoints, step_regression

# Fewer surrogates than the default keep the test within its budget; the bars must hold with it too.
CFG = changepoints.DetectorConfig(calibration_surrogates=2000)
M = 400


@pytest.fixture(scope="module")
def table():
  return changepoints.calibrate(M, CFG, jax.random.key(0))


@pytest.fixture(scope="module")
def harness(table):
  return validity.validity_table(CFG, jax.random.key(1), num_measurements=M, trials=150, null_trials=500,
                                 table=table)


# ------------------------------------------------------------------------------------ validity harness


def test_harness_false_positives_meet_the_bar_on_every_null(harness):
  rates = harness["false_positives_per_1000"]
  for name in validity.BARRED_NULLS:
    assert rates[name] <= validity.FALSE_POSITIVE_BAR_PER_1000, (name, rates)
  worst = max(rates[name] for name in validity.BARRED_NULLS)
  assert harness["bars"]["false_positives_per_1000_max_on_nulls"] == worst


def _recall_cells(harness, noise, min_size, positions):
  return {(layout, position, size): value
          for layout, by_position in harness["recall"][noise].items()
          for position, by_size in by_position.items() if position in positions
          for size, value in by_size.items() if float(size) >= min_size}


def test_harness_recall_meets_the_bar_on_ar_noise(harness):
  cells = _recall_cells(harness, "ar_0.8", 4.0, validity.POSITIONS)
  assert len(cells) == 2 * 6  # sizes 4 and 8, at the 3 single-step layouts and the 3 steps of "multiple"
  assert min(cells.values()) >= validity.RECALL_BAR, cells


def test_harness_recall_meets_the_bar_on_white_noise_away_from_the_early_fall(harness):
  cells = _recall_cells(harness, "white", 2.0, ("middle", "late"))
  cells.update(_recall_cells(harness, "white", 4.0, ("early",)))
  assert min(cells.values()) >= validity.RECALL_BAR, cells


@pytest.mark.xfail(strict=True, reason="2-SD steps at 10% of the series, where the trend basis fits "
                   "training-curve falls, are localised within +-2 measurements about 0.87 of the time")
def test_harness_recall_bar_on_white_noise_at_the_early_position(harness):
  cells = _recall_cells(harness, "white", 2.0, ("early",))
  assert min(cells.values()) >= validity.RECALL_BAR, cells


def test_harness_recall_grows_with_size_and_table_is_valid_json(harness):
  for noise in validity.NOISES:
    single = harness["recall"][noise]["single_middle"]["middle"]
    values = [single[f"{size:g}"] for size in validity.SIZES]
    assert values[0] < 0.2 and values[-1] == 1.0 and values == sorted(values), (noise, values)
  json.dumps(harness, allow_nan=False)
  assert harness["bars"]["passed"] == (
      harness["bars"]["recall_white_min_at_2sd_and_more"] >= 0.9
      and harness["bars"]["recall_ar_0.8_min_at_4sd_and_more"] >= 0.9
      and harness["bars"]["false_positives_per_1000_max_on_nulls"] <= 2.0)


def test_harness_plants_early_steps_and_training_curve_decays(harness):
  index = harness["positions"]
  assert [index[name] for name in ("1pct", "2pct", "3pct", "5pct", "early")] == [4, 8, 12, 20, 40]
  for noise in validity.NOISES:
    table = harness["recall_by_position"][noise]
    assert table["positions"] == [0.01, 0.02, 0.03, 0.05, 0.1, 0.5, 0.9] and table["sizes"] == list(validity.SIZES)
    # Recall at 8 SD is the same table's single-step cell, read back by position.
    assert table["recall"][0][-1] == harness["recall"][noise]["single_1pct"]["1pct"]["8"]
  decays = [name for name in harness["false_positives_per_1000"] if "decay" in name]
  assert sorted(decays) == sorted(validity.TRAINING_CURVE_NULLS) and len(decays) == 8
  # Per-bin rates weighted by each bin's measurements add up to the null's overall rate.
  counts = np.bincount(validity._position_bins(M), minlength=len(validity.POSITION_BIN_EDGES) - 1)
  for name, rates in harness["false_positives_by_position_per_1000"].items():
    total = sum(r * c for r, c in zip(rates, counts) if r is not None) / M
    assert total == pytest.approx(harness["false_positives_per_1000"][name], rel=1e-6), name
  profile = validity.false_positive_profile(harness, M)
  assert profile.shape == (M,) and profile.sum() * 1000 / M == pytest.approx(
      np.mean([harness["false_positives_per_1000"][n] for n in validity.TRAINING_CURVE_NULLS]), rel=1e-6)


def test_recall_at_reads_the_table_and_interpolates(harness):
  table = harness["recall_by_position"]
  white, ar = (np.asarray(table[n]["recall"]) for n in ("white", "ar_0.8"))
  got = validity.recall_at(harness, np.array([0.5, 0.5, 0.05, 0.5]), np.array([2.0, 2.0, 4.0, 2.0]),
                           np.array([0.0, 0.8, 0.0, 0.4]), floor=0.0)
  assert got[0] == pytest.approx(white[5, 2]) and got[1] == pytest.approx(ar[5, 2])
  assert got[2] == pytest.approx(white[3, 3]) and got[3] == pytest.approx((white[5, 2] + ar[5, 2]) / 2)
  # Between sizes: linear in log2 size; beyond the table: clamped; never below the floor.
  between = validity.recall_at(harness, np.array([0.5]), np.array([np.sqrt(2.0)]), np.array([0.0]), floor=0.0)
  assert between[0] == pytest.approx((white[5, 1] + white[5, 2]) / 2)
  assert validity.recall_at(harness, np.array([0.999]), np.array([100.0]), np.array([0.99]))[0] == pytest.approx(
      ar[-1, -1])
  assert validity.recall_at(harness, np.array([0.5]), np.array([0.01]), np.array([0.8]))[0] >= validity.RECALL_FLOOR


def test_corrected_fraction_follows_its_formula():
  raw, corrected = validity.corrected_fraction(2, 4, recall_in=0.25, recall_out=0.8, expected_false_in=1.0,
                                               expected_false_out=2.0)
  assert raw == pytest.approx(2 / 6)
  true_in, true_out = (2 - 1.0) / 0.25, (4 - 2.0) / 0.8    # T = max(0, O - F) / r
  assert corrected == pytest.approx(true_in / (true_in + true_out))
  # More false positives than detections leave no true jump there; nothing anywhere gives NaN.
  assert validity.corrected_fraction(2, 4, 0.25, 0.8, 5.0, 0.0)[1] == 0.0
  assert np.isnan(validity.corrected_fraction(0, 0, 0.5, 0.5, 0.0, 0.0)[1])


def test_mean_recall_averages_the_table_over_positions_and_weighted_jumps(harness):
  positions, counts = np.array([0.5, 0.05, 0.5]), np.array([1.0, 2.0, 1.0])
  sizes, ars, weights = np.array([2.0, 8.0]), np.array([0.0, 0.0]), np.array([3.0, 1.0])
  got = validity.mean_recall(harness, positions, counts, sizes, ars, weights)
  cell = lambda p, d: validity.recall_at(harness, np.array([p]), np.array([d]), np.array([0.0]))[0]
  expected = sum(c * w * cell(p, d) for p, c in zip(positions, counts) for d, w in zip(sizes, weights))
  assert got == pytest.approx(expected / (counts.sum() * weights.sum()))
  assert np.isnan(validity.mean_recall(harness, positions, counts, sizes, ars, np.zeros(2)))


def test_matched_surrogates_follow_the_trend_and_ar1_of_each_series():
  num_measurements, num_surrogates = 300, 200
  trend = np.stack([np.linspace(0, 5, num_measurements), np.zeros(num_measurements)]).astype(np.float32)
  keys = jax.random.split(jax.random.key(3), 2)
  out = np.asarray(surrogates.matched_surrogates(trend, np.array([0.0, 0.8]), np.array([1.0, 2.0]), keys,
                                               num_surrogates))
  assert out.shape == (2, num_surrogates, num_measurements)
  noise = out - trend[:, None]
  assert noise[0].std() == pytest.approx(1.0, rel=0.05) and noise[1].std() == pytest.approx(2.0, rel=0.1)
  lag1 = [np.mean(n[:, 1:] * n[:, :-1]) / np.mean(n**2) for n in noise]
  assert abs(lag1[0]) < 0.03 and lag1[1] == pytest.approx(0.8, abs=0.03)
  again = np.asarray(surrogates.matched_surrogates(trend[1:], np.array([0.8]), np.array([2.0]), keys[1:],
                                                 num_surrogates))
  np.testing.assert_array_equal(again[0], out[1])   # a series' surrogates depend on its key alone


# ------------------------------------------------------------------------- forward selection vs numpy


def _numpy_gls_rss(y, design, phi):
  """RSS of the Prais-Winsten-whitened least-squares fit, written out with an explicit matrix."""
  num = len(y)
  whiten = np.eye(num) - phi * np.eye(num, k=-1)
  whiten[0, 0] = np.sqrt(1 - phi**2)
  coef, *_ = np.linalg.lstsq(whiten @ design, whiten @ y, rcond=None)
  return float(np.sum((whiten @ y - whiten @ design @ coef)**2))


def _numpy_forward(y, basis, phi, sigma, rounds, min_segment):
  num = len(y)
  design = np.concatenate([np.ones((num, 1)), basis], axis=1)
  chosen, scores = [], []
  for _ in range(rounds):
    base = _numpy_gls_rss(y, design, phi)
    best = (-1.0, None)
    for tau in range(min_segment, num - min_segment + 1):
      if any(abs(tau - c) < min_segment for c in chosen):
        continue
      step = (np.arange(num) >= tau).astype(float)[:, None]
      drop = (base - _numpy_gls_rss(y, np.concatenate([design, step], axis=1), phi)) / sigma**2
      best = max(best, (drop, tau), key=lambda pair: pair[0])
    chosen.append(best[1])
    scores.append(best[0])
    design = np.concatenate([design, (np.arange(num) >= best[1]).astype(float)[:, None]], axis=1)
  return chosen, scores


@pytest.mark.parametrize("phi", [0.0, 0.6])
def test_forward_selection_equals_exhaustive_numpy_gls(phi):
  rng = np.random.default_rng(3)
  num = 24
  basis = np.asarray(model.trend_basis(num, CFG), np.float64)
  assert basis.shape[1] == 2
  series = rng.standard_normal((3, num)) + 3.0 * (np.arange(num) >= 9) - 2.0 * (np.arange(num) >= 17)
  is_step, scores = step_regression.forward_steps(series, basis, np.full(3, phi), np.full(3, 0.7),
                                                  np.full(3, -np.inf), 3, 3)
  for n in range(3):
    chosen, expected = _numpy_forward(series[n], basis, phi, 0.7, 3, 3)
    np.testing.assert_allclose(np.asarray(scores[n]), expected, rtol=2e-3, atol=2e-3)
    assert sorted(np.flatnonzero(np.asarray(is_step[n])).tolist()) == sorted(chosen)


def test_forward_selection_stops_at_the_threshold():
  rng = np.random.default_rng(4)
  series = rng.standard_normal((1, 60)) + 5.0 * (np.arange(60) >= 30)
  basis = np.asarray(model.trend_basis(60, CFG))
  _, scores = step_regression.forward_steps(series, basis, [0.0], [1.0], [-np.inf], 3, 3)
  threshold = float((scores[0, 0] + scores[0, 1]) / 2)  # between the first and the second round's drop
  is_step, _ = step_regression.forward_steps(series, basis, [0.0], [1.0], [threshold], 3, 3)
  assert np.flatnonzero(np.asarray(is_step[0])).tolist() == [30]


def test_fit_levels_recovers_a_step_on_a_trend_exactly():
  t = np.arange(M)
  basis = model.trend_basis(M, CFG)
  trend = 5.0 * np.asarray(basis[:, 0]) - 3.0 * np.asarray(basis[:, 3])
  series = (trend + 2.0 * (t >= 150) + 7.0)[None]
  is_change = (t == 150)[None]
  fitted_trend, levels = model.fit_levels(series, is_change, basis)
  np.testing.assert_allclose(np.asarray(fitted_trend[0]), trend, atol=2e-4)
  np.testing.assert_allclose(np.asarray(levels[0]), 7.0 + 2.0 * (t >= 150), atol=2e-4)


# --------------------------------------------------------------------------------- detection behaviour


def _seeds(rng, num_seeds, step_size, position=200, phi=0.0):
  noise = np.asarray(validity.stationary_ar1(jax.random.key(int(rng.integers(1 << 30))), num_seeds, M, phi))
  return (noise + step_size * (np.arange(M) >= position)).astype(np.float32)


def test_detected_jump_has_its_size_sign_position_and_a_zero_duration(table):
  series = _seeds(np.random.default_rng(5), 5, -4.0)
  jumps = changepoints.detect(series, table, CFG, changepoints.minimum_jump_size(series))
  is_jump = np.asarray(jumps.is_jump_NxM)
  near = is_jump[:, 198:203]
  assert np.all(near.sum(axis=1) == 1), np.flatnonzero(is_jump.any(axis=0))
  position = 198 + np.argmax(near, axis=1)
  sizes = np.asarray(jumps.size_NxM)[np.arange(5), position]
  assert np.all(np.abs(sizes + 4.0) < 0.6), sizes
  assert np.all(np.asarray(jumps.size_NxM)[~is_jump] == 0)
  assert np.all(np.asarray(jumps.duration_NxM)[~is_jump] == 0)
  # A sharp step settles at once up to noise (the band test of DetectorConfig), never after ~a segment.
  assert np.all(np.asarray(jumps.duration_NxM)[np.arange(5), position] < 10)
  levels = np.asarray(jumps.level_NxM)
  np.testing.assert_allclose(levels[np.arange(5), position] - levels[np.arange(5), position - 1], sizes,
                             atol=1e-5)


def _numpy_duration(detrended, level, start, end, band, window):
  """First offset from `start` where every window mean of the next `window` starts is inside the band."""
  for t in range(start, end):
    def inside(u):
      stop = min(u + window, end)
      return abs(np.mean(detrended[u:stop]) - level) <= band
    if all(inside(u) for u in range(t, min(t + window, end))):
      return t - start
  return end - start


def test_duration_counts_measurements_until_the_new_level_holds():
  t = np.arange(M)
  approach = np.where(t >= 200, 10.0 - 8.0 * 0.6 ** np.clip(t - 200, 0, None), 0.0)
  approach = np.where(t >= 320, 13.0, approach)  # a second, sharp jump
  is_jump = ((t == 200) | (t == 320))[None]
  levels = np.where(t >= 320, 13.0, np.where(t >= 200, 10.0, 0.0))[None]
  noise = model.NoiseModel(np.zeros((1, M)), np.array([0.1]), np.array([0.0]), np.array([0.1]))
  duration = np.asarray(changepoints.durations(approach[None], levels, is_jump, noise, CFG))
  band_sd = CFG.settle_band_sds * 0.1 / np.sqrt(CFG.settle_window)
  expected_200 = _numpy_duration(approach, 10.0, 200, 320, max(CFG.settle_fraction * 10.0, band_sd),
                                 CFG.settle_window)
  assert expected_200 == 2
  assert duration[0, 200] == expected_200 and duration[0, 320] == 0
  assert np.count_nonzero(duration) == 1


def test_minimum_size_floor_refuses_steps_below_float32_resolution(table):
  t = np.arange(M)
  tiny = np.float32(10.0) + np.float32(2e-6) * (t >= 200)   # two float32 steps at 10
  seeds = np.repeat(tiny[None].astype(np.float32), 5, axis=0)
  floor = float(changepoints.minimum_jump_size(seeds))
  assert floor >= 16 * np.finfo(np.float32).eps * 10.0
  unfiltered = changepoints.detect(seeds, table, CFG, 0.0)
  assert np.all(np.asarray(unfiltered.num_jumps_N) == 1)  # the selection itself sees the step...
  filtered = changepoints.detect(seeds, table, CFG, changepoints.minimum_jump_size(seeds))
  assert np.all(np.asarray(filtered.num_jumps_N) == 0)    # ...the floor refuses it
  clear = np.repeat((10.0 + 1e-3 * (t >= 200))[None].astype(np.float32), 5, axis=0)
  assert np.all(np.asarray(changepoints.detect(clear, table, CFG,
                                               changepoints.minimum_jump_size(clear)).num_jumps_N) == 1)


def test_minimum_size_follows_the_seed_spread():
  rng = np.random.default_rng(7)
  seeds_SxMxL = rng.normal(0.0, [0.5, 2.0], size=(5, M, 2)).astype(np.float32) + 100.0
  sizes = np.asarray(changepoints.minimum_jump_size(seeds_SxMxL, factor=1.0))
  spread = np.median(np.std(seeds_SxMxL, axis=0, ddof=1), axis=0)
  np.testing.assert_allclose(sizes, spread, rtol=1e-5)
  with pytest.raises(DataError):
    changepoints.minimum_jump_size(seeds_SxMxL[:1])


def test_vmap_and_jit_over_seeds_equal_one_series_at_a_time(table):
  series = _seeds(np.random.default_rng(8), 5, 3.0, position=120, phi=0.5)
  detect_one = lambda y: changepoints.detect(y[None], table, CFG, 0.5)
  batched = jax.jit(jax.vmap(lambda y: jax.tree.map(lambda a: a[0], detect_one(y))))(series)
  together = changepoints.detect(series, table, CFG, 0.5)
  for n in range(5):
    alone = detect_one(series[n])
    for name in ("is_jump_NxM", "duration_NxM", "num_jumps_N"):
      assert np.array_equal(np.asarray(getattr(alone, name)[0]), np.asarray(getattr(batched, name)[n]))
      assert np.array_equal(np.asarray(getattr(alone, name)[0]), np.asarray(getattr(together, name)[n]))
    np.testing.assert_allclose(np.asarray(alone.size_NxM[0]), np.asarray(together.size_NxM[n]), atol=1e-4)


def test_constant_and_zero_series_give_no_jump_and_no_nan(table):
  series = np.stack([np.full(M, 7.25), np.zeros(M), np.full(M, -1e6)]).astype(np.float32)
  jumps = changepoints.detect(series, table, CFG, [changepoints.minimum_jump_size(np.stack([row, row]))
                                                   for row in series])
  assert np.all(np.asarray(jumps.num_jumps_N) == 0)
  for leaf in jax.tree.leaves(jumps):
    assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


def test_bad_input_is_named(table):
  series = np.zeros((2, M), np.float32)
  series[1, 5] = np.nan
  with pytest.raises(DataError, match="NaN"):
    changepoints.detect(series, table, CFG, 0.0)
  with pytest.raises(DataError, match="calibrated for 400"):
    changepoints.detect(np.zeros((2, 50), np.float32), table, CFG, 0.0)


def test_short_series_are_handled():
  short_cfg = changepoints.DetectorConfig(calibration_surrogates=200)
  short_table = changepoints.calibrate(5, short_cfg, jax.random.key(2))
  series = np.array([[1.0, 2.0, 3.0, 10.0, 11.0], [0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
  jumps = changepoints.detect(series, short_table, short_cfg, 0.0)
  for leaf in jax.tree.leaves(jumps):
    assert np.all(np.isfinite(np.asarray(leaf, np.float64)))
  assert int(jumps.num_jumps_N[1]) == 0
