"""The seed axis sharded over 8 fake CPU devices: same training, checkpoints that load on 1 device."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np

from mpcodec.core import sharding
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.studies.mono_poly import experiment as mono_poly
from tests.studies.mono_poly.test_experiment import tiny_config
from tests import support

REPO_ROOT = str(support.REPO_ROOT)

EIGHT_DEVICE_RUN = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    from mpcodec.core import sharding
    from mpcodec.studies.mono_poly import experiment as mono_poly
    from tests.studies.mono_poly.test_experiment import tiny_config
    cfg = mono_poly.parse_config(tiny_config(num_seeds=8))
    mesh = sharding.seed_mesh(cfg.num_seeds)
    state = mono_poly.run_experiment(cfg, sys.argv[1])
    leaf = jax.tree.leaves(state["params"])[0]
    print(json.dumps({"devices": jax.device_count(), "mesh": mesh.devices.size,
                      "leaf_devices": len(leaf.sharding.device_set),
                      "spec": list(leaf.sharding.spec)}))
""")


def test_seed_mesh_divides_seed_count():
  assert sharding.seed_mesh(8) is None  # this process has a single CPU device
  np.testing.assert_array_equal(sharding.put_seed_axis({"a": np.arange(3)}, None)["a"], np.arange(3))


def test_eight_device_checkpoint_restores_on_one_device(tmp_path):
  workdir = str(tmp_path / "eight")
  env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, "-c", EIGHT_DEVICE_RUN, workdir], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  info = json.loads(out.stdout.strip().splitlines()[-1])
  assert info == {"devices": 8, "mesh": 8, "leaf_devices": 8, "spec": ["seed"]}

  assert jax.device_count() == 1
  cfg = mono_poly.parse_config(tiny_config(num_seeds=8))
  store = CheckpointStore(os.path.join(workdir, "checkpoints", "phase2"))
  restored = mono_poly.restore_state(cfg, store, store.latest_step(), "phase2")
  # The same config trained here on one device gives the same parameters as on 8 devices.
  local = mono_poly.run_experiment(cfg, str(tmp_path / "one"))
  for a, b in zip(jax.tree.leaves(restored["params"]), jax.tree.leaves(local["params"])):
    assert len(a.sharding.device_set) == 1
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


TWO_DEVICE_DYNAMICS = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    from configs import dynamics as dynamics_config
    from mpcodec.core import configuration
    from mpcodec.studies.dynamics.train import sweep as dynamics_sweep
    cfg = dynamics_config.get_config("smoke,arch=mlp_128_64,dataset=mnist")
    cfg.plots = False
    sweep = configuration.parse(dynamics_sweep.SweepConfig, cfg)
    records = dynamics_sweep.run_sweep(sweep, sys.argv[1], sys.argv[2])
    print(json.dumps({"devices": jax.device_count(),
                      "accuracy": records["mlp_128_64@mnist"]["final_test_accuracy"]}))
""")


def test_dynamics_sweep_shards_seeds_over_two_devices(tmp_path):
  """A dynamics run with its seed axis over 2 devices matches the same run on one device."""
  from configs import dynamics as dynamics_config  # pylint: disable=g-import-not-at-top
  from mpcodec.core import configuration  # pylint: disable=g-import-not-at-top
  from mpcodec.studies.dynamics.train import sweep as dynamics_sweep  # pylint: disable=g-import-not-at-top
  from mpcodec.studies.dynamics import series as dynamics_results  # pylint: disable=g-import-not-at-top
  data_dir = str(support.require_data("mnist"))
  env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, "-c", TWO_DEVICE_DYNAMICS, str(tmp_path / "two"), data_dir],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  info = json.loads(out.stdout.strip().splitlines()[-1])
  assert info["devices"] == 2
  cfg = dynamics_config.get_config("smoke,arch=mlp_128_64,dataset=mnist")
  cfg.plots = False
  sweep = configuration.parse(dynamics_sweep.SweepConfig, cfg)
  local = dynamics_sweep.run_sweep(sweep, str(tmp_path / "one"), data_dir)["mlp_128_64@mnist"]
  np.testing.assert_allclose(info["accuracy"], local["final_test_accuracy"], atol=0.011)
  two = dynamics_results.load_series(dynamics_results.result_paths(str(tmp_path / "two"), "mlp_128_64@mnist")[0])
  one = dynamics_results.load_series(dynamics_results.result_paths(str(tmp_path / "one"), "mlp_128_64@mnist")[0])
  np.testing.assert_allclose(two["participation_ratio"], one["participation_ratio"], rtol=1e-3)
