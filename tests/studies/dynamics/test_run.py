"""The dynamics launch's shard: from the flag, else from a SLURM array task's place in its array."""

import pytest

from mpcodec.studies.dynamics import run


@pytest.mark.parametrize("environ,expected", [
    ({}, "1/1"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, "3/4"),                 # --array=1-4
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, "1/4"),
    ({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10"}, "3/3"),
    ({"SLURM_NTASKS": "8"}, "1/1"),                                                       # not an array job
])
def test_shard_from_slurm_array_variables(environ, expected):
  assert run.shard_from_environment(None, environ) == expected


def test_the_flag_wins_over_the_environment():
  assert run.shard_from_environment("2/5", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}) == "2/5"
