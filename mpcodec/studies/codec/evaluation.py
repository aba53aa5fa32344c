"""The held-out evaluation of the trained SAE and Squeezer runs: window metrics over `eval_batches`
batches of the source's evaluation stream, and the recovery of a known dictionary (ground truth)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.metrics import codec as codec_metrics
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import squeezer
from mpcodec.studies.codec import streams
from mpcodec.studies.codec.config import LoopConfig
from mpcodec.studies.codec.program import State, host_batches
from mpcodec.studies.codec.sources import ActivationSource


def window_totals(batch_stats: Callable[[jax.Array], Any], source: ActivationSource, loop_cfg: LoopConfig
                  ) -> tuple[dict[str, np.ndarray], int, np.ndarray]:
  """(the per-batch statistics of `batch_stats` summed over the evaluation window in float64, its number of
  tokens, the window's total variance Σ||x - x̄||² with x̄ the window mean)."""
  totals: dict[str, np.ndarray] = {}
  sum_x, sum_sq = 0.0, 0.0
  for i in range(loop_cfg.eval_batches):
    x_BxD = host_batches(source, loop_cfg.batch_size, streams.EVAL_START + i, 1, "the evaluation window, batch",
                         i)[0]
    found = jax.tree.map(lambda a: np.asarray(a, np.float64), batch_stats(jnp.asarray(x_BxD)))
    totals = {k: totals.get(k, 0.0) + v for k, v in found.items()}
    sum_x = sum_x + x_BxD.astype(np.float64).sum(0)
    sum_sq = sum_sq + np.square(x_BxD.astype(np.float64)).sum()
  num_tokens = loop_cfg.eval_batches * loop_cfg.batch_size
  return totals, num_tokens, sum_sq - np.square(sum_x).sum() / num_tokens


def evaluate_sae(states: State, cfg: sae.SAEConfig, source: ActivationSource, loop_cfg: LoopConfig,
                 dense_above: float) -> dict[str, np.ndarray]:
  """Window metrics of every run on `eval_batches` held-out batches (per-run arrays).

  FVU is pooled over the window: Σ||x - x̂||² / Σ||x - x̄||² with x̄ the window mean.
  """
  @jax.jit
  def batch_stats(states, x_BxD):
    def one(state):
      x_hat_BxD, codes = sae.apply(state, x_BxD, cfg)
      acts_BxN = sae.dense_codes(codes, x_BxD.shape[0], cfg.num_latents)
      return {"error": codec_metrics.sum_squared_error(x_BxD, x_hat_BxD),
              "counts": codec_metrics.firing_counts(acts_BxN)}
    return jax.vmap(one)(states)

  totals, num_tokens, variance = window_totals(lambda x: batch_stats(states, x), source, loop_cfg)
  counts = totals["counts"].astype(np.int64)
  counts_j = jnp.asarray(counts)
  hist, edges = jax.vmap(lambda c: codec_metrics.latent_density_histogram(c, num_tokens))(counts_j)
  return {
      "fvu": totals["error"] / variance,
      "l0": counts.sum(-1) / num_tokens,
      "dead_fraction": np.asarray(jax.vmap(codec_metrics.dead_fraction)(counts_j)),
      "dense_fraction": np.asarray(jax.vmap(
          lambda c: codec_metrics.dense_fraction(c, num_tokens, dense_above))(counts_j)),
      "firing_counts": counts,
      "num_tokens": np.asarray(num_tokens),
      "density_histogram": np.asarray(hist),
      "density_edges": np.asarray(edges[0]),
  }

def ground_truth_recovery(states: State, cfg: sae.SAEConfig, source: Any, batch_size: int
                          ) -> dict[str, np.ndarray]:
  """Recovery of a known dictionary: mean max cosine, Hungarian-matched cosine and correlation per run."""
  true_NxD = source.dictionary_NxD
  mmcs = jax.jit(jax.vmap(lambda w: codec_metrics.mean_max_cosine_similarity(w, true_NxD)))(
      states["params"]["w_dec_NxD"])
  x_BxD, f_BxN = source.sample(streams.RECOVERY_START, batch_size)
  acts = jax.jit(jax.vmap(lambda s: sae.dense_codes(sae.apply(s, x_BxD, cfg)[1], batch_size,
                                                     cfg.num_latents)))(states)
  runs = acts.shape[0]
  return {
      "mean_max_cosine_similarity": np.asarray(mmcs),
      "matched_cosine_similarity": np.asarray([codec_metrics.matched_cosine_similarity(
          states["params"]["w_dec_NxD"][r], true_NxD) for r in range(runs)]),
      "matched_pair_correlation": np.asarray([codec_metrics.matched_pair_correlation(
          acts[r], f_BxN) for r in range(runs)]),
  }



def evaluate_squeezer(states: State, sae_states: State, sae_cfg: sae.SAEConfig,
                      squeezer_cfg: sae.SAEConfig, source: ActivationSource, loop_cfg: LoopConfig,
                      live_latents_RxN: np.ndarray) -> dict[str, np.ndarray]:
  """Window metrics of every Squeezer run: latent FVU, activation FVU, faithfulness, neurons."""
  @jax.jit
  def batch_stats(states, sae_states, x_BxD):
    def one(state, sae_state):
      out = squeezer.reconstructions(state, sae_state, x_BxD, sae_cfg, squeezer_cfg)
      z = out["latents"]
      return {
          "latent_error": codec_metrics.sum_squared_error(z, out["latents_hat"]),
          "latent_sum": jnp.sum(z, axis=0),
          "latent_sum_sq": jnp.sum(jnp.square(z)),
          "squeezed_error": codec_metrics.sum_squared_error(x_BxD, out["x_hat_squeezed"]),
          "sae_error": codec_metrics.sum_squared_error(x_BxD, out["x_hat_sae"]),
          "neuron_counts": codec_metrics.firing_counts(out["neurons"]),
      }
    return jax.vmap(one)(states, sae_states)

  totals, num_tokens, x_variance = window_totals(lambda x: batch_stats(states, sae_states, x), source, loop_cfg)
  latent_variance = totals["latent_sum_sq"] - np.square(totals["latent_sum"]).sum(-1) / num_tokens
  per_neuron = np.asarray(jax.vmap(codec_metrics.latents_per_neuron)(
      states["params"]["w_enc_NxD"], jnp.asarray(live_latents_RxN)))
  neuron_counts = totals["neuron_counts"].astype(np.int64)
  return {
      "latent_fvu": totals["latent_error"] / latent_variance,
      "activation_fvu_through_squeezer": totals["squeezed_error"] / x_variance,
      "activation_fvu_sae_alone": totals["sae_error"] / x_variance,
      "faithfulness_ratio": totals["squeezed_error"] / totals["sae_error"],
      "features_per_neuron": per_neuron,
      "dead_neuron_fraction": (neuron_counts == 0).mean(-1),
      "neuron_firing_counts": neuron_counts,
      "num_tokens": np.asarray(num_tokens),
  }

