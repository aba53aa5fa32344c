"""The architecture zoo: every MLP, CNN and Transformer of the training-dynamics study, built by name.

Names: `mlp_<widths>` with runs of equal widths written WxK (`mlp_128_64`, `mlp_64x4_32`, `mlp_32x10`),
`cnn_<channels>` (`cnn_32_64_128`), `transformer_d<d_model>_h<heads>_l<layers>`. Every model's
__call__(inputs) returns (logits, {layer name: activations}) with layer names in depth order. JAX
transformations (jit, vmap, eval_shape, scan) return dicts with sorted keys, which puts `hidden_10`
before `hidden_2`; `depth_sorted(names)` restores depth order from the names alone.

On text (int32 token ids (N, L), 0 = padding) an MLP first embeds the tokens (embed_dim) and reads the
mean embedding over the real tokens; a Transformer embeds tokens at d_model. CNNs read images only.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax.numpy as jnp

from mpcodec.models.cnn import CNN
from mpcodec.models.mlp import MLP
from mpcodec.models.transformer import (
    ATTENTION_SUFFIX,
    PAD_ID,
    Transformer,
    is_attention_layer,
)

__all__ = [
    "ARCHITECTURES",
    "ATTENTION_SUFFIX",
    "CNNSpec",
    "MLPSpec",
    "TokenMeanMLP",
    "TransformerSpec",
    "build_model",
    "depth_sorted",
    "is_attention_layer",
    "layer_layout",
]

InputKind = Literal["image", "text"]
LayerLayout = Literal["dense", "conv", "tokens", "attention"]


@dataclasses.dataclass(frozen=True)
class MLPSpec:
  """Hidden widths of an MLP (ReLU after each)."""

  hidden_widths: tuple[int, ...]

  @property
  def name(self) -> str:
    runs = [(width, len(list(group))) for width, group in itertools.groupby(self.hidden_widths)]
    return "mlp_" + "_".join(f"{w}x{k}" if k > 1 else f"{w}" for w, k in runs)


@dataclasses.dataclass(frozen=True)
class CNNSpec:
  """Output channels of each 3x3 conv + ReLU + 2x2 max-pool stage."""

  channels: tuple[int, ...]

  @property
  def name(self) -> str:
    return "cnn_" + "_".join(str(c) for c in self.channels)


@dataclasses.dataclass(frozen=True)
class TransformerSpec:
  """Width, heads and depth of a pre-LN Transformer encoder."""

  d_model: int
  num_heads: int
  num_layers: int

  @property
  def name(self) -> str:
    return f"transformer_d{self.d_model}_h{self.num_heads}_l{self.num_layers}"


ArchitectureSpec = MLPSpec | CNNSpec | TransformerSpec

_SPECS: tuple[ArchitectureSpec, ...] = (
    MLPSpec((128, 64)),
    MLPSpec((64, 64, 64, 64, 32)),
    MLPSpec((32,) * 10),
    MLPSpec((24,) * 15),
    MLPSpec((32,) * 4),
    MLPSpec((128, 128, 64, 64)),
    MLPSpec((256, 256, 128, 128)),
    MLPSpec((512, 512, 256, 256)),
    CNNSpec((32, 64)),
    CNNSpec((32, 64, 128)),
    CNNSpec((32, 64, 128, 256)),
    TransformerSpec(128, 4, 2),
    TransformerSpec(128, 4, 4),
    TransformerSpec(128, 4, 6),
    TransformerSpec(64, 4, 4),
    TransformerSpec(256, 8, 4),
)

ARCHITECTURES: dict[str, ArchitectureSpec] = {spec.name: spec for spec in _SPECS}


class TokenMeanMLP(nn.Module):
  """MLP on text: embeds token ids, averages the embeddings over real tokens, then runs an MLP.

  Padding (PAD_ID) is left out of the mean, so appending padding does not change the output. Layer names
  are the MLP's (`hidden_0`, ...), the same as on images.
  """

  hidden_widths: Sequence[int]
  num_classes: int
  vocab_size: int
  embed_dim: int = 64

  @nn.compact
  def __call__(self, token_ids_NxL):
    if token_ids_NxL.ndim != 2:
      raise ValueError(f"expected token ids of shape (N, L), got {token_ids_NxL.shape}")
    embedded_NxLxE = nn.Embed(self.vocab_size, self.embed_dim, name="token_embedding")(token_ids_NxL)
    weights_NxL = (token_ids_NxL != PAD_ID).astype(embedded_NxLxE.dtype)
    mean_NxE = (jnp.einsum("nl,nle->ne", weights_NxL, embedded_NxLxE)
                / jnp.maximum(weights_NxL.sum(1), 1.0)[:, None])
    return MLP(tuple(self.hidden_widths), self.num_classes, name="mlp")(mean_NxE)


def build_model(
    arch: str,
    num_classes: int,
    input_kind: InputKind,
    vocab_size: int | None = None,
    max_length: int | None = None,
    embed_dim: int = 64,
) -> nn.Module:
  """Builds the zoo model `arch` for `num_classes` classes on images or token ids.

  Text needs vocab_size (and max_length for Transformers); embed_dim is the MLP's token embedding
  width (Transformers embed at d_model). Raises ValueError for an unknown name (listing the valid ones),
  an unknown input kind, a CNN on text or missing text sizes.
  """
  if arch not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {arch!r}; valid names: {', '.join(ARCHITECTURES)}")
  if input_kind not in ("image", "text"):
    raise ValueError(f"input_kind must be 'image' or 'text', got {input_kind!r}")
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  if input_kind == "text" and (vocab_size is None or vocab_size < 2):
    raise ValueError(f"architecture {arch!r} on text needs vocab_size >= 2, got {vocab_size}")
  spec = ARCHITECTURES[arch]
  if isinstance(spec, MLPSpec):
    if input_kind == "image":
      return MLP(spec.hidden_widths, num_classes)
    if embed_dim < 1:
      raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
    return TokenMeanMLP(spec.hidden_widths, num_classes, vocab_size, embed_dim)
  if isinstance(spec, CNNSpec):
    if input_kind != "image":
      raise ValueError(f"architecture {arch!r} is a CNN and reads images only, not {input_kind}")
    return CNN(spec.channels, num_classes)
  if input_kind == "text" and (max_length is None or max_length < 1):
    raise ValueError(f"architecture {arch!r} on text needs max_length >= 1, got {max_length}")
  return Transformer(
      d_model=spec.d_model,
      num_heads=spec.num_heads,
      num_layers=spec.num_layers,
      num_classes=num_classes,
      input_kind=input_kind,
      vocab_size=vocab_size if input_kind == "text" else None,
      max_length=max_length if input_kind == "text" else None,
  )


def layer_layout(name: str, activation) -> LayerLayout:
  """How a layer's activation (an array or anything with .shape) becomes a matrix for dimensionality.

  "attention" for names that `is_attention_layer` accepts; otherwise by rank: (N, D) "dense",
  (N, T, D) "tokens", (N, H, W, C) "conv".
  """
  if is_attention_layer(name):
    return "attention"
  ndim = len(activation.shape)
  if ndim == 2:
    return "dense"
  if ndim == 3:
    return "tokens"
  if ndim == 4:
    return "conv"
  raise ValueError(f"layer {name!r}: no layout for activations of shape {tuple(activation.shape)}")


def depth_sorted(names) -> list[str]:
  """Layer names in depth order: by number (`hidden_2` before `hidden_10`), a block's attention first."""
  def depth_key(name: str):
    attention = is_attention_layer(name)
    base = name[: -len(ATTENTION_SUFFIX)] if attention else name
    parts = tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                  for part in re.split(r"(\d+)", base))
    return parts, 0 if attention else 1

  return sorted(names, key=depth_key)
