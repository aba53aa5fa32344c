"""Multi-layer perceptron: flatten, Dense + ReLU per hidden width, linear head."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """MLP whose __call__ returns (logits, {layer name: post-ReLU activations}).

  Hidden layers are named `hidden_0`, `hidden_1`, ...; the head is `logits`.
  """

  hidden_widths: Sequence[int]
  num_classes: int

  @nn.compact
  def __call__(self, x):
    h = jnp.reshape(x, (x.shape[0], -1))
    activations = {}
    for i, width in enumerate(self.hidden_widths):
      h = nn.relu(nn.Dense(width, name=f"hidden_{i}")(h))
      activations[f"hidden_{i}"] = h
    logits = nn.Dense(self.num_classes, name="logits")(h)
    return logits, activations
