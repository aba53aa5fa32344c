"""Superposition tax: the baseline against numpy, the sparse sweep, a tax of 1 for the exact answer."""

import jax
import numpy as np
import pytest

from mpcodec.data import toy_features
from mpcodec.metrics import superposition_tax as st

BASELINE = jax.jit(st.monosemantic_baseline, static_argnames=("ranking",))
SWEEP = jax.jit(st.monosemantic_fvu_sweep, static_argnames=("max_active", "ranking", "row_chunk"))


@pytest.fixture(scope="module")
def sae_like():
  """Top-3 codes of 20 atoms (two never fire), a unit decoder, a bias and x = codes·D + b + noise."""
  rng = np.random.default_rng(0)
  decoder = np.asarray(toy_features.make_dictionary(jax.random.key(0), 20, 8))
  scores = rng.random((500, 20)) * np.linspace(0.2, 1.0, 20)      # later atoms fire more often
  scores[:, [3, 11]] = -1.0
  top = np.argsort(-scores, axis=1)[:, :3]
  codes = np.zeros((500, 20), np.float32)
  np.put_along_axis(codes, top, rng.uniform(0.1, 2.0, size=top.shape).astype(np.float32), axis=1)
  b_dec = rng.normal(size=8).astype(np.float32)
  x = (codes @ decoder + b_dec + 0.05 * rng.normal(size=(500, 8))).astype(np.float32)
  return codes, decoder, b_dec, x


def _reference_fvu(x, x_hat):
  return np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2)


def test_atom_scores_match_numpy(sae_like):
  codes, decoder, _, x = sae_like
  contribution = np.asarray(st.atom_scores(codes, decoder))
  explained = np.asarray(st.atom_scores(codes, decoder, x, "explained"))
  x_centred = x - x.mean(0)
  for n in range(20):
    term = np.outer(codes[:, n] - codes[:, n].mean(), decoder[n])
    np.testing.assert_allclose(contribution[n], np.mean(np.sum((term - term.mean(0)) ** 2, axis=1)),
                               rtol=1e-4, atol=1e-7)
    # The drop in squared error when the atom's centred contribution is added to the mean prediction.
    gain = np.sum(x_centred ** 2) - np.sum((x_centred - term) ** 2)
    np.testing.assert_allclose(explained[n], gain, rtol=1e-3, atol=1e-3)
  assert contribution[3] == 0 and contribution[11] == 0


@pytest.mark.parametrize("ranking", ["contribution", "explained"])
def test_baseline_and_sparse_sweep_match_numpy(sae_like, ranking):
  codes, decoder, b_dec, x = sae_like
  scores = np.asarray(st.atom_scores(codes, decoder, x, ranking))
  order = sorted(range(20), key=lambda n: (-scores[n], n))
  kept_values = np.array([1, 5, 12, 18, 25])
  sweep = np.asarray(SWEEP(x, codes, decoder, b_dec, kept_values, max_active=3, ranking=ranking,
                           row_chunk=64))
  for j, num_kept in enumerate(kept_values):
    kept = set(order[:num_kept])
    x_hat = np.tile(b_dec, (500, 1)).astype(np.float64)
    for n in range(20):
      code = codes[:, n] if n in kept else np.full(500, codes[:, n].mean())
      x_hat += np.outer(code, decoder[n])
    np.testing.assert_allclose(BASELINE(codes, decoder, b_dec, x, num_kept, ranking=ranking), x_hat,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sweep[j], _reference_fvu(x, x_hat), rtol=1e-4)
  assert np.all(np.diff(sweep) <= 1e-6)                  # more atoms kept, never a worse baseline


def test_exact_monosemantic_squeezer_pays_no_tax(sae_like):
  codes, decoder, b_dec, x = sae_like
  # The Squeezer handed the monosemantic solution: one neuron per atom, latents passed through unchanged.
  x_hat_squeezer = codes @ decoder + b_dec
  for num_kept in (18, 20, 64):                          # 18 live atoms
    tax = st.superposition_tax(x, x_hat_squeezer, BASELINE(codes, decoder, b_dec, x, num_kept))
    assert bool(tax.defined)
    np.testing.assert_allclose(tax.tax, 1.0, rtol=1e-5)
  # Fewer neurons than live atoms, squeezing by a worse rule than the baseline's: a tax above 1.
  worst = np.argsort(np.asarray(st.atom_scores(codes, decoder)), kind="stable")[:10]
  dropped = np.setdiff1d(np.arange(20), worst)
  squeezed = codes.copy()
  squeezed[:, dropped] = codes[:, dropped].mean(0)
  tax = st.superposition_tax(x, squeezed @ decoder + b_dec, BASELINE(codes, decoder, b_dec, x, 10))
  assert float(tax.tax) > 1.5
  np.testing.assert_allclose(tax.fvu_compressed, _reference_fvu(x, squeezed @ decoder + b_dec), rtol=1e-4)
  np.testing.assert_allclose(st.tax_from_fvu(tax.fvu_compressed, tax.fvu_baseline).tax, tax.tax, rtol=1e-6)


def test_perfect_baseline_is_recorded_not_divided_by_zero(sae_like):
  _, _, _, x = sae_like
  tax = st.superposition_tax(x, x + 0.1, x)
  assert not bool(tax.defined) and float(tax.tax) == 0.0 and np.isfinite(float(tax.tax))
  constant = np.ones((10, 3), np.float32)
  tax = st.superposition_tax(constant, constant, constant)
  assert not bool(tax.defined) and np.isfinite(float(tax.fvu_compressed))
