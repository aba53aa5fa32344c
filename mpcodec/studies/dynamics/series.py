"""A dynamics run's results on disk, written and read back here, and a finished sweep's series loaded
for analysis.

Writing: `<workdir>/dynamics/<arch>__<dataset>.npz` holds every series with the seed axis first;
`<arch>__<dataset>.json` (config, layers, steps, final accuracies, flags) is written after it and after
the plots, atomically, so its presence with status "finished" and a matching config marks the run done.

Reading (`load_sweep`) is all-or-nothing and happens before any analysis: a workdir without finished
runs, a series file of another format version or a file whose arrays disagree with its record stops with
one error naming the file. Runs that diverged are left out and listed; seeds that failed (below chance +
margin, the record's `failed_seeds`) or whose series hold NaN/Inf are left out of their run and listed;
nothing is averaged over them. Measurement index and training step are kept apart: `RunSeries.steps_M[i]`
is the true training step of measurement i (the parameters after that many updates).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from mpcodec.core import configuration
from mpcodec.core.errors import DataError, SweepError
from mpcodec.data.dataset import Dataset
from mpcodec.core import io
from mpcodec.studies.dynamics.config import EXECUTION_ONLY_FIELDS, DynamicsConfig
from mpcodec.studies.dynamics.grid import FAMILIES, MEASURE_NAMES, family_of
from mpcodec.studies.dynamics.program import ProbeSets

# Version of the .npz/.json layout below; readers refuse another one (a record without it is version 1).
FORMAT_VERSION = 1


@dataclasses.dataclass
class RunResult:
  """Everything one configuration produced (numpy; seed axis first)."""

  steps: np.ndarray                  # (M,) true steps of the measurements
  update_steps: np.ndarray           # (T,) steps of the per-update series
  series: dict[str, np.ndarray]      # measures (S, M, L), scalars (S, M), per-update (S, T)
  final_test_accuracy: np.ndarray    # (S,) on `final_eval_size` held-out examples
  final_eval_size: int
  probe: ProbeSets
  params: Any                        # final parameters, seed axis first
  compile_seconds: float
  run_seconds: float


def result_paths(workdir: str, run: str) -> tuple[str, str]:
  """(npz, json) paths of one run under workdir/dynamics/."""
  arch, _, dataset = run.partition("@")
  stem = os.path.join(workdir, "dynamics", f"{arch}__{dataset}")
  return stem + ".npz", stem + ".json"


def result_defining(config_dict: Mapping[str, Any] | None) -> dict | None:
  """The config without the fields that change how a run executes but not its results
  (`EXECUTION_ONLY_FIELDS`: chunk length, checkpoint placement)."""
  if config_dict is None:
    return None
  return {k: v for k, v in config_dict.items() if k not in EXECUTION_ONLY_FIELDS}


def finished_record(workdir: str, run: str, cfg: DynamicsConfig) -> dict | None:
  """The run's JSON record if it finished with this config; None if not finished; SweepError if the
  finished result was made by another config (fields in EXECUTION_ONLY_FIELDS may differ)."""
  npz_path, json_path = result_paths(workdir, run)
  if not os.path.exists(json_path):
    return None
  record = read_record(json_path)
  if record is None:
    logging.warning("%s: %s does not parse (truncated or corrupt); recomputing it from the run's checkpoints",
                    run, json_path)
    return None
  if record.get("status") != "finished" or not os.path.exists(npz_path):
    return None
  if result_defining(record.get("config")) != result_defining(configuration.to_dict(cfg)):
    raise SweepError(f"{json_path} holds a finished run of a different config; use another workdir or "
                     f"pass --overwrite to retrain it")
  return record


def read_record(json_path: str) -> dict | None:
  """A run's JSON record, or None when the file does not parse as a JSON object (truncated, corrupt)."""
  try:
    with open(json_path, encoding="utf-8") as f:
      record = json.load(f)
  except ValueError:   # JSONDecodeError and UnicodeDecodeError both
    return None
  return record if isinstance(record, dict) else None


GRID_CONFIG_NAME = "grid_config.json"
# Keys of a grid's config that change how its runs execute or what is drawn, not their results.
_GRID_EXECUTION_ONLY = ("runs", "plots", "spread_runs") + tuple(f"base.{k}" for k in EXECUTION_ONLY_FIELDS) + tuple(
    f"{family}.measurements_per_chunk" for family in FAMILIES)


def grid_defining(grid_dict: Mapping[str, Any]) -> dict[str, Any]:
  """The grid's config as {dotted key: value}, without the keys that do not change a run's results."""
  flat: dict[str, Any] = {}

  def walk(prefix, value):
    if isinstance(value, Mapping):
      for k, v in value.items():
        walk(f"{prefix}.{k}" if prefix else str(k), v)
    else:
      flat[prefix] = value
  walk("", io.jsonable(grid_dict))
  return {k: v for k, v in flat.items() if k not in _GRID_EXECUTION_ONLY}


def check_grid_config(workdir: str, grid_dict: Mapping[str, Any], overwrite: bool = False) -> None:
  """Shards of one grid must train with one config: the first writes `dynamics/grid_config.json`, every
  later one is compared with it and refused (SweepError naming the differing keys) if it differs, so one
  table never mixes runs of two configs. `overwrite` replaces the file with this config."""
  path = os.path.join(workdir, "dynamics", GRID_CONFIG_NAME)
  mine = grid_defining(grid_dict)
  if overwrite:
    io.write_json(path, mine)
    return
  if io.write_json_once(path, mine):
    return
  theirs = read_record(path)
  if theirs is None:   # Truncated by a killed writer: this shard's config stands.
    logging.warning("%s does not parse; writing this shard's config there again", path)
    io.write_json(path, mine)
    return
  mine = json.loads(json.dumps(mine))   # Tuples as lists, as read back.
  differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
  if differing:
    shown = ", ".join(f"{k} ({theirs.get(k)!r} there, {mine.get(k)!r} here)" for k in differing[:5])
    raise SweepError(f"another shard of this workdir trains with a different config: {shown}"
                     f"{', ...' if len(differing) > 5 else ''}; start every shard with the same config, use "
                     f"another --workdir, or pass --overwrite (recorded in {path})")


def chance_accuracy(dataset: Dataset) -> float:
  """Accuracy of always predicting the held-out split's most frequent class."""
  return float(np.bincount(dataset.test_y, minlength=dataset.num_classes).max() / dataset.num_test)


def write_series(workdir: str, run: str, cfg: DynamicsConfig, dataset: Dataset, result: RunResult,
                 fail_margin: float) -> dict:
  """Writes the run's .npz and returns its JSON record; `mark_finished` writes the record once the
  derived outputs (plots) are on disk too."""
  npz_path, json_path = result_paths(workdir, run)
  probe = result.probe
  arrays = {
      "steps": result.steps.astype(np.int32),
      "update_steps": result.update_steps.astype(np.int32),
      "seeds": np.arange(cfg.num_seeds, dtype=np.int32),
      "layer_names": np.asarray(probe.layer_names, dtype=np.str_),
      "layer_layouts": np.asarray(probe.layer_layouts, dtype=np.str_),
      "final_test_accuracy": result.final_test_accuracy.astype(np.float64),
  }
  for name, values in result.series.items():
    arrays[name] = np.asarray(values)
  with io.atomic_path(npz_path) as tmp:
    with open(tmp, "wb") as f:  # A file object: np.savez would append ".npz" to a path.
      np.savez_compressed(f, **arrays)
  chance = chance_accuracy(dataset)
  accuracy = result.final_test_accuracy
  record = {
      "status": "finished",
      "format_version": FORMAT_VERSION,
      "arch": cfg.arch,
      "dataset": cfg.dataset,
      "family": family_of(cfg.arch),
      "config": configuration.to_dict(cfg),
      "npz": os.path.basename(npz_path),
      "measure_names": list(MEASURE_NAMES) if cfg.measure else [],
      "layer_names": list(probe.layer_names),
      "layer_layouts": list(probe.layer_layouts),
      "matrix_shapes": {n: list(s) for n, s in zip(probe.layer_names, probe.matrix_shapes)},
      "rank_capped_layers": list(probe.rank_capped_layers),
      "skipped_layers": list(probe.skipped_layers),
      "steps": result.steps.tolist(),
      "step_definition": "measurement at step s reads the parameters after s updates (0 = initialisation)",
      "num_update_steps": int(result.update_steps.size),
      "final_test_accuracy": accuracy.tolist(),
      "final_eval_size": result.final_eval_size,
      "chance_accuracy": chance,
      "failed_seeds": [int(s) for s in np.flatnonzero(accuracy < chance + fail_margin)],
      "dataset_metadata": {k: v for k, v in dataset.metadata.items()
                           if k in ("split", "vocab_size", "max_length", "test_oov_rate",
                                    "train_truncated_fraction")},
      "probe": {"test_indices_count": int(probe.probe_indices.size),
                "train_indices_count": int(probe.train_probe_indices.size)},
      "compile_seconds": result.compile_seconds,
      "run_seconds": result.run_seconds,
  }
  return record


def mark_finished(workdir: str, run: str, record: Mapping[str, Any]) -> None:
  """Writes the run's JSON record: the last file of a run, so its presence means every other is there."""
  io.write_json(result_paths(workdir, run)[1], record)


def checkpoint_dir(workdir: str, run: str) -> str:
  """Where a run keeps its checkpoints while it trains (and those at its extra steps afterwards)."""
  arch, _, dataset = run.partition("@")
  return os.path.join(workdir, "dynamics", "checkpoints", f"{arch}__{dataset}")


def load_series(npz_path: str) -> dict[str, np.ndarray]:
  """A run's series as plain numpy arrays (no pickle)."""
  with np.load(npz_path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


# The layout `write_series` writes; a record without "format_version" was written by the first
# version of the writer, which is this layout.
SERIES_FORMAT_VERSION = FORMAT_VERSION
LOSS_SERIES = ("test_loss", "train_loss")
MIN_SEEDS = 3   # below this a CI over seeds is unavailable and a verdict cannot be tested


@dataclasses.dataclass(frozen=True)
class RunSeries:
  """One finished run's series, restricted to its usable seeds (seed axis first)."""

  run: str                            # "arch@dataset"
  arch: str
  dataset: str
  family: str                         # "mlp" | "cnn" | "transformer"
  num_steps: int                      # training steps of the run
  steps_M: np.ndarray                 # (M,) true training step of each measurement
  layer_names: tuple[str, ...]        # measured layers, input side first
  layer_layouts: tuple[str, ...]
  seeds: np.ndarray                   # (S,) seed numbers kept
  measures: dict[str, np.ndarray]     # measure -> (S, M, L) float32
  losses: dict[str, np.ndarray]       # "test_loss" / "train_loss" -> (S, M)
  record: dict[str, Any]              # the run's JSON record as written
  npz_path: str

  @property
  def num_seeds(self) -> int:
    return int(self.seeds.size)

  @property
  def num_measurements(self) -> int:
    return int(self.steps_M.size)

  @property
  def num_layers(self) -> int:
    return len(self.layer_names)

  @property
  def depth_fraction_L(self) -> np.ndarray:
    """Layer position in the network, 0 (first measured layer) to 1 (last); 0 for a single layer."""
    count = self.num_layers
    return np.arange(count, dtype=np.float64) / max(count - 1, 1)

  @property
  def ci_reason(self) -> str | None:
    """Why CIs over this run's seeds are unavailable (None when they are available)."""
    if self.num_seeds < MIN_SEEDS:
      return f"{self.num_seeds} usable seed(s); a CI over seeds needs at least {MIN_SEEDS}"
    return None


@dataclasses.dataclass(frozen=True)
class SweepSeries:
  """Every usable run of a sweep, and what was left out and why."""

  workdir: str
  runs: tuple[RunSeries, ...]
  diverged_runs: tuple[dict, ...]     # {"run", "message"} of runs whose loss became NaN/Inf
  excluded_seeds: tuple[dict, ...]    # {"run", "seed", "reason"} of seeds left out of finished runs
  measure_names: tuple[str, ...]

  def exclusion_summary(self) -> dict:
    return {"diverged_runs": list(self.diverged_runs), "num_diverged_runs": len(self.diverged_runs),
            "excluded_seeds": list(self.excluded_seeds), "num_excluded_seeds": len(self.excluded_seeds)}


def _read_record(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise DataError(f"{path}: not a readable run record ({type(e).__name__}: {e}); start launch.dynamics "
                    f"again on this workdir to recompute it from the run's checkpoints") from e
  if not isinstance(record, dict):
    raise DataError(f"{path}: a run record must be a JSON object, got {type(record).__name__}")
  return record


def _check_format(path: str, record: dict) -> None:
  version = record.get("format_version", SERIES_FORMAT_VERSION)
  if version != SERIES_FORMAT_VERSION:
    raise DataError(f"{path}: series format version {version!r}; this analysis reads version "
                    f"{SERIES_FORMAT_VERSION} (the layout of write_series)")


def _load_run(json_path: str, record: dict, excluded: list[dict]) -> RunSeries | None:
  run = f"{record.get('arch')}@{record.get('dataset')}"
  npz_path = os.path.join(os.path.dirname(json_path), record.get("npz") or os.path.basename(
      json_path)[:-len(".json")] + ".npz")
  if not os.path.exists(npz_path):
    raise DataError(f"{json_path}: its series file {npz_path} is missing")
  try:
    arrays = load_series(npz_path)
  except (OSError, ValueError) as e:
    raise DataError(f"{npz_path}: not a readable series file ({type(e).__name__}: {e})") from e
  measure_names = tuple(record.get("measure_names") or ())
  needed = ("steps", "layer_names", "seeds") + measure_names + LOSS_SERIES
  missing = [k for k in needed if k not in arrays]
  if missing:
    raise DataError(f"{npz_path}: lacks the arrays {missing} of series format version "
                    f"{SERIES_FORMAT_VERSION}")
  steps_M = arrays["steps"].astype(np.int64)
  layer_names = tuple(str(n) for n in arrays["layer_names"])
  if (steps_M.tolist() != list(record.get("steps", []))
      or list(layer_names) != list(record.get("layer_names", []))):
    raise DataError(f"{npz_path}: its steps or layer names differ from those of its record {json_path}")
  seeds_S = arrays["seeds"].astype(np.int64)
  num_seeds, num_measurements, num_layers = seeds_S.size, steps_M.size, len(layer_names)
  for name in measure_names:
    if arrays[name].shape != (num_seeds, num_measurements, num_layers):
      raise DataError(f"{npz_path}: {name} has shape {arrays[name].shape}, expected (seeds, measurements, "
                      f"layers) = {(num_seeds, num_measurements, num_layers)}")
  for name in LOSS_SERIES:
    if arrays[name].shape != (num_seeds, num_measurements):
      raise DataError(f"{npz_path}: {name} has shape {arrays[name].shape}, expected "
                      f"{(num_seeds, num_measurements)}")
  if np.any(np.diff(steps_M) <= 0):
    raise DataError(f"{npz_path}: steps are not increasing")

  keep_S = np.ones(num_seeds, bool)
  failed = {int(s) for s in record.get("failed_seeds", [])}
  for index, seed in enumerate(seeds_S):
    if int(seed) in failed:
      keep_S[index] = False
      excluded.append({"run": run, "seed": int(seed),
                       "reason": "failed: final held-out accuracy below chance "
                       "+ the sweep's fail margin"})
      continue
    bad = [n for n in measure_names + LOSS_SERIES if not np.all(np.isfinite(arrays[n][index]))]
    if bad:
      keep_S[index] = False
      excluded.append({"run": run, "seed": int(seed), "reason": f"diverged: NaN/Inf in {', '.join(bad)}"})
  return RunSeries(
      run=run, arch=str(record["arch"]), dataset=str(record["dataset"]),
                   family=family_of(str(record["arch"])),
      num_steps=int((record.get("config") or {}).get("num_steps", steps_M[-1])), steps_M=steps_M,
      layer_names=layer_names, layer_layouts=tuple(str(x) for x in arrays.get("layer_layouts", ())),
      seeds=seeds_S[keep_S],
      measures={n: np.asarray(arrays[n][keep_S], np.float32) for n in measure_names},
      losses={n: np.asarray(arrays[n][keep_S], np.float32) for n in LOSS_SERIES},
      record=record, npz_path=npz_path)


def load_sweep(workdir: str) -> SweepSeries:
  """Reads every run record under `workdir/dynamics/` and the series of the finished ones.

  SweepError when there is no finished run (before any work); DataError naming the file for a record or
  series of another format version or with inconsistent arrays. Diverged runs and failed or non-finite
  seeds are left out and listed.
  """
  folder = os.path.join(workdir, "dynamics")
  json_paths = sorted(glob.glob(os.path.join(folder, "*__*.json")))
  runs, diverged, excluded = [], [], []
  for path in json_paths:
    record = _read_record(path)
    _check_format(path, record)
    status = record.get("status")
    if status == "diverged":
      diverged.append({"run": f"{record.get('arch')}@{record.get('dataset')}",
                       "message": str(record.get("message", ""))})
    elif status == "finished":
      loaded = _load_run(path, record, excluded)
      if not loaded.measures:
        continue   # a run trained without measurement has no series to analyse
      if loaded.num_seeds == 0:
        diverged.append({"run": loaded.run, "message": "every seed failed or diverged"})
        continue
      runs.append(loaded)
  if not runs:
    found = (f"{len(json_paths)} run record(s), none finished with usable series"
             + (f" ({len(diverged)} diverged)" if diverged else "")) if json_paths else "no run records"
    raise SweepError(f"{folder} holds no finished dynamics sweep output ({found}); train one first with "
                     f"`python -m launch.dynamics --config=configs/dynamics.py --workdir={workdir}`")
  measure_names = tuple(n for n in MEASURE_NAMES if all(n in r.measures for r in runs))
  return SweepSeries(workdir=workdir, runs=tuple(runs), diverged_runs=tuple(diverged),
                     excluded_seeds=tuple(excluded), measure_names=measure_names)
