"""Generative steering metrics against numpy references and closed forms."""

import jax
import numpy as np
import pytest

from mpcodec.core.errors import DataError
from mpcodec.metrics import generative_steering as gs

_rng = np.random.default_rng(0)


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_target_mass_matches_numpy():
  logits = _rng.normal(size=(2, 3, 11))
  targets = np.array([1, 4, 7])
  expected = np.exp(_log_softmax(logits))[..., targets].sum(-1)
  np.testing.assert_allclose(gs.target_mass(logits, targets), expected, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(gs.target_mass)(logits, targets), expected, rtol=1e-5)
  # Every token in the set: the whole mass.
  np.testing.assert_allclose(gs.target_mass(logits, np.arange(11)), np.ones((2, 3)), rtol=1e-6)


def test_next_token_kl_matches_numpy_and_is_zero_unsteered():
  p, q = _rng.normal(size=(4, 9)), _rng.normal(size=(4, 9))
  lp, lq = _log_softmax(p), _log_softmax(q)
  np.testing.assert_allclose(gs.next_token_kl(p, q), (np.exp(lp) * (lp - lq)).sum(-1), rtol=1e-5)
  np.testing.assert_allclose(gs.next_token_kl(p, p + 3.0), np.zeros(4), atol=1e-6)


def test_continuation_perplexity_matches_numpy():
  logits = _rng.normal(size=(2, 6, 7))
  ids = _rng.integers(0, 7, size=(2, 6))
  scored = np.array([[0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1]])
  expected = []
  for b in range(2):
    lp = _log_softmax(logits[b])
    nll = [-lp[t - 1, ids[b, t]] for t in range(1, 6) if scored[b, t]]
    expected.append(np.exp(np.mean(nll)))
  np.testing.assert_allclose(gs.continuation_perplexity(logits, ids, scored), expected, rtol=1e-5)
  # Uniform logits: the perplexity is the vocabulary size.
  np.testing.assert_allclose(gs.continuation_perplexity(np.zeros((1, 4, 7)), ids[:1, :4], np.ones((1, 4))),
                             [7.0], rtol=1e-6)
  with pytest.raises(DataError, match="scored_BxT"):
    gs.continuation_perplexity(logits, ids, scored[:, :5])


def test_snr_exponent_recovers_planted_powers():
  n = np.array([1, 2, 4, 8, 16, 32])
  np.testing.assert_allclose(gs.snr_exponent(n, 3.0 * np.sqrt(n)), 0.5, rtol=1e-5)
  np.testing.assert_allclose(gs.snr_exponent(n, 0.7 * n ** 1.3), 1.3, rtol=1e-5)
  noisy = 2.0 * n ** 0.5 * np.exp(_rng.normal(0, 0.01, n.size))
  assert abs(float(gs.snr_exponent(n, noisy)) - 0.5) < 0.05
