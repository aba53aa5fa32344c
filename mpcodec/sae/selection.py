"""Which latents fire: Top-K and BatchTopK selection of pre-activations, as sparse codes.

Selections are exact and deterministic: ties are broken toward the lower latent index (Top-K) or the
lower flat index row·N + latent (BatchTopK), as `lax.top_k` breaks them (tested against numpy).
k may be a traced scalar: the static `k_max` largest entries are taken and ranks >= k masked to 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Codes(NamedTuple):
  """Sparse codes as T = C·B (value, row, column) triples; masked entries have value 0.

  T = k_max·B for both activations, stored chunk-major (C = k_max chunks of B entries): for TopK, entry
  t = c·B + b is the rank-c choice of row b, so each chunk holds every row once in order; for
  BatchTopK rows are arbitrary.
  """

  values_T: jax.Array
  rows_T: jax.Array
  cols_T: jax.Array


def topk_select(pre_BxN: jax.Array, k: jax.Array | int, k_max: int) -> Codes:
  """The k largest pre-activations of every row (ranks >= k masked to value 0), ReLU applied.

  Ties are broken toward the lower latent index (lax.top_k is stable), so selection is deterministic.
  """
  batch = pre_BxN.shape[0]
  values_BxK, cols_BxK = jax.lax.top_k(pre_BxN, k_max)
  keep_K = jnp.arange(k_max) < k
  values_BxK = jnp.where(keep_K, jax.nn.relu(values_BxK), 0.0)
  rows_KxB = jnp.broadcast_to(jnp.arange(batch), (k_max, batch))
  return Codes(values_BxK.T.reshape(-1), rows_KxB.reshape(-1), cols_BxK.T.reshape(-1))


def batch_topk_select(pre_BxN: jax.Array, k: jax.Array | int, k_max: int) -> Codes:
  """The k·B largest pre-activations across the whole batch, ReLU applied (Bussmann et al. 2024).

  Exactly k·B (row, latent) pairs are selected; ties are broken toward the lower flat index
  row·N + latent, so selection is deterministic.
  """
  batch, num_latents = pre_BxN.shape
  values_T, flat_T = jax.lax.top_k(pre_BxN.reshape(-1), k_max * batch)
  keep_T = jnp.arange(k_max * batch) < k * batch
  values_T = jnp.where(keep_T, jax.nn.relu(values_T), 0.0)
  return Codes(values_T, flat_T // num_latents, flat_T % num_latents)


def dense_codes(codes: Codes, batch: int, num_latents: int) -> jax.Array:
  """(B, N) activations from sparse codes (masked entries add 0)."""
  return jnp.zeros((batch, num_latents), codes.values_T.dtype).at[codes.rows_T, codes.cols_T].add(
      codes.values_T)
