"""Jumps (change points) in dimensionality series, with a penalty calibrated on jump-free AR(1) surrogates.

Model (`changepoint_model`): smooth trend + piecewise-constant levels + AR(1) noise. A jump is a change
of level, at least `min_segment` measurements from any other jump and from either end; a change of slope
is not modelled (a kink is found only where it is steep enough to look like a step).

Algorithm: forward selection of steps in the exact Gaussian likelihood of that model
(`step_regression`): the series, trend basis and candidate steps are prewhitened by the estimated AR(1)
(Prais-Winsten), and each round adds the step whose addition most lowers the residual sum of squares
with the trend and every level refitted jointly, until the drop (in units of the innovation variance)
falls below the calibrated penalty. It is binary segmentation with a global refit, every position a
candidate (ruptures' `jump=1`). Why not PELT / optimal partitioning on detrended residuals: a trend
fitted without the steps keeps most of each step (85 to 90% of its sum of squares), and a trend fitted
around an imperfect first partition keeps the rest; a segment cost on the residual then finds ramps,
not steps. The joint refit needs no partition to be right first. All rounds of all series run in one
jitted programme (a `lax.scan` over rounds, each scoring every position from suffix sums in
O(M (K + rounds))), so no Python loop runs over series.

Passes. (1) AR(1) estimated robustly (trimmed variances of differences), a first selection; (2) AR(1)
re-estimated by lag-1 autocorrelation of the residual with those levels removed, the final selection
from scratch. Jumps below the minimum size are then dropped, and trend, levels and sizes refitted.

Calibration (`calibrate`, once per series length). The penalty depends on the estimated AR
coefficient. Surrogates are AR(1) series with no jump, phi uniform on [0, 0.99] (a trend needs no
simulating: the fit is linear, and a trend in the basis leaves the residual unchanged). Each pass is
calibrated on what the detector does in it: the first on the robust estimate, the second on the lag-1
estimate after the first pass has run with its calibrated penalties. On each surrogate
`calibration_max_changes` forward rounds run with no threshold; their best drops s_1, s_2, ... give its
number of jumps at any penalty (the leading s_r above it). For each grid value of the ESTIMATED
coefficient (surrogates weighted by linear-interpolation weights in their estimate, which is what the
detector knows), the penalty is the smallest at which the weighted mean number of jumps per 1,000
measurements is at most `false_positives_per_1000`; `detect` interpolates at each series' estimate.
`changepoint_validity.validity_table` measures recall and false positives. Known limit: a 2-SD step
on white noise at 10% of the series, where the trend's fast exponentials live, is placed within +-2
measurements only about 0.87-0.91 of the time (0.93-0.97 in mid-series), mostly misplaced by 3-8.

Minimum size. A jump must also have |size| >= `minimum_jump_size` (seed-to-seed spread, never below
`resolution_ulps` float32 steps of the series' magnitude), so rounding-level changes are never jumps.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core.errors import ConfigError, DataError
from mpcodec.metrics import changepoint_model as model
from mpcodec.metrics import step_regression
from mpcodec.metrics.changepoint_model import (FLOAT32_EPS, FLOAT32_TINY, DetectorConfig, NoiseModel,
                                               fit_noise)
from mpcodec.metrics.shapes import check_axis, check_rank

__all__ = ["DetectorConfig", "NoiseModel", "PenaltyTable", "Jumps", "fit_noise", "calibrate",
           "penalty_for", "minimum_jump_size", "durations", "detect"]


class PenaltyTable(NamedTuple):
  """Penalties (units of the innovation variance) at each estimated AR coefficient, for one length.

  penalties_G: the final pass's, at the lag-1 estimate; first_pass_penalties_G: the first pass's, at the
  robust estimate.
  """

  ar_coefficients_G: jax.Array
  penalties_G: jax.Array
  first_pass_penalties_G: jax.Array
  num_measurements: int


class Jumps(NamedTuple):
  """Detected jumps as masks over positions (a jump at t: level from t on differs from level before t).

  is_jump_NxM: bool; size_NxM: level after minus level before (0 where no jump); duration_NxM: int32
  measurements until the new level holds (0 where no jump, or an immediate step); num_jumps_N;
  level_NxM: the fitted piecewise-constant levels; fitted_NxM: trend + levels; noise: the final model.
  """

  is_jump_NxM: jax.Array
  size_NxM: jax.Array
  duration_NxM: jax.Array
  num_jumps_N: jax.Array
  level_NxM: jax.Array
  fitted_NxM: jax.Array
  noise: NoiseModel


# ------------------------------------------------------------------------------------ minimum size


def minimum_jump_size(series_SxM, factor: float = 1.0, resolution_ulps: float = 16.0) -> jax.Array:
  """Smallest |size| a jump may have: max(factor x typical seed-to-seed SD, float32 resolution floor).

  series_SxM: the same (run, layer, measure) for S >= 2 seeds, (S, M) -> (), or (S, M, L) -> (L,).
  typical SD = median over measurements of the SD across seeds (ddof 1): a change smaller than how much
  seeds of one configuration differ at the same step is not a property of that configuration.
  floor = resolution_ulps x float32 eps x max |series|: changes near float32 rounding are never jumps,
  and a series of zeros still gets a positive floor (the smallest normal float32).
  """
  shape = check_rank("minimum_jump_size", "series_SxM", series_SxM, (2, 3), "seeds S >= 2, measurements[, layers]")
  if shape[0] < 2:
    raise DataError(f"minimum_jump_size: series_SxM needs S >= 2 seeds on axis 0, got shape {shape}")
  series = jnp.asarray(series_SxM, jnp.float32)
  if factor < 0 or resolution_ulps < 1:
    raise ConfigError(f"factor must be >= 0 and resolution_ulps >= 1, got {factor}, {resolution_ulps}")
  spread = jnp.median(jnp.std(series, axis=0, ddof=1), axis=0)
  floor = jnp.maximum(resolution_ulps * FLOAT32_EPS * jnp.max(jnp.abs(series), axis=(0, 1)), FLOAT32_TINY)
  return jnp.maximum(factor * spread, floor)


# ------------------------------------------------------------------------------------- calibration


def _simulate_ar1(key, num_series: int, num_measurements: int, max_phi: float):
  """AR(1) series with unit innovations, stationary start, phi ~ U[0, max_phi]: ((N, M), (N,))."""
  phi_key, start_key, noise_key = jax.random.split(key, 3)
  phi_N = jax.random.uniform(phi_key, (num_series,), maxval=max_phi)
  start_N = jax.random.normal(start_key, (num_series,)) / jnp.sqrt(1.0 - phi_N**2)
  innovations_MxN = jax.random.normal(noise_key, (num_measurements - 1, num_series))

  def step(previous_N, innovation_N):
    value = phi_N * previous_N + innovation_N
    return value, value

  _, rest_MxN = jax.lax.scan(step, start_N, innovations_MxN)
  return jnp.concatenate([start_N[None], rest_MxN], axis=0).T, phi_N


def _hat_weights(values_N: jax.Array, grid_G: np.ndarray) -> jax.Array:
  """Linear-interpolation weights of each value on the grid's hat functions, (G, N)."""
  left = np.concatenate([[grid_G[0] - 1.0], grid_G[:-1]])
  right = np.concatenate([grid_G[1:], [grid_G[-1] + 1.0]])
  grid, left, right = (jnp.asarray(a, jnp.float32)[:, None] for a in (grid_G, left, right))
  rising = (values_N - left) / (grid - left)
  falling = (right - values_N) / (right - grid)
  # Values beyond the grid's ends belong wholly to the end points (clipped estimates sit exactly there).
  rising = jnp.where(grid == grid_G[0], 1.0, rising)
  falling = jnp.where(grid == grid_G[-1], 1.0, falling)
  return jnp.clip(jnp.minimum(rising, falling), 0.0, 1.0)


# Surrogates draw phi up to here, beyond max_ar_coefficient, because detrending lowers the estimate.
SURROGATE_MAX_AR = 0.99
# Penalties are searched on this grid (units of the innovation variance); the step bounds their error.
PENALTY_SEARCH_STEP = 0.05
PENALTY_SEARCH_MAX = 200.0


def _counts_by_penalty(series_NxM, noise: NoiseModel, cfg: DetectorConfig):
  """Number of jumps forward selection would find at each searched penalty, (N, P), and the penalties."""
  basis = model.trend_basis(series_NxM.shape[1], cfg)
  no_threshold = jnp.full(series_NxM.shape[:1], -jnp.inf)
  _, scores_NxR = step_regression.forward_steps(series_NxM, basis, noise.ar_coefficient_N,
                                                noise.innovation_sd_N, no_threshold,
                                                cfg.calibration_max_changes, cfg.min_segment)
  penalties_P = jnp.arange(0.0, PENALTY_SEARCH_MAX, PENALTY_SEARCH_STEP)
  # Forward selection stops at the first round below the penalty: count the leading rounds above it.
  above_NxPxR = scores_NxR[:, None, :] >= penalties_P[None, :, None]
  return jnp.sum(jnp.cumprod(above_NxPxR, axis=2), axis=2), penalties_P


@functools.partial(jax.jit, static_argnames=("num_measurements", "cfg"))
def _first_pass_counts(key, num_measurements: int, cfg: DetectorConfig):
  series_NxM, _ = _simulate_ar1(key, cfg.calibration_surrogates, num_measurements, SURROGATE_MAX_AR)
  noise = model.robust_noise(series_NxM, cfg)
  counts_NxP, penalties_P = _counts_by_penalty(series_NxM, noise, cfg)
  return series_NxM, noise.ar_coefficient_N, counts_NxP, penalties_P


@functools.partial(jax.jit, static_argnames=("cfg",))
def _final_pass_counts(series_NxM, ar_grid_G, first_penalties_G, cfg: DetectorConfig):
  first = model.robust_noise(series_NxM, cfg)
  basis = model.trend_basis(series_NxM.shape[1], cfg)
  first_changes, _ = step_regression.forward_steps(
      series_NxM, basis, first.ar_coefficient_N, first.innovation_sd_N,
      jnp.interp(first.ar_coefficient_N, ar_grid_G, first_penalties_G), cfg.max_forward_steps,
      cfg.min_segment)
  noise = fit_noise(series_NxM, cfg, first_changes)
  counts_NxP, _ = _counts_by_penalty(series_NxM, noise, cfg)
  return noise.ar_coefficient_N, counts_NxP


def _penalties_on_grid(phi_N, counts_NxP, penalties_P, num_measurements: int,
                       cfg: DetectorConfig) -> np.ndarray:
  """Smallest searched penalty whose kernel-weighted mean count meets the target, per grid point (G,)."""
  grid_G = np.asarray(cfg.ar_grid, np.float64)
  weights_GxN = _hat_weights(phi_N, grid_G)
  weight_G = np.asarray(jnp.sum(weights_GxN, axis=1))
  mean_counts_GxP = (np.asarray(weights_GxN @ counts_NxP.astype(jnp.float32))
                     / np.maximum(weight_G, 1e-9)[:, None])
  target = cfg.false_positives_per_1000 * num_measurements / 1000.0
  # The mean count falls with the penalty; take the first searched penalty at or under the target.
  holds_GxP = mean_counts_GxP <= target
  penalty_G = np.where(holds_GxP.any(axis=1), np.asarray(penalties_P)[np.argmax(holds_GxP, axis=1)],
                       PENALTY_SEARCH_MAX)
  reached = np.flatnonzero(weight_G >= 1.0)
  if reached.size == 0:
    raise DataError("no calibration surrogate estimate fell on the AR grid; check cfg.ar_grid")
  for g in np.flatnonzero(weight_G < 1.0):
    nearest = reached[np.argmin(np.abs(reached - g))]
    penalty_G[g] = max(penalty_G[g], penalty_G[nearest])
  return penalty_G


def calibrate(num_measurements: int, cfg: DetectorConfig, key) -> PenaltyTable:
  """Penalties per estimated AR coefficient that hold the false-positive target on jump-free surrogates.

  Both passes are calibrated on the same surrogates, each on what the detector does in it: the first on
  the robust estimate and a selection from scratch; the second after the first pass (run with its
  calibrated penalties) and the lag-1 re-estimate. A grid point that no surrogate estimate reaches takes
  the penalty of the nearest one that does, if that is higher.
  """
  if num_measurements < 2:
    raise DataError(f"calibrate needs series of at least 2 measurements, got {num_measurements}")
  num_measurements = int(num_measurements)
  series_NxM, phi_N, counts_NxP, penalties_P = _first_pass_counts(key, num_measurements, cfg)
  first_G = _penalties_on_grid(phi_N, counts_NxP, penalties_P, num_measurements, cfg)
  grid_G = jnp.asarray(cfg.ar_grid, jnp.float32)
  phi_N, counts_NxP = _final_pass_counts(series_NxM, grid_G, jnp.asarray(first_G, jnp.float32), cfg)
  final_G = _penalties_on_grid(phi_N, counts_NxP, penalties_P, num_measurements, cfg)
  return PenaltyTable(grid_G, jnp.asarray(final_G, jnp.float32), jnp.asarray(first_G, jnp.float32),
                      num_measurements)


def penalty_for(table: PenaltyTable, ar_coefficient_N, first_pass: bool = False) -> jax.Array:
  """The table's (final or first-pass) penalty, interpolated linearly at each estimated AR coefficient."""
  check_rank("penalty_for", "ar_coefficient_N", ar_coefficient_N, 1, "series")
  penalties_G = table.first_pass_penalties_G if first_pass else table.penalties_G
  return jnp.interp(ar_coefficient_N, table.ar_coefficients_G, penalties_G)


# ---------------------------------------------------------------------------------------- detection


def _sizes(levels_NxM: jax.Array, is_change_NxM: jax.Array) -> jax.Array:
  """Level at t minus level at t - 1 where a change starts at t, else 0, (N, M)."""
  step = jnp.concatenate([jnp.zeros_like(levels_NxM[:, :1]), jnp.diff(levels_NxM, axis=1)], axis=1)
  return jnp.where(is_change_NxM, step, 0.0)


def _mean_sd_factor(phi_N: jax.Array, window: int) -> jax.Array:
  """SD of the mean of `window` consecutive AR(1) values, per unit stationary SD."""
  lags = jnp.arange(1, window, dtype=jnp.float32)
  pairs = window + 2.0 * jnp.sum((window - lags) * phi_N[:, None] ** lags, axis=1)
  return jnp.sqrt(pairs) / window


def durations(detrended_NxM, levels_NxM, is_jump_NxM, noise: NoiseModel, cfg: DetectorConfig) -> jax.Array:
  """Measurements from each jump until the new level holds (see DetectorConfig), int32 (N, M).

  m_t = mean of the detrended series over [t, t + w) within t's segment; the level holds from the first
  t whose m stays within the band for the w positions from t (or to the segment's end). A jump whose
  segment never settles gets the segment's length.
  """
  shape = check_rank("durations", "detrended_NxM", detrended_NxM, 2, "series, measurements")
  for name, array in (("levels_NxM", levels_NxM), ("is_jump_NxM", is_jump_NxM)):
    check_rank("durations", name, array, 2, "series, measurements")
    for axis in (0, 1):
      check_axis("durations", name, array, axis, shape[axis], f"{'NM'[axis]} (as in detrended_NxM)")
  window = cfg.settle_window
  num_measurements = detrended_NxM.shape[1]
  index_M = jnp.arange(num_measurements, dtype=jnp.int32)
  start, end = model.segment_bounds(is_jump_NxM)
  zeros = jnp.zeros_like(detrended_NxM[:, :1])
  prefix = jnp.concatenate([zeros, jnp.cumsum(detrended_NxM, axis=1)], axis=1)
  stop = jnp.minimum(index_M + window, end)
  running_mean = (jnp.take_along_axis(prefix, stop, 1) - prefix[:, :num_measurements]) / (stop - index_M)
  opening_size = jnp.take_along_axis(_sizes(levels_NxM, is_jump_NxM), start, 1)
  mean_sd = noise.residual_sd_N * _mean_sd_factor(noise.ar_coefficient_N, window)
  band = jnp.maximum(cfg.settle_fraction * jnp.abs(opening_size), cfg.settle_band_sds * mean_sd[:, None])
  outside = (jnp.abs(running_mean - levels_NxM) > band).astype(jnp.int32)
  outside_prefix = jnp.concatenate([jnp.zeros_like(outside[:, :1]), jnp.cumsum(outside, axis=1)], axis=1)
  settled = jnp.take_along_axis(outside_prefix, stop, 1) == outside_prefix[:, :num_measurements]
  first_settled = jax.lax.cummin(jnp.where(settled, index_M, num_measurements), axis=1, reverse=True)
  return jnp.where(is_jump_NxM, jnp.minimum(first_settled, end) - index_M, 0).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _detect(series_NxM, table: PenaltyTable, min_size_N, cfg: DetectorConfig) -> Jumps:
  basis = model.trend_basis(series_NxM.shape[1], cfg)

  def select(noise: NoiseModel, first_pass: bool) -> jax.Array:
    is_step, _ = step_regression.forward_steps(
        series_NxM, basis, noise.ar_coefficient_N, noise.innovation_sd_N,
        penalty_for(table, noise.ar_coefficient_N, first_pass), cfg.max_forward_steps, cfg.min_segment)
    return is_step

  first_changes = select(model.robust_noise(series_NxM, cfg), True)
  changes = select(fit_noise(series_NxM, cfg, first_changes), False)
  trend, levels = model.fit_levels(series_NxM, changes, basis)
  is_jump = changes & (jnp.abs(_sizes(levels, changes)) >= min_size_N[:, None])
  trend, levels = model.fit_levels(series_NxM, is_jump, basis)
  noise = model.ar1_of_residual(trend, series_NxM - trend - levels, series_NxM, cfg)
  duration = durations(series_NxM - trend, levels, is_jump, noise, cfg)
  return Jumps(is_jump, _sizes(levels, is_jump), duration, jnp.sum(is_jump, axis=1).astype(jnp.int32),
               levels, trend + levels, noise)


def detect(series_NxM, table: PenaltyTable, cfg: DetectorConfig, min_size_N) -> Jumps:
  """Jumps of each series (N, M): two passes of calibrated forward selection, then the size filter.

  `table` comes from `calibrate(M, cfg, key)` for the same M and cfg; `min_size_N` (scalar or (N,)) from
  `minimum_jump_size`. Jittable with cfg static; one compiled programme serves all N series.
  """
  func = "detect"
  shape = check_rank(func, "series_NxM", series_NxM, 2, "series, measurements M >= 2")
  if shape[1] < 2:
    raise DataError(f"{func}: series_NxM needs M >= 2 measurements on axis 1, got shape {shape}")
  check_rank(func, "min_size_N", min_size_N, (0, 1), "one size for all series, or one per series")
  if jnp.ndim(min_size_N) == 1:
    check_axis(func, "min_size_N", min_size_N, 0, shape[0], "N (the series of series_NxM)")
  series_NxM = jnp.asarray(series_NxM, jnp.float32)
  if isinstance(table.num_measurements, (int, np.integer)) and table.num_measurements != series_NxM.shape[1]:
    raise DataError(f"penalty table calibrated for {table.num_measurements} measurements, series have "
                    f"{series_NxM.shape[1]}")
  if not isinstance(series_NxM, jax.core.Tracer):
    finite_N = np.all(np.isfinite(np.asarray(series_NxM)), axis=1)
    if not finite_N.all():
      bad = np.flatnonzero(~finite_N)
      raise DataError(f"series contain NaN or Inf (rows {bad[:10].tolist()}{'...' if bad.size > 10 else ''})")
  min_size_N = jnp.broadcast_to(jnp.asarray(min_size_N, jnp.float32), series_NxM.shape[:1])
  table = PenaltyTable(*(jnp.asarray(a, jnp.float32) for a in table[:3]), series_NxM.shape[1])
  return _detect(series_NxM, table, min_size_N, cfg)
