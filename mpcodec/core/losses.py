"""Classification losses and accuracy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits_BxC: jax.Array, labels_B: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B).mean()


def accuracy(logits_BxC: jax.Array, labels_B: jax.Array) -> jax.Array:
  """Fraction of samples whose arg-max logit is the label."""
  return (jnp.argmax(logits_BxC, axis=-1) == labels_B).mean()
