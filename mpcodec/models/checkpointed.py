"""Models rebuilt from a checkpoint's own description, so that one study reads another's activations.

A study whose checkpoints others may read (the codec reads the mono->poly MLP) describes its model, where
its parameters sit and the inputs it was trained on in the checkpoint metadata (JSON, under the key
"activation_source"):

  "activation_source": {
    "model": {"kind": "mlp", "hidden_widths": [10], "num_classes": 2},
    "params_path": ["params"],    # keys from the saved pytree's root to the seed-stacked Flax params
    "inputs": {"kind": "bars", "config": {...BarsConfig fields...}, "data_seed": 0, "flatten": true}
  }

The arrays are restored from Orbax's own record of their shapes and dtypes
(`CheckpointStore.restore_as_saved`), so the reader needs none of the writer's code. Model kinds:
"mlp" (`mpcodec.models.mlp.MLP`). Input kinds: "bars" (`mpcodec.data.bars.make_bars_splits`). A block
that is missing, names an unknown kind or does not fit the saved parameters raises one CheckpointError
naming the checkpoint directory, the step and the key.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpcodec.core import configuration
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import ActivationError, CheckpointError, ConfigError
from mpcodec.data.bars import BarsConfig, make_bars_splits
from mpcodec.models.mlp import MLP
from mpcodec.models.zoo import depth_sorted

ACTIVATION_SOURCE = "activation_source"


@dataclasses.dataclass(frozen=True)
class MLPDescription:
  """The "model" block of kind "mlp": a ReLU MLP with these hidden widths and classes."""

  hidden_widths: tuple[int, ...]
  num_classes: int

  def checks(self):
    yield "hidden_widths", len(self.hidden_widths) >= 1, "needs at least one hidden layer"
    for i, width in enumerate(self.hidden_widths):
      yield f"hidden_widths[{i}]", width >= 1, f"width must be >= 1, got {width}"
    yield "num_classes", self.num_classes >= 1, f"must be >= 1, got {self.num_classes}"

  def build(self) -> nn.Module:
    return MLP(hidden_widths=self.hidden_widths, num_classes=self.num_classes)


@dataclasses.dataclass(frozen=True)
class BarsInputs:
  """The "inputs" block of kind "bars": the bars train and test images of `config` and `data_seed`."""

  config: BarsConfig
  data_seed: int
  flatten: bool

  def splits(self) -> dict[str, jax.Array]:
    """{"train": images, "test": images}, float32, each (N, size·size·3) when `flatten`, else (N, size, size, 3)."""
    train, test = make_bars_splits(self.config, self.data_seed)
    out = {}
    for name, split in (("train", train), ("test", test)):
      images = split["images"]
      out[name] = jnp.reshape(images, (images.shape[0], -1)) if self.flatten else images
    return out


MODEL_KINDS = {"mlp": MLPDescription}
INPUT_KINDS = {"bars": BarsInputs}


class CheckpointedModel(NamedTuple):
  """A model rebuilt from a checkpoint: module, seed-stacked params, the step's metadata and the step."""

  model: nn.Module
  params: Any
  metadata: dict
  step: int


def _parse_kind(block: Any, kinds: dict[str, type], key: str, where: str) -> Any:
  """The description dataclass of `block` ({"kind": ..., fields}) for its kind, or CheckpointError naming `key`."""
  if not isinstance(block, dict):
    raise CheckpointError(f"{where}: {key} must be a JSON object, got {type(block).__name__}")
  kind = block.get("kind")
  if kind not in kinds:
    raise CheckpointError(f"{where}: {key}.kind {kind!r} is unknown; known kinds: {sorted(kinds)}")
  fields = {name: value for name, value in block.items() if name != "kind"}
  try:
    return configuration.parse(kinds[kind], fields, key)
  except ConfigError as e:
    raise CheckpointError(f"{where}: {e}") from e


def activation_source_block(metadata: dict, where: str) -> dict:
  """The "activation_source" block of a checkpoint's metadata, or CheckpointError saying it is missing."""
  block = metadata.get(ACTIVATION_SOURCE)
  if not isinstance(block, dict):
    raise CheckpointError(
        f"{where}: the metadata has no {ACTIVATION_SOURCE!r} block describing the model, its params and its "
        f"inputs (found keys: {sorted(metadata)}); the study that wrote the checkpoint must add it")
  return block


def _params_at(state: Any, params_path: Any, where: str) -> Any:
  """The subtree of `state` at the keys `params_path`, or CheckpointError naming the first missing key."""
  key = f"{ACTIVATION_SOURCE}.params_path"
  if not isinstance(params_path, list) or not all(isinstance(k, str) for k in params_path):
    raise CheckpointError(f"{where}: {key} must be a list of keys, got {params_path!r}")
  node = state
  for depth, name in enumerate(params_path):
    if not isinstance(node, dict) or name not in node:
      found = sorted(node) if isinstance(node, dict) else type(node).__name__
      raise CheckpointError(f"{where}: {key} {params_path}: no key {name!r} at {params_path[:depth]} of the "
                            f"saved state (found: {found})")
    node = node[name]
  return node


def _leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {jax.tree_util.keystr(path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_params_fit(model: nn.Module, params: Any, example_x: jax.ShapeDtypeStruct, where: str) -> None:
  """Raises CheckpointError unless `params` are the model's params with one leading seed axis."""
  stacked = _leaf_shapes(params)
  seed_counts = {shape[0] if shape else None for shape in stacked.values()}
  if not stacked or len(seed_counts) != 1 or None in seed_counts:
    raise CheckpointError(f"{where}: the params at {ACTIVATION_SOURCE}.params_path are not stacked over one seed "
                          f"axis (leading sizes: {sorted(seed_counts, key=str)})")
  expected = _leaf_shapes(jax.eval_shape(model.init, jax.random.PRNGKey(0), example_x)["params"])
  saved = {path: shape[1:] for path, shape in stacked.items()}
  if saved != expected:
    path = sorted(set(saved) ^ set(expected) or {p for p in saved if saved[p] != expected[p]})[0]
    raise CheckpointError(
        f"{where}: the params at {ACTIVATION_SOURCE}.params_path do not fit {ACTIVATION_SOURCE}.model: {path} "
        f"is {saved.get(path, 'missing')} in the checkpoint, {expected.get(path, 'absent')} in the model")


def _where(directory: str, step: int) -> str:
  return f"checkpoint {directory} step {step}"


def checkpoint_inputs(checkpoint_dir: str, metadata: dict, step: int) -> dict[str, jax.Array]:
  """{"train": x, "test": x}: the inputs that the activation_source block of a step's metadata describes."""
  where = _where(os.path.abspath(os.fspath(checkpoint_dir)), step)
  block = activation_source_block(metadata, where)
  return _parse_kind(block.get("inputs"), INPUT_KINDS, f"{ACTIVATION_SOURCE}.inputs", where).splits()


def load_checkpointed_model(checkpoint_dir: str, step: int | None = None) -> CheckpointedModel:
  """The model, seed-stacked params, metadata and step of a checkpoint (the latest step by default).

  Only the checkpoint's "activation_source" metadata and Orbax's record of the arrays are read; the
  params are checked to fit the described model (with a leading seed axis) before they are returned.
  """
  directory = os.path.abspath(os.fspath(checkpoint_dir))
  if not os.path.isdir(directory):
    raise CheckpointError(f"no checkpoints in {directory}: the directory does not exist")
  store = CheckpointStore(directory)
  try:
    step = store.step_or_latest(step, "checkpoints")
    where = _where(directory, step)
    metadata = store.restore_metadata(step)
    block = activation_source_block(metadata, where)
    model = _parse_kind(block.get("model"), MODEL_KINDS, f"{ACTIVATION_SOURCE}.model", where).build()
    inputs = _parse_kind(block.get("inputs"), INPUT_KINDS, f"{ACTIVATION_SOURCE}.inputs", where)
    params = _params_at(store.restore_as_saved(step), block.get("params_path"), where)
  finally:
    store.close()
  example_x = jax.eval_shape(inputs.splits)["train"]
  _check_params_fit(model, params, jax.ShapeDtypeStruct((1,) + example_x.shape[1:], example_x.dtype), where)
  return CheckpointedModel(model, params, metadata, step)


def layer_names(model: nn.Module, params_one_seed: Any, example_x: Any) -> tuple[str, ...]:
  """Names of the activations the model's apply returns, in depth order (shapes only, no computation)."""
  _, activations = jax.eval_shape(lambda x: model.apply({"params": params_one_seed}, x), example_x)
  return tuple(depth_sorted(activations))


def layer_activations(model: nn.Module, params_one_seed: Any, x: jax.Array, layer: str) -> jax.Array:
  """Activations of `layer` of one seed's model on inputs `x` (jittable)."""
  _, activations = model.apply({"params": params_one_seed}, x)
  if layer not in activations:
    raise ActivationError(f"layer {layer!r} is not in the model; valid layer names: "
                          f"{depth_sorted(activations)}")
  return activations[layer]
