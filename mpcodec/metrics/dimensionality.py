"""Effective dimensionality of layer activations: jittable measures on a (samples x features) matrix.

Every measure centres the matrix first (subtracts the column means over the rows that count), so a
constant offset never reads as a dimension. The spectral measures (participation ratio, effective rank,
stable rank, components for a variance fraction) share one spectrum computation, `singular_values`.

Conventions:
- Degenerate input: a matrix with no variance (all zeros, a dead layer, a constant layer, no rows that
  count) has dimensionality 0 under every measure; no measure returns NaN or inf for finite input.
  "No variance" means ||X_centred||_F <= 1e-5 ||X||_F, below what float32 resolves around the column
  means.
- Rows that do not count (padding tokens) are given by an optional boolean `row_mask`: they are left
  out of the column means and zeroed after centring, so they add nothing to the spectrum, and TwoNN
  neither measures them nor uses them as neighbours. Shapes stay static, so everything jits.
- A matrix with fewer rows than columns is measured anyway; its rank is capped by the number of rows
  (`is_rank_capped` flags it for the caller's metadata).

How layers become matrices (`layer_matrix`): dense (N, D) as is; convolutions (N*H*W, C) by default or
(N, C) after a spatial mean; token streams (N*T, D), never averaged over features.
"""

from __future__ import annotations

from typing import Literal, Sequence

import jax
import jax.numpy as jnp

from mpcodec.metrics import host_lapack
from mpcodec.metrics.shapes import check_axis, check_rank

# Below this ratio of centred to uncentred Frobenius norm, float32 cannot tell variance from the
# rounding of the column means, so the matrix counts as having no variance.
NO_VARIANCE_RELATIVE_NORM = 1e-5

# Matrices at least this much taller than wide (or wider than tall) go through the small Gram matrix;
# nearer to square, a direct SVD costs about the same and needs no projection step.
GRAM_ASPECT_RATIO = 4

# TwoNN ranks neighbours by Gram-matrix distances (fast, but cancellation makes close pairs inexact),
# then recomputes exact distances to this many best candidates to read off r1 and r2.
TWONN_CANDIDATES = 8

Layout = Literal["dense", "conv", "tokens", "attention"]
ConvMode = Literal["flatten", "spatial_mean"]


def _row_weights(x_NxD: jax.Array, row_mask: jax.Array | None) -> jax.Array:
  """Returns float32 weights (N,), 1 for rows that count and 0 for the others."""
  if row_mask is None:
    return jnp.ones((x_NxD.shape[0],), jnp.float32)
  if row_mask.shape != (x_NxD.shape[0],):
    raise ValueError(f"row_mask has shape {row_mask.shape}, expected ({x_NxD.shape[0]},)")
  return row_mask.astype(jnp.float32)


def _check_matrix(func: str, x_NxD, row_mask) -> None:
  num_rows = check_rank(func, "x_NxD", x_NxD, 2, "samples, features")[0]
  if row_mask is not None:
    check_rank(func, "row_mask", row_mask, 1, "samples")
    check_axis(func, "row_mask", row_mask, 0, num_rows, "N (the rows of x_NxD)")


def centre(x_NxD: jax.Array, row_mask: jax.Array | None = None) -> jax.Array:
  """Subtracts the column means over counted rows and zeroes the rows that do not count."""
  x_NxD = jnp.asarray(x_NxD, jnp.float32)
  weights_N = _row_weights(x_NxD, row_mask)
  count = jnp.maximum(weights_N.sum(), 1.0)
  # An elementwise sum, not a matvec: GPU matmuls may run float32 at TF32 precision, and an inexact
  # mean leaks the offset into the spectrum (a constant layer would stop reading as no variance).
  mean_D = jnp.sum(weights_N[:, None] * x_NxD, axis=0) / count
  return (x_NxD - mean_D) * weights_N[:, None]


def _has_variance(x_NxD: jax.Array, centred_NxD: jax.Array, row_mask: jax.Array | None) -> jax.Array:
  """True when the centred matrix holds variance that float32 can resolve (see module docstring)."""
  weights_N = _row_weights(x_NxD, row_mask)
  raw_sq = jnp.sum(jnp.square(jnp.asarray(x_NxD, jnp.float32) * weights_N[:, None]))
  centred_sq = jnp.sum(jnp.square(centred_NxD))
  return (centred_sq > 0) & (centred_sq > NO_VARIANCE_RELATIVE_NORM**2 * raw_sq)


def singular_values(x_NxD: jax.Array, row_mask: jax.Array | None = None) -> jax.Array:
  """Singular values (descending, min(N, D) of them) of the centred matrix; zeros if it has no variance.

  Chosen from static shapes, both float32-safe:
  - near-square (max(N, D) < GRAM_ASPECT_RATIO * min(N, D)): a direct SVD (values only), whose cost is
    then like an eigendecomposition of the Gram matrix; on a CPU backend with several cores it runs in a
    host callback over the cores (`host_lapack`, the same LAPACK routine: bit-identical values);
  - tall or wide: eigenvectors V of the small Gram matrix (D x D when N >> D, N x N when D >> N), then
    sigma_i = ||X v_i|| measured directly. Reading sigma from the Gram eigenvalues would square the
    condition number and leave noise of order sqrt(eps) * sigma_max on every small singular value;
    projecting keeps it near eps * sigma_max, at the price of one more (N x D x min) matmul.
  """
  _check_matrix("singular_values", x_NxD, row_mask)
  return singular_values_many([x_NxD], [row_mask])[0]


def _is_near_square(shape: tuple[int, ...]) -> bool:
  return max(shape) < GRAM_ASPECT_RATIO * min(shape)


def _tall(centred_NxD: jax.Array) -> jax.Array:
  # X and X^T share their singular values, so work on the side with the smaller Gram.
  return centred_NxD if centred_NxD.shape[0] >= centred_NxD.shape[1] else centred_NxD.T


def _gram(tall_NxD: jax.Array) -> jax.Array:
  return jnp.matmul(tall_NxD.T, tall_NxD, precision=jax.lax.Precision.HIGHEST)


def _projected_singular_values(tall_NxD: jax.Array, eigvecs_DxD: jax.Array) -> jax.Array:
  projected_NxD = jnp.matmul(tall_NxD, eigvecs_DxD, precision=jax.lax.Precision.HIGHEST)
  return jnp.sort(jnp.linalg.norm(projected_NxD, axis=0))[::-1]


def singular_values_many(matrices: Sequence[jax.Array],
                         row_masks: Sequence[jax.Array | None] | None = None) -> list[jax.Array]:
  """`singular_values` of several matrices (e.g. every layer of a network), their decompositions in one
  call: on a CPU backend with several cores one host callback runs them over the cores (`host_lapack`),
  elsewhere XLA's kernels. Values are bit-identical to one `singular_values` call per matrix either way."""
  row_masks = list(row_masks) if row_masks is not None else [None] * len(matrices)
  if len(row_masks) != len(matrices):
    raise ValueError(f"row_masks has {len(row_masks)} entries for {len(matrices)} matrices")
  for x_NxD, row_mask in zip(matrices, row_masks):
    _check_matrix("singular_values_many", x_NxD, row_mask)
  centred = [centre(x_NxD, row_mask) for x_NxD, row_mask in zip(matrices, row_masks)]
  direct = [i for i, c in enumerate(centred) if _is_near_square(c.shape)]
  gram = [i for i in range(len(centred)) if i not in direct]
  talls = {i: _tall(centred[i]) for i in gram}
  grams = {i: _gram(talls[i]) for i in gram}
  # Decompositions large enough to gain from the cores go to the host; small ones cost less in XLA than
  # a callback's round trip (host_lapack.MIN_SIZE).
  use_host = host_lapack.enabled()
  on_host = [i for i, c in enumerate(centred) if use_host and min(c.shape) >= host_lapack.MIN_SIZE]
  host_direct, host_gram = [i for i in direct if i in on_host], [i for i in gram if i in on_host]
  sigmas, eigvecs = {}, {}
  if on_host:
    host_sigmas, host_vectors = host_lapack.decompose([centred[i] for i in host_direct],
                                                      [grams[i] for i in host_gram])
    sigmas.update(zip(host_direct, host_sigmas))
    eigvecs.update(zip(host_gram, host_vectors))
  sigmas.update({i: jnp.linalg.svd(centred[i], compute_uv=False) for i in direct if i not in on_host})
  eigvecs.update({i: jnp.linalg.eigh(grams[i])[1] for i in gram if i not in on_host})
  sigmas.update({i: _projected_singular_values(talls[i], eigvecs[i]) for i in gram})
  return [jnp.where(_has_variance(x_NxD, centred[i], row_mask), sigmas[i], 0.0)
          for i, (x_NxD, row_mask) in enumerate(zip(matrices, row_masks))]


def _safe_ratio(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """numerator / denominator, and 0 where the denominator is 0 (the no-variance convention)."""
  positive = denominator > 0
  return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def participation_ratio_from_sigma(sigma: jax.Array) -> jax.Array:
  """Participation ratio (sum lambda)^2 / sum lambda^2 with lambda = sigma^2."""
  eigvals = jnp.square(sigma)
  return _safe_ratio(jnp.square(eigvals.sum()), jnp.sum(jnp.square(eigvals)))


def effective_rank_from_sigma(sigma: jax.Array) -> jax.Array:
  """Effective rank exp(H(p)), p = sigma / sum sigma (Roy & Vetterli 2007)."""
  total = sigma.sum()
  p = _safe_ratio(sigma, total)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.where(total > 0, jnp.exp(entropy), 0.0)


def stable_rank_from_sigma(sigma: jax.Array) -> jax.Array:
  """Stable rank ||A||_F^2 / ||A||_2^2 = sum sigma^2 / max sigma^2 (spectral norm in the denominator)."""
  return _safe_ratio(jnp.sum(jnp.square(sigma)), jnp.square(jnp.max(sigma)))


def num_components_from_sigma(sigma: jax.Array, fraction: float = 0.9) -> jax.Array:
  """Smallest k whose top-k eigenvalues lambda = sigma^2 reach `fraction` of sum lambda (int32, or 0)."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
  eigvals = jnp.sort(jnp.square(sigma))[::-1]
  total = eigvals.sum()
  below = jnp.cumsum(eigvals) < fraction * total
  # Rounding in the cumulative sum can leave it a hair under `total` at the end; cap k at the count
  # of nonzero eigenvalues so fraction = 1 never overshoots.
  k = jnp.minimum(jnp.sum(below) + 1, jnp.sum(eigvals > 0))
  return jnp.where(total > 0, k, 0).astype(jnp.int32)


def participation_ratio(x_NxD: jax.Array, row_mask: jax.Array | None = None) -> jax.Array:
  """Participation ratio (sum lambda)^2 / sum lambda^2 of the covariance eigenvalues of centred x."""
  _check_matrix("participation_ratio", x_NxD, row_mask)
  return participation_ratio_from_sigma(singular_values(x_NxD, row_mask))


def effective_rank(x_NxD: jax.Array, row_mask: jax.Array | None = None) -> jax.Array:
  """Effective rank exp(-sum p log p), p = sigma / sum sigma of centred x (Roy & Vetterli 2007)."""
  _check_matrix("effective_rank", x_NxD, row_mask)
  return effective_rank_from_sigma(singular_values(x_NxD, row_mask))


def stable_rank(x_NxD: jax.Array, row_mask: jax.Array | None = None) -> jax.Array:
  """Stable rank ||A||_F^2 / ||A||_2^2 of centred x, with the spectral norm (largest singular value)."""
  _check_matrix("stable_rank", x_NxD, row_mask)
  return stable_rank_from_sigma(singular_values(x_NxD, row_mask))


def num_components_for_variance(
    x_NxD: jax.Array, fraction: float = 0.9, row_mask: jax.Array | None = None
) -> jax.Array:
  """Smallest k whose top-k covariance eigenvalues reach `fraction` of the total variance of x."""
  _check_matrix("num_components_for_variance", x_NxD, row_mask)
  return num_components_from_sigma(singular_values(x_NxD, row_mask), fraction)


def _subsample_rows(
    x_NxD: jax.Array, weights_N: jax.Array, key: jax.Array, num_samples: int
) -> tuple[jax.Array, jax.Array]:
  """Draws `num_samples` rows without replacement, counted rows first (static output shape)."""
  # Uniform scores in [0, 1) for counted rows and -1 for the others: the top scores are a uniform
  # draw among counted rows, and padding is picked only when too few rows count.
  scores_N = jnp.where(weights_N > 0, jax.random.uniform(key, weights_N.shape), -1.0)
  _, index_S = jax.lax.top_k(scores_N, num_samples)
  return x_NxD[index_S], weights_N[index_S]


def twonn_dimension(
    x_NxD: jax.Array,
    key: jax.Array | None = None,
    num_samples: int | None = None,
    row_mask: jax.Array | None = None,
) -> jax.Array:
  """TwoNN intrinsic dimension, maximum-likelihood form d = (n - 1) / sum_i log(r2_i / r1_i).

  r1, r2 are each point's first and second nearest-neighbour distances; under local uniformity
  mu = r2/r1 is Pareto(d), and (n - 1) / sum log mu is the unbiased maximum-likelihood estimate
  (Facco, d'Errico, Rodriguez & Laio 2017). Duplicates are collapsed as the paper advises, by masking
  rather than removing rows: each set of identical points is measured once, zero distances are
  skipped, and r2 is the smallest distance above r1 (a neighbour's copies count once). Rows outside
  `row_mask` are neither measured nor neighbours. Neighbours come from the TWONN_CANDIDATES nearest
  rows, so a point whose candidates are all copies of one point (r2 not found) is skipped too.
  With fewer than two usable points or
  sum log mu = 0 the result is 0. With `num_samples` < N, a random subsample of that many rows
  (drawn with `key`) is measured; all rows otherwise.
  """
  _check_matrix("twonn_dimension", x_NxD, row_mask)
  x_NxD = jnp.asarray(x_NxD, jnp.float32)
  weights_N = _row_weights(x_NxD, row_mask)
  if num_samples is not None and num_samples < x_NxD.shape[0]:
    if key is None:
      raise ValueError("twonn_dimension: num_samples < number of rows needs a PRNG key to subsample")
    if num_samples < 3:
      raise ValueError(f"twonn_dimension: num_samples must be >= 3, got {num_samples}")
    x_NxD, weights_N = _subsample_rows(x_NxD, weights_N, key, num_samples)
  num_points = x_NxD.shape[0]
  if num_points < 3:
    return jnp.zeros((), jnp.float32)
  # Centring keeps the norms small, which reduces cancellation in the Gram distances.
  x_NxD = centre(x_NxD, weights_N > 0)
  counted_N = weights_N > 0

  sq_norm_N = jnp.sum(jnp.square(x_NxD), axis=1)
  gram_NxN = jnp.matmul(x_NxD, x_NxD.T, precision=jax.lax.Precision.HIGHEST)
  sq_dist_NxN = sq_norm_N[:, None] + sq_norm_N[None, :] - 2.0 * gram_NxN
  not_candidate_NxN = jnp.eye(num_points, dtype=bool) | ~counted_N[None, :]
  sq_dist_NxN = jnp.where(not_candidate_NxN, jnp.inf, sq_dist_NxN)
  num_candidates = min(TWONN_CANDIDATES, num_points - 1)
  neg_sq_dist_NxK, candidate_NxK = jax.lax.top_k(-sq_dist_NxN, num_candidates)

  # Exact distances to the few candidates: duplicates give exactly 0 and close pairs stay accurate.
  exact_NxK = jnp.linalg.norm(x_NxD[candidate_NxK] - x_NxD[:, None, :], axis=-1)
  exact_NxK = jnp.where(jnp.isfinite(neg_sq_dist_NxK), exact_NxK, jnp.inf)
  # Collapse duplicates: a set of identical points is measured once (at its lowest index), zero
  # distances are skipped, and r2 is the smallest distance above r1, so a neighbour's copies count once.
  row_index_N = jnp.arange(num_points)
  later_copy_N = jnp.any((exact_NxK == 0) & (candidate_NxK < row_index_N[:, None]), axis=1)
  positive_NxK = jnp.where(exact_NxK > 0, exact_NxK, jnp.inf)
  r1_N = jnp.min(positive_NxK, axis=1)
  r2_N = jnp.min(jnp.where(positive_NxK > r1_N[:, None], positive_NxK, jnp.inf), axis=1)

  usable_N = counted_N & ~later_copy_N & jnp.isfinite(r1_N) & jnp.isfinite(r2_N)
  mu_N = jnp.where(usable_N, r2_N, 2.0) / jnp.where(usable_N, r1_N, 1.0)
  log_mu_N = jnp.where(usable_N, jnp.log(mu_N), 0.0)
  num_usable = usable_N.sum().astype(jnp.float32)
  sum_log_mu = log_mu_N.sum()
  ok = (num_usable >= 2) & (sum_log_mu > 0)
  return jnp.where(ok, (num_usable - 1.0) / jnp.where(ok, sum_log_mu, 1.0), 0.0)


def layer_matrix(
    acts: jax.Array,
    layout: Layout,
    conv_mode: ConvMode = "flatten",
    token_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
  """Turns a layer's activations into a (rows x features) matrix and its row mask (None: all rows count).

  dense (N, D) -> (N, D); conv (N, H, W, C) -> (N*H*W, C) with conv_mode="flatten", or (N, C) averaged
  over space with conv_mode="spatial_mean"; tokens (N, T, D) -> (N*T, D), features never averaged, and
  with a token_mask (N, T) (True = real token) the padding rows are masked out rather than removed, so
  shapes stay static under jit. Attention maps are not measured: "attention" raises ValueError.
  """
  if layout == "dense":
    check_rank("layer_matrix", "acts", acts, 2, "samples, features of a dense layer")
    return acts, None
  if layout == "conv":
    check_rank("layer_matrix", "acts", acts, 4, "samples, height, width, channels of a conv layer")
    if conv_mode == "flatten":
      return jnp.reshape(acts, (-1, acts.shape[-1])), None
    if conv_mode == "spatial_mean":
      return jnp.mean(acts, axis=(1, 2)), None
    raise ValueError(f"conv_mode must be 'flatten' or 'spatial_mean', got {conv_mode!r}")
  if layout == "tokens":
    check_rank("layer_matrix", "acts", acts, 3, "samples, tokens, features of a token stream")
    matrix = jnp.reshape(acts, (-1, acts.shape[-1]))
    if token_mask is None:
      return matrix, None
    check_rank("layer_matrix", "token_mask", token_mask, 2, "samples, tokens")
    check_axis("layer_matrix", "token_mask", token_mask, 0, acts.shape[0], "N (the samples of acts)")
    check_axis("layer_matrix", "token_mask", token_mask, 1, acts.shape[1], "T (the tokens of acts)")
    return matrix, jnp.reshape(token_mask, (-1,)).astype(bool)
  if layout == "attention":
    raise ValueError("attention probabilities are not measured for dimensionality (layout 'attention')")
  raise ValueError(f"unknown layout {layout!r}; expected 'dense', 'conv', 'tokens' or 'attention'")


MEASURE_NAMES = (
    "participation_ratio",
    "effective_rank",
    "stable_rank",
    "num_components_90",
    "twonn_dimension",
)


def all_measures(
    x_NxD: jax.Array,
    key: jax.Array,
    twonn_samples: int | None,
    row_mask: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """The five measures of one matrix, keyed by MEASURE_NAMES (one spectrum shared by the first four).

  num_components_90 is returned as float32 like the others, so the dict stacks into one array.
  """
  _check_matrix("all_measures", x_NxD, row_mask)
  return all_measures_many([x_NxD], [key], twonn_samples, [row_mask])[0]


def all_measures_many(
    matrices: Sequence[jax.Array],
    keys: Sequence[jax.Array],
    twonn_samples: int | None,
    row_masks: Sequence[jax.Array | None] | None = None,
) -> list[dict[str, jax.Array]]:
  """`all_measures` of several matrices (one key each), their spectra in one `singular_values_many` call."""
  if len(keys) != len(matrices):
    raise ValueError(f"keys has {len(keys)} entries for {len(matrices)} matrices")
  row_masks = list(row_masks) if row_masks is not None else [None] * len(matrices)
  sigmas = singular_values_many(matrices, row_masks)
  return [{
      "participation_ratio": participation_ratio_from_sigma(sigma),
      "effective_rank": effective_rank_from_sigma(sigma),
      "stable_rank": stable_rank_from_sigma(sigma),
      "num_components_90": num_components_from_sigma(sigma, 0.9).astype(jnp.float32),
      "twonn_dimension": twonn_dimension(x_NxD, key, twonn_samples, row_mask),
  } for x_NxD, key, row_mask, sigma in zip(matrices, keys, row_masks, sigmas)]


def is_rank_capped(num_samples: int, num_features: int) -> bool:
  """True when fewer samples than features cap the rank of the layer's matrix at the sample count."""
  return num_samples < num_features
