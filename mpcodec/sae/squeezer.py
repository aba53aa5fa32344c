"""The Squeezer: a Top-K bottleneck autoencoder from an SAE's latent vector into M synthetic neurons.

z (the SAE's N latents) → h = TopK_K(z W_encᵀ + b_enc) ∈ R^M → ẑ = h W_dec + b_dec ∈ R^N.

It is a Top-K SAE whose input is the SAE latent vector and whose "latents" are the M synthetic neurons,
so it reuses `mpcodec.sae.autoencoder` (tied init, unit-norm decoder rows, AuxK, input scale) with
input_dim = N and num_latents = M. M defaults to the width of the original layer, so the Squeezer asks
how many monosemantic atoms each of the layer's neurons would have to carry. Its weights are stored as
`w_enc_NxD` = (M, N) (one row of latent weights per synthetic neuron) and `w_dec_NxD` = (M, N).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

import jax
import jax.numpy as jnp

from mpcodec.sae import autoencoder as sae
from mpcodec.sae import shapes
from mpcodec.core.optim import OptimConfig


@dataclasses.dataclass(frozen=True)
class SqueezerConfig:
  """Knobs of the Squeezer.

  Attributes:
    num_neurons: M synthetic neurons; 0 = the width of the original layer.
    k: active synthetic neurons per token (K).
    decoder: "dense" suits K/M of a few percent (the (B, K, N) gather of "sparse" is large).
    b_dec_init, input_norm, aux_k, aux_coef, dead_tokens_threshold, optim: as in `SAEConfig`.
  """

  num_neurons: int = 0
  k: int = 64
  decoder: Literal["sparse", "dense"] = "dense"
  b_dec_init: Literal["geometric_median", "mean", "zeros"] = "mean"
  input_norm: Literal["dim", "unit", "none"] = "dim"
  aux_k: int = 32
  aux_coef: float = 1.0 / 32.0
  dead_tokens_threshold: int = 100_000
  optim: OptimConfig = OptimConfig(learning_rate=1e-3, warmup_steps=100, schedule="cosine",
                                   grad_clip_norm=1.0)

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    yield "num_neurons", self.num_neurons >= 0, f"must be >= 0 (0 = layer width), got {self.num_neurons}"
    yield "k", self.k >= 1, f"must be >= 1, got {self.k}"
    if self.num_neurons:
      yield "k", self.k <= self.num_neurons, f"k={self.k} must be <= num_neurons={self.num_neurons}"
      yield "aux_k", self.aux_k <= self.num_neurons, (
          f"aux_k={self.aux_k} must be <= num_neurons={self.num_neurons}")
    yield "aux_k", self.aux_k >= 0, f"must be >= 0, got {self.aux_k}"
    yield from ((f"optim.{key}", ok, msg) for key, ok, msg in self.optim.checks())

  def resolved_num_neurons(self, layer_width: int) -> int:
    return self.num_neurons or layer_width

  def as_sae_config(self, layer_width: int) -> sae.SAEConfig:
    """The equivalent SAEConfig (num_latents = M); its checks reject K > M with the key `k`."""
    return sae.SAEConfig(
        num_latents=self.resolved_num_neurons(layer_width), k=self.k, activation="topk",
        decoder=self.decoder, b_dec_init=self.b_dec_init, input_norm=self.input_norm,
        aux_k=min(self.aux_k, self.resolved_num_neurons(layer_width)), aux_coef=self.aux_coef,
        dead_tokens_threshold=self.dead_tokens_threshold, optim=self.optim)


def latent_vector(sae_state: dict[str, Any], x_BxD: jax.Array, sae_cfg: sae.SAEConfig) -> jax.Array:
  """The SAE's dense (B, N) latent vector of raw activations (in the SAE's scaled units)."""
  _, codes = sae.apply(sae_state, x_BxD, sae_cfg)
  return jax.lax.stop_gradient(sae.dense_codes(codes, x_BxD.shape[0], sae_cfg.num_latents))


def init_state(key: jax.Array, sae_state: dict[str, Any], sample_BxD: jax.Array, sae_cfg: sae.SAEConfig,
               squeezer_cfg: sae.SAEConfig, total_steps: int) -> dict[str, Any]:
  """Squeezer train state, scaled and biased from the SAE latents of a raw activation sample."""
  shapes.check_key("key", key)
  sae.check_batch("sample_BxD", sample_BxD, sae_state)
  latents_BxN = latent_vector(sae_state, sample_BxD, sae_cfg)
  return sae.init_state(key, latents_BxN, squeezer_cfg.k, squeezer_cfg, total_steps)


def train_step(state: dict[str, Any], sae_state: dict[str, Any], x_BxD: jax.Array,
               sae_cfg: sae.SAEConfig, squeezer_cfg: sae.SAEConfig, total_steps: int
               ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
  """One Squeezer step on the (frozen) SAE's latents of a raw batch."""
  sae.check_batch("x_BxD", x_BxD, sae_state)
  latents_BxN = latent_vector(sae_state, x_BxD, sae_cfg)
  state, metrics = sae.train_step(state, latents_BxN, squeezer_cfg, total_steps)
  metrics["batch_has_nan"] = ~jnp.all(jnp.isfinite(x_BxD))
  return state, metrics


def reconstructions(state: dict[str, Any], sae_state: dict[str, Any], x_BxD: jax.Array,
                    sae_cfg: sae.SAEConfig, squeezer_cfg: sae.SAEConfig) -> dict[str, jax.Array]:
  """Everything the Squeezer metrics need for one raw batch.

  Returns latents z, their reconstruction ẑ through the Squeezer, x̂ of the SAE alone, x̂ through the
  Squeezer (ẑ decoded by the SAE decoder; both in raw units) and the synthetic neurons' activations.
  """
  sae.check_batch("x_BxD", x_BxD, sae_state)
  latents_BxN = latent_vector(sae_state, x_BxD, sae_cfg)
  latents_hat_BxN, neuron_codes = sae.apply(state, latents_BxN, squeezer_cfg)
  sae_params = sae_state["params"]
  scale = sae_state["input_scale"]
  x_hat_sae_BxD, _ = sae.apply(sae_state, x_BxD, sae_cfg)
  x_hat_squeezed_BxD = (latents_hat_BxN @ sae_params["w_dec_NxD"] + sae_params["b_dec_D"]) / scale
  neurons_BxM = sae.dense_codes(neuron_codes, x_BxD.shape[0], squeezer_cfg.num_latents)
  return {"latents": latents_BxN, "latents_hat": latents_hat_BxN, "x_hat_sae": x_hat_sae_BxD,
          "x_hat_squeezed": x_hat_squeezed_BxD, "neurons": neurons_BxM}
