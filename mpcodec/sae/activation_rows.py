"""The rows of a user's activation array: checks, the one NaN/Inf scan, the held-out split, batches.

The array (T tokens by D features; numpy or an np.memmap larger than memory) is never loaded whole: the
scan reads it in chunks of rows, and training reads only the rows of each batch, in ascending order.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from mpcodec.core import seeds
from mpcodec.core.errors import ActivationError
from mpcodec.sae import shapes

SCAN_ELEMENTS = 1 << 23   # elements per chunk of the NaN scan (32 MB of float32)


def checked_array(acts_TxD: Any, name: str = "acts_TxD") -> np.ndarray:
  """`acts_TxD` as a numpy array (a memmap stays one); ValueError naming it unless it is a non-empty
  (T, D) array of real numbers."""
  shapes.check_shape(name, acts_TxD, ("T", "D"))
  acts = acts_TxD if isinstance(acts_TxD, np.ndarray) else np.asarray(acts_TxD)
  if not (np.issubdtype(acts.dtype, np.floating) or np.issubdtype(acts.dtype, np.integer)):
    raise ValueError(f"{name}: expected real numbers (a float or integer dtype), got dtype {acts.dtype}")
  if acts.shape[0] < 1 or acts.shape[1] < 1:
    raise ValueError(f"{name}: expected at least one row and one column, got shape {acts.shape}")
  return acts


def scan_rows(acts_TxD: np.ndarray, name: str = "acts_TxD") -> str:
  """Reads the array once in chunks of rows; ActivationError (a ValueError) naming the first row that
  holds NaN/Inf. Returns a fingerprint of its shape, dtype and bytes (BLAKE2b)."""
  digest = hashlib.blake2b(digest_size=16)
  digest.update(repr((acts_TxD.shape, str(acts_TxD.dtype))).encode())
  rows_per_chunk = max(1, SCAN_ELEMENTS // max(1, acts_TxD.shape[1]))
  for start in range(0, acts_TxD.shape[0], rows_per_chunk):
    chunk = np.ascontiguousarray(acts_TxD[start:start + rows_per_chunk])
    finite = np.isfinite(chunk)
    if not finite.all():
      row, column = np.argwhere(~finite)[0]
      raise ActivationError(f"{name}: row {start + int(row)} holds {chunk[row, column]} (column {int(column)}); "
                            f"every value must be finite")
    digest.update(chunk.data)
  return digest.hexdigest()


def eval_split(num_rows: int, eval_fraction: float, max_eval_tokens: int) -> tuple[int, tuple[int, int], bool]:
  """(training rows, (first, end) of the evaluation rows, whether those are held out).

  With eval_fraction > 0 the last ceil(fraction·T) rows (at most max_eval_tokens) are held out and the
  rows before them train; with 0 every row trains and the first max_eval_tokens rows are evaluated.
  """
  if eval_fraction > 0:
    held = min(math.ceil(eval_fraction * num_rows), max_eval_tokens)
    return num_rows - held, (num_rows - held, num_rows), True
  return num_rows, (0, min(num_rows, max_eval_tokens)), False


def read_rows(acts_TxD: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """float32 rows of the array in the order given (read in ascending order: friendly to a memmap)."""
  order = np.argsort(rows, kind="stable")
  out = np.empty((rows.shape[0], acts_TxD.shape[1]), np.float32)
  out[order] = acts_TxD[rows[order]]
  return out


def batch_rows(seed: int, step: int, num_train: int, batch_size: int) -> np.ndarray:
  """The rows of training batch `step`: uniform with replacement among the first `num_train`, a pure
  function of (seed, step), so a resumed run reads the same batches."""
  rng = np.random.default_rng([seed, seeds.purpose_id("sae_data_order"), step])
  return rng.integers(0, num_train, batch_size)


def init_sample(acts_TxD: np.ndarray, seed: int, num_tokens: int, num_train: int) -> np.ndarray:
  """`num_tokens` distinct training rows (all of them if fewer), drawn once from `seed`: the sample that
  sets the input scale and the decoder bias of every run."""
  rng = np.random.default_rng([seed, seeds.purpose_id("sae_init_sample")])
  rows = rng.choice(num_train, min(num_tokens, num_train), replace=False)
  return read_rows(acts_TxD, np.sort(rows))
