"""Themes: clusters of SAE atoms, their agreement with planted themes, and whether roommates share them.

Host functions (numpy in, numpy / floats out) wrapping scikit-learn and scipy, except the jittable
`same_theme_fraction` core of `roommates_share_theme`. Three inputs can be clustered:

  - decoder rows or encoder rows (vectors): the affinity is the cosine clipped at 0;
  - the atoms' co-activation graph (`coactivation_affinity`): the cosine of the atoms' firing
    indicators over the data, n_ij / sqrt(n_i n_j) (the Ochiai coefficient).

Methods: "spectral" (normalised affinity D^-1/2 A D^-1/2, its top eigenvectors with rows scaled to unit
length, then k-means; Ng, Jordan & Weiss 2001), "kmeans" (on unit-scaled vectors; vectors only) and
"hdbscan" (sklearn.cluster.HDBSCAN on the distance 1 - affinity; it finds its own number of clusters and
marks outliers as noise, label -2). For spectral and kmeans the number of themes is chosen over k_range
by a criterion: "silhouette" (the mean silhouette of the labels on the distance 1 - affinity, the
largest wins; Rousseeuw 1987) or, for spectral only, "eigengap" (the largest gap λ_k - λ_{k+1} between
consecutive eigenvalues of the normalised affinity; von Luxburg 2007).

Atoms outside `live_N` get label -1. A clustering that cannot be made (no live atoms, every k in
k_range at least the number of live atoms) is returned with `reason` set and every label -1.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
import sklearn.cluster
import sklearn.metrics
import threadpoolctl

from mpcodec.core.errors import DataError
from mpcodec.metrics.shapes import check_axis, check_index_range, check_rank
from mpcodec.metrics.truth_tables import permuted_assignment

EXCLUDED = -1
NOISE = -2
Method = Literal["spectral", "kmeans", "hdbscan"]
Criterion = Literal["silhouette", "eigengap"]


@dataclasses.dataclass(frozen=True)
class ThemeClustering:
  """labels_N: theme per atom (-1 excluded, -2 HDBSCAN noise); num_themes: themes found (chosen k);
  scores: criterion value per k tried; criterion: its name; reason: why nothing was clustered (else None)."""

  labels_N: np.ndarray
  num_themes: int
  scores: dict[int, float]
  criterion: str
  reason: str | None = None

  @property
  def theme_sizes(self) -> list[int]:
    """Atoms per theme 0 .. num_themes - 1."""
    return np.bincount(self.labels_N[self.labels_N >= 0], minlength=self.num_themes).tolist()


def cosine_affinity(vectors_NxD: np.ndarray) -> np.ndarray:
  """(N, N) max(cos(v_i, v_j), 0), float64."""
  check_rank("cosine_affinity", "vectors_NxD", vectors_NxD, 2, "atoms, features")
  vectors = np.asarray(vectors_NxD, np.float64)
  unit = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
  return np.clip(unit @ unit.T, 0.0, 1.0)


def coactivation_affinity(codes_BxN: np.ndarray) -> np.ndarray:
  """(N, N) cosine of the firing indicators (code > 0): n_ij / sqrt(n_i n_j); 0 for an atom that never fires.

  Computed as a sparse product (codes are sparse), so B·N² work is never spent.
  """
  check_rank("coactivation_affinity", "codes_BxN", codes_BxN, 2, "samples, atoms")
  fires = scipy.sparse.csr_matrix(np.asarray(codes_BxN) > 0, dtype=np.float64)
  together = (fires.T @ fires).toarray()
  count_N = np.diag(together).copy()
  norm_N = np.sqrt(np.maximum(count_N, 1.0))
  affinity = together / norm_N[:, None] / norm_N[None, :]
  affinity[count_N == 0] = 0.0
  affinity[:, count_N == 0] = 0.0
  return affinity


def _spectral_embedding(affinity_NxN: np.ndarray, num_vectors: int) -> tuple[np.ndarray, np.ndarray]:
  """(eigenvalues descending, (N, num_vectors) eigenvectors) of D^-1/2 A D^-1/2."""
  # A small floor keeps atoms without any affinity from dividing by zero; they end up on their own.
  degree_N = np.maximum(affinity_NxN.sum(axis=1), 1e-12)
  scale_N = 1.0 / np.sqrt(degree_N)
  normalised = affinity_NxN * scale_N[:, None] * scale_N[None, :]
  n = normalised.shape[0]
  num_vectors = min(num_vectors, n)
  if n <= 1500 or num_vectors >= n - 1:
    values, vectors = scipy.linalg.eigh(normalised, subset_by_index=[n - num_vectors, n - 1])
  else:
    values, vectors = scipy.sparse.linalg.eigsh(normalised, k=num_vectors, which="LA",
                                                v0=np.ones(n) / np.sqrt(n))
  order = np.argsort(-values)
  return values[order], vectors[:, order]


def _unit_rows(a: np.ndarray) -> np.ndarray:
  return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def cluster_atoms(vectors_NxD: np.ndarray | None = None, affinity_NxN: np.ndarray | None = None,
                  method: Method = "spectral", k_range=range(2, 33), live_N: np.ndarray | None = None,
                  criterion: Criterion = "silhouette", seed: int = 0, min_cluster_size: int = 5
                  ) -> ThemeClustering:
  """Themes of the live atoms from vectors (decoder or encoder rows) or an affinity (co-activation graph).

  Give exactly one of vectors_NxD and affinity_NxN. k_range: the numbers of themes tried (spectral and
  kmeans); values outside [2, live atoms - 1] are skipped. See the module docstring for the methods and
  criteria.
  """
  if (vectors_NxD is None) == (affinity_NxN is None):
    raise DataError("cluster_atoms: give exactly one of vectors_NxD and affinity_NxN")
  if method == "kmeans" and vectors_NxD is None:
    raise DataError("cluster_atoms: method='kmeans' clusters vectors; give vectors_NxD")
  if criterion == "eigengap" and method != "spectral":
    raise DataError("cluster_atoms: criterion='eigengap' needs method='spectral'")
  if vectors_NxD is not None:
    num_atoms = check_rank("cluster_atoms", "vectors_NxD", vectors_NxD, 2, "atoms, features")[0]
  else:
    num_atoms = check_rank("cluster_atoms", "affinity_NxN", affinity_NxN, 2, "atoms, atoms")[0]
    check_axis("cluster_atoms", "affinity_NxN", affinity_NxN, 1, num_atoms, "N (a square matrix)")
  if live_N is not None:
    check_rank("cluster_atoms", "live_N", live_N, 1, "atoms")
    check_axis("cluster_atoms", "live_N", live_N, 0, num_atoms, "N (the atoms)")
  live_N = np.ones(num_atoms, bool) if live_N is None else np.asarray(live_N, bool)
  labels_N = np.full(num_atoms, EXCLUDED, np.int64)
  live_index = np.flatnonzero(live_N)
  num_live = live_index.size
  name = "hdbscan" if method == "hdbscan" else criterion
  if num_live == 0:
    return ThemeClustering(labels_N, 0, {}, name, "no live atoms")
  if vectors_NxD is not None:
    vectors = np.asarray(vectors_NxD, np.float64)[live_index]
    affinity = cosine_affinity(vectors)
  else:
    vectors = None
    affinity = np.asarray(affinity_NxN, np.float64)[np.ix_(live_index, live_index)]
  distance = np.clip(1.0 - affinity, 0.0, None)
  np.fill_diagonal(distance, 0.0)

  if method == "hdbscan":
    if num_live < max(2, min_cluster_size):
      return ThemeClustering(labels_N, 0, {}, name,
                             f"{num_live} live atoms, fewer than min_cluster_size={min_cluster_size}")
    found = sklearn.cluster.HDBSCAN(min_cluster_size=min_cluster_size, metric="precomputed",
                                    copy=True).fit_predict(distance)
    labels_N[live_index] = np.where(found >= 0, found, NOISE)
    return ThemeClustering(labels_N, int(found.max(initial=-1)) + 1, {}, name)

  ks = [int(k) for k in k_range if 2 <= int(k) <= num_live - 1]
  if not ks:
    return ThemeClustering(labels_N, 0, {}, name,
                           f"no k in k_range={list(k_range)} lies in [2, live atoms - 1 = {num_live - 1}]")
  eigenvalues = eigenvectors = None
  if method == "spectral":
    eigenvalues, eigenvectors = _spectral_embedding(affinity, max(ks) + 1)
  candidates, scores = {}, {}
  # One OpenMP thread: k-means on a few thousand points gains nothing from threads, and spinning
  # threads on a busy machine made each fit tens of times slower.
  features = eigenvectors if method == "spectral" else _unit_rows(vectors)
  with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
    for k in ks:
      candidates[k], scores[k] = _fit_one_k(k, method, criterion, features, eigenvalues, distance, seed)
  best = max(ks, key=lambda k: (scores[k], -k))
  labels_N[live_index] = candidates[best]
  return ThemeClustering(labels_N, int(np.unique(candidates[best]).size), scores, name)


def _fit_one_k(k, method, criterion, features, eigenvalues, distance, seed) -> tuple[np.ndarray, float]:
  """(labels, criterion score) of one k: k-means on the first k spectral vectors or on the unit vectors."""
  if method == "spectral":
    features = _unit_rows(features[:, :k])
  found = sklearn.cluster.KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(features)
  if criterion == "eigengap":
    return found, float(eigenvalues[k - 1] - eigenvalues[k])
  if np.unique(found).size < 2:
    return found, -1.0
  return found, float(sklearn.metrics.silhouette_score(distance, found, metric="precomputed"))


def adjusted_rand(labels_N: np.ndarray, truth_N: np.ndarray) -> float:
  """Adjusted Rand index (Hubert & Arabie 1985) over atoms with a true theme (>= 0) and not excluded (-1).

  HDBSCAN noise (-2) counts as one more cluster, so leaving atoms unassigned is not rewarded.
  Returns 0.0 with fewer than two scored atoms.
  """
  num_atoms = check_rank("adjusted_rand", "labels_N", labels_N, 1, "atoms")[0]
  check_rank("adjusted_rand", "truth_N", truth_N, 1, "atoms")
  check_axis("adjusted_rand", "truth_N", truth_N, 0, num_atoms, "N (the atoms of labels_N)")
  labels_N, truth_N = np.asarray(labels_N), np.asarray(truth_N)
  scored = (truth_N >= 0) & (labels_N != EXCLUDED)
  if scored.sum() < 2:
    return 0.0
  return float(sklearn.metrics.adjusted_rand_score(truth_N[scored], labels_N[scored]))


def _check_assignment_and_themes(func: str, assignment_N, theme_N, num_neurons: int | None,
                                 num_themes: int | None) -> None:
  num_atoms = check_rank(func, "assignment_N", assignment_N, 1, "atoms: the neuron of each atom, -1 if dead")[0]
  check_rank(func, "theme_N", theme_N, 1, "atoms: the theme of each atom, < 0 if none")
  check_axis(func, "theme_N", theme_N, 0, num_atoms, "N (the atoms of assignment_N)")
  if num_neurons is not None:
    check_index_range(func, "assignment_N", assignment_N, num_neurons, "neurons (num_neurons), or -1", lower=-1)
  if num_themes is not None:
    # Negative themes (excluded, noise) are not counted, whatever their value.
    check_index_range(func, "theme_N", theme_N, num_themes, "themes (num_themes), or < 0", lower=None)


def same_theme_fraction(assignment_N: jax.Array, theme_N: jax.Array, num_neurons: int, num_themes: int
                        ) -> tuple[jax.Array, jax.Array]:
  """(fraction of roommate pairs in one theme, number of roommate pairs), jittable.

  Over atoms that are live (assignment >= 0) and have a theme (>= 0): with c_mt such atoms of theme t in
  neuron m and n_m = Σ_t c_mt, fraction = Σ_mt c_mt(c_mt - 1)/2 / Σ_m n_m(n_m - 1)/2 (0 with no pair).
  """
  _check_assignment_and_themes("same_theme_fraction", assignment_N, theme_N, num_neurons, num_themes)
  assignment_N = jnp.asarray(assignment_N, jnp.int32)
  theme_N = jnp.asarray(theme_N, jnp.int32)
  counted_N = (assignment_N >= 0) & (theme_N >= 0)
  table_MxT = jnp.zeros((num_neurons, num_themes), jnp.int32).at[
      jnp.maximum(assignment_N, 0), jnp.maximum(theme_N, 0)].add(counted_N.astype(jnp.int32))
  occupancy_M = jnp.sum(table_MxT, axis=-1)
  same = jnp.sum(table_MxT * (table_MxT - 1) // 2)
  pairs = jnp.sum(occupancy_M * (occupancy_M - 1) // 2)
  return same / jnp.maximum(pairs, 1), pairs


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _share_theme_with_null(assignment_N, theme_N, key, num_permutations, num_neurons, num_themes):
  observed, pairs = same_theme_fraction(assignment_N, theme_N, num_neurons, num_themes)
  null_R = jax.vmap(lambda k: same_theme_fraction(assignment_N, permuted_assignment(k, theme_N),
                                                  num_neurons, num_themes)[0])(
      jax.random.split(key, num_permutations))
  return observed, null_R, pairs


class ShareTheme(NamedTuple):
  """observed: fraction of roommate pairs in one theme; null_R: the same with the themes permuted among
  the counted atoms; effect: observed - mean(null_R); num_pairs: roommate pairs counted."""

  observed: float
  null_R: np.ndarray
  effect: float
  num_pairs: int


def roommates_share_theme(assignment_N: np.ndarray, theme_N: np.ndarray, key: jax.Array,
                          num_permutations: int = 200, num_neurons: int | None = None,
                          num_themes: int | None = None) -> ShareTheme:
  """Do roommates share a theme more (effect > 0) or less (< 0) often than chance?

  The null permutes the theme labels among the live themed atoms (theme sizes and neuron occupancies
  kept). With no counted roommate pair the fractions are 0 and num_pairs is 0. num_neurons and
  num_themes (default: the largest index + 1) fix the compiled shapes, so a sweep compiles once.
  """
  _check_assignment_and_themes("roommates_share_theme", assignment_N, theme_N, num_neurons, num_themes)
  assignment_N = np.asarray(assignment_N, np.int32)
  theme_N = np.where(assignment_N >= 0, np.asarray(theme_N), -1).astype(np.int32)
  num_neurons = num_neurons or max(int(assignment_N.max(initial=-1)) + 1, 1)
  num_themes = num_themes or max(int(theme_N.max(initial=-1)) + 1, 1)

  observed, null_R, pairs = jax.device_get(_share_theme_with_null(
      assignment_N, theme_N, key, num_permutations, num_neurons, num_themes))
  null_R = np.asarray(null_R, np.float64)
  return ShareTheme(float(observed), null_R, float(observed - null_R.mean()), int(pairs))
