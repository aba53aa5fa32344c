"""Models rebuilt from a checkpoint's activation_source block: activations match a numpy forward pass."""

import collections
import copy
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core.checkpoint import CheckpointStore, fingerprints
from mpcodec.core.errors import ActivationError, CheckpointError
from mpcodec.data.bars import BarsConfig, make_bars_splits
from mpcodec.models import checkpointed

NUM_SEEDS, HIDDEN_WIDTHS, NUM_CLASSES = 3, (6, 5), 2
BARS = {"num_train": 8, "num_test": 4, "image_size": 4, "min_thickness": 1, "max_thickness": 2}
INPUT_WIDTH = 4 * 4 * 3
# Optimizer states are named tuples (optax); Orbax's metadata gives them back as dicts.
AdamLikeState = collections.namedtuple("AdamLikeState", ["count", "mu"])
ACTIVATION_SOURCE = {
    "model": {"kind": "mlp", "hidden_widths": list(HIDDEN_WIDTHS), "num_classes": NUM_CLASSES},
    "params_path": ["state", "params"],
    "inputs": {"kind": "bars", "config": BARS, "data_seed": 7, "flatten": True},
}


def _stacked_mlp_params(seed=0):
  """Random seed-stacked params named as mpcodec.models.mlp.MLP names them (Dense: kernel (in, out), bias)."""
  rng = np.random.default_rng(seed)
  widths = (INPUT_WIDTH,) + HIDDEN_WIDTHS + (NUM_CLASSES,)
  names = [f"hidden_{i}" for i in range(len(HIDDEN_WIDTHS))] + ["logits"]
  return {name: {"kernel": rng.normal(size=(NUM_SEEDS, d_in, d_out)).astype(np.float32),
                 "bias": rng.normal(size=(NUM_SEEDS, d_out)).astype(np.float32)}
          for name, d_in, d_out in zip(names, widths[:-1], widths[1:])}


def _save_checkpoint(directory, metadata, step=3, wrong_checksum_at=None):
  """Saves a seed-stacked MLP train state; `wrong_checksum_at` names an array whose saved checksum is off by one."""
  params = _stacked_mlp_params()
  opt_state = (AdamLikeState(jnp.zeros((NUM_SEEDS,), jnp.int32), jax.tree.map(jnp.zeros_like, params)),)
  state = {"state": {"params": params, "opt_state": opt_state, "count": jnp.int32(step)},
           "history": {"loss": np.linspace(1.0, 0.5, 5, dtype=np.float32)}}
  state = jax.tree.map(jnp.asarray, state)
  checksums = fingerprints(state)
  if wrong_checksum_at is not None:
    checksums[wrong_checksum_at] += 1
  store = CheckpointStore(directory)
  store.save(step, state, metadata, checksums=checksums)
  store.close()
  return params


def _numpy_hidden_activations(params, seed_index, x):
  """Post-ReLU activations of every hidden layer: h_i = max(h_{i-1} @ kernel_i + bias_i, 0)."""
  out, h = {}, x.reshape(x.shape[0], -1)
  for i in range(len(HIDDEN_WIDTHS)):
    layer = params[f"hidden_{i}"]
    h = np.maximum(h @ layer["kernel"][seed_index] + layer["bias"][seed_index], 0.0)
    out[f"hidden_{i}"] = h
  return out


def test_activations_of_the_loaded_model_match_a_numpy_forward_pass(tmp_path):
  params = _save_checkpoint(tmp_path / "ckpt", {"config": {"a": 1}, "activation_source": ACTIVATION_SOURCE})
  model, loaded, metadata, step = checkpointed.load_checkpointed_model(str(tmp_path / "ckpt"))
  assert step == 3 and metadata["config"] == {"a": 1}
  jax.tree.map(np.testing.assert_array_equal, loaded, params)

  inputs = checkpointed.checkpoint_inputs(str(tmp_path / "ckpt"), metadata, step)
  train, test = make_bars_splits(BarsConfig(**BARS), 7)
  np.testing.assert_array_equal(inputs["train"], np.asarray(train["images"]).reshape(8, INPUT_WIDTH))
  assert inputs["test"].shape == (4, INPUT_WIDTH)

  seed_params = jax.tree.map(lambda a: a[1], loaded)
  x = np.asarray(inputs["train"])
  assert checkpointed.layer_names(model, seed_params, jax.ShapeDtypeStruct((1, INPUT_WIDTH), jnp.float32)) == (
      "hidden_0", "hidden_1")
  expected = _numpy_hidden_activations(params, 1, x)
  for layer in ("hidden_0", "hidden_1"):
    got = jax.jit(lambda x, layer=layer: checkpointed.layer_activations(model, seed_params, x, layer))(x)
    np.testing.assert_allclose(got, expected[layer], rtol=1e-4, atol=1e-5)
  assert np.count_nonzero(expected["hidden_1"]) > 0  # the comparison is not between two zero matrices
  with pytest.raises(ActivationError, match=r"layer 'logits' is not in the model; valid layer names: "
                                            r"\['hidden_0', 'hidden_1'\]"):
    checkpointed.layer_activations(model, seed_params, x, "logits")


def test_restore_as_saved_needs_no_target_and_still_verifies_checksums(tmp_path):
  params = _save_checkpoint(tmp_path / "ckpt", {})
  restored = CheckpointStore(tmp_path / "ckpt").restore_as_saved(3)
  jax.tree.map(np.testing.assert_array_equal, restored["state"]["params"], params)
  assert restored["state"]["count"].dtype == jnp.int32 and int(restored["state"]["count"]) == 3
  assert restored["state"]["opt_state"][0]["mu"]["logits"]["bias"].shape == (NUM_SEEDS, NUM_CLASSES)
  np.testing.assert_array_equal(restored["history"]["loss"], np.linspace(1.0, 0.5, 5, dtype=np.float32))
  _save_checkpoint(tmp_path / "bad", {}, wrong_checksum_at="['state']['opt_state'][0].count")
  with pytest.raises(CheckpointError, match=r"is corrupt: 1 array\(s\) differ .*first: \['state'\]\['opt_state'\]"
                                            r"\[0\]\['count'\]"):
    CheckpointStore(tmp_path / "bad").restore_as_saved(3)


def _with(path, value):
  """ACTIVATION_SOURCE with the entry at `path` (keys) replaced by `value`."""
  block = copy.deepcopy(ACTIVATION_SOURCE)
  node = block
  for key in path[:-1]:
    node = node[key]
  node[path[-1]] = value
  return {"activation_source": block}


@pytest.mark.parametrize("metadata, message", [
    ({"config": {}}, r"the metadata has no 'activation_source' block .*found keys: \['config'\]"),
    (_with(["model", "kind"], "cnn"), r"activation_source\.model\.kind 'cnn' is unknown; known kinds: \['mlp'\]"),
    (_with(["inputs", "kind"], "mnist"), r"activation_source\.inputs\.kind 'mnist' is unknown; known kinds: \['bars'\]"),
    (_with(["model", "num_classes"], "two"), r"activation_source\.model\.num_classes: expected int"),
    (_with(["params_path"], ["params"]), r"activation_source\.params_path \['params'\]: no key 'params' at \[\]"),
    (_with(["model", "hidden_widths"], [7, 5]),
     r"the params at activation_source\.params_path do not fit activation_source\.model: "
     r"\['hidden_0'\]\['bias'\] is \(6,\) in the checkpoint, \(7,\) in the model"),
])
def test_a_bad_activation_source_is_one_checkpoint_error_naming_dir_step_and_key(tmp_path, metadata, message):
  _save_checkpoint(tmp_path / "ckpt", metadata)
  with pytest.raises(CheckpointError, match=rf"^checkpoint {re.escape(str(tmp_path / 'ckpt'))} step 3: {message}"):
    checkpointed.load_checkpointed_model(str(tmp_path / "ckpt"))


def test_a_missing_directory_or_step_is_a_checkpoint_error(tmp_path):
  with pytest.raises(CheckpointError, match="no checkpoints in .*missing: the directory does not exist"):
    checkpointed.load_checkpointed_model(str(tmp_path / "missing"))
  assert not (tmp_path / "missing").exists()
  _save_checkpoint(tmp_path / "ckpt", {"activation_source": ACTIVATION_SOURCE})
  with pytest.raises(CheckpointError, match=r"no checkpoint at step 5 .* available steps: \[3\]"):
    checkpointed.load_checkpointed_model(str(tmp_path / "ckpt"), step=5)
