"""A finished sweep's series read back for analysis: every run's .npz and JSON record, checked first.

Reading is all-or-nothing and happens before any analysis: a workdir without finished runs, a series file
of another format version or a file whose arrays disagree with its record stops with one error naming
the file. Runs that diverged are left out and listed; seeds that failed (below chance + margin, the
record's `failed_seeds`) or whose series hold NaN/Inf are left out of their run and listed; nothing is
averaged over them.

Measurement index and training step are kept apart: `RunSeries.steps_M[i]` is the true training step of
measurement i (the parameters after that many updates).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any

import numpy as np

from mpcodec.core.errors import DataError, SweepError
from mpcodec.studies.dynamics import results
from mpcodec.studies.dynamics.program import MEASURE_NAMES, family_of

# The layout `results.write_series` writes; a record without "format_version" was written by the first
# version of the writer, which is this layout.
SERIES_FORMAT_VERSION = results.FORMAT_VERSION
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
                    f"{SERIES_FORMAT_VERSION} (the layout of mpcodec.studies.dynamics.results.write_series)")


def _load_run(json_path: str, record: dict, excluded: list[dict]) -> RunSeries | None:
  run = f"{record.get('arch')}@{record.get('dataset')}"
  npz_path = os.path.join(os.path.dirname(json_path), record.get("npz") or os.path.basename(
      json_path)[:-len(".json")] + ".npz")
  if not os.path.exists(npz_path):
    raise DataError(f"{json_path}: its series file {npz_path} is missing")
  try:
    arrays = results.load_series(npz_path)
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
