"""Steering a causal LM, measured on its next-token distributions and its continuations.

  target_mass: the next-token probability mass on a fixed set of target tokens, Σ_{v ∈ S} softmax(z)_v
    (the "target probability" of thematic steering, steered against unsteered);
  next_token_kl: KL(p_clean ‖ p_steered) of the next-token distributions at the same positions (stability
    on neutral text);
  continuation_perplexity: exp of the mean negative log-likelihood of a continuation's tokens under the
    unsteered model (is a steered continuation still text the model finds likely?);
  snr_exponent: the least-squares exponent β of SNR ∝ N^β over numbers of atoms N (0.5 for the √N law).

Pure and jittable; batches on the leading axes. Not exported from `mpcodec.metrics`: import the module.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mpcodec.core.errors import DataError
from mpcodec.metrics import steering
from mpcodec.metrics.shapes import check_axis, check_rank


def target_mass(logits_BxV: jax.Array, target_ids_S: jax.Array) -> jax.Array:
  """Per position, Σ_{v ∈ S} softmax(logits)_v over the distinct target token ids S (any leading axes)."""
  vocab = check_rank("target_mass", "logits_BxV", logits_BxV, 1, "..., vocabulary", leading=True)[-1]
  check_rank("target_mass", "target_ids_S", target_ids_S, 1, "targets")
  in_set_V = jnp.zeros((vocab,), bool).at[jnp.asarray(target_ids_S, jnp.int32)].set(True)
  probs = jax.nn.softmax(logits_BxV, axis=-1)
  return jnp.sum(jnp.where(in_set_V, probs, 0.0), axis=-1)


def next_token_kl(clean_logits_BxV: jax.Array, steered_logits_BxV: jax.Array) -> jax.Array:
  """Per position KL(softmax(clean) ‖ softmax(steered)) in nats (0 when steering changes nothing)."""
  return steering.kl_divergence(clean_logits_BxV, steered_logits_BxV)


def continuation_perplexity(logits_BxTxV: jax.Array, ids_BxT: jax.Array, scored_BxT: jax.Array) -> jax.Array:
  """Per sequence exp(−mean_t log p(ids[t] | ids[<t])) over the positions t with scored[t] = 1.

  `logits_BxTxV` are the unsteered model's logits of the sequences `ids_BxT` (position t predicts token
  t + 1); position 0 is never scored (nothing predicts it). A sequence with no scored token gives NaN.
  """
  func = "continuation_perplexity"
  batch, length, _ = check_rank(func, "logits_BxTxV", logits_BxTxV, 3, "batch, positions, vocabulary")
  check_rank(func, "ids_BxT", ids_BxT, 2, "batch, positions")
  check_axis(func, "ids_BxT", ids_BxT, 0, batch, "the batch of logits_BxTxV")
  check_axis(func, "ids_BxT", ids_BxT, 1, length, "the positions of logits_BxTxV")
  if jnp.shape(scored_BxT) != (batch, length):
    raise DataError(f"{func}: scored_BxT needs the shape {(batch, length)} of ids_BxT, got {jnp.shape(scored_BxT)}")
  logp = jax.nn.log_softmax(logits_BxTxV[:, :-1], axis=-1)
  token_logp = jnp.take_along_axis(logp, jnp.asarray(ids_BxT, jnp.int32)[:, 1:, None], axis=-1)[..., 0]
  scored = jnp.asarray(scored_BxT, logp.dtype)[:, 1:]
  return jnp.exp(-jnp.sum(token_logp * scored, axis=-1) / jnp.sum(scored, axis=-1))


def snr_exponent(num_atoms_K: jax.Array, snr_K: jax.Array) -> jax.Array:
  """β of log SNR = β·log N + c by least squares (0.5 for SNR ∝ √N); non-positive values give NaN."""
  return steering.log_log_slope(jnp.asarray(num_atoms_K, jnp.float32), snr_K)
