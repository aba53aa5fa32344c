"""Top-K and BatchTopK selection equal a numpy reference, ties toward the lower index included."""

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.sae import autoencoder, selection


def _numpy_topk(pre_BxN: np.ndarray, k: int, k_max: int):
  """(values, columns) of each row's k_max largest entries, ordered by value then by lower column;
  ranks >= k and negative values give 0 (ReLU)."""
  values, cols = [], []
  for row in pre_BxN:
    order = np.lexsort((np.arange(row.size), -row))[:k_max]   # last key first: value desc, then index
    cols.append(order)
    values.append(np.where(np.arange(k_max) < k, np.maximum(row[order], 0.0), 0.0))
  return np.array(values), np.array(cols)


def _tied(shape, seed=0, levels=5):
  """Pre-activations drawn from a few levels, so that most entries tie with many others."""
  rng = np.random.default_rng(seed)
  return rng.integers(-2, levels - 2, size=shape).astype(np.float32) * 0.5


def test_topk_selection_equals_numpy_with_ties_toward_the_lower_index():
  for pre in (_tied((7, 40)), np.random.default_rng(1).normal(size=(9, 64)).astype(np.float32)):
    for k, k_max in ((5, 5), (3, 6)):
      codes = selection.topk_select(jnp.asarray(pre), k, k_max)
      values, cols = _numpy_topk(pre, k, k_max)
      batch = pre.shape[0]
      np.testing.assert_array_equal(np.asarray(codes.cols_T).reshape(k_max, batch).T, cols)
      np.testing.assert_array_equal(np.asarray(codes.rows_T).reshape(k_max, batch).T,
                                    np.repeat(np.arange(batch)[:, None], k_max, 1))
      np.testing.assert_array_equal(np.asarray(codes.values_T).reshape(k_max, batch).T, values)


def test_batch_topk_selection_equals_numpy_over_the_flat_batch():
  pre = _tied((6, 30), seed=2)
  batch, n = pre.shape
  k, k_max = 2, 3
  codes = selection.batch_topk_select(jnp.asarray(pre), k, k_max)
  flat = pre.reshape(-1)
  order = np.lexsort((np.arange(flat.size), -flat))[:k_max * batch]
  np.testing.assert_array_equal(np.asarray(codes.rows_T) * n + np.asarray(codes.cols_T), order)
  expected = np.where(np.arange(k_max * batch) < k * batch, np.maximum(flat[order], 0.0), 0.0)
  np.testing.assert_array_equal(np.asarray(codes.values_T), expected)


def test_selection_under_vmap_and_jit_equals_one_row_batch_at_a_time():
  pre_SxBxN = jnp.asarray(np.stack([_tied((5, 24), seed=s) for s in range(3)]))
  ks = jnp.array([2, 4, 3])
  select = jax.jit(jax.vmap(lambda p, k: selection.topk_select(p, k, 4)))
  batched = select(pre_SxBxN, ks)
  for s in range(3):
    one = selection.topk_select(pre_SxBxN[s], ks[s], 4)
    for got, want in zip(batched, one):
      np.testing.assert_array_equal(np.asarray(got[s]), np.asarray(want))
  # The autoencoder's names are the selection module's (its public path for callers).
  assert autoencoder.topk_select is selection.topk_select and autoencoder.Codes is selection.Codes
