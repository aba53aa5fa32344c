"""A run's model and inputs rebuilt from what it saved, and a layer's activations (see the package
docstring of `mpcodec.checkpoints`)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpcodec.checkpoints._load import Run
from mpcodec.core import configuration
from mpcodec.core.errors import CheckpointError, ConfigError
from mpcodec.data import registry
from mpcodec.models import checkpointed, zoo
from mpcodec.sae import autoencoder as sae_lib
from mpcodec.sae import squeezer as squeezer_lib

SAE_LAYERS = ("latents", "reconstruction")
SQUEEZER_LAYERS = ("latents", "latents_hat", "x_hat_sae", "x_hat_squeezed", "neurons")


# ------------------------------------------------------------------------------------------------
# Models and inputs rebuilt from what the run saved.


def _parse(cls: type, block: Any, key: str, where: str) -> Any:
  """Dataclass `cls` from a JSON object (its "kind" key dropped); CheckpointError naming `key`."""
  if not isinstance(block, dict):
    raise CheckpointError(f"{where}: {key} must be a JSON object, got {type(block).__name__}")
  try:
    return configuration.parse(cls, {k: v for k, v in block.items() if k != "kind"}, key)
  except ConfigError as e:
    raise CheckpointError(f"{where}: {e}") from e


def _described(run: Run, part: str, kinds: dict[str, type]) -> Any:
  """The description dataclass of the activation_source block's `part` ("model" or "inputs")."""
  block = checkpointed.activation_source_block(run.metadata, run.where()).get(part)
  kind = block.get("kind") if isinstance(block, dict) else None
  if kind not in kinds:
    raise CheckpointError(f"{run.where()}: activation_source.{part}.kind {kind!r} is unknown; known kinds: "
                          f"{sorted(kinds)}")
  return _parse(kinds[kind], block, f"activation_source.{part}", run.where())


def _dynamics_info(run: Run) -> registry.DatasetInfo:
  dataset = run.config.get("dataset")
  if dataset not in registry.DATASETS:
    raise CheckpointError(f"{run.where()}: config dataset {dataset!r} is not in the registry "
                          f"{sorted(registry.DATASETS)}")
  return registry.DATASETS[dataset]


def _example_input(run: Run) -> jax.ShapeDtypeStruct:
  """One example's shape and dtype as the model reads it (batch axis of 1)."""
  if run.kind == "mono_poly":
    x = jax.eval_shape(_described(run, "inputs", checkpointed.INPUT_KINDS).splits)["train"]
    return jax.ShapeDtypeStruct((1,) + x.shape[1:], x.dtype)
  info = _dynamics_info(run)
  if info.kind == "text":
    return jax.ShapeDtypeStruct((1, int(run.config["max_length"])), jnp.int32)
  return jax.ShapeDtypeStruct((1,) + tuple(info.example_shape), jnp.float32)


def _one_seed(tree: Any) -> Any:
  return jax.tree.map(lambda x: x[0], tree)


def _check_fit(run: Run, module: nn.Module) -> None:
  """CheckpointError unless `run.params` are `module`'s params with a leading run axis."""
  expected = jax.eval_shape(module.init, jax.random.PRNGKey(0), _example_input(run))["params"]
  shapes = lambda tree, cut: {jax.tree_util.keystr(p): tuple(x.shape)[cut:]
                              for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  saved, wanted = shapes(run.params, 1), shapes(expected, 0)
  if saved != wanted:
    path = sorted(set(saved) ^ set(wanted) or {p for p in saved if saved[p] != wanted[p]})[0]
    raise CheckpointError(f"{run.where()}: the saved params do not fit the model the run describes: {path} is "
                          f"{saved.get(path, 'missing')} in the checkpoint, {wanted.get(path, 'absent')} in the model")


def _leaf_ending(tree: Any, keys: tuple[str, ...]) -> Any:
  """The first leaf of `tree` whose path ends in dict keys `keys` (e.g. ("logits", "bias")), or None."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    names = tuple(getattr(entry, "key", None) for entry in path)
    if names[-len(keys):] == keys:
      return leaf
  return None


def model(run: Run) -> nn.Module:
  """The Flax module of a mono_poly or dynamics run, rebuilt from its saved description and config.

  Its `apply({"params": params_one_seed}, x)` returns (logits, {layer name: activations}). A dynamics
  model's class count and a text model's vocabulary size are read off the saved head and embedding table;
  the saved params are checked to fit the model.
  """
  if run.kind == "mono_poly":
    module = _described(run, "model", checkpointed.MODEL_KINDS).build()
  elif run.kind == "dynamics":
    info = _dynamics_info(run)
    options = {}
    if info.kind == "text":
      embedding = _leaf_ending(run.params, ("token_embedding", "embedding"))
      if embedding is None:
        raise CheckpointError(f"{run.where()}: a text model's params hold no token_embedding.embedding")
      options = dict(vocab_size=int(embedding.shape[1]), max_length=int(run.config["max_length"]))
    # The head's width, not the registry's class count: a run may have trained on another dataset of
    # the same input kind under the registry name (the studies' tests do).
    head = _leaf_ending(run.params, ("logits", "bias"))
    num_classes = info.num_classes if head is None else int(head.shape[-1])
    try:
      module = zoo.build_model(run.config["arch"], num_classes, info.kind,
                               embed_dim=int(run.config.get("embed_dim", 64)), **options)
    except ValueError as e:
      raise CheckpointError(f"{run.where()}: {e}") from e
  else:
    raise CheckpointError(f"{run.where()}: a {run.kind!r} run is not a Flax model; models are rebuilt for "
                          f"'mono_poly' and 'dynamics' runs")
  _check_fit(run, module)
  return module


def run_inputs(run: Run, split: str = "test", data_dir: str | None = None) -> jax.Array:
  """The run's own inputs of `split` ("train" or "test"), as its model reads them (examples first).

  mono_poly: the bars images its activation_source metadata describes, flattened. dynamics: the run's
  dataset, split with its data seed (`data_dir` or $MPCODEC_DATA_DIR for files; "bars" is generated).
  SAE and Squeezer stages: not supported (their activation sources live in the codec study); pass arrays
  to `activations`.
  """
  if split not in ("train", "test"):
    raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
  if run.kind == "mono_poly":
    return _described(run, "inputs", checkpointed.INPUT_KINDS).splits()[split]
  if run.kind == "dynamics":
    info = _dynamics_info(run)
    options = ({"vocab_size": int(run.config["vocab_size"]), "max_length": int(run.config["max_length"])}
               if info.kind == "text" else {})
    dataset = registry.get_dataset(run.config["dataset"], data_dir, seed=int(run.config.get("data_seed", 0)),
                                   **options)
    return jnp.asarray(dataset.train_x if split == "train" else dataset.test_x)
  raise CheckpointError(
      f"{run.where()}: the inputs of a {run.kind!r} stage cannot be rebuilt from library code (the codec's "
      f"activation sources live in mpcodec.studies.codec); pass inputs=an (N, D) array of activations")


# ------------------------------------------------------------------------------------------------
# Activations.


def _sae_config(run: Run, key: str) -> sae_lib.SAEConfig:
  """The SAEConfig saved under metadata[key], or under the training config's `key`."""
  block = run.metadata.get(key, run.metadata.get("config", {}).get(key))
  if block is None:
    raise CheckpointError(f"{run.where()}: the metadata holds no {key!r} config")
  return _parse(sae_lib.SAEConfig, block, key, run.where())


def _folded_sae(state: dict) -> dict:
  """An SAE state that acts on raw activations: its input scale folded into the weights (scale 1)."""
  params, threshold = sae_lib.fold_input_scale(state["params"], state["input_scale"], state["threshold"])
  return {"params": params, "threshold": threshold, "k": state["k"],
          "input_scale": jnp.ones_like(state["input_scale"])}


def layer_names(run: Run) -> tuple[str, ...]:
  """The layers `activations` can return for this run, in depth order."""
  if run.kind == "sae":
    return SAE_LAYERS
  if run.kind == "squeezer":
    return SQUEEZER_LAYERS
  module = model(run)
  return checkpointed.layer_names(module, _one_seed(run.params), _example_input(run))


def _check_inputs(run: Run, inputs_N: jax.Array, expected: tuple, what: str) -> jax.Array:
  inputs_N = jnp.asarray(inputs_N)
  if inputs_N.ndim != len(expected) + 1 or tuple(inputs_N.shape[1:]) != tuple(expected):
    raise ValueError(f"inputs: expected {what} of shape (N, {', '.join(map(str, expected))}), got "
                     f"{tuple(inputs_N.shape)} ({run.where()})")
  return inputs_N


def activations(run: Run, layer: str, inputs: Any = None, *, split: str = "test",
                data_dir: str | None = None) -> jax.Array:
  """Activations of `layer` for every entry of the run axis: (runs, N, ...) on `inputs` (N, ...).

  Args:
    run: from `load`.
    layer: one of `layer_names(run)` ("hidden_0", "latents", "neurons", ...).
    inputs: examples as the model reads them; None for the run's own inputs of `split` (mono_poly and
      dynamics runs: see `run_inputs`). SAE and Squeezer stages need raw activations (N, D) of the layer
      they were trained on.
    split: "train" or "test", when `inputs` is None.
    data_dir: where a dynamics run's dataset files are (default $MPCODEC_DATA_DIR).
  Raises:
    ValueError for an unknown layer or inputs of the wrong shape; CheckpointError where the run kind
    cannot be served from library code (see the module docstring).
  """
  if run.kind in ("sae", "squeezer"):
    if inputs is None:
      raise CheckpointError(f"{run.where()}: pass inputs=an (N, D) array of activations; the codec's "
                            f"activation sources live in mpcodec.studies.codec, not in the library")
    names = SAE_LAYERS if run.kind == "sae" else SQUEEZER_LAYERS
    if layer not in names:
      raise ValueError(f"layer: {layer!r} is not a layer of a {run.kind} stage; valid names: {list(names)}")
    if run.kind == "sae":
      cfg = _sae_config(run, "sae")
      x_BxD = _check_inputs(run, inputs, (int(run.params["w_dec_NxD"].shape[-1]),), "activations")

      def one_run(state):
        x_hat_BxD, codes = sae_lib.apply(state, x_BxD, cfg)
        out = {"latents": sae_lib.dense_codes(codes, x_BxD.shape[0], cfg.num_latents),
               "reconstruction": x_hat_BxD}
        return out[layer]

      return jax.jit(jax.vmap(lambda state: one_run(_folded_sae(state))))(run.state)
    sae_cfg, squeezer_cfg = _sae_config(run, "sae"), _sae_config(run, "squeezer")
    x_BxD = _check_inputs(run, inputs, (int(run.state["sae"]["params"]["w_dec_NxD"].shape[-1]),), "activations")
    return jax.jit(jax.vmap(lambda state, sae_state: squeezer_lib.reconstructions(
        state, sae_state, x_BxD, sae_cfg, squeezer_cfg)[layer]))(run.state["squeezer"], run.state["sae"])

  module = model(run)
  names = checkpointed.layer_names(module, _one_seed(run.params), _example_input(run))
  if layer not in names:
    raise ValueError(f"layer: {layer!r} is not a layer of {run.where()}; valid names: {list(names)}")
  x = run_inputs(run, split, data_dir) if inputs is None else inputs
  example = _example_input(run)
  x = _check_inputs(run, x, example.shape[1:], "examples")
  return jax.jit(jax.vmap(lambda params: checkpointed.layer_activations(module, params, x, layer)))(run.params)
