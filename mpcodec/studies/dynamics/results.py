"""Results of a dynamics run on disk: the series (.npz, numpy only) and the JSON record written last.

`<workdir>/dynamics/<arch>__<dataset>.npz` holds every series with the seed axis first;
`<arch>__<dataset>.json` (config, layers, steps, final accuracies, flags) is written after it and after
the plots, atomically, so its presence with status "finished" and a matching config marks the run done.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from mpcodec.core import configuration
from mpcodec.core.errors import SweepError
from mpcodec.data.dataset import Dataset
from mpcodec.core import io
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics.program import DynamicsConfig, ProbeSets
from mpcodec.studies.dynamics.program import family_of

FAMILIES = ("mlp", "cnn", "transformer")
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
  (`dynamics.EXECUTION_ONLY_FIELDS`: chunk length, checkpoint placement)."""
  if config_dict is None:
    return None
  return {k: v for k, v in config_dict.items() if k not in dynamics.EXECUTION_ONLY_FIELDS}


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
_GRID_EXECUTION_ONLY = ("runs", "plots") + tuple(f"base.{k}" for k in dynamics.EXECUTION_ONLY_FIELDS) + tuple(
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
      "measure_names": list(dynamics.MEASURE_NAMES) if cfg.measure else [],
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
