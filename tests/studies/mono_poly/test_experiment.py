"""Tests of the mono->poly training engine: vmapped sweeps, resume, NaN stop, config validation."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mono_poly as mono_poly_config
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.configuration import ConfigError
from mpcodec.studies.mono_poly import experiment as mono_poly
from mpcodec.core.loop import NonFiniteLossError


def tiny_config(**overrides):
  """A mono->poly config of 8x8 images and a few steps: compiles and runs in seconds."""
  cfg = mono_poly_config.get_config("smoke")
  cfg.num_seeds = 4
  cfg.data.image_size = 8
  cfg.data.max_thickness = 3
  cfg.data.num_train = 64
  cfg.data.num_test = 32
  cfg.batch_size = 8
  cfg.model.hidden_widths = (4,)
  cfg.log_every = 5
  cfg.phase1.steps = 10
  cfg.phase1.checkpoint_every = 5
  cfg.phase2.steps = 10
  cfg.phase2.checkpoint_every = 5
  for key, value in overrides.items():
    section = cfg
    *path, last = key.split(".")
    for part in path:
      section = section[part]
    section[last] = value
  return cfg


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("shared_order", [True, False])
def test_vmapped_seeds_equal_single_runs(shared_order):
  cfg = mono_poly.parse_config(tiny_config(shared_data_order=shared_order))
  train = mono_poly.make_train(cfg)
  keys = jax.vmap(mono_poly.seed_key)(jnp.arange(4))
  state, history = jax.jit(jax.vmap(train))(keys)
  single = jax.jit(train)
  for i in range(4):
    state_i, history_i = single(keys[i])
    for stacked, one in zip(leaves(state["params"]), leaves(state_i["params"])):
      np.testing.assert_allclose(stacked[i], one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(history["phase2"])[i], np.asarray(history_i["phase2"]), rtol=1e-5,
                               atol=1e-6)
  # Different seeds must train differently: the sweep is not four copies of one run.
  first = leaves(state["params"])[0]
  assert not np.allclose(first[0], first[1])


def test_data_order_switch_changes_minibatches():
  shared = mono_poly.parse_config(tiny_config(shared_data_order=True))
  per_seed = mono_poly.parse_config(tiny_config(shared_data_order=False))
  key_a, key_b = mono_poly.seed_key(0), mono_poly.seed_key(1)
  assert np.array_equal(mono_poly.order_key(shared, "phase1", key_a), mono_poly.order_key(shared, "phase1", key_b))
  assert not np.array_equal(mono_poly.order_key(per_seed, "phase1", key_a),
                            mono_poly.order_key(per_seed, "phase1", key_b))


def test_host_loop_matches_pure_function_and_resume_is_identical(tmp_path):
  cfg = mono_poly.parse_config(tiny_config())
  # Uninterrupted run.
  full = mono_poly.run_experiment(cfg, str(tmp_path / "full"))
  # Interrupted after phase 1: train phase 1 only (phase 2 cut to nothing by deleting its checkpoints),
  # then run the same command again, which must resume at the end of phase 1.
  resumed_dir = str(tmp_path / "resumed")
  mono_poly.run_experiment(cfg, resumed_dir)
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(os.path.join(resumed_dir, "checkpoints", "phase2"))
  store1 = CheckpointStore(os.path.join(resumed_dir, "checkpoints", "phase1"))
  assert store1.latest_step() == cfg.phase1.steps
  resumed = mono_poly.run_experiment(cfg, resumed_dir)
  for a, b in zip(leaves(full["params"]), leaves(resumed["params"])):
    np.testing.assert_array_equal(a, b)
  # Mid-phase resume: drop every checkpoint after phase-1 step 5 and run again.
  mid_dir = str(tmp_path / "mid")
  mono_poly.run_experiment(cfg, mid_dir)
  shutil.rmtree(os.path.join(mid_dir, "checkpoints", "phase2"))
  for step in (10,):
    shutil.rmtree(os.path.join(mid_dir, "checkpoints", "phase1", str(step)))
  assert CheckpointStore(os.path.join(mid_dir, "checkpoints", "phase1")).latest_step() == 5
  mid = mono_poly.run_experiment(cfg, mid_dir)
  for a, b in zip(leaves(full["params"]), leaves(mid["params"])):
    np.testing.assert_array_equal(a, b)
  # The chunked host loop computes the same parameters as the pure whole-run function.
  pure_state, _ = jax.jit(jax.vmap(mono_poly.make_train(cfg)))(jax.vmap(mono_poly.seed_key)(jnp.arange(4)))
  for a, b in zip(leaves(full["params"]), leaves(pure_state["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoint_steps_and_metadata(tmp_path):
  cfg = mono_poly.parse_config(tiny_config())
  mono_poly.run_experiment(cfg, str(tmp_path))
  store1 = CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase1"))
  store2 = CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2"))
  assert store1.all_steps() == [0, 5, 10]
  assert store2.all_steps() == [0, 5, 10]
  meta = store2.restore_metadata(10)
  assert meta["seeds"] == [0, 1, 2, 3]
  assert meta["config"]["phase2"]["task"] == "xor"
  assert mono_poly.parse_config(meta["config"]) == cfg


def test_non_finite_loss_names_step_and_seed_and_keeps_checkpoint(tmp_path):
  cfg = mono_poly.parse_config(tiny_config(**{
      "phase2.optimizer.name": "sgd", "phase2.optimizer.learning_rate": 1e30}))
  with pytest.raises(NonFiniteLossError, match=r"phase2: loss is .* at step \d+ for seed \d") as err:
    mono_poly.run_experiment(cfg, str(tmp_path))
  assert "last good checkpoint is phase2 step" in str(err.value)
  store2 = CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2"))
  assert store2.all_steps() and store2.latest_step() < cfg.phase2.steps
  state = store2.restore(store2.latest_step(), mono_poly.abstract_state(cfg, "phase2"))
  assert all(np.isfinite(x).all() for x in leaves(state["params"]))


def test_workdir_with_other_config_is_refused_unless_overwrite(tmp_path):
  cfg = mono_poly.parse_config(tiny_config())
  mono_poly.run_experiment(cfg, str(tmp_path))
  other = mono_poly.parse_config(tiny_config(batch_size=4))
  with pytest.raises(mono_poly.WorkdirError, match=r"config\.batch_size.*--overwrite"):
    mono_poly.run_experiment(other, str(tmp_path))
  state = mono_poly.run_experiment(other, str(tmp_path), overwrite=True)
  assert CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2")).restore_metadata(10)["config"][
      "batch_size"] == 4
  assert all(np.isfinite(x).all() for x in leaves(state["params"]))


@pytest.mark.parametrize("key,value,message", [
    ("phase1.optimizer.learning_rate", -0.1, r"config\.phase1\.optimizer\.learning_rate: must be > 0"),
    ("batch_size", 100000, r"config\.batch_size: 100000 is larger than the training set"),
    ("model.hidden_widths", (0,), r"config\.model\.hidden_widths\[0\]: width must be >= 1"),
    ("phase2.steps", 0, r"config\.phase2\.steps: a phase needs at least 1 step"),
    ("phase1.task", "parity", r"config\.phase1\.task: 'parity' is not one of"),
])
def test_bad_config_values_name_the_key(key, value, message):
  cfg = tiny_config()
  section = cfg
  *path, last = key.split(".")
  for part in path:
    section = section[part]
  section[last] = value
  with pytest.raises(ConfigError, match=message):
    mono_poly.parse_config(cfg)


@pytest.mark.parametrize("key,value,message", [
    ("batch_size", "32", r"config\.batch_size: expected int"),
    ("shared_data_order", 1, r"config\.shared_data_order: expected bool"),
    ("learning_rate", 0.1, r"config\.learning_rate: unknown key"),
])
def test_wrong_types_in_a_config_file_name_the_key(key, value, message):
  cfg = tiny_config().to_dict()
  cfg[key] = value
  with pytest.raises(ConfigError, match=message):
    mono_poly.parse_config(cfg)


def test_unknown_and_missing_keys_are_named():
  cfg = tiny_config().to_dict()
  cfg["phase1"]["lr"] = 0.1
  with pytest.raises(ConfigError, match=r"config\.phase1\.lr: unknown key"):
    mono_poly.parse_config(cfg)
  cfg = tiny_config().to_dict()
  cfg["model"] = 3
  with pytest.raises(ConfigError, match=r"config\.model: expected a section"):
    mono_poly.parse_config(cfg)
