"""The seed axis over a 1-D device mesh, and multi-host start-up.

A sweep's state carries a leading seed axis. When more than one device is visible the seed axis is
sharded over a mesh with one axis named "seed"; the training code is unchanged, because jit follows the
input shardings (every per-seed computation is independent, so no collectives are needed).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seed"


def maybe_initialize_distributed() -> None:
  """Starts jax.distributed when launched as one process of several (cluster env vars present)."""
  markers = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
  if any(os.environ.get(m) for m in markers) and jax.process_count() == 1:
    try:
      jax.distributed.initialize()
    except (RuntimeError, ValueError):
      # A single-process launch on a cluster node: carry on with the local devices.
      pass


def seed_mesh(num_seeds: int) -> Mesh | None:
  """1-D mesh over the largest number of devices that divides `num_seeds`; None for one device."""
  devices = jax.devices()
  count = len(devices)
  while count > 1 and num_seeds % count:
    count -= 1
  if count <= 1:
    return None
  return Mesh(np.asarray(devices[:count]), (SEED_AXIS,))


def seed_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def shard_seeds(tree, mesh: Mesh | None):
  """Places every leaf's leading (seed) axis across the mesh; identity when mesh is None."""
  if mesh is None:
    return tree
  return jax.device_put(tree, seed_sharding(mesh))


def replicate(tree, mesh: Mesh | None):
  """Places every leaf whole on every device of the mesh; identity when mesh is None."""
  if mesh is None:
    return tree
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def _put(tree, mesh: Mesh | None, spec: PartitionSpec):
  """Places every leaf with `spec` on the mesh; works with several processes (each holds the whole host
  array, or the leaf is already a global array)."""
  if tree is None:
    return None
  if mesh is None:
    return jax.tree.map(jax.numpy.asarray, tree)
  target = NamedSharding(mesh, spec)

  def leaf(x):
    if isinstance(x, jax.Array) and (jax.process_count() == 1 or not x.is_fully_addressable):
      return jax.device_put(x, target)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, target, lambda index: host[index])

  return jax.tree.map(leaf, tree)


def put_seed_axis(tree, mesh: Mesh | None):
  """Every leaf's leading (seed) axis split over the mesh (any number of processes)."""
  return _put(tree, mesh, PartitionSpec(SEED_AXIS))


def put_replicated(tree, mesh: Mesh | None):
  """Every leaf whole on every device of the mesh (any number of processes)."""
  return _put(tree, mesh, PartitionSpec())


def to_host(tree):
  """Every leaf as a whole numpy array on the host, also when its shards live in several processes."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
  return jax.tree.map(np.asarray, jax.device_get(tree))
