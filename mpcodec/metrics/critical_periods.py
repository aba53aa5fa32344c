"""Critical periods: intervals where a layer's dimensionality changes faster than its own surrogates allow.

Velocity. Over the W = M - 1 intervals between measurements at true steps s_0 < ... < s_{M-1}:
v_t = (x_{t+1} - x_t) / (s_{t+1} - s_t) / (max_t x_t - min_t x_t), the change per training step as a
fraction of the layer's range over the run, so layers and measures compare. A series whose range is
within float32 resolution of its magnitude (`convergence.is_constant_series`) has velocity 0: its
rounding must not read as motion.

Threshold. Each series gets its own, from phase-randomised (Fourier) surrogates of its velocity
(Theiler et al. 1992): the amplitude spectrum of v is kept and the phases are drawn uniformly, so a
surrogate has the series' mean velocity, variance and autocorrelation but no localised burst. The
threshold is the (1 - alpha) quantile over surrogates of max_t |v*_t|, so under the null of a
stationary linear Gaussian process with the series' spectrum the probability that ANY interval of the
series is critical is alpha (family-wise per series; 5% by default; measured over 2,000 series of
401 measurements each: 5.9% for white noise, 6.1% for AR(1) 0.5, 5.2% for AR(1) 0.8; the small excess
is probably because every surrogate keeps the series' own periodogram exactly, so surrogate maxima
vary a little less than the process's). Two other choices fail this:
a percentile of the series' own |v| flags a fixed fraction of every series (critical periods always
exist), and time-shuffled increments keep the multiset of |v|, so their maxima equal the series' own.
Interval t is critical when |v_t| > threshold; a window is a maximal run of critical intervals. The
surrogates treat the intervals as equally spaced, as the dynamics study measures (every 5 steps).
Series must be finite (leave diverged seeds out first).

Coordination of a run's layers and the loss around critical windows are then compared with nulls
(circularly shifted masks, a length-matched base rate). All array functions are pure and jittable and
vmap over a leading seed axis; `effect_over_seeds` runs on the host.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import stats
from mpcodec.core.errors import ConfigError, DataError
from mpcodec.metrics import convergence
from mpcodec.metrics.callable_module import make_callable
from mpcodec.metrics.shapes import check_axis, check_rank

NUM_SURROGATES = 199
FAMILY_ALPHA = 0.05


class CriticalPeriods(NamedTuple):
  """One series' (or a stack's, with leading axes) velocity (W,), threshold () and critical mask (W,)."""

  velocity: jax.Array
  threshold: jax.Array
  critical: jax.Array


class LossCorrelation(NamedTuple):
  """Fraction of critical windows whose loss falls, its length-matched base rate, and the window count."""

  falling_fraction: jax.Array
  base_rate: jax.Array
  num_windows: jax.Array


def _check_steps(func: str, steps_M, num_measurements: int) -> None:
  """steps_M: one training step per measurement of the series, at least 3."""
  check_rank(func, "steps_M", steps_M, 1, "measurements")
  check_axis(func, "steps_M", steps_M, 0, num_measurements, "M (the measurements of the series)")
  if num_measurements < 3:
    raise DataError(f"{func}: steps_M needs at least 3 measurements, got shape {jnp.shape(steps_M)}")


def velocity(series_M, steps_M) -> jax.Array:
  """Range-normalised velocity per training step over the M - 1 intervals, shape (..., M - 1).

  v_t = (x_{t+1} - x_t) / ((s_{t+1} - s_t) * (max x - min x)); 0 for a series whose range is within
  float32 resolution (`convergence.is_constant_series`).
  """
  shape = check_rank("velocity", "series_M", series_M, 1, "..., measurements", leading=True)
  _check_steps("velocity", steps_M, shape[-1])
  series_M = jnp.asarray(series_M, jnp.float32)
  steps_M = jnp.asarray(steps_M, jnp.float32)
  spacing_W = jnp.diff(steps_M)
  value_range = jnp.max(series_M, axis=-1, keepdims=True) - jnp.min(series_M, axis=-1, keepdims=True)
  flat = convergence.is_constant_series(series_M)[..., None]
  return jnp.where(flat, 0.0, jnp.diff(series_M, axis=-1) / spacing_W / jnp.where(flat, 1.0, value_range))


def _with_phases(spectrum_F: jax.Array, phases_NxF: jax.Array, length: int) -> jax.Array:
  """Real series (N, length) with the amplitudes of spectrum_F and the given phases added to its own.

  The mean (frequency 0) and, for even length, the Nyquist term keep their phase, so the result is
  real with the same mean and power spectrum.
  """
  fixed_F = jnp.zeros(spectrum_F.shape, bool).at[0].set(True)
  if length % 2 == 0:
    fixed_F = fixed_F.at[-1].set(True)
  phases_NxF = jnp.where(fixed_F, 0.0, phases_NxF)
  return jnp.fft.irfft(spectrum_F * jnp.exp(1j * phases_NxF), n=length, axis=-1)


def phase_randomised(values_W, key: jax.Array) -> jax.Array:
  """A Fourier surrogate of a real series: same amplitude spectrum, uniform random phases, shape (W,).

  Theiler et al. (1992), "Testing for nonlinearity in time series", Physica D 58, 77.
  """
  check_rank("phase_randomised", "values_W", values_W, 1, "one series")
  values_W = jnp.asarray(values_W, jnp.float32)
  spectrum_F = jnp.fft.rfft(values_W)
  phases_F = jax.random.uniform(key, spectrum_F.shape, minval=0.0, maxval=2.0 * jnp.pi)
  return _with_phases(spectrum_F, phases_F, values_W.shape[-1])


def _check_alpha(alpha) -> None:
  # A traced alpha (one compiled program for several levels) is checked by its caller.
  if isinstance(alpha, (int, float)) and not 0.0 < alpha < 1.0:
    raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")


def surrogate_threshold(velocity_W, key: jax.Array, num_surrogates: int = NUM_SURROGATES,
                        alpha: float = FAMILY_ALPHA) -> jax.Array:
  """The (1 - alpha) quantile of max_t |v*_t| over phase-randomised surrogates v* of one velocity series.

  Under the null that the series is a stationary linear Gaussian process, it then holds any critical
  interval with probability alpha (family-wise over its W intervals). alpha may be traced.
  """
  check_rank("surrogate_threshold", "velocity_W", velocity_W, 1, "intervals of one series")
  if num_surrogates < 1:
    raise ConfigError(f"num_surrogates must be >= 1, got {num_surrogates}")
  _check_alpha(alpha)
  velocity_W = jnp.asarray(velocity_W, jnp.float32)
  spectrum_F = jnp.fft.rfft(velocity_W)
  phases_NxF = jax.random.uniform(key, (num_surrogates,) + spectrum_F.shape, minval=0.0,
                                  maxval=2.0 * jnp.pi)
  surrogates_NxW = _with_phases(spectrum_F, phases_NxF, velocity_W.shape[-1])
  return jnp.quantile(jnp.max(jnp.abs(surrogates_NxW), axis=-1), 1.0 - alpha)


def critical_periods(series_M, steps_M, key: jax.Array, num_surrogates: int = NUM_SURROGATES,
                     alpha: float = FAMILY_ALPHA) -> CriticalPeriods:
  """Velocity, surrogate-calibrated threshold and critical mask |v_t| > threshold of one series (M,)."""
  num_measurements = check_rank("critical_periods", "series_M", series_M, 1,
                                "measurements of one series; layer_critical_periods takes (M, L)")[0]
  _check_steps("critical_periods", steps_M, num_measurements)
  velocity_W = velocity(series_M, steps_M)
  threshold = surrogate_threshold(velocity_W, key, num_surrogates, alpha)
  # A series with zero range has no velocity at all: nothing in it can be critical.
  critical_W = (jnp.abs(velocity_W) > threshold) & (threshold > 0)
  return CriticalPeriods(velocity_W, threshold, critical_W)


def layer_critical_periods(series_MxL, steps_M, key: jax.Array, num_surrogates: int = NUM_SURROGATES,
                           alpha: float = FAMILY_ALPHA) -> CriticalPeriods:
  """`critical_periods` of every layer of one seed: velocity (L, W), threshold (L,), critical (L, W).

  Layer l draws its surrogates from fold_in(key, l), so adding layers never changes another's.
  """
  num_measurements = check_rank("layer_critical_periods", "series_MxL", series_MxL, 2, "measurements, layers")[0]
  _check_steps("layer_critical_periods", steps_M, num_measurements)
  series_MxL = jnp.asarray(series_MxL, jnp.float32)
  keys_L = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(series_MxL.shape[1]))
  return jax.vmap(critical_periods, in_axes=(1, None, 0, None, None))(
      series_MxL, steps_M, keys_L, num_surrogates, alpha)


def seed_critical_periods(series_SxMxL, steps_M, keys_S, num_surrogates: int = NUM_SURROGATES,
                          alpha: float = FAMILY_ALPHA) -> CriticalPeriods:
  """`layer_critical_periods` of every seed of a run: velocity (S, L, W), threshold (S, L), critical
  (S, L, W); seed s draws from keys_S[s] (jit with num_surrogates static; alpha may be traced)."""
  func = "seed_critical_periods"
  num_seeds, num_measurements, _ = check_rank(func, "series_SxMxL", series_SxMxL, 3, "seeds, measurements, layers")
  _check_steps(func, steps_M, num_measurements)
  check_rank(func, "keys_S", keys_S, 1, "seeds, ...: one key per seed", leading=True)
  check_axis(func, "keys_S", keys_S, 0, num_seeds, "S (the seeds of series_SxMxL)")
  series_SxMxL = jnp.asarray(series_SxMxL, jnp.float32)
  return jax.vmap(layer_critical_periods, in_axes=(0, None, 0, None, None))(
      series_SxMxL, steps_M, keys_S, num_surrogates, alpha)


def window_starts(critical_W) -> jax.Array:
  """True at the first interval of each window (maximal run of critical intervals), shape (..., W)."""
  check_rank("window_starts", "critical_W", critical_W, 1, "..., intervals", leading=True)
  critical_W = jnp.asarray(critical_W, bool)
  previous_W = jnp.concatenate([jnp.zeros(critical_W.shape[:-1] + (1,), bool), critical_W[..., :-1]], -1)
  return critical_W & ~previous_W


def num_windows(critical_W) -> jax.Array:
  """Number of windows (maximal runs of critical intervals), int32 (...)."""
  check_rank("num_windows", "critical_W", critical_W, 1, "..., intervals", leading=True)
  return jnp.sum(window_starts(critical_W), axis=-1).astype(jnp.int32)


def _check_mask(func: str, critical_LxW) -> jax.Array:
  shape = check_rank(func, "critical_LxW", critical_LxW, 2, "layers >= 2, intervals >= 2")
  if shape[0] < 2 or shape[1] < 2:
    raise DataError(f"{func}: critical_LxW needs layers >= 2 and intervals >= 2, got shape {shape}")
  return jnp.asarray(critical_LxW, bool)


def coordination(critical_LxW) -> jax.Array:
  """Mean fraction of layers critical at the intervals where at least one layer is critical, scalar.

  coordination = sum_t a_t f_t / sum_t a_t with f_t = (1/L) sum_l c_lt and a_t = [f_t > 0]; it lies in
  [1/L, 1] (1: every critical interval is critical in every layer) and is 0 when no layer is ever
  critical (count windows with `num_windows` to tell that case apart).
  """
  critical_LxW = _check_mask("coordination", critical_LxW)
  fraction_W = jnp.mean(critical_LxW.astype(jnp.float32), axis=0)
  active_W = fraction_W > 0
  return jnp.sum(jnp.where(active_W, fraction_W, 0.0)) / jnp.maximum(jnp.sum(active_W), 1)


def shift_offsets(key: jax.Array, num_shifts: int, num_layers: int, num_intervals: int) -> jax.Array:
  """Independent uniform circular offsets in {0, ..., W - 1}, int32 (num_shifts, num_layers)."""
  # floor(U * W) of a float uniform: the same distribution as randint, far cheaper to compile.
  uniform_NxL = jax.random.uniform(key, (num_shifts, num_layers))
  return jnp.minimum(jnp.floor(uniform_NxL * num_intervals), num_intervals - 1).astype(jnp.int32)


def coordination_null(critical_LxW, key: jax.Array, num_shifts: int = 1000) -> jax.Array:
  """`coordination` with each layer's mask circularly shifted by its own uniform offset, (num_shifts,).

  Offsets (`shift_offsets`) are drawn independently per layer and draw: each layer keeps its number,
  lengths and spacing of windows, and only their alignment across layers is destroyed. Shifted by o,
  a mask reads c'_t = c_{(t - o) mod W} (as np.roll(c, o)).
  """
  critical_LxW = _check_mask("coordination_null", critical_LxW)
  if num_shifts < 1:
    raise ConfigError(f"num_shifts must be >= 1, got {num_shifts}")
  num_layers, num_intervals = critical_LxW.shape
  offsets_NxL = shift_offsets(key, num_shifts, num_layers, num_intervals)
  doubled_LxW2 = jnp.concatenate([critical_LxW, critical_LxW], axis=1)

  def shift_row(row_W2, offset):
    return jax.lax.dynamic_slice(row_W2, (num_intervals - offset,), (num_intervals,))

  def shifted_coordination(offsets_L):
    return coordination(jax.vmap(shift_row)(doubled_LxW2, offsets_L))

  return jax.vmap(shifted_coordination)(offsets_NxL)


def falling_base_rate(loss_M) -> jax.Array:
  """Fraction of all spans of k measurements over which the loss falls, for k = 0..M-1, shape (M,).

  base[k] = (1 / (M - k)) sum_a [loss_{a+k} < loss_a] for k >= 1; base[0] = 0.
  """
  check_rank("falling_base_rate", "loss_M", loss_M, 1, "measurements")
  loss_M = jnp.asarray(loss_M, jnp.float32)
  num_measurements = loss_M.shape[-1]
  positions_M = jnp.arange(num_measurements)
  offsets_MxM = positions_M[None, :] - positions_M[:, None]
  falls_MxM = (loss_M[None, :] < loss_M[:, None]) & (offsets_MxM > 0)
  sums_M = jax.ops.segment_sum(falls_MxM.ravel().astype(jnp.float32),
                               jnp.clip(offsets_MxM, 0, None).ravel(), num_segments=num_measurements)
  return sums_M / (num_measurements - positions_M)


def loss_correlation(critical_LxW, loss_M) -> LossCorrelation:
  """How often the loss falls across critical windows, against its base rate over windows of the run.

  Windows are taken per layer and pooled. A window of intervals a..e spans measurements a..e+1 and
  counts as falling when loss_{e+1} < loss_a. falling_fraction = mean over windows of that; base_rate
  = mean over the same windows of `falling_base_rate`[e + 1 - a], the fraction of all spans of the same
  length anywhere in the run over which the loss falls (length-matched, because a falling loss curve
  falls more often over longer spans). Both are 0 when there are no windows (num_windows = 0).
  """
  num_intervals = check_rank("loss_correlation", "critical_LxW", critical_LxW, 2, "layers, intervals")[1]
  check_rank("loss_correlation", "loss_M", loss_M, 1, "measurements")
  check_axis("loss_correlation", "loss_M", loss_M, 0, num_intervals + 1,
             "intervals + 1 (the intervals of critical_LxW, plus one)")
  critical_LxW = jnp.asarray(critical_LxW, bool)
  loss_M = jnp.asarray(loss_M, jnp.float32)
  num_intervals = critical_LxW.shape[1]
  positions_W = jnp.arange(num_intervals)
  starts_LxW = window_starts(critical_LxW)
  next_LxW = jnp.concatenate([critical_LxW[:, 1:], jnp.zeros((critical_LxW.shape[0], 1), bool)], 1)
  ends_LxW = critical_LxW & ~next_LxW
  # The end of the window that starts at a: the first end at or after a.
  end_LxW = jax.lax.cummin(jnp.where(ends_LxW, positions_W, num_intervals), axis=1, reverse=True)
  end_LxW = jnp.minimum(end_LxW, num_intervals - 1)
  falls_LxW = loss_M[end_LxW + 1] < loss_M[positions_W][None, :]
  base_LxW = falling_base_rate(loss_M)[end_LxW + 1 - positions_W[None, :]]
  count = jnp.sum(starts_LxW)
  safe_count = jnp.maximum(count, 1)
  return LossCorrelation(jnp.sum(starts_LxW & falls_LxW) / safe_count,
                         jnp.sum(jnp.where(starts_LxW, base_LxW, 0.0)) / safe_count,
                         count.astype(jnp.int32))


def coordination_floor(num_layers) -> jax.Array:
  """The least coordination any critical interval can have, 1 / L: one layer of L critical alone."""
  return 1.0 / jnp.asarray(num_layers, jnp.float32)


def effect_over_seeds(observed_S, null_S, expected_sign: int = 1, valid_S=None, confidence: float = 0.95,
                      rng_seed: int = 0, num_resamples: int = 10000, *, smoke: bool = False,
                      min_seeds: int = stats.MIN_SEEDS) -> dict:
  """Per-seed observed-minus-null differences as an effect with its t interval and a verdict (host side).

  effect = mean_s (observed_s - null_s) over the valid seeds; interval and verdict by
  `stats.test_hypothesis` (two-sided one-sample t test at alpha = 1 - confidence, supported /
  contradicted / inconclusive for the expected sign). Seeds marked False in valid_S (e.g. no critical
  window) are left out and counted; with fewer than `min_seeds` left, or for a smoke run, the verdict is
  "cannot be tested" with the reason (the figures are still given). Returns {"effect", "ci_low",
  "ci_high", "observed", "null", "num_seeds", "num_excluded", "p_value", "verdict", "reason"} (None for
  what cannot be computed). rng_seed and num_resamples are not used (the interval is Student t); they
  stay so that older calls run.
  """
  del rng_seed, num_resamples
  func = "effect_over_seeds"
  num_seeds = check_rank(func, "observed_S", observed_S, 1, "one value per seed")[0]
  for name, values_S in (("null_S", null_S), ("valid_S", valid_S)):
    if values_S is not None:
      check_rank(func, name, values_S, 1, "one value per seed")
      check_axis(func, name, values_S, 0, num_seeds, "S (the seeds of observed_S)")
  observed_S = np.asarray(observed_S, np.float64)
  null_S = np.asarray(null_S, np.float64)
  valid_S = np.ones(observed_S.shape, bool) if valid_S is None else np.asarray(valid_S, bool)
  observed_S, null_S = observed_S[valid_S], null_S[valid_S]
  if not (np.all(np.isfinite(observed_S)) and np.all(np.isfinite(null_S))):
    raise DataError("observed or null values contain NaN or Inf")
  result = {"effect": None, "ci_low": None, "ci_high": None,
            "observed": float(np.mean(observed_S)) if observed_S.size else None,
            "null": float(np.mean(null_S)) if null_S.size else None,
            "num_seeds": int(observed_S.size), "num_excluded": int(np.sum(~valid_S)), "p_value": None,
            "verdict": "cannot be tested", "reason": None}
  if observed_S.size == 0:
    return {**result, "reason": f"0 usable seeds; at least {min_seeds} needed"}
  tested = stats.test_hypothesis(observed_S - null_S, expected_sign, name=func, min_seeds=min_seeds,
                                 smoke=smoke, alpha=1.0 - confidence)
  finite = lambda x: float(x) if np.isfinite(x) else None
  reason = tested.reason
  if tested.verdict == "cannot be tested" and not smoke and observed_S.size < min_seeds:
    reason = f"{observed_S.size} usable seed(s); at least {min_seeds} needed"
  return {**result, "effect": tested.estimate, "ci_low": finite(tested.low), "ci_high": finite(tested.high),
          "p_value": finite(tested.p_value), "verdict": tested.verdict, "reason": reason}


# `from mpcodec.metrics import critical_periods` gives this module; calling it runs `critical_periods`.
make_callable(__name__, critical_periods)
