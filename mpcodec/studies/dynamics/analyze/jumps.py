"""Jumps in every series of a sweep: the null-calibrated change-point detector applied to the grid.

The detector is `mpcodec.metrics.changepoints`: its penalty is calibrated once per series length on
surrogate series without jumps, and a jump must also exceed a minimum size set from the seed-to-seed
spread of the layer's series and never below float32 resolution. Every series of one length (all runs,
measures, seeds and layers) goes through one jitted detector in blocks of a fixed size, so one compiled
program serves the whole grid.

The jump table holds one row per jump, keyed by the TRUE training step of the measurement where the
new level starts (`steps_M[index]`), never by the measurement index alone.

What the counts mean depends on the detector's penalty (its false-positive target), so counts and
timings are read against nulls:
- matched surrogates (`matched_excess`): for every measured series, `surrogates_per_series` jump-free
  series with its fitted trend and AR(1) (`changepoint_surrogates.matched_surrogates`), detected with the
  same penalty table and minimum size; observed jumps minus their mean count is the series' excess over
  the detector's false positives, summed per seed (`excess_per_seed`), the seed being the unit;
- the penalty curve (`penalty_curve`): jumps found in the primary measure's series and in their matched
  surrogates at several false-positive targets;
- timing (`timing_fractions`): the share of a seed's jumps in a part of training, raw and corrected by
  the validity harness' recall by position and size and its false positives by position
  (`changepoint_validity.corrected_fraction`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from mpcodec.metrics import changepoint_surrogates, changepoint_validity, changepoints
from mpcodec.studies.dynamics.analyze.critical import run_hash
from mpcodec.studies.dynamics.series import RunSeries

JUMP_COLUMNS = ("run", "arch", "dataset", "family", "measure", "seed", "layer", "layer_index",
                "depth_fraction", "index", "step", "fraction", "position", "size", "relative_size", "size_sds",
                "ar_coefficient", "sign", "duration_measurements", "duration_steps", "type")
TEXT_COLUMNS = ("run", "arch", "dataset", "family", "measure", "layer")
COLUMN_DTYPES = {**{c: np.str_ for c in TEXT_COLUMNS},
                 **{c: np.float64 for c in ("depth_fraction", "fraction", "position", "size", "relative_size",
                                            "size_sds", "ar_coefficient")}}
SERIES_COLUMNS = ("run", "family", "measure", "seed", "layer", "layer_index", "num_measurements",
                  "ar_coefficient", "residual_sd", "observed_jumps", "expected_false_jumps", "excess")
PENALTY_CURVE_COLUMNS = ("false_positive_target_per_1000", "measure", "num_series", "num_measurements",
                         "observed_jumps", "expected_false_jumps", "excess", "observed_per_1000",
                         "expected_per_1000")
# Series per detector call: fixed, so one compiled program serves every block (the last one is padded).
BLOCK = 1024
# Measured series whose surrogates are drawn in one call (padded, so one compiled program per length).
SURROGATE_CHUNK = 256


def _blocks(series_NxM: np.ndarray, min_size_N: np.ndarray, table, cfg,
            fits: bool = True) -> dict[str, np.ndarray]:
  """The detector on many series in blocks of BLOCK; with `fits`, also each series' trend and AR(1)."""
  num_series = series_NxM.shape[0]
  padded = -(-num_series // BLOCK) * BLOCK
  series_NxM = np.concatenate([series_NxM, np.repeat(series_NxM[:1], padded - num_series, 0)])
  min_size_N = np.concatenate([min_size_N, np.repeat(min_size_N[:1], padded - num_series)])
  parts = []
  for start in range(0, padded, BLOCK):
    jumps = changepoints.detect(series_NxM[start:start + BLOCK], table, cfg, min_size_N[start:start + BLOCK])
    part = {"is_jump": np.asarray(jumps.is_jump_NxM)}
    if fits:
      part.update(size=np.asarray(jumps.size_NxM), duration=np.asarray(jumps.duration_NxM),
                  trend=np.asarray(jumps.noise.trend_NxM), ar_coefficient=np.asarray(jumps.noise.ar_coefficient_N),
                  residual_sd=np.asarray(jumps.noise.residual_sd_N))
    parts.append(part)
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
  """(jump table as columns, detection).

  detection: "num_series" {(run, measure, seed): layers}, "penalties" per length, "series" (one entry per
  searched series: SERIES_COLUMNS but the expected counts, as columns) and "fits" {length: the series of
  that length (rows into "series"), their values, minimum sizes and their surrogates' trend and AR(1)
  (`changepoint_surrogates.surrogate_model`, the seeds of a run, measure and layer as one group)}, which
  the matched surrogates and the penalty curve read. Penalties are calibrated once per series length
  (`penalty_table`); all series of one length are detected together.
  """
  rows: list[tuple[RunSeries, str]] = [(run, measure) for run in runs for measure in measures]
  by_length: dict[int, list[int]] = {}
  for i, (run, _) in enumerate(rows):
    by_length.setdefault(run.num_measurements, []).append(i)
  columns: dict[str, list] = {c: [] for c in JUMP_COLUMNS if c != "type"}
  series_columns: dict[str, list] = {c: [] for c in SERIES_COLUMNS[:-2]}
  penalties, fits = {}, {}
  for length, members in sorted(by_length.items()):
    table = penalty_table(length, cfg, seed)
    penalties[str(length)] = _jsonable_table(table)
    series, sizes = [], []
    for i in members:
      run, measure = rows[i]
      values_SxMxL = run.measures[measure]
      min_L = minimum_sizes(values_SxMxL, min_size_factor)
      series.append(np.swapaxes(values_SxMxL, 1, 2).reshape(-1, length))   # rows (seed, layer)
      sizes.append(np.tile(min_L, run.num_seeds))
    series_NxM = np.concatenate(series).astype(np.float32)
    min_size_N = np.concatenate(sizes)
    found = _blocks(series_NxM, min_size_N, table, cfg)
    rich_cfg = changepoint_surrogates.surrogate_config(cfg)
    rich_is_jump = _blocks(series_NxM, min_size_N, penalty_table(length, rich_cfg, seed), rich_cfg,
                           fits=False)["is_jump"]
    surrogate = {"surrogate_trend_NxM": [], "ar_coefficient_N": [], "residual_sd_N": []}
    first_row = len(series_columns["run"])
    start = 0
    for i in members:
      run, measure = rows[i]
      count = run.num_seeds * run.num_layers
      part = {k: v[start:start + count] for k, v in found.items()}
      # The surrogates' model of this run and measure's series; a layer's seeds form one group.
      model = changepoint_surrogates.surrogate_model(series_NxM[start:start + count], part["trend"],
                                                   rich_is_jump[start:start + count],
                                                   np.tile(np.arange(run.num_layers), run.num_seeds), cfg)
      for name, values in zip(surrogate, model):
        surrogate[name].append(values)
      _collect(columns, run, measure, part, series_NxM[start:start + count])
      seed_N = np.repeat(run.seeds, run.num_layers)
      layer_N = np.tile(np.arange(run.num_layers), run.num_seeds)
      series_columns["run"] += [run.run] * count
      series_columns["family"] += [run.family] * count
      series_columns["measure"] += [measure] * count
      series_columns["seed"] += seed_N.tolist()
      series_columns["layer"] += [run.layer_names[l] for l in layer_N]
      series_columns["layer_index"] += layer_N.tolist()
      series_columns["num_measurements"] += [length] * count
      series_columns["ar_coefficient"] += part["ar_coefficient"].astype(np.float64).tolist()
      series_columns["residual_sd"] += part["residual_sd"].astype(np.float64).tolist()
      series_columns["observed_jumps"] += part["is_jump"].sum(axis=1).tolist()
      start += count
    fits[length] = {"rows": np.arange(first_row, len(series_columns["run"])), "series_NxM": series_NxM,
                    "min_size_N": min_size_N, **{k: np.concatenate(v) for k, v in surrogate.items()},
                    "observed_N": found["is_jump"].sum(axis=1)}
  table_columns = {k: np.asarray(v, dtype=COLUMN_DTYPES.get(k, np.int64)) for k, v in columns.items()}
  num_series = {(run.run, measure, int(seed)): run.num_layers for run, measure in rows for seed in run.seeds}
  series_table = {k: np.asarray(v, dtype=np.str_ if k in ("run", "family", "measure", "layer")
                                else np.float64 if k in ("ar_coefficient", "residual_sd") else np.int64)
                  for k, v in series_columns.items()}
  return table_columns, {"num_series": num_series, "penalties": penalties, "series": series_table,
                         "fits": fits}


def _series_keys(key, series: Mapping[str, np.ndarray], rows: np.ndarray, measures: Sequence[str]) -> jax.Array:
  """One key per series from (run, measure, seed number, layer) alone, so a series' surrogates never
  depend on which other series the sweep holds."""
  measure_index = {m: i for i, m in enumerate(measures)}
  parts = np.stack([[run_hash(r) for r in series["run"][rows]],
                    [measure_index[m] for m in series["measure"][rows]],
                    series["seed"][rows], series["layer_index"][rows]], axis=1).astype(np.uint32)
  fold = lambda k, p: jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
      k, p[0]), p[1]), p[2]), p[3])
  return jax.vmap(fold, in_axes=(None, 0))(key, parts)


_matched_surrogates = jax.jit(changepoint_surrogates.matched_surrogates, static_argnums=4)


def _surrogate_counts(fit: Mapping[str, np.ndarray], keys_N: jax.Array, num_surrogates: int, table,
                      cfg: changepoints.DetectorConfig) -> np.ndarray:
  """(N,) mean number of jumps in each series' matched surrogates, in chunks of SURROGATE_CHUNK series."""
  num_series = fit["series_NxM"].shape[0]
  means = []
  for start in range(0, num_series, SURROGATE_CHUNK):
    stop = min(start + SURROGATE_CHUNK, num_series)
    pad = lambda a: np.concatenate([a, np.repeat(a[:1], SURROGATE_CHUNK - (stop - start), 0)])
    surrogates = _matched_surrogates(pad(fit["surrogate_trend_NxM"][start:stop]),
                                     pad(fit["ar_coefficient_N"][start:stop]),
                                     pad(fit["residual_sd_N"][start:stop]),
                                     jax.numpy.concatenate([keys_N[start:stop],
                                                            jax.numpy.repeat(keys_N[start:start + 1],
                                                                             SURROGATE_CHUNK - (stop - start), 0)]),
                                     num_surrogates)
    rows = np.asarray(surrogates)[:stop - start].reshape(-1, surrogates.shape[-1])
    found = _blocks(rows, np.repeat(fit["min_size_N"][start:stop], num_surrogates), table, cfg, fits=False)
    means.append(found["is_jump"].sum(axis=1).reshape(stop - start, num_surrogates).mean(axis=1))
  return np.concatenate(means)


def matched_excess(detection: dict, measures: Sequence[str], cfg: changepoints.DetectorConfig, seed: int,
                   num_surrogates: int) -> dict[str, np.ndarray]:
  """detection["series"] with each series' expected false jumps (mean over its matched surrogates) and
  its excess (observed minus expected), as columns (SERIES_COLUMNS)."""
  series = dict(detection["series"])
  expected = np.zeros(series["run"].size)
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 7)
  for length, fit in sorted(detection["fits"].items()):
    keys_N = _series_keys(key, series, fit["rows"], measures)
    expected[fit["rows"]] = _surrogate_counts(fit, keys_N, num_surrogates, penalty_table(length, cfg, seed), cfg)
  series["expected_false_jumps"] = expected
  series["excess"] = series["observed_jumps"] - expected
  return series


def penalty_curve(detection: dict, measures: Sequence[str], measure: str, cfg: changepoints.DetectorConfig,
                  seed: int, targets: Sequence[float], num_surrogates: int) -> list[dict]:
  """Jumps found against the detector's false-positive target: per target, the `measure`'s series and
  their matched surrogates (drawn once, from the fits at the configured target) detected with that
  target's penalty table (PENALTY_CURVE_COLUMNS)."""
  series = detection["series"]
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 11)
  rows = []
  for target in targets:
    target_cfg = dataclasses.replace(cfg, false_positives_per_1000=float(target))
    observed = expected = num_series = measurements = 0
    for length, fit in sorted(detection["fits"].items()):
      mine = series["measure"][fit["rows"]] == measure
      if not mine.any():
        continue
      part = {k: v[mine] for k, v in fit.items() if k != "rows"}
      table = penalty_table(length, target_cfg, seed)
      if target_cfg == cfg:
        found_N = part["observed_N"]
      else:
        found_N = _blocks(part["series_NxM"], part["min_size_N"], table, target_cfg, fits=False)["is_jump"].sum(axis=1)
      keys_N = _series_keys(key, series, fit["rows"][mine], measures)
      observed += int(found_N.sum())
      expected += float(_surrogate_counts(part, keys_N, num_surrogates, table, target_cfg).sum())
      num_series += int(mine.sum())
      measurements += int(mine.sum()) * length
    per_1000 = lambda count: 1000.0 * count / measurements if measurements else None
    rows.append({"false_positive_target_per_1000": float(target), "measure": measure, "num_series": num_series,
                 "num_measurements": measurements, "observed_jumps": observed, "expected_false_jumps": expected,
                 "excess": observed - expected, "observed_per_1000": per_1000(observed),
                 "expected_per_1000": per_1000(expected)})
  return rows


def excess_per_seed(series: Mapping[str, np.ndarray], seed_numbers: Sequence[int]) -> dict[str, np.ndarray]:
  """Per seed number (one replicate of the grid): observed jumps, expected false jumps and their
  difference per run (summed over the run's measures and layers, then averaged over the runs that have
  that seed), (seeds,) each; NaN for a seed in no run."""
  out = {name: np.full(len(seed_numbers), np.nan) for name in ("observed", "expected", "excess")}
  for i, seed in enumerate(seed_numbers):
    mine = series["seed"] == seed
    runs = np.unique(series["run"][mine])
    if runs.size == 0:
      continue
    for name, column in (("observed", "observed_jumps"), ("expected", "expected_false_jumps"), ("excess", "excess")):
      out[name][i] = float(np.sum(series[column][mine])) / runs.size
  return out


def per_series_by_family(series: Mapping[str, np.ndarray], seed_numbers: Sequence[int],
                         family: str) -> dict[str, np.ndarray]:
  """Per seed number: the mean over the family's searched series (every run, measure and layer) of the
  observed jumps and of the excess over the matched surrogates, (seeds,) each; NaN without such series."""
  out = {name: np.full(len(seed_numbers), np.nan) for name in ("observed", "excess", "num_series")}
  for i, seed in enumerate(seed_numbers):
    mine = (series["seed"] == seed) & (series["family"] == family)
    if mine.any():
      out["observed"][i] = float(np.mean(series["observed_jumps"][mine]))
      out["excess"][i] = float(np.mean(series["excess"][mine]))
      out["num_series"][i] = float(mine.sum())
  return out


# The parts of training the earlier study's timing claims name: fraction of the run's steps.
FIRST_PART, SECOND_HALF = 0.1, 0.5


def timing_fractions(jumps: Mapping[str, np.ndarray], series: Mapping[str, np.ndarray],
                     runs: Sequence[RunSeries], validity: dict,
                     seed_numbers: Sequence[int]) -> dict[str, np.ndarray]:
  """Per seed number: the share of its jumps before FIRST_PART and after SECOND_HALF of training, raw
  and corrected (`changepoint_validity.corrected_fraction`), (seeds,) each.

  A part is read by true step (step / num_steps). Per seed and part: F, the harness' training-curve
  false positives (`false_positive_profile`) summed over the part's measurements of every series the
  seed searched; r, the harness' recall (`mean_recall`) over those measurements' positions for the
  seed's jumps, each weighted by 1 / (its recall where it was found) so that they stand for the true
  jumps' sizes (Horvitz-Thompson; a jump's size is assumed not to depend on when it happens, and the
  sizes of detections where recall is low are biased up, so early parts are, if anything,
  under-corrected). NaN for a seed without jumps (raw) or without estimated true jumps (corrected).
  """
  by_run = {r.run: r for r in runs}
  names = ("first_raw", "first_corrected", "late_raw", "late_corrected", "num_jumps")
  out = {name: np.full(len(seed_numbers), np.nan) for name in names}
  if not np.asarray(jumps["step"]).size:
    return out
  found_recall_J = changepoint_validity.recall_at(validity, jumps["position"], jumps["size_sds"],
                                                  jumps["ar_coefficient"])
  for i, seed in enumerate(seed_numbers):
    mine_N = series["seed"] == seed
    mine_J = jumps["seed"] == seed
    out["num_jumps"][i] = float(mine_J.sum())
    if not mine_J.any():
      continue
    # The seed's searched measurements, run by run: positions (index / M) weighted by its series there.
    runs_N, counts = np.unique(series["run"][mine_N], return_counts=True)
    false = {"first": 0.0, "late": 0.0, "all": 0.0}
    positions: dict[str, list] = {"first": [], "late": [], "not_first": [], "not_late": []}
    weights: dict[str, list] = {k: [] for k in positions}
    for run_name, count in zip(runs_N, counts):
      run = by_run[run_name]
      profile_M = changepoint_validity.false_positive_profile(validity, run.num_measurements)
      fraction_M = run.steps_M / run.num_steps
      position_M = np.arange(run.num_measurements) / run.num_measurements
      first_M, late_M = fraction_M < FIRST_PART, fraction_M > SECOND_HALF
      false["first"] += count * float(profile_M[first_M].sum())
      false["late"] += count * float(profile_M[late_M].sum())
      false["all"] += count * float(profile_M.sum())
      for name, mask in (("first", first_M), ("late", late_M), ("not_first", ~first_M), ("not_late", ~late_M)):
        positions[name].append(position_M[mask])
        weights[name].append(np.full(int(mask.sum()), float(count)))
    size_J, ar_J = jumps["size_sds"][mine_J], jumps["ar_coefficient"][mine_J]
    weight_J = 1.0 / found_recall_J[mine_J]
    recall = {name: changepoint_validity.mean_recall(validity, np.concatenate(positions[name]),
                                                     np.concatenate(weights[name]), size_J, ar_J, weight_J)
              for name in positions}
    fraction_J = jumps["fraction"][mine_J]
    for name, in_part, other in (("first", fraction_J < FIRST_PART, "not_first"),
                                 ("late", fraction_J > SECOND_HALF, "not_late")):
      raw, corrected = changepoint_validity.corrected_fraction(
          int(in_part.sum()), int((~in_part).sum()), recall[name], recall[other], false[name],
          false["all"] - false[name])
      out[f"{name}_raw"][i], out[f"{name}_corrected"][i] = raw, corrected
  return out


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
  columns["position"] += (index_J / run.num_measurements).tolist()
  columns["size"] += size_J.tolist()
  sd_J = found["residual_sd"][rows_J].astype(np.float64)
  columns["size_sds"] += np.where(sd_J > 0, np.abs(size_J) / np.where(sd_J > 0, sd_J, 1.0), np.inf).tolist()
  columns["ar_coefficient"] += found["ar_coefficient"][rows_J].astype(np.float64).tolist()
  range_J = range_N[rows_J]
  columns["relative_size"] += np.where(range_J > 0, size_J / np.where(range_J > 0, range_J, 1.0),
                                       0.0).tolist()
  columns["sign"] += np.sign(size_J).astype(np.int64).tolist()
  columns["duration_measurements"] += duration_J.tolist()
  columns["duration_steps"] += (run.steps_M[np.minimum(index_J + duration_J, last)] - step_J).tolist()
