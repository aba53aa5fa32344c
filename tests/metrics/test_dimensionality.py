"""Tests for metrics.dimensionality: closed forms, numpy references, jit/vmap and degenerate input."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.metrics import dimensionality as dim

# One compile per input shape (eager mode would compile every primitive separately, which dominates
# the runtime on CPU); shapes are shared between tests where possible.
_singular_values = jax.jit(dim.singular_values)
_all_measures = jax.jit(dim.all_measures, static_argnames=("twonn_samples",))
_twonn = jax.jit(dim.twonn_dimension, static_argnames=("num_samples",))


def _measures(x, row_mask=None, twonn_samples=None):
  return _all_measures(x, jax.random.key(0), twonn_samples, row_mask)


def _centred(x):
  x = np.asarray(x, np.float64)
  return x - x.mean(axis=0)


def _numpy_measures(x):
  """Independent float64 reference for the four spectral measures of centred x."""
  sigma = np.linalg.svd(_centred(x), compute_uv=False)
  eigvals = sigma**2
  p = sigma / sigma.sum()
  p = p[p > 0]
  cumulative = np.cumsum(np.sort(eigvals)[::-1]) / eigvals.sum()
  return {
      "participation_ratio": eigvals.sum() ** 2 / np.sum(eigvals**2),
      "effective_rank": np.exp(-np.sum(p * np.log(p))),
      "stable_rank": np.linalg.norm(_centred(x), "fro") ** 2 / np.linalg.norm(_centred(x), 2) ** 2,
      "num_components_90": int(np.argmax(cumulative >= 0.9)) + 1,
  }


def _decaying_matrix(rng, num_rows, num_features, decay=0.8):
  """Gaussian matrix whose column scales decay geometrically, then rotated: a spread-out spectrum."""
  scales = decay ** np.arange(num_features)
  rotation, _ = np.linalg.qr(rng.normal(size=(num_features, num_features)))
  return ((rng.normal(size=(num_rows, num_features)) * scales) @ rotation + 2.0).astype(np.float32)


def test_equal_eigenvalues_give_n():
  # Rows +q_i and -q_i of an orthogonal matrix: zero column means and X^T X = 2 I, so all eigenvalues
  # are equal and every spectral measure is exactly n.
  n = 8
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))
  x = np.concatenate([q, -q]).astype(np.float32)
  measures = _measures(x)
  assert float(measures["participation_ratio"]) == pytest.approx(n, rel=1e-5)
  assert float(measures["effective_rank"]) == pytest.approx(n, rel=1e-5)
  assert float(measures["stable_rank"]) == pytest.approx(n, rel=1e-4)
  # Each eigenvalue holds 1/8 of the variance: 7/8 < 0.9 <= 8/8.
  assert int(measures["num_components_90"]) == n
  # The one-measure wrappers agree with all_measures (one compile for all four).
  wrappers = jax.jit(lambda x: (dim.participation_ratio(x), dim.effective_rank(x), dim.stable_rank(x),
                                dim.num_components_for_variance(x, 0.5)))(x)
  assert float(wrappers[0]) == pytest.approx(float(measures["participation_ratio"]))
  assert float(wrappers[1]) == pytest.approx(float(measures["effective_rank"]))
  assert float(wrappers[2]) == pytest.approx(float(measures["stable_rank"]))
  assert int(wrappers[3]) == 4


def test_rank_one_gives_one():
  rng = np.random.default_rng(1)
  x = (np.outer(rng.normal(size=300), rng.normal(size=64)) + 5.0).astype(np.float32)
  sigma = _singular_values(x)
  assert float(dim.participation_ratio_from_sigma(sigma)) == pytest.approx(1.0, abs=1e-5)
  assert float(dim.stable_rank_from_sigma(sigma)) == pytest.approx(1.0, abs=1e-5)
  # The 63 null directions keep float32 noise near eps * sigma_max each (about 1e-7 of the mass),
  # which lifts exp(H) by ~2e-4; reading sigma from Gram eigenvalues (sqrt eigvalsh) gives ~1.05 here.
  assert float(dim.effective_rank_from_sigma(sigma)) == pytest.approx(1.0, abs=1e-3)
  assert int(dim.num_components_from_sigma(sigma, 0.9)) == 1


def test_isotropic_gaussian_participation_ratio():
  # With n = N - 1 degrees of freedom the sample covariance S is Wishart(n, I)/n, so E tr S = D and
  # E tr S^2 = D (n + D + 1) / n, giving PR ~ D n / (n + D + 1) = 49.37 for N = 4000, D = 50 (not D:
  # finite N spreads the eigenvalues, Marchenko-Pastur). Between draws PR varies by sd ~0.02 at this
  # size and the ratio-of-expectations bias is O(1/n) ~ 0.01, so 0.1 is ~5 sd and still rejects 50.
  num_rows, num_features = 4000, 50
  n = num_rows - 1
  expected = num_features * n / (n + num_features + 1)
  x = np.random.default_rng(2).normal(size=(num_rows, num_features)).astype(np.float32)
  sigma = _singular_values(x)
  assert float(dim.participation_ratio_from_sigma(sigma)) == pytest.approx(expected, abs=0.1)


def test_components_for_variance_on_designed_spectrum():
  # Rows +-diag(s) give covariance eigenvalues proportional to s^2 = [50, 30, 12, 5, 2, 1] (sum 100):
  # cumulative 50, 80, 92, 97, 99, 100 percent.
  s = np.sqrt(np.array([50.0, 30.0, 12.0, 5.0, 2.0, 1.0]))
  x = np.concatenate([np.diag(s), -np.diag(s)]).astype(np.float32)
  sigma = _singular_values(x)
  for fraction, expected in [(0.4, 1), (0.7, 2), (0.9, 3), (0.95, 4), (0.985, 5), (1.0, 6)]:
    assert int(dim.num_components_from_sigma(sigma, fraction)) == expected, fraction
  with pytest.raises(ValueError, match="fraction"):
    dim.num_components_from_sigma(sigma, 0.0)


# Shapes cover both spectrum routes: the small Gram matrix (tall, wide) and the direct SVD (square).
@pytest.mark.parametrize("shape", [(400, 24), (12, 60), (100, 60)], ids=["tall", "wide", "square"])
def test_spectral_measures_match_numpy(shape):
  x = _decaying_matrix(np.random.default_rng(3), *shape) if shape[0] >= shape[1] else (
      _decaying_matrix(np.random.default_rng(3), shape[1], shape[1])[: shape[0]])
  expected = _numpy_measures(x)
  got = _measures(x)
  for name in ("participation_ratio", "effective_rank", "stable_rank"):
    assert float(got[name]) == pytest.approx(expected[name], rel=1e-4), name
  assert int(got["num_components_90"]) == expected["num_components_90"]
  # A stable rank computed with the Frobenius norm twice would be 1.
  assert expected["stable_rank"] > 1.5


def _linear_subspace(rng, num_points, intrinsic_dim, ambient_dim=12):
  basis, _ = np.linalg.qr(rng.normal(size=(ambient_dim, intrinsic_dim)))
  return (rng.normal(size=(num_points, intrinsic_dim)) @ basis.T).astype(np.float32)


def _embed(rng, points, ambient_dim=12):
  """Places points isometrically in ambient_dim dimensions with a random rotation."""
  basis, _ = np.linalg.qr(rng.normal(size=(ambient_dim, points.shape[1])))
  return (points @ basis.T).astype(np.float32)


# Under local uniformity log(r2/r1) is Exponential(d), so (n - 1) / sum log mu has sd d / sqrt(n - 2);
# the tolerances below are 4 sd (fixed seeds, so the tests are deterministic). All TwoNN inputs are
# (1000, 12) so they share one compile.
_TWONN_POINTS = 1000


@pytest.mark.parametrize("intrinsic_dim", [2, 5])
def test_twonn_linear_subspace(intrinsic_dim):
  x = _linear_subspace(np.random.default_rng(intrinsic_dim), _TWONN_POINTS, intrinsic_dim)
  tolerance = 4 * intrinsic_dim / np.sqrt(_TWONN_POINTS - 2)
  assert float(_twonn(x)) == pytest.approx(intrinsic_dim, abs=tolerance)


def test_twonn_curved_manifolds():
  rng = np.random.default_rng(4)
  angles = rng.uniform(0, 2 * np.pi, _TWONN_POINTS)
  circle = _embed(rng, np.stack([np.cos(angles), np.sin(angles)], axis=1))
  assert float(_twonn(circle)) == pytest.approx(1.0, abs=4 / np.sqrt(_TWONN_POINTS - 2))
  sphere = rng.normal(size=(_TWONN_POINTS, 3))
  sphere = _embed(rng, sphere / np.linalg.norm(sphere, axis=1, keepdims=True))
  assert float(_twonn(sphere)) == pytest.approx(2.0, abs=8 / np.sqrt(_TWONN_POINTS - 2))


def test_twonn_duplicates_are_collapsed():
  num_unique = 800
  x = _linear_subspace(np.random.default_rng(5), num_unique, 2)
  copies = np.concatenate([x[:150], x[:50]])
  with_copies = np.concatenate([x, copies])
  # The reference leaves the extra rows out by mask (row masks are tested against dropping rows below).
  only_unique = np.concatenate([x, 50.0 + copies])
  mask = jnp.arange(_TWONN_POINTS) < num_unique
  got = float(_twonn(with_copies))
  assert np.isfinite(got)
  assert got == pytest.approx(float(_twonn(only_unique, row_mask=mask)), rel=1e-4)
  # Without collapsing, every copy would give r1 = 0 (inf) or r2 = r1 (log mu = 0) and inflate d.
  assert got == pytest.approx(2.0, abs=4 * 2 / np.sqrt(num_unique - 2))


def test_twonn_subsample():
  x = _linear_subspace(np.random.default_rng(6), _TWONN_POINTS, 3)
  estimate = float(_twonn(x, jax.random.key(1), num_samples=600))
  assert estimate == pytest.approx(3.0, abs=4 * 3 / np.sqrt(598))
  with pytest.raises(ValueError, match="key"):
    dim.twonn_dimension(x, None, num_samples=600)


def test_degenerate_inputs_are_finite_zero():
  key = jax.random.key(0)
  cases = {
      "zeros": np.zeros((50, 6), np.float32),
      "constant": np.full((50, 6), 3.7, np.float32),
      "one_row": np.ones((1, 6), np.float32),
  }
  for name, x in cases.items():
    measures = _all_measures(x, key, None)
    for measure, value in measures.items():
      assert float(value) == 0.0, (name, measure)
  x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
  no_rows = _all_measures(x, key, None, jnp.zeros((50,), bool))
  assert all(float(v) == 0.0 for v in no_rows.values())


def test_row_mask_equals_dropping_rows():
  rng = np.random.default_rng(7)
  x = _decaying_matrix(rng, 300, 12)
  keep = rng.uniform(size=300) < 0.7
  # Masked-out rows hold far-away junk: they must not move the means, the spectrum or the neighbours.
  junk = np.where(keep[:, None], x, 100.0 * rng.normal(size=x.shape)).astype(np.float32)
  masked = _measures(junk, row_mask=jnp.asarray(keep))
  dropped = _measures(x[keep])
  for name in dim.MEASURE_NAMES:
    assert float(masked[name]) == pytest.approx(float(dropped[name]), rel=1e-4), name


def test_jit_vmap_over_seeds_matches_per_seed():
  rng = np.random.default_rng(8)
  x_SxNxD = np.stack([_decaying_matrix(rng, 120, 10) for _ in range(3)])
  keys = jax.random.split(jax.random.key(0), 3)
  measure = functools.partial(dim.all_measures, twonn_samples=80)
  batched = jax.jit(jax.vmap(measure))(x_SxNxD, keys)
  single = jax.jit(measure)
  for seed in range(3):
    one = single(x_SxNxD[seed], keys[seed])
    for name in dim.MEASURE_NAMES:
      assert float(batched[name][seed]) == pytest.approx(float(one[name]), rel=1e-5), (seed, name)
      assert np.isfinite(float(one[name]))


def test_layer_matrix_layouts():
  acts = jnp.arange(2 * 3 * 4 * 5, dtype=jnp.float32).reshape(2, 3, 4, 5)
  flat, mask = dim.layer_matrix(acts, "conv")
  assert flat.shape == (24, 5) and mask is None
  np.testing.assert_array_equal(flat[1 * 12 + 2 * 4 + 3], acts[1, 2, 3])
  mean, _ = dim.layer_matrix(acts, "conv", conv_mode="spatial_mean")
  np.testing.assert_allclose(mean, np.asarray(acts).mean(axis=(1, 2)))

  tokens = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4)
  token_mask = jnp.array([[True, True, False], [True, False, False]])
  rows, row_mask = dim.layer_matrix(tokens, "tokens", token_mask=token_mask)
  assert rows.shape == (6, 4)
  np.testing.assert_array_equal(rows[4], tokens[1, 1])
  np.testing.assert_array_equal(row_mask, [True, True, False, True, False, False])

  dense = jnp.ones((7, 3))
  assert dim.layer_matrix(dense, "dense")[0] is dense
  with pytest.raises(ValueError, match="attention"):
    dim.layer_matrix(jnp.ones((2, 4, 3, 3)), "attention")
  with pytest.raises(ValueError, match="conv"):
    dim.layer_matrix(tokens, "conv")


def test_is_rank_capped():
  assert dim.is_rank_capped(100, 512)
  assert not dim.is_rank_capped(512, 512)
  assert not dim.is_rank_capped(4096, 128)


def _mnist_mlp_layers():
  """The grid's MLP (mlp_512x2_256x2) at initialisation on its 512-image MNIST probe: every hidden layer's
  (512, units) float32 matrix, dead units and the centring's null direction included."""
  from mpcodec.data import registry  # pylint: disable=g-import-not-at-top
  from mpcodec.models import zoo  # pylint: disable=g-import-not-at-top
  from tests import support  # pylint: disable=g-import-not-at-top
  dataset = registry.get_dataset("mnist", str(support.require_data("mnist")), seed=0)
  probe_x = dataset.test_x[np.sort(np.random.default_rng(0).choice(dataset.num_test, 512, replace=False))]
  model = zoo.build_model("mlp_512x2_256x2", dataset.num_classes, "image")
  params = model.init(jax.random.key(0), probe_x[:1])
  _, acts = jax.jit(model.apply)(params, probe_x)
  return {name: np.asarray(acts[name], np.float32) for name in zoo.depth_sorted(acts)}


def test_measures_on_real_activations_match_float64_and_closed_forms():
  """On real, rank-deficient activations every spectral measure is within 1e-4 of float64 numpy, and the
  closed forms ||X||_F^4 / ||X^T X||_F^2 (participation ratio) and ||X||_F^2 / sigma_1^2 (stable rank)
  from a float32 Gram matrix agree with them to the same tolerance."""
  layers = _mnist_mlp_layers()
  assert len(layers) == 4
  for name, x in layers.items():
    expected = _numpy_measures(x)
    got = _measures(x)
    for measure in ("participation_ratio", "effective_rank", "stable_rank"):
      assert float(got[measure]) == pytest.approx(expected[measure], rel=1e-4), (name, measure)
    assert int(got["num_components_90"]) == expected["num_components_90"], name
    centred = jnp.asarray(_centred(x), jnp.float32)
    gram = jnp.matmul(centred.T, centred, precision=jax.lax.Precision.HIGHEST)
    trace, gram_sq = float(jnp.trace(gram)), float(jnp.sum(jnp.square(gram)))
    assert trace**2 / gram_sq == pytest.approx(expected["participation_ratio"], rel=1e-4), name
    top = float(jnp.linalg.eigvalsh(gram)[-1])
    assert trace / top == pytest.approx(expected["stable_rank"], rel=1e-4), name
