"""The validation hypothesis: do the synthetic neurons' truth tables match those of the real layer's neurons?

For the atom pairs of the synthetic analysis (roommates, read through their synthetic neuron), the
real layer's H neurons are read over the same pairs (`layer_truth_tables`: every pair through every real
neuron). Two comparisons:

  - a per-neuron matching: S[m, r] = mean over the testable pairs p of synthetic neuron m of
    cos(t_m,p - mean, t_r,p - mean), the cosine of the two centred 4-cell tables (0 when either is
    flat); synthetic neurons with testable pairs are matched one-to-one to real neurons by the Hungarian
    algorithm (maximum total S), reported as the mean matched similarity;
  - the class distribution: each testable pair is classified through its synthetic neuron and through
    the real neuron matched to it; distance = total variation ½ Σ_c |p_syn(c) - p_real(c)| over
    OR/AND/XOR/OTHER.

The null is the same computation for an encoder whose atom-to-neuron assignment is permuted
(`truth_tables.permuted_assignment`, then its roommate pairs). `layer_truth_tables` and
`truth_table_similarity` are jittable; `validation_distance` solves the matching on the host
(scipy.optimize.linear_sum_assignment). Pass only the testable pairs (`select_pairs`): the layer tables
cost 6·P·B·H flops.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.metrics.codec import hungarian_mean
from mpcodec.metrics.coactivation import check_pair_mask, map_over_pair_chunks
from mpcodec.metrics.shapes import check_axis, check_index_range, check_rank
from mpcodec.metrics.truth_tables import UNTESTABLE, TruthTables, check_pair_readings, classify


class LayerTruthTables(NamedTuple):
  """means_PxHx4: every real neuron's mean in the four cells of every pair; counts_Px4; scale_H: the
  real neurons' standard deviations; testable_P: valid and every cell >= min_count samples."""

  means_PxHx4: jax.Array
  counts_Px4: jax.Array
  scale_H: jax.Array
  testable_P: jax.Array


def select_pairs(pairs_Px2: np.ndarray, neuron_P: np.ndarray, keep_P: np.ndarray, size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(pairs_Sx2, neuron_S, valid_S): the first `size` kept pairs, padded to a static size (host side)."""
  num_pairs = check_rank("select_pairs", "pairs_Px2", pairs_Px2, 2, "pairs, 2 atoms")[0]
  check_axis("select_pairs", "pairs_Px2", pairs_Px2, 1, 2, "the 2 atoms (a, b) of a pair")
  check_pair_mask("select_pairs", "neuron_P", neuron_P, num_pairs)
  check_pair_mask("select_pairs", "keep_P", keep_P, num_pairs)
  index = np.flatnonzero(np.asarray(keep_P))[:size]
  pairs = np.zeros((size, 2), np.int32)
  neurons = np.zeros(size, np.int32)
  pairs[:index.size] = np.asarray(pairs_Px2)[index]
  neurons[:index.size] = np.asarray(neuron_P)[index]
  return pairs, neurons, np.arange(size) < index.size


def layer_truth_tables(layer_acts_BxH: jax.Array, codes_BxN: jax.Array, pairs_Px2: jax.Array, min_count: int,
                       valid_P: jax.Array | None = None, chunk_size: int = 32) -> LayerTruthTables:
  """Truth tables of every pair through every real neuron: three (C, B)·(B, H) products per chunk.

  With s_a = Σ x·[a], s_b = Σ x·[b], s_ab = Σ x·[a][b] and s = Σ x: the cells are s00 = s - s_a - s_b +
  s_ab, s10 = s_a - s_ab, s01 = s_b - s_ab, s11 = s_ab (means: divided by the cell counts, 0 if empty).
  """
  check_pair_readings("layer_truth_tables", layer_acts_BxH, "layer_acts_BxH", codes_BxN, pairs_Px2, None, valid_P)
  acts_BxH = jnp.asarray(layer_acts_BxH, jnp.float32)
  pairs_Px2 = jnp.asarray(pairs_Px2, jnp.int32)
  num_pairs = pairs_Px2.shape[0]
  valid_P = jnp.ones(num_pairs, bool) if valid_P is None else jnp.asarray(valid_P, bool)
  fires_NxB = (jnp.asarray(codes_BxN) > 0).T.astype(jnp.float32)
  total_H = jnp.sum(acts_BxH, axis=0)
  num_samples = acts_BxH.shape[0]

  def chunk(a_C, b_C):
    fa_CxB, fb_CxB = fires_NxB[a_C], fires_NxB[b_C]
    both_CxB = fa_CxB * fb_CxB
    s_a, s_b, s_ab = (f @ acts_BxH for f in (fa_CxB, fb_CxB, both_CxB))
    n_a, n_b, n_ab = (jnp.sum(f, axis=-1) for f in (fa_CxB, fb_CxB, both_CxB))
    sums_CxHx4 = jnp.stack([total_H - s_a - s_b + s_ab, s_a - s_ab, s_b - s_ab, s_ab], axis=-1)
    counts_Cx4 = jnp.stack([num_samples - n_a - n_b + n_ab, n_a - n_ab, n_b - n_ab, n_ab], axis=-1)
    return sums_CxHx4, counts_Cx4.astype(jnp.int32)

  sums_PxHx4, counts_Px4 = map_over_pair_chunks(chunk, (pairs_Px2[:, 0], pairs_Px2[:, 1]), chunk_size)
  means_PxHx4 = sums_PxHx4 / jnp.maximum(counts_Px4, 1)[:, None, :]
  testable_P = valid_P & jnp.all(counts_Px4 >= min_count, axis=-1)
  return LayerTruthTables(means_PxHx4, counts_Px4, jnp.std(acts_BxH, axis=0), testable_P)


def _centred_unit(tables_Px4: jax.Array) -> jax.Array:
  centred = tables_Px4 - jnp.mean(tables_Px4, axis=-1, keepdims=True)
  norm = jnp.linalg.norm(centred, axis=-1, keepdims=True)
  return jnp.where(norm > 0, centred / jnp.where(norm > 0, norm, 1.0), 0.0)


def _check_tables(func: str, synthetic_means_Px4, neuron_P, layer_means_PxHx4, num_neurons: int,
                  names: tuple[str, str] = ("synthetic_means_Px4", "layer_means_PxHx4")) -> None:
  """Synthetic tables (P, 4) read through neuron_P in [0, num_neurons), real tables (P, H, 4) of the same pairs."""
  synthetic_name, layer_name = names
  num_pairs = check_rank(func, synthetic_name, synthetic_means_Px4, 2, "pairs, 4 cells")[0]
  check_axis(func, synthetic_name, synthetic_means_Px4, 1, 4, "the 4 cells")
  check_pair_mask(func, "neuron_P", neuron_P, num_pairs)
  check_index_range(func, "neuron_P", neuron_P, num_neurons, "synthetic neurons (num_neurons)")
  check_rank(func, layer_name, layer_means_PxHx4, 3, "pairs, real neurons, 4 cells")
  check_axis(func, layer_name, layer_means_PxHx4, 0, num_pairs, f"P (the pairs of {synthetic_name})")
  check_axis(func, layer_name, layer_means_PxHx4, 2, 4, "the 4 cells")


def truth_table_similarity(synthetic_means_Px4: jax.Array, neuron_P: jax.Array,
                           layer_means_PxHx4: jax.Array, testable_P: jax.Array, num_neurons: int
                           ) -> tuple[jax.Array, jax.Array]:
  """(S_MxH, testable pairs per synthetic neuron): S[m, r] = mean over m's testable pairs of the cosine
  of the centred tables of m and of real neuron r (0 for a neuron without testable pairs)."""
  _check_tables("truth_table_similarity", synthetic_means_Px4, neuron_P, layer_means_PxHx4, num_neurons)
  check_pair_mask("truth_table_similarity", "testable_P", testable_P, jnp.shape(synthetic_means_Px4)[0])
  cosine_PxH = jnp.einsum("pc,phc->ph", _centred_unit(synthetic_means_Px4), _centred_unit(layer_means_PxHx4))
  weight_P = jnp.asarray(testable_P, jnp.float32)
  neuron_P = jnp.asarray(neuron_P, jnp.int32)
  sums_MxH = jnp.zeros((num_neurons, cosine_PxH.shape[1]), jnp.float32).at[neuron_P].add(
      cosine_PxH * weight_P[:, None])
  count_M = jnp.zeros(num_neurons, jnp.int32).at[neuron_P].add(weight_P.astype(jnp.int32))
  return sums_MxH / jnp.maximum(count_M, 1)[:, None], count_M


@dataclasses.dataclass(frozen=True)
class Validation:
  """matched_similarity: mean S over the Hungarian matching; tv_distance: class-distribution distance;
  synthetic_fraction_C / layer_fraction_C: OR, AND, XOR, OTHER shares over the compared pairs;
  match_M: real neuron matched to each synthetic neuron (-1 none); reason: why nothing was compared."""

  matched_similarity: float | None
  tv_distance: float | None
  synthetic_fraction_C: list[float]
  layer_fraction_C: list[float]
  num_pairs: int
  num_matched_neurons: int
  match_M: np.ndarray
  reason: str | None = None


def validation_distance(synthetic: TruthTables, neuron_P: np.ndarray, layer: LayerTruthTables,
                        num_neurons: int, margin: float) -> Validation:
  """Matching and class-distribution distance between synthetic and real truth tables (host side).

  `synthetic` and `layer` cover the same pairs (same order); pairs count where both are testable.
  With no testable pair the result has reason set and None distances (never NaN).
  """
  _check_tables("validation_distance", synthetic.means_Px4, neuron_P, layer.means_PxHx4, num_neurons,
                ("synthetic.means_Px4", "layer.means_PxHx4"))
  testable_P = np.asarray(synthetic.testable_P) & np.asarray(layer.testable_P)
  neuron_P = np.asarray(neuron_P)
  similarity_MxH, count_M = jax.device_get(truth_table_similarity(
      synthetic.means_Px4, neuron_P, layer.means_PxHx4, testable_P, num_neurons))
  match_M = np.full(num_neurons, -1, np.int64)
  rows = np.flatnonzero(count_M > 0)
  if rows.size == 0:
    return Validation(None, None, [0.0] * UNTESTABLE, [0.0] * UNTESTABLE, 0, 0, match_M,
                      "no testable pair to compare")
  matched_similarity, row_index, cols = hungarian_mean(similarity_MxH[rows])
  match_M[rows[row_index]] = cols
  real_P = match_M[neuron_P]
  compared_P = testable_P & (real_P >= 0)
  index = np.flatnonzero(compared_P)
  layer_means_Px4 = np.asarray(layer.means_PxHx4)[index, real_P[index]]
  layer_class = np.asarray(classify(layer_means_Px4, np.asarray(layer.scale_H)[real_P[index]], margin))
  synthetic_class = np.asarray(synthetic.class_P)[index]
  synthetic_fraction = np.bincount(synthetic_class, minlength=UNTESTABLE)[:UNTESTABLE] / max(index.size, 1)
  layer_fraction = np.bincount(layer_class, minlength=UNTESTABLE)[:UNTESTABLE] / max(index.size, 1)
  tv = 0.5 * float(np.abs(synthetic_fraction - layer_fraction).sum()) if index.size else None
  return Validation(float(matched_similarity), tv, synthetic_fraction.tolist(), layer_fraction.tolist(),
                    int(index.size), int(row_index.size), match_M,
                    None if index.size else "no matched testable pair")
