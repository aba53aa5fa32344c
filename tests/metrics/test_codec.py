"""Codec metrics against plain numpy references and closed forms."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.metrics import codec


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_fvu_matches_numpy_and_closed_forms():
  x = _rng().normal(size=(50, 7)).astype(np.float32)
  x_hat = x + 0.3 * _rng(1).normal(size=x.shape).astype(np.float32)
  expected = np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2)
  np.testing.assert_allclose(codec.fraction_of_variance_unexplained(x, x_hat), expected, rtol=1e-5)
  np.testing.assert_allclose(codec.fraction_of_variance_unexplained(x, x), 0.0)
  mean_prediction = np.broadcast_to(x.mean(0), x.shape)
  np.testing.assert_allclose(codec.fraction_of_variance_unexplained(x, mean_prediction), 1.0, rtol=1e-5)
  batched = jax.vmap(codec.fraction_of_variance_unexplained)(jnp.stack([x, x]), jnp.stack([x_hat, x]))
  np.testing.assert_allclose(batched, [expected, 0.0], rtol=1e-5, atol=1e-7)


def test_l0_firing_dead_dense():
  acts = np.zeros((10, 5), np.float32)
  acts[:, 0] = 1.0          # fires on every token: dense
  acts[:3, 1] = 2.0         # 30%: dense at 10%
  acts[0, 2] = 0.5          # 10%: not above 10%
  counts = codec.firing_counts(acts)
  np.testing.assert_array_equal(counts, [10, 3, 1, 0, 0])
  np.testing.assert_allclose(codec.l0(acts), (acts != 0).sum(1).mean())
  np.testing.assert_allclose(codec.dead_fraction(counts), 2 / 5)
  np.testing.assert_allclose(codec.dense_fraction(counts, 10, 0.1), 2 / 5)
  np.testing.assert_allclose(codec.dense_fraction(counts, 10, 0.5), 1 / 5)


def test_latent_density_histogram_matches_numpy():
  counts = _rng(2).integers(0, 1000, size=300)
  num_tokens = 10_000
  # Keep frequencies off the bin edges (multiples of 0.25 in log10), where float32 and float64 logs
  # may fall on different sides.
  log_frequency = np.log10(np.maximum(counts, 1) / num_tokens)
  counts[np.abs(log_frequency * 4 - np.round(log_frequency * 4)) < 1e-3] += 1
  counts[:20] = 0
  hist, edges = codec.latent_density_histogram(jnp.asarray(counts), num_tokens, num_bins=20, low=-5.0)
  live = counts[counts > 0]
  expected, expected_edges = np.histogram(np.clip(np.log10(live / num_tokens), -5.0, 0.0), bins=20,
                                          range=(-5.0, 0.0))
  np.testing.assert_allclose(edges, expected_edges, rtol=1e-6)
  np.testing.assert_array_equal(hist, expected)
  assert int(hist.sum()) == 280


def test_mean_max_cosine_similarity_matches_numpy():
  true = _rng(3).normal(size=(6, 4))
  learned = _rng(4).normal(size=(9, 4)) * 3.0
  tn = true / np.linalg.norm(true, axis=1, keepdims=True)
  ln = learned / np.linalg.norm(learned, axis=1, keepdims=True)
  expected = np.mean([max(tn[i] @ ln[j] for j in range(9)) for i in range(6)])
  np.testing.assert_allclose(codec.mean_max_cosine_similarity(learned, true), expected, rtol=1e-5)
  np.testing.assert_allclose(codec.mean_max_cosine_similarity(2.0 * true[::-1], true), 1.0, rtol=1e-6)


def test_matched_pair_correlation_equals_brute_force_matching():
  f = _rng(5).random(size=(200, 4))
  acts = np.stack([f[:, 2] + 0.1 * _rng(6).normal(size=200), f[:, 0] ** 2, _rng(7).random(200),
                   -f[:, 1] + f[:, 3]], axis=1)
  corr = np.corrcoef(acts.T, f.T)[:4, 4:]
  best = max(np.mean([corr[i, p[i]] for i in range(4)]) for p in itertools.permutations(range(4)))
  np.testing.assert_allclose(codec.matched_pair_correlation(acts, f), best, rtol=1e-5)
  np.testing.assert_allclose(codec.pearson_correlation_matrix(acts, f), corr, rtol=1e-4, atol=1e-6)


def test_matched_cosine_similarity_of_a_permutation_is_one():
  true = _rng(8).normal(size=(5, 3))
  np.testing.assert_allclose(codec.matched_cosine_similarity(true[[3, 1, 4, 0, 2]] * 2.0, true), 1.0,
                             rtol=1e-6)


def test_faithfulness_ratio_and_latents_per_neuron():
  x = _rng(9).normal(size=(30, 4))
  x_sae = x + 0.1 * _rng(10).normal(size=x.shape)
  x_sq = x + 0.3 * _rng(11).normal(size=x.shape)
  np.testing.assert_allclose(codec.faithfulness_ratio(x, x_sae, x_sq),
                             np.sum((x - x_sq) ** 2) / np.sum((x - x_sae) ** 2), rtol=1e-5)
  w_enc_MxN = _rng(12).normal(size=(3, 8))
  live = np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)
  expected = np.zeros(3, int)
  for i in range(8):
    if live[i]:
      expected[np.argmax(w_enc_MxN[:, i])] += 1
  np.testing.assert_array_equal(codec.latents_per_neuron(w_enc_MxN, live), expected)
  assert codec.features_per_neuron is codec.latents_per_neuron   # the former name
