"""Tests of Concept Response Selectivity and neuron labels against plain numpy loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.metrics import selectivity


def _reference_responses(acts, ids, num_concepts):
  responses = np.zeros((num_concepts, acts.shape[1]))
  for c in range(num_concepts):
    rows = [n for n in range(acts.shape[0]) if ids[n] == c]
    for h in range(acts.shape[1]):
      if rows:
        responses[c, h] = sum(acts[n, h] for n in rows) / len(rows)
  return responses


def _reference_crs(responses):
  crs = np.zeros(responses.shape[1])
  for h in range(responses.shape[1]):
    column = sorted(responses[:, h].tolist(), reverse=True)
    crs[h] = 0.0 if column[0] <= 0 else (column[0] - column[1]) / column[0]
  return crs


def _reference_labels(crs_o, crs_c, alive, threshold):
  labels = []
  for o, c, a in zip(crs_o, crs_c, alive):
    if not a:
      labels.append(2)
    elif o < threshold and c < threshold:
      labels.append(1)
    else:
      labels.append(0)
  return np.array(labels)


def _random_case(rng, num_samples=40, num_neurons=6):
  acts = np.maximum(rng.normal(size=(num_samples, num_neurons)), 0.0).astype(np.float32)
  acts[:, 0] = 0.0  # a dead neuron
  orientation = rng.integers(0, 2, num_samples).astype(np.int32)
  colour = rng.integers(0, 2, num_samples).astype(np.int32)
  # A neuron that answers only vertical bars: CRS for orientation must be exactly 1.
  acts[:, 1] = np.where(orientation == 0, 2.0, 0.0)
  return acts, orientation, colour


def test_label_constants():
  assert (selectivity.MONOSEMANTIC, selectivity.POLYSEMANTIC, selectivity.DEAD) == (0, 1, 2)
  assert selectivity.LABEL_NAMES == ("monosemantic", "polysemantic", "dead")


def test_concept_responses_and_crs_match_numpy_loops():
  rng = np.random.default_rng(0)
  acts = rng.normal(size=(30, 5)).astype(np.float32)
  ids = rng.integers(0, 4, 30).astype(np.int32)
  responses = jax.jit(selectivity.concept_responses, static_argnums=2)(acts, ids, 4)
  np.testing.assert_allclose(responses, _reference_responses(acts, ids, 4), rtol=1e-5, atol=1e-6)
  relu_responses = np.maximum(np.asarray(responses), 0.0)
  np.testing.assert_allclose(selectivity.concept_response_selectivity(relu_responses),
                             _reference_crs(relu_responses), rtol=1e-5, atol=1e-6)


def test_concept_without_samples_gives_zero_response_not_nan():
  acts = np.array([[1.0, 2.0], [3.0, 0.0]], np.float32)
  ids = np.array([0, 0], np.int32)  # concepts 1 and 2 have no samples
  responses = np.asarray(selectivity.concept_responses(acts, ids, 3))
  np.testing.assert_allclose(responses, [[2.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
  crs = np.asarray(selectivity.concept_response_selectivity(responses))
  np.testing.assert_allclose(crs, [1.0, 1.0])


def test_silent_neuron_has_crs_zero_and_finite_gradient():
  responses = jnp.zeros((2, 3))
  np.testing.assert_array_equal(selectivity.concept_response_selectivity(responses), np.zeros(3))
  grad = jax.grad(lambda r: selectivity.concept_response_selectivity(r).sum())(responses)
  assert np.all(np.isfinite(grad))


def test_crs_needs_two_concepts():
  with pytest.raises(ValueError, match="C >= 2"):
    selectivity.concept_response_selectivity(jnp.ones((1, 3)))


def test_selectivity_of_two_concept_sets_and_labels_match_reference_under_jit_and_vmap():
  rng = np.random.default_rng(1)
  cases = [_random_case(rng) for _ in range(3)]
  acts_S, orientation_S, colour_S = (np.stack(parts) for parts in zip(*cases))
  threshold = 0.3

  def one_seed(acts, orientation, colour):
    crs = lambda ids, num: selectivity.concept_response_selectivity(selectivity.concept_responses(acts, ids, num))
    out = {"crs_orientation": crs(orientation, 2), "crs_colour": crs(colour, 2),
           "crs_conjunction": crs(orientation * 2 + colour, 4), "alive": jnp.any(acts > 0, axis=0)}
    out["labels"] = selectivity.label_neurons(out["crs_orientation"], out["crs_colour"], out["alive"],
                                              threshold)
    return out

  batched = jax.jit(jax.vmap(one_seed))(acts_S, orientation_S, colour_S)
  for s, (acts, orientation, colour) in enumerate(cases):
    crs_o = _reference_crs(_reference_responses(acts, orientation, 2))
    crs_c = _reference_crs(_reference_responses(acts, colour, 2))
    crs_j = _reference_crs(_reference_responses(acts, orientation * 2 + colour, 4))
    alive = np.array([any(acts[n, h] > 0 for n in range(acts.shape[0])) for h in range(acts.shape[1])])
    np.testing.assert_allclose(batched["crs_orientation"][s], crs_o, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched["crs_colour"][s], crs_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched["crs_conjunction"][s], crs_j, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(batched["alive"][s], alive)
    np.testing.assert_array_equal(batched["labels"][s], _reference_labels(crs_o, crs_c, alive, threshold))
    assert batched["crs_orientation"][s][1] == pytest.approx(1.0)
    assert batched["labels"][s][0] == selectivity.DEAD
    assert batched["labels"][s][1] == selectivity.MONOSEMANTIC


def test_label_threshold_is_an_argument():
  crs_o = jnp.array([0.2, 0.5, 0.2, 0.0])
  crs_c = jnp.array([0.1, 0.1, 0.4, 0.0])
  alive = jnp.array([True, True, True, False])
  np.testing.assert_array_equal(selectivity.label_neurons(crs_o, crs_c, alive, 0.3), [1, 0, 0, 2])
  np.testing.assert_array_equal(selectivity.label_neurons(crs_o, crs_c, alive, 0.6), [1, 1, 1, 2])
  np.testing.assert_array_equal(selectivity.label_neurons(crs_o, crs_c, alive, 0.05), [0, 0, 0, 2])
