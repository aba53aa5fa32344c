"""Input checks of the public metric functions: one `DataError` (a ValueError) that names the argument.

Ranks and sizes are static under `jax.jit` and `jax.vmap`, so `check_rank` and `check_axis` run at trace
time and see the per-seed shape under vmap. Index values are read only where they are concrete (numpy
arrays, Python values, un-traced JAX arrays): under tracing `check_index_range` checks nothing.
"""

from __future__ import annotations

import jax
import numpy as np

from mpcodec.core.errors import DataError


def _rank_text(rank: int | tuple[int, ...], leading: bool) -> str:
  if leading:
    return f"at least {rank}-D"
  if isinstance(rank, int):
    return f"{rank}-D"
  return " or ".join(f"{r}-D" for r in rank)


def check_rank(func: str, name: str, array, rank: int | tuple[int, ...], dims: str, *, leading: bool = False,
               error: type[ValueError] = DataError) -> tuple[int, ...]:
  """Returns the shape of `array`; raises `error` unless its rank is `rank` (one of them, for a tuple).

  With leading=True any number of extra leading axes is allowed (rank is then the least rank). The
  message reads `func: name must be 2-D (dims), got shape (5,)`.
  """
  shape = tuple(np.shape(array))
  ranks = (rank,) if isinstance(rank, int) else tuple(rank)
  ok = len(shape) >= ranks[0] if leading else len(shape) in ranks
  if not ok:
    raise error(f"{func}: {name} must be {_rank_text(rank, leading)} ({dims}), got shape {shape}")
  return shape


def check_axis(func: str, name: str, array, axis: int, size: int, meaning: str, *,
               error: type[ValueError] = DataError) -> None:
  """Raises `error` unless array.shape[axis] == size: `func: name needs meaning = size on axis -1, got ...`.

  `meaning` says where the size comes from, e.g. "B (the samples of neuron_acts_BxM)".
  """
  shape = tuple(np.shape(array))
  if shape[axis] != size:
    raise error(f"{func}: {name} needs {meaning} = {size} on axis {axis}, got shape {shape}")


def check_index_range(func: str, name: str, indices, upper: int, meaning: str, *, lower: int | None = 0,
                      error: type[ValueError] = DataError) -> None:
  """Raises `error` if concrete `indices` fall outside [lower, upper) (lower=None: below upper); traced
  indices (under jit or vmap) are not read.

  `meaning` says what the indices address, e.g. "atoms (columns of codes_BxN)".
  """
  if isinstance(indices, jax.core.Tracer) or np.size(indices) == 0:
    return
  values = np.asarray(indices)
  low, high = values.min(), values.max()
  if (lower is not None and low < lower) or high >= upper:
    allowed = f"[{lower}, {upper})" if lower is not None else f"values below {upper}"
    raise error(f"{func}: {name} must index {meaning} in {allowed}, got values from {low} to {high}")
