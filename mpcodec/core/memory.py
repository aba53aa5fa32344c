"""Memory-sized config knobs checked against the device's memory before anything compiles.

A batch of 10^8 rows asks XLA for hundreds of GB and ends in a long allocation traceback after the
compile. `check_fits` estimates a config's largest buffers from its shape knobs (rows × width × 4 bytes
× a small factor for the activations, gradients and optimizer temporaries alive at once) and stops
with one ConfigError naming the key, the estimate and the memory there is.
"""

from __future__ import annotations

import math
import os

import jax

from mpcodec.core.errors import ConfigError

# Copies of the largest activation alive at once in a training step (forward value, its gradient, a
# masked or sorted copy, the optimizer's temporaries): an estimate, meant to catch orders of magnitude.
BUFFER_FACTOR = 4
FLOAT_BYTES = 4


def estimate_bytes(*dims: int, itemsize: int = FLOAT_BYTES, factor: float = BUFFER_FACTOR) -> int:
  """Bytes of an array of shape `dims` of `itemsize`-byte elements, times `factor` copies."""
  return int(math.prod(int(d) for d in dims) * itemsize * factor)


def host_available_bytes() -> int | None:
  """The host's available physical memory (os.sysconf), None where the system does not say."""
  try:
    return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
  except (ValueError, OSError, AttributeError):
    return None


def device_memory() -> tuple[int | None, str]:
  """(bytes the first device can still allocate, a description of where that number comes from).

  An accelerator reports its limit and use through `memory_stats()`; the CPU backend reports none, and
  there the host's available RAM is the limit.
  """
  device = jax.devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  (backends without the call raise various errors)
    stats = None
  if stats and stats.get("bytes_limit"):
    free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return free, f"the free memory of {device.device_kind} {device.id}"
  return host_available_bytes(), "the host's available RAM"


def _gigabytes(nbytes: float) -> str:
  return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def check_fits(key: str, nbytes: int, what: str, available: tuple[int | None, str] | None = None) -> None:
  """ConfigError `config.<key>: <what> needs about X GB, more than the Y GB of <where>; ...` when the
  estimate `nbytes` exceeds the memory (`device_memory()` unless `available` is given); silent where
  the memory is unknown."""
  limit, where = available if available is not None else device_memory()
  if limit is None or nbytes <= limit:
    return
  raise ConfigError(f"config.{key}: {what} needs about {_gigabytes(nbytes)}, more than the "
                    f"{_gigabytes(limit)} of {where}; lower it")
