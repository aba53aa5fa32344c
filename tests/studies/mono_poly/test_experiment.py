"""Tests of the mono->poly training engine: vmapped sweeps, resume, control arm, per-seed data, NaN stop,
config validation."""

import dataclasses
import functools
import os
import shutil

import jax
import numpy as np
import pytest

from configs import mono_poly as mono_poly_config
from mpcodec.core import configuration, loop
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import CheckpointError, ConfigError, NonFiniteError, WorkdirError
from mpcodec.studies.mono_poly import config as mono_poly_cfg, program, run
from tests.support import assert_trees_equal


def tiny_config(**overrides):
  """A mono->poly config of 8x8 images and a few steps: compiles and runs in seconds. Per-seed data as by
  default, but no control arm unless asked for (control_arm=True): most tests need two phases only."""
  cfg = mono_poly_config.get_config("smoke")
  cfg.control_arm = False
  cfg.num_seeds = 4
  cfg.data.image_size = 8
  cfg.data.max_thickness = 3
  cfg.data.num_train = 64
  cfg.data.num_test = 32
  cfg.batch_size = 8
  cfg.model.hidden_widths = (4,)
  cfg.chunk_steps = 5
  cfg.phase1.steps = 10
  cfg.phase1.checkpoint_every = 5
  cfg.phase2.steps = 10
  cfg.phase2.checkpoint_every = 5
  return configuration.override(cfg, overrides)


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("per_seed_data,shared_order", [(False, True), (True, False)])
def test_vmapped_seeds_equal_single_runs(per_seed_data, shared_order):
  cfg = mono_poly_cfg.parse_config(tiny_config(data_per_seed=per_seed_data, shared_data_order=shared_order))
  train = program.make_train(cfg)
  keys = program.train_keys(cfg)
  assert ("data" in keys) == per_seed_data  # with per-seed data, a seed's keys carry its own data
  state, history = jax.jit(jax.vmap(train))(keys)
  single = jax.jit(train)
  for i in range(4):
    state_i, history_i = single(jax.tree.map(lambda k: k[i], keys))
    for stacked, one in zip(leaves(state["params"]), leaves(state_i["params"])):
      np.testing.assert_allclose(stacked[i], one, rtol=1e-5, atol=1e-6)
    for phase in mono_poly_cfg.phase_names(cfg):
      np.testing.assert_allclose(np.asarray(history[phase]["loss"])[i], np.asarray(history_i[phase]["loss"]),
                                 rtol=1e-5, atol=1e-6)
  # Different seeds must train differently: the sweep is not four copies of one run.
  first = leaves(state["params"])[0]
  assert not np.allclose(first[0], first[1])
  if per_seed_data:
    # The sweep program (what the run loop cuts into chunks) reads each seed's data from the program
    # instead of from its keys, and trains the same seeds.
    sweep_state, sweep_history = pure_sweep(cfg)
    for stacked, swept in zip(leaves(state), leaves(sweep_state)):
      np.testing.assert_allclose(stacked, swept, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history["phase2"]["loss"], sweep_history["phase2"]["loss"], rtol=1e-5, atol=1e-6)


def test_data_order_switch_changes_minibatches():
  shared = mono_poly_cfg.parse_config(tiny_config(shared_data_order=True))
  per_seed = mono_poly_cfg.parse_config(tiny_config(shared_data_order=False))
  keys = program.seed_keys(per_seed)
  key_a, key_b = (jax.tree.map(lambda k: k[i], keys) for i in (0, 1))
  assert np.array_equal(program.order_key(shared, "phase1", key_a), program.order_key(shared, "phase1", key_b))
  assert not np.array_equal(program.order_key(per_seed, "phase1", key_a),
                            program.order_key(per_seed, "phase1", key_b))
  # Phases draw different orders.
  assert not np.array_equal(program.order_key(per_seed, "phase1", key_a),
                            program.order_key(per_seed, "phase2", key_a))


def test_adding_seeds_keeps_existing_ones():
  few = mono_poly_cfg.parse_config(tiny_config(num_seeds=2))
  more = mono_poly_cfg.parse_config(tiny_config(num_seeds=4))
  for purpose, keys in program.seed_keys(few).items():
    np.testing.assert_array_equal(keys, program.seed_keys(more)[purpose][:2])
  np.testing.assert_array_equal(program.data_keys(few), program.data_keys(more)[:2])


def test_per_seed_data_differs_per_seed_and_does_not_depend_on_the_number_of_seeds():
  four = mono_poly_cfg.parse_config(tiny_config(num_seeds=4))
  eight = mono_poly_cfg.parse_config(tiny_config(num_seeds=8))
  assert four.data_per_seed and not four.shared_data_order  # the defaults
  (train4, test4), (train8, test8) = program.run_datasets(four), program.run_datasets(eight)
  for key in ("x", "orientation", "colour", "y_phase1", "y_phase2", "y_control"):
    assert train4[key].shape[0] == 4 and train8[key].shape[0] == 8
    np.testing.assert_array_equal(train4[key], train8[key][:4])  # seed i's data, whatever the sweep
    np.testing.assert_array_equal(test4[key], test8[key][:4])
  assert train4["x"].shape[1:] == (64, 8 * 8 * 3) and test4["x"].shape[1:] == (32, 8 * 8 * 3)
  x_SxNxD = np.asarray(train8["x"])
  for i in range(8):
    for j in range(i):
      assert not np.allclose(x_SxNxD[i], x_SxNxD[j]), (i, j)
  shared, _ = program.make_datasets(four)
  assert not any(np.allclose(x, shared["x"]) for x in x_SxNxD)
  # Each seed's draw is a bars dataset like the shared one: balanced conjunctions, labels that match.
  conjunctions_SxN = 2 * np.asarray(train8["orientation"]) + np.asarray(train8["colour"])
  assert all((np.bincount(c, minlength=4) == 16).all() for c in conjunctions_SxN)
  np.testing.assert_array_equal(train8["y_phase2"], np.asarray(train8["orientation"]) ^ np.asarray(train8["colour"]))
  np.testing.assert_array_equal(train8["y_control"], train8["y_phase1"])
  # Shapes alone (a restore template) draw nothing, and leave no traced value in the kept draws.
  program._seed_draws.cache_clear()  # pylint: disable=protected-access
  program.abstract_carry(eight, "phase2")
  assert program._seed_draws.cache_info().currsize == 0  # pylint: disable=protected-access
  np.testing.assert_array_equal(program.run_datasets(eight)[0]["x"], train8["x"])


def test_control_arm_equals_a_separately_trained_control_and_leaves_phase2_unchanged():
  cfg = mono_poly_cfg.parse_config(tiny_config(control_arm=True))
  assert mono_poly_cfg.phase_names(cfg) == ("phase1", "phase2", "control")
  state, history = pure_sweep(cfg)
  # A run without a control arm whose phase 2 trains on the phase-1 task is the control, bit for bit:
  # same end-of-phase-1 network, optimizer, steps and minibatches.
  separate = mono_poly_cfg.parse_config(tiny_config(**{"phase2.task": "orientation"}))
  separate_state, separate_history = pure_sweep(separate)
  assert_trees_equal(state, separate_state)
  np.testing.assert_array_equal(history["control"]["loss"], separate_history["phase2"]["loss"])
  # Phase 2 (and phase 1) of the run with a control arm are those of the run without one, bit for bit at
  # every step (phase 2's end state is compared through the checkpoints in the resume test's run).
  _, without_history = pure_sweep(mono_poly_cfg.parse_config(tiny_config()))
  for phase in ("phase1", "phase2"):
    np.testing.assert_array_equal(history[phase]["loss"], without_history[phase]["loss"])
  assert not np.array_equal(history["control"]["loss"], history["phase2"]["loss"])  # the labels differ


@functools.lru_cache(maxsize=None)
def pure_sweep(cfg):
  """The whole run as one pure, jitted call of the seed-stacked program (no chunks, no host); computed
  once per config for all the tests here."""
  return jax.jit(loop.pure_sweep(program.make_program(cfg)))(program.seed_keys(cfg))


def test_chunked_checkpointed_resumed_run_equals_one_pure_call_bit_for_bit(tmp_path):
  cfg = mono_poly_cfg.parse_config(tiny_config(control_arm=True))
  pure_state, pure_history = pure_sweep(cfg)
  full = run.train(cfg, str(tmp_path / "full"))
  assert_trees_equal(full.state, pure_state)
  assert_trees_equal(full.history, pure_history)
  # Interrupted after phase 1: its checkpoints stay, the later phases' are gone; the same call resumes there.
  later = {"phase1": ("phase2", "control"), "phase2": ("control",), "control": ()}
  resumed_dir = str(tmp_path / "resumed")
  shutil.copytree(str(tmp_path / "full"), resumed_dir)
  for phase in later["phase1"]:
    shutil.rmtree(os.path.join(resumed_dir, "checkpoints", phase))
  resumed = run.train(cfg, resumed_dir)
  assert resumed.resumed_from == ("phase1", cfg.phase1.steps)
  assert_trees_equal(resumed.state, pure_state)
  assert_trees_equal(resumed.history, pure_history)
  # Mid-phase resume, in each phase (the control arm's too).
  for phase, keep in (("phase1", 5), ("phase2", 5), ("control", 5)):
    mid_dir = str(tmp_path / f"mid_{phase}")
    shutil.copytree(str(tmp_path / "full"), mid_dir)
    for other in later[phase]:
      shutil.rmtree(os.path.join(mid_dir, "checkpoints", other))
    CheckpointStore(os.path.join(mid_dir, "checkpoints", phase)).delete_after(keep)
    mid = run.train(cfg, mid_dir)
    assert mid.resumed_from == (phase, keep)
    assert_trees_equal(mid.state, pure_state)
    assert_trees_equal(mid.history, pure_history)
  # A finished run trains nothing when started again.
  again = run.train(cfg, str(tmp_path / "full"))
  assert again.steps_trained == 0
  assert_trees_equal(again.state, pure_state)


def test_checkpoint_steps_and_metadata(tmp_path):
  cfg = mono_poly_cfg.parse_config(tiny_config(control_arm=True))
  run.run_experiment(cfg, str(tmp_path))
  for phase in ("phase1", "phase2", "control"):
    assert CheckpointStore(os.path.join(tmp_path, "checkpoints", phase)).all_steps() == [0, 5, 10], phase
  meta = CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2")).restore_metadata(10)
  assert meta["seeds"] == [0, 1, 2, 3]
  assert meta["config"]["phase2"]["task"] == "xor" and meta["config"]["control_arm"]
  assert mono_poly_cfg.parse_config(meta["full_config"]) == cfg
  assert not {"analysis", "chunk_steps", "smoke"} & set(meta["config"])
  control = CheckpointStore(os.path.join(tmp_path, "checkpoints", "control"))
  assert control.restore_metadata(10)["phase"] == "control"
  # Phase 2's end state is that of a run without the control arm, plus the end-of-phase-1 parameters the
  # control starts from.
  store2 = CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2"))
  phase2_end = program.restore_state(cfg, store2, 10, "phase2")
  without = pure_sweep(mono_poly_cfg.parse_config(tiny_config()))[0]
  assert_trees_equal({k: phase2_end[k] for k in ("params", "opt_state")}, without)
  phase1_end = program.restore_state(cfg, CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase1")), 10,
                                       "phase1")
  assert_trees_equal(phase2_end[program.PHASE1_PARAMS], phase1_end["params"])
  # The control arm is phase 2's steps and optimizer on the phase-1 task, drawing phase 2's minibatches.
  assert cfg.phase("control") == dataclasses.replace(cfg.phase2, task=cfg.phase1.task)
  keys = jax.tree.map(lambda k: k[0], program.seed_keys(cfg))
  np.testing.assert_array_equal(program.order_key(cfg, "control", keys), program.order_key(cfg, "phase2", keys))


def test_non_finite_loss_names_step_and_seed_and_keeps_checkpoint(tmp_path):
  cfg = mono_poly_cfg.parse_config(tiny_config(**{
      "phase2.optimizer.name": "sgd", "phase2.optimizer.learning_rate": 1e30}))
  with pytest.raises(NonFiniteError, match=r"mono->poly phase2: loss is .* at step \d+ for seed \d") as err:
    run.run_experiment(cfg, str(tmp_path))
  assert "last good checkpoint is phase2 step" in str(err.value)
  store2 = CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2"))
  assert store2.all_steps() and store2.latest_step() < cfg.phase2.steps
  state = program.restore_state(cfg, store2, store2.latest_step(), "phase2")
  assert all(np.isfinite(x).all() for x in leaves(state["params"]))


def test_workdir_with_other_config_is_refused_unless_overwrite(tmp_path):
  cfg = mono_poly_cfg.parse_config(tiny_config())
  run.run_experiment(cfg, str(tmp_path))
  other = mono_poly_cfg.parse_config(tiny_config(batch_size=4))
  with pytest.raises(WorkdirError, match=r"config\.batch_size.*--overwrite"):
    run.run_experiment(other, str(tmp_path))
  derived = [os.path.join(tmp_path, name) for name in ("report.md", "report.json", "metrics", "plots")]
  for path in derived[:2]:   # the analysis' outputs of the first run
    open(path, "w").close()
  for path in derived[2:]:
    os.makedirs(path)
  state = run.run_experiment(other, str(tmp_path), overwrite=True)
  assert not any(os.path.exists(path) for path in derived)   # removed with the checkpoints they came from
  assert CheckpointStore(os.path.join(tmp_path, "checkpoints", "phase2")).restore_metadata(10)["config"][
      "batch_size"] == 4
  assert all(np.isfinite(x).all() for x in leaves(state["params"]))


def test_analysis_and_chunk_knobs_do_not_claim_other_checkpoints(tmp_path):
  cfg = mono_poly_cfg.parse_config(tiny_config())
  run.run_experiment(cfg, str(tmp_path))
  other = mono_poly_cfg.parse_config(tiny_config(**{"analysis.poly_threshold": 0.4, "chunk_steps": 2, "smoke": False}))
  outcome = run.train(other, str(tmp_path))
  assert outcome.steps_trained == 0


def test_corrupted_checkpoint_is_refused_naming_the_step(tmp_path):
  cfg = mono_poly_cfg.parse_config(tiny_config())
  run.run_experiment(cfg, str(tmp_path))
  shutil.rmtree(os.path.join(tmp_path, "checkpoints", "phase2"))
  step_dir = os.path.join(tmp_path, "checkpoints", "phase1", "10", "state")
  flip_bits_in_array_files(step_dir)
  with pytest.raises(CheckpointError, match=r"step 10 .* (corrupt|could not be restored).*previous checkpoint is step 5"):
    run.run_experiment(cfg, str(tmp_path))
  # Following the advice resumes from the previous good step and ends where an uninterrupted run does.
  shutil.rmtree(os.path.join(tmp_path, "checkpoints", "phase1", "10"))
  state = run.run_experiment(cfg, str(tmp_path))
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
    mono_poly_cfg.parse_config(cfg)


@pytest.mark.parametrize("key,value,message", [
    ("batch_size", "32", r"config\.batch_size: expected int"),
    ("shared_data_order", 1, r"config\.shared_data_order: expected bool"),
    ("learning_rate", 0.1, r"config\.learning_rate: unknown key"),
])
def test_wrong_types_in_a_config_file_name_the_key(key, value, message):
  cfg = tiny_config().to_dict()
  cfg[key] = value
  with pytest.raises(ConfigError, match=message):
    mono_poly_cfg.parse_config(cfg)


def test_unknown_and_missing_keys_are_named():
  cfg = tiny_config().to_dict()
  cfg["phase1"]["lr"] = 0.1
  with pytest.raises(ConfigError, match=r"config\.phase1\.lr: unknown key"):
    mono_poly_cfg.parse_config(cfg)
  cfg = tiny_config().to_dict()
  cfg["model"] = 3
  with pytest.raises(ConfigError, match=r"config\.model: expected a section"):
    mono_poly_cfg.parse_config(cfg)


def test_the_training_fingerprint_is_the_config_less_analysis_smoke_and_chunk_steps():
  """Checkpoints written before the fingerprint came from field metadata keep matching: the fingerprint
  is the whole config less the same three keys."""
  cfg = mono_poly_cfg.parse_config(mono_poly_config.get_config())
  expected = {k: v for k, v in configuration.to_dict(cfg).items() if k not in ("analysis", "chunk_steps", "smoke")}
  assert configuration.training_fingerprint(cfg) == expected
  assert mono_poly_cfg.training_config(dataclasses.replace(cfg, batch_size=16)) != expected


def test_the_old_name_of_chunk_steps_is_accepted_with_a_warning(caplog):
  raw = tiny_config().to_dict()
  raw["log_every"] = raw.pop("chunk_steps") + 2
  with caplog.at_level("WARNING"):
    cfg = mono_poly_cfg.parse_config(raw)
  assert cfg.chunk_steps == 7 and "config.log_every is deprecated: it is now config.chunk_steps" in caplog.text
