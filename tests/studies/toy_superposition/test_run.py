"""The toy-superposition run holds its workdir: a second process is refused naming the holder."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mpcodec.core import workdir as workdir_lib
from mpcodec.core.configuration import parse
from mpcodec.core.errors import WorkdirError
from mpcodec.studies.toy_superposition import run as toy_run
from mpcodec.studies.toy_superposition.config import ToySuperpositionConfig
from tests import support
from tests.launch.test_faults import assert_error, in_use_message, launch, read_lock, write_lock

TOY = ("launch.toy_superposition", "--config=configs/toy_superposition.py:smoke")


def test_run_experiment_refuses_a_workdir_another_live_process_holds(tmp_path):
  workdir = str(tmp_path / "run")
  holder = write_lock(workdir, os.getppid(), command="python -m launch.toy_superposition (a test's lock)")
  cfg = parse(ToySuperpositionConfig, dict(num_seeds=1))
  with pytest.raises(WorkdirError) as e:
    toy_run.run_experiment(cfg, workdir)
  assert str(e.value) == in_use_message(workdir, holder)
  assert read_lock(workdir) == holder
  assert not os.path.exists(os.path.join(workdir, "metrics"))  # Refused before anything trained.


@pytest.mark.slow
def test_second_launch_with_another_config_is_refused_while_the_first_runs(tmp_path):
  workdir = str(tmp_path / "run")
  lock_path = os.path.join(workdir, workdir_lib.LOCK_NAME)
  with open(tmp_path / "first.log", "w", encoding="utf-8") as log:
    # Long enough to still be training when the second launch starts.
    first = subprocess.Popen([sys.executable, "-m", *TOY, f"--workdir={workdir}",
                              "--config.privileged_basis.train.num_steps=6000000"],
                             cwd=str(support.REPO_ROOT), stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 60
    while not os.path.exists(lock_path) and first.poll() is None and time.monotonic() < deadline:
      time.sleep(0.2)
    assert first.poll() is None and os.path.exists(lock_path), (tmp_path / "first.log").read_text()[-3000:]
    time.sleep(0.3)  # The lock file is written right after it is created.
    holder = read_lock(workdir)
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
    second = launch(*TOY, f"--workdir={workdir}", "--config.num_seeds=2")
    assert_error(second, "error: " + in_use_message(workdir, holder))
    assert read_lock(workdir) == holder
    assert first.poll() is None  # The holder trains on.
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
