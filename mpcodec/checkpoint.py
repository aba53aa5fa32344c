"""Orbax save / restore of stacked (seed-axis) train states, with JSON metadata beside the arrays.

Layout of one store: `<directory>/<step>/state/` (the array pytree) and `<directory>/<step>/metadata/`
(JSON: resolved config, seed list, anything the run wants to find again). Restore always passes an
explicit target, so a checkpoint written by 8 devices loads in a 1-device process (or the reverse).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

from absl import logging

import jax
import numpy as np
import orbax.checkpoint as ocp

STATE_ITEM = "state"
METADATA_ITEM = "metadata"


@contextlib.contextmanager
def _quiet_orbax():
  """Orbax logs every save and restore at INFO through absl; keep a run's log readable."""
  previous = logging.get_verbosity()
  logging.set_verbosity(min(previous, logging.WARNING))  # absl: lower verbosity = fewer messages
  try:
    yield
  finally:
    logging.set_verbosity(previous)


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or does not match the expected structure."""


def _quiet(method):
  @functools.wraps(method)
  def wrapper(*args, **kwargs):
    with _quiet_orbax():
      return method(*args, **kwargs)
  return wrapper


def _abstract_target(target: Any) -> Any:
  """ShapeDtypeStructs carrying the target's sharding, or the default device for host arrays."""
  default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def leaf(x):
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
      sharding = default
    return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype,
                                sharding=sharding)

  return jax.tree.map(leaf, target)


class CheckpointStore:
  """Step-numbered checkpoints of one pytree plus JSON metadata in one directory."""

  @_quiet
  def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = None):
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=(STATE_ITEM, METADATA_ITEM))

  @_quiet
  def all_steps(self) -> list[int]:
    self._manager.reload()
    return sorted(int(s) for s in self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  @_quiet
  def save(self, step: int, state: Any, metadata: dict) -> None:
    """Writes `state` and `metadata` at `step` and waits until both are on disk."""
    self._manager.save(
        int(step),
        args=ocp.args.Composite(**{
            STATE_ITEM: ocp.args.StandardSave(state),
            METADATA_ITEM: ocp.args.JsonSave(metadata),
        }),
        force=True)
    self._manager.wait_until_finished()

  def _require_step(self, step: int) -> None:
    if step not in self.all_steps():
      available = self.all_steps()
      raise CheckpointError(
          f"no checkpoint at step {step} in {self.directory}; available steps: {available or 'none'}")

  @_quiet
  def restore(self, step: int, target: Any) -> Any:
    """Restores the state at `step` onto the structure, shapes and shardings of `target`."""
    self._require_step(step)
    try:
      restored = self._manager.restore(
          int(step), args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(
              _abstract_target(target))}))
    except Exception as e:  # Orbax raises many types for missing files, bad shapes, corrupt data.
      raise CheckpointError(
          f"checkpoint at step {step} in {self.directory} could not be restored "
          f"({type(e).__name__}: {_first_line(e)})") from e
    return restored[STATE_ITEM]

  @_quiet
  def restore_metadata(self, step: int) -> dict:
    """The JSON metadata saved with the checkpoint at `step`."""
    self._require_step(step)
    try:
      restored = self._manager.restore(
          int(step), args=ocp.args.Composite(**{METADATA_ITEM: ocp.args.JsonRestore()}))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"metadata of the checkpoint at step {step} in {self.directory} could not be read "
          f"({type(e).__name__}: {_first_line(e)})") from e
    metadata = restored[METADATA_ITEM]
    if not isinstance(metadata, dict):
      raise CheckpointError(f"metadata of the checkpoint at step {step} in {self.directory} is not a JSON object")
    return metadata

  @_quiet
  def close(self) -> None:
    self._manager.close()


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return text[0][:300] if text else ""
