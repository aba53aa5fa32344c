"""Truth-table cells from sparse Top-K codes: only the rows where an atom of a pair fires are read.

The dense path (`truth_tables.truth_tables`, `validation.layer_truth_tables`) costs P·B per reading. The
four cells of a pair (a, b) follow from sufficient statistics over the rows where a or b fires:

  n_a, n_b, n_ab                    rows where a fires, b fires, both fire;
  s_10 = Σ_[a ∧ ¬b] y,  s_01 = Σ_[¬a ∧ b] y,  s_11 = Σ_[a ∧ b] y,  s = Σ_all y,

  f11 = s_11 / n_ab,  f10 = s_10 / (n_a - n_ab),  f01 = s_01 / (n_b - n_ab),
  f00 = (s - s_10 - s_01 - s_11) / (B - n_a - n_b + n_ab)     (0 for an empty cell),

where y is the reading neuron's activation. The statistics add over row chunks
(`accumulate_cell_statistics`), so B may be far larger than what fits as a dense (B, N) code matrix.

Codes come as row lists (value_BxK, column_BxK): row b's k selected latents and their values, as Top-K
selects them (`sae.autoencoder.Codes` of a Top-K SAE: `values_T.reshape(k, B).T`, `cols_T.reshape(k,
B).T`). A latent fires in a row when one of its entries there has value > 0, exactly as for dense codes
(`dense_codes`, whose entries are non-negative); an entry of value 0 (masked rank, ReLU) never fires and
a latent listed twice in a row counts once.

Within a row chunk the firing entries are sorted by latent (rows ascending within a latent), so the rows
of latent a form one segment. Each pair side (a, b) is a segment of "items", one per row where a fires;
all items are visited in fixed-size chunks (a while loop; static shapes, no loop over pairs), each item
testing whether b is among its row's k latents and adding the reading to the pair's cell sums. Work:
Σ_p (n_a + n_b) items. Statistics of invalid (padding) pairs are not computed: they are 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpcodec.metrics.coactivation import PairStatistics, check_pair_mask, check_pairs
from mpcodec.metrics.shapes import check_axis, check_index_range, check_rank
from mpcodec.metrics.truth_tables import UNTESTABLE, TruthTables, classify
from mpcodec.metrics.validation import LayerTruthTables


class CellStatistics(NamedTuple):
  """Additive statistics of P pair readings over the rows seen so far (V readings per pair).

  num_rows: B; sum_M, mean_M, m2_M: per reading neuron Σ y, mean and Σ (y - mean)² (combined over chunks
  as in Chan et al. 1979); count_a_P, count_b_P, count_both_P: n_a, n_b, n_ab; sum_only_a_PxV,
  sum_only_b_PxV, sum_both_PxV: s_10, s_01, s_11; cross_P, self_sq_a_P, self_sq_b_P: Σ z_a·z_b, Σ z_a²,
  Σ z_b² and sum_code_a_P, sum_code_b_P: Σ z_a, Σ z_b of the codes themselves (for the code correlation).
  """

  num_rows: jax.Array
  sum_M: jax.Array
  mean_M: jax.Array
  m2_M: jax.Array
  count_a_P: jax.Array
  count_b_P: jax.Array
  count_both_P: jax.Array
  sum_only_a_PxV: jax.Array
  sum_only_b_PxV: jax.Array
  sum_both_PxV: jax.Array
  cross_P: jax.Array
  sum_code_a_P: jax.Array
  sum_code_b_P: jax.Array
  self_sq_a_P: jax.Array
  self_sq_b_P: jax.Array


def init_cell_statistics(num_pairs: int, num_neurons: int, width: int = 1) -> CellStatistics:
  """Empty statistics: `width` = 1 reads each pair through its neuron, = num_neurons through every one."""
  zeros_P = jnp.zeros(num_pairs, jnp.float32)
  zeros_PxV = jnp.zeros((num_pairs, width), jnp.float32)
  zeros_M = jnp.zeros(num_neurons, jnp.float32)
  counts_P = jnp.zeros(num_pairs, jnp.int32)
  return CellStatistics(jnp.zeros((), jnp.int32), zeros_M, zeros_M, zeros_M, counts_P, counts_P, counts_P,
                        zeros_PxV, zeros_PxV, zeros_PxV, zeros_P, zeros_P, zeros_P, zeros_P, zeros_P)


def _check_row_lists(func: str, value_BxK, column_BxK, pairs_Px2, num_atoms: int, valid_P,
                     acts_name: str | None = None, acts_BxM=None) -> tuple[int, int]:
  """(P, M): row lists (B, K) of latents in [0, num_atoms), pairs of those latents, readings (B, M) if given."""
  num_rows, k = check_rank(func, "value_BxK", value_BxK, 2, "rows, k listed latents")
  check_rank(func, "column_BxK", column_BxK, 2, "rows, k listed latents")
  check_axis(func, "column_BxK", column_BxK, 0, num_rows, "B (the rows of value_BxK)")
  check_axis(func, "column_BxK", column_BxK, 1, k, "K (the entries per row of value_BxK)")
  check_index_range(func, "column_BxK", column_BxK, num_atoms, "latents (num_atoms)")
  num_pairs = check_pairs(func, "pairs_Px2", pairs_Px2, num_atoms, "latents (num_atoms)")
  check_pair_mask(func, "valid_P", valid_P, num_pairs)
  num_neurons = 0
  if acts_name is not None:
    num_neurons = check_rank(func, acts_name, acts_BxM, 2, "rows, neurons")[1]
    check_axis(func, acts_name, acts_BxM, 0, num_rows, "B (the rows of value_BxK)")
  return num_pairs, num_neurons


def row_lists_from_dense(codes_BxN: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """(value_BxK, column_BxK): the k largest codes of each row (exact when a row has <= k non-zeros)."""
  check_rank("row_lists_from_dense", "codes_BxN", codes_BxN, 2, "rows, latents")
  return jax.lax.top_k(jnp.asarray(codes_BxN, jnp.float32), k)


def _item_pass(stats: CellStatistics, value_RxK: jax.Array, column_RxK: jax.Array, row_ok_R: jax.Array,
               acts_RxM: jax.Array, pairs_Px2: jax.Array, neuron_P: jax.Array | None, active_P: jax.Array,
               num_atoms: int, item_chunk: int) -> CellStatistics:
  """Adds one chunk of R rows to the per-pair statistics (see the module docstring)."""
  k = column_RxK.shape[1]
  num_pairs = pairs_Px2.shape[0]
  fires_RxK = (value_RxK > 0) & row_ok_R[:, None]
  # Non-firing entries get latent num_atoms: they sort last and match no pair atom.
  atom_RxK = jnp.where(fires_RxK, column_RxK, num_atoms)
  atom_E = atom_RxK.reshape(-1)
  order_E = jnp.argsort(atom_E, stable=True)
  sorted_atom_E = atom_E[order_E]
  sorted_row_E = (order_E // k).astype(jnp.int32)
  sorted_value_E = value_RxK.reshape(-1)[order_E]
  # A latent listed twice in a row: the second entry is a duplicate and adds nothing.
  duplicate_E = jnp.concatenate([jnp.zeros(1, bool), (sorted_atom_E[1:] == sorted_atom_E[:-1])
                                 & (sorted_row_E[1:] == sorted_row_E[:-1])])
  entries_N = jax.ops.segment_sum(jnp.ones_like(atom_E), atom_E, num_segments=num_atoms + 1,
                                  indices_are_sorted=False)
  start_N = jnp.cumsum(entries_N) - entries_N
  fires_N = jax.ops.segment_sum((~duplicate_E).astype(jnp.int32), sorted_atom_E, num_segments=num_atoms + 1,
                                indices_are_sorted=True)
  # Segments: side a of every pair, then side b; segment s runs over the rows where its atom fires.
  atom_S = jnp.concatenate([pairs_Px2[:, 0], pairs_Px2[:, 1]])
  other_S = jnp.concatenate([pairs_Px2[:, 1], pairs_Px2[:, 0]])
  active_S = jnp.concatenate([active_P, active_P])
  length_S = jnp.where(active_S, entries_N[atom_S], 0)
  item_start_S = jnp.cumsum(length_S) - length_S
  num_items = jnp.sum(length_S)
  num_segments = 2 * num_pairs
  width = stats.sum_only_a_PxV.shape[1]

  def body(carry):
    first, only_SxV, both_SxV, count_both_S, cross_S, code_S, square_S = carry
    t_C = first + jnp.arange(item_chunk)
    live_C = t_C < num_items
    markers_C = jnp.zeros(item_chunk, jnp.int32).at[jnp.clip(item_start_S - first, 0, item_chunk)].add(
        1, mode="drop")
    segment_C = jnp.clip(jnp.cumsum(markers_C) - 1, 0, num_segments - 1)
    entry_C = start_N[atom_S[segment_C]] + t_C - item_start_S[segment_C]
    entry_C = jnp.clip(entry_C, 0, atom_E.shape[0] - 1)
    live_C = live_C & ~duplicate_E[entry_C]
    row_C = sorted_row_E[entry_C]
    self_value_C = sorted_value_E[entry_C]
    match_CxK = atom_RxK[row_C] == other_S[segment_C][:, None]
    both_C = jnp.any(match_CxK, axis=-1)
    other_value_C = jnp.sum(jnp.where(match_CxK, value_RxK[row_C], 0.0), axis=-1)
    if neuron_P is None:
      read_CxV = acts_RxM[row_C]
    else:
      read_CxV = acts_RxM[row_C, neuron_P[segment_C % num_pairs]][:, None]
    read_CxV = jnp.where(live_C[:, None], read_CxV, 0.0)

    def add(total, values):
      return total + jax.ops.segment_sum(values, segment_C, num_segments=num_segments,
                                         indices_are_sorted=True)

    only_SxV = add(only_SxV, jnp.where(both_C[:, None], 0.0, read_CxV))
    both_SxV = add(both_SxV, jnp.where(both_C[:, None], read_CxV, 0.0))
    count_both_S = add(count_both_S, (live_C & both_C).astype(jnp.int32))
    self_C = jnp.where(live_C, self_value_C, 0.0)
    cross_S = add(cross_S, self_C * other_value_C)
    code_S = add(code_S, self_C)
    square_S = add(square_S, jnp.square(self_C))
    return first + item_chunk, only_SxV, both_SxV, count_both_S, cross_S, code_S, square_S

  zeros_S = jnp.zeros(num_segments, jnp.float32)
  init = (jnp.zeros((), num_items.dtype), jnp.zeros((num_segments, width), jnp.float32),
          jnp.zeros((num_segments, width), jnp.float32), jnp.zeros(num_segments, jnp.int32), zeros_S, zeros_S,
          zeros_S)
  _, only_SxV, both_SxV, count_both_S, cross_S, code_S, square_S = jax.lax.while_loop(
      lambda carry: carry[0] < num_items, body, init)

  # Per-neuron moments of this chunk, combined with the running ones (Chan et al. 1979).
  ok_Rx1 = row_ok_R[:, None]
  chunk_rows = jnp.sum(row_ok_R).astype(jnp.int32)
  chunk_sum_M = jnp.sum(jnp.where(ok_Rx1, acts_RxM, 0.0), axis=0)
  chunk_mean_M = chunk_sum_M / jnp.maximum(chunk_rows, 1)
  chunk_m2_M = jnp.sum(jnp.where(ok_Rx1, jnp.square(acts_RxM - chunk_mean_M), 0.0), axis=0)
  total_rows = stats.num_rows + chunk_rows
  delta_M = chunk_mean_M - stats.mean_M
  share = chunk_rows / jnp.maximum(total_rows, 1)
  mean_M = stats.mean_M + delta_M * share
  m2_M = stats.m2_M + chunk_m2_M + jnp.square(delta_M) * stats.num_rows * share

  active = active_P.astype(jnp.int32)
  pair_fires_a, pair_fires_b = fires_N[pairs_Px2[:, 0]] * active, fires_N[pairs_Px2[:, 1]] * active
  return CellStatistics(
      total_rows, stats.sum_M + chunk_sum_M, mean_M, m2_M,
      stats.count_a_P + pair_fires_a, stats.count_b_P + pair_fires_b,
      stats.count_both_P + count_both_S[:num_pairs],
      stats.sum_only_a_PxV + only_SxV[:num_pairs], stats.sum_only_b_PxV + only_SxV[num_pairs:],
      stats.sum_both_PxV + both_SxV[:num_pairs], stats.cross_P + cross_S[:num_pairs],
      stats.sum_code_a_P + code_S[:num_pairs], stats.sum_code_b_P + code_S[num_pairs:],
      stats.self_sq_a_P + square_S[:num_pairs], stats.self_sq_b_P + square_S[num_pairs:])


def accumulate_cell_statistics(stats: CellStatistics, value_BxK: jax.Array, column_BxK: jax.Array,
                               acts_BxM: jax.Array, pairs_Px2: jax.Array, neuron_P: jax.Array | None,
                               valid_P: jax.Array | None, num_atoms: int, row_chunk: int = 8192,
                               item_chunk: int = 131072) -> CellStatistics:
  """Adds B rows (codes as row lists, the neurons' activations acts_BxM) to the statistics.

  neuron_P: the neuron each pair is read through (stats of width 1), or None to read every neuron
  (width M). num_atoms: the number of SAE latents N (static). Rows go through in chunks of `row_chunk`
  (the last one overlaps the previous and is masked), items in chunks of `item_chunk`.
  """
  value_BxK = jnp.asarray(value_BxK, jnp.float32)
  column_BxK = jnp.asarray(column_BxK, jnp.int32)
  acts_BxM = jnp.asarray(acts_BxM, jnp.float32)
  pairs_Px2 = jnp.asarray(pairs_Px2, jnp.int32)
  num_pairs = pairs_Px2.shape[0]
  active_P = jnp.ones(num_pairs, bool) if valid_P is None else jnp.asarray(valid_P, bool)
  neuron_P = None if neuron_P is None else jnp.asarray(neuron_P, jnp.int32)
  num_rows = value_BxK.shape[0]
  row_chunk = max(1, min(row_chunk, num_rows))
  num_chunks = -(-num_rows // row_chunk)

  def one_chunk(c, stats):
    first = c * row_chunk
    start = jnp.minimum(first, num_rows - row_chunk)

    def take(a):
      return jax.lax.dynamic_slice_in_dim(a, start, row_chunk, axis=0)

    row_ok_R = start + jnp.arange(row_chunk) >= first
    return _item_pass(stats, take(value_BxK), take(column_BxK), row_ok_R, take(acts_BxM), pairs_Px2,
                      neuron_P, active_P, num_atoms, item_chunk)

  return jax.lax.fori_loop(0, num_chunks, one_chunk, stats)


def _cells(stats: CellStatistics, total_PxV: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sums_PxVx4, counts_Px4) in the order (neither, only a, only b, both)."""
  n_a, n_b, n_ab = stats.count_a_P, stats.count_b_P, stats.count_both_P
  counts_Px4 = jnp.stack([stats.num_rows - n_a - n_b + n_ab, n_a - n_ab, n_b - n_ab, n_ab], axis=-1)
  s10, s01, s11 = stats.sum_only_a_PxV, stats.sum_only_b_PxV, stats.sum_both_PxV
  sums_PxVx4 = jnp.stack([total_PxV - s10 - s01 - s11, s10, s01, s11], axis=-1)
  return sums_PxVx4, counts_Px4


def _means(sums_PxVx4: jax.Array, counts_Px4: jax.Array) -> jax.Array:
  # An empty cell's sum can be a rounding residue (s - s_10 - s_01 - s_11): its mean is 0, as dense.
  counts_Px1x4 = counts_Px4[:, None, :]
  return jnp.where(counts_Px1x4 > 0, sums_PxVx4 / jnp.maximum(counts_Px1x4, 1), 0.0)


def finish_truth_tables(stats: CellStatistics, neuron_P: jax.Array, min_count: int, margin: float = 0.5,
                        valid_P: jax.Array | None = None) -> TruthTables:
  """`truth_tables.TruthTables` from width-1 statistics; invalid pairs get zero means and counts."""
  neuron_P = jnp.asarray(neuron_P, jnp.int32)
  num_pairs = neuron_P.shape[0]
  valid_P = jnp.ones(num_pairs, bool) if valid_P is None else jnp.asarray(valid_P, bool)
  sums_PxVx4, counts_Px4 = _cells(stats, stats.sum_M[neuron_P][:, None])
  counts_Px4 = jnp.where(valid_P[:, None], counts_Px4, 0)
  means_Px4 = jnp.where(valid_P[:, None], _means(sums_PxVx4, counts_Px4)[:, 0], 0.0)
  scale_P = jnp.sqrt(stats.m2_M / jnp.maximum(stats.num_rows, 1))[neuron_P]
  testable_P = valid_P & jnp.all(counts_Px4 >= min_count, axis=-1)
  class_P = jnp.where(testable_P, classify(means_Px4, scale_P, margin), UNTESTABLE)
  interaction_P = means_Px4[:, 3] - means_Px4[:, 1] - means_Px4[:, 2] + means_Px4[:, 0]
  return TruthTables(means_Px4, counts_Px4, interaction_P, scale_P, testable_P, class_P)


def finish_layer_truth_tables(stats: CellStatistics, min_count: int, valid_P: jax.Array | None = None
                              ) -> LayerTruthTables:
  """`validation.LayerTruthTables` from statistics read through every neuron (width M = H)."""
  num_pairs = stats.count_a_P.shape[0]
  valid_P = jnp.ones(num_pairs, bool) if valid_P is None else jnp.asarray(valid_P, bool)
  total_PxH = jnp.broadcast_to(stats.sum_M, stats.sum_only_a_PxV.shape)
  sums_PxHx4, counts_Px4 = _cells(stats, total_PxH)
  counts_Px4 = jnp.where(valid_P[:, None], counts_Px4, 0)
  means_PxHx4 = jnp.where(valid_P[:, None, None], _means(sums_PxHx4, counts_Px4), 0.0)
  testable_P = valid_P & jnp.all(counts_Px4 >= min_count, axis=-1)
  return LayerTruthTables(means_PxHx4, counts_Px4, jnp.sqrt(stats.m2_M / jnp.maximum(stats.num_rows, 1)),
                          testable_P)


def finish_pair_statistics(stats: CellStatistics) -> PairStatistics:
  """`coactivation.PairStatistics` (n_a, n_b, n_ab, code correlation) from the same statistics.

  Correlation = (Σ z_a z_b - B μ_a μ_b) / sqrt((Σ z_a² - B μ_a²)(Σ z_b² - B μ_b²)), 0 for a constant
  code. It assumes each latent is listed at most once per row (as Top-K lists them).
  num_samples is a traced count here (the dense path gives a Python int).
  """
  rows = jnp.maximum(stats.num_rows, 1).astype(jnp.float32)
  mean_a, mean_b = stats.sum_code_a_P / rows, stats.sum_code_b_P / rows
  cross_P = stats.cross_P - rows * mean_a * mean_b
  var_a = jnp.maximum(stats.self_sq_a_P - rows * mean_a * mean_a, 0.0)
  var_b = jnp.maximum(stats.self_sq_b_P - rows * mean_b * mean_b, 0.0)
  denominator_P = jnp.sqrt(var_a * var_b)
  correlation_P = jnp.where(denominator_P > 0, cross_P / jnp.where(denominator_P > 0, denominator_P, 1.0),
                            0.0)
  return PairStatistics(stats.count_a_P, stats.count_b_P, stats.count_both_P, correlation_P, stats.num_rows)


def sparse_truth_tables(neuron_acts_BxM: jax.Array, value_BxK: jax.Array, column_BxK: jax.Array,
                        pairs_Px2: jax.Array, neuron_P: jax.Array, min_count: int, num_atoms: int,
                        margin: float = 0.5, valid_P: jax.Array | None = None, row_chunk: int = 8192,
                        item_chunk: int = 131072) -> TruthTables:
  """`truth_tables.truth_tables` from Top-K row lists, reading only the rows where a pair's atoms fire.

  Same result for valid pairs (up to float summation order); invalid pairs have zero means and counts.
  """
  func = "sparse_truth_tables"
  num_pairs, num_neurons = _check_row_lists(func, value_BxK, column_BxK, pairs_Px2, num_atoms, valid_P,
                                            "neuron_acts_BxM", neuron_acts_BxM)
  check_pair_mask(func, "neuron_P", neuron_P, num_pairs)
  check_index_range(func, "neuron_P", neuron_P, num_neurons, "neurons (columns of neuron_acts_BxM)")
  acts_BxM = jnp.asarray(neuron_acts_BxM, jnp.float32)
  stats = init_cell_statistics(jnp.shape(neuron_P)[0], acts_BxM.shape[1])
  stats = accumulate_cell_statistics(stats, value_BxK, column_BxK, acts_BxM, pairs_Px2, neuron_P, valid_P,
                                     num_atoms, row_chunk, item_chunk)
  return finish_truth_tables(stats, neuron_P, min_count, margin, valid_P)


def sparse_layer_truth_tables(layer_acts_BxH: jax.Array, value_BxK: jax.Array, column_BxK: jax.Array,
                              pairs_Px2: jax.Array, min_count: int, num_atoms: int,
                              valid_P: jax.Array | None = None, row_chunk: int = 8192, item_chunk: int = 8192
                              ) -> LayerTruthTables:
  """`validation.layer_truth_tables` (every pair through every real neuron) from Top-K row lists."""
  _check_row_lists("sparse_layer_truth_tables", value_BxK, column_BxK, pairs_Px2, num_atoms, valid_P,
                   "layer_acts_BxH", layer_acts_BxH)
  acts_BxH = jnp.asarray(layer_acts_BxH, jnp.float32)
  num_pairs, width = jnp.shape(pairs_Px2)[0], acts_BxH.shape[1]
  stats = init_cell_statistics(num_pairs, width, width)
  stats = accumulate_cell_statistics(stats, value_BxK, column_BxK, acts_BxH, pairs_Px2, None, valid_P,
                                     num_atoms, row_chunk, item_chunk)
  return finish_layer_truth_tables(stats, min_count, valid_P)


def sparse_pair_statistics(value_BxK: jax.Array, column_BxK: jax.Array, pairs_Px2: jax.Array,
                           num_atoms: int, valid_P: jax.Array | None = None, row_chunk: int = 8192,
                           item_chunk: int = 131072) -> PairStatistics:
  """`coactivation.pair_statistics` (counts and code correlation) from Top-K row lists."""
  _check_row_lists("sparse_pair_statistics", value_BxK, column_BxK, pairs_Px2, num_atoms, valid_P)
  num_rows = jnp.shape(value_BxK)[0]
  stats = init_cell_statistics(jnp.shape(pairs_Px2)[0], 1)
  stats = accumulate_cell_statistics(stats, value_BxK, column_BxK, jnp.zeros((num_rows, 1), jnp.float32),
                                     pairs_Px2, jnp.zeros(jnp.shape(pairs_Px2)[0], jnp.int32), valid_P,
                                     num_atoms, row_chunk, item_chunk)
  return finish_pair_statistics(stats)
