"""Faults of the dynamics grid, through the launch: one bad run never stops the others, and shards of
different configs never share a workdir.

Every launch runs as a subprocess on the smoke grid (mlp_128_64 on MNIST and AG News) with a timeout;
the tests share one workdir where shard 2/2 has trained, to keep their time small.
"""

import csv
import json
import os
import re

import pytest

from tests import support
from tests.launch.test_faults import DYNAMICS, assert_error, launch, tail

@pytest.fixture(scope="module")
def needs_dynamics_data():
  support.require_data("mnist", "ag_news")


def table(workdir) -> dict[str, dict]:
  with open(workdir / "dynamics" / "accuracy_table.csv", encoding="utf-8") as f:
    return {f"{r['arch']}@{r['dataset']}": r for r in csv.DictReader(f)}


def corrupt_latest_checkpoint(checkpoint_dir) -> int:
  """Overwrites the middle of every array file of the run's latest checkpoint; returns its step."""
  phase = os.path.join(checkpoint_dir, "train")
  step = max(int(name) for name in os.listdir(phase) if name.isdigit())
  corrupted = 0
  for root, _, files in os.walk(os.path.join(phase, str(step), "state")):
    for name in files:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      if os.path.basename(root) == "d" and size > 64:
        with open(path, "r+b") as f:
          f.seek(size // 2)
          f.write(bytes(16))
        corrupted += 1
  assert corrupted, f"no array file found under {phase}/{step}"
  return step


@pytest.fixture(scope="module")
def second_shard(tmp_path_factory, needs_dynamics_data):
  """A workdir where shard 2/2 of the smoke grid (AG News) has finished; MNIST (shard 1/2) is not run."""
  workdir = tmp_path_factory.mktemp("grid") / "run"
  out = launch(*DYNAMICS, f"--workdir={workdir}", "--config.plots=False", "--shard=2/2", timeout=300)
  assert out.returncode == 0, tail(out)
  assert (workdir / "dynamics" / "mlp_128_64__ag_news.json").exists()
  return workdir


@pytest.mark.slow
def test_a_shard_of_another_config_is_refused(second_shard):
  workdir = second_shard
  other = launch(*DYNAMICS, f"--workdir={workdir}", "--config.plots=False", "--shard=1/2",
                 "--config.base.num_steps=30", "--config.base.measure_every=5", timeout=120)
  assert_error(other, re.compile(r"error: another shard of this workdir trains with a different config: "
                                 r"base\.num_steps \(20 there, 30 here\); .*"))
  assert not (workdir / "dynamics" / "mlp_128_64__mnist.json").exists()


@pytest.mark.slow
def test_a_corrupt_run_is_reported_and_the_others_train(second_shard):
  workdir = second_shard
  folder = workdir / "dynamics"
  # AG News loses its record (so it is to train again, from its checkpoints), which are corrupt.
  os.remove(folder / "mlp_128_64__ag_news.json")
  corrupt_latest_checkpoint(folder / "checkpoints" / "mlp_128_64__ag_news")
  again = launch(*DYNAMICS, f"--workdir={workdir}", "--config.plots=False", timeout=300)
  # Not assert_error: Orbax's failed restore prints "Event loop is closed" tracebacks of its own threads
  # (outside mpcodec) before the error is raised; the launch's own lines are checked here.
  assert again.returncode == 1, tail(again)
  errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: 1 of 2 runs did not finish (mlp_128_64@ag_news); the table and every finished run "
                    "are written; start the same command again to retry them"], tail(again)
  reported = [line for line in again.stderr.splitlines() if "mlp_128_64@ag_news: not trained" in line]
  assert len(reported) == 1 and "checkpoint" in reported[0], tail(again)
  # MNIST trained and the table marks the bad run.
  with open(folder / "mlp_128_64__mnist.json", encoding="utf-8") as f:
    assert json.load(f)["status"] == "finished"
  rows = table(workdir)
  assert rows["mlp_128_64@ag_news"]["status"] == "failed" and "checkpoint" in rows["mlp_128_64@ag_news"]["note"]
  assert rows["mlp_128_64@mnist"]["status"] != "not run"
  assert not (folder / "mlp_128_64__ag_news.json").exists()
