"""The rules every verdict follows: the two vocabularies, the seed minimum, the default alpha, input checks.

Defined once here; docs/replication.md states them in words and every study reads them from this module.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

HYPOTHESIS_VERDICTS = ("supported", "contradicted", "inconclusive", "cannot be tested")
REPLICATION_VERDICTS = ("replicates", "does not replicate", "inconclusive", "cannot be tested")
HypothesisVerdict = Literal["supported", "contradicted", "inconclusive", "cannot be tested"]
ReplicationVerdict = Literal["replicates", "does not replicate", "inconclusive", "cannot be tested"]

# No verdict below this many independent seeds: with 2-4 seeds an interval over seeds is either
# uninformative (Student t, 1-3 degrees of freedom) or anti-conservative (any bootstrap).
MIN_SEEDS = 5
ALPHA = 0.05


def as_values(values, name: str = "values", allow_empty: bool = False) -> np.ndarray:
  """`values` as a finite 1-D float64 array; a ValueError names the argument otherwise."""
  values = np.asarray(values, dtype=np.float64)
  if values.ndim != 1 or (values.size == 0 and not allow_empty):
    raise ValueError(f"{name}: expected a {'' if allow_empty else 'non-empty '}1-D array, got shape "
                     f"{values.shape}")
  if not np.all(np.isfinite(values)):
    raise ValueError(f"{name}: contains NaN or Inf ({int(np.sum(~np.isfinite(values)))} entries); drop "
                     "the seeds without a value first and report how many were dropped")
  return values


def check_alpha(alpha: float) -> float:
  alpha = float(alpha)
  if not 0.0 < alpha < 0.5:
    raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
  return alpha


def check_min_seeds(min_seeds: int) -> int:
  if int(min_seeds) != min_seeds or min_seeds < 2:
    raise ValueError(f"min_seeds must be an integer >= 2 (a t interval needs 2 seeds), got {min_seeds!r}")
  return int(min_seeds)


def check_sign(expected_sign: int) -> int:
  if expected_sign not in (1, -1):
    raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
  return int(expected_sign)


def untestable_reason(num_seeds: int, min_seeds: int, smoke: bool) -> str | None:
  """Why no verdict may be given ("smoke run" / "3 seeds, at least 5 needed"), or None."""
  if smoke:
    return "smoke run"
  if num_seeds < min_seeds:
    return f"{num_seeds} seed{'' if num_seeds == 1 else 's'}, at least {min_seeds} needed"
  return None


def fmt_p(p: float) -> str:
  """A p-value for a reason string: 3 significant digits, "< 1e-6" below that."""
  if not math.isfinite(p):
    return "n/a"
  return "< 1e-6" if p < 1e-6 else f"{p:.3g}"
