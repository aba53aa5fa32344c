"""Convolutional network: stages of 3x3 conv (SAME) + ReLU + 2x2 max-pool, then flatten, linear head.

The convolutions are written as im2col: the nine shifted copies of the zero-padded input are laid side
by side, (N, H, W, 9*C), and one matmul with the (9*C, F) kernel does the rest. The result equals
`lax.conv_general_dilated` with SAME padding (tested), with the same parameters as `flax.linen.Conv`
(`kernel` (3, 3, C, F), `bias` (F,)). Why: XLA's CPU convolution ran this network's training step about
10x slower than the matmul form (measured on a 2-core CPU, 5 seeds vmapped, batch 16: 1.2 against
12.5-16 steps/s), and under vmap over seeds a matmul stays a plain batched matmul.

Pooling is written out too (`max_pool_2x2`): the same values and the same gradient as
`flax.linen.max_pool` (tested), but XLA's CPU gradient of a reduce_window max (select-and-scatter) was
half of this network's training step (5 seeds, batch 16: 26 against 14 ms per seed-step with the form
here).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

KERNEL_SIZE = 3


def conv3x3_same(images_NxHxWxC: jax.Array, kernel_3x3xCxF: jax.Array) -> jax.Array:
  """3x3 convolution, stride 1, SAME (zero) padding, NHWC by HWIO, as one im2col matmul."""
  n, height, width, channels = images_NxHxWxC.shape
  if kernel_3x3xCxF.shape[:3] != (KERNEL_SIZE, KERNEL_SIZE, channels):
    raise ValueError(f"kernel shape {kernel_3x3xCxF.shape} does not fit {channels} input channels")
  padded = jnp.pad(images_NxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
  # Column order (dy, dx, c) matches the row-major flattening of the (3, 3, C, F) kernel.
  patches = jnp.concatenate([padded[:, dy:dy + height, dx:dx + width, :]
                             for dy in range(KERNEL_SIZE) for dx in range(KERNEL_SIZE)], axis=-1)
  return patches @ jnp.reshape(kernel_3x3xCxF, (KERNEL_SIZE * KERNEL_SIZE * channels, -1))


def max_pool_2x2(images_NxHxWxC: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, VALID (odd sizes floored), as `flax.linen.max_pool` computes it.

  The gradient goes to the first maximum of each window in row-major order, as the select-and-scatter
  gradient of a reduce_window max does: each window's four values are compared with its maximum under
  stop_gradient, and only the first equal one passes its value (and so its gradient) through.
  """
  n, height, width, channels = images_NxHxWxC.shape
  cropped = images_NxHxWxC[:, :height // 2 * 2, :width // 2 * 2]
  windows = jnp.reshape(cropped, (n, height // 2, 2, width // 2, 2, channels))
  corners = [windows[:, :, dy, :, dx] for dy in range(2) for dx in range(2)]
  maximum = jax.lax.stop_gradient(functools.reduce(jnp.maximum, corners))
  pooled, taken = jnp.zeros_like(maximum), jnp.zeros(maximum.shape, bool)
  for corner in corners:
    first = ~taken & (jax.lax.stop_gradient(corner) == maximum)
    pooled, taken = pooled + jnp.where(first, corner, 0.0), taken | first
  # A window holding NaN matches no corner: give it the maximum (NaN), as reduce_window does.
  return jnp.where(taken, pooled, maximum)


class Conv3x3(nn.Module):
  """3x3 SAME convolution with bias; parameters named and shaped as flax.linen.Conv's."""

  features: int

  @nn.compact
  def __call__(self, images_NxHxWxC):
    channels = images_NxHxWxC.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (KERNEL_SIZE, KERNEL_SIZE, channels, self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return conv3x3_same(images_NxHxWxC, kernel) + bias


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
      h = Conv3x3(num_channels, name=f"conv_{i}")(h)
      h = max_pool_2x2(nn.relu(h))
      activations[f"conv_{i}"] = h
    h = jnp.reshape(h, (h.shape[0], -1))
    logits = nn.Dense(self.num_classes, name="logits")(h)
    return logits, activations
