"""Geometry of hidden neurons' incoming weights: entropy, L2 norm and pairwise angles.

`w_in_DxH` is a Dense kernel as Flax stores it (inputs x neurons), so neuron h's incoming weight vector
is column h. All functions are pure, jittable and work under `jax.vmap` over a leading seed axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mpcodec.core.errors import DataError
from mpcodec.metrics.shapes import check_rank

_DIMS = "inputs, neurons"


def weight_entropy(w_in_DxH: jax.Array) -> jax.Array:
  """Shannon entropy (nats) of each neuron's normalised absolute incoming weights, shape (H,).

  p_d = |w_dh| / sum_d |w_dh|, entropy_h = -sum_d p_d log p_d with 0 log 0 = 0; an all-zero column
  has entropy 0. The maximum, log D, is reached when all weights have equal magnitude.
  """
  check_rank("weight_entropy", "w_in_DxH", w_in_DxH, 2, _DIMS)
  abs_w_DxH = jnp.abs(w_in_DxH)
  total_H = abs_w_DxH.sum(axis=0)
  p_DxH = abs_w_DxH / jnp.where(total_H > 0, total_H, 1.0)
  positive_DxH = p_DxH > 0
  # log of a safe value, so 0 * log 0 is exactly 0 rather than NaN.
  log_p_DxH = jnp.log(jnp.where(positive_DxH, p_DxH, 1.0))
  return -jnp.sum(jnp.where(positive_DxH, p_DxH * log_p_DxH, 0.0), axis=0)


def weight_l2_norm(w_in_DxH: jax.Array) -> jax.Array:
  """L2 norm of each neuron's incoming weight vector, ||w_:h||_2, shape (H,)."""
  check_rank("weight_l2_norm", "w_in_DxH", w_in_DxH, 2, _DIMS)
  return jnp.sqrt(jnp.sum(jnp.square(w_in_DxH), axis=0))


def pairwise_angles_degrees(w_in_DxH: jax.Array) -> jax.Array:
  """Angle between every pair of neurons' incoming weight vectors in degrees, shape (H, H).

  angle_ij = arccos(clip(w_i . w_j / (||w_i|| ||w_j||), -1, 1)) * 180 / pi. A zero vector has no
  direction: its angle to every vector (itself included) is defined as 90 degrees. The diagonal of a
  non-zero vector is exactly 0 (arccos of a rounded 1 would give a spurious ~0.02 degrees in float32).
  """
  check_rank("pairwise_angles_degrees", "w_in_DxH", w_in_DxH, 2, _DIMS)
  norm_H = weight_l2_norm(w_in_DxH)
  nonzero_H = norm_H > 0
  unit_DxH = w_in_DxH / jnp.where(nonzero_H, norm_H, 1.0)
  # A zero column stays zero, so its cosine is 0 and its angle 90 degrees, as documented.
  cosine_HxH = jnp.clip(unit_DxH.T @ unit_DxH, -1.0, 1.0)
  angles_HxH = jnp.degrees(jnp.arccos(cosine_HxH))
  self_pair_HxH = jnp.eye(norm_H.shape[0], dtype=bool) & nonzero_H[:, None]
  return jnp.where(self_pair_HxH, 0.0, angles_HxH)


def mean_pairwise_angle_degrees(w_in_DxH: jax.Array) -> jax.Array:
  """Mean angle in degrees over the H (H - 1) / 2 distinct neuron pairs i < j; needs H >= 2."""
  num_neurons = check_rank("mean_pairwise_angle_degrees", "w_in_DxH", w_in_DxH, 2, _DIMS)[1]
  if num_neurons < 2:
    raise DataError(f"mean_pairwise_angle_degrees: w_in_DxH needs at least 2 neurons on axis 1, got shape "
                    f"{w_in_DxH.shape}")
  rows, cols = jnp.triu_indices(num_neurons, k=1)
  return pairwise_angles_degrees(w_in_DxH)[rows, cols].mean()
