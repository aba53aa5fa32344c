"""The dynamics launch: the shard (from the flag, else from a SLURM array task's place in its array), run
records that do not parse, and shards of different configs on one workdir."""

import logging
import os
import re

import numpy as np
import pytest

from mpcodec.core import configuration
from mpcodec.core.errors import ConfigError, DataError, SweepError
from mpcodec.studies.dynamics import series as results
from mpcodec.studies.dynamics import run
from mpcodec.studies.dynamics.train import sweep as dynamics_sweep
from mpcodec.studies.dynamics import series as sweep_series


@pytest.mark.parametrize("environ,expected", [
    ({}, "1/1"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, "3/4"),                 # --array=1-4
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, "1/4"),
    ({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10"}, "3/3"),
    ({"SLURM_NTASKS": "8"}, "1/1"),                                                       # not an array job
    ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
      "SLURM_ARRAY_TASK_STEP": "2"}, "4/4"),                                              # --array=0-6:2
])
def test_shard_from_slurm_array_variables(environ, expected):
  assert run.shard_from_environment(None, environ) == expected


def test_a_task_outside_a_stepped_array_is_refused_naming_the_flag():
  with pytest.raises(ConfigError, match="pass --shard=I/N"):
    run.shard_from_environment(None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4",
                                      "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"})


def test_the_flag_wins_over_the_environment():
  assert run.shard_from_environment("2/5", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}) == "2/5"


def _truncated_record(workdir, run="mlp_128_64@mnist"):
  """A finished run whose JSON record was cut off mid-write (the npz is there)."""
  npz_path, json_path = results.result_paths(str(workdir), run)
  os.makedirs(os.path.dirname(npz_path), exist_ok=True)
  with open(npz_path, "wb") as f:
    np.savez(f, steps=np.arange(3))
  with open(json_path, "w", encoding="utf-8") as f:
    f.write('{\n  "arch": "mlp_128_64",\n  "status": "fini')
  return json_path


def test_a_record_that_does_not_parse_is_recomputed_naming_it(tmp_path, caplog):
  json_path = _truncated_record(tmp_path)
  cfg = dynamics_sweep.run_config(configuration.parse(dynamics_sweep.SweepConfig, {}), "mlp_128_64@mnist")
  with caplog.at_level(logging.WARNING):
    assert results.finished_record(str(tmp_path), "mlp_128_64@mnist", cfg) is None   # trained again
  lines = [r.getMessage() for r in caplog.records if json_path in r.getMessage()]
  assert lines == [f"mlp_128_64@mnist: {json_path} does not parse (truncated or corrupt); recomputing it from "
                   "the run's checkpoints"]


def test_the_analysis_names_a_record_that_does_not_parse(tmp_path):
  json_path = _truncated_record(tmp_path)
  with pytest.raises(DataError, match=re.escape(json_path) + r": not a readable run record .*recompute it"):
    sweep_series.load_sweep(str(tmp_path))


def test_shards_of_another_config_are_refused_naming_the_keys(tmp_path):
  grid = configuration.to_dict(configuration.parse(dynamics_sweep.SweepConfig, {}))
  results.check_grid_config(str(tmp_path), grid)
  # Keys that change only how runs execute may differ; the runs of a shard differ by design.
  same = {**grid, "plots": False, "runs": ["cnn_32_64@mnist"],
          "base": {**grid["base"], "checkpoint_every": 7}, "cnn": {**grid["cnn"], "measurements_per_chunk": 3}}
  results.check_grid_config(str(tmp_path), same)
  other = {**grid, "base": {**grid["base"], "num_steps": grid["base"]["num_steps"] + 10},
           "mlp": {**grid["mlp"], "learning_rate": 0.5}}
  with pytest.raises(SweepError, match=r"another shard of this workdir trains with a different config: "
                                       r"base\.num_steps \(\d+ there, \d+ here\), mlp\.learning_rate "):
    results.check_grid_config(str(tmp_path), other)
  results.check_grid_config(str(tmp_path), other, overwrite=True)   # --overwrite records the new one
  results.check_grid_config(str(tmp_path), other)


def test_overwrite_removes_a_runs_derived_files_before_its_checkpoints(tmp_path, monkeypatch):
  """--overwrite with another config removes the run's series, record, plots and the grid's accuracy table
  before its checkpoints, so a crash right after never leaves the old results beside new checkpoints; the
  list of derived files covers every file the run wrote outside its checkpoints."""
  from mpcodec.core import resume  # pylint: disable=g-import-not-at-top
  from mpcodec.studies.dynamics.report import training as report_training  # pylint: disable=g-import-not-at-top
  from tests import support  # pylint: disable=g-import-not-at-top
  from tests.studies.dynamics.test_program import _toy_config  # pylint: disable=g-import-not-at-top
  workdir, run_name, dataset = str(tmp_path), "mlp_32x4@mnist", support.toy_images()
  sweep = configuration.parse(dynamics_sweep.SweepConfig, {})
  result, failure = dynamics_sweep._train_run(_toy_config(), dataset, workdir, run_name, None, None, {}, False)
  dynamics_sweep._write_run(sweep, workdir, run_name, _toy_config(), dataset, result, failure)
  report_training.write_accuracy_table(workdir, {}, sweep)
  derived = report_training.derived_outputs(workdir, run_name)
  checkpoints = results.checkpoint_dir(workdir, run_name)
  written = {os.path.join(root, name) for root, _, names in os.walk(os.path.join(workdir, "dynamics"))
             for name in names if not root.startswith(checkpoints)}
  assert written and written <= set(derived), sorted(written - set(derived))

  original = resume.check_checkpoints

  def check_then_crash(*args, **kwargs):
    original(*args, **kwargs)
    raise RuntimeError("crash after the overwrite")
  monkeypatch.setattr(resume, "check_checkpoints", check_then_crash)
  with pytest.raises(RuntimeError, match="crash after the overwrite"):
    dynamics_sweep._train_run(_toy_config(num_steps=20), dataset, workdir, run_name, None, None, {}, True)
  assert [path for path in derived if os.path.exists(path)] == []
