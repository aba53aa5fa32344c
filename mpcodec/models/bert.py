"""A BERT encoder in Flax linen (post-LayerNorm blocks, GELU FFN, padding mask), with activation taps.

Forward pass (Devlin et al. 2019, "BERT"; the Hugging Face `BertModel` layout):
  h⁰ = LN(E_word[ids] + E_pos[t] + E_type[type])
  a  = LN(hⁱ + Attn(hⁱ) W_o + b_o),  Attn = softmax(q kᵀ / √d_head + mask) v per head
  hⁱ⁺¹ = LN(a + GELU(a W_1 + b_1) W_2 + b_2)
GELU is the exact (erf) form; padded keys get the most negative float32 before the softmax, so a padded
position never influences a real one.

Taps (layer names): "embeddings" (h⁰), and for block i: "block_{i}/attention" (the attention
probabilities, (B, heads, T, T)), "block_{i}/ffn_hidden" (GELU output, (B, T, d_ffn)) and
"block_{i}/residual" (hⁱ⁺¹, (B, T, d_model)). At a tap, `replace[name]` first replaces the activation,
then `add[name]` (broadcast against it) is added, and what flows on is what `capture` records: so a
steering vector or a spliced reconstruction changes everything downstream of its layer.

`BertEncoder` is the whole forward pass as one module; `run_embeddings` and `run_block` apply its
`embeddings` and `block_{i}` parameters one stage at a time (what `mpcodec.models.minilm` jits, so that
all blocks share one compiled program).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpcodec.core.errors import ActivationError, CheckpointError
from mpcodec.models.taps import Taps, check_tap_names

LAYER_KINDS = ("attention", "ffn_hidden", "residual")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Shapes of a BERT encoder, read from a Hugging Face `config.json` by `from_hf_config`."""

  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_positions: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                 "max_positions", "type_vocab_size"):
      value = getattr(self, name)
      yield name, value >= 1, f"must be >= 1, got {value}"
    yield "num_heads", self.hidden_size % max(self.num_heads, 1) == 0, (
        f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
    yield "layer_norm_eps", self.layer_norm_eps > 0, f"must be > 0, got {self.layer_norm_eps}"

  @classmethod
  def from_hf_config(cls, hf: Mapping[str, Any], source: str = "config.json") -> "BertConfig":
    """The encoder shapes of a `BertModel` config; refuses settings this port does not implement."""
    problems = []
    if hf.get("model_type", "bert") != "bert":
      problems.append(f"model_type is {hf.get('model_type')!r}, expected 'bert'")
    if hf.get("hidden_act", "gelu") != "gelu":
      problems.append(f"hidden_act is {hf.get('hidden_act')!r}; only the exact 'gelu' is implemented")
    if hf.get("position_embedding_type", "absolute") != "absolute":
      problems.append(f"position_embedding_type is {hf.get('position_embedding_type')!r}; only "
                      f"'absolute' is implemented")
    names = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
             "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
             "max_positions": "max_position_embeddings", "type_vocab_size": "type_vocab_size",
             "layer_norm_eps": "layer_norm_eps", "pad_token_id": "pad_token_id"}
    missing = [hf_name for name, hf_name in names.items()
               if hf_name not in hf and name not in ("pad_token_id", "type_vocab_size", "layer_norm_eps")]
    if missing:
      problems.append(f"missing keys {missing}")
    if problems:
      raise CheckpointError(f"{source}: not a supported BERT config: {'; '.join(problems)}")
    defaults = cls()
    values = {name: type(getattr(defaults, name))(hf.get(hf_name, getattr(defaults, name)))
              for name, hf_name in names.items()}
    config = cls(**values)
    bad = [f"{key}: {message}" for key, ok, message in config.checks() if not ok]
    if bad:
      raise CheckpointError(f"{source}: impossible BERT config: {'; '.join(bad)}")
    return config


def layer_names(config: BertConfig) -> tuple[str, ...]:
  """Every tap of the encoder, in forward order."""
  return ("embeddings",) + tuple(f"block_{i}/{kind}" for i in range(config.num_layers)
                                 for kind in LAYER_KINDS)


def check_layer_names(config: BertConfig, names: Sequence[str], what: str = "layer") -> None:
  """Raises ActivationError naming each unknown layer and listing the valid ones."""
  check_tap_names(layer_names(config), names, what)


def last_block_needed(names: Sequence[str]) -> int:
  """The deepest block a set of taps reads or writes (-1 for the embeddings alone)."""
  blocks = [int(name.split("/")[0][len("block_"):]) for name in names if name.startswith("block_")]
  return max(blocks, default=-1)


def _tap_name(prefix: str, kind: str) -> str:
  return f"{prefix}/{kind}" if prefix else kind


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
  # The two-pass variance (not E[x²] - E[x]²) keeps float32 agreement with PyTorch's LayerNorm.
  return nn.LayerNorm(epsilon=config.layer_norm_eps, use_fast_variance=False, name=name)


class BertBlock(nn.Module):
  """One post-LayerNorm transformer block: self-attention, then the GELU FFN."""

  config: BertConfig

  @nn.compact
  def __call__(self, h_BxTxD: jax.Array, key_mask_BxT: jax.Array, taps: Taps, prefix: str) -> jax.Array:
    cfg = self.config
    batch, length, _ = h_BxTxD.shape

    def heads(x):
      return x.reshape(batch, length, cfg.num_heads, cfg.head_dim)

    q_BxTxHxE = heads(nn.Dense(cfg.hidden_size, name="query")(h_BxTxD))
    k_BxTxHxE = heads(nn.Dense(cfg.hidden_size, name="key")(h_BxTxD))
    v_BxTxHxE = heads(nn.Dense(cfg.hidden_size, name="value")(h_BxTxD))
    scores_BxHxTxT = jnp.einsum("bqhe,bkhe->bhqk", q_BxTxHxE, k_BxTxHxE) / jnp.sqrt(
        jnp.asarray(cfg.head_dim, h_BxTxD.dtype))
    # A row whose keys are all padding gets uniform weights (not NaN): every score is the same minimum.
    scores_BxHxTxT = jnp.where(key_mask_BxT[:, None, None, :], scores_BxHxTxT,
                               jnp.finfo(scores_BxHxTxT.dtype).min)
    probs_BxHxTxT = taps(_tap_name(prefix, "attention"), jax.nn.softmax(scores_BxHxTxT, axis=-1))
    context_BxTxD = jnp.einsum("bhqk,bkhe->bqhe", probs_BxHxTxT, v_BxTxHxE).reshape(batch, length, -1)
    attended_BxTxD = _layer_norm(cfg, "attention_norm")(
        h_BxTxD + nn.Dense(cfg.hidden_size, name="attention_output")(context_BxTxD))
    hidden_BxTxF = taps(_tap_name(prefix, "ffn_hidden"),
                        jax.nn.gelu(nn.Dense(cfg.intermediate_size, name="ffn_in")(attended_BxTxD),
                                    approximate=False))
    ffn_out_BxTxD = nn.Dense(cfg.hidden_size, name="ffn_out")(hidden_BxTxF)
    out_BxTxD = _layer_norm(cfg, "ffn_norm")(attended_BxTxD + ffn_out_BxTxD)
    return taps(_tap_name(prefix, "residual"), out_BxTxD)


class BertEmbeddings(nn.Module):
  """h⁰ = LN(E_word[ids] + E_pos[t] + E_type[type])."""

  config: BertConfig

  @nn.compact
  def __call__(self, input_ids_BxT: jax.Array, token_type_ids_BxT: jax.Array | None = None) -> jax.Array:
    cfg = self.config
    length = input_ids_BxT.shape[1]
    if length > cfg.max_positions:
      raise ActivationError(f"sequence length {length} exceeds the model's {cfg.max_positions} positions")
    if token_type_ids_BxT is None:
      token_type_ids_BxT = jnp.zeros_like(input_ids_BxT)
    embedded_BxTxD = (nn.Embed(cfg.vocab_size, cfg.hidden_size, name="word_embeddings")(input_ids_BxT)
                      + nn.Embed(cfg.max_positions, cfg.hidden_size, name="position_embeddings")(
                          jnp.arange(length)[None, :])
                      + nn.Embed(cfg.type_vocab_size, cfg.hidden_size, name="token_type_embeddings")(
                          token_type_ids_BxT))
    return _layer_norm(cfg, "norm")(embedded_BxTxD)


class BertEncoder(nn.Module):
  """Token ids -> final hidden states (B, T, d_model), plus the captured activations by layer name.

  Parameters: `embeddings` and `block_{i}`, so one block can also be applied alone
  (`BertBlock(config).apply({"params": params["block_2"]}, ...)`, as `run_block` does). `last_block`
  (static) stops the forward pass after that block (-1: after the embeddings); the returned hidden
  states are then that block's output.
  """

  config: BertConfig

  @nn.compact
  def __call__(self, input_ids_BxT: jax.Array, attention_mask_BxT: jax.Array,
               token_type_ids_BxT: jax.Array | None = None, *, capture: Sequence[str] = (),
               add: Mapping[str, jax.Array] | None = None, replace: Mapping[str, jax.Array] | None = None,
               last_block: int | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    cfg = self.config
    taps = Taps(capture, add, replace)
    h_BxTxD = taps("embeddings", BertEmbeddings(cfg, name="embeddings")(input_ids_BxT, token_type_ids_BxT))
    key_mask_BxT = attention_mask_BxT.astype(bool)
    num_blocks = cfg.num_layers if last_block is None else last_block + 1
    for i in range(num_blocks):
      h_BxTxD = BertBlock(cfg, name=f"block_{i}")(h_BxTxD, key_mask_BxT, taps, f"block_{i}")
    return h_BxTxD, taps.acts


def run_embeddings(config: BertConfig, params: Any, input_ids_BxT: jax.Array,
                   add: Mapping[str, jax.Array] | None, replace: Mapping[str, jax.Array] | None, *,
                   capture: tuple[str, ...] = ()) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The "embeddings" tap alone: (h⁰, captured) from the `embeddings` parameters."""
  taps = Taps(capture, add, replace)
  return taps("embeddings", BertEmbeddings(config).apply({"params": params}, input_ids_BxT)), taps.acts


def run_block(config: BertConfig, params: Any, h_BxTxD: jax.Array, attention_mask_BxT: jax.Array,
              add: Mapping[str, jax.Array] | None, replace: Mapping[str, jax.Array] | None, *,
              capture: tuple[str, ...] = ()) -> tuple[jax.Array, dict[str, jax.Array]]:
  """One block from its own parameters; taps named by kind alone ("attention", "ffn_hidden", "residual"),
  so every block of the same shapes and taps shares one compiled program."""
  taps = Taps(capture, add, replace)
  out = BertBlock(config).apply({"params": params}, h_BxTxD, attention_mask_BxT.astype(bool), taps, "")
  return out, taps.acts
