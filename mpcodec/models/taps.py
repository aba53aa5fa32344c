"""Activation taps shared by the pretrained ports (BERT, Llama): at each named point of a forward pass,
replace or add to the activation (steering, splicing) and record it when asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from mpcodec.core.errors import ActivationError


def check_tap_names(valid: Sequence[str], names: Sequence[str], what: str = "layer") -> None:
  """Raises ActivationError naming each of `names` not in `valid` and listing the valid ones."""
  unknown = [name for name in names if name not in valid]
  if unknown:
    raise ActivationError(f"unknown {what} name{'s' if len(unknown) > 1 else ''} {unknown}; valid layer "
                          f"names: {list(valid)}")


class Taps:
  """Applies replace / add at each tap and records the captured activations."""

  def __init__(self, capture: Sequence[str], add: Mapping[str, jax.Array] | None,
               replace: Mapping[str, jax.Array] | None):
    self.capture, self.add, self.replace = tuple(capture), dict(add or {}), dict(replace or {})
    self.acts: dict[str, jax.Array] = {}

  def __call__(self, name: str, x: jax.Array) -> jax.Array:
    if name in self.replace:
      new = jnp.asarray(self.replace[name], x.dtype)
      if new.shape != x.shape:
        raise ActivationError(f"replace[{name!r}] has shape {new.shape}; the activation there has shape "
                              f"{x.shape}")
      x = new
    if name in self.add:
      delta = jnp.asarray(self.add[name], x.dtype)
      try:
        fits = jnp.broadcast_shapes(delta.shape, x.shape) == x.shape
      except ValueError:
        fits = False
      if not fits:
        raise ActivationError(f"add[{name!r}] of shape {delta.shape} does not broadcast against the "
                              f"activation of shape {x.shape}")
      x = x + delta
    if name in self.capture:
      self.acts[name] = x
    return x
