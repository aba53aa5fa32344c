"""The validation hypothesis: real-layer truth tables against numpy, and a planted layer that matches."""

import jax
import numpy as np

from mpcodec.metrics import truth_tables as tt
from mpcodec.metrics import validation

LAYER_TABLES = jax.jit(validation.layer_truth_tables, static_argnames=("chunk_size",))
TRUTH_TABLES = jax.jit(tt.truth_tables)


def _planted(seed=0, num_neurons=12, samples=3000):
  """Neuron j is OR, AND or XOR of atoms 2j, 2j+1 (gain and noise); pairs are those atom pairs."""
  rng = np.random.default_rng(seed)
  codes = np.where(rng.random((samples, 2 * num_neurons)) < 0.3, rng.random((samples, 2 * num_neurons)), 0.0)
  a, b = codes[:, 0::2] > 0, codes[:, 1::2] > 0
  gate = np.arange(num_neurons) % 3
  logic = np.where(gate == 0, a | b, np.where(gate == 1, a & b, a ^ b))
  acts = logic * rng.uniform(0.5, 1.5, size=logic.shape) + 0.1 * rng.normal(size=logic.shape)
  pairs = np.stack([np.arange(0, 2 * num_neurons, 2), np.arange(1, 2 * num_neurons, 2)], axis=-1)
  return acts.astype(np.float32), codes.astype(np.float32), pairs, np.arange(num_neurons)


def test_layer_truth_tables_and_similarity_match_numpy():
  rng = np.random.default_rng(1)
  codes = np.where(rng.random((150, 5)) < 0.4, rng.random((150, 5)), 0.0).astype(np.float32)
  layer = rng.normal(size=(150, 3)).astype(np.float32)
  pairs = np.array([[0, 1], [2, 3], [1, 4]])
  tables = LAYER_TABLES(layer, codes, pairs, 5, chunk_size=2)
  expected = np.zeros((3, 3, 4))
  for p, (i, j) in enumerate(pairs):
    cell = (codes[:, i] > 0).astype(int) + 2 * (codes[:, j] > 0)
    for c in range(4):
      np.testing.assert_array_equal(tables.counts_Px4[p, c], (cell == c).sum())
      expected[p, :, c] = layer[cell == c].mean(0)
  np.testing.assert_allclose(tables.means_PxHx4, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(tables.scale_H, layer.std(0), rtol=1e-5)

  synthetic = rng.normal(size=(3, 4)).astype(np.float32)
  neuron = np.array([0, 1, 0])
  similarity, count = validation.truth_table_similarity(synthetic, neuron, expected, np.ones(3, bool), 2)
  centred = lambda t: (t - t.mean()) / np.linalg.norm(t - t.mean())
  reference = np.zeros((2, 3))
  for p in range(3):
    for r in range(3):
      pairs_of_neuron = 2 if neuron[p] == 0 else 1
      reference[neuron[p], r] += centred(synthetic[p]) @ centred(expected[p, r]) / pairs_of_neuron
  np.testing.assert_allclose(similarity, reference, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(count, [2, 1])


def test_a_layer_of_the_same_neurons_is_matched_and_an_unrelated_one_is_not():
  acts, codes, pairs, neurons = _planted()
  synthetic = TRUTH_TABLES(acts, codes, pairs, neurons, 20)
  order = np.random.default_rng(2).permutation(12)
  real = acts[:, order] * 2.0 + 0.05 * np.random.default_rng(3).normal(size=acts.shape).astype(np.float32)
  result = validation.validation_distance(synthetic, neurons, LAYER_TABLES(real, codes, pairs, 20), 12, 0.5)
  assert result.reason is None and result.num_pairs == 12 and result.num_matched_neurons == 12
  np.testing.assert_array_equal(order[result.match_M], np.arange(12))     # each neuron finds its copy
  assert result.matched_similarity > 0.95 and result.tv_distance == 0.0
  np.testing.assert_allclose(result.synthetic_fraction_C, [1 / 3, 1 / 3, 1 / 3, 0.0])

  noise = np.random.default_rng(4).normal(size=acts.shape).astype(np.float32)
  noise_tables = LAYER_TABLES(noise, codes, pairs, 20)
  unrelated = validation.validation_distance(synthetic, neurons, noise_tables, 12, 0.5)
  assert unrelated.matched_similarity < 0.8 and unrelated.tv_distance > 0.5


def test_untestable_pairs_leave_nothing_to_compare():
  acts, codes, pairs, neurons = _planted(num_neurons=12, samples=3000)
  synthetic = TRUTH_TABLES(acts, codes, pairs, neurons, 100_000)
  result = validation.validation_distance(synthetic, neurons, LAYER_TABLES(acts, codes, pairs, 100_000), 12,
                                          0.5)
  assert result.reason is not None and result.matched_similarity is None and result.tv_distance is None
  assert result.num_pairs == 0 and np.all(result.match_M == -1)
  kept = validation.select_pairs(pairs, neurons, np.arange(12) % 2 == 0, 8)
  np.testing.assert_array_equal(kept[0][:6], pairs[::2])
  np.testing.assert_array_equal(kept[2], np.arange(8) < 6)
