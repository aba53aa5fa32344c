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
