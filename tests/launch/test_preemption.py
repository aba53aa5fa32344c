"""SIGTERM (what SLURM and Kubernetes send a pre-empted job) takes the path of Ctrl-C: the current chunk
ends, a checkpoint is written, the lock is released and the launch exits 143 with one line saying how to
resume; the same command then resumes to the result of an uninterrupted run.

The launches and the polling helpers are those of the kill tests (`test_resume`).
"""

from __future__ import annotations

import os
import signal

import pytest

from mpcodec.core import workdir as workdir_lib
from tests import support
from tests.launch.test_resume import (DYN_ARGS, DYN_EVERY, DYN_STEPS, Launch, _dyn_paths, _line_with,
                                      assert_same_bits, at_least, checkpoint_steps, saved_arrays)

PREEMPTED_STATUS = 128 + signal.SIGTERM   # 143

# mono->poly, shorter than the kill tests' run: every phase 1000 steps, a checkpoint every 200, chunks of 50.
MONO_STEPS = 1000
MONO_ARGS = ("launch.mono_poly", "--config=configs/mono_poly.py:smoke",
             *(f"--config.{phase}.{key}={value}" for phase in ("phase1", "phase2")
               for key, value in (("steps", MONO_STEPS), ("checkpoint_every", 200))),
             "--config.chunk_steps=50", "--noanalyze")


def _leftovers(workdir: str) -> list[str]:
  """Lock files and Orbax's temporary folders of unfinished saves anywhere under `workdir`."""
  found = []
  for root, dirs, files in os.walk(workdir):
    found += [os.path.join(root, name) for name in dirs + files
              if name == workdir_lib.LOCK_NAME or "orbax-checkpoint-tmp" in name]
  return found


def _assert_preempted(run: Launch, phase: str, store: str) -> int:
  """rc 143, one `error:` line naming the stop step and how to resume, no traceback, nothing left over."""
  status = run.wait(120)
  assert status == PREEMPTED_STATUS, f"SIGTERM must end the run with exit status 143, got {status}\n{run.describe()}"
  errors = _line_with(run.stderr, "error:")
  assert len(errors) == 1, run.describe()
  stop = checkpoint_steps(store)[-1]
  assert f"pre-empted (SIGTERM) at {phase} step {stop};" in errors[0], (errors[0], checkpoint_steps(store))
  assert "checkpoint saved" in errors[0] and "the same command resumes from it" in errors[0], errors[0]
  assert "Traceback" not in run.stderr, run.describe()
  assert not _leftovers(run.workdir), f"left behind: {_leftovers(run.workdir)}"
  return stop


@pytest.mark.slow
def test_mono_poly_sigterm_checkpoints_releases_the_lock_and_resumes(tmp_path):
  reference = Launch(MONO_ARGS, str(tmp_path / "reference"), str(tmp_path), "reference")
  workdir = str(tmp_path / "run")
  phase1 = os.path.join(workdir, "checkpoints", "phase1")
  try:
    run = Launch(MONO_ARGS, workdir, str(tmp_path), "preempted")
    seen = run.signal_when(at_least(phase1, 2), "2 phase1 checkpoints", signal.SIGTERM)
    stop = _assert_preempted(run, "phase1", phase1)
    assert seen[-1] <= stop < MONO_STEPS, (seen, checkpoint_steps(phase1))
    again = Launch(MONO_ARGS, workdir, str(tmp_path), "resumed").finish()
    assert again.resumed_from() == ("phase1", stop), again.describe()
    reference.finish()
  finally:
    reference.kill_now()
  stores = sorted(os.listdir(os.path.join(reference.workdir, "checkpoints")))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == stores
  for name in stores:
    ref_store = os.path.join(reference.workdir, "checkpoints", name)
    store = os.path.join(workdir, "checkpoints", name)
    last = checkpoint_steps(ref_store)[-1]
    assert checkpoint_steps(store)[-1] == last, name
    assert_same_bits(saved_arrays(ref_store, last), saved_arrays(store, last), f"{name} step {last} after SIGTERM")


@pytest.mark.slow
def test_dynamics_sigterm_checkpoints_releases_the_lock_and_resumes(tmp_path):
  """The resumed run's bits are those of an uninterrupted one: the SIGINT kill test proves it for this
  same stop-and-checkpoint path; here the run is checked to resume from the stop and finish."""
  extra = [f"--data_dir={support.require_data('mnist')}"]
  workdir = str(tmp_path / "run")
  _, json_path, store = _dyn_paths(workdir)
  run = Launch(DYN_ARGS, workdir, str(tmp_path), "preempted", extra)
  run.signal_when(at_least(store, 2), "2 checkpoints", signal.SIGTERM)
  stop = _assert_preempted(run, "train", store)
  assert 2 * DYN_EVERY <= stop < DYN_STEPS, checkpoint_steps(store)
  assert not os.path.exists(json_path), "a pre-empted run must not be marked finished"
  again = Launch(DYN_ARGS, workdir, str(tmp_path), "resumed", extra).finish()
  assert again.resumed_from() == ("train", stop), again.describe()
  assert os.path.exists(json_path)
