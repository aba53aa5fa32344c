"""The toy-superposition launch as one function: validate, hold the workdir, train the three sweeps
through the one run loop (progress, NaN/Inf check, checkpoints at each sweep's start and end, resume),
then write the tables, plots and report.md (`analysis.write_outputs`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mpcodec.core import configuration, loop, sharding, workdir as workdir_lib
from mpcodec.core import progress as progress_lib
from mpcodec.studies.toy_superposition import analysis, program
from mpcodec.studies.toy_superposition.config import ToySuperpositionConfig, parse_config

# What the run derives from its checkpoints: --overwrite removes them before the checkpoints.
OUTPUTS = ("report.md", "metrics", "plots")


def checkpoint_root(workdir: str) -> str:
  """<workdir>/checkpoints/<sweep>/<step>: one store per sweep (`program.SWEEPS`)."""
  return os.path.join(workdir, "checkpoints")


def train(cfg: ToySuperpositionConfig, workdir: str, overwrite: bool = False, progress: Any = None) -> loop.Outcome:
  """Trains every sweep for every seed in checkpointed chunks, resuming from the latest checkpoint."""
  return loop.run(program.make_program(cfg), program.seed_keys(cfg.seed, cfg.num_seeds), checkpoint_root(workdir),
                  seed_labels=list(range(cfg.num_seeds)), config=configuration.training_fingerprint(cfg),
                  metadata={"full_config": configuration.to_dict(cfg)}, mesh=sharding.seed_mesh(cfg.num_seeds),
                  progress=progress, overwrite=overwrite, outputs=[os.path.join(workdir, name) for name in OUTPUTS])


def run_experiment(cfg: ToySuperpositionConfig, workdir: str, log: Callable[[str], None] = lambda message: None,
                   overwrite: bool = False) -> dict[str, Any]:
  """Trains all sweeps, writes every output under `workdir`, returns the results dict (as in the JSON).

  The workdir is proven writable and held (`<workdir>/.lock`) before anything trains: a second process
  on the same workdir is refused naming the holder, so two runs never replace each other's outputs.
  """
  configuration.check_values(cfg)
  with workdir_lib.locked(workdir):
    total = sum(program.sweep_train_config(cfg, sweep).num_steps for sweep in program.SWEEPS)
    log(f"{cfg.num_seeds} seeds; sweeps {', '.join(program.SWEEPS)}, each cell best of its restarts")
    with progress_lib.bar(total, f"toy superposition, {cfg.num_seeds} seeds (3 sweeps)") as bar:
      outcome = train(cfg, workdir, overwrite=overwrite, progress=bar)
    if outcome.steps_trained:
      log(f"trained {outcome.steps_trained} steps x {outcome.num_seeds} seeds in {outcome.train_seconds:.2f} s "
          f"(compile {outcome.compile_seconds:.2f} s)")
    results = analysis.write_outputs(cfg, program.sweep_results(cfg, outcome.state, outcome.history), workdir)
    log(f"wrote metrics, plots and report under {workdir}")
  return results


def main(raw_config: Any, workdir: str, overwrite: bool = False,
         log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
  """The launch: validates the config before anything compiles, then `run_experiment`."""
  return run_experiment(parse_config(raw_config), workdir, log, overwrite=overwrite)
