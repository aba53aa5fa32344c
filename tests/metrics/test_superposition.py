"""Tests of the superposition metrics against plain numpy references and closed forms."""

import jax
import numpy as np

from mpcodec.metrics import superposition


def _numpy_feature_dimensionality(weights):
  n = weights.shape[1]
  out = np.zeros(n)
  for i in range(n):
    norm_sq = weights[:, i] @ weights[:, i]
    if norm_sq == 0:
      continue
    unit = weights[:, i] / np.sqrt(norm_sq)
    out[i] = norm_sq / sum((unit @ weights[:, j]) ** 2 for j in range(n))
  return out


def _numpy_features_per_neuron(weights):
  out = []
  for row in weights:
    positive = np.maximum(row, 0.0)
    total = np.sum(positive ** 2)
    out.append(0.0 if total == 0 else total ** 2 / np.sum(positive ** 4))
  return np.array(out)


def test_dimensionality_matches_numpy_on_random_weights():
  weights = np.array(jax.random.normal(jax.random.key(0), (3, 7)))
  weights[:, 4] = 0.0
  np.testing.assert_allclose(superposition.feature_dimensionality(weights),
                             _numpy_feature_dimensionality(weights), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(superposition.dimensions_per_feature_total(weights),
                             3 / np.sum(weights ** 2), rtol=1e-6)


def test_dimensionality_closed_forms():
  angles = np.radians(72.0 * np.arange(5))
  pentagon = 1.3 * np.stack([np.cos(angles), np.sin(angles)])
  np.testing.assert_allclose(superposition.feature_dimensionality(pentagon), 0.4, atol=1e-6)
  np.testing.assert_allclose(superposition.embedding_angle_gaps(pentagon), 72.0, atol=1e-4)
  antipodal = np.array([[1.0, -1.0, 0.0]])
  np.testing.assert_allclose(superposition.feature_dimensionality(antipodal), [0.5, 0.5, 0.0], atol=1e-7)
  identity = np.eye(4)
  np.testing.assert_allclose(superposition.feature_dimensionality(identity), 1.0, atol=1e-7)
  np.testing.assert_allclose(superposition.dimensions_per_feature_total(identity), 1.0)


def test_angle_gaps_match_numpy_and_vmap_over_seeds():
  weights = np.array(jax.random.normal(jax.random.key(1), (4, 2, 6)))
  gaps = np.asarray(jax.vmap(superposition.embedding_angle_gaps)(weights))
  for seed in range(4):
    directions = np.sort(np.degrees(np.arctan2(weights[seed, 1], weights[seed, 0])))
    expected = np.diff(np.append(directions, directions[0] + 360.0))
    np.testing.assert_allclose(gaps[seed], expected, atol=1e-3)
  np.testing.assert_allclose(gaps.sum(1), 360.0, atol=1e-3)


def test_features_per_neuron_matches_numpy_and_closed_forms():
  weights = np.array(jax.random.normal(jax.random.key(2), (5, 9)))
  weights[3] = -np.abs(weights[3])  # no positive weight: carries no feature
  np.testing.assert_allclose(superposition.feature_participation_per_neuron(weights),
                             _numpy_features_per_neuron(weights), rtol=1e-5)
  assert float(superposition.feature_participation_per_neuron(weights)[3]) == 0.0
  three_equal = np.array([[0.5, 0.5, 0.5, -2.0, 0.0]])
  np.testing.assert_allclose(superposition.feature_participation_per_neuron(three_equal), [3.0], rtol=1e-6)


def test_represented_count_and_two_feature_classes():
  weights = np.array([[0.9, 0.1, -0.6, 0.0], [0.0, 0.3, 0.0, 0.49]])
  np.testing.assert_array_equal(superposition.represented_features(weights), [True, False, True, False])
  assert int(superposition.num_represented_features(weights)) == 2
  cases = np.array([[[1.0, 0.1]], [[0.1, 1.0]], [[1.0, -0.9]], [[0.8, 0.9]], [[0.1, 0.2]]])
  np.testing.assert_array_equal(
      superposition.classify_two_feature_solution(cases),
      [superposition.NOT_REPRESENTED, superposition.DEDICATED_DIMENSION, superposition.SUPERPOSITION,
       superposition.OTHER, superposition.OTHER])
