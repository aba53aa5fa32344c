"""When each layer's series settles, and whether layers settle in depth order (bottom-up / top-down).

A series settles at the first measurement after which it stays inside a band around its final level
for the rest of the run. What "settled" means for noise: a series whose level never moves (stationary
noise around a constant) is at its final level from the first measurement, so it settles at index 0;
a series that still moves when its noise is taken away (a decay, a trend) settles where that movement
falls inside the band. The band is what makes this hold under noise: it is wide enough that the noise
of a stationary series leaves it anywhere in the run only with a small family-wise probability
(`family_alpha`, so noise alone does not push a layer's stabilisation late or to "never"), and no wider
than the noise, the uncertainty of the final level and the seed-to-seed spread require (so noise alone
does not make a moving layer "stable at step 0"). A constant series (zero range) settles at 0 and is
flagged by `is_constant_series`, because a constant dimensionality usually means a broken measure.

Series are (..., M) with the measurement axis last for `stabilisation_index`, and (S, M, L) (seeds,
measurements, layers) for `stabilisation_band`, as the dynamics study saves them. Series must be
finite: leave diverged seeds out first (a NaN would reach every seed's band through the seed spread).
Everything on arrays is jittable and vmaps; `convergence_order` runs on the host (a bootstrap over
seeds).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from mpcodec.core import stats
from mpcodec.core.errors import ConfigError, DataError
from mpcodec.metrics.shapes import check_axis, check_rank

# Deviations within this many float32 ulps of a series' magnitude are rounding, not a change of level,
# so the band is never narrower (a constant series must settle at 0 even if its tail mean rounds).
RESOLUTION_ULPS = 16

# Above this lag-1 autocorrelation a tail of ~80 measurements holds under 5 effective ones; the band
# treats stronger autocorrelation as this much (and rests on at least MIN_DEGREES_OF_FREEDOM).
MAX_AUTOCORRELATION = 0.9
MIN_DEGREES_OF_FREEDOM = 3

# |Spearman| below this counts as "no depth order": a depth-step correlation of 0.3 explains under
# 10% of the rank variance (a "medium" correlation in Cohen's 1988 terms).
SIMULTANEOUS_MARGIN = 0.3

MIN_SEEDS = 3


def _tail_length(num_measurements: int, tail_fraction: float) -> int:
  if not 0.0 < tail_fraction < 1.0:
    raise ConfigError(f"tail_fraction must lie in (0, 1), got {tail_fraction}")
  tail = max(3, math.ceil(tail_fraction * num_measurements))
  if tail >= num_measurements:
    raise DataError(f"a series of {num_measurements} measurements is too short for a tail of {tail} "
                    f"(tail_fraction={tail_fraction}); it needs at least 4 measurements")
  return tail


def _tail_fit(tail_NxT: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Least-squares line through each tail over its measurement index: (mean, slope, residuals (..., T))."""
  length = tail_NxT.shape[-1]
  t_T = jnp.arange(length, dtype=jnp.float32) - (length - 1) / 2.0
  mean_N = jnp.mean(tail_NxT, axis=-1)
  slope_N = jnp.sum((tail_NxT - mean_N[..., None]) * t_T, axis=-1) / jnp.sum(t_T * t_T)
  residual_NxT = tail_NxT - mean_N[..., None] - slope_N[..., None] * t_T
  return mean_N, slope_N, residual_NxT


def _residual_autocorrelation(residual_NxT: jax.Array) -> jax.Array:
  """Lag-1 autocorrelation of the residuals, clipped to [0, MAX_AUTOCORRELATION]; 0 if they are all 0."""
  sum_squares_N = jnp.sum(residual_NxT * residual_NxT, axis=-1)
  lagged_N = jnp.sum(residual_NxT[..., 1:] * residual_NxT[..., :-1], axis=-1)
  phi_N = lagged_N / jnp.where(sum_squares_N > 0, sum_squares_N, 1.0)
  return jnp.clip(phi_N, 0.0, MAX_AUTOCORRELATION)


def _resolution(series_NxM: jax.Array) -> jax.Array:
  return RESOLUTION_ULPS * float(np.finfo(np.float32).eps) * jnp.max(jnp.abs(series_NxM), axis=-1)


def final_level(series_NxM, tail_fraction: float = 0.2) -> jax.Array:
  """Mean of the last ceil(tail_fraction * M) measurements (at least 3), shape (...)."""
  check_rank("final_level", "series_NxM", series_NxM, 1, "..., measurements", leading=True)
  series_NxM = jnp.asarray(series_NxM, jnp.float32)
  tail = _tail_length(series_NxM.shape[-1], tail_fraction)
  return jnp.mean(series_NxM[..., -tail:], axis=-1)


def noise_quantile_table(num_measurements: int, tail_length: int, family_alpha: float) -> np.ndarray:
  """Bonferroni prediction quantiles t_d^-1(1 - alpha / (2 M)) for d = 0..T degrees of freedom, (T + 1,).

  Entries below MIN_DEGREES_OF_FREEDOM hold that many degrees' quantile (the band never rests on fewer).
  """
  if not 0.0 < family_alpha < 1.0:
    raise ConfigError(f"family_alpha must lie in (0, 1), got {family_alpha}")
  dof_D = np.maximum(np.arange(tail_length + 1), MIN_DEGREES_OF_FREEDOM)
  return scipy.stats.t.ppf(1.0 - family_alpha / (2.0 * num_measurements), dof_D).astype(np.float32)


def stabilisation_band(series_SxMxL, tail_fraction: float = 0.2, family_alpha: float = 0.05,
                       seed_multiplier: float = 1.0) -> jax.Array:
  """Half-width of the band around each seed's and layer's final level, shape (S, L).

  band = max(q * sigma * sqrt(1 + k / T),  seed_multiplier * SD_seeds(final level),  resolution), with
  the tail the last T = ceil(tail_fraction * M) measurements (at least 3) and r its residuals around
  its least-squares line (the late-training fluctuation, not inflated by a slow late trend):
  - phi = lag-1 autocorrelation of r, clipped to [0, MAX_AUTOCORRELATION]; k = (1 + phi) / (1 - phi)
    is the variance inflation of a mean of AR(1) noise, so T / k is the tail's effective size;
  - sigma^2 = sum r^2 / max(T - 2k, T / 4): the residual variance with the line's two parameters
    counted at their effective cost (autocorrelated residuals hug a fitted line);
  - q = t_d^-1(1 - family_alpha / (2 M)) with d = max(floor(T (1 - phi^2) / (1 + phi^2)) - 2,
    MIN_DEGREES_OF_FREEDOM) (the effective degrees of freedom of sigma): with sqrt(1 + k/T), for the
    uncertainty of the final level, the band is a Bonferroni prediction interval, so stationary noise
    leaves it anywhere in its M measurements with probability about family_alpha (measured over 2,000
    series each with M = 401, T = 81: 3.0% for white noise, 4.4% for AR(1) 0.5, 6.6% for AR(1) 0.8,
    and "never stable" 0.1% or less; shorter tails or stronger autocorrelation cannot pin the level
    and leave it more often);
  - SD_seeds is the SD (ddof 1) over seeds of the final levels of the layer (0 with one seed): a
    difference smaller than the seeds differ at the end is not a change of level;
  - resolution = RESOLUTION_ULPS float32 ulps of the series' largest magnitude.
  """
  check_rank("stabilisation_band", "series_SxMxL", series_SxMxL, 3, "seeds, measurements, layers")
  series_SxMxL = jnp.asarray(series_SxMxL, jnp.float32)
  if seed_multiplier < 0:
    raise ConfigError(f"seed_multiplier must be >= 0, got {seed_multiplier}")
  num_seeds, num_measurements, _ = series_SxMxL.shape
  tail = _tail_length(num_measurements, tail_fraction)
  quantile_D = jnp.asarray(noise_quantile_table(num_measurements, tail, family_alpha))
  series_SxLxM = jnp.swapaxes(series_SxMxL, 1, 2)
  final_SxL, _, residual_SxLxT = _tail_fit(series_SxLxM[..., -tail:])
  phi_SxL = _residual_autocorrelation(residual_SxLxT)
  inflation_SxL = (1.0 + phi_SxL) / (1.0 - phi_SxL)
  residual_dof_SxL = jnp.maximum(tail - 2.0 * inflation_SxL, tail / 4.0)
  sigma_SxL = jnp.sqrt(jnp.sum(residual_SxLxT * residual_SxLxT, axis=-1) / residual_dof_SxL)
  dof_SxL = jnp.floor(tail * (1.0 - phi_SxL**2) / (1.0 + phi_SxL**2)).astype(jnp.int32) - 2
  quantile_SxL = quantile_D[jnp.clip(dof_SxL, 0, tail)]
  noise_band_SxL = quantile_SxL * sigma_SxL * jnp.sqrt(1.0 + inflation_SxL / tail)
  if num_seeds > 1:
    seed_spread_L = jnp.std(final_SxL, axis=0, ddof=1)
  else:
    seed_spread_L = jnp.zeros(final_SxL.shape[1:], jnp.float32)
  band_SxL = jnp.maximum(noise_band_SxL, seed_multiplier * seed_spread_L[None, :])
  return jnp.maximum(band_SxL, _resolution(series_SxLxM))


def stabilisation_index(series_NxM, band_N, tail_fraction: float = 0.2) -> jax.Array:
  """First measurement index after which the series stays within band of its final level; int32 (...).

  index = 1 + max{t : |x_t - final| > band} (0 if no such t), final = mean of the tail (see
  `final_level`). The series never settles, index = M (the sentinel), when its last measurement is
  outside the band or when its tail still drifts: |slope| * (T - 1) > band, the change of the tail's
  least-squares line across the tail. Leading axes are free (vmap-like broadcasting with band_N).
  """
  shape = check_rank("stabilisation_index", "series_NxM", series_NxM, 1, "..., measurements", leading=True)
  if jnp.shape(band_N) != shape[:-1]:
    raise DataError(f"stabilisation_index: band_N needs the leading shape {shape[:-1]} of series_NxM (all axes "
                    f"but the measurements), got shape {jnp.shape(band_N)}")
  series_NxM = jnp.asarray(series_NxM, jnp.float32)
  band_N = jnp.asarray(band_N, jnp.float32)
  num_measurements = series_NxM.shape[-1]
  tail = _tail_length(num_measurements, tail_fraction)
  final_N, slope_N, _ = _tail_fit(series_NxM[..., -tail:])
  outside_NxM = jnp.abs(series_NxM - final_N[..., None]) > band_N[..., None]
  positions_M = jnp.arange(num_measurements, dtype=jnp.int32)
  last_outside_N = jnp.max(jnp.where(outside_NxM, positions_M, -1), axis=-1)
  index_N = last_outside_N + 1
  drifting_N = jnp.abs(slope_N) * (tail - 1) > band_N
  return jnp.where(drifting_N, num_measurements, index_N).astype(jnp.int32)


def is_constant_series(series_NxM) -> jax.Array:
  """True where a series' range (max - min) is within float32 resolution of its magnitude, shape (...)."""
  check_rank("is_constant_series", "series_NxM", series_NxM, 1, "..., measurements", leading=True)
  series_NxM = jnp.asarray(series_NxM, jnp.float32)
  spread_N = jnp.max(series_NxM, axis=-1) - jnp.min(series_NxM, axis=-1)
  return spread_N <= _resolution(series_NxM)


def stabilisation(series_SxMxL, tail_fraction: float = 0.2, family_alpha: float = 0.05,
                  seed_multiplier: float = 1.0) -> dict[str, jax.Array]:
  """Band, stabilisation index and flags of every seed and layer of one run, each (S, L).

  Returns {"band", "final_level", "index" (int32, M = never stable), "never_stable", "constant"}.
  Indices count measurements; the caller maps them to true training steps with its `steps` array
  (an index of M has no step).
  """
  check_rank("stabilisation", "series_SxMxL", series_SxMxL, 3, "seeds, measurements, layers")
  series_SxMxL = jnp.asarray(series_SxMxL, jnp.float32)
  band_SxL = stabilisation_band(series_SxMxL, tail_fraction, family_alpha, seed_multiplier)
  series_SxLxM = jnp.swapaxes(series_SxMxL, 1, 2)
  index_SxL = stabilisation_index(series_SxLxM, band_SxL, tail_fraction)
  return {
      "band": band_SxL,
      "final_level": final_level(series_SxLxM, tail_fraction),
      "index": index_SxL,
      "never_stable": index_SxL == series_SxMxL.shape[1],
      "constant": is_constant_series(series_SxLxM),
  }


def _average_ranks(values_L: jax.Array) -> jax.Array:
  """Ranks 1..L with ties given their mean rank (as scipy.stats.rankdata's 'average')."""
  below_L = jnp.sum(values_L[None, :] < values_L[:, None], axis=1)
  equal_L = jnp.sum(values_L[None, :] == values_L[:, None], axis=1)
  return below_L + (equal_L + 1) / 2.0


def _spearman(steps_L: jax.Array, depth_L: jax.Array) -> tuple[jax.Array, jax.Array]:
  rank_steps_L = _average_ranks(steps_L)
  rank_depth_L = _average_ranks(depth_L)
  centred_steps_L = rank_steps_L - jnp.mean(rank_steps_L)
  centred_depth_L = rank_depth_L - jnp.mean(rank_depth_L)
  norm = jnp.sqrt(jnp.sum(centred_steps_L**2) * jnp.sum(centred_depth_L**2))
  degenerate = norm <= 0
  rho = jnp.sum(centred_steps_L * centred_depth_L) / jnp.where(degenerate, 1.0, norm)
  return jnp.where(degenerate, 0.0, rho), degenerate


def depth_order_correlation(stabilisation_step_SxL, depth_L) -> tuple[jax.Array, jax.Array]:
  """Spearman correlation of layer depth with stabilisation step, per seed: (rho (S,), all_tied (S,)).

  rho = Pearson correlation of the average ranks (ties as scipy.stats.spearmanr); rho > 0 means deeper
  layers settle later. A seed whose steps are all equal (every layer settles together, or none
  settles) has no ranking: rho = 0 and all_tied = True. Never-stable layers must carry a value above
  every real step (the index sentinel M, or inf) so that they rank after every layer that settles.
  Spearman (1904), Am. J. Psychol. 15, 72.
  """
  func = "depth_order_correlation"
  num_layers = check_rank(func, "stabilisation_step_SxL", stabilisation_step_SxL, 2, "seeds, layers")[1]
  check_rank(func, "depth_L", depth_L, 1, "layers")
  check_axis(func, "depth_L", depth_L, 0, num_layers, "L (the layers of stabilisation_step_SxL)")
  if num_layers < 2:
    raise DataError(f"{func}: a depth order needs at least 2 layers, got {num_layers}")
  steps_SxL = jnp.asarray(stabilisation_step_SxL, jnp.float32)
  depth_L = jnp.asarray(depth_L, jnp.float32)
  return jax.vmap(_spearman, in_axes=(0, None))(steps_SxL, depth_L)


def convergence_order(correlations_S, margin: float = SIMULTANEOUS_MARGIN, confidence: float = 0.95,
                      rng_seed: int = 0, num_resamples: int = 10000) -> dict:
  """Convergence order of a run from its per-seed depth-order correlations (host side).

  With the bootstrap CI [low, high] of the mean Spearman over seeds (`stats.bootstrap_ci`):
  "bottom-up" if low > 0 (deeper layers settle later), "top-down" if high < 0, "simultaneous" if
  -margin <= low and high <= margin (equivalence: the CI excludes any depth order of size margin),
  "unclear" otherwise. Fewer than MIN_SEEDS seeds: "cannot be tested", CI None, with the reason.
  Returns {"order", "effect", "ci_low", "ci_high", "num_seeds", "margin", "confidence", "reason"}.
  """
  check_rank("convergence_order", "correlations_S", correlations_S, 1, "one correlation per seed")
  values_S = np.asarray(correlations_S, dtype=np.float64).ravel()
  if not np.all(np.isfinite(values_S)):
    raise DataError(f"correlations contain NaN or Inf: {values_S.tolist()}")
  if not 0.0 <= margin < 1.0:
    raise ConfigError(f"margin must lie in [0, 1), got {margin}")
  result = {"effect": float(np.mean(values_S)) if values_S.size else None, "ci_low": None,
            "ci_high": None, "num_seeds": int(values_S.size), "margin": margin,
            "confidence": confidence, "reason": None}
  if values_S.size < MIN_SEEDS:
    return {**result, "order": "cannot be tested",
            "reason": f"{values_S.size} seed(s); a CI over seeds needs at least {MIN_SEEDS}"}
  effect, low, high = stats.bootstrap_ci(values_S, rng_seed=rng_seed, num_resamples=num_resamples,
                                         confidence=confidence)
  if low > 0:
    order = "bottom-up"
  elif high < 0:
    order = "top-down"
  elif -margin <= low and high <= margin:
    order = "simultaneous"
  else:
    order = "unclear"
  return {**result, "order": order, "effect": effect, "ci_low": low, "ci_high": high}
