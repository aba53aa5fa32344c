"""Validity harness of the jump detector: recall on planted steps, false positives on jump-free nulls.

Planted: steps of 0.5, 1, 2, 4 and 8 noise SDs (SD of the stationary noise), one at a very early (1, 2,
3 or 5%), early (10%), middle (50%) or late (90%) position, or three at once (10, 50 and 90%), each with
a random sign, on white noise and on AR(1) noise with coefficient 0.8. A planted step counts as
recalled when a jump is detected within +-`TOLERANCE` measurements of it (a position closer to the
start than the detector's `min_segment` is planted at `min_segment`). Nulls: white noise, a linear
drift, a training-curve decay (a fall of 20 noise SDs with time constant 3% of the series), AR(1) noise
with coefficient 0.8; their false-positive rate is detections per 1,000 measurements. Decays with time
constants from 1 to 15% of the series and a slow saturating rise are reported too, with no bar, and the
false positives of every null are also given per position bin (`POSITION_BIN_EDGES`).

Two uses of the table beyond its bars:
- `recall_at` and `false_positive_profile` give the recall at a jump's relative position, size and AR
  coefficient and the expected false jumps at each position of a series (the training-curve decays),
  from which `mean_recall` and `corrected_fraction` correct the share of jumps in a part of training;
- `changepoint_surrogates.matched_surrogates` draws jump-free series matched to measured ones (their
  fitted trend and AR(1)), whose detections are the false jumps to expect in each measured series.

Series come in groups of `SEEDS_PER_GROUP` "seeds" that share the planted steps, and each group's
minimum jump size comes from `changepoints.minimum_jump_size` of the group, as in the dynamics study.
Everything is drawn from the given key and one `detect` call handles all series, so the table is
deterministic and vectorised.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core.errors import ConfigError, DataError
from mpcodec.metrics import changepoints

TOLERANCE = 2
SIZES = (0.5, 1.0, 2.0, 4.0, 8.0)
# The positions of the "multiple" layout and of the recall bars; single steps are also planted earlier.
POSITIONS = {"early": 0.1, "middle": 0.5, "late": 0.9}
EARLY_POSITIONS = {"1pct": 0.01, "2pct": 0.02, "3pct": 0.03, "5pct": 0.05}
SINGLE_POSITIONS = {**EARLY_POSITIONS, **POSITIONS}
NOISES = {"white": 0.0, "ar_0.8": 0.8}
SEEDS_PER_GROUP = 5
# The bars of the issue: recall at and above these sizes on each noise, false positives on every null.
RECALL_BAR = 0.9
RECALL_BAR_MIN_SIZE = {"white": 2.0, "ar_0.8": 4.0}
FALSE_POSITIVE_BAR_PER_1000 = 2.0
DRIFT_SDS = 10.0
DECAY_SDS = 20.0
DECAY_TIME_CONSTANT = 0.03
# Training curves fall with time constants of about 1-15% of a run; 3% is the barred null.
OTHER_DECAY_TIME_CONSTANTS = (0.01, 0.02, 0.05, 0.06, 0.08, 0.1, 0.15)
RISE_TIME_CONSTANT = 0.2
# Bins of relative position (index / M) in which false positives are also counted.
POSITION_BIN_EDGES = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# The nulls whose false positives by position stand for a measured training curve's (`false_positive_profile`).
TRAINING_CURVE_NULLS = ("training_curve_decay",) + tuple(f"decay_tau_{f:g}" for f in OTHER_DECAY_TIME_CONSTANTS)
# The smallest recall `recall_at` returns: a correction never multiplies a detection by more than 20.
RECALL_FLOOR = 0.05


def stationary_ar1(key, num_series: int, num_measurements: int, phi: float) -> jax.Array:
  """AR(1) noise with unit stationary SD, (N, M): u_t = phi u_{t-1} + sqrt(1 - phi^2) eps_t.

  `phi` is a Python number (its square root taken in float64) or a traced scalar (under vmap, as in
  `changepoint_surrogates.matched_surrogates`).
  """
  start_key, noise_key = jax.random.split(key)
  start_N = jax.random.normal(start_key, (num_series,))
  innovation_sd = np.sqrt(1 - phi**2) if isinstance(phi, (int, float)) else jnp.sqrt(1 - phi**2)
  innovations_MxN = jax.random.normal(noise_key, (num_measurements - 1, num_series)) * innovation_sd

  def step(previous_N, innovation_N):
    value = phi * previous_N + innovation_N
    return value, value

  _, rest_MxN = jax.lax.scan(step, start_N, innovations_MxN)
  return jnp.concatenate([start_N[None], rest_MxN], axis=0).T


def null_series(key, num_series: int, num_measurements: int) -> dict[str, jax.Array]:
  """The jump-free series of the harness, {name: (N, M)}, the four barred nulls first."""
  keys = jax.random.split(key, 4 + len(OTHER_DECAY_TIME_CONSTANTS) + 1)
  t_M = jnp.arange(num_measurements, dtype=jnp.float32)
  white = lambda k: stationary_ar1(k, num_series, num_measurements, 0.0)
  decay = lambda fraction: DECAY_SDS * jnp.exp(-t_M / (fraction * num_measurements))
  series = {
      "white": white(keys[0]),
      "linear_drift": white(keys[1]) + DRIFT_SDS * t_M / num_measurements,
      "training_curve_decay": white(keys[2]) + decay(DECAY_TIME_CONSTANT),
      "ar_0.8": stationary_ar1(keys[3], num_series, num_measurements, 0.8),
  }
  for i, fraction in enumerate(OTHER_DECAY_TIME_CONSTANTS):
    series[f"decay_tau_{fraction:g}"] = white(keys[4 + i]) + decay(fraction)
  rise = DECAY_SDS * (1.0 - jnp.exp(-t_M / (RISE_TIME_CONSTANT * num_measurements)))
  series[f"slow_rise_tau_{RISE_TIME_CONSTANT:g}"] = white(keys[-1]) + rise
  return series


BARRED_NULLS = ("white", "linear_drift", "training_curve_decay", "ar_0.8")


def _layouts() -> dict[str, tuple[str, ...]]:
  """Layout name -> the positions it plants a step at."""
  return {**{f"single_{name}": (name,) for name in SINGLE_POSITIONS}, "multiple": tuple(POSITIONS)}


def planted_indices(num_measurements: int, min_segment: int) -> dict[str, int]:
  """Index of each named position in a series of M measurements, never closer to the start than
  `min_segment` (the detector finds no jump there)."""
  return {name: max(int(round(fraction * num_measurements)), min_segment)
          for name, fraction in SINGLE_POSITIONS.items()}


def _planted(key, num_groups: int, num_measurements: int, phi: float, min_segment: int):
  """Planted series (cells, N, M), step positions, and the (size, layout) of each cell."""
  layouts = _layouts()
  cells = [(size, layout) for size in SIZES for layout in layouts]
  num_series = num_groups * SEEDS_PER_GROUP
  noise_key, sign_key = jax.random.split(key)
  noise = stationary_ar1(noise_key, len(cells) * num_series, num_measurements, phi)
  noise = noise.reshape(len(cells), num_series, num_measurements)
  # Seeds of a group share the signs of its steps.
  signs = jnp.where(jax.random.bernoulli(sign_key, 0.5, (len(cells), num_groups, len(SINGLE_POSITIONS))),
                    1.0, -1.0)
  signs = jnp.repeat(signs, SEEDS_PER_GROUP, axis=1)
  t_M = jnp.arange(num_measurements)
  index = planted_indices(num_measurements, min_segment)
  steps = []
  for size, layout in cells:
    step = jnp.zeros((num_series, num_measurements))
    for p, name in enumerate(SINGLE_POSITIONS):
      if name in layouts[layout]:
        step = step + size * signs[len(steps), :, p, None] * (t_M >= index[name])
    steps.append(step)
  return noise + jnp.stack(steps), index, cells


def _group_min_size(series_CxNxM: jax.Array) -> jax.Array:
  """Each group's minimum jump size, broadcast to its series, (C * N,)."""
  cells, num_series, num_measurements = series_CxNxM.shape
  groups = series_CxNxM.reshape(cells * num_series // SEEDS_PER_GROUP, SEEDS_PER_GROUP, num_measurements)
  min_size = jax.vmap(changepoints.minimum_jump_size)(groups)
  return jnp.repeat(min_size, SEEDS_PER_GROUP)


def _position_bins(num_measurements: int) -> np.ndarray:
  """The `POSITION_BIN_EDGES` bin of each measurement's relative position index / M, (M,)."""
  position_M = np.arange(num_measurements) / num_measurements
  return np.clip(np.searchsorted(POSITION_BIN_EDGES, position_M, side="right") - 1, 0,
                 len(POSITION_BIN_EDGES) - 2)


def _recall_by_position(recall: dict, index: dict[str, int], num_measurements: int) -> dict:
  """{noise: {"positions": relative positions, "sizes", "recall": (positions, sizes)}} of single steps.

  Positions planted at the same index (short series) are averaged.
  """
  out = {}
  for noise, by_layout in recall.items():
    cells: dict[float, list[list[float]]] = {}
    for name in SINGLE_POSITIONS:
      by_size = by_layout[f"single_{name}"][name]
      cells.setdefault(index[name] / num_measurements, []).append([by_size[f"{s:g}"] for s in SIZES])
    positions = sorted(cells)
    out[noise] = {"positions": positions, "sizes": list(SIZES),
                  "recall": [np.mean(cells[p], axis=0).tolist() for p in positions]}
  return out


def _near(is_jump_NxM: np.ndarray, position: int) -> np.ndarray:
  return is_jump_NxM[:, max(position - TOLERANCE, 0):position + TOLERANCE + 1].any(axis=1)


def validity_table(cfg: changepoints.DetectorConfig, key, num_measurements: int = 400, trials: int = 200,
                   null_trials: int = 1000, table: changepoints.PenaltyTable | None = None) -> dict:
  """Recall by noise, layout, position and size; false positives per 1,000 measurements per null; bars.

  trials: planted series per (noise, size, layout) cell, rounded up to whole groups of seeds;
  null_trials: series per null. `table` defaults to `calibrate(num_measurements, cfg, key')` with a
  key of its own. Returns a JSON-ready dict (floats, no NaN).
  """
  if trials < SEEDS_PER_GROUP or null_trials < 1 or num_measurements < 20:
    raise ConfigError(f"validity_table needs trials >= {SEEDS_PER_GROUP}, null_trials >= 1 and "
                      f">= 20 measurements, got {trials}, {null_trials}, {num_measurements}")
  calibration_key, null_key, *noise_keys = jax.random.split(key, 2 + len(NOISES))
  if table is None:
    table = changepoints.calibrate(num_measurements, cfg, calibration_key)
  num_groups = -(-trials // SEEDS_PER_GROUP)
  planted, min_sizes = [], []
  for noise_key, phi in zip(noise_keys, NOISES.values()):
    series, index, cells = _planted(noise_key, num_groups, num_measurements, phi, cfg.min_segment)
    planted.append(series)
    min_sizes.append(_group_min_size(series))
  nulls = null_series(null_key, null_trials - null_trials % SEEDS_PER_GROUP or SEEDS_PER_GROUP,
                      num_measurements)
  null_stack = jnp.stack(list(nulls.values()))
  all_series = jnp.concatenate([jnp.concatenate([s.reshape(-1, num_measurements) for s in planted]),
                                null_stack.reshape(-1, num_measurements)])
  all_min = jnp.concatenate(min_sizes + [_group_min_size(null_stack)])
  is_jump = np.asarray(changepoints.detect(all_series, table, cfg, all_min).is_jump_NxM)

  num_planted = planted[0].size // num_measurements
  recall: dict = {}
  extra_per_1000: dict = {}
  for n, noise in enumerate(NOISES):
    jumps = is_jump[n * num_planted:(n + 1) * num_planted].reshape(len(cells), -1, num_measurements)
    recall[noise], extra_per_1000[noise] = {}, {}
    for c, (size, layout) in enumerate(cells):
      positions = _layouts()[layout]
      for name in positions:
        by_size = recall[noise].setdefault(layout, {}).setdefault(name, {})
        by_size[f"{size:g}"] = float(_near(jumps[c], index[name]).mean())
      planted_zone = np.zeros(num_measurements, bool)
      for name in positions:
        planted_zone[max(index[name] - TOLERANCE, 0):index[name] + TOLERANCE + 1] = True
      extra = jumps[c][:, ~planted_zone].sum() / jumps[c].size * 1000.0
      extra_per_1000[noise][f"{layout}/{size:g}"] = float(extra)
  null_jumps = is_jump[len(NOISES) * num_planted:].reshape(len(nulls), -1, num_measurements)
  false_positives = {name: float(null_jumps[i].sum() / null_jumps[i].size * 1000.0)
                     for i, name in enumerate(nulls)}
  bin_M = _position_bins(num_measurements)
  by_position = {}
  for i, name in enumerate(nulls):
    per_measurement_M = null_jumps[i].mean(axis=0)
    by_position[name] = [float(per_measurement_M[bin_M == b].mean() * 1000.0) if np.any(bin_M == b) else None
                         for b in range(len(POSITION_BIN_EDGES) - 1)]

  def min_recall(noise: str) -> float:
    return min(value for layout in recall[noise].values() for by_size in layout.values()
               for size, value in by_size.items() if float(size) >= RECALL_BAR_MIN_SIZE[noise])

  bars = {f"recall_{noise}_min_at_{RECALL_BAR_MIN_SIZE[noise]:g}sd_and_more": min_recall(noise)
          for noise in NOISES}
  bars["false_positives_per_1000_max_on_nulls"] = max(false_positives[name] for name in BARRED_NULLS)
  passed = (all(bars[f"recall_{noise}_min_at_{RECALL_BAR_MIN_SIZE[noise]:g}sd_and_more"] >= RECALL_BAR
                for noise in NOISES)
            and bars["false_positives_per_1000_max_on_nulls"] <= FALSE_POSITIVE_BAR_PER_1000)
  return {
      "num_measurements": num_measurements,
      "planted_series_per_cell": num_groups * SEEDS_PER_GROUP,
      "null_series_each": int(null_jumps.shape[1]),
      "tolerance_measurements": TOLERANCE,
      "positions": {name: index[name] for name in SINGLE_POSITIONS},
      "detector": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()},
      "penalties": {"ar_coefficients": np.asarray(table.ar_coefficients_G).round(4).tolist(),
                    "final_pass": np.asarray(table.penalties_G).round(4).tolist(),
                    "first_pass": np.asarray(table.first_pass_penalties_G).round(4).tolist()},
      "recall": recall,
      "recall_by_position": _recall_by_position(recall, index, num_measurements),
      "extra_detections_per_1000": extra_per_1000,
      "false_positives_per_1000": false_positives,
      "position_bin_edges": list(POSITION_BIN_EDGES),
      "false_positives_by_position_per_1000": by_position,
      "training_curve_nulls": list(TRAINING_CURVE_NULLS),
      "barred_nulls": list(BARRED_NULLS),
      "bars": {**bars, "recall_bar": RECALL_BAR, "false_positive_bar_per_1000": FALSE_POSITIVE_BAR_PER_1000,
               "passed": bool(passed)},
  }


# ------------------------------------------------------------------------ corrections from the table


def _bracket(values_J: np.ndarray, grid_G) -> tuple[np.ndarray, np.ndarray]:
  """Lower grid index and linear weight of the upper neighbour for each value (clamped to the grid)."""
  grid_G = np.asarray(grid_G, np.float64)
  if grid_G.size == 1:
    return np.zeros(values_J.shape, np.int64), np.zeros(values_J.shape)
  clipped = np.clip(values_J, grid_G[0], grid_G[-1])
  lower = np.clip(np.searchsorted(grid_G, clipped, side="right") - 1, 0, grid_G.size - 2)
  weight = (clipped - grid_G[lower]) / (grid_G[lower + 1] - grid_G[lower])
  return lower, weight


def recall_at(validity: dict, position_J, size_sds_J, ar_coefficient_J, floor: float = RECALL_FLOOR) -> np.ndarray:
  """The harness' recall of a single step at each jump's relative position, size and AR coefficient, (J,).

  position_J: index / M; size_sds_J: |size| in units of the series' stationary noise SD (the detector's
  `NoiseModel.residual_sd_N`); ar_coefficient_J: the series' estimated AR(1) coefficient. Linear
  interpolation in position and in log2 size within each noise's table (`recall_by_position`), then
  linearly between the noises' AR coefficients (`NOISES`), every coordinate clamped to the table's
  range; floored at `floor`.
  """
  position_J = np.asarray(position_J, np.float64)
  size_sds_J = np.asarray(size_sds_J, np.float64)
  ar_coefficient_J = np.asarray(ar_coefficient_J, np.float64)
  if not position_J.shape == size_sds_J.shape == ar_coefficient_J.shape or position_J.ndim != 1:
    raise DataError(f"recall_at: position_J, size_sds_J and ar_coefficient_J must be 1-D and of one shape, "
                    f"got {position_J.shape}, {size_sds_J.shape}, {ar_coefficient_J.shape}")
  by_noise = validity["recall_by_position"]
  per_noise = []
  for noise in NOISES:
    table = by_noise[noise]
    recall_PxS = np.asarray(table["recall"], np.float64)
    p, wp = _bracket(position_J, table["positions"])
    s, ws = _bracket(np.log2(np.maximum(np.abs(size_sds_J), 1e-12)), np.log2(table["sizes"]))
    p1 = np.minimum(p + 1, recall_PxS.shape[0] - 1)
    s1 = np.minimum(s + 1, recall_PxS.shape[1] - 1)
    per_noise.append((1 - wp) * ((1 - ws) * recall_PxS[p, s] + ws * recall_PxS[p, s1])
                     + wp * ((1 - ws) * recall_PxS[p1, s] + ws * recall_PxS[p1, s1]))
  n, wn = _bracket(ar_coefficient_J, list(NOISES.values()))
  stacked = np.stack(per_noise)
  n1 = np.minimum(n + 1, stacked.shape[0] - 1)
  columns = np.arange(position_J.size)
  recall_J = (1 - wn) * stacked[n, columns] + wn * stacked[n1, columns]
  return np.maximum(recall_J, floor)


def false_positive_profile(validity: dict, num_measurements: int,
                           nulls: tuple[str, ...] = TRAINING_CURVE_NULLS) -> np.ndarray:
  """Expected false jumps at each measurement of a jump-free series of `num_measurements`, (M,).

  The harness' false positives per measurement in the position bin of index / M, averaged over `nulls`
  (by default the training-curve decays with time constants of 1-15% of the series); a bin the harness'
  series did not reach counts as 0. Summed over a part of training, it is that part's expected false
  jumps per series.
  """
  by_position = validity["false_positives_by_position_per_1000"]
  rates_NxB = np.asarray([[np.nan if v is None else v for v in by_position[name]] for name in nulls], np.float64)
  reached_NxB = np.isfinite(rates_NxB)
  rate_B = np.where(reached_NxB.any(axis=0), np.where(reached_NxB, rates_NxB, 0.0).sum(axis=0)
                    / np.maximum(reached_NxB.sum(axis=0), 1), 0.0)
  if len(validity["position_bin_edges"]) - 1 != rate_B.size:
    raise DataError("false_positive_profile: the table's bins and its rates disagree")
  return rate_B[_position_bins(num_measurements)] / 1000.0


def mean_recall(validity: dict, position_P, count_P, size_sds_J, ar_coefficient_J, weight_J,
                floor: float = RECALL_FLOOR) -> float:
  """Mean recall over a part of a series for a distribution of jumps, from the harness' table.

  r = sum_p c_p sum_j w_j r(p, d_j, phi_j) / (sum_p c_p sum_j w_j): positions p (index / M) with
  multiplicities c_p (the part's measurements, over every series searched), jumps j of size d_j (noise
  SDs) and AR coefficient phi_j weighted by w_j (the size distribution the part is assumed to share),
  r from `recall_at`; NaN when there is no position or no weight.
  """
  position_P, count_P = np.asarray(position_P, np.float64), np.asarray(count_P, np.float64)
  size_sds_J, ar_coefficient_J = np.asarray(size_sds_J, np.float64), np.asarray(ar_coefficient_J, np.float64)
  weight_J = np.asarray(weight_J, np.float64)
  if position_P.shape != count_P.shape or not size_sds_J.shape == ar_coefficient_J.shape == weight_J.shape:
    raise DataError(f"mean_recall: position_P and count_P, and size_sds_J, ar_coefficient_J and weight_J must "
                    f"match, got {position_P.shape}, {count_P.shape}; {size_sds_J.shape}, "
                    f"{ar_coefficient_J.shape}, {weight_J.shape}")
  total = count_P.sum() * weight_J.sum()
  if not total > 0:
    return math.nan
  # Series of one length share their positions: each distinct position once, with its summed count.
  position_P, index_P = np.unique(position_P, return_inverse=True)
  count_P = np.bincount(index_P.ravel(), weights=count_P, minlength=position_P.size)
  num_positions, num_jumps = position_P.size, size_sds_J.size
  recall_PxJ = recall_at(validity, np.repeat(position_P, num_jumps), np.tile(size_sds_J, num_positions),
                         np.tile(ar_coefficient_J, num_positions), floor).reshape(num_positions, num_jumps)
  return float(count_P @ recall_PxJ @ weight_J / total)


def corrected_fraction(detected_in: int, detected_out: int, recall_in: float, recall_out: float,
                       expected_false_in: float, expected_false_out: float) -> tuple[float, float]:
  """(raw, corrected) share of jumps in one part of training, corrected for recall and false positives.

  For the part (in) and the rest (out): O_z jumps detected there, F_z the false jumps expected there
  (`false_positive_profile` summed over the part's measurements of every series searched), r_z the
  detector's mean recall there (`mean_recall`). True jumps there are estimated by
      T_z = max(0, O_z - F_z) / r_z,
  and   raw = O_in / (O_in + O_out),   corrected = T_in / (T_in + T_out),
  each NaN when its denominator is 0 (or a recall is NaN).
  """
  total = detected_in + detected_out
  raw = detected_in / total if total else math.nan
  true_in = max(0.0, detected_in - expected_false_in) / recall_in if detected_in else 0.0
  true_out = max(0.0, detected_out - expected_false_out) / recall_out if detected_out else 0.0
  corrected = true_in / (true_in + true_out) if true_in + true_out > 0 else math.nan
  return raw, corrected
