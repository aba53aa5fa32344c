"""The detector's model of a series: smooth trend + piecewise-constant levels + AR(1) noise.

  y_t = sum_k beta_k b_k(t) + mu_seg(t) + u_t,   u_t = phi u_{t-1} + eps_t,   eps_t ~ N(0, sigma^2).

Trend basis b_k: t and exp(-t / tau_k) at a few time constants tau_k (fractions of the series length,
`DetectorConfig.trend_time_constants`), centred and orthonormalised. It fits linear drift, a fast early
fall or rise like a training curve's, and slow curvature, but it is kept small: every extra smooth
function absorbs more of a step, and what is left of the step once the trend is fitted is all a
detector can work with. With the default five exponentials (0.5%, 0.8%, 3%, 30%, 50%) 17% of the sum of
squares of a step at 10% of the series is left, 13% at 50%, 30% at 90%; seven exponentials at octave
spacing leave 9%, and bases that leave more (dropping the 30% term) fit decays with time constants of
6-10% or a slow rise so poorly that those smooth curves read as jumps.

`fit_levels` is the exact joint least-squares fit of trend and levels on a given partition; `fit_noise`
estimates the AR(1) by lag-1 autocorrelation of the residual, `robust_noise` from trimmed variances of
first and second differences (for the first pass, before any step is known). All functions are pure,
jittable and vectorised over a leading series axis.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats

from mpcodec.core.errors import ConfigError, DataError
from mpcodec.metrics.shapes import check_axis, check_rank

FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
  """Settings of the detector; the defaults are the ones `validity_table` checks against the bars.

  false_positives_per_1000: calibration target, detections per 1,000 measurements on jump-free
    surrogates (the harness bar is 2; 1 leaves room for calibration noise).
  min_segment: fewest measurements between two jumps, and between a jump and either end.
  trend_time_constants: time constants of the trend's exponentials, as fractions of the series length.
  measurements_per_trend_term: at most M // this many trend terms, so short series keep most of their
    information for the levels.
  max_ar_coefficient: estimated AR coefficients are clipped to [0, this].
  ar_grid: estimated AR coefficients at which the penalty is calibrated (interpolated between).
  calibration_surrogates: surrogate series simulated by `calibrate`.
  calibration_max_changes: forward-selection rounds run on each surrogate (more changes than this at
    the calibrated penalty are vanishingly rare on a jump-free series).
  max_forward_steps: most jumps found in one series.
  difference_trim: fraction of the largest differences left out of the robust first-pass noise estimate.
  settle_window / settle_band_sds / settle_fraction: a jump's duration is the number of measurements from
    it until the running mean over `settle_window` measurements enters, and stays in for `settle_window`
    positions, a band of max(settle_fraction x |size|, settle_band_sds x that mean's noise SD) around
    the new segment's fitted level.
  """

  false_positives_per_1000: float = 1.0
  min_segment: int = 3
  trend_time_constants: tuple[float, ...] = (0.005, 0.008, 0.03, 0.3, 0.5)
  measurements_per_trend_term: int = 10
  max_ar_coefficient: float = 0.95
  ar_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
  calibration_surrogates: int = 4000
  calibration_max_changes: int = 3
  max_forward_steps: int = 12
  difference_trim: float = 0.05
  settle_window: int = 3
  settle_band_sds: float = 2.0
  settle_fraction: float = 0.25

  def __post_init__(self):
    if not self.false_positives_per_1000 > 0:
      raise ConfigError(f"false_positives_per_1000 must be > 0, got {self.false_positives_per_1000}")
    if self.min_segment < 1 or self.max_forward_steps < 1:
      raise ConfigError(f"min_segment and max_forward_steps must be >= 1, got {self.min_segment}, "
                        f"{self.max_forward_steps}")
    if not 0.0 <= self.max_ar_coefficient < 1.0:
      raise ConfigError(f"max_ar_coefficient must lie in [0, 1), got {self.max_ar_coefficient}")
    grid = np.asarray(self.ar_grid)
    if grid.size < 2 or np.any(np.diff(grid) <= 0) or grid[0] != 0.0 or grid[-1] < self.max_ar_coefficient:
      raise ConfigError(f"ar_grid must increase from 0 to at least max_ar_coefficient, got {self.ar_grid}")
    if self.calibration_surrogates < 100 or self.calibration_max_changes < 1:
      raise ConfigError("calibration_surrogates must be >= 100 and calibration_max_changes >= 1")
    if not 0.0 <= self.difference_trim < 0.5 or self.settle_window < 1:
      raise ConfigError("difference_trim must lie in [0, 0.5) and settle_window be >= 1")


class NoiseModel(NamedTuple):
  """Fitted trend (N, M), stationary residual SD (N,), AR(1) coefficient (N,), innovation SD (N,)."""

  trend_NxM: jax.Array
  residual_sd_N: jax.Array
  ar_coefficient_N: jax.Array
  innovation_sd_N: jax.Array


# ----------------------------------------------------------------------------------------------- trend


@functools.lru_cache(maxsize=32)
def _trend_basis_np(num_measurements: int, time_constants: tuple[float, ...],
                    measurements_per_term: int) -> np.ndarray:
  """Orthonormal, centred trend basis (M, K), float64 on the host; K = 0 for very short series."""
  t = np.arange(num_measurements, dtype=np.float64)
  columns = [t / max(num_measurements, 1)] + [np.exp(-t / (f * num_measurements)) for f in time_constants]
  basis = np.stack(columns, 1)
  basis -= basis.mean(0)
  max_terms = min(len(columns), num_measurements // measurements_per_term)
  if max_terms == 0:
    return np.zeros((num_measurements, 0))
  left, singular, _ = np.linalg.svd(basis, full_matrices=False)
  keep = min(max_terms, int(np.sum(singular > 1e-6 * singular[0])))
  return left[:, :keep]


def trend_basis(num_measurements: int, cfg: DetectorConfig) -> jax.Array:
  """The detector's smooth-trend basis for a length: orthonormal, centred columns (M, K), float32."""
  return jnp.asarray(_trend_basis_np(num_measurements, cfg.trend_time_constants,
                                     cfg.measurements_per_trend_term), jnp.float32)


def segment_bounds(is_change_NxM: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Start (inclusive) and end (exclusive) index of the segment holding each position, int32 (N, M)."""
  num_measurements = is_change_NxM.shape[-1]
  index_M = jnp.arange(num_measurements, dtype=jnp.int32)
  start = jax.lax.cummax(jnp.where(is_change_NxM, index_M, 0), axis=is_change_NxM.ndim - 1)
  next_change = jax.lax.cummin(jnp.where(is_change_NxM, index_M, num_measurements),
                               axis=is_change_NxM.ndim - 1, reverse=True)
  # The end of t's segment is the first change strictly after t.
  tail = jnp.full(is_change_NxM.shape[:-1] + (1,), num_measurements, jnp.int32)
  end = jnp.concatenate([next_change[..., 1:], tail], axis=-1)
  return start, end


def _segment_means(values_NxMxC: jax.Array, start_NxM: jax.Array, end_NxM: jax.Array) -> jax.Array:
  """Mean of each column over the segment holding each position, (N, M, C)."""
  zeros = jnp.zeros(values_NxMxC.shape[:1] + (1,) + values_NxMxC.shape[2:], values_NxMxC.dtype)
  prefix = jnp.concatenate([zeros, jnp.cumsum(values_NxMxC, axis=1)], axis=1)
  take = lambda index: jnp.take_along_axis(prefix, index[..., None], axis=1)
  count = (end_NxM - start_NxM).astype(values_NxMxC.dtype)[..., None]
  return (take(end_NxM) - take(start_NxM)) / count


def fit_levels(series_NxM, is_change_NxM, basis_MxK: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Joint least squares of trend and levels on a partition (None: one segment): (trend, levels) (N, M).

  min_{beta, mu} ||y - B beta - S mu||^2 with S the segment indicators: beta solves the normal equations
  of the within-segment deviations ((I - P_S) B)^T (I - P_S) B beta = ((I - P_S) B)^T y (a tiny ridge
  keeps trend directions that the levels can represent with the levels), then mu = segment means of
  y - B beta. The trend has mean 0 (the basis is centred); the levels carry the offset.
  """
  series_NxM = jnp.asarray(series_NxM, jnp.float32)
  # Fitted in a centred frame: a large offset would otherwise cancel away float32 digits of the fit.
  offset_N1 = jnp.mean(series_NxM, axis=1, keepdims=True)
  trend_NxM, levels_NxM = _fit_centred(series_NxM - offset_N1, is_change_NxM, basis_MxK)
  return trend_NxM, levels_NxM + offset_N1


def _fit_centred(series_NxM, is_change_NxM, basis_MxK: jax.Array) -> tuple[jax.Array, jax.Array]:
  if is_change_NxM is None:
    # One segment: the centred orthonormal basis is already orthogonal to the level (and this path keeps
    # constant masks out of the graph, which XLA would otherwise try to fold at compile time).
    trend_NxM = jnp.einsum("mk,nk->nm", basis_MxK, jnp.einsum("mk,nm->nk", basis_MxK, series_NxM,
                                                                precision="highest"), precision="highest")
    return trend_NxM, jnp.broadcast_to(jnp.mean(series_NxM - trend_NxM, axis=1, keepdims=True),
                                       series_NxM.shape)
  start, end = segment_bounds(is_change_NxM)
  num_terms = basis_MxK.shape[1]
  if num_terms > 0:
    basis_NxMxK = jnp.broadcast_to(basis_MxK, series_NxM.shape + (num_terms,))
    within_NxMxK = basis_NxMxK - _segment_means(basis_NxMxK, start, end)
    gram_NxKxK = jnp.einsum("nmk,nml->nkl", within_NxMxK, within_NxMxK, precision="highest")
    rhs_NxK = jnp.einsum("nmk,nm->nk", within_NxMxK, series_NxM, precision="highest")
    ridge = 1e-6 * jnp.eye(num_terms, dtype=jnp.float32)
    beta_NxK = jnp.linalg.solve(gram_NxKxK + ridge, rhs_NxK[..., None])[..., 0]
    trend_NxM = jnp.einsum("mk,nk->nm", basis_MxK, beta_NxK, precision="highest")
  else:
    trend_NxM = jnp.zeros_like(series_NxM)
  levels_NxM = _segment_means((series_NxM - trend_NxM)[..., None], start, end)[..., 0]
  return trend_NxM, levels_NxM


# ----------------------------------------------------------------------------------------------- noise


def _magnitude_N(series_NxM: jax.Array) -> jax.Array:
  return jnp.max(jnp.abs(series_NxM), axis=-1)


def _sd_floor_N(series_NxM: jax.Array) -> jax.Array:
  """Smallest noise SD the detector believes: one float32 step of the series' magnitude."""
  return jnp.maximum(FLOAT32_EPS * _magnitude_N(series_NxM), FLOAT32_TINY)


def _noise_from_ar(trend, phi_N, innovation_var_N, series_NxM) -> NoiseModel:
  innovation_sd = jnp.maximum(jnp.sqrt(jnp.maximum(innovation_var_N, 0.0)), _sd_floor_N(series_NxM))
  return NoiseModel(trend, innovation_sd / jnp.sqrt(1.0 - phi_N**2), phi_N, innovation_sd)


def fit_noise(series_NxM, cfg: DetectorConfig = DetectorConfig(), is_change_NxM=None) -> NoiseModel:
  """Smooth trend (jointly with the levels of `is_change_NxM`, default none) and an AR(1) of the residual.

  phi = clip(sum_t e_t e_{t-1} / sum_t e_t^2, 0, max_ar_coefficient) over the residual e (levels removed);
  innovation SD = RMS of e_t - phi e_{t-1}; residual_sd = innovation SD / sqrt(1 - phi^2) (stationary).
  SDs are floored at one float32 step of the series' magnitude, so a constant series gives no NaN.
  """
  shape = check_rank("fit_noise", "series_NxM", series_NxM, 2, "series, measurements M >= 2")
  if shape[1] < 2:
    raise DataError(f"fit_noise: series_NxM needs M >= 2 measurements on axis 1, got shape {shape}")
  if is_change_NxM is not None:
    check_rank("fit_noise", "is_change_NxM", is_change_NxM, 2, "series, measurements")
    check_axis("fit_noise", "is_change_NxM", is_change_NxM, 0, shape[0], "N (the series of series_NxM)")
    check_axis("fit_noise", "is_change_NxM", is_change_NxM, 1, shape[1], "M (the measurements of series_NxM)")
  series_NxM = jnp.asarray(series_NxM, jnp.float32)
  basis = trend_basis(series_NxM.shape[1], cfg)
  trend, levels = fit_levels(series_NxM, is_change_NxM, basis)
  return ar1_of_residual(trend, series_NxM - trend - levels, series_NxM, cfg)


def _trimmed_variance(values_NxW: jax.Array, trim: float) -> jax.Array:
  """Variance of zero-mean Gaussian values from the mean square of all but the largest `trim` |values|."""
  num_values = values_NxW.shape[1]
  kept = max(1, int(np.ceil((1.0 - trim) * num_values)))
  smallest = jnp.sort(jnp.abs(values_NxW), axis=1)[:, :kept]
  if trim == 0.0:
    consistency = 1.0
  else:
    # E[Z^2 | |Z| < q] for the Gaussian quantile q of the kept fraction.
    quantile = scipy_stats.norm.ppf(1.0 - trim / 2.0)
    consistency = 1.0 - 2.0 * quantile * scipy_stats.norm.pdf(quantile) / (1.0 - trim)
  return jnp.mean(smallest**2, axis=1) / consistency


def robust_noise(series_NxM, cfg: DetectorConfig = DetectorConfig()) -> NoiseModel:
  """First-pass noise model, robust to steps: trend alone, AR(1) from trimmed difference variances.

  For a stationary AR(1), Var(r_{t+2} - r_t) / Var(r_{t+1} - r_t) = 1 + phi and
  Var(r_{t+1} - r_t) = 2 sigma^2 / (1 + phi); a step changes only one or two differences.
  """
  series_NxM = jnp.asarray(series_NxM, jnp.float32)
  basis = trend_basis(series_NxM.shape[1], cfg)
  trend, levels = fit_levels(series_NxM, None, basis)
  residual = series_NxM - trend - levels
  if series_NxM.shape[1] < 3:
    first = _trimmed_variance(residual[:, 1:] - residual[:, :-1], 0.0)
    phi = jnp.zeros_like(first)
  else:
    first = _trimmed_variance(residual[:, 1:] - residual[:, :-1], cfg.difference_trim)
    second = _trimmed_variance(residual[:, 2:] - residual[:, :-2], cfg.difference_trim)
    phi = jnp.clip(jnp.where(first > 0, second / jnp.where(first > 0, first, 1.0) - 1.0, 0.0), 0.0,
                   cfg.max_ar_coefficient)
  return _noise_from_ar(trend, phi, first * (1.0 + phi) / 2.0, series_NxM)


def ar1_of_residual(trend_NxM, residual_NxM, series_NxM, cfg: DetectorConfig) -> NoiseModel:
  """AR(1) by lag-1 autocorrelation of a residual (levels removed): see `fit_noise`."""
  lagged = jnp.sum(residual_NxM[:, 1:] * residual_NxM[:, :-1], axis=1)
  power = jnp.sum(residual_NxM**2, axis=1)
  phi = jnp.clip(jnp.where(power > 0, lagged / jnp.where(power > 0, power, 1.0), 0.0), 0.0,
                 cfg.max_ar_coefficient)
  innovation_var = jnp.mean((residual_NxM[:, 1:] - phi[:, None] * residual_NxM[:, :-1])**2, axis=1)
  return _noise_from_ar(trend_NxM, phi, innovation_var, series_NxM)
