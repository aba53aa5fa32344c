"""Tests of the ground-truth sparse-feature and dictionary samplers (firing statistics, exact k)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core.configuration import ConfigError, parse
from mpcodec.data import toy_features

NUM_SAMPLES = 100_000


def _tolerance(prob, num_samples=NUM_SAMPLES):
  """Five binomial standard errors (plus a floor for p near 0 or 1)."""
  return 5.0 * np.sqrt(np.asarray(prob) * (1.0 - np.asarray(prob)) / num_samples) + 1e-4


def test_sparse_features_firing_rate_and_range():
  sample = jax.jit(toy_features.sample_sparse_features, static_argnums=(1, 2))
  features = np.asarray(sample(jax.random.key(0), NUM_SAMPLES, 4, 0.8))
  assert features.shape == (NUM_SAMPLES, 4) and features.dtype == np.float32
  fired = features > 0
  np.testing.assert_array_less(np.abs(fired.mean(0) - 0.2), _tolerance(0.2))
  nonzero = features[fired]
  assert nonzero.min() > 0.0 and nonzero.max() <= 1.0
  # Uniform on (0, 1]: mean 1/2, variance 1/12.
  assert abs(nonzero.mean() - 0.5) < 5 * np.sqrt(1 / 12 / nonzero.size)
  # Independent features: P(both) = p^2.
  both = np.mean(fired[:, 0] & fired[:, 1])
  assert abs(both - 0.04) < _tolerance(0.04)


def test_sparse_features_traced_sparsity_vmaps():
  sparsities = jnp.array([0.0, 0.5, 0.99])
  sample = jax.jit(jax.vmap(lambda s: toy_features.sample_sparse_features(jax.random.key(1), 20_000, 3, s)))
  rates = np.asarray((sample(sparsities) > 0).mean(axis=(1, 2)))
  expected = 1.0 - np.asarray(sparsities)
  np.testing.assert_array_less(np.abs(rates - expected), _tolerance(expected, 60_000))


def test_dictionary_rows_unit_norm():
  dictionary = np.asarray(toy_features.make_dictionary(jax.random.key(2), 512, 128))
  assert dictionary.shape == (512, 128) and dictionary.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(dictionary, axis=1), 1.0, atol=1e-5)


def test_dictionary_activations_exact_k_and_linear_model():
  dictionary = toy_features.make_dictionary(jax.random.key(3), 64, 16)
  sample = jax.jit(toy_features.sample_dictionary_activations, static_argnums=(1, 3))
  x, f = sample(jax.random.key(4), 4096, dictionary, 5, 0.0)
  x, f = np.asarray(x), np.asarray(f)
  assert x.shape == (4096, 16) and f.shape == (4096, 64)
  np.testing.assert_array_equal((f > 0).sum(1), 5)
  assert f.min() >= 0.0 and f.max() <= 1.0
  np.testing.assert_allclose(x, f @ np.asarray(dictionary), atol=1e-5)
  # Atoms chosen uniformly: each is active with probability k / n.
  np.testing.assert_array_less(np.abs((f > 0).mean(0) - 5 / 64), _tolerance(5 / 64, 4096))
  x_noisy, f_noisy = sample(jax.random.key(4), 4096, dictionary, 5, 0.1)
  residual = np.asarray(x_noisy) - np.asarray(f_noisy) @ np.asarray(dictionary)
  assert abs(residual.std() - 0.1) < 0.005


def test_dictionary_activations_rejects_bad_k():
  dictionary = toy_features.make_dictionary(jax.random.key(3), 8, 4)
  with pytest.raises(ValueError, match="k_active"):
    toy_features.sample_dictionary_activations(jax.random.key(0), 4, dictionary, 9, 0.0)


STRUCTURED = dict(num_features=12, sparsity=0.8, importance_decay=0.9,
                  correlated_groups=[[0, 1, 2]], anticorrelated_groups=[[3, 4], [5, 6, 7]],
                  themes=[[8, 9], [9, 10]], theme_probability=0.6, theme_firing_probability=0.7)


@pytest.fixture(scope="module")
def structured():
  cfg = parse(toy_features.FeatureConfig, STRUCTURED)
  sample = jax.jit(toy_features.sample_features, static_argnums=(1, 2))
  return cfg, np.asarray(sample(jax.random.key(5), NUM_SAMPLES, cfg)) > 0


def test_structured_marginals_match_closed_form(structured):
  cfg, fired = structured
  p = 0.2
  # Independent closed form: correlated members p; anti members p (|g| p <= 1); theme members
  # (1 - P) p + P q with P = 0.6 / 2 per theme containing the feature (feature 9 is in both).
  expected = np.array([p, p, p, p, p, p, p, p,
                       0.7 * p + 0.3 * 0.7, 0.4 * p + 0.6 * 0.7, 0.7 * p + 0.3 * 0.7, p])
  np.testing.assert_allclose(toy_features.expected_firing_probability(cfg), expected, atol=1e-12)
  np.testing.assert_array_less(np.abs(fired.mean(0) - expected), _tolerance(expected))


def test_structured_group_and_theme_joint_statistics(structured):
  _, fired = structured
  p = 0.2
  # Correlated: members always agree.
  np.testing.assert_array_equal(fired[:, 0], fired[:, 1])
  np.testing.assert_array_equal(fired[:, 0], fired[:, 2])
  # Anti-correlated: at most one member per group; the group fires with probability |g| p.
  for members in ([3, 4], [5, 6, 7]):
    counts = fired[:, members].sum(1)
    assert counts.max() == 1
    assert abs(counts.mean() - len(members) * p) < _tolerance(len(members) * p)
  # Themes raise co-firing: P(8 and 10) needs theme {8, 9} and theme {9, 10} at once (never), so it is
  # the no-theme-for-either case (1 - 0.6) p^2 plus one-theme cases (0.3) (p q) each.
  both_8_10 = 0.4 * p * p + 0.3 * 0.7 * p + 0.3 * p * 0.7
  assert abs(np.mean(fired[:, 8] & fired[:, 10]) - both_8_10) < _tolerance(both_8_10)
  both_8_9 = 0.4 * p * p + 0.3 * 0.7 * 0.7 + 0.3 * p * 0.7
  assert abs(np.mean(fired[:, 8] & fired[:, 9]) - both_8_9) < _tolerance(both_8_9)
  # A plain feature stays independent of a themed one.
  assert abs(np.mean(fired[:, 11] & fired[:, 8]) - p * fired[:, 8].mean()) < _tolerance(p * 0.35)


def test_importance_decay():
  cfg = parse(toy_features.FeatureConfig, STRUCTURED)
  np.testing.assert_allclose(toy_features.feature_importance(cfg), 0.9 ** np.arange(12), rtol=1e-6)


@pytest.mark.parametrize("override, key", [
    (dict(sparsity=1.5), "sparsity"),
    (dict(correlated_groups=[[0, 12]]), "correlated_groups[0]"),
    (dict(anticorrelated_groups=[[0, 1, 2, 3, 4, 5]]), "anticorrelated_groups[0]"),
    (dict(correlated_groups=[[0, 8]]), "themes"),
    (dict(theme_firing_probability=0.1), "theme_firing_probability"),
    (dict(themes=[], theme_probability=0.5), "theme_probability"),
    (dict(num_feature=3), "num_feature"),
])
def test_feature_config_rejects_impossible_values(override, key):
  with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
    parse(toy_features.FeatureConfig, {**STRUCTURED, **override})
