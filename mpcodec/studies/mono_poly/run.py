"""The mono->poly launch as one function: validate, hold the workdir, train through the one loop, analyse."""

from __future__ import annotations

from typing import Any

import jax
from absl import logging

from mpcodec.core import progress, sharding, workdir as workdir_lib
from mpcodec.studies.mono_poly import analysis, experiment


def main(raw_config: Any, workdir: str, overwrite: bool = False, analyze: bool = True) -> dict | None:
  """Trains (or resumes) the run in `workdir`, prints its training rate, then analyses it.

  Every config key is checked and the workdir proven writable before anything compiles; a second process
  on the same workdir is refused. Returns the analysis report (None without `analyze`, or off process 0).
  """
  sharding.maybe_initialize_distributed()
  cfg = experiment.parse_config(raw_config)
  primary = jax.process_index() == 0
  lock = workdir_lib.locked(workdir) if primary else workdir_lib.writable(workdir)
  with lock:
    total = sum(cfg.phase(phase).steps for phase in experiment.phase_names(cfg))
    with progress.bar(total, f"mono->poly, {cfg.num_seeds} seeds") as bar:
      outcome = experiment.train(cfg, workdir, overwrite=overwrite, progress=bar)
    if outcome.steps_trained:
      print(f"trained {outcome.steps_trained} steps x {outcome.num_seeds} seeds in {outcome.train_seconds:.2f} s: "
            f"{outcome.seed_steps_per_second:,.0f} seed-steps/s (compile {outcome.compile_seconds:.2f} s)")
    else:
      print("training already finished: every checkpoint is in place")
    report = None
    if analyze and primary:
      report = analysis.analyze(workdir, analysis=cfg.analysis)
      print(analysis.summary_text(report))
    logging.info("outputs in %s", workdir)
  return report
