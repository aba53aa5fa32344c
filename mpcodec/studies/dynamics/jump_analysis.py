"""Jumps in every series of a sweep: the null-calibrated change-point detector applied to the grid.

The detector is `mpcodec.metrics.changepoints`: its penalty is calibrated once per series length on
surrogate series without jumps, and a jump must also exceed a minimum size set from the seed-to-seed
spread of the layer's series and never below float32 resolution. Every series of one length (all runs,
measures, seeds and layers) goes through one jitted detector in blocks of a fixed size, so one compiled
program serves the whole grid.

The jump table holds one row per jump, keyed by the TRUE training step of the measurement where the
new level starts (`steps_M[index]`), never by the measurement index alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np

from mpcodec.metrics import changepoints
from mpcodec.studies.dynamics.sweep_series import RunSeries

JUMP_COLUMNS = ("run", "arch", "dataset", "family", "measure", "seed", "layer", "layer_index",
                "depth_fraction", "index", "step", "fraction", "size", "relative_size", "sign",
                "duration_measurements", "duration_steps", "type")
TEXT_COLUMNS = ("run", "arch", "dataset", "family", "measure", "layer")
COLUMN_DTYPES = {**{c: np.str_ for c in TEXT_COLUMNS},
                 **{c: np.float64 for c in ("depth_fraction", "fraction", "size", "relative_size")}}
# Series per detector call: fixed, so one compiled program serves every block (the last one is padded).
BLOCK = 1024


def _blocks(series_NxM: np.ndarray, min_size_N: np.ndarray, table, cfg) -> dict[str, np.ndarray]:
  num_series = series_NxM.shape[0]
  padded = -(-num_series // BLOCK) * BLOCK
  series_NxM = np.concatenate([series_NxM, np.repeat(series_NxM[:1], padded - num_series, 0)])
  min_size_N = np.concatenate([min_size_N, np.repeat(min_size_N[:1], padded - num_series)])
  parts = []
  for start in range(0, padded, BLOCK):
    jumps = changepoints.detect(series_NxM[start:start + BLOCK], table, cfg, min_size_N[start:start + BLOCK])
    parts.append({"is_jump": np.asarray(jumps.is_jump_NxM), "size": np.asarray(jumps.size_NxM),
                  "duration": np.asarray(jumps.duration_NxM)})
  return {k: np.concatenate([p[k] for p in parts])[:num_series] for k in parts[0]}


def minimum_sizes(series_SxMxL: np.ndarray, factor: float) -> np.ndarray:
  """(L,) the smallest jump size that counts in each layer, from its seeds' series (`minimum_jump_size`).

  A run left with one usable seed has no seed-to-seed spread: the floor is then float32 resolution alone
  (the seed stacked twice has zero spread).
  """
  if series_SxMxL.shape[0] < 2:
    series_SxMxL = np.concatenate([series_SxMxL, series_SxMxL])
  return np.asarray(changepoints.minimum_jump_size(series_SxMxL, factor), np.float64)


@functools.lru_cache(maxsize=16)
def penalty_table(num_measurements: int, cfg: changepoints.DetectorConfig,
                  seed: int) -> changepoints.PenaltyTable:
  """The detector's penalties for one series length, calibrated once per length, config and seed."""
  return changepoints.calibrate(num_measurements, cfg, jax.random.fold_in(jax.random.PRNGKey(seed),
                                                                          num_measurements))


def detect_jumps(runs: Sequence[RunSeries], measures: Sequence[str], cfg: changepoints.DetectorConfig,
                 seed: int, min_size_factor: float) -> tuple[dict[str, np.ndarray], dict]:
  """(jump table as columns, {"num_series": {(run, measure, seed): layers}, "penalties": per length}).

  Penalties are calibrated once per series length (`penalty_table`); all series of one length are
  detected together.
  """
  rows: list[tuple[RunSeries, str]] = [(run, measure) for run in runs for measure in measures]
  by_length: dict[int, list[int]] = {}
  for i, (run, _) in enumerate(rows):
    by_length.setdefault(run.num_measurements, []).append(i)
  columns: dict[str, list] = {c: [] for c in JUMP_COLUMNS if c != "type"}
  penalties = {}
  for length, members in sorted(by_length.items()):
    table = penalty_table(length, cfg, seed)
    penalties[str(length)] = _jsonable_table(table)
    series, sizes, owners = [], [], []
    for i in members:
      run, measure = rows[i]
      values_SxMxL = run.measures[measure]
      min_L = minimum_sizes(values_SxMxL, min_size_factor)
      series.append(np.swapaxes(values_SxMxL, 1, 2).reshape(-1, length))   # rows (seed, layer)
      sizes.append(np.tile(min_L, run.num_seeds))
      owners.append(i)
    found = _blocks(np.concatenate(series).astype(np.float32), np.concatenate(sizes), table, cfg)
    start = 0
    for i in owners:
      run, measure = rows[i]
      count = run.num_seeds * run.num_layers
      _collect(columns, run, measure, {k: v[start:start + count] for k, v in found.items()},
               np.swapaxes(run.measures[measure], 1, 2).reshape(count, length))
      start += count
  table_columns = {k: np.asarray(v, dtype=COLUMN_DTYPES.get(k, np.int64)) for k, v in columns.items()}
  num_series = {(run.run, measure, int(seed)): run.num_layers for run, measure in rows for seed in run.seeds}
  return table_columns, {"num_series": num_series, "penalties": penalties}


def _jsonable_table(table) -> object:
  """The penalty table in a JSON-able form (NamedTuple / dataclass fields, arrays as lists)."""
  if hasattr(table, "_asdict"):
    table = table._asdict()
  elif hasattr(table, "__dataclass_fields__"):
    table = {k: getattr(table, k) for k in table.__dataclass_fields__}
  if isinstance(table, dict):
    return {k: np.asarray(v).tolist() if hasattr(v, "shape") else v for k, v in table.items()}
  return np.asarray(table).tolist()


def _collect(columns: dict, run: RunSeries, measure: str, found: dict, series_NxM: np.ndarray) -> None:
  rows_J, index_J = np.nonzero(found["is_jump"])
  if rows_J.size == 0:
    return
  seed_J = run.seeds[rows_J // run.num_layers]
  layer_J = rows_J % run.num_layers
  range_N = series_NxM.max(axis=1) - series_NxM.min(axis=1)
  size_J = found["size"][rows_J, index_J].astype(np.float64)
  duration_J = found["duration"][rows_J, index_J].astype(np.int64)
  last = run.num_measurements - 1
  step_J = run.steps_M[index_J]
  columns["run"] += [run.run] * rows_J.size
  columns["arch"] += [run.arch] * rows_J.size
  columns["dataset"] += [run.dataset] * rows_J.size
  columns["family"] += [run.family] * rows_J.size
  columns["measure"] += [measure] * rows_J.size
  columns["seed"] += seed_J.tolist()
  columns["layer"] += [run.layer_names[l] for l in layer_J]
  columns["layer_index"] += layer_J.tolist()
  columns["depth_fraction"] += run.depth_fraction_L[layer_J].tolist()
  columns["index"] += index_J.tolist()
  columns["step"] += step_J.tolist()
  columns["fraction"] += (step_J / run.num_steps).tolist()
  columns["size"] += size_J.tolist()
  range_J = range_N[rows_J]
  columns["relative_size"] += np.where(range_J > 0, size_J / np.where(range_J > 0, range_J, 1.0),
                                       0.0).tolist()
  columns["sign"] += np.sign(size_J).astype(np.int64).tolist()
  columns["duration_measurements"] += duration_J.tolist()
  columns["duration_steps"] += (run.steps_M[np.minimum(index_J + duration_J, last)] - step_J).tolist()


def jump_rows(jumps: dict[str, np.ndarray], labels_J: np.ndarray) -> list[dict]:
  """The jump table as rows of jumps.csv (type = -1 / empty when the jumps were not clustered)."""
  count = int(np.asarray(jumps["step"]).size)
  return [{**{c: jumps[c][j] for c in JUMP_COLUMNS if c != "type"},
           "type": int(labels_J[j]) if labels_J[j] >= 0 else None} for j in range(count)]
