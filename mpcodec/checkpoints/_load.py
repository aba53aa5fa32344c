"""`load` and `stages`: one stage of a run's checkpoint folders restored, with its metadata, as a `Run`
(see the package docstring of `mpcodec.checkpoints` for the layout and the run kinds)."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import jax

from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import CheckpointError
from mpcodec.models import checkpointed

KINDS = ("mono_poly", "dynamics", "sae", "squeezer", "other")
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
