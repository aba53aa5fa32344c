"""Rank and shape checks of the public functions' array arguments, at trace time.

A public function of `mpcodec.sae` checks each array argument against a spec such as ("B", "D"): an int
is a size the axis must have, a letter any size, the same wherever the letter recurs in one call (the
`sizes` mapping carries it from one argument to the next). A mismatch raises one ValueError naming the
argument, the shape expected and the shape it got. Shapes are static under jit and vmap, so the check
costs nothing in a compiled program.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import jax
import numpy as np


def _spec(expected: Sequence[int | str], sizes: MutableMapping[str, int]) -> str:
  named = [f"{e}" if isinstance(e, int) or e not in sizes else f"{e}={sizes[e]}" for e in expected]
  return "(" + ", ".join(named) + ("," if len(named) == 1 else "") + ")"


def check_shape(name: str, value: Any, expected: Sequence[int | str],
                sizes: MutableMapping[str, int] | None = None, where: str = "") -> tuple[int, ...]:
  """The shape of array argument `name`; ValueError naming it unless it has `expected`'s rank and sizes.

  `where` says where a letter's size came from ("the SAE's input width"), for the message.
  """
  sizes = {} if sizes is None else sizes
  spec = _spec(expected, sizes)   # the sizes known before this argument
  try:
    shape = tuple(int(d) for d in np.shape(value))
  except (TypeError, ValueError):
    raise ValueError(f"{name}: expected an array of shape {spec}, got {type(value).__name__}") from None
  if len(shape) != len(expected):
    raise ValueError(f"{name}: expected a rank-{len(expected)} array of shape {spec}, got shape {shape}")
  for want, got in zip(expected, shape):
    if isinstance(want, int):
      ok = got == want
    else:
      ok = sizes.setdefault(want, got) == got
    if not ok:
      source = f" ({where})" if where else ""
      raise ValueError(f"{name}: expected shape {spec}{source}, got shape {shape}")
  return shape


def check_key(name: str, key: Any) -> None:
  """ValueError naming `name` unless it is one PRNG key: a raw (2,) uint32 key or a typed scalar key."""
  if hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    check_shape(name, key, ())
  else:
    check_shape(name, key, (2,))


def check_scalar(name: str, value: Any) -> None:
  """ValueError naming `name` unless it is a scalar (a Python number or a rank-0 array)."""
  check_shape(name, value, ())
