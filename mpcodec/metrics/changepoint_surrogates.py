"""Jump-free surrogates matched to measured series: the false jumps to expect in each one.

`surrogate_model` fits each measured series' trend (with a richer trend basis than the detector's, so a
training-curve decay the detector cannot follow is kept) and the AR(1) of its residual; `matched_surrogates`
draws series with that trend and noise and no jump. Detected with the series' own penalty table and
minimum size, their jumps are the detector's false positives on that series.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core.errors import ConfigError
from mpcodec.metrics import changepoint_model, changepoint_validity, changepoints
from mpcodec.metrics.shapes import check_axis, check_rank


# Time constants of the surrogates' trend: the detector's, with the gaps between 0.8% and 30% filled, so a
# training-curve decay the detector's trend cannot follow (time constants of about 1-15%) is kept.
SURROGATE_TREND_TIME_CONSTANTS = (0.005, 0.008, 0.015, 0.03, 0.06, 0.1, 0.15, 0.3, 0.5)


def surrogate_config(cfg: changepoints.DetectorConfig) -> changepoints.DetectorConfig:
  """The detector with the surrogates' richer trend (`SURROGATE_TREND_TIME_CONSTANTS` and its own)."""
  constants = tuple(sorted(set(cfg.trend_time_constants) | set(SURROGATE_TREND_TIME_CONSTANTS)))
  return dataclasses.replace(cfg, trend_time_constants=constants)


def surrogate_model(series_NxM, trend_NxM, rich_is_jump_NxM, group_N, cfg: changepoints.DetectorConfig
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(trend with offset (N, M), AR(1) coefficient (N,), stationary SD (N,)) of jump-free surrogates matched
  to each measured series.

  Why not the detector's own fit: its trend is, by construction, one the detector fits exactly, so
  surrogates built on it give false positives at the calibrated rate and miss those a real curve causes
  where the detector's trend cannot follow it (a decay with a time constant of 6-10% of the run gives about
  3 per 1,000, not 1). So:
  - levels: the jumps found by the detector with the richer trend (`surrogate_config`, calibrated alike:
    `rich_is_jump_NxM`), where such a decay is trend and finds no false jump;
  - the misfit: the richer trend minus the detector's trend, both fitted jointly with those levels,
    averaged over the series of one `group_N` (the seeds of one run, measure and layer, whose true curves
    agree) so that it carries 1/S of one series' noise;
  - trend: the series' own detector trend (`trend_NxM`, mean 0) + the group's misfit + the series' mean;
  - noise: AR(1) of the residual about the richer trend and those levels (`changepoint_model.ar1_of_residual`).
  The misfit's remaining noise adds a little structure, so the expected count errs high: on jump-free
  AR(1) + decay series (1-15% time constants, 200 measurements, groups of 5) the excess is -0.04 to -0.22
  false jumps per series.
  """
  shape = check_rank("surrogate_model", "series_NxM", series_NxM, 2, "series, measurements")
  for name, values in (("trend_NxM", trend_NxM), ("rich_is_jump_NxM", rich_is_jump_NxM)):
    check_rank("surrogate_model", name, values, 2, "series, measurements")
    for axis in (0, 1):
      check_axis("surrogate_model", name, values, axis, shape[axis], f"{'NM'[axis]} (as in series_NxM)")
  check_rank("surrogate_model", "group_N", group_N, 1, "series")
  check_axis("surrogate_model", "group_N", group_N, 0, shape[0], "N (the series of series_NxM)")
  series = jnp.asarray(series_NxM, jnp.float32)
  rich_cfg = surrogate_config(cfg)
  rich_trend, rich_levels = changepoint_model.fit_levels(series, rich_is_jump_NxM,
                                                         changepoint_model.trend_basis(shape[1], rich_cfg))
  own_trend, _ = changepoint_model.fit_levels(series, rich_is_jump_NxM,
                                              changepoint_model.trend_basis(shape[1], cfg))
  misfit_NxM = np.asarray(rich_trend - own_trend, np.float64)
  _, group_N = np.unique(np.asarray(group_N), return_inverse=True)
  sums_GxM = np.zeros((group_N.max() + 1, shape[1]))
  np.add.at(sums_GxM, group_N, misfit_NxM)
  misfit_NxM = (sums_GxM / np.bincount(group_N)[:, None])[group_N]
  noise = changepoint_model.ar1_of_residual(rich_trend, series - rich_trend - rich_levels, series, cfg)
  trend = np.asarray(trend_NxM, np.float64) + misfit_NxM + np.asarray(series, np.float64).mean(axis=1, keepdims=True)
  return (trend.astype(np.float32), np.asarray(noise.ar_coefficient_N), np.asarray(noise.residual_sd_N))


def matched_surrogates(trend_NxM, ar_coefficient_N, residual_sd_N, keys_N, num_surrogates: int) -> jax.Array:
  """Jump-free series matched to measured ones: trend + stationary AR(1) noise, (N, num_surrogates, M).

  Series n's surrogates are its fitted trend (offset included) plus AR(1) noise with its estimated
  coefficient phi_n and stationary SD sd_n (`surrogate_model`): u_0 ~ N(0, sd_n^2),
  u_t = phi_n u_{t-1} + sd_n sqrt(1 - phi_n^2) eps_t, drawn from keys_N[n] alone. Detected with the
  series' own penalty table and minimum size, their jumps are the false jumps to expect in that series.
  """
  shape = check_rank("matched_surrogates", "trend_NxM", trend_NxM, 2, "series, measurements")
  for name, values in (("ar_coefficient_N", ar_coefficient_N), ("residual_sd_N", residual_sd_N)):
    check_rank("matched_surrogates", name, values, 1, "series")
    check_axis("matched_surrogates", name, values, 0, shape[0], "N (the series of trend_NxM)")
  check_axis("matched_surrogates", "keys_N", keys_N, 0, shape[0], "N (the series of trend_NxM)")
  if num_surrogates < 1:
    raise ConfigError(f"matched_surrogates: num_surrogates must be >= 1, got {num_surrogates}")

  def one(trend_M, phi, sd, key):
    return trend_M[None] + sd * changepoint_validity.stationary_ar1(key, num_surrogates, shape[1], phi)

  return jax.vmap(one)(jnp.asarray(trend_NxM, jnp.float32), jnp.asarray(ar_coefficient_N, jnp.float32),
                       jnp.asarray(residual_sd_N, jnp.float32), keys_N)
