"""The checkpoint re-run stage: each planned run trained again to save checkpoints around its jumps.

Each planned run (`analyze/checkpoint_plan.py`) trains again from its recorded config and seeds, with
`extra_checkpoints` set to the planned steps, through the training entry point of one configuration
(`train.sweep.run_seeds`) into a separate workdir, `<workdir>/analysis/rerun/` (the sweep's results stay
untouched); the re-run's series are then compared with the saved ones, bit for bit.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import workdir as workdir_lib
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics import series as results
from mpcodec.studies.dynamics.analyze.checkpoint_plan import planned_config, rerun_workdir
from mpcodec.studies.dynamics.config import SweepConfig
from mpcodec.studies.dynamics.train import sweep as dynamics_sweep

def saved_steps(workdir: str, run: str) -> list[int]:
  """The steps of the re-run checkpoints of `run` under workdir's rerun folder."""
  folder = os.path.join(results.checkpoint_dir(rerun_workdir(workdir), run), "train")
  if not os.path.isdir(folder):
    return []
  store = CheckpointStore(folder)
  try:
    return store.all_steps()
  finally:
    store.close()


def has_checkpoints(workdir: str, run: str, steps: Sequence[int]) -> bool:
  """Whether the re-run of `run` under workdir's rerun folder holds a checkpoint at every step."""
  return set(steps) <= set(saved_steps(workdir, run))


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
  a, b = np.asarray(a), np.asarray(b)
  return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def compare_series(saved: Mapping[str, np.ndarray], rerun: Mapping[str, np.ndarray]) -> dict:
  """Bit-for-bit comparison of every series the saved run holds: {"identical", "compared", "differing"}."""
  names = sorted(k for k in saved if k in rerun)
  differing = [k for k in names if not _identical(saved[k], rerun[k])]
  missing = sorted(k for k in saved if k not in rerun)
  return {"identical": not differing and not missing, "compared": names, "differing": differing,
          "missing": missing}


def rerun(workdir: str, plan: Mapping[str, Any], records: Mapping[str, Mapping[str, Any]],
          data_dir: str | None = None, progress: Any = None, runs: Sequence[str] = ()) -> dict[str, dict]:
  """Re-trains every planned run with checkpoints at its planned steps; returns the comparisons.

  `records` are the runs' JSON records ({run: record}); `runs` limits the re-run to those runs (empty:
  every planned run). The re-run lives under
  `<workdir>/analysis/rerun/dynamics/` (series, record, checkpoints); a re-run whose checkpoints miss a
  planned step (the plan changed) is trained again from scratch.
  """
  target = rerun_workdir(workdir)
  workdir_lib.check_writable(target)
  outcomes = {}
  datasets: dict[str, Any] = {}
  for run, run_plan in plan["runs"].items():
    if (runs and run not in runs) or not run_plan["windows"]:
      continue
    record = records[run]
    cfg = planned_config(record, run_plan["extra_checkpoints"])
    if cfg.dataset not in datasets:
      datasets[cfg.dataset] = dynamics.load_dataset(cfg, data_dir)
    ckpt_dir = results.checkpoint_dir(target, run)
    saved = saved_steps(workdir, run)
    if saved and any(s <= saved[-1] and s not in saved for s in run_plan["checkpoint_steps"]):
      shutil.rmtree(ckpt_dir)   # The plan changed: a resumed run would not save the new earlier steps.
    with workdir_lib.locked(ckpt_dir):
      result = dynamics_sweep.run_seeds(cfg, datasets[cfg.dataset], ckpt_dir, progress=progress)
    rerun_record = results.write_series(target, run, cfg, datasets[cfg.dataset], result,
                                        SweepConfig().fail_margin)
    results.mark_finished(target, run, rerun_record)
    saved = results.load_series(results.result_paths(workdir, run)[0])
    again = results.load_series(results.result_paths(target, run)[0])
    outcomes[run] = {**compare_series(saved, again), "extra_checkpoints": list(cfg.extra_checkpoints)}
  return outcomes
