"""Metrics of sparse autoencoders and of codes compressed into fewer neurons: pure functions of arrays.

All functions but the Hungarian-matching ones are jittable and vmappable over a leading seed axis.
`matched_pair_correlation` and `matched_cosine_similarity` solve an assignment problem with
scipy.optimize.linear_sum_assignment on the host (numpy in, float out); they are not jittable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.metrics.shapes import check_axis, check_rank


def _check_same_shape(func: str, name: str, array, reference_name: str, reference, rank: int, dims: str) -> None:
  """Both arrays have rank `rank` and `array` has the shape of `reference`."""
  shape = check_rank(func, reference_name, reference, rank, dims)
  check_rank(func, name, array, rank, dims)
  for axis in range(rank):
    check_axis(func, name, array, axis, shape[axis], f"the size of {reference_name}")


def _check_pair(func: str, a_name: str, a, b_name: str, b, axis: int, dims_a: str, dims_b: str, meaning: str
                ) -> None:
  """Two matrices that share one axis (rows of both, or the feature axis D)."""
  size = check_rank(func, a_name, a, 2, dims_a)[axis]
  check_rank(func, b_name, b, 2, dims_b)
  check_axis(func, b_name, b, axis, size, f"{meaning} of {a_name}")


def fraction_of_variance_unexplained(x_BxD: jax.Array, x_hat_BxD: jax.Array) -> jax.Array:
  """FVU = Σ_b ||x_b - x̂_b||² / Σ_b ||x_b - x̄||², with x̄ the mean over the batch."""
  _check_same_shape("fraction_of_variance_unexplained", "x_hat_BxD", x_hat_BxD, "x_BxD", x_BxD, 2, "samples, features")
  error = jnp.sum(jnp.square(x_BxD - x_hat_BxD))
  variance = jnp.sum(jnp.square(x_BxD - jnp.mean(x_BxD, axis=0)))
  return error / variance


def sum_squared_error(x_BxD: jax.Array, x_hat_BxD: jax.Array) -> jax.Array:
  """Σ_b ||x_b - x̂_b||²."""
  _check_same_shape("sum_squared_error", "x_hat_BxD", x_hat_BxD, "x_BxD", x_BxD, 2, "samples, features")
  return jnp.sum(jnp.square(x_BxD - x_hat_BxD))


def l0(acts_BxN: jax.Array) -> jax.Array:
  """Mean number of nonzero latents per token."""
  check_rank("l0", "acts_BxN", acts_BxN, 2, "tokens, latents")
  return jnp.mean(jnp.sum(acts_BxN != 0, axis=-1))


def firing_counts(acts_BxN: jax.Array) -> jax.Array:
  """(N,) number of tokens on which each latent is nonzero; add them up over a window of batches."""
  check_rank("firing_counts", "acts_BxN", acts_BxN, 2, "tokens, latents")
  return jnp.sum(acts_BxN != 0, axis=0).astype(jnp.int32)


def dead_fraction(counts_N: jax.Array) -> jax.Array:
  """Fraction of latents that never fired in the window."""
  check_rank("dead_fraction", "counts_N", counts_N, 1, "latents")
  return jnp.mean(counts_N == 0)


def dense_fraction(counts_N: jax.Array, num_tokens: int | jax.Array, dense_above: float = 0.1
                   ) -> jax.Array:
  """Fraction of latents that fire on more than `dense_above` of the window's tokens."""
  check_rank("dense_fraction", "counts_N", counts_N, 1, "latents")
  return jnp.mean(counts_N / num_tokens > dense_above)


def log10_firing_frequency(counts_N: jax.Array, num_tokens: int | jax.Array) -> jax.Array:
  """log10(count / num_tokens) per latent; -inf for a latent that never fired."""
  check_rank("log10_firing_frequency", "counts_N", counts_N, 1, "latents")
  frequency = counts_N / num_tokens
  return jnp.where(counts_N > 0, jnp.log10(jnp.maximum(frequency, 1e-38)), -jnp.inf)


def latent_density_histogram(counts_N: jax.Array, num_tokens: int | jax.Array, num_bins: int = 40,
                             low: float = -7.0) -> tuple[jax.Array, jax.Array]:
  """Histogram of log10 firing frequency over [low, 0] for live latents: (counts (bins,), edges).

  Dead latents are not in the histogram (see `dead_fraction`); frequencies below 10**low fall in the
  first bin.
  """
  check_rank("latent_density_histogram", "counts_N", counts_N, 1, "latents")
  edges = jnp.linspace(low, 0.0, num_bins + 1)
  log_frequency = log10_firing_frequency(counts_N, num_tokens)
  clipped = jnp.clip(log_frequency, low, 0.0)
  bins = jnp.clip(jnp.searchsorted(edges, clipped, side="right") - 1, 0, num_bins - 1)
  hist = jnp.zeros(num_bins, jnp.int32).at[bins].add((counts_N > 0).astype(jnp.int32))
  return hist, edges


def cosine_similarity_matrix(a_MxD: jax.Array, b_NxD: jax.Array) -> jax.Array:
  """(M, N) cosines between the rows of a and the rows of b."""
  _check_pair("cosine_similarity_matrix", "a_MxD", a_MxD, "b_NxD", b_NxD, 1, "rows, features", "rows, features",
              "D (the features")
  a = a_MxD / jnp.maximum(jnp.linalg.norm(a_MxD, axis=-1, keepdims=True), 1e-12)
  b = b_NxD / jnp.maximum(jnp.linalg.norm(b_NxD, axis=-1, keepdims=True), 1e-12)
  return a @ b.T


def mean_max_cosine_similarity(learned_MxD: jax.Array, true_NxD: jax.Array) -> jax.Array:
  """(1/N) Σ_i max_j cos(true_i, learned_j): how well every true atom is found by some learned row.

  Reference: Sharkey et al. 2022, "Taking features out of superposition with sparse autoencoders" (MMCS).
  """
  _check_pair("mean_max_cosine_similarity", "learned_MxD", learned_MxD, "true_NxD", true_NxD, 1,
              "learned atoms, features", "true atoms, features", "D (the features")
  return jnp.mean(jnp.max(cosine_similarity_matrix(true_NxD, learned_MxD), axis=-1))


def pearson_correlation_matrix(a_BxM: jax.Array, b_BxN: jax.Array) -> jax.Array:
  """(M, N) Pearson correlations between the columns of a and b over the batch; 0 for a constant column."""
  _check_pair("pearson_correlation_matrix", "a_BxM", a_BxM, "b_BxN", b_BxN, 0, "samples, columns", "samples, columns",
              "B (the samples")
  a = a_BxM - jnp.mean(a_BxM, axis=0)
  b = b_BxN - jnp.mean(b_BxN, axis=0)
  norm_a = jnp.sqrt(jnp.sum(a * a, axis=0))
  norm_b = jnp.sqrt(jnp.sum(b * b, axis=0))
  covariance = a.T @ b
  denominator = norm_a[:, None] * norm_b[None, :]
  return jnp.where(denominator > 0, covariance / jnp.where(denominator > 0, denominator, 1.0), 0.0)


def hungarian_mean(similarity_MxN: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
  """(mean, rows, cols): the one-to-one matching of rows to columns that maximises the total similarity,
  and its mean similarity (host side, scipy.optimize.linear_sum_assignment)."""
  # Imported here: only the host matching needs SciPy's optimisers, and importing them costs time.
  import scipy.optimize  # pylint: disable=g-import-not-at-top
  similarity = np.asarray(similarity_MxN, np.float64)
  rows, cols = scipy.optimize.linear_sum_assignment(similarity, maximize=True)
  return float(similarity[rows, cols].mean()), rows, cols


def matched_pair_correlation(learned_acts_BxM: jax.Array, true_coeffs_BxN: jax.Array) -> float:
  """Mean Pearson correlation of latent/feature pairs under the best one-to-one (Hungarian) matching.

  Host-side (scipy.optimize.linear_sum_assignment); min(M, N) pairs are matched.
  """
  _check_pair("matched_pair_correlation", "learned_acts_BxM", learned_acts_BxM, "true_coeffs_BxN", true_coeffs_BxN,
              0, "samples, latents", "samples, features", "B (the samples")
  correlation = np.asarray(pearson_correlation_matrix(learned_acts_BxM, true_coeffs_BxN))
  return hungarian_mean(correlation)[0]


def matched_cosine_similarity(learned_MxD: jax.Array, true_NxD: jax.Array) -> float:
  """Mean cosine of learned/true atom pairs under the best one-to-one (Hungarian) matching (host side)."""
  _check_pair("matched_cosine_similarity", "learned_MxD", learned_MxD, "true_NxD", true_NxD, 1,
              "learned atoms, features", "true atoms, features", "D (the features")
  return hungarian_mean(np.asarray(cosine_similarity_matrix(learned_MxD, true_NxD)))[0]


def faithfulness_ratio(x_BxD: jax.Array, x_hat_sae_BxD: jax.Array, x_hat_compressed_BxD: jax.Array
                       ) -> jax.Array:
  """Σ||x - x̂_compressed||² / Σ||x - x̂_sae||²: the error of the reconstruction through the SAE and a
  compression of its codes into fewer neurons, over the SAE's own (1 is ideal, larger is worse)."""
  for name, x_hat_BxD in (("x_hat_sae_BxD", x_hat_sae_BxD), ("x_hat_compressed_BxD", x_hat_compressed_BxD)):
    _check_same_shape("faithfulness_ratio", name, x_hat_BxD, "x_BxD", x_BxD, 2, "samples, features")
  return sum_squared_error(x_BxD, x_hat_compressed_BxD) / sum_squared_error(x_BxD, x_hat_sae_BxD)


def latents_per_neuron(w_enc_MxN: jax.Array, live_latents_N: jax.Array) -> jax.Array:
  """(M,) number of live latents whose largest encoder weight goes to each of M neurons.

  `w_enc_MxN` encodes N latents into M neurons. Latent i is assigned to neuron argmax_m W_enc[m, i] (the
  neuron it drives most: the latents are non-negative codes and a Top-K encoder keeps its K largest
  pre-activations); dead latents are not counted.
  """
  num_latents = check_rank("latents_per_neuron", "w_enc_MxN", w_enc_MxN, 2, "neurons, latents")[1]
  check_rank("latents_per_neuron", "live_latents_N", live_latents_N, 1, "latents")
  check_axis("latents_per_neuron", "live_latents_N", live_latents_N, 0, num_latents, "N (the latents of w_enc_MxN)")
  num_neurons = w_enc_MxN.shape[0]
  owner_N = jnp.argmax(w_enc_MxN, axis=0)
  return jnp.zeros(num_neurons, jnp.int32).at[owner_N].add(live_latents_N.astype(jnp.int32))


# The former name (deprecated): kept for code written against it.
features_per_neuron = latents_per_neuron
