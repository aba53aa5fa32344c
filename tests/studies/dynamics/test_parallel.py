"""The grid's configurations side by side on 8 fake CPU devices equal the same configurations trained in turn."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpcodec.studies.dynamics import series
from mpcodec.studies.dynamics.train import parallel
from tests import support

ROOT = Path(__file__).resolve().parents[3]
RUNS = ("mlp_128_64@mnist", "mlp_32x4@mnist", "mlp_24x15@mnist")

# Trains RUNS with the smoke settings, side by side (spread_runs) or in turn, and prints the device ids
# each run was placed on.
_SCRIPT = """
import json, sys
from configs import dynamics as dynamics_config
from mpcodec.core import configuration
from mpcodec.studies.dynamics.config import SweepConfig
from mpcodec.studies.dynamics.train import sweep
placed = {}
train_run = sweep._train_run
def recording(cfg, dataset, workdir, run, mesh, *args):
  placed[run] = [] if mesh is None else [int(d.id) for d in mesh.devices.flat]
  return train_run(cfg, dataset, workdir, run, mesh, *args)
sweep._train_run = recording
raw = configuration.to_dict(configuration.parse(SweepConfig, dynamics_config.get_config("smoke")))
raw.update(runs=json.loads(sys.argv[3]), plots=False, spread_runs=sys.argv[4] == "spread")
records = sweep.run_sweep(configuration.parse(SweepConfig, raw), sys.argv[1], sys.argv[2])
print(json.dumps({"placed": placed, "status": {r: v["status"] for r, v in records.items()}}))
"""


def _train(workdir, data_dir, mode, devices):
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  out = subprocess.run([sys.executable, "-c", _SCRIPT, str(workdir), data_dir, json.dumps(RUNS), mode],
                       capture_output=True, text=True, timeout=900, env=env, check=False, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_configurations_side_by_side_on_8_devices_equal_them_in_turn(tmp_path):
  data_dir = str(support.require_data("mnist"))
  spread = _train(tmp_path / "spread", data_dir, "spread", 8)
  in_turn = _train(tmp_path / "in_turn", data_dir, "in_turn", 1)
  assert spread["status"] == in_turn["status"] == {run: "finished" for run in RUNS}
  # One configuration per device, all its seeds there; in turn, one device and no mesh.
  assert all(len(ids) == 1 for ids in spread["placed"].values()), spread["placed"]
  assert len({ids[0] for ids in spread["placed"].values()}) == len(RUNS), spread["placed"]
  assert all(ids == [] for ids in in_turn["placed"].values())
  for run in RUNS:
    a = series.load_series(series.result_paths(str(tmp_path / "spread"), run)[0])
    b = series.load_series(series.result_paths(str(tmp_path / "in_turn"), run)[0])
    assert sorted(a) == sorted(b)
    for name in a:
      np.testing.assert_array_equal(a[name], b[name], err_msg=f"{run} {name}")


def test_side_by_side_yields_every_run_and_reraises_a_worker_error_after_the_rest():
  """The scheduler alone (no training): every run once, on the given meshes; an error from one run is
  raised after the runs in flight are yielded."""
  meshes = ["m0", "m1", "m2"]
  seen = dict(parallel.train_side_by_side([f"r{i}" for i in range(7)],
                                          lambda run, mesh, cache: (mesh, run), meshes))
  assert sorted(seen) == [f"r{i}" for i in range(7)]
  assert {mesh for mesh, _ in seen.values()} <= set(meshes)

  def failing(run, mesh, cache):
    if run == "r0":
      raise ValueError("boom r0")
    return run

  yielded = []
  with pytest.raises(ValueError, match="boom r0"):
    for run, _ in parallel.train_side_by_side(["r0", "r1"], failing, ["m0", "m1"]):
      yielded.append(run)
  assert yielded in ([], ["r1"])
