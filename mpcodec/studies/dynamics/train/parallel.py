"""The grid's configurations side by side, one per local device, instead of one after another.

Each worker thread owns one device (a one-device mesh, so the configuration's state, data and compiled
chunks live there) and takes the next configuration from a shared queue when its last one ends; XLA
runs the devices' programs at the same time (JAX dispatch is asynchronous and drops the GIL while a
device computes). A configuration's numbers do not depend on which device or worker trains it or on
what trains beside it: every run is the same pure program of its config and keys, so the results equal
those of training the configurations in turn (tested with 8 fake CPU devices).

Within one host; with `--shard=I/N` each host trains its own part of the grid this way.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from mpcodec.core import sharding


class Locked:
  """A progress bar shared by the worker threads: each call holds one lock."""

  def __init__(self, bar):
    self._bar, self._lock = bar, threading.Lock()

  def __getattr__(self, name):
    method = getattr(self._bar, name)

    def call(*args, **kwargs):
      with self._lock:
        return method(*args, **kwargs)
    return call


def device_meshes(devices: Sequence[Any] | None = None) -> list[Mesh]:
  """One one-device seed mesh per local device (all seeds of a configuration on that device)."""
  devices = jax.local_devices() if devices is None else devices
  return [Mesh(np.asarray([device]), (sharding.SEED_AXIS,)) for device in devices]


def train_side_by_side(runs: Sequence[str], train: Callable[[str, Mesh, dict], Any],
                       meshes: Sequence[Mesh]) -> Any:
  """Yields (run, outcome) as each run ends, training up to len(meshes) runs at once.

  `train(run, mesh, cache)` trains one run on `mesh` (with `cache`, the worker's compile cache) and
  returns its outcome; an exception it raises is re-raised here once the runs in flight have ended (and
  been yielded); the runs not started by then stay untrained.
  Runs are taken in the order given, so runs of one architecture next to each other reuse a worker's
  compiled programs where they land on the same worker.
  """
  todo: queue.Queue = queue.Queue()
  for run in runs:
    todo.put(run)
  done: queue.Queue = queue.Queue()
  stop = threading.Event()

  def worker(mesh: Mesh):
    cache: dict = {}
    while not stop.is_set():
      try:
        run = todo.get_nowait()
      except queue.Empty:
        return
      try:
        done.put((run, train(run, mesh, cache), None))
      except BaseException as e:  # pylint: disable=broad-except
        stop.set()   # no new runs; those in flight finish
        done.put((run, None, e))

  threads = [threading.Thread(target=worker, args=(mesh,), name=f"dynamics-device-{i}", daemon=True)
             for i, mesh in enumerate(meshes[:max(1, len(runs))])]
  for thread in threads:
    thread.start()
  error, pending = None, len(runs)
  while pending:
    try:
      run, outcome, exception = done.get(timeout=0.2)
    except queue.Empty:
      if not any(t.is_alive() for t in threads) and done.empty():
        break   # after an error: the runs not started stay untrained
      continue
    pending -= 1
    if exception is not None:
      error = error or exception
    else:
      yield run, outcome   # also after another run's error: a trained run is still written
  for thread in threads:
    thread.join()
  if error is not None:
    raise error
