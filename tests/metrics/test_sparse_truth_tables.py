"""Sparse truth-table cells: equal to the dense path and to plain numpy on planted Top-K codes."""

import jax
import numpy as np
import pytest

from mpcodec.metrics import coactivation as co
from mpcodec.metrics import sparse_cells as sc
from mpcodec.metrics import truth_tables as tt
from mpcodec.metrics import validation as val

NUM_ATOMS, NUM_NEURONS, NUM_ROWS, NUM_PAIRS = 24, 5, 1500, 40

SPARSE_TABLES = jax.jit(sc.sparse_truth_tables,
                        static_argnames=("min_count", "num_atoms", "margin", "row_chunk", "item_chunk"))
DENSE_TABLES = jax.jit(tt.truth_tables, static_argnames=("min_count", "margin"))


def _codes(seed, k):
  """Top-K row lists over skewed firing rates, with zero-valued selections and a latent listed twice."""
  rng = np.random.default_rng(seed)
  pre = rng.normal(size=(NUM_ROWS, NUM_ATOMS)) + np.linspace(0.0, -2.0, NUM_ATOMS)
  first = pre[:, 0] > pre[:, 1]                                           # atoms 0 and 1 exclude each other
  pre[:, 0], pre[:, 1] = np.where(first, pre[:, 0], -9.0), np.where(first, -9.0, pre[:, 1])
  value, column = (np.array(a) for a in jax.lax.top_k(pre.astype(np.float32), k))
  value = np.maximum(value, 0.0)
  value[rng.random(value.shape) < 0.2] = 0.0                              # selected but not firing
  if k >= 2:
    column[:7, -1], value[:7, -1] = column[:7, 0], 0.5                    # a latent listed twice in a row
  dense = np.zeros((NUM_ROWS, NUM_ATOMS), np.float32)
  np.add.at(dense, (np.arange(NUM_ROWS)[:, None], column), value)
  return value.astype(np.float32), column.astype(np.int32), dense


def _neurons(dense, seed):
  """Noise neurons plus planted OR, AND and XOR neurons of atom pairs (2, 3), (4, 5), (6, 7)."""
  rng = np.random.default_rng(seed)
  fires = dense > 0
  acts = rng.normal(scale=0.1, size=(NUM_ROWS, NUM_NEURONS)).astype(np.float32)
  acts[:, 0] += fires[:, 2] | fires[:, 3]
  acts[:, 1] += fires[:, 4] & fires[:, 5]
  acts[:, 2] += fires[:, 6] ^ fires[:, 7]
  return acts


def _pairs(seed):
  rng = np.random.default_rng(seed)
  pairs = rng.integers(0, NUM_ATOMS, size=(NUM_PAIRS, 2)).astype(np.int32)
  neuron = rng.integers(0, NUM_NEURONS, size=NUM_PAIRS).astype(np.int32)
  planted = [((2, 3), 0), ((4, 5), 1), ((6, 7), 2), ((3, 2), 0), ((0, 1), 3), ((5, 5), 4), ((2, 3), 4)]
  for p, ((a, b), m) in enumerate(planted):                     # b < a, a never-co-firing pair, a == b,
    pairs[p], neuron[p] = (a, b), m                             # and a pair read through two neurons
  valid = np.ones(NUM_PAIRS, bool)
  valid[-5:] = False                                            # padding
  pairs[-5:] = (0, 0)
  return pairs, neuron, valid


def _reference_cells(acts, dense, pairs, neuron):
  """Plain numpy: sums and counts of each pair's four cells from boolean masks."""
  fires_BxN = dense > 0
  fa, fb = fires_BxN[:, pairs[:, 0]], fires_BxN[:, pairs[:, 1]]
  cells = (~fa & ~fb, fa & ~fb, ~fa & fb, fa & fb)
  y_BxP = acts[:, neuron].astype(np.float64)
  counts = np.stack([c.sum(0) for c in cells], -1)
  sums = np.stack([(y_BxP * c).sum(0) for c in cells], -1)
  return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0), counts


@pytest.mark.parametrize("k, seed", [(1, 0), (9, 2)])
def test_sparse_tables_match_numpy_and_dense(k, seed):
  value, column, dense = _codes(seed, k)
  acts = _neurons(dense, seed)
  pairs, neuron, valid = _pairs(seed)
  # Row and item chunks that do not divide the data: the overlapping last row chunk is masked.
  sparse = SPARSE_TABLES(acts, value, column, pairs, neuron, min_count=5, num_atoms=NUM_ATOMS, margin=0.5,
                         valid_P=valid, row_chunk=400, item_chunk=97)
  dense_tables = DENSE_TABLES(acts, dense, pairs, neuron, min_count=5, margin=0.5, valid_P=valid)
  means, counts = _reference_cells(acts, dense, pairs, neuron)
  np.testing.assert_array_equal(np.asarray(sparse.counts_Px4)[valid], counts[valid])
  np.testing.assert_allclose(np.asarray(sparse.means_Px4)[valid], means[valid], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sparse.scale_P, acts.std(0)[neuron], rtol=1e-5)
  for field in ("means_Px4", "interaction_P", "scale_P"):
    np.testing.assert_allclose(np.asarray(getattr(sparse, field))[valid],
                               np.asarray(getattr(dense_tables, field))[valid], rtol=1e-5, atol=1e-6)
  for field in ("counts_Px4", "testable_P", "class_P"):
    np.testing.assert_array_equal(np.asarray(getattr(sparse, field))[valid],
                                  np.asarray(getattr(dense_tables, field))[valid])
  # Padding pairs: nothing computed, never testable.
  assert not np.asarray(sparse.counts_Px4)[~valid].any() and not np.asarray(sparse.means_Px4)[~valid].any()
  np.testing.assert_array_equal(np.asarray(sparse.class_P)[~valid], tt.UNTESTABLE)
  assert counts[4, 3] == 0                                      # atoms 0 and 1 never co-fire
  np.testing.assert_array_equal(counts[5, 1:3], 0)              # a == b: only the diagonal cells
  if k >= 9:                                                    # planted gates are found
    assert [int(c) for c in np.asarray(sparse.class_P)[:3]] == [tt.OR, tt.AND, tt.XOR]


def test_accumulating_chunks_equals_one_pass():
  value, column, dense = _codes(3, 9)
  acts = _neurons(dense, 3)
  pairs, neuron, valid = _pairs(3)
  accumulate = jax.jit(sc.accumulate_cell_statistics,
                       static_argnames=("num_atoms", "row_chunk", "item_chunk"))
  stats = sc.init_cell_statistics(NUM_PAIRS, NUM_NEURONS)
  for rows in (slice(0, 500), slice(500, NUM_ROWS)):             # the same shapes: one compile
    stats = accumulate(stats, value[rows], column[rows], acts[rows], pairs, neuron, valid,
                       num_atoms=NUM_ATOMS, row_chunk=256, item_chunk=128)
  chunked = jax.jit(sc.finish_truth_tables, static_argnums=(2, 3))(stats, neuron, 5, 0.5, valid)
  whole = SPARSE_TABLES(acts, value, column, pairs, neuron, min_count=5, num_atoms=NUM_ATOMS, margin=0.5,
                        valid_P=valid, row_chunk=400, item_chunk=97)
  assert int(stats.num_rows) == NUM_ROWS
  np.testing.assert_array_equal(chunked.counts_Px4, whole.counts_Px4)
  np.testing.assert_array_equal(chunked.class_P, whole.class_P)
  np.testing.assert_allclose(chunked.means_Px4, whole.means_Px4, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(chunked.scale_P, whole.scale_P, rtol=1e-5)


def test_layer_tables_and_pair_statistics_match_dense():
  value, column, dense = _codes(4, 9)
  acts = _neurons(dense, 4)
  pairs, _, valid = _pairs(4)
  layer = jax.jit(val.layer_truth_tables, static_argnums=(3,))(acts, dense, pairs, 5, valid)
  sparse_layer = jax.jit(sc.sparse_layer_truth_tables, static_argnames=("min_count", "num_atoms"))(
      acts, value, column, pairs, min_count=5, num_atoms=NUM_ATOMS, valid_P=valid)
  np.testing.assert_allclose(np.asarray(sparse_layer.means_PxHx4)[valid],
                             np.asarray(layer.means_PxHx4)[valid], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(sparse_layer.counts_Px4)[valid],
                                np.asarray(layer.counts_Px4)[valid])
  np.testing.assert_array_equal(sparse_layer.testable_P, layer.testable_P)
  np.testing.assert_allclose(sparse_layer.scale_H, layer.scale_H, rtol=1e-5)
  # Pair statistics read from codes without a duplicated latent (the correlation assumes distinct ones).
  value[:7, -1] = 0.0
  dense = np.zeros_like(dense)
  np.add.at(dense, (np.arange(NUM_ROWS)[:, None], column), value)
  expected = jax.jit(co.pair_statistics)(dense, pairs)
  got = jax.jit(sc.sparse_pair_statistics, static_argnames=("num_atoms",))(value, column, pairs,
                                                                          num_atoms=NUM_ATOMS, valid_P=valid)
  for field in ("count_a_P", "count_b_P", "count_both_P"):
    np.testing.assert_array_equal(np.asarray(getattr(got, field))[valid],
                                  np.asarray(getattr(expected, field))[valid])
  np.testing.assert_allclose(np.asarray(got.correlation_P)[valid], np.asarray(expected.correlation_P)[valid],
                             rtol=1e-4, atol=1e-5)
  assert int(got.num_samples) == NUM_ROWS
