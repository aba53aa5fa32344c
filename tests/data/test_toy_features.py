"""Tests of the ground-truth sparse-feature and dictionary samplers (firing statistics, exact k)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core.configuration import ConfigError, parse
from mpcodec.core.errors import DataError
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


THEMES = toy_features.ThemeConfig(num_themes=4, themed_atoms=48, theme_probability=0.6,
                                  member_probability=0.3, direction_cosine=0.6)
SAMPLE_WITH_THEMES = jax.jit(toy_features.sample_dictionary_activations, static_argnums=(1, 3, 5))


def test_theme_labels_blocks_and_feature_themes():
  blocks = toy_features.theme_labels(50, THEMES, "cofiring")
  np.testing.assert_array_equal(blocks, np.concatenate([np.repeat(np.arange(4), 12), [-1, -1]]))
  interleaved = toy_features.theme_labels(50, THEMES, "geometric")
  np.testing.assert_array_equal(interleaved, np.concatenate([np.tile(np.arange(4), 12), [-1, -1]]))
  np.testing.assert_array_equal(toy_features.theme_labels(7, toy_features.ThemeConfig(), "cofiring"), -1)
  with pytest.raises(DataError, match="num_themes"):
    toy_features.theme_labels(3, THEMES, "geometric")
  cfg = parse(toy_features.FeatureConfig, STRUCTURED)      # themes [[8, 9], [9, 10]]: 9 keeps its first
  np.testing.assert_array_equal(toy_features.feature_theme_labels(cfg), [-1] * 8 + [0, 0, 1, -1])


def test_geometric_themes_put_atoms_at_the_set_angle_of_a_shared_direction():
  dictionary = np.asarray(toy_features.make_themed_dictionary(jax.random.key(0), 50, 256, THEMES))
  labels = toy_features.theme_labels(50, THEMES, "geometric")
  np.testing.assert_allclose(np.linalg.norm(dictionary, axis=1), 1.0, atol=1e-5)
  cosine = dictionary @ dictionary.T
  same = (labels[:, None] == labels[None, :]) & (labels[:, None] >= 0) & ~np.eye(50, dtype=bool)
  # Two atoms of a theme: c² = 0.36 up to the random orthogonal parts (about 1/sqrt(256) each).
  assert abs(cosine[same].mean() - 0.36) < 0.02
  assert abs(cosine[~same & ~np.eye(50, dtype=bool)].mean()) < 0.02
  # The theme direction is recovered as the normalised mean of its atoms, at cosine about c.
  for t in range(4):
    members = dictionary[labels == t]
    direction = members.mean(0) / np.linalg.norm(members.mean(0))
    assert abs(np.mean(members @ direction) - 0.6) < 0.1
  # Without geometric themes the dictionary is make_dictionary's, bit for bit.
  plain = toy_features.ThemeConfig(num_themes=4, theme_probability=0.5)
  np.testing.assert_array_equal(toy_features.make_themed_dictionary(jax.random.key(0), 50, 16, plain),
                                toy_features.make_dictionary(jax.random.key(0), 50, 16))


def test_cofiring_themes_keep_k_and_raise_within_theme_cofiring():
  dictionary = toy_features.make_dictionary(jax.random.key(3), 50, 16)
  x, f = SAMPLE_WITH_THEMES(jax.random.key(4), 20_000, dictionary, 4, 0.0, THEMES)
  fired = np.asarray(f) > 0
  np.testing.assert_array_equal(fired.sum(1), 4)
  np.testing.assert_allclose(np.asarray(x), np.asarray(f) @ np.asarray(dictionary), atol=1e-5)
  labels = toy_features.theme_labels(50, THEMES, "cofiring")
  rate = fired.mean(0)
  lift = (fired.T.astype(float) @ fired) / len(fired) / np.outer(rate, rate)
  same = (labels[:, None] == labels[None, :]) & (labels[:, None] >= 0) & ~np.eye(50, dtype=bool)
  other = (labels[:, None] != labels[None, :]) & (labels[:, None] >= 0) & (labels[None, :] >= 0)
  # Within a theme about 1.8, across themes about 0.46 (a themed sample's k slots go to its theme).
  assert lift[same].mean() > 1.4 and lift[other].mean() < 0.7
  # No co-firing configured (or none at all): the draw of the plain sampler, bit for bit.
  _, plain = SAMPLE_WITH_THEMES(jax.random.key(4), 64, dictionary, 4, 0.0, None)
  for cfg in (toy_features.ThemeConfig(), toy_features.ThemeConfig(num_themes=4, direction_cosine=0.5)):
    _, same_draw = SAMPLE_WITH_THEMES(jax.random.key(4), 64, dictionary, 4, 0.0, cfg)
    np.testing.assert_array_equal(same_draw, plain)


@pytest.mark.parametrize("override, key", [
    (dict(num_themes=-1), "num_themes"),
    (dict(theme_probability=1.5), "theme_probability"),
    (dict(direction_cosine=-0.1), "direction_cosine"),
    (dict(member_probability=2.0), "member_probability"),
])
def test_theme_config_rejects_impossible_values(override, key):
  with pytest.raises(ConfigError, match=key):
    parse(toy_features.ThemeConfig, override)
