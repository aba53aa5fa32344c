"""The host LAPACK path of the spectra: bit-identical to XLA's SVD, jit- and vmap-safe, NaN on bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.metrics import dimensionality, host_lapack


def _xla_svd(x):
  return np.asarray(jax.jit(lambda m: jnp.linalg.svd(m, compute_uv=False))(x))


def _matrices():
  rng = np.random.default_rng(0)
  out = {}
  for shape in [(64, 64), (96, 40), (40, 96), (7, 3), (1, 5)]:
    out[f"gaussian{shape}"] = rng.standard_normal(shape).astype(np.float32)
  # Rank-deficient ReLU layer: 12 of 48 units dead, the rest mixing 8 directions.
  relu = np.maximum(rng.standard_normal((80, 8)) @ rng.standard_normal((8, 48)), 0).astype(np.float32)
  relu[:, :12] = 0
  out["rank_deficient_relu"] = relu
  out["zeros"] = np.zeros((10, 6), np.float32)
  return out


@pytest.mark.parametrize("name", list(_matrices()))
def test_svd_values_are_bit_identical_to_xla(name):
  x = _matrices()[name]
  np.testing.assert_array_equal(host_lapack.svd_values(x), _xla_svd(x))


def test_decompose_under_jit_and_vmap_matches_xla_batched():
  rng = np.random.default_rng(1)
  a = rng.standard_normal((3, 50, 40)).astype(np.float32)
  b = rng.standard_normal((3, 20, 30)).astype(np.float32)
  host = jax.jit(jax.vmap(lambda x, y: host_lapack.decompose([x, y])[0]))(a, b)
  xla = jax.jit(jax.vmap(lambda x, y: [jnp.linalg.svd(m, compute_uv=False) for m in (x, y)]))(a, b)
  assert [h.shape for h in host] == [(3, 40), (3, 20)]
  for h, x in zip(host, xla):
    np.testing.assert_array_equal(np.asarray(h), np.asarray(x))


def test_many_runs_every_matrix_of_a_batch_on_several_threads():
  rng = np.random.default_rng(2)
  batch = rng.standard_normal((5, 30, 20)).astype(np.float32)
  other = rng.standard_normal((4, 12)).astype(np.float32)
  got = host_lapack.svd_values_many([batch, other], threads=3)
  assert got[0].shape == (5, 20) and got[1].shape == (4,)
  for i in range(5):
    np.testing.assert_array_equal(got[0][i], _xla_svd(batch[i]))
  np.testing.assert_array_equal(got[1], _xla_svd(other))


def test_non_finite_input_gives_nan_like_xla():
  x = np.ones((6, 4), np.float32)
  x[2, 1] = np.nan
  assert np.all(np.isnan(host_lapack.svd_values(x)))
  assert np.all(np.isnan(_xla_svd(x)))


def test_switch_off_by_environment(monkeypatch):
  monkeypatch.setenv(host_lapack.ENV_SWITCH, "0")
  assert not host_lapack.enabled()
  monkeypatch.setenv(host_lapack.ENV_SWITCH, "1")
  assert host_lapack.enabled() == (jax.default_backend() == "cpu" and host_lapack.usable_cores() > 1)


@pytest.mark.parametrize("name", ["gaussian(64, 64)", "rank_deficient_relu", "zeros"])
def test_eigh_vectors_are_bit_identical_to_xla(name):
  x = _matrices()[name]
  gram = x.T @ x
  np.testing.assert_array_equal(host_lapack.eigh_vectors(gram), np.asarray(jax.jit(jnp.linalg.eigh)(gram)[1]))


def _layers():
  rng = np.random.default_rng(3)
  return [rng.standard_normal((64, 48)).astype(np.float32),                 # near-square: direct SVD
          np.maximum(rng.standard_normal((64, 8)), 0).astype(np.float32),   # tall: Gram route
          rng.standard_normal((6, 40)).astype(np.float32),                  # wide: Gram route
          _matrices()["rank_deficient_relu"]]


def _measures(monkeypatch, switch):
  monkeypatch.setenv(host_lapack.ENV_SWITCH, switch)
  monkeypatch.setattr(host_lapack, "MIN_SIZE", 1)   # every matrix to the host when the path is on
  layers = _layers()
  keys = [jax.random.PRNGKey(i) for i in range(len(layers))]
  many = jax.jit(lambda *m: dimensionality.all_measures_many(list(m), keys, 16))(*layers)
  sigmas = jax.jit(lambda *m: dimensionality.singular_values_many(list(m)))(*layers)
  ones = [jax.jit(lambda m, k=key: dimensionality.all_measures(m, k, 16))(layer)
          for layer, key in zip(layers, keys)]
  return many, sigmas, ones


def test_measures_are_the_same_bits_with_the_host_path_on_and_off(monkeypatch):
  on_many, on_sigmas, on_ones = _measures(monkeypatch, "1")
  off_many, off_sigmas, off_ones = _measures(monkeypatch, "0")
  for a, b in zip(on_sigmas, off_sigmas):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for group in (on_ones, off_many, off_ones):
    for got, want in zip(group, on_many):
      for name in dimensionality.MEASURE_NAMES:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)
  # The spectra are the spectra: the direct route against numpy's float64 SVD of the centred matrix.
  for layer, sigma in zip(_layers(), on_sigmas):
    centred = layer - layer.mean(axis=0)
    np.testing.assert_allclose(np.asarray(sigma), np.linalg.svd(centred.astype(np.float64), compute_uv=False),
                               rtol=1e-4, atol=1e-4 * np.abs(centred).max())


def test_only_decompositions_of_at_least_min_size_go_to_the_host(monkeypatch):
  monkeypatch.setenv(host_lapack.ENV_SWITCH, "1")
  monkeypatch.setattr(host_lapack, "enabled", lambda: True)
  sent = []
  real = host_lapack.decompose
  monkeypatch.setattr(host_lapack, "decompose", lambda svd, eigh=(): sent.append(
      ([m.shape for m in svd], [m.shape for m in eigh])) or real(svd, eigh))
  monkeypatch.setattr(host_lapack, "MIN_SIZE", 40)
  rng = np.random.default_rng(4)
  layers = [rng.standard_normal(shape).astype(np.float32) for shape in [(64, 48), (64, 8), (200, 40), (30, 20)]]
  sigmas = dimensionality.singular_values_many(layers)
  # (64, 48) near-square with min 48 >= 40: its SVD; (200, 40) tall with a 40 x 40 Gram: its eigenvectors.
  assert sent == [([(64, 48)], [(40, 40)])]
  for layer, sigma in zip(layers, sigmas):
    np.testing.assert_allclose(np.asarray(sigma), np.linalg.svd(layer - layer.mean(0), compute_uv=False),
                               rtol=1e-4, atol=1e-4 * np.abs(layer).max())


def test_many_checks_its_arguments():
  x = np.ones((4, 3), np.float32)
  with pytest.raises(ValueError, match="row_masks has 2 entries for 1 matrices"):
    dimensionality.singular_values_many([x], [None, None])
  with pytest.raises(ValueError, match="keys has 0 entries for 1 matrices"):
    dimensionality.all_measures_many([x], [], 3)
