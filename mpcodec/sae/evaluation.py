"""Held-out evaluation of trained SAEs: FVU, L0, dead fraction and firing counts by the inference rule."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.sae import autoencoder, selection
from mpcodec.sae.autoencoder import SAEConfig


def folded(states: dict[str, Any]) -> tuple[dict[str, jax.Array], jax.Array]:
  """(params, BatchTopK threshold) of every run on raw activations (the input scale folded in)."""
  return jax.jit(jax.vmap(autoencoder.fold_input_scale))(states["params"], states["input_scale"],
                                                        states["threshold"])


def evaluate(params_R: dict[str, jax.Array], threshold_R: jax.Array, k_R: jax.Array, acts_TxD: np.ndarray,
             rows: tuple[int, int], cfg: SAEConfig, batch_size: int) -> dict[str, np.ndarray]:
  """FVU, L0, dead fraction and firing counts of every run on rows [first, end), by the inference rule.

  FVU = Σ||x - x̂||² / Σ||x - x̄||² with x̄ the mean of those rows; Top-K keeps each token's k largest
  pre-activations, BatchTopK every pre-activation above the learned threshold.
  """
  @jax.jit
  def batch_stats(params_R, threshold_R, k_R, x_BxD, valid_B):
    def one(params, threshold, k):
      pre_BxN = autoencoder.pre_activations(params, x_BxD)
      if cfg.activation == "topk":
        acts_BxN = selection.dense_codes(selection.topk_select(pre_BxN, k, cfg.k_max), *pre_BxN.shape)
      else:
        acts_BxN = jnp.where(pre_BxN > threshold, jax.nn.relu(pre_BxN), 0.0)
      x_hat_BxD = acts_BxN @ params["w_dec_NxD"] + params["b_dec_D"]
      error = jnp.sum(jnp.where(valid_B[:, None], jnp.square(x_BxD - x_hat_BxD), 0.0))
      return error, jnp.sum((acts_BxN > 0) & valid_B[:, None], axis=0)
    return jax.vmap(one)(params_R, threshold_R, k_R)

  first, end = rows
  errors, counts, sum_x, sum_sq = 0.0, 0, 0.0, 0.0
  for start in range(first, end, batch_size):
    x_BxD = np.asarray(acts_TxD[start:min(start + batch_size, end)], np.float32)
    valid = x_BxD.shape[0]
    padded_BxD = np.zeros((batch_size, x_BxD.shape[1]), np.float32)
    padded_BxD[:valid] = x_BxD
    error_R, counts_RxN = batch_stats(params_R, threshold_R, k_R, padded_BxD, np.arange(batch_size) < valid)
    errors = errors + np.asarray(error_R, np.float64)
    counts = counts + np.asarray(counts_RxN, np.int64)
    sum_x = sum_x + x_BxD.astype(np.float64).sum(0)
    sum_sq = sum_sq + np.square(x_BxD.astype(np.float64)).sum()
  num_rows = end - first
  variance = sum_sq - np.square(sum_x).sum() / num_rows
  return {"fvu": errors / variance if variance > 0 else np.full(np.shape(errors), np.nan),
          "l0": counts.sum(-1) / num_rows, "dead_fraction": (counts == 0).mean(-1), "firing_counts": counts}
