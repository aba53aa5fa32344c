"""A Llama decoder in Flax linen (pre-RMSNorm blocks, rotary attention with grouped key/value heads, SwiGLU
FFN, causal mask, tied embeddings), with activation taps and a key/value cache for generation.

Forward pass (Touvron et al. 2023, "LLaMA"; the Hugging Face `LlamaModel` layout):
  h⁰ = E[ids]
  a  = hⁱ + Attn(RMS(hⁱ)) W_o,   Attn = softmax(q kᵀ / √d_head + causal/padding mask) v per head
  hⁱ⁺¹ = a + (SiLU(RMS(a) W_gate) ⊙ (RMS(a) W_up)) W_down
  logits = RMS(hᴸ) Eᵀ
RMS(x) = g ⊙ x / √(mean(x²) + ε). Rotary embedding in the rotate-half layout: for a head vector x split in
halves (x₁, x₂), rot(x, p) = (x₁ cos θ - x₂ sin θ, x₂ cos θ + x₁ sin θ) with θ_j = p · base^(-2j/d_head).
Query head h reads key/value head h // (num_heads / num_kv_heads). Positions count a row's real tokens
(left padding takes none), so a left-padded prompt sees the positions it would see alone.

Taps (layer names): "embeddings" (h⁰), for block i "block_{i}/attention" (the attention sublayer's
output Attn(·) W_o, (B, T, d_model), before it joins the residual stream), "block_{i}/ffn_hidden" (the
d_ffn gated products entering W_down) and "block_{i}/residual" (hⁱ⁺¹), and "final_norm" (RMS(hᴸ)). At a
tap `replace[name]` replaces the activation, then `add[name]` is added, as in `mpcodec.models.bert`.

Blocks' parameters are stacked (leading axis = block) under "blocks"; `run_block` applies one block,
`generate` runs prompt and new tokens with `jax.lax.scan` over the blocks.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpcodec.models.taps import Taps, check_tap_names

BLOCK_KINDS = ("attention", "ffn_hidden", "residual")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Shapes of a Llama decoder (defaults: SmolLM2-135M)."""

  vocab_size: int = 49152
  hidden_size: int = 576
  num_layers: int = 30
  num_heads: int = 9
  num_kv_heads: int = 3
  head_dim: int = 64
  intermediate_size: int = 1536
  rms_eps: float = 1e-5
  rope_base: float = 100000.0
  max_positions: int = 8192

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                 "intermediate_size", "max_positions"):
      value = getattr(self, name)
      yield name, value >= 1, f"must be >= 1, got {value}"
    yield "num_kv_heads", self.num_heads % max(self.num_kv_heads, 1) == 0, (
        f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
    yield "head_dim", self.head_dim % 2 == 0, f"must be even for the rotary embedding, got {self.head_dim}"
    yield "rms_eps", self.rms_eps > 0, f"must be > 0, got {self.rms_eps}"
    yield "rope_base", self.rope_base > 1, f"must be > 1, got {self.rope_base}"


def layer_names(config: LlamaConfig) -> tuple[str, ...]:
  """Every tap of the decoder, in forward order."""
  return (("embeddings",) + tuple(f"block_{i}/{kind}" for i in range(config.num_layers) for kind in BLOCK_KINDS)
          + ("final_norm",))


def check_layer_names(config: LlamaConfig, names: Sequence[str], what: str = "layer") -> None:
  """Raises ActivationError naming each unknown layer and listing the valid ones."""
  check_tap_names(layer_names(config), names, what)


class RMSNorm(nn.Module):
  """g ⊙ x / √(mean(x²) + ε), in float32."""

  eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    return scale * (x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps))


def rotary(x_BxTxHxE: jax.Array, positions_BxT: jax.Array, base: float) -> jax.Array:
  """The rotate-half rotary embedding of `x` at integer positions."""
  head_dim = x_BxTxHxE.shape[-1]
  inv_freq_J = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  angles_BxTxJ = positions_BxT.astype(jnp.float32)[..., None] * inv_freq_J
  angles_BxTxE = jnp.concatenate([angles_BxTxJ, angles_BxTxJ], axis=-1)[:, :, None, :]
  x1, x2 = jnp.split(x_BxTxHxE, 2, axis=-1)
  rotated_BxTxHxE = jnp.concatenate([-x2, x1], axis=-1)
  return x_BxTxHxE * jnp.cos(angles_BxTxE) + rotated_BxTxHxE * jnp.sin(angles_BxTxE)


def _dense(features: int, name: str) -> nn.Dense:
  return nn.Dense(features, use_bias=False, name=name)


class LlamaBlock(nn.Module):
  """One pre-RMSNorm block. With a cache (k, v of shape (B, S, kv_heads, head_dim)), the new keys and
  values are written at slots [start, start + T) and the queries attend over every valid slot up to
  their own; without one, over the T new tokens."""

  config: LlamaConfig

  @nn.compact
  def __call__(self, h_BxTxD: jax.Array, positions_BxT: jax.Array, key_valid_BxS: jax.Array,
               taps: Taps, prefix: str = "", cache: tuple[jax.Array, jax.Array] | None = None,
               start: jax.Array | int = 0) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    cfg = self.config
    batch, length, _ = h_BxTxD.shape
    name = lambda kind: f"{prefix}/{kind}" if prefix else kind
    x_BxTxD = RMSNorm(cfg.rms_eps, name="attn_norm")(h_BxTxD)
    q_BxTxHxE = _dense(cfg.num_heads * cfg.head_dim, "attn_q")(x_BxTxD).reshape(
        batch, length, cfg.num_heads, cfg.head_dim)
    k_BxTxGxE = _dense(cfg.num_kv_heads * cfg.head_dim, "attn_k")(x_BxTxD).reshape(
        batch, length, cfg.num_kv_heads, cfg.head_dim)
    v_BxTxGxE = _dense(cfg.num_kv_heads * cfg.head_dim, "attn_v")(x_BxTxD).reshape(
        batch, length, cfg.num_kv_heads, cfg.head_dim)
    q_BxTxHxE = rotary(q_BxTxHxE, positions_BxT, cfg.rope_base)
    k_BxTxGxE = rotary(k_BxTxGxE, positions_BxT, cfg.rope_base)
    if cache is None:
      keys_BxSxGxE, values_BxSxGxE = k_BxTxGxE, v_BxTxGxE
    else:
      keys_BxSxGxE = jax.lax.dynamic_update_slice(cache[0], k_BxTxGxE.astype(cache[0].dtype), (0, start, 0, 0))
      values_BxSxGxE = jax.lax.dynamic_update_slice(cache[1], v_BxTxGxE.astype(cache[1].dtype),
                                                    (0, start, 0, 0))
    num_slots = keys_BxSxGxE.shape[1]
    group = cfg.num_heads // cfg.num_kv_heads
    q_BxTxGxRxE = q_BxTxHxE.reshape(batch, length, cfg.num_kv_heads, group, cfg.head_dim)
    scores_BxGxRxTxS = jnp.einsum("btgre,bsge->bgrts", q_BxTxGxRxE, keys_BxSxGxE) / jnp.sqrt(
        jnp.asarray(cfg.head_dim, jnp.float32))
    query_slot_T = start + jnp.arange(length)
    allowed_BxTxS = key_valid_BxS[:, None, :] & (jnp.arange(num_slots)[None, None, :]
                                                 <= query_slot_T[None, :, None])
    scores_BxGxRxTxS = jnp.where(allowed_BxTxS[:, None, None], scores_BxGxRxTxS,
                                 jnp.finfo(scores_BxGxRxTxS.dtype).min)
    probs_BxGxRxTxS = jax.nn.softmax(scores_BxGxRxTxS, axis=-1)
    context_BxTxD = jnp.einsum("bgrts,bsge->btgre", probs_BxGxRxTxS, values_BxSxGxE).reshape(
        batch, length, cfg.num_heads * cfg.head_dim)
    attended_BxTxD = taps(name("attention"), _dense(cfg.hidden_size, "attn_output")(context_BxTxD))
    h_BxTxD = h_BxTxD + attended_BxTxD
    y_BxTxD = RMSNorm(cfg.rms_eps, name="ffn_norm")(h_BxTxD)
    hidden_BxTxF = taps(name("ffn_hidden"), jax.nn.silu(_dense(cfg.intermediate_size, "ffn_gate")(y_BxTxD))
                        * _dense(cfg.intermediate_size, "ffn_up")(y_BxTxD))
    out_BxTxD = taps(name("residual"), h_BxTxD + _dense(cfg.hidden_size, "ffn_down")(hidden_BxTxF))
    return out_BxTxD, (keys_BxSxGxE, values_BxSxGxE)


def init_shapes(config: LlamaConfig) -> dict[str, Any]:
  """The parameter tree (ShapeDtypeStructs) with one `block_{i}` entry per block, as a checkpoint names them."""
  h_1x1xD = jnp.zeros((1, 1, config.hidden_size), jnp.float32)
  pos_1x1 = jnp.zeros((1, 1), jnp.int32)
  block = jax.eval_shape(lambda: LlamaBlock(config).init(jax.random.PRNGKey(0), h_1x1xD, pos_1x1,
                                                         jnp.ones((1, 1), bool), Taps((), None, None)))
  shapes = {f"block_{i}": block["params"] for i in range(config.num_layers)}
  shapes["embed"] = {"embedding": jax.ShapeDtypeStruct((config.vocab_size, config.hidden_size), jnp.float32)}
  shapes["final_norm"] = {"scale": jax.ShapeDtypeStruct((config.hidden_size,), jnp.float32)}
  return shapes


def positions_from_mask(mask_BxT: jax.Array) -> jax.Array:
  """Each token's position among its row's real tokens (0 for left padding)."""
  return jnp.maximum(jnp.cumsum(mask_BxT.astype(jnp.int32), axis=1) - 1, 0)


def _block_params(blocks: Any, index: jax.Array | int) -> Any:
  return jax.tree.map(lambda x: x[index], blocks)


def run_embeddings(params: Any, input_ids_BxT: jax.Array, add: Mapping[str, Any] | None,
                   replace: Mapping[str, Any] | None, *, capture: tuple[str, ...] = ()
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """h⁰ = E[ids] through the "embeddings" tap."""
  taps = Taps(capture, add, replace)
  return taps("embeddings", jnp.take(params["embed"]["embedding"], input_ids_BxT, axis=0)), taps.acts


def run_block(config: LlamaConfig, blocks: Any, index: jax.Array, h_BxTxD: jax.Array, mask_BxT: jax.Array,
              add: Mapping[str, Any] | None, replace: Mapping[str, Any] | None, *,
              capture: tuple[str, ...] = ()) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Block `index` (traced: every block shares one compiled program) on a full sequence, taps by kind."""
  taps = Taps(capture, add, replace)
  out, _ = LlamaBlock(config).apply({"params": _block_params(blocks, index)}, h_BxTxD,
                                    positions_from_mask(mask_BxT), mask_BxT.astype(bool), taps)
  return out, taps.acts


def run_head(config: LlamaConfig, params: Any, h_BxTxD: jax.Array, add: Mapping[str, Any] | None,
             replace: Mapping[str, Any] | None, *, capture: tuple[str, ...] = (), logits: bool = True
             ) -> tuple[jax.Array | None, dict[str, jax.Array]]:
  """The final RMSNorm (the "final_norm" tap) and the tied-embedding logits (B, T, vocab)."""
  taps = Taps(capture, add, replace)
  normed_BxTxD = taps("final_norm", RMSNorm(config.rms_eps).apply({"params": params["final_norm"]}, h_BxTxD))
  if not logits:
    return None, taps.acts
  return normed_BxTxD @ params["embed"]["embedding"].T, taps.acts


def _scan_blocks(config: LlamaConfig, params: Any, h_BxTxD: jax.Array, positions_BxT: jax.Array,
                 key_valid_BxS: jax.Array, cache_k: jax.Array, cache_v: jax.Array, start: jax.Array,
                 add_stacked: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Every block in turn over the cache (L, B, S, kv_heads, head_dim); returns (h, new cache k, v)."""

  def body(h, xs):
    block_params, k_l, v_l, add_l = xs
    taps = Taps((), add_l, None)
    h, (k_l, v_l) = LlamaBlock(config).apply({"params": block_params}, h, positions_BxT, key_valid_BxS,
                                             taps, cache=(k_l, v_l), start=start)
    return h, (k_l, v_l)

  h_BxTxD, (cache_k, cache_v) = jax.lax.scan(body, h_BxTxD, (params["blocks"], cache_k, cache_v,
                                                             dict(add_stacked)))
  return h_BxTxD, cache_k, cache_v


def _pick(logits_BxV: jax.Array, key: jax.Array, temperature: jax.Array, top_k: jax.Array) -> jax.Array:
  """argmax where temperature is 0, else a draw from softmax(logits / temperature) over the top_k most
  likely tokens (every token when top_k is 0); both traced, so one program serves every setting."""
  greedy_B = jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  scaled_BxV = logits_BxV / jnp.maximum(temperature, 1e-6)
  sorted_BxV = -jnp.sort(-scaled_BxV, axis=-1)
  kth_Bx1 = jnp.take(sorted_BxV, jnp.clip(top_k - 1, 0, logits_BxV.shape[-1] - 1), axis=-1)[:, None]
  scaled_BxV = jnp.where((top_k > 0) & (scaled_BxV < kth_Bx1), -jnp.inf, scaled_BxV)
  drawn_B = jax.random.categorical(key, scaled_BxV, axis=-1).astype(jnp.int32)
  return jnp.where(temperature > 0, drawn_B, greedy_B)


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens"))
def generate(config: LlamaConfig, params: Any, input_ids_BxT: jax.Array, mask_BxT: jax.Array,
             key: jax.Array, add_stacked: Mapping[str, jax.Array], temperature: jax.Array | float = 0.0,
             top_k: jax.Array | int = 0, *, max_new_tokens: int) -> tuple[jax.Array, jax.Array]:
  """(new token ids (B, N), their log-probabilities under the unmodified sampling distribution (B, N)).

  Prompts are left-padded (mask 0 on the left). temperature 0 takes the argmax (greedy); otherwise
  tokens are drawn from softmax(logits / temperature), restricted to the top_k most likely when
  top_k > 0 (ties at the top_k-th value keep every tied token), with `key`. `add_stacked` maps a block
  tap kind to a (num_layers, dim) array added at every position of that tap of each block (zero rows leave
  a block alone): steering during generation. The last step also runs its token through the blocks
  (unused), so the program is one scan.
  """
  batch, length = input_ids_BxT.shape
  num_slots = length + max_new_tokens
  cache_shape = (config.num_layers, batch, num_slots, config.num_kv_heads, config.head_dim)
  cache_k = jnp.zeros(cache_shape, jnp.float32)
  cache_v = jnp.zeros(cache_shape, jnp.float32)
  mask_BxT = mask_BxT.astype(bool)
  key_valid_BxS = jnp.concatenate([mask_BxT, jnp.ones((batch, max_new_tokens), bool)], axis=1)
  positions_BxT = positions_from_mask(mask_BxT)
  h_BxTxD = jnp.take(params["embed"]["embedding"], input_ids_BxT, axis=0)
  h_BxTxD, cache_k, cache_v = _scan_blocks(config, params, h_BxTxD, positions_BxT, key_valid_BxS, cache_k,
                                           cache_v, jnp.int32(0), add_stacked)
  logits_BxV = run_head(config, params, h_BxTxD[:, -1:], None, None)[0][:, 0]
  next_position_B = positions_BxT[:, -1] + 1

  def step(carry, step_index):
    logits_BxV, cache_k, cache_v, position_B = carry
    token_B = _pick(logits_BxV, jax.random.fold_in(key, step_index), temperature, top_k)
    logprob_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BxV, axis=-1), token_B[:, None], axis=1)[:, 0]
    h_Bx1xD = jnp.take(params["embed"]["embedding"], token_B[:, None], axis=0)
    h_Bx1xD, cache_k, cache_v = _scan_blocks(config, params, h_Bx1xD, position_B[:, None], key_valid_BxS,
                                             cache_k, cache_v, length + step_index, add_stacked)
    logits_BxV = run_head(config, params, h_Bx1xD, None, None)[0][:, 0]
    return (logits_BxV, cache_k, cache_v, position_B + 1), (token_B, logprob_B)

  _, (tokens_NxB, logprobs_NxB) = jax.lax.scan(step, (logits_BxV, cache_k, cache_v, next_position_B),
                                               jnp.arange(max_new_tokens))
  return tokens_NxB.T, logprobs_NxB.T
