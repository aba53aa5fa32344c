"""Pre-LN Transformer encoder for images (16 patches) or text (token ids); mean pooling, linear head.

Each block is x + Attention(LN(x)) followed by x + MLP(LN(x)), the MLP being Dense(MLP_RATIO * d_model),
GELU, Dense(d_model); no dropout. A final LayerNorm precedes mean pooling over the real tokens and the
linear head.

Inputs:
- images (N, H, W[, C]) are cut into a PATCH_GRID x PATCH_GRID grid of patches (28x28 -> 16 patches of
  7x7), each flattened and projected to d_model, plus learned positions;
- text is int32 token ids (N, L), PAD_ID = 0 for padding: token embeddings plus learned positions
  (L <= max_length). Padding keys are masked in attention and padding tokens are left out of the pooling,
  so appending padding does not change the logits.

Activations: `block_i` is block i's output residual stream (N, T, d_model), and `block_i/attention` its
attention probabilities (N, heads, T, T). Names that end in ATTENTION_SUFFIX (`is_attention_layer`) hold
attention maps, not representations; dimensionality measures skip them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

MLP_RATIO = 4
PATCH_GRID = 4
PAD_ID = 0
ATTENTION_SUFFIX = "/attention"


def is_attention_layer(name: str) -> bool:
  """True for activation names that hold attention probabilities (they end in ATTENTION_SUFFIX)."""
  return name.endswith(ATTENTION_SUFFIX)


def image_patches(images):
  """(N, H, W[, C]) -> (N, 16, patch pixels * C) for PATCH_GRID = 4, patches in row-major order."""
  x = images[..., None] if images.ndim == 3 else images
  if x.ndim != 4:
    raise ValueError(f"expected images of shape (N, H, W[, C]), got {images.shape}")
  n, height, width, channels = x.shape
  if height % PATCH_GRID or width % PATCH_GRID:
    raise ValueError(
        f"image size {height}x{width} is not divisible into a {PATCH_GRID}x{PATCH_GRID} patch grid")
  ph, pw = height // PATCH_GRID, width // PATCH_GRID
  x = jnp.reshape(x, (n, PATCH_GRID, ph, PATCH_GRID, pw, channels))
  x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
  return jnp.reshape(x, (n, PATCH_GRID * PATCH_GRID, ph * pw * channels))


class SelfAttention(nn.Module):
  """Multi-head self-attention that also returns its probabilities (N, heads, T, T).

  Kept instead of `flax.linen.MultiHeadDotProductAttention(sow_weights=True)`: with the same weights
  (one fused qkv kernel split into query/key/value) flax's differs from this one by about one float32
  ulp (it scales the queries before the product, and runs three matmuls for one), so switching would
  change every trained transformer's numbers without changing what is computed.
  """

  num_heads: int

  @nn.compact
  def __call__(self, x_NxTxD, key_mask_NxT):
    n, t, d_model = x_NxTxD.shape
    head_dim = d_model // self.num_heads
    qkv = nn.Dense(3 * d_model, name="qkv")(x_NxTxD)
    qkv = jnp.reshape(qkv, (n, t, 3, self.num_heads, head_dim))
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits_NxHxTxT = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(head_dim).astype(x_NxTxD.dtype)
    # The finite minimum (not -inf) keeps an all-padding row a uniform softmax instead of NaN.
    logits_NxHxTxT = jnp.where(
        key_mask_NxT[:, None, None, :], logits_NxHxTxT, jnp.finfo(logits_NxHxTxT.dtype).min)
    probs_NxHxTxT = jax.nn.softmax(logits_NxHxTxT, axis=-1)
    out = jnp.einsum("nhqk,nkhd->nqhd", probs_NxHxTxT, v)
    out = nn.Dense(d_model, name="out")(jnp.reshape(out, (n, t, d_model)))
    return out, probs_NxHxTxT


class EncoderBlock(nn.Module):
  """Pre-LN encoder block; returns (residual stream after the block, attention probabilities)."""

  num_heads: int

  @nn.compact
  def __call__(self, x_NxTxD, key_mask_NxT):
    d_model = x_NxTxD.shape[-1]
    attended, probs = SelfAttention(self.num_heads, name="attention")(
        nn.LayerNorm(name="ln_attention")(x_NxTxD), key_mask_NxT)
    x_NxTxD = x_NxTxD + attended
    h = nn.Dense(MLP_RATIO * d_model, name="mlp_in")(nn.LayerNorm(name="ln_mlp")(x_NxTxD))
    x_NxTxD = x_NxTxD + nn.Dense(d_model, name="mlp_out")(nn.gelu(h))
    return x_NxTxD, probs


class Transformer(nn.Module):
  """Transformer encoder classifier whose __call__ returns (logits, {layer name: activations}).

  input_kind "image" reads (N, H, W[, C]) floats as 16 patches; "text" reads (N, L) int32 token ids and
  needs vocab_size and max_length.
  """

  d_model: int
  num_heads: int
  num_layers: int
  num_classes: int
  input_kind: str = "image"
  vocab_size: int | None = None
  max_length: int | None = None

  @nn.compact
  def __call__(self, inputs):
    if self.d_model % self.num_heads:
      raise ValueError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
    if self.input_kind == "image":
      tokens_NxTxP = image_patches(inputs)
      x = nn.Dense(self.d_model, name="patch_projection")(tokens_NxTxP)
      token_mask_NxT = jnp.ones(x.shape[:2], bool)
      num_positions = x.shape[1]
    elif self.input_kind == "text":
      if self.vocab_size is None or self.max_length is None:
        raise ValueError("a text Transformer needs vocab_size and max_length")
      if inputs.ndim != 2 or inputs.shape[1] > self.max_length:
        raise ValueError(
            f"expected token ids (N, L) with L <= {self.max_length}, got shape {inputs.shape}")
      x = nn.Embed(self.vocab_size, self.d_model, name="token_embedding")(inputs)
      token_mask_NxT = inputs != PAD_ID
      num_positions = self.max_length
    else:
      raise ValueError(f"input_kind must be 'image' or 'text', got {self.input_kind!r}")
    positions = self.param(
        "positions", nn.initializers.normal(stddev=0.02), (num_positions, self.d_model))
    x = x + positions[: x.shape[1]]

    activations = {}
    for i in range(self.num_layers):
      x, probs = EncoderBlock(self.num_heads, name=f"block_{i}")(x, token_mask_NxT)
      # Depth order: a block's attention map comes before its output stream.
      activations[f"block_{i}{ATTENTION_SUFFIX}"] = probs
      activations[f"block_{i}"] = x
    x = nn.LayerNorm(name="ln_final")(x)
    weights_NxT = token_mask_NxT.astype(x.dtype)
    pooled_NxD = jnp.einsum("nt,ntd->nd", weights_NxT, x) / jnp.maximum(weights_NxT.sum(1), 1.0)[:, None]
    logits = nn.Dense(self.num_classes, name="logits")(pooled_NxD)
    return logits, activations
