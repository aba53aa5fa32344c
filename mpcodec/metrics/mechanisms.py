"""Mechanistic measures read at checkpoints: attention entropy, filter similarity, sparsity, selectivity.

Pure and jittable; each vmaps over a leading seed axis (shapes and class counts are static).

Which sparsity where: `activation_sparsity` (fraction of exact zeros) is the measure for ReLU outputs
(the MLP's hidden layers, the CNN's stages after ReLU and pooling), where a unit is off exactly. The
Transformer's residual streams (and any GELU or LayerNorm output) are almost never exactly zero, so
there `hoyer_sparsity`, a continuous measure, applies.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mpcodec.core.errors import ActivationError
from mpcodec.metrics import selectivity
from mpcodec.metrics.shapes import check_axis, check_rank


def _sample_weights(func: str, acts: jax.Array, mask) -> jax.Array:
  """Float weights over acts.shape[:-1]: 1 for positions that count, 0 for padding."""
  if mask is None:
    return jnp.ones(acts.shape[:-1], jnp.float32)
  mask = jnp.asarray(mask)
  if mask.shape != acts.shape[:-1]:
    raise ActivationError(f"{func}: mask needs the leading shape {acts.shape[:-1]} of acts (all axes but the "
                          f"units), got shape {mask.shape}")
  return mask.astype(jnp.float32)


def attention_entropy(probs_NxHxTxT, key_mask_NxT) -> jax.Array:
  """Mean entropy (nats) of each head's attention distributions over real query positions, shape (H,).

  H_h = sum_{n, q real} (-sum_k p_nhqk log p_nhqk) / #{(n, q) real}, with 0 log 0 = 0. A head that
  attends uniformly to the T_real real keys scores log(T_real); one that attends to one key scores 0.
  Padding queries are left out (their rows are artefacts of the mask); padding keys carry probability
  ~0 in the zoo's attention and add nothing.
  """
  func = "attention_entropy"
  num_samples, _, length, _ = check_rank(func, "probs_NxHxTxT", probs_NxHxTxT, 4, "samples, heads, queries T, keys T",
                                         error=ActivationError)
  check_axis(func, "probs_NxHxTxT", probs_NxHxTxT, 3, length, "T (one key per query position)",
             error=ActivationError)
  check_rank(func, "key_mask_NxT", key_mask_NxT, 2, "samples, keys", error=ActivationError)
  check_axis(func, "key_mask_NxT", key_mask_NxT, 0, num_samples, "N (the samples of probs_NxHxTxT)",
             error=ActivationError)
  check_axis(func, "key_mask_NxT", key_mask_NxT, 1, length, "T (the keys of probs_NxHxTxT)", error=ActivationError)
  probs_NxHxTxT = jnp.asarray(probs_NxHxTxT, jnp.float32)
  key_mask_NxT = jnp.asarray(key_mask_NxT, bool)
  positive = probs_NxHxTxT > 0
  plogp = jnp.where(positive, probs_NxHxTxT * jnp.log(jnp.where(positive, probs_NxHxTxT, 1.0)), 0.0)
  entropy_NxHxT = -jnp.sum(plogp, axis=-1)
  weights_NxT = key_mask_NxT.astype(jnp.float32)
  total_H = jnp.einsum("nht,nt->h", entropy_NxHxT, weights_NxT)
  return total_H / jnp.maximum(jnp.sum(weights_NxT), 1.0)


def head_specialisation(entropy_H) -> jax.Array:
  """Spread of attention entropy across heads: population SD sqrt(mean_h (H_h - mean H)^2), scalar.

  The heads of a layer are the whole population, hence ddof 0; 0 when every head attends alike.
  """
  check_rank("head_specialisation", "entropy_H", entropy_H, 1, "one entropy per head", error=ActivationError)
  entropy_H = jnp.asarray(entropy_H, jnp.float32)
  return jnp.std(entropy_H)


def filter_cosine_similarity(kernel_KhxKwxCinxCout) -> jax.Array:
  """Mean |cosine similarity| between distinct output filters, scalar in [0, 1] (lower: more orthogonal).

  Filters are the kernel's columns after flattening every axis but the last (Kh*Kw*Cin, Cout), so a
  dense kernel (Din, Dout) works too. mean_{i != j} |w_i . w_j| / (||w_i|| ||w_j||); a zero filter has
  cosine 0 with every other.
  """
  check_rank("filter_cosine_similarity", "kernel_KhxKwxCinxCout", kernel_KhxKwxCinxCout, 2,
             "..., filter inputs, output filters", leading=True, error=ActivationError)
  kernel = jnp.asarray(kernel_KhxKwxCinxCout, jnp.float32)
  if kernel.shape[-1] < 2:
    raise ActivationError(f"filter_cosine_similarity: kernel_KhxKwxCinxCout needs >= 2 output filters on its last "
                          f"axis, got shape {kernel.shape}")
  filters_FxC = jnp.reshape(kernel, (-1, kernel.shape[-1]))
  norms_C = jnp.linalg.norm(filters_FxC, axis=0)
  unit_FxC = filters_FxC / jnp.where(norms_C > 0, norms_C, 1.0)
  cosine_CxC = jnp.abs(unit_FxC.T @ unit_FxC)
  num_filters = kernel.shape[-1]
  off_diagonal = ~jnp.eye(num_filters, dtype=bool)
  return jnp.sum(jnp.where(off_diagonal, cosine_CxC, 0.0)) / (num_filters * (num_filters - 1))


def activation_sparsity(acts, mask=None, eps: float = 0.0) -> jax.Array:
  """Fraction of activations with |a| <= eps (exactly zero by default), scalar in [0, 1].

  Units are the last axis; mask (acts.shape[:-1]) leaves padding positions out. For ReLU outputs.
  """
  check_rank("activation_sparsity", "acts", acts, 1, "..., units", leading=True, error=ActivationError)
  acts = jnp.asarray(acts, jnp.float32)
  if eps < 0:
    raise ActivationError(f"activation_sparsity: eps must be >= 0, got {eps}")
  weights = _sample_weights("activation_sparsity", acts, mask)
  zero_fraction = jnp.mean((jnp.abs(acts) <= eps).astype(jnp.float32), axis=-1)
  return jnp.sum(zero_fraction * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def hoyer_sparsity(acts, mask=None) -> jax.Array:
  """Mean Hoyer sparsity of the activation vectors (last axis), scalar in [0, 1].

  hoyer(a) = (sqrt(D) - ||a||_1 / ||a||_2) / (sqrt(D) - 1): 1 for a vector with one non-zero entry,
  0 for one whose entries all have the same magnitude; a zero vector counts as 1 (every entry is off).
  Averaged over positions that count under mask (acts.shape[:-1]). Hoyer (2004), JMLR 5, 1457.
  """
  check_rank("hoyer_sparsity", "acts", acts, 1, "..., units", leading=True, error=ActivationError)
  acts = jnp.asarray(acts, jnp.float32)
  width = acts.shape[-1]
  if width < 2:
    raise ActivationError(f"hoyer_sparsity: acts needs vectors of >= 2 units on its last axis, got shape "
                          f"{acts.shape}")
  weights = _sample_weights("hoyer_sparsity", acts, mask)
  l1 = jnp.sum(jnp.abs(acts), axis=-1)
  l2 = jnp.linalg.norm(acts, axis=-1)
  ratio = jnp.where(l2 > 0, l1 / jnp.where(l2 > 0, l2, 1.0), 1.0)
  hoyer = (math.sqrt(width) - ratio) / (math.sqrt(width) - 1.0)
  return jnp.sum(hoyer * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def _check_acts_and_labels(func: str, acts_NxD, labels_N) -> None:
  num_samples = check_rank(func, "acts_NxD", acts_NxD, 2, "samples, units", error=ActivationError)[0]
  check_rank(func, "labels_N", labels_N, 1, "samples", error=ActivationError)
  check_axis(func, "labels_N", labels_N, 0, num_samples, "N (the samples of acts_NxD)", error=ActivationError)


def class_selectivity(acts_NxD, labels_N, num_classes: int) -> jax.Array:
  """Class selectivity index of each unit from the class-mean matrix, shape (D,).

  SI = (mu_max - mu_rest) / (mu_max + mu_rest), mu_max the largest class mean of the unit and mu_rest
  the mean of the other classes' means (class means by `selectivity.concept_responses`). For
  non-negative (post-ReLU) activations SI lies in [0, 1]: 1 for a unit that answers one class only, 0
  for one that answers all alike. SI = 0 where mu_max + mu_rest <= 0 (a silent unit; with signed
  activations the index is not defined there). Morcos et al. (2018), "On the importance of single
  directions for generalization", ICLR.
  """
  _check_acts_and_labels("class_selectivity", acts_NxD, labels_N)
  acts_NxD = jnp.asarray(acts_NxD, jnp.float32)
  if num_classes < 2:
    raise ActivationError(f"class_selectivity needs >= 2 classes, got {num_classes}")
  means_CxD = selectivity.concept_responses(acts_NxD, jnp.asarray(labels_N), num_classes)
  top_D = jnp.max(means_CxD, axis=0)
  rest_D = (jnp.sum(means_CxD, axis=0) - top_D) / (num_classes - 1)
  denominator_D = top_D + rest_D
  defined_D = denominator_D > 0
  return jnp.where(defined_D, (top_D - rest_D) / jnp.where(defined_D, denominator_D, 1.0), 0.0)


def class_means(acts_NxD, labels_N, num_classes: int) -> jax.Array:
  """The class-mean matrix (C, D): mean activation of each unit over each class's samples."""
  _check_acts_and_labels("class_means", acts_NxD, labels_N)
  return selectivity.concept_responses(jnp.asarray(acts_NxD, jnp.float32), jnp.asarray(labels_N),
                                       num_classes)
