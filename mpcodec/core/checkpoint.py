"""Orbax save / restore of stacked (seed-axis) train states, with JSON metadata and checksums beside them.

Layout of one store: `<directory>/<step>/state/` (the array pytree), `<directory>/<step>/metadata/`
(JSON: resolved config, seed list, anything the run wants to find again) and
`<directory>/<step>/integrity/` (JSON: a fingerprint of every array). Saves are asynchronous
(one writer thread per store; `wait()` blocks until every save is on disk). Orbax keeps process-global
state per save (its operation id), so stores used from several threads at once (the dynamics grid's runs
side by side) would cross their saves: every Orbax call holds one process-wide lock, a save until it is
on disk.
Restore always passes an explicit target, so a checkpoint written by 8 devices loads in a 1-device
process (or the reverse), and verifies every array against its fingerprint: flipped bits in a file stop
the restore with one message naming the step, instead of training on from garbage.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging as std_logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from absl import logging
from etils import epath

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mpcodec.core.errors import CheckpointError, DiskFullError, is_disk_full
from mpcodec.core.sharding import to_host

STATE_ITEM = "state"
METADATA_ITEM = "metadata"
INTEGRITY_ITEM = "integrity"


class _OrbaxInfoFilter(std_logging.Filter):
  """Drops Orbax's INFO lines (several per save and restore, also from its background threads), so a
  run's log stays readable; warnings pass."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


std_logging.getLogger("absl").addFilter(_OrbaxInfoFilter())

# Held by every Orbax call of every store; a save holds it until its files are on disk (see above).
_ORBAX = threading.RLock()


def _abstract_target(target: Any) -> Any:
  """ShapeDtypeStructs carrying the target's sharding, or the default device for host arrays."""
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # this process's (multi-process runs)

  def leaf(x):
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
      sharding = default
    return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype,
                                sharding=sharding)

  return jax.tree.map(leaf, target)


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
  """sum_j bits_j * (2j + 1) mod 2^32 over the array's 32-bit words.

  Any single flipped bit changes word j by +-2^b, hence the sum by 2^b * (2j + 1) != 0 mod 2^32: it is
  always detected; larger corruptions escape with probability about 2^-32.
  """
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    words = x.astype(jnp.uint32)
  elif jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    words = jax.random.key_data(x).astype(jnp.uint32)
  elif x.dtype.itemsize == 4:
    words = jax.lax.bitcast_convert_type(x, jnp.uint32)
  elif x.dtype.itemsize in (1, 2):
    words = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}")).astype(jnp.uint32)
  else:  # 8-byte types split into two 32-bit words.
    words = jax.lax.bitcast_convert_type(x, jnp.uint32)
  words = words.reshape(-1)
  weights = 2 * jnp.arange(words.size, dtype=jnp.uint32) + 1
  return jnp.sum(words * weights, dtype=jnp.uint32)


@jax.jit
def _fingerprints(tree: Any) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.zeros((0,), jnp.uint32)
  return jnp.stack([_leaf_fingerprint(x) for x in leaves])


def fingerprints(tree: Any) -> dict[str, int]:
  """{array path: 32-bit fingerprint} of a pytree of arrays (computed on device; any sharding)."""
  paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
  values = to_host(_fingerprints(tree)) if paths else []  # to_host: the arrays may span several processes
  return {path: int(v) for path, v in zip(paths, values)}


class CheckpointStore:
  """Step-numbered checkpoints of one pytree plus JSON metadata in one directory.

  In a run of several processes a store is this process's alone (a reader: process 0's analysis), unless
  `all_processes`: then every process opens it, saves and restores together (the training loop), and
  Orbax synchronises them at each of these calls.
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = None, all_processes: bool = False):
    self.directory = os.path.abspath(os.fspath(directory))
    if jax.process_count() == 1 or all_processes:
      options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    else:  # Orbax would wait for every process at its first call (it creates the folder itself).
      os.makedirs(self.directory, exist_ok=True)
      me = jax.process_index()
      options = ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=False,
          multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me}))
    with _ORBAX:
      self._manager = ocp.CheckpointManager(
          self.directory, options=options, item_names=(STATE_ITEM, METADATA_ITEM, INTEGRITY_ITEM))
    # Background saves go through one writer thread, in order: each waits until it is on disk (about
    # 20 ms for a small state on 2 cores), and the training thread must not.
    self._writer: concurrent.futures.ThreadPoolExecutor | None = None
    self._pending: list[concurrent.futures.Future] = []

  def all_steps(self) -> list[int]:
    self.wait()
    with _ORBAX:
      self._manager.reload()
      return sorted(int(s) for s in self._manager.all_steps())

  def step_or_latest(self, step: int | None, what: str = "checkpoint") -> int:
    """`step`, or the latest step when None; CheckpointError naming the folder when there is none."""
    steps = self.all_steps()
    if not steps:
      raise CheckpointError(f"no {what} in {self.directory}")
    return steps[-1] if step is None else int(step)

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, metadata: dict, wait: bool = True,
           checksums: dict[str, int] | None = None, on_saved: Callable[[], None] | None = None) -> None:
    """Writes `state`, `metadata` and the arrays' fingerprints at `step`.

    With `wait=False` the call returns at once and the files are written in the background (one writer
    thread, saves in order; with several processes the save is made and finished here, since every
    process must join Orbax's saves in the same order): the caller must not change `state` in place
    (donate it) afterwards. A failed background save raises at the next `save` or `wait`. `checksums`
    (from `fingerprints(state)`) saves computing them again when the caller has them. `on_saved()` is
    called once the step is on disk (from the writer thread when in the background).
    """
    checksums = fingerprints(state) if checksums is None else checksums
    self._raise_failed_saves()
    if wait or jax.process_count() > 1:
      self.wait()
      self._write_and_confirm(int(step), state, metadata, checksums, on_saved)
      return
    if self._writer is None:
      self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
    self._pending.append(self._writer.submit(self._write_and_confirm, int(step), state, metadata, checksums,
                                             on_saved))

  def _write_and_confirm(self, step: int, state: Any, metadata: dict, checksums: dict[str, int],
                         on_saved: Callable[[], None] | None) -> None:
    self._write(step, state, metadata, checksums)
    if on_saved is not None:
      on_saved()

  def _write(self, step: int, state: Any, metadata: dict, checksums: dict[str, int]) -> None:
    """One save, on disk when this returns (holding the process-wide lock throughout)."""
    args = ocp.args.Composite(**{
        STATE_ITEM: ocp.args.StandardSave(state), METADATA_ITEM: ocp.args.JsonSave(metadata),
        INTEGRITY_ITEM: ocp.args.JsonSave({"fingerprints": checksums,
                                           "metadata_sha256": _metadata_digest(metadata)})})
    with _ORBAX:
      try:
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
      except Exception as e:  # pylint: disable=broad-except
        if is_disk_full(e):
          raise self._disk_full(f"step {step}") from e
        raise

  def _finish(self) -> None:
    """Orbax's `wait_until_finished`, a full disk turned into one DiskFullError."""
    try:
      with _ORBAX:
        self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      if is_disk_full(e):
        raise self._disk_full("the latest step") from e
      raise

  def _disk_full(self, which: str) -> DiskFullError:
    try:  # Saves before the failed one may still be finishing (they may fail too: then they are not good).
      with _ORBAX:
        self._manager.wait_until_finished()
    except Exception:  # pylint: disable=broad-except
      pass
    try:
      with _ORBAX:
        self._manager.reload()
      good = sorted(int(s) for s in self._manager.all_steps())  # Orbax lists finished saves only.
    except Exception:  # pylint: disable=broad-except
      good = []
    last = (f"the last good checkpoint is step {good[-1]} in {self.directory}" if good
            else f"no checkpoint in {self.directory} was completed")
    return DiskFullError(f"no space left on the device of {self.directory} (saving the checkpoint of {which}); "
                         f"{last}; free some space (or choose another --workdir) and run the same command "
                         f"again to resume")

  def _raise_failed_saves(self) -> None:
    done = [f for f in self._pending if f.done()]
    self._pending = [f for f in self._pending if not f.done()]
    for future in done:
      future.result()

  def wait(self) -> None:
    """Blocks until every save started so far is on disk; raises the error of a failed one."""
    pending, self._pending = self._pending, []
    for future in pending:
      future.result()
    self._finish()

  def delete(self, step: int) -> None:
    """Removes the checkpoint at `step`."""
    self.wait()
    with _ORBAX:
      self._manager.delete(int(step))

  def delete_after(self, step: int) -> None:
    """Removes the checkpoints after `step` (a run resumed from an earlier step writes them again)."""
    self.wait()
    for later in [s for s in self.all_steps() if s > step]:
      with _ORBAX:
        self._manager.delete(later)

  def _require_step(self, step: int) -> None:
    if step not in self.all_steps():
      available = self.all_steps()
      raise CheckpointError(
          f"no checkpoint at step {step} in {self.directory}; available steps: {available or 'none'}")

  def restore(self, step: int, target: Any) -> Any:
    """Restores the state at `step` onto the structure, shapes and shardings of `target`."""
    self._require_step(step)
    self._require_checksums(step)  # Before reading any array: a step that cannot be verified is refused.
    try:
      restored = self._restore(step, **{STATE_ITEM: ocp.args.StandardRestore(_abstract_target(target))})
    except Exception as e:  # Orbax raises many types for missing files, bad shapes, corrupt data.
      raise CheckpointError(
          f"checkpoint at step {step} in {self.directory} could not be restored "
          f"({type(e).__name__}: {_first_line(e)}){self._earlier_hint(step)}") from e
    state = restored[STATE_ITEM]
    self._verify(step, state)
    return state

  def restore_as_saved(self, step: int) -> Any:
    """Restores the state at `step` as it was saved (structure, shapes, dtypes), on the default device.

    For readers without the code that wrote the checkpoint: the target is built from Orbax's own
    metadata of the state item (read by a standalone handler: the manager returns an item's metadata only
    once a handler for it is registered, i.e. after a save or restore of it), every array placed on the
    first local device of this process, then restored and verified against its checksums by `restore`.
    Named tuples and dataclasses of the saved state come back as dicts.
    """
    self._require_step(step)
    self._require_checksums(step)
    handler = ocp.StandardCheckpointHandler()
    try:
      with _ORBAX:
        saved = handler.metadata(epath.Path(self.directory) / str(step) / STATE_ITEM)
    except Exception as e:  # Orbax raises many types for missing or unreadable metadata files.
      raise CheckpointError(
          f"the array metadata of the checkpoint at step {step} in {self.directory} could not be read "
          f"({type(e).__name__}: {_first_line(e)})") from e
    finally:
      handler.close()
    if saved is None:
      raise CheckpointError(f"the checkpoint at step {step} in {self.directory} holds no array metadata")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype, sharding=device),
                          getattr(saved, "tree", saved), is_leaf=_is_array_metadata)
    return self.restore(step, target)

  def _restore(self, step: int, **items) -> Any:
    with _ORBAX:
      return self._manager.restore(int(step), args=ocp.args.Composite(**items))

  def _earlier_hint(self, step: int) -> str:
    earlier = [s for s in self.all_steps() if s < step]
    if not earlier:
      return ""
    return (f"; the previous checkpoint is step {earlier[-1]}: delete {os.path.join(self.directory, str(step))} "
            f"(and any later step) to resume from it")

  def _require_checksums(self, step: int) -> None:
    if not os.path.exists(os.path.join(self.directory, str(step), INTEGRITY_ITEM)):
      raise CheckpointError(
          f"checkpoint at step {step} in {self.directory} cannot be verified: its checksums ({INTEGRITY_ITEM}/) "
          f"are missing, so it may be corrupt{self._earlier_hint(step)}")

  def _verify(self, step: int, state: Any) -> None:
    """Compares every restored array with the fingerprint saved beside it.

    Every save writes the fingerprints, so a step without them lost a file and cannot be trusted: it is
    refused like a corrupt one. Paths are compared in canonical form (`_canonical_path`), so a state
    restored by `restore_as_saved`, whose named tuples came back as dicts, is checked like one restored
    onto the original structure.
    """
    self._require_checksums(step)
    try:
      saved = self._restore(step, **{INTEGRITY_ITEM: ocp.args.JsonRestore()})[INTEGRITY_ITEM]["fingerprints"]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"checksums of the checkpoint at step {step} in {self.directory} could not be "
                            f"read ({type(e).__name__}: {_first_line(e)}){self._earlier_hint(step)}") from e
    saved = {_canonical_path(path): value for path, value in saved.items()}
    restored = fingerprints(state)
    bad = [path for path, value in restored.items() if saved.get(_canonical_path(path)) != value]
    if bad:
      raise CheckpointError(
          f"checkpoint at step {step} in {self.directory} is corrupt: {len(bad)} array(s) differ from the "
          f"checksums saved with them (first: {bad[0]}){self._earlier_hint(step)}")

  def restore_metadata(self, step: int) -> dict:
    """The JSON metadata saved with the checkpoint at `step`, verified against its digest (an edited or
    damaged file is corruption, refused naming the previous step, like damaged arrays)."""
    self._require_step(step)
    self._require_checksums(step)
    try:
      restored = self._restore(step, **{METADATA_ITEM: ocp.args.JsonRestore(),
                                        INTEGRITY_ITEM: ocp.args.JsonRestore()})
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"metadata of the checkpoint at step {step} in {self.directory} could not be read, it may be corrupt "
          f"({type(e).__name__}: {_first_line(e)}){self._earlier_hint(step)}") from e
    metadata, integrity = restored[METADATA_ITEM], restored[INTEGRITY_ITEM]
    if not isinstance(metadata, dict):
      raise CheckpointError(f"metadata of the checkpoint at step {step} in {self.directory} is not a JSON object, "
                            f"it may be corrupt{self._earlier_hint(step)}")
    digest = integrity.get("metadata_sha256") if isinstance(integrity, dict) else None
    if digest is not None and digest != _metadata_digest(metadata):
      raise CheckpointError(f"metadata of the checkpoint at step {step} in {self.directory} is corrupt: it differs "
                            f"from the digest saved with it{self._earlier_hint(step)}")
    return metadata

  def close(self) -> None:
    try:
      self.wait()
    finally:
      if self._writer is not None:
        self._writer.shutdown(wait=True)
        self._writer = None
      with _ORBAX:
        self._manager.close()


def _metadata_digest(metadata: Any) -> str:
  """SHA-256 of the metadata as JSON with sorted keys (the same before the save and after a restore)."""
  text = json.dumps(json.loads(json.dumps(metadata)), sort_keys=True)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_array_metadata(x: Any) -> bool:
  """Whether `x` is one leaf of Orbax's saved-tree metadata (an array or a scalar: it has shape and dtype)."""
  return hasattr(x, "shape") and hasattr(x, "dtype")


_PATH_ENTRY = re.compile(r"""\[('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?\d+)\]|\.(\w+)""")


def _canonical_path(path: str) -> str:
  """A `jax.tree_util.keystr` path with attribute entries written as dict keys: `[0].mu` -> `[0]['mu']`.

  Orbax's saved metadata turns named tuples and dataclasses into dicts, so a tree rebuilt from it names
  a leaf `['count']` where the saved tree named it `.count`. A path that does not parse stays as it is.
  """
  entries, end = [], 0
  for match in _PATH_ENTRY.finditer(path):
    if match.start() != end:
      return path
    entries.append(f"[{match.group(1)}]" if match.group(1) is not None else f"[{match.group(2)!r}]")
    end = match.end()
  return "".join(entries) if end == len(path) else path


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return text[0][:300] if text else ""
