"""Atomic writers for run outputs: CSV tables, JSON (NaN/Inf become null), text and figures.

Every writer writes a temporary file in the destination folder and renames it over the target, so a
reader never sees a half-written file and a crash never destroys a finished result.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np


def _current_umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


_UMASK = _current_umask()


def _plain_mode(fd: int) -> None:
  """The mode a plain `open` would give a new file (0666 less the umask), not mkstemp's private 0600."""
  os.fchmod(fd, 0o666 & ~_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds."""
  path = os.fspath(path)
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  try:
    _plain_mode(fd)
  finally:
    os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)


def jsonable(value: Any) -> Any:
  """Converts numpy/JAX scalars and arrays to plain Python; non-finite floats become None."""
  if isinstance(value, Mapping):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
    arr = np.asarray(value)
    return jsonable(arr.tolist()) if arr.ndim else jsonable(arr.item())
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, (np.floating,)):
    return jsonable(float(value))
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, np.bool_):
    return bool(value)
  return value


def write_json(path: str | os.PathLike, payload: Any) -> None:
  """Writes strict JSON (allow_nan=False): NaN and Inf are stored as null."""
  write_text(path, json.dumps(jsonable(payload), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_json_once(path: str | os.PathLike, payload: Any) -> bool:
  """Writes `payload` as `write_json` does, but only if `path` does not exist yet, atomically even
  between processes: of several writers, exactly one creates the file. Returns whether this call did."""
  path = os.fspath(path)
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  try:
    _plain_mode(fd)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(json.dumps(jsonable(payload), indent=2, sort_keys=True, allow_nan=False) + "\n")
    os.link(tmp, path)   # Fails if the path exists, unlike a rename.
    return True
  except FileExistsError:
    return False
  finally:
    os.remove(tmp)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
              columns: Sequence[str] | None = None) -> None:
  """Writes dict rows as CSV with a header; columns default to the first row's keys in order."""
  if columns is None:
    columns = list(rows[0].keys()) if rows else []
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
  write_text(path, buf.getvalue())


def _csv_cell(value: Any) -> Any:
  value = jsonable(value)
  if value is None:
    return ""
  if isinstance(value, float):
    return repr(value)
  return value


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
  """Saves a matplotlib figure atomically and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  fmt = os.path.splitext(path)[1].lstrip(".") or "png"
  with atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight")
  plt.close(fig)
