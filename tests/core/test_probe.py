"""The linear probe against scikit-learn's logistic regression on the same objective."""

import jax
import numpy as np
import pytest
import scipy.special
from sklearn.linear_model import LogisticRegression

from mpcodec.core import probe
from mpcodec.core.errors import DataError


def _data(seed=0, n=240, dim=12, num_classes=3):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3.0, size=dim) + rng.normal(size=dim)
  y = rng.integers(0, num_classes, n)
  x[np.arange(n), y] += 1.5
  return x.astype(np.float32), y


def test_probe_equals_sklearn_logistic_regression_on_standardised_features():
  x, y = _data()
  l2 = 1e-2
  fitted = probe.fit(x, y, 3, probe.ProbeConfig(l2=l2, steps=100))
  x_std = (x - x.mean(0)) / x.std(0)
  x_std = x_std.astype(np.float64)   # scikit-learn fits float32 input in float32 (less accurate)
  reference = LogisticRegression(C=1.0 / (len(y) * l2), tol=1e-10, max_iter=10_000).fit(x_std, y)
  np.testing.assert_allclose(scipy.special.softmax(np.asarray(probe.logits(fitted, x)), 1),
                             reference.predict_proba(x_std), atol=1e-5)
  np.testing.assert_allclose(probe.accuracy(fitted, x, y), reference.score(x_std, y), atol=1e-6)


def test_row_weights_leave_rows_out_and_batched_fits_equal_single_ones():
  x, y = _data(1)
  keep = np.random.default_rng(2).random(len(y)) < 0.6
  cfg = probe.ProbeConfig(l2=1e-2, steps=40)
  weighted = probe.fit(x, y, 3, cfg, weights_N=keep.astype(np.float32))
  subset = probe.fit(x[keep], y[keep], 3, cfg)
  np.testing.assert_allclose(probe.logits(weighted, x), probe.logits(subset, x), atol=1e-4)
  batched = probe.fit_batched(x, y, np.stack([keep, ~keep]).astype(np.float32), 3, cfg)
  second = jax.tree.map(lambda a: a[1], batched)
  others = probe.fit(x, y, 3, cfg, weights_N=(~keep).astype(np.float32))
  np.testing.assert_allclose(probe.logits(second, x), probe.logits(others, x), atol=1e-4)


def test_margin_direction_is_the_gradient_of_the_target_margin():
  x, y = _data(3)
  fitted = probe.fit(x, y, 3, probe.ProbeConfig(steps=30))

  def margin(row):
    z = probe.logits(fitted, row[None])[0]
    return z[1] - (z[0] + z[2]) / 2

  np.testing.assert_allclose(probe.margin_direction(fitted, 1), jax.grad(margin)(x[0]), rtol=1e-5, atol=1e-6)


def test_bad_labels_are_named():
  x, y = _data(4)
  with pytest.raises(DataError, match="labels must lie"):
    probe.fit(x, y + 5, 3)
  with pytest.raises(DataError, match=r"class\(es\) \[3\] have no training rows"):
    probe.fit(x, y, 4)
