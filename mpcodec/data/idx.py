"""Reader for IDX files (MNIST-style), gzip-compressed or raw.

An IDX file is a big-endian header -- a 4-byte magic number `0x0000TTNN` (TT the element type, NN the
number of axes), then NN int32 axis sizes -- followed by the elements in C order. The files used here:
`0x00000803` images (uint8, N x rows x cols), `0x00000801` labels (uint8, N) and QMNIST's extended labels
`0x00000C02` (int32, N x 8). Format: http://yann.lecun.com/exdb/mnist/ (section "file formats").
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from mpcodec.data.dataset import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
QMNIST_LABELS_MAGIC = 0x00000C02

GZIP_MAGIC = b"\x1f\x8b"

# IDX element type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_MAGIC_NAMES = {
    IMAGES_MAGIC: "images", LABELS_MAGIC: "labels", QMNIST_LABELS_MAGIC: "QMNIST int32 labels"}


def _describe_magic(magic: int) -> str:
  name = _MAGIC_NAMES.get(magic)
  return f"0x{magic:08X}" + (f" ({name})" if name else "")


def read_file_bytes(path: str | os.PathLike) -> bytes:
  """Returns a file's content, gunzipped if it starts with the gzip magic bytes (whatever its name)."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise DataError(f"{path}: file not found") from None
  if data[:2] != GZIP_MAGIC:
    return data
  try:
    return gzip.decompress(data)
  except EOFError as e:
    raise DataError(f"{path}: truncated gzip stream ({len(data)} compressed bytes read; expected a "
                    f"complete gzip member): {e}") from None
  except (gzip.BadGzipFile, zlib.error) as e:
    raise DataError(f"{path}: corrupt gzip data (expected a valid gzip stream): {e}") from None


def parse_idx(data: bytes, path: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
  """Parses IDX bytes into a native-endian array; errors name `path` and what was expected."""
  if len(data) < 4:
    raise DataError(f"{path}: {len(data)} bytes is too short for an IDX header (expected at least 4)")
  magic = int.from_bytes(data[:4], "big")
  type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
  if magic >> 16 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
    raise DataError(f"{path}: not an IDX file: magic number 0x{magic:08X} (expected 0x0000TTNN with "
                    f"type TT in {sorted(hex(t) for t in _IDX_DTYPES)}, e.g. "
                    f"{_describe_magic(IMAGES_MAGIC)} or {_describe_magic(LABELS_MAGIC)})")
  if expected_magic is not None and magic != expected_magic:
    raise DataError(f"{path}: wrong IDX magic number {_describe_magic(magic)}, expected "
                    f"{_describe_magic(expected_magic)}")
  header_bytes = 4 + 4 * ndim
  if len(data) < header_bytes:
    raise DataError(f"{path}: truncated IDX header: expected {header_bytes} bytes for {ndim} axes, "
                    f"file holds {len(data)}")
  shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
  dtype = _IDX_DTYPES[type_code]
  expected_payload = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  actual_payload = len(data) - header_bytes
  if actual_payload != expected_payload:
    problem = "truncated" if actual_payload < expected_payload else "trailing bytes"
    raise DataError(f"{path}: {problem}: header shape {shape} of {dtype.name} needs {expected_payload} "
                    f"payload bytes, found {actual_payload}")
  array = np.frombuffer(data, dtype=dtype, offset=header_bytes).reshape(shape)
  # Big-endian multi-byte elements are converted once here so callers get native arrays.
  return array.astype(dtype.newbyteorder("="), copy=dtype.itemsize > 1)


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
  """Reads a gzip or raw IDX file into a numpy array, checking magic number, axes and payload size."""
  path = os.fspath(path)
  return parse_idx(read_file_bytes(path), path, expected_magic)
