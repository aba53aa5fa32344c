"""Superposition metrics of a toy model's embedding matrix W (m x n; column W_i embeds feature i).

All functions are pure and jittable; they act on the last two axes, so a leading seed (or grid) axis
vmaps or broadcasts through. Reference: Elhage et al. 2022, Toy Models of Superposition, section 6
("Superposition and dimensionality") and section 7 (privileged basis).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mpcodec.core.errors import DataError
from mpcodec.metrics.shapes import check_axis, check_rank

# Norm above which a feature counts as represented (the paper's plots use ||W_i|| ≈ 1 vs ≈ 0).
REPRESENTED_NORM = 0.5

# Codes of `classify_two_feature_solution` (n = 2, m = 1 phase diagram).
NOT_REPRESENTED, DEDICATED_DIMENSION, SUPERPOSITION, OTHER = 0, 1, 2, 3
SOLUTION_NAMES: tuple[str, ...] = ("not represented", "dedicated dimension", "superposition", "other")

_DIMS = "..., hidden m, features n"


def _check_weights(func: str, weights_MxN, name: str = "weights_MxN") -> tuple[int, ...]:
  return check_rank(func, name, weights_MxN, 2, _DIMS, leading=True)


def dimensions_per_feature_total(weights_MxN: jax.Array) -> jax.Array:
  """Dimensions per feature D* = m / ||W||_F² (Elhage et al. 2022, section 6)."""
  _check_weights("dimensions_per_feature_total", weights_MxN)
  hidden_dim = weights_MxN.shape[-2]
  return hidden_dim / jnp.sum(jnp.square(weights_MxN), axis=(-2, -1))


def feature_dimensionality(weights_MxN: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Per-feature dimensionality D_i = ||W_i||² / Σ_j (Ŵ_i · W_j)², shape (..., n).

  Ŵ_i = W_i / ||W_i||; the j = i term equals the numerator, so D_i <= 1, with 1 for a dedicated
  dimension and 1/k for k features sharing one antipodal/regular arrangement. An unrepresented feature
  (W_i = 0) gets 0. Reference: Elhage et al. 2022, section 6, "Feature dimensionality".
  """
  _check_weights("feature_dimensionality", weights_MxN)
  norms_sq_N = jnp.sum(jnp.square(weights_MxN), axis=-2)
  unit_MxN = weights_MxN / jnp.sqrt(jnp.maximum(norms_sq_N, eps))[..., None, :]
  overlaps_NxN = jnp.einsum("...mi,...mj->...ij", unit_MxN, weights_MxN)
  denominator_N = jnp.sum(jnp.square(overlaps_NxN), axis=-1)
  return jnp.where(norms_sq_N > eps, norms_sq_N / jnp.maximum(denominator_N, eps), 0.0)


def represented_features(weights_MxN: jax.Array, threshold: float = REPRESENTED_NORM) -> jax.Array:
  """Boolean (..., n): feature i is represented when ||W_i|| > threshold."""
  _check_weights("represented_features", weights_MxN)
  return jnp.linalg.norm(weights_MxN, axis=-2) > threshold


def num_represented_features(weights_MxN: jax.Array, threshold: float = REPRESENTED_NORM) -> jax.Array:
  """Number of features with ||W_i|| > threshold."""
  _check_weights("num_represented_features", weights_MxN)
  return jnp.sum(represented_features(weights_MxN, threshold), axis=-1)


def feature_participation_per_neuron(weights_MxN: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Features each hidden neuron carries, as a participation ratio of its positive weights, (..., m).

  For neuron j with w_i = max(W_ji, 0): (Σ_i w_i²)² / Σ_i w_i⁴, which is k for k equal weights and 1
  for a monosemantic neuron; 0 for a neuron with no positive weight. Only positive weights count because in
  the ReLU-hidden model a neuron fires for feature i alone only when W_ji > 0 (negative weights inhibit).
  Meaningful for the "relu_hidden" variant, whose ReLU privileges the neuron basis (Elhage et al. 2022,
  section 7, where neurons are called monosemantic or polysemantic by the features they respond to).
  """
  _check_weights("feature_participation_per_neuron", weights_MxN)
  squared_MxN = jnp.square(jax.nn.relu(weights_MxN))
  total_M = jnp.sum(squared_MxN, axis=-1)
  return jnp.where(total_M > eps,
                   jnp.square(total_M) / jnp.maximum(jnp.sum(jnp.square(squared_MxN), axis=-1), eps),
                   0.0)


def classify_two_feature_solution(weights_1x2: jax.Array, threshold: float = REPRESENTED_NORM
                                  ) -> jax.Array:
  """Classifies an n = 2, m = 1 solution by what happens to feature 2 (index 1), int32 code.

  NOT_REPRESENTED: only feature 1 is represented; DEDICATED_DIMENSION: only feature 2 is (it owns the
  one dimension); SUPERPOSITION: both ||W_i|| > threshold and W_1·W_2 < 0 (antipodal pair); OTHER:
  anything else (neither represented, or both on the same side). Reference: Elhage et al. 2022,
  section 4 ("Superposition as a phase change"), phase diagram of the n = 2, m = 1 model.
  """
  shape = _check_weights("classify_two_feature_solution", weights_1x2, "weights_1x2")
  if shape[-2:] != (1, 2):
    raise DataError(f"classify_two_feature_solution: weights_1x2 needs m = 1 hidden and n = 2 features on its last "
                    f"two axes, got shape {shape}")
  represented_2 = represented_features(weights_1x2, threshold)
  first, second = represented_2[..., 0], represented_2[..., 1]
  antipodal = jnp.sum(weights_1x2[..., 0] * weights_1x2[..., 1], axis=-1) < 0
  return jnp.select(
      [first & ~second, second & ~first, first & second & antipodal],
      [NOT_REPRESENTED, DEDICATED_DIMENSION, SUPERPOSITION], OTHER).astype(jnp.int32)


def embedding_angle_gaps(weights_2xN: jax.Array) -> jax.Array:
  """Angles in degrees between angularly consecutive feature embeddings of an m = 2 model, (..., n).

  Sorts the directions atan2(W_2i, W_1i) and returns the n gaps around the circle (they sum to 360);
  a regular pentagon gives five gaps of 72.
  """
  _check_weights("embedding_angle_gaps", weights_2xN, "weights_2xN")
  check_axis("embedding_angle_gaps", "weights_2xN", weights_2xN, -2, 2, "m = 2 hidden dimensions")
  angles_N = jnp.sort(jnp.degrees(jnp.arctan2(weights_2xN[..., 1, :], weights_2xN[..., 0, :])), axis=-1)
  wrapped_N = jnp.concatenate([angles_N[..., 1:], angles_N[..., :1] + 360.0], axis=-1)
  return wrapped_N - angles_N

