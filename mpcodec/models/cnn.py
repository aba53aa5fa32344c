"""Convolutional network: stages of 3x3 conv (SAME) + ReLU + 2x2 max-pool, then flatten, linear head."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class CNN(nn.Module):
  """CNN whose __call__ returns (logits, {layer name: activations}).

  Stage i is named `conv_i`; its recorded activation is the stage output after ReLU and pooling,
  shape (N, H_i, W_i, C_i): the representation the next stage reads. Pooling is 2x2 with stride 2 and
  VALID padding, so odd sizes are floored (28 -> 14 -> 7 -> 3 -> 1 over four stages). The head is
  `logits`.
  """

  channels: Sequence[int]
  num_classes: int

  @nn.compact
  def __call__(self, images):
    """images: (N, H, W, C) or (N, H, W) floats; returns logits (N, num_classes) and activations."""
    h = images[..., None] if images.ndim == 3 else images
    if h.ndim != 4:
      raise ValueError(f"CNN expects images of shape (N, H, W[, C]), got {images.shape}")
    activations = {}
    for i, num_channels in enumerate(self.channels):
      if min(h.shape[1:3]) < 2:
        raise ValueError(
            f"CNN stage {i}: feature map {h.shape[1:3]} is too small to pool; input {images.shape} "
            f"cannot go through {len(self.channels)} stages")
      h = nn.Conv(num_channels, kernel_size=(3, 3), padding="SAME", name=f"conv_{i}")(h)
      h = nn.max_pool(nn.relu(h), window_shape=(2, 2), strides=(2, 2), padding="VALID")
      activations[f"conv_{i}"] = h
    h = jnp.reshape(h, (h.shape[0], -1))
    logits = nn.Dense(self.num_classes, name="logits")(h)
    return logits, activations
