"""The toy-superposition sweeps through the one run loop: the chunked, checkpointed and resumed run equals
the pure program bit for bit, a NaN stops it naming sweep, step and seed, and --overwrite clears the old
outputs of another config before training."""

import os
import shutil

import jax
import numpy as np
import pytest

from mpcodec.core import loop
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.configuration import parse
from mpcodec.core.errors import NonFiniteError, WorkdirError
from mpcodec.studies.toy_superposition import program, run
from mpcodec.studies.toy_superposition.config import ToySuperpositionConfig
from tests.support import assert_trees_equal

SHORT = dict(num_steps=20, history_every=10, batch_size=16, num_restarts=2)


def tiny_config(**train):
  return parse(ToySuperpositionConfig, dict(
      num_seeds=2, train={**SHORT, **train},
      phase_diagram=dict(relative_importances=(0.3, 3.0), feature_densities=(1.0,), train=dict(SHORT, num_restarts=1)),
      privileged_basis=dict(sparsities=(0.0, 0.9), train=dict(SHORT, num_restarts=1))))


def test_the_chunked_resumed_run_equals_the_pure_program(tmp_path):
  cfg = tiny_config()
  keys = program.seed_keys(cfg.seed, cfg.num_seeds)
  pure_state, pure_history = jax.jit(loop.pure_sweep(program.make_program(cfg)))(keys)
  outcome = run.train(cfg, str(tmp_path))
  assert outcome.steps_trained == 60   # three sweeps of 20 steps, in chunks of history_every = 10
  assert_trees_equal(outcome.state, pure_state)
  assert_trees_equal(outcome.history, pure_history)
  for sweep in program.SWEEPS:
    assert CheckpointStore(os.path.join(tmp_path, "checkpoints", sweep)).all_steps() == [0, 20], sweep
  # The last sweep's end lost: the run resumes from its start and ends with the same bits.
  shutil.rmtree(os.path.join(tmp_path, "checkpoints", "privileged_basis", "20"))
  resumed = run.train(cfg, str(tmp_path))
  assert resumed.resumed_from == ("privileged_basis", 0) and resumed.steps_trained == 20
  assert_trees_equal(resumed.state, pure_state)
  # Each kept model is its seed's restart with the lowest last-block loss.
  runs = program.sweep_results(cfg, outcome.state, outcome.history)
  blocks_SxBxGxR = np.asarray(outcome.history["pentagon_dense"][program.BLOCK_LOSS])
  np.testing.assert_array_equal(runs["pentagon"]["history"]["kept_restart"], blocks_SxBxGxR[:, -1, 0].argmin(-1))
  kept = np.asarray(runs["pentagon"]["history"]["kept_restart"])
  np.testing.assert_array_equal(runs["pentagon"]["params"]["W"],
                                np.asarray(outcome.state["pentagon_dense"]["params"]["W"])[[0, 1], 0, kept])
  assert runs["phase_diagram"]["params"]["W"].shape == (1, 2, 2, 1, 2)   # densities, importances, seeds, m, n


def test_a_non_finite_loss_stops_the_run_naming_sweep_step_and_seed(tmp_path):
  cfg = tiny_config(optim=dict(name="sgd", learning_rate=1e30, schedule="constant"))
  with pytest.raises(NonFiniteError, match=r"toy superposition pentagon_dense: loss is .* at step \d+ for seed \d"):
    run.train(cfg, str(tmp_path))


def test_overwrite_removes_the_old_outputs_before_training(tmp_path):
  workdir = str(tmp_path)
  run.run_experiment(tiny_config(), workdir)
  assert os.path.exists(os.path.join(workdir, "report.md"))
  stale = os.path.join(workdir, "plots", "stale.png")
  open(stale, "w").close()
  other = tiny_config(batch_size=8)
  with pytest.raises(WorkdirError, match=r"config\.train\.batch_size.*--overwrite"):
    run.run_experiment(other, workdir)
  results = run.run_experiment(other, workdir, overwrite=True)
  assert not os.path.exists(stale) and os.path.exists(os.path.join(workdir, "report.md"))
  assert results["config"]["train"]["batch_size"] == 8
