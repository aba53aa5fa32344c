"""Tests of mpcodec.core.checkpoint: round trip, explicit targets, clear errors for missing/corrupt data."""

import os
import shutil
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core.checkpoint import CheckpointError, CheckpointStore


def stacked_state():
  return {"params": {"w": jnp.arange(24.0).reshape(4, 3, 2), "b": jnp.ones((4, 2))},
          "opt_state": (jnp.zeros((4,), jnp.int32),)}


def test_round_trip_with_metadata(tmp_path):
  store = CheckpointStore(tmp_path / "phase1")
  state = stacked_state()
  store.save(0, state, {"config": {"batch_size": 32}, "seeds": [0, 1, 2, 3]})
  bumped = jax.tree.map(lambda x: x + 1, state)
  store.save(10, bumped, {"seeds": [0, 1, 2, 3]})
  assert store.all_steps() == [0, 10]
  assert store.latest_step() == 10
  restored = store.restore(10, jax.tree.map(np.zeros_like, state))
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(bumped)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(a).dtype == np.asarray(b).dtype
  assert store.restore_metadata(0) == {"config": {"batch_size": 32}, "seeds": [0, 1, 2, 3]}
  # A fresh store object on the same directory finds the same steps (a new process resuming).
  assert CheckpointStore(tmp_path / "phase1").all_steps() == [0, 10]


def test_abstract_target_restores(tmp_path):
  store = CheckpointStore(tmp_path)
  state = stacked_state()
  store.save(5, state, {})
  target = jax.eval_shape(lambda: state)
  restored = store.restore(5, target)
  np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.asarray(state["params"]["w"]))


def test_missing_step_names_directory_and_available_steps(tmp_path):
  store = CheckpointStore(tmp_path / "ckpt")
  store.save(3, stacked_state(), {})
  with pytest.raises(CheckpointError, match=r"no checkpoint at step 7 in .*ckpt; available steps: \[3\]"):
    store.restore(7, stacked_state())
  with pytest.raises(CheckpointError, match="available steps: none"):
    CheckpointStore(tmp_path / "empty").restore_metadata(0)


def test_corrupt_checkpoint_gives_one_clear_error(tmp_path):
  store = CheckpointStore(tmp_path)
  store.save(1, stacked_state(), {})
  state_dir = tmp_path / "1" / "state"
  corrupted = 0
  for root, _, files in os.walk(state_dir):
    for name in files:
      if name.endswith(".ocdbt") or os.path.basename(root) == "d":
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"not a checkpoint")
        corrupted += 1
  assert corrupted
  with pytest.raises(CheckpointError, match=r"checkpoint at step 1 in .* could not be restored"):
    store.restore(1, stacked_state())


def test_wrong_target_structure_is_a_checkpoint_error(tmp_path):
  store = CheckpointStore(tmp_path)
  store.save(1, stacked_state(), {})
  with pytest.raises(CheckpointError, match="could not be restored"):
    store.restore(1, {"params": {"w": np.zeros((4, 3, 2))}})


def _flip_a_bit(state_dir) -> None:
  """Flips one bit in the middle of the first array data file of an Orbax checkpoint."""
  for root, _, files in sorted(os.walk(state_dir)):
    for name in sorted(files):
      path = os.path.join(root, name)
      if os.path.basename(root) == "d" and os.path.getsize(path) >= 64:
        with open(path, "r+b") as f:
          data = bytearray(f.read())
          data[len(data) // 2] ^= 0x10
          f.seek(0)
          f.write(data)
        return
  pytest.fail(f"no array data file under {state_dir}")


def test_a_step_without_its_checksums_is_refused_naming_the_previous_one(tmp_path):
  store = CheckpointStore(tmp_path / "phase2")
  state = {"w": jnp.arange(4096.0).reshape(4, 1024)}
  store.save(500, state, {})
  store.save(1000, jax.tree.map(lambda x: x + 1, state), {})
  shutil.rmtree(tmp_path / "phase2" / "1000" / "integrity")
  _flip_a_bit(tmp_path / "phase2" / "1000" / "state")
  store = CheckpointStore(tmp_path / "phase2")
  with pytest.raises(CheckpointError, match=(
      r"checkpoint at step 1000 in .*phase2 cannot be verified: its checksums \(integrity/\) are missing, so "
      r"it may be corrupt; the previous checkpoint is step 500: delete .*1000 \(and any later step\)")):
    store.restore(1000, state)
  with pytest.raises(CheckpointError, match="step 1000 .* cannot be verified"):
    store.restore_as_saved(1000)
  np.testing.assert_array_equal(np.asarray(store.restore(500, state)["w"]), np.asarray(state["w"]))


def test_on_saved_runs_once_the_step_is_on_disk(tmp_path):
  store = CheckpointStore(tmp_path / "ckpt")
  seen = []

  def on_saved(step):
    seen.append((step, sorted(os.listdir(tmp_path / "ckpt"))))

  state = {"w": jnp.arange(1 << 16, dtype=jnp.float32)}
  store.save(1, state, {}, wait=False, on_saved=lambda: on_saved(1))
  store.save(2, state, {}, wait=True, on_saved=lambda: on_saved(2))
  store.close()
  # Each callback saw its step's final folder (Orbax writes a temporary name and renames it when done).
  assert [step for step, _ in seen] == [1, 2]
  assert all(str(step) in names and not any("tmp" in n for n in names) for step, names in seen), seen


def test_stores_saving_from_several_threads_at_once_each_keep_every_step(tmp_path):
  """Orbax keeps process-global state per save: stores used from several threads at once (the dynamics
  grid side by side) must not cross their saves (before the lock: a step's temporary folder removed
  while another save wrote it, or the saves hung)."""
  steps, errors = list(range(0, 60, 5)), []
  states = {i: jax.tree.map(lambda x, i=i: x + i, stacked_state()) for i in range(4)}

  def saver(i):
    try:
      store = CheckpointStore(tmp_path / f"run{i}")
      for step in steps:
        store.save(step, jax.tree.map(lambda x, step=step: x + step, states[i]), {"run": i, "step": step},
                   wait=False)
      store.close()
    except BaseException as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=saver, args=(i,), daemon=True) for i in range(4)]
  for thread in threads:
    thread.start()
  deadline = time.monotonic() + 120
  for thread in threads:
    thread.join(timeout=max(0.0, deadline - time.monotonic()))
  assert not any(thread.is_alive() for thread in threads), "saves from several threads hung"
  assert not errors, errors
  for i in range(4):
    store = CheckpointStore(tmp_path / f"run{i}")
    assert store.all_steps() == steps
    for step in (steps[0], steps[-1]):
      restored = store.restore(step, stacked_state())
      np.testing.assert_array_equal(np.asarray(restored["params"]["w"]),
                                    np.asarray(states[i]["params"]["w"]) + step)
      assert store.restore_metadata(step) == {"run": i, "step": step}
