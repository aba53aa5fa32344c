"""The dynamics launch as one function: select and shard the grid, train it through the one loop, tabulate."""

from __future__ import annotations

import os
from typing import Any

import jax
from absl import logging

from mpcodec.core import configuration, progress as progress_lib, sharding
from mpcodec.core.errors import ConfigError, SweepError
from mpcodec.data import registry
from mpcodec.studies.dynamics.grid import select_runs
from mpcodec.studies.dynamics.config import SweepConfig
from mpcodec.studies.dynamics.report import training as report_dynamics
from mpcodec.studies.dynamics import series as results
from mpcodec.studies.dynamics.train import shards
from mpcodec.studies.dynamics.train import sweep as dynamics_sweep



def shard_from_environment(flag_value: str | None, environ=os.environ) -> str:
  """The --shard to use: the flag if given, else a SLURM array task's place in its array, else 1/1.

  A SLURM array job runs the same command in every task; task I of N (SLURM_ARRAY_TASK_ID,
  SLURM_ARRAY_TASK_COUNT; ids 1..N, 0..N-1 or stepped, as `sbatch --array=0-6:2` numbers them) trains
  shard I of N (`shards.slurm_array_shard`).
  """
  if flag_value:
    return flag_value
  try:
    return shards.slurm_array_shard(environ) or "1/1"
  except ValueError as e:
    raise ConfigError(str(e)) from None


def select(raw_config: Any, workdir: str, arch: str = "", dataset: str = "", shard: str | None = None
           ) -> tuple[SweepConfig, SweepConfig, tuple[int, int]]:
  """(the selected grid, the part this process trains, (shard index, count)); errors name the flag."""
  grid = configuration.parse(SweepConfig, raw_config)
  runs = select_runs(grid.runs, arch, dataset)
  if not runs:
    raise ConfigError(f"--arch={arch!r} --dataset={dataset!r} select no run of the config; its runs are "
                      f"{list(grid.runs)}")
  shard_text = shard_from_environment(shard)
  try:
    index, count = shards.parse_shard(shard_text)
  except ValueError as e:
    raise ConfigError(f"--shard: {e}") from e
  grid = configuration.parse(SweepConfig, {**configuration.to_dict(grid), "runs": list(runs)})
  mine = shards.sweep_shard(grid, index, count, workdir) if count > 1 else grid.runs
  if not mine:
    raise ConfigError(f"--shard={shard_text} gets no run: the selection has only {len(grid.runs)}")
  part = configuration.parse(SweepConfig, {**configuration.to_dict(grid), "runs": list(mine)})
  return grid, part, (index, count)


def main(raw_config: Any, workdir: str, data_dir: str | None = None, arch: str = "", dataset: str = "",
         shard: str | None = None, overwrite: bool = False) -> dict[str, dict]:
  """Trains this process's part of the grid, writes the accuracy table of the whole selection, and
  raises SweepError (after writing everything it could) when any selected run did not finish.

  A run that cannot train (a corrupt checkpoint, its folder held by another process) is logged in one
  line naming it and why, and the other runs train. Shards refuse to share a workdir with a shard of
  another config (`results.check_grid_config`)."""
  sharding.maybe_initialize_distributed()
  grid, part, (index, count) = select(raw_config, workdir, arch, dataset, shard)
  if count > 1:
    results.check_grid_config(workdir, configuration.to_dict(grid), overwrite)
    logging.info("shard %d/%d: %d of the %d selected runs: %s", index, count, len(part.runs),
                 len(grid.runs), ", ".join(part.runs))
  data_dir = registry.resolve_data_dir(data_dir)
  _, pending = dynamics_sweep.pending_runs(part, workdir, overwrite)
  total = len(pending) * part.base.num_steps

  with progress_lib.bar(total, f"dynamics, {len(pending)} of {len(part.runs)} runs to train") as bar:

    def on_run_start(position, count_, run):
      bar.set_description(f"[{position + 1}/{count_}] {run}")

    def on_run_end(run, record, skipped):
      if skipped:
        logging.info("%s: already finished, skipped", run)
      elif record.get("status") == "finished" and "compile_seconds" in record:
        accuracy = record["final_test_accuracy"]
        logging.info("%s: test accuracy %.3f (%.3f..%.3f) over %d seeds; compile %.1fs, run %.1fs", run,
                     sum(accuracy) / len(accuracy), min(accuracy), max(accuracy), len(accuracy),
                     record["compile_seconds"], record["run_seconds"])
      elif record.get("status") == "failed":
        logging.warning("%s: not trained, the other runs go on: %s", run, record.get("message"))
      elif record.get("status") != "finished":
        logging.warning("%s: %s", run, record.get("message", record.get("status")))

    hooks = dynamics_sweep.SweepHooks(on_run_start=on_run_start, on_run_end=on_run_end, progress=bar)
    records = dynamics_sweep.run_sweep(part, workdir, data_dir, overwrite=overwrite, hooks=hooks)
  # The table lists every selected run, so a shard shows the others' runs as finished or not run yet.
  if jax.process_index() == 0:  # Several processes: one table, written once.
    print(report_dynamics.write_accuracy_table(workdir, records, grid))
  failed = dynamics_sweep.unfinished(records)
  if failed:
    raise SweepError(f"{len(failed)} of {len(records)} runs did not finish ({', '.join(failed[:5])}"
                     f"{', ...' if len(failed) > 5 else ''}); the table and every finished run are written; "
                     f"start the same command again to retry them")
  return records
