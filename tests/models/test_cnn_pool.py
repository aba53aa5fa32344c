"""Tests for the CNN's written-out 2x2 max-pool: values and gradient equal flax.linen.max_pool's."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.models.cnn import max_pool_2x2


def _flax_pool(images):
  return nn.max_pool(images, window_shape=(2, 2), strides=(2, 2), padding="VALID")


def _inputs():
  """Odd sizes (7x5: last row and column dropped), ReLU zeros and planted positive ties."""
  rng = np.random.default_rng(7)
  images = np.maximum(rng.normal(size=(2, 7, 5, 3)), 0.0).astype(np.float32)
  images[0, 0, 0, 0] = images[0, 0, 1, 0] = images[0, 1, 1, 0] = 2.5   # a three-way tie at the maximum
  images[1, 2:4, 2:4, 1] = 0.0                                         # an all-zero window
  return jnp.asarray(images)


def test_max_pool_matches_flax_and_numpy():
  images = _inputs()
  ours = np.asarray(max_pool_2x2(images))
  np.testing.assert_array_equal(ours, np.asarray(_flax_pool(images)))
  expected = np.asarray(images)[:, :6, :4].reshape(2, 3, 2, 2, 2, 3).max(axis=(2, 4))
  np.testing.assert_array_equal(ours, expected)


def test_max_pool_gradient_goes_to_the_first_maximum_as_flax():
  images = _inputs()
  weights = jnp.asarray(np.random.default_rng(8).normal(size=(2, 3, 2, 3)).astype(np.float32))
  ours = jax.grad(lambda x: jnp.sum(weights * max_pool_2x2(x)))(images)
  theirs = jax.grad(lambda x: jnp.sum(weights * _flax_pool(x)))(images)
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
  # Independent check of the tie: only the first of the three tied 2.5s (row-major) gets the gradient.
  assert float(ours[0, 0, 0, 0]) == float(weights[0, 0, 0, 0])
  assert float(ours[0, 0, 1, 0]) == 0.0 and float(ours[0, 1, 1, 0]) == 0.0
  # Exactly one position per window receives its weight, and the dropped row/column none.
  assert np.count_nonzero(np.asarray(ours)) == np.count_nonzero(np.asarray(weights))
  assert not np.any(np.asarray(ours)[:, 6]) and not np.any(np.asarray(ours)[:, :, 4])


def test_max_pool_keeps_nan():
  images = _inputs().at[0, 2, 2, 2].set(jnp.nan)
  assert np.isnan(np.asarray(max_pool_2x2(images))[0, 1, 1, 2])
