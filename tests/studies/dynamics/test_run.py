"""The dynamics launch: the shard (from the flag, else from a SLURM array task's place in its array), run
records that do not parse, and shards of different configs on one workdir."""

import logging
import os
import re

import numpy as np
import pytest

from mpcodec.core import configuration
from mpcodec.core.errors import ConfigError, DataError, SweepError
from mpcodec.studies.dynamics import results, run, sweep as dynamics_sweep, sweep_series


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
