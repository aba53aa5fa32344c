"""GGUF files (the llama.cpp format) read with the `gguf` package, tensors de-quantised to float32 in numpy.

A GGUF file holds metadata (key -> value, e.g. `general.architecture`, `llama.block_count`,
`tokenizer.ggml.tokens`) and tensors. A tensor's GGUF shape lists the contiguous dimension first
([in, out] for a projection); here every tensor is returned in numpy order, (out, in) like a PyTorch
Linear weight, (vocab, d_model) for the token embedding.

Block formats de-quantised (32 values per block, scales stored as float16):
  Q8_0: d (2 bytes), then 32 int8 q_j          (34 bytes)   x_j = d · q_j
  Q4_1: d, m (2 + 2 bytes), then 16 bytes       (20 bytes)   x_j = d · q_j + m, q_j in 0..15:
        q_j is the low nibble of byte j for j < 16 and the high nibble of byte j - 16 for j >= 16.
F32 and F16 tensors are read as they are; any other type is refused naming the tensor.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.models.pretrained import PretrainedWeightsError

BLOCK = 32
# Bytes per block of each supported quantised type.
_BLOCK_BYTES = {"Q8_0": 2 + BLOCK, "Q4_1": 4 + BLOCK // 2}
SUPPORTED_TYPES = ("F32", "F16", "Q8_0", "Q4_1")


class GGUFError(PretrainedWeightsError):
  """A GGUF file is missing, truncated, of another architecture or holds a tensor type we cannot read."""


def dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
  """Q8_0 bytes (..., n_blocks * 34) -> float32 (..., n_blocks * 32)."""
  raw = np.ascontiguousarray(blocks, np.uint8)
  lead = raw.shape[:-1]
  raw = raw.reshape(-1, _BLOCK_BYTES["Q8_0"])
  d = raw[:, :2].copy().view(np.float16).astype(np.float32)
  q = raw[:, 2:].copy().view(np.int8).astype(np.float32)
  return (d * q).reshape(*lead, -1)


def dequantize_q4_1(blocks: np.ndarray) -> np.ndarray:
  """Q4_1 bytes (..., n_blocks * 20) -> float32 (..., n_blocks * 32)."""
  raw = np.ascontiguousarray(blocks, np.uint8)
  lead = raw.shape[:-1]
  raw = raw.reshape(-1, _BLOCK_BYTES["Q4_1"])
  d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
  m = raw[:, 2:4].copy().view(np.float16).astype(np.float32)
  packed = raw[:, 4:]
  q = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)
  return (d * q + m).reshape(*lead, -1)


_DEQUANTIZE = {"Q8_0": dequantize_q8_0, "Q4_1": dequantize_q4_1}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """One tensor of a GGUF file: name, type name ("Q4_1"), numpy shape and where its bytes lie."""

  name: str
  type_name: str
  shape: tuple[int, ...]
  offset: int
  n_bytes: int


class GGUFFile:
  """An opened GGUF file: `metadata` (key -> Python value), `tensors` (name -> TensorInfo), `read(name)`."""

  def __init__(self, path: str, reader: Any):
    self.path = path
    self._reader = reader
    self.metadata: dict[str, Any] = {}
    for key, field in reader.fields.items():
      if key.startswith("GGUF."):
        continue
      try:
        self.metadata[key] = field.contents()
      except Exception as e:  # A malformed field: named, not fatal unless it is used.
        self.metadata[key] = GGUFError(f"{path}: metadata {key} is unreadable: {e}")
    self._data = {t.name: t for t in reader.tensors}
    self.tensors = {t.name: TensorInfo(t.name, t.tensor_type.name, tuple(int(n) for n in reversed(t.shape)),
                                       int(t.data_offset), int(t.n_bytes)) for t in reader.tensors}

  def get(self, key: str, default: Any = None) -> Any:
    value = self.metadata.get(key, default)
    if isinstance(value, GGUFError):
      raise value
    return value

  def require(self, key: str) -> Any:
    """A metadata value; its absence is one error naming the key and the file."""
    if key not in self.metadata:
      raise GGUFError(f"{self.path}: metadata key {key} is missing")
    return self.get(key)

  def check_types(self, names: Sequence[str] | None = None) -> None:
    """Refuses, in one error, every tensor (of `names`, default all) whose type cannot be de-quantised."""
    bad = [f"{info.name} ({info.type_name})" for name, info in self.tensors.items()
           if (names is None or name in names) and info.type_name not in SUPPORTED_TYPES]
    if bad:
      raise GGUFError(f"{self.path}: unsupported tensor type in {', '.join(bad)}; supported types: "
                      f"{', '.join(SUPPORTED_TYPES)}")

  def read(self, name: str) -> np.ndarray:
    """The tensor `name` as float32 in numpy order (out, in)."""
    info = self.tensors[name]
    data = self._data[name].data
    if info.type_name == "F32":
      out = np.asarray(data, np.float32)
    elif info.type_name == "F16":
      out = np.asarray(data).astype(np.float32)
    elif info.type_name in _DEQUANTIZE:
      out = _DEQUANTIZE[info.type_name](np.asarray(data))
    else:
      raise GGUFError(f"{self.path}: tensor {name} has unsupported type {info.type_name}; supported types: "
                      f"{', '.join(SUPPORTED_TYPES)}")
    if out.size != int(np.prod(info.shape)):
      raise GGUFError(f"{self.path}: tensor {name} holds {out.size} values; its shape {info.shape} needs "
                      f"{int(np.prod(info.shape))}")
    return out.reshape(info.shape)


class LazyTensors(Mapping[str, np.ndarray]):
  """The tensors of a GGUFFile as a mapping that de-quantises each one when it is read."""

  def __init__(self, gguf_file: GGUFFile):
    self._file = gguf_file

  def __getitem__(self, name: str) -> np.ndarray:
    return self._file.read(name)

  def __iter__(self) -> Iterator[str]:
    return iter(self._file.tensors)

  def __len__(self) -> int:
    return len(self._file.tensors)


def open_gguf(path: str | os.PathLike, architecture: str | None = None) -> GGUFFile:
  """Opens a GGUF file and checks it before any tensor is read.

  Refuses (one GGUFError line each): a missing file, a file the reader cannot parse, a truncated file
  (a tensor whose bytes end past the end of the file), and, when `architecture` is given, a file whose
  `general.architecture` differs.
  """
  path = os.fspath(path)
  try:
    import gguf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise GGUFError("reading a GGUF file needs the gguf package: pip install -e .[lm]") from None
  if not os.path.isfile(path):
    raise GGUFError(f"{path}: GGUF file not found")
  size = os.path.getsize(path)
  try:
    reader = gguf.GGUFReader(path, "r")
  except Exception as e:  # The reader raises ValueError, IndexError, KeyError... on a damaged file.
    raise GGUFError(f"{path}: not a readable GGUF file (truncated or damaged?): {type(e).__name__}: "
                    f"{e}") from None
  for tensor in reader.tensors:
    end = int(tensor.data_offset) + int(tensor.n_bytes)
    if end > size or tensor.data.nbytes != int(tensor.n_bytes):
      raise GGUFError(f"{path}: truncated GGUF file: tensor {tensor.name} ends at byte {end} but the file "
                      f"has {size} bytes")
  gguf_file = GGUFFile(path, reader)
  if architecture is not None:
    found = gguf_file.get("general.architecture")
    if found != architecture:
      raise GGUFError(f"{path}: general.architecture is {found!r}; this loader reads {architecture!r} "
                      f"models only")
  return gguf_file
