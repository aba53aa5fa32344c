"""Splitting the dynamics grid over processes or machines that share a workdir (`--shard=I/N`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence


from mpcodec.core.errors import SweepError
from mpcodec.core import io
from mpcodec.studies.dynamics.train.flops import estimated_costs
from mpcodec.studies.dynamics.config import SweepConfig
from mpcodec.studies.dynamics.grid import training_order

FAMILIES = ("mlp", "cnn", "transformer")


def parse_shard(text: str) -> tuple[int, int]:
  """'I/N' (1 <= I <= N) -> (I, N); ValueError naming the expected form otherwise."""
  index, sep, count = text.partition("/")
  try:
    index_value, count_value = int(index), int(count)
  except ValueError:
    index_value = count_value = 0
  if not sep or not 1 <= index_value <= count_value:
    raise ValueError(f"shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/2 and 2/2 for two processes")
  return index_value, count_value


def slurm_array_shard(environ) -> str | None:
  """'I/N' of a SLURM array task from its environment (None outside an array): I is the task's place
  among the array's ids, so `--array=1-4`, `--array=0-3` and the stepped `--array=0-6:2` all give 1/4 ..
  4/4 (SLURM_ARRAY_TASK_ID, _COUNT, _MIN and _STEP). ValueError when the id is not one of the array's."""
  if not (environ.get("SLURM_ARRAY_TASK_ID") and environ.get("SLURM_ARRAY_TASK_COUNT")):
    return None
  task, count = int(environ["SLURM_ARRAY_TASK_ID"]), int(environ["SLURM_ARRAY_TASK_COUNT"])
  first = int(environ.get("SLURM_ARRAY_TASK_MIN") or (1 if task >= 1 else 0))
  step = int(environ.get("SLURM_ARRAY_TASK_STEP") or 1)
  offset = task - first
  if offset < 0 or offset % step or offset // step >= count:
    raise ValueError(f"SLURM array task {task} is not one of {count} tasks numbered from {first} in steps of "
                     f"{step} (an array given as a list?); pass --shard=I/N to each task")
  return f"{offset // step + 1}/{count}"


def shard_plan(runs: Sequence[str], count: int,
               cost: Callable[[str], float] | None = None) -> list[tuple[str, ...]]:
  """The runs of each of `count` shards, each in training order.

  The runs are dealt out by cost, largest first, each to the shard with the least cost so far (ties to
  the lower shard), so `count` processes started together finish at about the same time. `cost(run)`
  is e.g. `estimated_cost` of the run's config; without it every run costs the same, and the shards get
  equal counts. The plan depends on the runs and costs alone, not on their listed order or on what has
  finished, so shards never overlap and a restarted shard picks up exactly its own runs. With more
  shards than runs, some shards get none.
  """
  if count < 1:
    raise ValueError(f"the number of shards must be >= 1, got {count}")
  order = training_order(runs)
  costs = {run: (cost(run) if cost else 1.0) for run in order}
  loads, assigned = [0.0] * count, [set() for _ in range(count)]
  # Sorting is stable, so runs of equal cost keep the training order.
  for run in sorted(order, key=lambda r: -costs[r]):
    shard = min(range(count), key=lambda s: (loads[s], s))
    loads[shard] += costs[run]
    assigned[shard].add(run)
  return [tuple(r for r in order if r in mine) for mine in assigned]


def shard_runs(runs: Sequence[str], index: int, count: int,
               cost: Callable[[str], float] | None = None) -> tuple[str, ...]:
  """The runs that shard `index` (1-based) of `count` trains (see `shard_plan`)."""
  if not 1 <= index <= count:
    raise ValueError(f"shard index must lie in 1..{count}, got {index}")
  return shard_plan(runs, count, cost)[index - 1]


def shard_plan_path(workdir: str, runs: Sequence[str], count: int) -> str:
  """Where the plan of splitting `runs` into `count` shards is kept under workdir/dynamics/."""
  key = hashlib.sha256(json.dumps([sorted(runs), count]).encode()).hexdigest()[:16]
  return os.path.join(workdir, "dynamics", "shard_plans", f"{count}_shards_{key}.json")


def sweep_shard(sweep: SweepConfig, index: int, count: int,
                workdir: str | None = None) -> tuple[str, ...]:
  """The sweep's runs for shard `index` of `count`, balanced by `estimated_cost` of each run's config.

  With a workdir, the first shard to get there writes the plan (`shard_plan_path`, created only if
  absent) and every shard then reads it: processes on machines whose cost estimates differ (another
  backend or JAX version) still split the grid the same way.
  """
  if not 1 <= index <= count:
    raise ValueError(f"shard index must lie in 1..{count}, got {index}")
  if workdir is None:
    return shard_runs(sweep.runs, index, count, estimated_costs(sweep).get)
  path = shard_plan_path(workdir, sweep.runs, count)
  if not os.path.exists(path):
    costs = estimated_costs(sweep)
    # Of shards starting together, the first to write wins and every one reads its plan.
    io.write_json_once(path, {"runs": sorted(sweep.runs), "count": count, "estimated_flops": costs,
                              "shards": [list(s) for s in shard_plan(sweep.runs, count, costs.get)]})
  with open(path, encoding="utf-8") as f:
    plan = json.load(f)
  if plan.get("runs") != sorted(sweep.runs) or plan.get("count") != count:
    raise SweepError(f"{path} is the plan of another selection of runs or number of shards; delete it")
  return tuple(plan["shards"][index - 1])
