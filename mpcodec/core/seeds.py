"""The one seed scheme of every study.

Every random number of a run comes from a key that is a function of (base seed, seed index, purpose)
only:

  seed_key(base, i, purpose)  = fold_in(fold_in(fold_in(PRNGKey(base), PER_SEED), i), purpose_id(purpose))
  shared_key(base, purpose)   = fold_in(fold_in(PRNGKey(base), SHARED), purpose_id(purpose))

- Adding seeds never changes existing ones: seed i's keys do not depend on how many seeds run.
- Purposes never share random numbers: "init", "data_order", "probe", "analysis", "squeezer_init", ...
  are folded in as a stable 31-bit hash of the name (CRC-32), so a new purpose changes no old one.
- What all seeds share (one minibatch order, a probe set) comes from `shared_key`, which no seed index
  reaches.
- Within a run, step t draws from `fold_in(key, t)` (the absolute step), so a resumed run draws exactly
  what an uninterrupted one does.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Streams folded into the base key first, so per-seed and shared keys never coincide.
PER_SEED, SHARED = 0, 1


def purpose_id(purpose: str) -> int:
  """The stable integer of a purpose name (CRC-32 of its UTF-8 bytes, 31 bits)."""
  if not purpose:
    raise ValueError("a key purpose needs a name, e.g. 'init' or 'data_order'")
  return zlib.crc32(purpose.encode("utf-8")) & 0x7FFFFFFF


def seed_key(base_seed: int, index: int | jax.Array, purpose: str) -> jax.Array:
  """The key of seed `index` for `purpose`, from `base_seed`; jittable and vmappable over `index`."""
  per_seed = jax.random.fold_in(jax.random.PRNGKey(base_seed), PER_SEED)
  return jax.random.fold_in(jax.random.fold_in(per_seed, index), purpose_id(purpose))


def seed_keys(base_seed: int, indices: Sequence[int] | int, purpose: str) -> jax.Array:
  """(S, 2) keys of the seeds `indices` (or range(indices) for an int) for `purpose`."""
  if isinstance(indices, int):
    indices = range(indices)
  index_S = jnp.asarray(list(indices), jnp.uint32)
  return jax.vmap(lambda i: seed_key(base_seed, i, purpose))(index_S)


def shared_key(base_seed: int, purpose: str) -> jax.Array:
  """The key that every seed shares for `purpose` (e.g. one minibatch order for the whole sweep)."""
  shared = jax.random.fold_in(jax.random.PRNGKey(base_seed), SHARED)
  return jax.random.fold_in(shared, purpose_id(purpose))

