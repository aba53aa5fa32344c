"""Checkpoint plan around representative jumps (`train/rerun.py` re-trains the runs to save them).

Per run and seed, representative jumps are chosen to cover early, middle and late training (thirds
of the run) where jumps exist there, then every jump type not covered yet; within a group the jump with
the largest size relative to its series' range. A jump at measurement t (the new level holds from t on)
that settles after d measurements gets a window from measurement t - 1 - margin to t + d + margin, as
TRUE training steps (measured steps are multiples of `measure_every`, where the run loop can save). Each
jump window gets a matched control window of the same width, as near to it in training as possible,
holding no jump of that seed in any series of the run (margin measurements around it included).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import configuration
from mpcodec.core.errors import DataError
from mpcodec.studies.dynamics.config import DynamicsConfig
from mpcodec.studies.dynamics.series import RunSeries

PHASES = ("early", "middle", "late")
RERUN_FOLDER = "rerun"   # under <workdir>/analysis/: the re-run that saves the planned checkpoints


def phase_of(fraction: float) -> str:
  return PHASES[min(int(fraction * 3), 2)]


def _window(index: int, duration: int, margin: int, last: int) -> tuple[int, int]:
  return max(index - 1 - margin, 0), min(index + duration + margin, last)


def _control(before: int, after: int, jump_indices: np.ndarray, margin: int,
             last: int) -> tuple[int, int] | None:
  """The window of the same width nearest to [before, after] with no jump within `margin` of it."""
  width = after - before
  best = None
  for start in range(0, last - width + 1):
    low, high = start - margin, start + width + margin
    if np.any((jump_indices >= low) & (jump_indices <= high)):
      continue
    if best is None or abs(start - before) < abs(best - before):
      best = start
  return None if best is None else (best, best + width)


def representative(jumps: Mapping[str, np.ndarray], members: np.ndarray, labels_J: np.ndarray,
                   count: int) -> list[int]:
  """Up to `count` jump rows (of `members`): one per phase of training, then one per uncovered type."""
  chosen: list[int] = []
  size_J = np.abs(jumps["relative_size"])

  def best(mask):
    candidates = members[mask[members]]
    candidates = candidates[~np.isin(candidates, chosen)]
    return int(candidates[np.argmax(size_J[candidates])]) if candidates.size else None

  phases = np.asarray([phase_of(f) for f in jumps["fraction"]]) if members.size else np.asarray([])
  for phase in PHASES:
    pick = best(phases == phase) if members.size else None
    if pick is not None:
      chosen.append(pick)
  for t in sorted({int(labels_J[j]) for j in members if labels_J[j] >= 0}):
    if t not in {int(labels_J[j]) for j in chosen}:
      pick = best(labels_J == t)
      if pick is not None:
        chosen.append(pick)
  return chosen[:count]


def plan_run(run: RunSeries, jumps: Mapping[str, np.ndarray], labels_J: np.ndarray, jumps_per_seed: int,
             margin: int) -> dict:
  """The plan of one run: windows (jump and matched control) per seed, and the steps to checkpoint."""
  last = run.num_measurements - 1
  in_run_J = np.asarray(jumps["run"]) == run.run
  windows, notes = [], []
  for seed in run.seeds:
    members = np.flatnonzero(in_run_J & (jumps["seed"] == seed))
    if members.size == 0:
      notes.append(f"seed {int(seed)}: no jump")
      continue
    seed_jump_indices = np.asarray(jumps["index"])[members]
    for j in representative(jumps, members, labels_J, jumps_per_seed):
      before, after = _window(int(jumps["index"][j]), int(jumps["duration_measurements"][j]), margin, last)
      jump_window = {"seed": int(seed), "kind": "jump", "measure": str(jumps["measure"][j]),
                     "layer": str(jumps["layer"][j]), "type": int(labels_J[j]) if labels_J[j] >= 0 else None,
                     "phase": phase_of(float(jumps["fraction"][j])), "jump_step": int(jumps["step"][j]),
                     "relative_size": float(jumps["relative_size"][j]),
                     "before_step": int(run.steps_M[before]), "after_step": int(run.steps_M[after])}
      control = _control(before, after, seed_jump_indices, margin, last)
      if control is None:
        notes.append(f"seed {int(seed)}: no control window away from its jumps for the jump at step "
                     f"{jump_window['jump_step']}; that jump is left out")
        continue
      pair = len(windows) // 2
      windows.append({**jump_window, "pair": pair})
      windows.append({"seed": int(seed), "kind": "control", "pair": pair, "measure": jump_window["measure"],
                      "layer": jump_window["layer"], "type": jump_window["type"],
                      "phase": jump_window["phase"],
                      "jump_step": None, "relative_size": None, "before_step": int(run.steps_M[control[0]]),
                      "after_step": int(run.steps_M[control[1]])})
  steps = sorted({w[k] for w in windows for k in ("before_step", "after_step")})
  return {"run": run.run, "seeds": [int(s) for s in run.seeds], "num_steps": run.num_steps,
          "checkpoint_steps": steps,
          # The run loop always saves step 0 and the last step; the rest are its extra checkpoints.
          "extra_checkpoints": [s for s in steps if 0 < s < run.num_steps],
          "windows": windows, "notes": notes,
          "reason": None if windows else "no jump with a matched control window in any seed"}


def plan_checkpoints(runs: Sequence[RunSeries], jumps: Mapping[str, np.ndarray], labels_J: np.ndarray,
                     jumps_per_seed: int, margin: int) -> dict:
  """The whole plan (checkpoint_plan.json): per run its windows and extra checkpoint steps."""
  return {"jumps_per_seed": jumps_per_seed, "margin_measurements": margin,
          "step_definition": "true training steps: the parameters after that many updates",
          "runs": {run.run: plan_run(run, jumps, labels_J, jumps_per_seed, margin) for run in runs}}


def rerun_workdir(workdir: str) -> str:
  return os.path.join(workdir, "analysis", RERUN_FOLDER)


def planned_config(record: Mapping[str, Any], extra_checkpoints: Sequence[int]) -> DynamicsConfig:
  """The run's recorded config with the planned extra checkpoints (a config of another version stops)."""
  try:
    return configuration.parse(DynamicsConfig, {**record["config"],
                                                "extra_checkpoints": list(extra_checkpoints)})
  except configuration.ConfigError as e:
    raise DataError(f"the record of {record.get('arch')}@{record.get('dataset')} holds a config this "
                    f"code cannot rebuild: {e}") from e
