"""Any mpcodec run's parameters, config and step from its workdir, and a layer's activations.

Metrics from a checkpoint take three lines (any workdir of launch.mono_poly, launch.dynamics, launch.codec):

    from mpcodec import checkpoints
    from mpcodec.metrics import participation_ratio

    run = checkpoints.load("runs/mono_poly", stage="phase2")          # its latest step; or step=...
    acts_SxNxH = checkpoints.activations(run, layer="hidden_0")       # on the run's own test inputs
    print(participation_ratio(acts_SxNxH[0]), run.params["hidden_0"]["kernel"].shape, run.config["seed"])

`load` reads only what a run wrote (the JSON metadata beside each checkpoint and Orbax's own record of
the arrays) with library code (`mpcodec.core`, `mpcodec.models`, `mpcodec.data`, `mpcodec.sae`): it needs
none of the study code that trained the run, and works for a run of an older checkout as long as the
layout below holds.

Stages: every folder of step-numbered checkpoints under a workdir is one stage.

    checkpoints/phase1, checkpoints/phase2,     mono->poly (launch.mono_poly) and its control arm; the
    checkpoints/control                         default stage is the last phase (phase2)
    checkpoints/sae, checkpoints/squeezer,      the codec (launch.codec): SAE, main Squeezer, tax-sweep
    checkpoints/squeezer_m<M>,                  Squeezers, the dead-latent setting's SAEs
    checkpoints/dead_latents_aux<A>
    dynamics/checkpoints/<arch>__<dataset>/train    a dynamics run (launch.dynamics), stage "<arch>@<dataset>"

Run kinds (`Run.kind`) and what `activations` gives:

    "mono_poly"  the MLP its metadata describes; layers hidden_0, ...; inputs default to the bars
                 images its metadata describes (split "test" or "train", flattened): the shared draw of
                 the run's data seed, which with per-seed data (`data_per_seed`) are images of the same
                 distribution rather than each seed's own
    "dynamics"   the zoo model (MLP, CNN, Transformer) of `config["arch"]`; layers by name
                 (`layer_names(run)`); inputs default to the run's dataset (from `data_dir` or
                 $MPCODEC_DATA_DIR; "bars" is generated)
    "sae"        layers "latents" (dense codes on raw activations, input scale folded in) and
                 "reconstruction"; `inputs` must be given: the codec's activation sources (ground truth,
                 a mono->poly layer, MiniLM on text) live in the codec study, not in the library
    "squeezer"   layers "latents", "latents_hat", "x_hat_sae", "x_hat_squeezed", "neurons"; `inputs` must
                 be given (as for "sae")
    "other"      a checkpoint of the one run loop that none of the above describes: params, state,
                 config and step load; activations are not supported

Every array keeps the leading run axis the run was trained with: seeds for mono->poly and dynamics,
(k, seed) runs k-major for an SAE stage, (K, SAE run) K-major for a Squeezer stage; `Run.seeds` names
each entry. Errors are one line (`CheckpointError`, or `ValueError` for a bad argument) naming the
workdir, the stage and the step.

Reading a plain Orbax directory (no mpcodec at all): each stage folder is an `ocp.CheckpointManager`
directory whose steps hold the items "state" (the array pytree: {"state": train state, "history":
{phase: metrics}}), "metadata" (JSON) and "integrity" (JSON checksums):

    import orbax.checkpoint as ocp
    manager = ocp.CheckpointManager("runs/mono_poly/checkpoints/phase2", item_names=("state", "metadata"))
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), metadata=ocp.args.JsonRestore()))
    params = restored["state"]["state"]["params"]      # seed axis first
    config = restored["metadata"]["full_config"]       # "config" holds the training-defining part

`StandardRestore()` without a target restores the arrays as saved (named tuples and dataclasses, such as
optimizer states, come back as dicts); pass a target pytree of `jax.ShapeDtypeStruct`s to place them on
devices of your choice.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpcodec.core import configuration
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import CheckpointError, ConfigError
from mpcodec.data import registry
from mpcodec.models import checkpointed, zoo
from mpcodec.sae import autoencoder as sae_lib
from mpcodec.sae import squeezer as squeezer_lib

__all__ = ["Run", "activations", "layer_names", "load", "model", "run_inputs", "stages"]

KINDS = ("mono_poly", "dynamics", "sae", "squeezer", "other")
SAE_LAYERS = ("latents", "reconstruction")
SQUEEZER_LAYERS = ("latents", "latents_hat", "x_hat_sae", "x_hat_squeezed", "neurons")
_DYNAMICS_ROOT = os.path.join("dynamics", "checkpoints")
_PHASE = re.compile(r"phase(\d+)")


@dataclasses.dataclass(frozen=True)
class Run:
  """One stage of an mpcodec run restored from its checkpoint at one step.

  Attributes:
    workdir: the run's workdir (absolute).
    stage: the stage's name (see the module docstring): "phase2", "sae", "mlp_128_64@mnist", ...
    step: the step restored.
    kind: "mono_poly", "dynamics", "sae", "squeezer" or "other".
    params: the trained parameters, run axis first: a Flax "params" collection (mono_poly, dynamics), the
      SAE's or the Squeezer's weights as trained (`w_enc_NxD`, `b_enc_N`, `w_dec_NxD`, `b_dec_D`, in the
      input scale of `state["input_scale"]`), or the state's "params" entry (other; None without one).
    config: the run's config as saved (JSON): the full config where the run saved it, else the part that
      decides training.
    seeds: how the run names each entry of the run axis (seed numbers, or "k=8 seed 0").
    steps: every step saved for this stage.
    state: the whole train state (optimizer and counters too), run axis first.
    history: the stage's metrics over all its steps ({name: (runs, steps or measurements, ...)}), NaN
      after the restored step; {} if none.
    metadata: all JSON saved with the checkpoint.
    directory: the stage's checkpoint folder.
  """

  workdir: str
  stage: str
  step: int
  kind: str
  params: Any = dataclasses.field(repr=False)
  config: dict = dataclasses.field(repr=False)
  seeds: tuple
  steps: tuple[int, ...]
  state: Any = dataclasses.field(repr=False)
  history: dict = dataclasses.field(repr=False)
  metadata: dict = dataclasses.field(repr=False)
  directory: str = ""

  @property
  def num_runs(self) -> int:
    """Length of the leading run axis of `params` and `state`."""
    return int(jax.tree.leaves(self.state)[0].shape[0])

  def where(self) -> str:
    """How errors name this checkpoint: workdir, stage and step."""
    return _where(self.workdir, self.stage, self.step)


def _where(workdir: str, stage: str | None = None, step: int | None = None) -> str:
  parts = [f"run {workdir}"]
  if stage is not None:
    parts.append(f"stage {stage}")
  if step is not None:
    parts.append(f"step {step}")
  return " ".join(parts)


def _has_steps(directory: str) -> bool:
  """Whether `directory` holds at least one step-numbered checkpoint folder."""
  return os.path.isdir(directory) and any(name.isdigit() and os.path.isdir(os.path.join(directory, name))
                                          for name in os.listdir(directory))


def stages(workdir: str | os.PathLike) -> dict[str, str]:
  """{stage name: checkpoint folder} of every stage of `workdir` that holds checkpoints, sorted by name.

  Looks in `<workdir>/checkpoints/<stage>/` and `<workdir>/dynamics/checkpoints/<arch>__<dataset>/train/`
  (stage "<arch>@<dataset>"); a workdir without either gives {}.
  """
  workdir = os.path.abspath(os.fspath(workdir))
  found = {}
  root = os.path.join(workdir, "checkpoints")
  if os.path.isdir(root):
    for name in os.listdir(root):
      if _has_steps(os.path.join(root, name)):
        found[name] = os.path.join(root, name)
  root = os.path.join(workdir, _DYNAMICS_ROOT)
  if os.path.isdir(root):
    for name in os.listdir(root):
      directory = os.path.join(root, name, "train")
      if "__" in name and _has_steps(directory):
        arch, _, dataset = name.partition("__")
        found[f"{arch}@{dataset}"] = directory
  return dict(sorted(found.items()))


def _choose_stage(workdir: str, found: dict[str, str], stage: str | None) -> str:
  """`stage` if the workdir has it; for None the only stage, or the last phase<N> of a phased run."""
  if stage is not None:
    if stage not in found:
      raise CheckpointError(f"{_where(workdir)}: no stage {stage!r} with checkpoints; stages: {sorted(found)}")
    return stage
  if len(found) == 1:
    return next(iter(found))
  phases = [name for name in found if _PHASE.fullmatch(name)]
  if phases:  # mono->poly: phase2 (its control arm, "control", is asked for by name)
    return max(phases, key=lambda name: int(_PHASE.fullmatch(name).group(1)))
  raise CheckpointError(f"{_where(workdir)} holds several stages {sorted(found)}: pass stage=")


def _kind(metadata: dict, state: Any) -> str:
  if checkpointed.ACTIVATION_SOURCE in metadata:
    return "mono_poly"
  if str(metadata.get("study", "")).startswith("dynamics"):
    return "dynamics"
  if isinstance(state, dict) and {"squeezer", "sae"} <= set(state):
    return "squeezer"
  if isinstance(state, dict) and "input_scale" in state and "w_dec_NxD" in (state.get("params") or {}):
    return "sae"
  return "other"


def _subtree(tree: Any, path: list, where: str) -> Any:
  node = tree
  for depth, key in enumerate(path):
    if not isinstance(node, dict) or key not in node:
      raise CheckpointError(f"{where}: the saved state has no {path[:depth + 1]} (params_path {path})")
    node = node[key]
  return node


def _params(kind: str, saved: Any, metadata: dict, where: str) -> Any:
  state = saved["state"]
  if kind == "mono_poly":
    block = checkpointed.activation_source_block(metadata, where)
    return _subtree(saved, list(block.get("params_path") or []), where)
  if kind == "dynamics":
    return _subtree(state, ["params", "params"], where)
  if kind == "squeezer":
    return state["squeezer"]["params"]
  return state.get("params") if isinstance(state, dict) else None


def load(workdir: str | os.PathLike, stage: str | None = None, step: int | None = None) -> Run:
  """The parameters, config and step of one stage of an mpcodec run (the latest step by default).

  Args:
    workdir: the `--workdir` of a launch (mono_poly, dynamics, codec).
    stage: one of `stages(workdir)`; None picks the only stage, or the last phase<N> (mono->poly's
      phase2).
    step: a saved step of that stage; None for the latest.
  Returns:
    A `Run` (arrays with the run axis first, every array checked against the checksum saved with it).
  Raises:
    CheckpointError naming the workdir, stage and step: no such workdir, no checkpoints, an unknown
    stage or step, a corrupt checkpoint.
  """
  workdir = os.path.abspath(os.fspath(workdir))
  if not os.path.isdir(workdir):
    raise CheckpointError(f"{_where(workdir)}: no such directory (pass the --workdir of a launch)")
  found = stages(workdir)
  if not found:
    raise CheckpointError(f"{_where(workdir)}: no checkpoints (looked for checkpoints/<stage>/<step>/ and "
                          f"{_DYNAMICS_ROOT}/<arch>__<dataset>/train/<step>/)")
  stage = _choose_stage(workdir, found, stage)
  directory = found[stage]
  store = CheckpointStore(directory)
  try:
    steps = tuple(store.all_steps())
    step = steps[-1] if step is None else int(step)
    if step not in steps:
      raise CheckpointError(f"{_where(workdir, stage, step)}: no such step; saved steps: {list(steps)}")
    metadata = store.restore_metadata(step)
    saved = store.restore_as_saved(step)
  finally:
    store.close()
  where = _where(workdir, stage, step)
  if not isinstance(saved, dict) or "state" not in saved:
    raise CheckpointError(f"{where}: the saved tree has no 'state' entry: not a checkpoint of mpcodec's run loop")
  kind = _kind(metadata, saved["state"])
  history = saved.get("history", {})
  history = history.get(metadata.get("phase", ""), history) if isinstance(history, dict) else {}
  config = metadata.get("full_config", metadata.get("config", {}))
  num_runs = int(jax.tree.leaves(saved["state"])[0].shape[0])
  seeds = tuple(metadata.get("seeds", range(num_runs)))
  return Run(workdir=workdir, stage=stage, step=step, kind=kind, params=_params(kind, saved, metadata, where),
             config=config, seeds=seeds, steps=steps, state=saved["state"], history=history,
             metadata=metadata, directory=directory)


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
