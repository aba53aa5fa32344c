"""Tests of the synthetic orientation x colour bars."""

import jax
import numpy as np

from mpcodec.data.bars import BLUE, HORIZONTAL, RED, VERTICAL, BarsConfig, generate_bars, make_bars_splits

SMALL = BarsConfig(num_train=64, num_test=64, image_size=16, max_thickness=4, noise_std=0.0)


def test_same_key_same_data_and_separate_splits():
  a = generate_bars(jax.random.PRNGKey(3), 64, SMALL)
  b = generate_bars(jax.random.PRNGKey(3), 64, SMALL)
  c = generate_bars(jax.random.PRNGKey(4), 64, SMALL)
  np.testing.assert_array_equal(np.asarray(a["images"]), np.asarray(b["images"]))
  assert not np.array_equal(np.asarray(a["images"]), np.asarray(c["images"]))
  train, test = make_bars_splits(SMALL, seed=0)
  assert not np.array_equal(np.asarray(train["images"]), np.asarray(test["images"]))


def test_shapes_balance_and_bar_geometry():
  data = jax.tree.map(np.asarray, generate_bars(jax.random.PRNGKey(0), 64, SMALL))
  images, orientation, colour = data["images"], data["orientation"], data["colour"]
  assert images.shape == (64, 16, 16, 3) and images.dtype == np.float32
  counts = np.bincount(orientation * 2 + colour, minlength=4)
  assert counts.tolist() == [16, 16, 16, 16]
  for img, o, c in zip(images, orientation, colour):
    lit = img.max(axis=-1) > 0.5
    rows, cols = np.where(lit)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    # The bar is one rectangle (every pixel of its bounding box lit) ...
    assert lit.sum() == height * width
    # ... thin across its orientation, and painted only in its colour's channel.
    thickness = width if o == VERTICAL else height
    assert SMALL.min_thickness <= thickness <= SMALL.max_thickness
    length = height if o == VERTICAL else width
    assert length >= round(SMALL.min_length_fraction * SMALL.image_size)
    channel = 0 if c == RED else 2
    assert np.all(img[lit][:, channel] == 1.0) and np.all(img[..., 2 - channel] == 0.0)
  assert set(np.unique(orientation)) == {VERTICAL, HORIZONTAL} and set(np.unique(colour)) == {RED, BLUE}


def test_noise_is_gaussian_with_configured_std():
  noisy = BarsConfig(num_train=64, num_test=64, image_size=16, max_thickness=4, noise_std=0.2)
  clean = generate_bars(jax.random.PRNGKey(1), 256, SMALL.__class__(**{**SMALL.__dict__, "noise_std": 0.0}))
  data = generate_bars(jax.random.PRNGKey(1), 256, noisy)
  residual = np.asarray(data["images"]) - np.asarray(clean["images"])
  assert abs(residual.std() - 0.2) < 0.01 and abs(residual.mean()) < 0.01
