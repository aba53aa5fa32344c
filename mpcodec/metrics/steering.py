"""Steering a model at one layer: norm-matched vectors, the probe's class distribution, drift and the SNR.

A steering vector v is added to a layer's activations x_t. Its size is set relative to each token's own
activation norm (norm-matched): δ_t = α·‖x_t‖·v/‖v‖, so a strength α means the same thing for a theme
(the sum of many atoms' decoder rows), a single atom and a difference of class means, whatever the raw
length of each vector. Turner et al. (2023), "Activation Addition", add vectors at a chosen scale; the
difference of means is the DiffMean baseline of Marks & Tegmark (2023) and Wu et al. (2025, AxBench).

All functions are pure and jittable and act on the last axis (vectors) or the last two (batches), so a
leading seed or strength axis vmaps through.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mpcodec.core.errors import DataError
from mpcodec.metrics.shapes import check_axis, check_rank

_EPS = 1e-12


def _check_same_last_axis(func: str, names: tuple[str, str], a, b, rank: int, dims: str) -> None:
  """Both at least `rank`-D with the same last axis (leading axes broadcast)."""
  shape = check_rank(func, names[0], a, rank, dims, leading=True)
  check_rank(func, names[1], b, rank, dims, leading=True)
  check_axis(func, names[1], b, -1, shape[-1], f"the last axis of {names[0]}")


def unit_direction(vector_D: jax.Array, eps: float = _EPS) -> jax.Array:
  """v / ‖v‖₂ along the last axis; a zero vector stays zero (it steers nowhere)."""
  check_rank("unit_direction", "vector_D", vector_D, 1, "..., features", leading=True)
  norm = jnp.linalg.norm(vector_D, axis=-1, keepdims=True)
  return jnp.where(norm > eps, vector_D / jnp.maximum(norm, eps), 0.0)


def norm_matched_delta(direction_D: jax.Array, acts_TxD: jax.Array, strength: jax.Array | float,
                       mask_T: jax.Array | None = None) -> jax.Array:
  """Per-token steering deltas δ_t = α·‖x_t‖₂·v̂, shape of `acts_TxD` (any leading token axes).

  ‖δ_t‖ = α‖x_t‖ exactly for a non-zero v; tokens with mask 0 (padding) get δ = 0.
  """
  func = "norm_matched_delta"
  width = check_rank(func, "direction_D", direction_D, 1, "features")[0]
  shape = check_rank(func, "acts_TxD", acts_TxD, 1, "..., features", leading=True)
  check_axis(func, "acts_TxD", acts_TxD, -1, width, "D (the features of direction_D)")
  if mask_T is not None and jnp.shape(mask_T) != shape[:-1]:
    raise DataError(f"{func}: mask_T needs the shape {shape[:-1]} of acts_TxD's token axes, got shape "
                    f"{jnp.shape(mask_T)}")
  norms_T1 = jnp.linalg.norm(acts_TxD, axis=-1, keepdims=True)
  delta_TxD = strength * norms_T1 * unit_direction(direction_D)
  if mask_T is not None:
    delta_TxD = delta_TxD * mask_T[..., None].astype(delta_TxD.dtype)
  return delta_TxD


def theme_vector(decoder_NxD: jax.Array, members_N: jax.Array) -> jax.Array:
  """A theme's steering vector: the sum of its member atoms' decoder rows, Σ_{i ∈ theme} W_dec[i]."""
  num_atoms = check_rank("theme_vector", "decoder_NxD", decoder_NxD, 2, "atoms, features")[0]
  check_rank("theme_vector", "members_N", members_N, 1, "..., atoms", leading=True)
  check_axis("theme_vector", "members_N", members_N, -1, num_atoms, "N (the atoms of decoder_NxD)")
  return members_N.astype(decoder_NxD.dtype) @ decoder_NxD


def difference_of_means(acts_NxD: jax.Array, is_target_N: jax.Array) -> jax.Array:
  """DiffMean: mean of the target rows minus mean of the other rows, μ₊ − μ₋ (shape (D,)).

  Both groups must be non-empty (an empty group's mean is taken as 0).
  """
  shape = check_rank("difference_of_means", "acts_NxD", acts_NxD, 2, "..., samples, features", leading=True)
  check_rank("difference_of_means", "is_target_N", is_target_N, 1, "samples")
  check_axis("difference_of_means", "is_target_N", is_target_N, 0, shape[-2], "N (the samples of acts_NxD)")
  target_N = is_target_N.astype(acts_NxD.dtype)
  mean_target = target_N @ acts_NxD / jnp.maximum(jnp.sum(target_N), 1.0)
  mean_other = (1.0 - target_N) @ acts_NxD / jnp.maximum(jnp.sum(1.0 - target_N), 1.0)
  return mean_target - mean_other


def class_probabilities(logits_BxC: jax.Array) -> jax.Array:
  """softmax over the last axis."""
  check_rank("class_probabilities", "logits_BxC", logits_BxC, 1, "..., classes", leading=True)
  return jax.nn.softmax(logits_BxC, axis=-1)


def mean_class_probability(logits_BxC: jax.Array, target: int | jax.Array) -> jax.Array:
  """Mean over the batch of p(target | x) = softmax(logits)[target]."""
  check_rank("mean_class_probability", "logits_BxC", logits_BxC, 2, "..., batch, classes", leading=True)
  return jnp.mean(class_probabilities(logits_BxC)[..., target], axis=-1)


def kl_divergence(reference_logits_BxC: jax.Array, steered_logits_BxC: jax.Array) -> jax.Array:
  """Per-item KL(p ‖ q) = Σ_c p_c (log p_c − log q_c) of p = softmax(reference), q = softmax(steered).

  Computed from log-softmax, so it is finite for any finite logits; 0 for identical distributions.
  """
  _check_same_last_axis("kl_divergence", ("reference_logits_BxC", "steered_logits_BxC"), reference_logits_BxC,
                        steered_logits_BxC, 1, "..., classes")
  log_p = jax.nn.log_softmax(reference_logits_BxC, axis=-1)
  log_q = jax.nn.log_softmax(steered_logits_BxC, axis=-1)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def cosine_drift(reference_BxE: jax.Array, steered_BxE: jax.Array, eps: float = _EPS) -> jax.Array:
  """Per-item 1 − cos(e, e') of a clean and a steered embedding: 0 unmoved, 2 reversed."""
  _check_same_last_axis("cosine_drift", ("reference_BxE", "steered_BxE"), reference_BxE, steered_BxE, 1,
                        "..., embedding")
  dot = jnp.sum(reference_BxE * steered_BxE, axis=-1)
  norms = jnp.linalg.norm(reference_BxE, axis=-1) * jnp.linalg.norm(steered_BxE, axis=-1)
  return 1.0 - dot / jnp.maximum(norms, eps)


def population_snr(delta_BxE: jax.Array, target_direction_E: jax.Array, eps: float = _EPS) -> jax.Array:
  """Signal-to-noise ratio of steering effects δ_b along a target direction u:

    SNR = Σ_b (δ_b · û) / Σ_b ‖δ_b − (δ_b · û) û‖₂,

  the on-target component of the effect over its off-target part, pooled over the batch. With atoms
  d_i = s·û + n_i whose off-target parts n_i are independent with equal norm σ, the sum of N atoms has
  on-target N·s and off-target about √N·σ, so SNR ≈ √N·s/σ: the "√N" law of population steering.
  Rescaling δ (norm matching) leaves it unchanged. On the model, δ_b is the change of item b's sentence
  embedding and u the direction that raises the target class's probe logit against the others.
  """
  width = check_rank("population_snr", "target_direction_E", target_direction_E, 1, "embedding")[0]
  check_rank("population_snr", "delta_BxE", delta_BxE, 2, "..., batch, embedding", leading=True)
  check_axis("population_snr", "delta_BxE", delta_BxE, -1, width, "E (the embedding of target_direction_E)")
  unit_E = unit_direction(target_direction_E)
  along_B = delta_BxE @ unit_E
  off_BxE = delta_BxE - along_B[..., None] * unit_E
  return jnp.sum(along_B, axis=-1) / jnp.maximum(jnp.sum(jnp.linalg.norm(off_BxE, axis=-1), axis=-1), eps)


def log_log_slope(x_K: jax.Array, y_K: jax.Array) -> jax.Array:
  """Least-squares slope β of log y = β·log x + c (the scaling exponent; 0.5 for y ∝ √x).

  x and y must be positive (a non-positive value gives NaN, which the caller records).
  """
  _check_same_last_axis("log_log_slope", ("x_K", "y_K"), x_K, y_K, 1, "..., points")
  log_x, log_y = jnp.log(x_K), jnp.log(y_K)
  centred_x = log_x - jnp.mean(log_x, axis=-1, keepdims=True)
  centred_y = log_y - jnp.mean(log_y, axis=-1, keepdims=True)
  return jnp.sum(centred_x * centred_y, axis=-1) / jnp.sum(jnp.square(centred_x), axis=-1)
