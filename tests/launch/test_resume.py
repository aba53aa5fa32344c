"""Kill tests of the one run loop through the launches: SIGKILL and SIGINT mid-run, then the same command.

Every resumed run must end with the parameters (bit for bit), history and report of an uninterrupted run
of the same command in another workdir. The moment of each signal is chosen by polling the checkpoint
folders, so the tests do not depend on how fast the machine is; every wait has a timeout, and a failure
prints the tail of the run's stderr.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import support

REPO_ROOT = str(support.REPO_ROOT)
START_TIMEOUT_S = 180   # from launch to the checkpoints a test waits for (imports, compile, training)
RUN_TIMEOUT_S = 300     # a whole run to its end
POLL_S = 0.02

# mono->poly: 2 x 3000 steps in chunks of 50 with a checkpoint every 200 (15 per phase): a few seconds of
# training, so a signal sent after the third checkpoint lands well inside a phase.
MONO_STEPS = 3000
MONO_EVERY = 200
MONO_CHUNK = 50
MONO_ARGS = ("launch.mono_poly", "--config=configs/mono_poly.py:smoke",
             f"--config.phase1.steps={MONO_STEPS}", f"--config.phase2.steps={MONO_STEPS}",
             f"--config.phase1.checkpoint_every={MONO_EVERY}",
             f"--config.phase2.checkpoint_every={MONO_EVERY}", f"--config.chunk_steps={MONO_CHUNK}")
MONO_TOTAL = 3 * MONO_STEPS   # phase 1, phase 2 and the control arm's second phase (as long as phase 2)
MONO_OUTPUTS = ("report.json", "metrics/training_history.csv", "metrics/crs_phase1.csv",
                "metrics/crs_phase2.csv")

# dynamics: mlp_128_64 on MNIST, 600 steps, a checkpoint every 50 (chunks of 2 measurements = 10 steps).
DYN_RUN = "mlp_128_64__mnist"
DYN_STEPS = 600
DYN_EVERY = 50
DYN_ARGS = ("launch.dynamics", "--config=configs/dynamics.py:smoke,arch=mlp_128_64,dataset=mnist",
            "--config.plots=False", f"--config.base.num_steps={DYN_STEPS}",
            f"--config.base.checkpoint_every={DYN_EVERY}")
DYN_CHUNK = 10   # the smoke grid's chunks: 2 measurements of 5 steps
DYN_TIMING_FIELDS = ("compile_seconds", "run_seconds")

RESUMED = re.compile(r"resuming from (\w+) step (\d+)")
TRAINED = re.compile(r"trained (\d+) steps x (\d+) seeds")


# ------------------------------------------------------------------------------------------------
# Helpers: launches as subprocesses with their output in files, polling with timeouts.


def _tail(text: str, n: int = 3000) -> str:
  # The progress bar redraws with carriage returns: keep whole lines readable.
  return text.replace("\r", "\n")[-n:]


class Launch:
  """One launch command running in the background, stdout and stderr in files (a pipe nobody reads
  while the test polls could fill and stall the run)."""

  def __init__(self, args, workdir: str, log_dir: str, name: str, extra=(), env=None):
    os.makedirs(log_dir, exist_ok=True)
    self.name, self.workdir = name, workdir
    self.stdout_path = os.path.join(log_dir, f"{name}.stdout")
    self.stderr_path = os.path.join(log_dir, f"{name}.stderr")
    self.command = [sys.executable, "-m", *args, f"--workdir={workdir}", *extra]
    with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
      self.process = subprocess.Popen(self.command, cwd=REPO_ROOT, stdout=out, stderr=err, text=True,
                                      env={**os.environ, **(env or {})})

  @property
  def stdout(self) -> str:
    with open(self.stdout_path) as f:
      return f.read()

  @property
  def stderr(self) -> str:
    with open(self.stderr_path) as f:
      return f.read()

  def describe(self) -> str:
    return (f"{self.name}: {' '.join(self.command[2:])}\n--- stdout tail ---\n{_tail(self.stdout, 1500)}"
            f"\n--- stderr tail ---\n{_tail(self.stderr)}")

  def kill_now(self) -> None:
    if self.process.poll() is None:
      self.process.kill()
    self.process.wait(timeout=30)

  def wait(self, timeout: float = RUN_TIMEOUT_S) -> int:
    """The exit status (the process is reaped, so its workdir lock reads as stale to the next run)."""
    try:
      return self.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.kill_now()
      pytest.fail(f"{self.name} did not end within {timeout} s\n{self.describe()}")

  def finish(self, timeout: float = RUN_TIMEOUT_S) -> "Launch":
    """Waits for a successful end (exit status 0)."""
    status = self.wait(timeout)
    assert status == 0, f"{self.name} exited with {status}\n{self.describe()}"
    return self

  def signal_when(self, condition, what: str, signum: int, timeout: float = START_TIMEOUT_S):
    """Polls `condition()` until it returns a truthy value, then sends `signum`; returns that value.

    Fails (killing the run) if the run ends first or the timeout passes: every wait ends.
    """
    deadline = time.monotonic() + timeout
    while True:
      value = condition()
      if value:
        self.process.send_signal(signum)
        return value
      if self.process.poll() is not None:
        pytest.fail(f"{self.name} ended (status {self.process.returncode}) before {what}\n{self.describe()}")
      if time.monotonic() > deadline:
        self.kill_now()
        pytest.fail(f"{self.name}: no {what} within {timeout} s\n{self.describe()}")
      time.sleep(POLL_S)

  def resumed_from(self) -> tuple[str, int]:
    found = RESUMED.findall(self.stderr)
    assert len(found) == 1, f"{self.name}: expected one 'resuming from' line, got {found}\n{self.describe()}"
    return found[0][0], int(found[0][1])


def checkpoint_steps(directory: str) -> list[int]:
  """Steps of the finished checkpoints in a store folder (Orbax writes a temporary name, then renames)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def at_least(directory: str, count: int):
  """A condition: the store holds `count` checkpoints past step 0 (returns their steps)."""
  def condition():
    steps = [s for s in checkpoint_steps(directory) if s > 0]
    return steps if len(steps) >= count else None
  return condition


def saved_arrays(directory: str, step: int) -> dict[str, np.ndarray]:
  """{path: array} of a checkpoint as saved (no study code), restored and checksum-verified."""
  import jax  # pylint: disable=g-import-not-at-top
  from mpcodec.core.checkpoint import CheckpointStore  # pylint: disable=g-import-not-at-top
  store = CheckpointStore(directory)
  try:
    tree = store.restore_as_saved(step)
  finally:
    store.close()
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_same_bits(expected: dict, actual: dict, what: str) -> None:
  assert sorted(actual) == sorted(expected), f"{what}: different arrays"
  for path, a in expected.items():
    b = actual[path]
    assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{what} {path}: {b.dtype}{b.shape} != {a.dtype}{a.shape}"
    if a.tobytes() != b.tobytes():
      differ = np.flatnonzero(np.frombuffer(a.tobytes(), np.uint8) != np.frombuffer(b.tobytes(), np.uint8))
      pytest.fail(f"{what} {path}: differs from the uninterrupted run's (first differing byte {differ[0]} of "
                  f"{a.nbytes}); a resumed run must equal it bit for bit")


def read_bytes(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _line_with(text: str, prefix: str) -> list[str]:
  return [line for line in text.replace("\r", "\n").splitlines() if line.startswith(prefix)]


# ------------------------------------------------------------------------------------------------
# mono->poly


class Reference:
  """An uninterrupted run started in the background when first asked for, awaited when needed."""

  def __init__(self, launch: Launch):
    self.launch, self._done = launch, False

  def done(self) -> Launch:
    if not self._done:
      self.launch.finish()
      self._done = True
    return self.launch


@pytest.fixture(scope="module")
def mono_reference(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mono_reference"))
  reference = Reference(Launch(MONO_ARGS, os.path.join(root, "run"), root, "reference"))
  yield reference
  reference.launch.kill_now()


def _mono_dirs(workdir: str) -> tuple[str, str]:
  return (os.path.join(workdir, "checkpoints", "phase1"), os.path.join(workdir, "checkpoints", "phase2"))


def assert_same_checkpoints(ref_store: str, store: str, what: str) -> None:
  """The same checkpoint steps, each equal bit for bit (state: params and optimizer; history buffers):
  the ones written before a kill, and every one written after a resume."""
  steps = checkpoint_steps(store)
  assert steps == checkpoint_steps(ref_store), f"{what}: checkpoint steps {steps} != {checkpoint_steps(ref_store)}"
  for step in steps:
    assert_same_bits(saved_arrays(ref_store, step), saved_arrays(store, step), f"{what} step {step}")


def test_mono_poly_killed_in_each_phase_resumes_to_the_uninterrupted_result(mono_reference, tmp_path):
  workdir = str(tmp_path / "run")
  phase1, phase2 = _mono_dirs(workdir)

  # 1. SIGKILL once phase 1 has 3 checkpoints past step 0.
  first = Launch(MONO_ARGS, workdir, str(tmp_path), "killed_in_phase1", ["--noanalyze"])
  seen = first.signal_when(at_least(phase1, 3), "3 phase1 checkpoints", signal.SIGKILL)
  assert first.wait(60) == -signal.SIGKILL, first.describe()
  latest1 = checkpoint_steps(phase1)[-1]
  assert seen[-1] <= latest1 < MONO_STEPS and not checkpoint_steps(phase2), (
      f"not killed inside phase 1: phase1 {checkpoint_steps(phase1)}, phase2 {checkpoint_steps(phase2)}")

  # 2. The same command resumes from the latest phase-1 checkpoint; SIGKILL it inside phase 2.
  second = Launch(MONO_ARGS, workdir, str(tmp_path), "killed_in_phase2", ["--noanalyze"])
  second.signal_when(at_least(phase2, 3), "3 phase2 checkpoints", signal.SIGKILL)
  assert second.wait(60) == -signal.SIGKILL, second.describe()
  assert second.resumed_from() == ("phase1", latest1), second.describe()
  assert checkpoint_steps(phase1)[-1] == MONO_STEPS
  latest2 = checkpoint_steps(phase2)[-1]
  assert 3 * MONO_EVERY <= latest2 < MONO_STEPS, f"not killed inside phase 2: {checkpoint_steps(phase2)}"

  # 3. Again, to the end, with the analysis: resumed in phase 2, trained only what was left.
  third = Launch(MONO_ARGS, workdir, str(tmp_path), "finished").finish()
  assert third.resumed_from() == ("phase2", latest2), third.describe()
  trained = TRAINED.findall(third.stdout)
  assert trained == [(str(2 * MONO_STEPS - latest2), "4")], third.describe()   # the rest of phase 2, the control
  assert "H3" in third.stdout

  reference = mono_reference.done()
  assert not RESUMED.findall(reference.stderr), "the reference run must train from scratch"
  assert TRAINED.findall(reference.stdout) == [(str(MONO_TOTAL), "4")], reference.describe()
  for ref_store, store in zip(_mono_dirs(reference.workdir), _mono_dirs(workdir)):
    assert_same_checkpoints(ref_store, store, os.path.basename(store))
  for name in MONO_OUTPUTS:
    assert read_bytes(os.path.join(workdir, name)) == read_bytes(os.path.join(reference.workdir, name)), (
        f"{name} of the twice-killed run differs from the uninterrupted run's")


def test_mono_poly_sigint_stops_with_a_checkpoint_and_resumes(mono_reference, tmp_path):
  workdir = str(tmp_path / "run")
  phase1, phase2 = _mono_dirs(workdir)
  run = Launch(MONO_ARGS, workdir, str(tmp_path), "interrupted", ["--noanalyze"])
  seen = run.signal_when(at_least(phase1, 3), "3 phase1 checkpoints", signal.SIGINT)
  status = run.wait(120)
  assert status == 130, f"SIGINT must end the run with exit status 130, got {status}\n{run.describe()}"
  errors = _line_with(run.stderr, "error:")
  assert len(errors) == 1, run.describe()
  assert "interrupted" in errors[0] and "checkpoint saved" in errors[0], errors[0]
  assert "Traceback" not in run.stderr, run.describe()
  # It stopped after the chunk running when the signal came: a checkpoint at that chunk's end (a
  # multiple of the chunk length, at or past the last regular checkpoint seen), the step the line names.
  steps = checkpoint_steps(phase1)
  stop = steps[-1]
  assert stop % MONO_CHUNK == 0 and seen[-1] <= stop < MONO_STEPS, (seen, steps)
  assert f"interrupted at phase1 step {stop};" in errors[0], (errors[0], steps)
  assert not checkpoint_steps(phase2)
  assert all(s % MONO_EVERY == 0 for s in steps[:-1]), steps   # no other step but the stop was added

  again = Launch(MONO_ARGS, workdir, str(tmp_path), "resumed").finish()
  assert again.resumed_from() == ("phase1", stop), again.describe()
  assert TRAINED.findall(again.stdout) == [(str(MONO_TOTAL - stop), "4")], again.describe()
  reference = mono_reference.done()
  for ref_store, store in zip(_mono_dirs(reference.workdir), _mono_dirs(workdir)):
    # The stop's checkpoint, off the plan, is removed once its phase ends: the same steps as the reference.
    assert checkpoint_steps(store) == checkpoint_steps(ref_store), store
    assert_same_bits(saved_arrays(ref_store, MONO_STEPS), saved_arrays(store, MONO_STEPS),
                     f"{os.path.basename(store)} step {MONO_STEPS} after SIGINT")
  history = "metrics/training_history.csv"   # one row per checkpoint step: no rows of the stop's step
  assert read_bytes(os.path.join(workdir, history)) == read_bytes(os.path.join(reference.workdir, history))


def off_plan(directory: str):
  """A condition: the store holds a checkpoint off the plan (saved by the time rule); returns the steps."""
  def condition():
    steps = checkpoint_steps(directory)
    return steps if any(s % MONO_EVERY for s in steps) else None
  return condition


def test_mono_poly_killed_after_a_time_rule_checkpoint_resumes_to_the_uninterrupted_result(mono_reference,
                                                                                          tmp_path):
  # A tiny interval: every chunk end past the interval saves (a chunk of 50 steps takes longer).
  timed = {"MPCODEC_CHECKPOINT_INTERVAL_S": "0.001"}
  workdir = str(tmp_path / "run")
  phase1, phase2 = _mono_dirs(workdir)
  first = Launch(MONO_ARGS, workdir, str(tmp_path), "killed_timed", ["--noanalyze"], env=timed)
  first.signal_when(off_plan(phase1), "a phase1 checkpoint off the plan", signal.SIGKILL)
  assert first.wait(60) == -signal.SIGKILL, first.describe()
  steps = checkpoint_steps(phase1)
  latest = steps[-1]
  assert any(s % MONO_EVERY for s in steps) and latest < MONO_STEPS and not checkpoint_steps(phase2), steps

  again = Launch(MONO_ARGS, workdir, str(tmp_path), "resumed_timed", ["--noanalyze"], env=timed).finish()
  assert again.resumed_from() == ("phase1", latest), again.describe()
  assert TRAINED.findall(again.stdout) == [(str(MONO_TOTAL - latest), "4")], again.describe()
  reference = mono_reference.done()
  for ref_store, store in zip(_mono_dirs(reference.workdir), _mono_dirs(workdir)):
    # The time rule's checkpoints are removed as each phase ends: the reference's steps, bit for bit.
    assert_same_checkpoints(ref_store, store, f"{os.path.basename(store)} (time rule)")


# ------------------------------------------------------------------------------------------------
# dynamics


def _dyn_paths(workdir: str) -> tuple[str, str, str]:
  root = os.path.join(workdir, "dynamics")
  return (os.path.join(root, f"{DYN_RUN}.npz"), os.path.join(root, f"{DYN_RUN}.json"),
          os.path.join(root, "checkpoints", DYN_RUN, "train"))


def test_dynamics_killed_then_interrupted_resumes_to_the_uninterrupted_result(tmp_path):
  data_dir = str(support.require_data("mnist"))
  extra = [f"--data_dir={data_dir}"]
  reference = Launch(DYN_ARGS, str(tmp_path / "reference"), str(tmp_path), "reference", extra)
  workdir = str(tmp_path / "run")
  npz_path, json_path, store = _dyn_paths(workdir)
  try:
    # 1. SIGKILL after the first checkpoints.
    first = Launch(DYN_ARGS, workdir, str(tmp_path), "killed", extra)
    first.signal_when(at_least(store, 2), "2 checkpoints", signal.SIGKILL)
    assert first.wait(60) == -signal.SIGKILL, first.describe()
    killed_at = checkpoint_steps(store)[-1]
    assert 2 * DYN_EVERY <= killed_at < DYN_STEPS, checkpoint_steps(store)
    assert not os.path.exists(json_path), "a killed run must not be marked finished"

    # 2. The same command resumes from there; SIGINT once it has saved 2 more checkpoints.
    second = Launch(DYN_ARGS, workdir, str(tmp_path), "interrupted", extra)
    second.signal_when(lambda: [s for s in checkpoint_steps(store) if s > killed_at + DYN_EVERY],
                       "2 checkpoints after the resume", signal.SIGINT)
    status = second.wait(120)
    assert status == 130, f"SIGINT must end the run with exit status 130, got {status}\n{second.describe()}"
    assert second.resumed_from() == ("train", killed_at), second.describe()
    errors = _line_with(second.stderr, "error:")
    assert len(errors) == 1 and "interrupted" in errors[0] and "checkpoint saved" in errors[0], second.describe()
    interrupted_at = checkpoint_steps(store)[-1]
    assert f"interrupted at train step {interrupted_at};" in errors[0], (errors[0], checkpoint_steps(store))
    assert killed_at + 2 * DYN_EVERY <= interrupted_at < DYN_STEPS, checkpoint_steps(store)
    assert interrupted_at % DYN_CHUNK == 0, f"not stopped at a chunk boundary: {checkpoint_steps(store)}"
    assert not os.path.exists(json_path), "an interrupted run must not be marked finished"

    # 3. And again, to the end.
    third = Launch(DYN_ARGS, workdir, str(tmp_path), "finished", extra).finish()
    assert third.resumed_from() == ("train", interrupted_at), third.describe()
    reference.finish()
  finally:
    reference.kill_now()
  assert not RESUMED.findall(reference.stderr), "the reference run must train from scratch"

  ref_npz, ref_json, ref_store = _dyn_paths(reference.workdir)
  # The reference's checkpoints: the one SIGINT added at its stop is removed once the run has finished.
  assert checkpoint_steps(store) == checkpoint_steps(ref_store)
  with np.load(ref_npz, allow_pickle=False) as expected, np.load(npz_path, allow_pickle=False) as actual:
    assert sorted(actual.files) == sorted(expected.files)
    assert_same_bits({k: expected[k] for k in expected.files}, {k: actual[k] for k in actual.files},
                     f"{DYN_RUN}.npz")
  with open(ref_json) as f:
    expected_record = json.load(f)
  with open(json_path) as f:
    record = json.load(f)
  assert record["status"] == "finished"
  for field in DYN_TIMING_FIELDS:
    assert record.pop(field) > 0 and expected_record.pop(field) > 0, field
  assert record == expected_record
  for step in checkpoint_steps(ref_store):
    assert_same_bits(saved_arrays(ref_store, step), saved_arrays(store, step), f"dynamics checkpoint step {step}")


# ------------------------------------------------------------------------------------------------
# codec

# The smoke codec with longer stages: SAE 400 steps, Squeezer 200, a checkpoint every 40, chunks of 20.
CODEC_ARGS = ("launch.codec", "--config=configs/codec.py:smoke", "--config.sae_loop.steps=400",
              "--config.sae_loop.checkpoint_every=40", "--config.squeezer_loop.steps=200",
              "--config.squeezer_loop.checkpoint_every=40")
CODEC_OUTPUTS = ("metrics/sae.json", "metrics/squeezer.json", "metrics/sae_history.csv",
                 "metrics/squeezer_history.csv")


def test_codec_killed_in_each_stage_resumes_to_the_uninterrupted_result(tmp_path):
  reference = Launch(CODEC_ARGS, str(tmp_path / "reference"), str(tmp_path / "logs"), "reference")
  workdir = str(tmp_path / "killed")
  sae_dir, squeezer_dir = (os.path.join(workdir, "checkpoints", stage) for stage in ("sae", "squeezer"))
  first = Launch(CODEC_ARGS, workdir, str(tmp_path / "logs"), "first")
  first.signal_when(at_least(sae_dir, 3), "3 SAE checkpoints", signal.SIGKILL)
  assert first.wait() == -signal.SIGKILL
  assert not checkpoint_steps(squeezer_dir), "the Squeezer started before the SAE finished"
  second = Launch(CODEC_ARGS, workdir, str(tmp_path / "logs"), "second")
  second.signal_when(at_least(squeezer_dir, 2), "2 Squeezer checkpoints", signal.SIGKILL)
  assert second.wait() == -signal.SIGKILL
  assert second.resumed_from()[0] == "sae"
  third = Launch(CODEC_ARGS, workdir, str(tmp_path / "logs"), "third").finish()
  stage, step = RESUMED.findall(third.stderr)[-1]
  assert stage == "squeezer" and 0 < int(step) < 200, third.describe()
  reference.finish()
  for name in ("sae", "squeezer"):
    ref_store = os.path.join(reference.workdir, "checkpoints", name)
    store = os.path.join(workdir, "checkpoints", name)
    assert checkpoint_steps(store) == checkpoint_steps(ref_store)
    for ckpt_step in checkpoint_steps(ref_store):
      assert_same_bits(saved_arrays(ref_store, ckpt_step), saved_arrays(store, ckpt_step),
                       f"codec {name} step {ckpt_step}")
  for output in CODEC_OUTPUTS:
    assert read_bytes(os.path.join(workdir, output)) == read_bytes(os.path.join(reference.workdir, output)), output
