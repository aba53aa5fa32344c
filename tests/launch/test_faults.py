"""Faults a user meets, through the launch commands: each ends with one `error:` line, never a wrong exit 0.

Covered: a workdir held by another run (and stale locks), bad --config flags, a full disk, an unwritable
workdir, a dynamics batch larger than its data, incomplete or diverged runs, analysis settings that must
not retrain, and dynamics plots lost after a run finished. Every launch runs as a subprocess on a smoke
config with a timeout; a failure prints the tail of its stderr.
"""

import csv
import errno
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from mpcodec.core import workdir as workdir_lib
from mpcodec.core.errors import WorkdirError
from tests import support

REPO_ROOT = str(support.REPO_ROOT)
MONO_POLY = ("launch.mono_poly", "--config=configs/mono_poly.py:smoke")
DYNAMICS = ("launch.dynamics", "--config=configs/dynamics.py:smoke")
# Long enough that a launch which trained before failing would run past its timeout.
LONG_MONO_POLY = ("--config.phase1.steps=4000", "--config.phase2.steps=4000")
NOT_TRAINED = "training already finished: every checkpoint is in place"


def launch(*args, timeout=90, env=None):
  """Runs `python -m <args>` in the repository (with `env` added to the environment); the CompletedProcess
  gets `.seconds` (wall time)."""
  start = time.monotonic()
  out = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})})
  out.seconds = time.monotonic() - start
  return out


def tail(out) -> str:
  return f"\n--- rc {out.returncode}; stdout tail:\n{out.stdout[-1500:]}\n--- stderr tail:\n{out.stderr[-3000:]}"


def assert_ok(out):
  assert out.returncode == 0, tail(out)
  assert "Traceback" not in out.stderr, tail(out)


def assert_error(out, expected, returncode=1):
  """Exit `returncode`, no traceback, and exactly one `error:` line, equal to `expected` (a str) or
  matching it in full (a compiled regex)."""
  assert out.returncode == returncode, tail(out)
  assert "Traceback" not in out.stderr, tail(out)
  lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, tail(out)
  if isinstance(expected, str):
    assert lines[0] == expected, tail(out)
  else:
    assert expected.fullmatch(lines[0]), f"{lines[0]!r} does not match {expected.pattern!r}" + tail(out)


def dead_pid() -> int:
  """The pid of a process of this host that has ended (and been reaped)."""
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait(timeout=30)
  with pytest.raises(ProcessLookupError):
    os.kill(proc.pid, 0)
  return proc.pid


def write_lock(workdir, pid, host=None, command="python -m launch.mono_poly (a test's lock)"):
  os.makedirs(workdir, exist_ok=True)
  holder = {"host": host or socket.gethostname(), "pid": pid, "since": "2024-01-01 00:00:00",
            "command": command}
  with open(os.path.join(workdir, workdir_lib.LOCK_NAME), "w", encoding="utf-8") as f:
    json.dump(holder, f)
  return holder


def read_lock(workdir):
  with open(os.path.join(workdir, workdir_lib.LOCK_NAME), encoding="utf-8") as f:
    return json.load(f)


def in_use_message(workdir, holder) -> str:
  elsewhere = "" if holder["host"] == socket.gethostname() else (
      f" (on another host, so whether it still runs cannot be checked from here: if it has ended, remove "
      f"{os.path.join(workdir, workdir_lib.LOCK_NAME)} and run again)")
  return (f"workdir {workdir} is in use by pid {holder['pid']} on {holder['host']} since {holder['since']} "
          f"({holder['command']}); wait for it to end or use another --workdir{elsewhere}")


def mtimes(folder) -> dict:
  """{relative path: mtime_ns} of every file and folder under `folder`."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for name in dirs + files:
      path = os.path.join(root, name)
      out[os.path.relpath(path, folder)] = os.stat(path).st_mtime_ns
  return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished smoke mono->poly run (no analysis), started on a workdir holding a stale lock."""
  workdir = str(tmp_path_factory.mktemp("mono_poly") / "run")
  stale = write_lock(workdir, dead_pid())
  out = launch(*MONO_POLY, f"--workdir={workdir}", "--noanalyze")
  return workdir, stale, out


@pytest.fixture(scope="module")
def needs_dynamics_data():
  support.require_data("mnist", "ag_news")


# ------------------------------------------------------------------------------------------------
# 1. One process per workdir.


def test_locked_reentry_keeps_the_lock_until_the_outer_block_ends(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lib.locked(workdir):
    assert read_lock(workdir)["pid"] == os.getpid()
    with workdir_lib.locked(workdir):  # The same process again (e.g. a second run in one session).
      assert read_lock(workdir)["pid"] == os.getpid()
    # Still held: another process must not be able to take the workdir while the outer block runs.
    assert read_lock(workdir)["pid"] == os.getpid()
  assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_NAME))
  with workdir_lib.locked(workdir):  # Taken again after release.
    assert read_lock(workdir)["pid"] == os.getpid()


def test_locked_refuses_a_live_holder_and_leaves_its_lock(tmp_path):
  workdir = str(tmp_path / "run")
  for pid, host in ((os.getppid(), None),             # alive on this host
                    (1, "elsewhere.example")):         # another host: cannot tell, so held
    holder = write_lock(workdir, pid, host)
    with pytest.raises(WorkdirError) as e:
      with workdir_lib.locked(workdir):
        pytest.fail("entered a workdir another process holds")
    assert str(e.value) == in_use_message(workdir, holder)
    assert read_lock(workdir) == holder


def test_locked_takes_over_a_stale_or_garbage_lock(tmp_path):
  workdir = str(tmp_path / "run")
  write_lock(workdir, dead_pid())
  with workdir_lib.locked(workdir):
    assert read_lock(workdir)["pid"] == os.getpid()
  assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_NAME))
  # Garbage, or valid JSON of another shape: a corrupt lock, taken over (with a warning).
  for garbage in ("{not json", "[1, 2]", '{"pid": "abc"}', '{"pid": 12, "host": null}', "null", '"x"'):
    with open(os.path.join(workdir, workdir_lib.LOCK_NAME), "w", encoding="utf-8") as f:
      f.write(garbage)
    with workdir_lib.locked(workdir):
      assert read_lock(workdir)["pid"] == os.getpid(), garbage


def test_second_launch_on_a_running_workdir_is_refused_at_once(tmp_path):
  workdir = str(tmp_path / "run")
  lock_path = os.path.join(workdir, workdir_lib.LOCK_NAME)
  with open(tmp_path / "first.log", "w", encoding="utf-8") as log:
    first = subprocess.Popen([sys.executable, "-m", *MONO_POLY, f"--workdir={workdir}", *LONG_MONO_POLY,
                              "--noanalyze"], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 60
    while not os.path.exists(lock_path) and first.poll() is None and time.monotonic() < deadline:
      time.sleep(0.1)
    assert first.poll() is None and os.path.exists(lock_path), (tmp_path / "first.log").read_text()[-3000:]
    time.sleep(0.3)  # The lock file is written right after it is created.
    holder = read_lock(workdir)
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
    # Another config too: the lock is checked before the checkpoints' config.
    second = launch(*MONO_POLY, f"--workdir={workdir}", "--config.batch_size=16", "--noanalyze", timeout=60)
    assert first.poll() is None, "the second launch waited for the first to end"
    assert_error(second, "error: " + in_use_message(workdir, holder))
    assert read_lock(workdir) == holder  # The refused launch left the holder's lock alone.
  finally:
    first.kill()
    first.wait(timeout=30)
  # The killed run's lock is stale now: the next holder takes it over.
  assert read_lock(workdir)["pid"] == first.pid
  with workdir_lib.locked(workdir):
    assert read_lock(workdir)["pid"] == os.getpid()


def test_launch_takes_over_a_stale_lock(trained):
  workdir, _, out = trained
  assert_ok(out)
  assert re.search(r"^trained 180 steps x 4 seeds", out.stdout, re.M), tail(out)
  assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_NAME))  # Released at the end.


# ------------------------------------------------------------------------------------------------
# 2. Bad --config flags.


@pytest.mark.parametrize("flag, expected", [
    ("--config.bogus=1", "error: bad flag --config.bogus=1: the config has no key 'bogus'"),
    ("--config.phase1.bogus=1", "error: bad flag --config.phase1.bogus=1: the config has no key 'bogus'"),
    ("--config.batch_size=abc",
     "error: bad flag --config.batch_size=abc: invalid literal for int() with base 10: 'abc'"),
])
def test_bad_config_flag_is_one_line(tmp_path, flag, expected):
  workdir = tmp_path / "run"
  out = launch(*MONO_POLY, f"--workdir={workdir}", flag, timeout=60)
  assert_error(out, expected, returncode=2)
  assert out.stderr.strip().splitlines() == [expected], tail(out)  # Nothing else on stderr either.
  assert not workdir.exists()


@pytest.mark.parametrize("value, expected", [
    ("soon", "error: environment: MPCODEC_CHECKPOINT_INTERVAL_S='soon' is not a number of seconds"),
    ("0", "error: environment: MPCODEC_CHECKPOINT_INTERVAL_S: a minimum interval between checkpoints must be "
          "a number of seconds > 0, got 0.0 (leave it unset to save by step alone)"),
])
def test_a_bad_checkpoint_interval_is_one_line_before_any_work(tmp_path, value, expected):
  workdir = tmp_path / "run"
  out = launch(*MONO_POLY, f"--workdir={workdir}", timeout=60, env={"MPCODEC_CHECKPOINT_INTERVAL_S": value})
  assert_error(out, expected)
  assert not workdir.exists()


# ------------------------------------------------------------------------------------------------
# 3. A full disk.

FULL_DISK_MAIN = """
import errno, sys
from launch import common

def main(argv):
  del argv
  raise OSError(errno.ENOSPC, "No space left on device", sys.argv[1])

common.run(main)
"""

FULL_DISK_ANALYSIS = """
import errno, sys
from launch import analyze_mono_poly, common
from mpcodec.core import io

def full(path, payload):
  raise OSError(errno.ENOSPC, "No space left on device", str(path))

io.write_json = full
common.run(analyze_mono_poly.main)
"""


def test_full_disk_is_one_line(tmp_path):
  path = str(tmp_path / "report.json")
  out = subprocess.run([sys.executable, "-c", FULL_DISK_MAIN, path], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=60)
  assert_error(out, f"error: {path}: No space left on device")


def test_full_disk_during_analysis_is_one_line(trained):
  workdir, _, _ = trained
  out = subprocess.run([sys.executable, "-c", FULL_DISK_ANALYSIS, f"--workdir={workdir}"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=90)
  assert_error(out, f"error: {os.path.join(workdir, 'report.json')}: {os.strerror(errno.ENOSPC)}")


FULL_DISK_CHECKPOINT = """
import errno, sys
import orbax.checkpoint as ocp
from launch import common, mono_poly

kind = sys.argv.pop(1)
save = ocp.CheckpointManager.save
calls = []

def full(self, step, *args, **kwargs):
  calls.append(step)
  if len(calls) < 4:   # steps 0, 20 and 40 of phase 1 are saved; the disk is full from then on
    return save(self, step, *args, **kwargs)
  if kind == "orbax":   # what Orbax raises when TensorStore cannot write
    raise ValueError('RESOURCE_EXHAUSTED: Error writing local file "/x/ocdbt.process_0/d/1": [OS error 28]')
  raise OSError(errno.ENOSPC, "No space left on device", "/x/_CHECKPOINT_METADATA")

ocp.CheckpointManager.save = full
common.run(mono_poly.main, mono_poly.check)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["orbax", "os"])
def test_full_disk_while_checkpointing_is_one_line_naming_the_last_good_checkpoint(tmp_path, kind):
  workdir = str(tmp_path / "run")
  out = subprocess.run([sys.executable, "-c", FULL_DISK_CHECKPOINT, kind, *MONO_POLY[1:], f"--workdir={workdir}",
                        "--noanalyze"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  phase1 = os.path.join(workdir, "checkpoints", "phase1")
  assert_error(out, re.compile(
      rf"error: no space left on the device of {re.escape(phase1)} \(saving the checkpoint of step 60\); "
      rf"the last good checkpoint is step 40 in {re.escape(phase1)}; free some space \(or choose "
      r"another --workdir\) and run the same command again to resume"))
  assert len(out.stderr.splitlines()) < 40, tail(out)   # no pile of log lines from background threads
  assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK_NAME))


def test_full_disk_raised_by_orbax_elsewhere_is_one_line():
  script = FULL_DISK_MAIN.replace('raise OSError(errno.ENOSPC, "No space left on device", sys.argv[1])',
                                  'raise ValueError("RESOURCE_EXHAUSTED: Error writing local file " + sys.argv[1])')
  out = subprocess.run([sys.executable, "-c", script, "/x/f"], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=60)
  assert_error(out, "error: no space left on device (ValueError: RESOURCE_EXHAUSTED: Error writing local file "
                    "/x/f); free some space and run the same command again")


def test_a_failed_lock_release_does_not_hide_the_error_that_ended_the_run(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  remove = os.remove

  def read_only(path, *args, **kwargs):
    if os.path.basename(path) == workdir_lib.LOCK_NAME:
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
    return remove(path, *args, **kwargs)

  monkeypatch.setattr(os, "remove", read_only)
  with pytest.raises(RuntimeError, match="^the real failure$"):
    with workdir_lib.locked(workdir):
      raise RuntimeError("the real failure")
  with workdir_lib.locked(workdir + "_clean"):   # A clean end: the failed release is a warning, not an error.
    pass


# ------------------------------------------------------------------------------------------------
# 4. An unwritable workdir stops a launch before it trains.


def test_unwritable_workdir_stops_mono_poly_before_training(tmp_path):
  (tmp_path / "file").write_text("a regular file")
  workdir = str(tmp_path / "file" / "sub")
  out = launch(*MONO_POLY, f"--workdir={workdir}", *LONG_MONO_POLY, "--noanalyze", timeout=60)
  assert_error(out, f"error: workdir {workdir} is not writable (Not a directory); choose another --workdir")
  assert "trained" not in out.stdout, tail(out)


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_workdir_stops_dynamics_before_training(tmp_path, needs_dynamics_data, where):
  if where == "proc":
    workdir, reason = f"/proc/mpcodec_test_{os.getpid()}/sub", "No such file or directory"
  else:
    (tmp_path / "file").write_text("a regular file")
    workdir, reason = str(tmp_path / "file" / "sub"), "Not a directory"
  out = launch(*DYNAMICS, f"--workdir={workdir}", "--config.base.num_steps=100000", timeout=60)
  assert_error(out, f"error: workdir {workdir} is not writable ({reason}); choose another --workdir")
  assert "test accuracy" not in out.stderr, tail(out)


def test_check_writable_names_the_workdir(tmp_path):
  (tmp_path / "file").write_text("a regular file")
  for workdir in (str(tmp_path / "file" / "sub"), "/proc/version/sub"):
    with pytest.raises(WorkdirError, match=re.escape(f"workdir {workdir} is not writable")):
      workdir_lib.check_writable(workdir)
  workdir_lib.check_writable(str(tmp_path / "fine"))
  assert os.listdir(tmp_path / "fine") == []  # The probe file is removed.


# ------------------------------------------------------------------------------------------------
# 5. A dynamics batch larger than its data.


@pytest.mark.parametrize("batch_size, run, split", [
    (100000000, "mlp_128_64@mnist", "mnist (60000 examples)"),   # larger than every split: the first run
    (10000, "mlp_128_64@ag_news", "ag_news (6080 examples)"),    # fits MNIST, not AG News
])
def test_dynamics_batch_larger_than_data_is_refused(tmp_path, needs_dynamics_data, batch_size, run, split):
  workdir = tmp_path / "run"
  out = launch(*DYNAMICS, f"--workdir={workdir}", f"--config.mlp.batch_size={batch_size}", timeout=60)
  assert_error(out, f"error: config.mlp.batch_size: {batch_size} is larger than the training split of {split} "
                    f"for {run}")
  assert not (workdir / "dynamics" / "checkpoints").exists()  # Nothing started training.


# ------------------------------------------------------------------------------------------------
# 6. Incomplete or failed runs never exit 0.


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
  """A smoke mono->poly run whose phase 2 diverges at its first step."""
  workdir = str(tmp_path_factory.mktemp("diverged") / "run")
  out = launch(*MONO_POLY, f"--workdir={workdir}", "--config.phase2.optimizer.name=sgd",
               "--config.phase2.optimizer.learning_rate=1e30")
  return workdir, out


def test_diverging_phase_fails_the_launch(diverged):
  workdir, out = diverged
  assert_error(out, re.compile(
      r"error: mono->poly phase2: loss is (nan|inf|-inf) at step 1 for seed \d+ \(index \d+\); the last good "
      rf"checkpoint is phase2 step 0 in {re.escape(os.path.join(workdir, 'checkpoints', 'phase2'))}"))


def test_analysis_of_an_incomplete_run_fails_unless_allowed(diverged):
  workdir, _ = diverged
  refused = launch("launch.analyze_mono_poly", f"--workdir={workdir}")
  assert_error(refused, f"error: {workdir}: phase2 reached step 0 of 60; finish training (run the same "
                        f"launch.mono_poly command again) or pass --allow_incomplete to label the report "
                        f"incomplete")
  assert not os.path.exists(os.path.join(workdir, "report.json"))
  allowed = launch("launch.analyze_mono_poly", f"--workdir={workdir}", "--allow_incomplete")
  assert_ok(allowed)
  assert "INCOMPLETE: phase2 reached step: 0 of 60" in allowed.stdout.splitlines(), tail(allowed)
  with open(os.path.join(workdir, "report.json"), encoding="utf-8") as f:
    summary = json.load(f)["summary"]
  assert summary["INCOMPLETE: phase2 reached step"] == "0 of 60"
  assert "phase1 reached" not in " ".join(summary)  # Only the phase that stopped early is flagged.
  with open(os.path.join(workdir, "report.md"), encoding="utf-8") as f:
    assert "INCOMPLETE: phase2 reached step" in f.read()


def test_dynamics_sweep_of_diverged_runs_writes_its_table_and_fails(tmp_path, needs_dynamics_data):
  workdir = tmp_path / "run"
  out = launch(*DYNAMICS, f"--workdir={workdir}", "--config.mlp.learning_rate=1e30", "--config.plots=False")
  assert_error(out, "error: 2 of 2 runs did not finish (mlp_128_64@mnist, mlp_128_64@ag_news); the table and "
                    "every finished run are written; start the same command again to retry them")
  assert (workdir / "dynamics" / "accuracy_table.md").exists()
  with open(workdir / "dynamics" / "accuracy_table.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [(r["dataset"], r["status"]) for r in rows] == [("mnist", "diverged"), ("ag_news", "diverged")]
  assert not (workdir / "dynamics" / "plots").exists()


# ------------------------------------------------------------------------------------------------
# 7. Analysis settings never retrain or delete checkpoints.


def test_analysis_settings_reuse_the_checkpoints(trained):
  workdir, _, first = trained
  assert_ok(first)
  checkpoints = os.path.join(workdir, "checkpoints")
  before = mtimes(checkpoints)
  assert any(name.startswith("phase2") for name in before)
  again = launch(*MONO_POLY, f"--workdir={workdir}", "--config.analysis.poly_threshold=0.45")
  assert_ok(again)
  assert NOT_TRAINED in again.stdout.splitlines(), tail(again)
  with open(os.path.join(workdir, "report.json"), encoding="utf-8") as f:
    assert "0.45" in f.read()  # The new setting is the one analysed with (the report states its threshold).
  assert mtimes(checkpoints) == before
  overwrite = launch(*MONO_POLY, f"--workdir={workdir}", "--overwrite", "--config.analysis.poly_threshold=0.4",
                     "--noanalyze")
  assert_ok(overwrite)
  assert NOT_TRAINED in overwrite.stdout.splitlines(), tail(overwrite)
  assert "--overwrite: removing" not in overwrite.stderr, tail(overwrite)
  assert mtimes(checkpoints) == before


# ------------------------------------------------------------------------------------------------
# 8. Dynamics outputs lost after a run finished come back without retraining.


def test_dynamics_missing_plots_come_back_without_retraining(tmp_path, needs_dynamics_data):
  workdir = tmp_path / "run"
  args = (*DYNAMICS, f"--workdir={workdir}", "--dataset=mnist")
  first = launch(*args)
  assert_ok(first)
  folder = workdir / "dynamics"
  plots = sorted(p.name for p in (folder / "plots").iterdir())
  assert plots == ["mlp_128_64__mnist_curves.png", "mlp_128_64__mnist_dimensionality.png"]
  outputs = [folder / "mlp_128_64__mnist.npz", folder / "mlp_128_64__mnist.json"]
  stamps = [p.stat().st_mtime_ns for p in outputs]
  checkpoints = mtimes(folder / "checkpoints")
  for name in plots:
    (folder / "plots" / name).unlink()
  again = launch(*args)
  assert_ok(again)
  assert "mlp_128_64@mnist: already finished, skipped" in again.stderr, tail(again)
  assert sorted(p.name for p in (folder / "plots").iterdir()) == plots
  assert all((folder / "plots" / name).stat().st_size > 0 for name in plots)
  assert [p.stat().st_mtime_ns for p in outputs] == stamps
  assert mtimes(folder / "checkpoints") == checkpoints


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path):
  from launch import common  # pylint: disable=g-import-not-at-top
  from mpcodec.core.errors import DataError  # pylint: disable=g-import-not-at-top
  path = tmp_path / "data"
  path.write_text("a regular file")
  with pytest.raises(DataError, match=re.escape(f"data directory {path} (from --data_dir) is a file, not a "
                                                f"directory;")):
    common.data_dir(str(path))
  with pytest.raises(DataError, match=re.escape(f"data directory {tmp_path / 'none'} (from --data_dir) does not "
                                                f"exist;")):
    common.data_dir(str(tmp_path / "none"))


@pytest.mark.parametrize("environ, expected", [
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, "3/4"),                                # 1-4
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, "1/4"),   # 0-3
    *(({"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_STEP": "2"}, f"{task // 2 + 1}/4") for task in (0, 2, 4, 6)),                 # 0-6:2
    ({}, None),
])
def test_a_slurm_array_task_gets_its_place_among_the_array(environ, expected):
  from mpcodec.studies.dynamics.train import shards  # pylint: disable=g-import-not-at-top
  assert shards.slurm_array_shard(environ) == expected


def test_a_slurm_array_task_off_the_array_is_refused():
  from mpcodec.studies.dynamics.train import shards  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"SLURM array task 3 is not one of 4 tasks numbered from 0 in steps of 2"):
    shards.slurm_array_shard({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
                              "SLURM_ARRAY_TASK_STEP": "2"})
