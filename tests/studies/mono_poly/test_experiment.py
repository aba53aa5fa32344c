"""Tests of the mono->poly training engine: vmapped sweeps, resume, NaN stop, config validation."""

import os
import shutil

import jax
import numpy as np
import pytest

from configs import mono_poly as mono_poly_config
from mpcodec.core import configuration, loop
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import CheckpointError, ConfigError, NonFiniteError, WorkdirError
from mpcodec.studies.mono_poly import experiment as mono_poly


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
  return configuration.override(cfg, overrides)


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(leaves(a), leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("shared_order", [True, False])
def test_vmapped_seeds_equal_single_runs(shared_order):
  cfg = mono_poly.parse_config(tiny_config(shared_data_order=shared_order))
  train = mono_poly.make_train(cfg)
  keys = mono_poly.seed_keys(cfg)
  state, history = jax.jit(jax.vmap(train))(keys)
  single = jax.jit(train)
  for i in range(4):
    state_i, history_i = single(jax.tree.map(lambda k: k[i], keys))
    for stacked, one in zip(leaves(state["params"]), leaves(state_i["params"])):
      np.testing.assert_allclose(stacked[i], one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(history["phase2"]["loss"])[i], np.asarray(history_i["phase2"]["loss"]),
                               rtol=1e-5, atol=1e-6)
  # Different seeds must train differently: the sweep is not four copies of one run.
  first = leaves(state["params"])[0]
  assert not np.allclose(first[0], first[1])


def test_data_order_switch_changes_minibatches():
  shared = mono_poly.parse_config(tiny_config(shared_data_order=True))
  per_seed = mono_poly.parse_config(tiny_config(shared_data_order=False))
  keys = mono_poly.seed_keys(per_seed)
  key_a, key_b = (jax.tree.map(lambda k: k[i], keys) for i in (0, 1))
  assert np.array_equal(mono_poly.order_key(shared, "phase1", key_a), mono_poly.order_key(shared, "phase1", key_b))
  assert not np.array_equal(mono_poly.order_key(per_seed, "phase1", key_a),
                            mono_poly.order_key(per_seed, "phase1", key_b))
  # Phases draw different orders.
  assert not np.array_equal(mono_poly.order_key(per_seed, "phase1", key_a),
                            mono_poly.order_key(per_seed, "phase2", key_a))


def test_adding_seeds_keeps_existing_ones():
  few = mono_poly.parse_config(tiny_config(num_seeds=2))
  more = mono_poly.parse_config(tiny_config(num_seeds=4))
  for purpose, keys in mono_poly.seed_keys(few).items():
    np.testing.assert_array_equal(keys, mono_poly.seed_keys(more)[purpose][:2])


def pure_sweep(cfg):
  """The whole run as one pure, jitted call of the seed-stacked program (no chunks, no host)."""
  return jax.jit(loop.pure_sweep(mono_poly.make_program(cfg)))(mono_poly.seed_keys(cfg))


def test_chunked_checkpointed_resumed_run_equals_one_pure_call_bit_for_bit(tmp_path):
  cfg = mono_poly.parse_config(tiny_config())
  pure_state, pure_history = pure_sweep(cfg)
  full = mono_poly.train(cfg, str(tmp_path / "full"))
  assert_trees_equal(full.state, pure_state)
  assert_trees_equal(full.history, pure_history)
  # Interrupted after phase 1: its checkpoints stay, phase 2's are gone; the same call resumes there.
  resumed_dir = str(tmp_path / "resumed")
  mono_poly.train(cfg, resumed_dir)
  shutil.rmtree(os.path.join(resumed_dir, "checkpoints", "phase2"))
  resumed = mono_poly.train(cfg, resumed_dir)
  assert resumed.resumed_from == ("phase1", cfg.phase1.steps)
  assert_trees_equal(resumed.state, pure_state)
  assert_trees_equal(resumed.history, pure_history)
  # Mid-phase resume, in phase 1 and in phase 2.
  for phase, keep in (("phase1", 5), ("phase2", 5)):
    mid_dir = str(tmp_path / f"mid_{phase}")
    mono_poly.train(cfg, mid_dir)
    if phase == "phase1":
      shutil.rmtree(os.path.join(mid_dir, "checkpoints", "phase2"))
    CheckpointStore(os.path.join(mid_dir, "checkpoints", phase)).delete_after(keep)
    mid = mono_poly.train(cfg, mid_dir)
    assert mid.resumed_from == (phase, keep)
    assert_trees_equal(mid.state, pure_state)
    assert_trees_equal(mid.history, pure_history)
  # A finished run trains nothing when started again.
  again = mono_poly.train(cfg, str(tmp_path / "full"))
  assert again.steps_trained == 0
  assert_trees_equal(again.state, pure_state)


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
  assert mono_poly.parse_config(meta["full_config"]) == cfg
  assert "analysis" not in meta["config"] and "log_every" not in meta["config"]


def test_non_finite_loss_names_step_and_seed_and_keeps_checkpoint(tmp_path):
  cfg = mono_poly.parse_config(tiny_config(**{
      "phase2.optimizer.name": "sgd", "phase2.optimizer.learning_rate": 1e30}))
  with pytest.raises(NonFiniteError, match=r"mono->poly phase2: loss is .* at step \d+ for seed \d") as err:
    mono_poly.run_experiment(cfg, str(tmp_path))
  assert "last good checkpoint is phase2 step" in str(err.value)
  store2 = CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2"))
  assert store2.all_steps() and store2.latest_step() < cfg.phase2.steps
  state = mono_poly.restore_state(cfg, store2, store2.latest_step(), "phase2")
  assert all(np.isfinite(x).all() for x in leaves(state["params"]))


def test_workdir_with_other_config_is_refused_unless_overwrite(tmp_path):
  cfg = mono_poly.parse_config(tiny_config())
  mono_poly.run_experiment(cfg, str(tmp_path))
  other = mono_poly.parse_config(tiny_config(batch_size=4))
  with pytest.raises(WorkdirError, match=r"config\.batch_size.*--overwrite"):
    mono_poly.run_experiment(other, str(tmp_path))
  state = mono_poly.run_experiment(other, str(tmp_path), overwrite=True)
  assert CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2")).restore_metadata(10)["config"][
      "batch_size"] == 4
  assert all(np.isfinite(x).all() for x in leaves(state["params"]))


def test_analysis_and_chunk_knobs_do_not_claim_other_checkpoints(tmp_path):
  cfg = mono_poly.parse_config(tiny_config())
  mono_poly.run_experiment(cfg, str(tmp_path))
  other = mono_poly.parse_config(tiny_config(**{"analysis.bootstrap_resamples": 300, "log_every": 2}))
  outcome = mono_poly.train(other, str(tmp_path))
  assert outcome.steps_trained == 0


def test_corrupted_checkpoint_is_refused_naming_the_step(tmp_path):
  cfg = mono_poly.parse_config(tiny_config())
  mono_poly.run_experiment(cfg, str(tmp_path))
  shutil.rmtree(os.path.join(tmp_path, "checkpoints", "phase2"))
  step_dir = os.path.join(tmp_path, "checkpoints", "phase1", "10", "state")
  flip_bits_in_array_files(step_dir)
  with pytest.raises(CheckpointError, match=r"step 10 .* (corrupt|could not be restored).*previous checkpoint is step 5"):
    mono_poly.run_experiment(cfg, str(tmp_path))
  # Following the advice resumes from the previous good step and ends where an uninterrupted run does.
  shutil.rmtree(os.path.join(tmp_path, "checkpoints", "phase1", "10"))
  state = mono_poly.run_experiment(cfg, str(tmp_path))
  assert_trees_equal(state, pure_sweep(cfg)[0])


def flip_bits_in_array_files(state_dir):
  """Flips one bit in the middle of every array data file of an Orbax checkpoint; returns how many."""
  flipped = 0
  for root, _, files in os.walk(state_dir):
    for name in files:
      path = os.path.join(root, name)
      if os.path.basename(root) != "d" or os.path.getsize(path) < 64:
        continue
      with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0x10
        f.seek(0)
        f.write(data)
      flipped += 1
  assert flipped, f"no array data files found under {state_dir}"
  return flipped


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
