"""Tests of the mechanistic measures against plain numpy loops and closed forms (uniform attention,
identical and orthogonal filters, one-hot units), and vmap over seeds equal to a loop."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core.errors import ActivationError
from mpcodec.metrics import mechanisms
from mpcodec.models import transformer

_entropy = jax.jit(mechanisms.attention_entropy)
_cosine = jax.jit(mechanisms.filter_cosine_similarity)
_sparsity = jax.jit(mechanisms.activation_sparsity, static_argnames="eps")
_hoyer = jax.jit(mechanisms.hoyer_sparsity)
_selectivity = jax.jit(mechanisms.class_selectivity, static_argnums=2)

def _reference_entropy(probs, mask):
  num_samples, num_heads, length, _ = probs.shape
  out = np.zeros(num_heads)
  for h in range(num_heads):
    values = []
    for n in range(num_samples):
      for q in range(length):
        if mask[n, q]:
          values.append(-sum(p * math.log(p) for p in probs[n, h, q] if p > 0))
    out[h] = np.mean(values)
  return out


def _reference_cosine(kernel):
  filters = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
  count = filters.shape[1]
  values = []
  for i in range(count):
    for j in range(count):
      if i != j:
        a, b = filters[:, i], filters[:, j]
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        values.append(0.0 if norm == 0 else abs(a @ b) / norm)
  return float(np.mean(values))


def _reference_hoyer(acts, mask):
  vectors = acts.reshape(-1, acts.shape[-1]).astype(np.float64)
  weights = np.ones(len(vectors)) if mask is None else mask.reshape(-1).astype(np.float64)
  width = acts.shape[-1]
  scores = []
  for vector in vectors:
    l1, l2 = np.abs(vector).sum(), np.sqrt((vector**2).sum())
    scores.append(1.0 if l2 == 0 else (math.sqrt(width) - l1 / l2) / (math.sqrt(width) - 1))
  return float(np.sum(np.array(scores) * weights) / weights.sum())


def _reference_selectivity(acts, labels, num_classes):
  out = np.zeros(acts.shape[1])
  for d in range(acts.shape[1]):
    means = [acts[labels == c, d].mean() if np.any(labels == c) else 0.0 for c in range(num_classes)]
    top = max(means)
    rest = (sum(means) - top) / (num_classes - 1)
    out[d] = 0.0 if top + rest <= 0 else (top - rest) / (top + rest)
  return out


def _attention_case(seed=0, num_samples=4, num_heads=3, length=6):
  rng = np.random.default_rng(seed)
  real_lengths = rng.integers(2, length + 1, size=num_samples)
  real_lengths[0] = length
  mask = np.arange(length)[None, :] < real_lengths[:, None]
  logits = rng.normal(size=(num_samples, num_heads, length, length)) * 2
  logits = np.where(mask[:, None, None, :], logits, -1e9)
  probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return (probs / probs.sum(axis=-1, keepdims=True)).astype(np.float32), mask


def test_attention_entropy_matches_numpy_and_uniform_attention_gives_log_length():
  probs, mask = _attention_case()
  np.testing.assert_allclose(np.asarray(_entropy(probs, mask)),
                             _reference_entropy(probs, mask), rtol=1e-5)
  uniform = np.where(mask[:, None, None, :], 1.0, 0.0) / mask.sum(axis=1)[:, None, None, None]
  uniform = np.broadcast_to(uniform, probs.shape).astype(np.float32)
  queries_per_sample = mask.sum(axis=1)
  expected = np.sum(queries_per_sample * np.log(queries_per_sample)) / queries_per_sample.sum()
  np.testing.assert_allclose(np.asarray(_entropy(uniform, mask)), expected, rtol=1e-5)
  one_hot = np.zeros_like(probs)
  one_hot[..., 0] = 1.0
  np.testing.assert_allclose(np.asarray(_entropy(one_hot, mask)), 0.0, atol=1e-7)


def test_attention_entropy_of_the_zoo_attention_ignores_padding():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 5, 8)).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool)
  module = transformer.SelfAttention(num_heads=2)
  probs = jax.jit(lambda key: module.apply(module.init(key, x, mask), x, mask)[1])(jax.random.key(0))
  entropy = np.asarray(_entropy(probs, mask))
  np.testing.assert_allclose(entropy, _reference_entropy(np.asarray(probs), mask), rtol=1e-5)
  assert np.all(entropy <= math.log(5) + 1e-6)
  # Padding queries' rows carry no weight: changing them leaves the entropy alone.
  scrambled = np.asarray(probs).copy()
  scrambled[1, :, 3:] = 1.0 / 5
  np.testing.assert_allclose(np.asarray(_entropy(scrambled, mask)), entropy, rtol=1e-6)


def test_head_specialisation_is_the_population_sd():
  entropy = np.array([0.5, 1.0, 2.5, 0.1], np.float32)
  assert float(mechanisms.head_specialisation(entropy)) == pytest.approx(np.std(entropy), rel=1e-6)
  assert float(mechanisms.head_specialisation(np.full(4, 1.3, np.float32))) == pytest.approx(0.0, abs=1e-6)


def test_filter_cosine_similarity_closed_forms_and_numpy():
  rng = np.random.default_rng(2)
  one = rng.normal(size=(3, 3, 2, 1)).astype(np.float32)
  identical = one * np.array([1, 1, -2, 0.5, 3, -1], np.float32)  # parallel or antiparallel: |cos| 1
  assert float(_cosine(identical)) == pytest.approx(1.0, abs=1e-6)
  orthogonal = np.eye(18, 6, dtype=np.float32).reshape(3, 3, 2, 6)
  assert float(_cosine(orthogonal)) == pytest.approx(0.0, abs=1e-7)
  kernel = rng.normal(size=(3, 3, 2, 6)).astype(np.float32)
  kernel[..., 2] = 0.0  # a dead filter: cosine 0 with every other
  assert float(_cosine(kernel)) == pytest.approx(_reference_cosine(kernel), rel=1e-5)
  dense = rng.normal(size=(10, 4)).astype(np.float32)
  assert float(_cosine(dense)) == pytest.approx(_reference_cosine(dense), rel=1e-5)


def test_sparsity_measures_match_numpy():
  rng = np.random.default_rng(3)
  acts = np.maximum(rng.normal(size=(4, 5, 7)), 0).astype(np.float32)
  mask = rng.random((4, 5)) < 0.7
  mask[0, 0] = True
  acts[0, 0] = 0.0  # a silent position: Hoyer 1
  expected = np.mean(acts[mask] == 0)
  everywhere = np.ones((4, 5), bool)
  assert float(_sparsity(acts, mask)) == pytest.approx(expected, rel=1e-6)
  assert float(_sparsity(acts, everywhere)) == pytest.approx(np.mean(acts == 0), rel=1e-6)
  assert float(mechanisms.activation_sparsity(acts)) == pytest.approx(np.mean(acts == 0), rel=1e-6)
  assert float(_sparsity(acts + 0.05, everywhere, eps=0.1)) == pytest.approx(
      np.mean(np.abs(acts + 0.05) <= 0.1), rel=1e-6)
  assert float(_hoyer(acts, mask)) == pytest.approx(_reference_hoyer(acts, mask), rel=1e-5)
  one_hot = np.zeros((4, 5, 7), np.float32)
  one_hot[..., 3] = 4.0
  assert float(_hoyer(one_hot, everywhere)) == pytest.approx(1.0, abs=1e-6)
  flat = np.broadcast_to(np.array([1, -1, 1, -1, 1, -1, 1], np.float32), (4, 5, 7))
  assert float(_hoyer(flat, everywhere)) == pytest.approx(0.0, abs=1e-6)


def test_class_selectivity_matches_numpy_and_closed_forms():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 4, size=60).astype(np.int32)
  labels[:4] = np.arange(4)
  acts = np.maximum(rng.normal(size=(60, 5)), 0).astype(np.float32)
  acts[:, 0] = np.where(labels == 2, 3.0, 0.0)  # answers class 2 only
  acts[:, 1] = 0.0                               # silent
  acts[:, 2] = 1.5                               # answers every class alike
  selectivity = np.asarray(_selectivity(acts, labels, 4))
  np.testing.assert_allclose(selectivity, _reference_selectivity(acts, labels, 4), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(selectivity[:3], [1.0, 0.0, 0.0], atol=1e-6)
  assert np.all(np.isfinite(selectivity))
  means = np.asarray(mechanisms.class_means(acts, labels, 4))
  np.testing.assert_allclose(means[:, 0], [0, 0, 3, 0], atol=1e-6)


def test_every_measure_vmaps_over_seeds_like_a_loop():
  rng = np.random.default_rng(5)
  probs = np.stack([_attention_case(seed)[0] for seed in range(3)])
  mask = np.stack([_attention_case(seed)[1] for seed in range(3)])
  kernels = rng.normal(size=(3, 3, 3, 2, 4)).astype(np.float32)
  acts = np.maximum(rng.normal(size=(3, 20, 6)), 0).astype(np.float32)
  labels = rng.integers(0, 3, size=(3, 20)).astype(np.int32)

  def measures(probs, mask, kernel, acts, labels):
    entropy = mechanisms.attention_entropy(probs, mask)
    return (entropy, mechanisms.head_specialisation(entropy), mechanisms.filter_cosine_similarity(kernel),
            mechanisms.activation_sparsity(acts), mechanisms.hoyer_sparsity(acts),
            mechanisms.class_selectivity(acts, labels, 3))

  batched = jax.jit(jax.vmap(measures))(probs, mask, kernels, acts, labels)
  single_measures = jax.jit(measures)
  for s in range(3):
    single = single_measures(probs[s], mask[s], kernels[s], acts[s], labels[s])
    for batch_value, value in zip(batched, single):
      np.testing.assert_allclose(np.asarray(batch_value[s]), np.asarray(value), rtol=1e-5, atol=1e-7)


def test_bad_input_raises_one_clear_error():
  with pytest.raises(ActivationError, match="probs_NxHxTxT must be 4-D"):
    mechanisms.attention_entropy(jnp.zeros((2, 3, 4)), jnp.ones((2, 4), bool))
  with pytest.raises(ActivationError, match="key_mask_NxT needs T"):
    mechanisms.attention_entropy(jnp.zeros((2, 1, 4, 4)), jnp.ones((2, 3), bool))
  with pytest.raises(ActivationError, match="2 output filters"):
    mechanisms.filter_cosine_similarity(jnp.zeros((3, 3, 2, 1)))
  with pytest.raises(ActivationError, match="mask needs the leading shape"):
    mechanisms.activation_sparsity(jnp.zeros((4, 5)), jnp.ones(3, bool))
  with pytest.raises(ActivationError, match="2 classes"):
    mechanisms.class_selectivity(jnp.zeros((4, 5)), jnp.zeros(4, jnp.int32), 1)
