"""The mono->poly launch as one function: validate, hold the workdir, train through the one loop, analyse.

`train(cfg, workdir)` runs `program.make_program(cfg)` for every seed at once (vmapped, the seed axis
sharded over the device mesh) in checkpointed chunks, resuming from the latest checkpoint of the same
training fingerprint (`configuration.training_fingerprint`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
from absl import logging

from mpcodec.core import configuration, loop, sharding, workdir as workdir_lib
from mpcodec.core import progress as progress_lib
from mpcodec.studies.mono_poly import analysis, program
from mpcodec.studies.mono_poly.config import MonoPolyConfig, parse_config, phase_names

# What the analysis derives from the checkpoints: --overwrite removes them before the checkpoints.
OUTPUTS = ("report.md", "report.json", "metrics", "plots")


def activation_source(cfg: MonoPolyConfig) -> dict:
  """How a generic reader rebuilds the model and its inputs from a checkpoint (no study code needed).

  The inputs are the shared draw of data_seed; with per-seed data that is not a seed's own training
  set but images of the same distribution (held out from every seed).
  """
  return {"model": {"kind": "mlp", "hidden_widths": list(cfg.model.hidden_widths), "num_classes": 2},
          "params_path": ["state", "params"],
          "inputs": {"kind": "bars", "config": configuration.to_dict(cfg.data), "data_seed": cfg.data_seed,
                     "flatten": True}}


def train(cfg: MonoPolyConfig, workdir: str, overwrite: bool = False, progress: Any = None) -> loop.Outcome:
  """Trains every seed through every phase in checkpointed chunks, resuming from the latest checkpoint.

  The seed axis is sharded over every device of every process (`sharding.seed_mesh`).
  """
  mesh = sharding.seed_mesh(cfg.num_seeds)
  return loop.run(program.make_program(cfg), program.seed_keys(cfg), program.checkpoint_root(workdir),
                  seed_labels=cfg.seeds, config=configuration.training_fingerprint(cfg),
                  metadata={"full_config": configuration.to_dict(cfg), "activation_source": activation_source(cfg)},
                  mesh=mesh, progress=progress, overwrite=overwrite,
                  outputs=[os.path.join(workdir, name) for name in OUTPUTS])


def run_experiment(cfg: MonoPolyConfig, workdir: str, overwrite: bool = False, progress: Any = None) -> Any:
  """`train`, returning the final state (seed axis first)."""
  return train(cfg, workdir, overwrite=overwrite, progress=progress).state


def main(raw_config: Any, workdir: str, overwrite: bool = False, analyze: bool = True) -> dict | None:
  """Trains (or resumes) the run in `workdir`, prints its training rate, then analyses it.

  Every config key is checked and the workdir proven writable before anything compiles; a second process
  on the same workdir is refused. Returns the analysis report (None without `analyze`, or off process 0).
  """
  sharding.maybe_initialize_distributed()
  cfg = parse_config(raw_config)
  primary = jax.process_index() == 0
  lock = workdir_lib.locked(workdir) if primary else workdir_lib.writable(workdir)
  with lock:
    total = sum(cfg.phase(phase).steps for phase in phase_names(cfg))
    with progress_lib.bar(total, f"mono->poly, {cfg.num_seeds} seeds") as bar:
      outcome = train(cfg, workdir, overwrite=overwrite, progress=bar)
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
