"""Tests of weight entropy, L2 norm and pairwise angles against plain numpy loops."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from mpcodec.metrics import weights


def _reference_entropy(w):
  out = []
  for h in range(w.shape[1]):
    magnitudes = [abs(float(x)) for x in w[:, h]]
    total = sum(magnitudes)
    entropy = 0.0
    for m in magnitudes:
      if total > 0 and m > 0:
        entropy -= (m / total) * math.log(m / total)
    out.append(entropy)
  return np.array(out)


def _reference_norm(w):
  return np.array([math.sqrt(sum(float(x) ** 2 for x in w[:, h])) for h in range(w.shape[1])])


def _reference_angles(w):
  num_neurons = w.shape[1]
  norms = _reference_norm(w)
  angles = np.zeros((num_neurons, num_neurons))
  for i in range(num_neurons):
    for j in range(num_neurons):
      if norms[i] == 0 or norms[j] == 0:
        angles[i, j] = 90.0
      elif i != j:
        dot = sum(float(a) * float(b) for a, b in zip(w[:, i], w[:, j]))
        angles[i, j] = math.degrees(math.acos(max(-1.0, min(1.0, dot / (norms[i] * norms[j])))))
  return angles


def _reference_mean_angle(w):
  angles = _reference_angles(w)
  pairs = [angles[i, j] for i in range(w.shape[1]) for j in range(i + 1, w.shape[1])]
  return sum(pairs) / len(pairs)


def _weights_with_edge_cases(rng, dim=12, num_neurons=5):
  w = rng.normal(size=(dim, num_neurons)).astype(np.float32)
  w[:, 0] = 0.0  # zero vector
  w[3:, 1] = 0.0  # sparse column: some p = 0 terms
  w[:, 2] = -2.0 * w[:, 3]  # antiparallel pair: 180 degrees
  return w


def _assert_angles_close(angles, reference):
  # arccos is ill-conditioned near cos = -1: a float32 rounding of 1e-7 there moves the angle by
  # ~0.03 degrees, so the antiparallel pair (2, 3) gets its own tolerance; other pairs are good to 1e-3.
  antiparallel = np.zeros(reference.shape, bool)
  antiparallel[2, 3] = antiparallel[3, 2] = True
  np.testing.assert_allclose(angles[~antiparallel], reference[~antiparallel], atol=1e-3)
  np.testing.assert_allclose(angles[antiparallel], reference[antiparallel], atol=0.05)


def test_closed_forms():
  uniform = np.ones((8, 1), np.float32)
  assert float(weights.weight_entropy(uniform)[0]) == pytest.approx(math.log(8), rel=1e-6)
  one_hot = np.eye(4, dtype=np.float32)
  np.testing.assert_allclose(weights.weight_entropy(one_hot), np.zeros(4), atol=1e-7)
  np.testing.assert_allclose(weights.pairwise_angles_degrees(one_hot),
                             np.where(np.eye(4), 0.0, 90.0), atol=1e-4)
  assert float(weights.mean_pairwise_angle_degrees(one_hot)) == pytest.approx(90.0, abs=1e-4)


def test_metrics_match_numpy_loops_with_edge_cases():
  w = _weights_with_edge_cases(np.random.default_rng(0))
  np.testing.assert_allclose(weights.weight_entropy(w), _reference_entropy(w), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(weights.weight_l2_norm(w), _reference_norm(w), rtol=1e-5)
  angles = np.asarray(weights.pairwise_angles_degrees(w))
  assert np.all(np.isfinite(angles))
  _assert_angles_close(angles, _reference_angles(w))
  assert angles[2, 3] == pytest.approx(180.0, abs=0.05)
  assert float(weights.mean_pairwise_angle_degrees(w)) == pytest.approx(_reference_mean_angle(w), abs=0.01)


def test_zero_vector_entropy_zero_angle_ninety():
  w = np.zeros((6, 2), np.float32)
  np.testing.assert_array_equal(weights.weight_entropy(w), [0.0, 0.0])
  np.testing.assert_array_equal(weights.pairwise_angles_degrees(w), np.full((2, 2), 90.0))


def test_vmap_over_seeds_under_jit():
  rng = np.random.default_rng(1)
  w_S = np.stack([_weights_with_edge_cases(rng) for _ in range(3)])

  @jax.jit
  @jax.vmap
  def all_metrics(w):
    return (weights.weight_entropy(w), weights.weight_l2_norm(w), weights.pairwise_angles_degrees(w),
            weights.mean_pairwise_angle_degrees(w))

  entropy, norm, angles, mean_angle = all_metrics(w_S)
  assert entropy.shape == (3, 5) and angles.shape == (3, 5, 5) and mean_angle.shape == (3,)
  for s, w in enumerate(w_S):
    np.testing.assert_allclose(entropy[s], _reference_entropy(w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm[s], _reference_norm(w), rtol=1e-5)
    _assert_angles_close(np.asarray(angles[s]), _reference_angles(w))
    assert float(mean_angle[s]) == pytest.approx(_reference_mean_angle(w), abs=0.01)


def test_mean_angle_needs_two_neurons():
  with pytest.raises(ValueError, match="at least 2 neurons"):
    weights.mean_pairwise_angle_degrees(np.ones((4, 1), np.float32))
