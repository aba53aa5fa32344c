"""A user's activations as a codec source: an (N, D) `.npy` file read as a memory map, with an optional
token-metadata `.npz` beside it.

The metadata file holds any of `doc_index`, `position` and `token_id` (one integer per activation row),
the layout of the text source's cache (text_source.TokenRows), so an atlas can say where a row came from.
Batches follow the other host sources' scheme: batch `step` holds rows step·B ... step·B + B - 1 of an
endless stream that visits all rows in a fresh permutation every epoch (numpy Generator seeded by (seed,
epoch)), so a batch is a pure function of its step; only one batch is read into memory at a time.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Any

import numpy as np

from mpcodec.core.errors import ActivationError
from mpcodec.studies.codec import memmap_rows, text_models

TOKEN_FIELDS = ("doc_index", "position", "token_id")


@dataclasses.dataclass(frozen=True)
class ArraySourceConfig:
  """A `.npy` file of activations (rows = tokens, columns = the layer's units).

  Attributes:
    path: the (N, D) float16/float32/float64 `.npy` file (read as a memory map).
    tokens: an optional `.npz` of per-row token metadata (`doc_index`, `position`, `token_id`; "" = none).
    layer: the layer the activations came from, as SAELens users should see it (the SAEs' `hook_name`).
    seed: the order in which batches visit the rows.
  """

  path: str = ""
  tokens: str = ""
  layer: str = ""
  seed: int = 0

  def checks(self):
    yield "path", not self.path or self.path.endswith(".npy"), f"must name a .npy file, got {self.path!r}"
    yield "tokens", not self.tokens or self.tokens.endswith(".npz"), f"must name a .npz file, got {self.tokens!r}"


_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def _fingerprint(path: str) -> str:
  return text_models.file_digest(path, _FINGERPRINTS)


class ArraySource(memmap_rows.ShuffledRows):
  """Activations from a user's `.npy` file (see the module docstring)."""

  def __init__(self, cfg: ArraySourceConfig):
    if not cfg.path:
      raise ActivationError("config.source.array.path: name the .npy file of activations (source.kind='array')")
    if not os.path.isfile(cfg.path):
      raise ActivationError(f"config.source.array.path: no file {cfg.path}")
    try:
      self.acts_NxD = np.load(cfg.path, mmap_mode="r")
    except (OSError, ValueError) as e:
      raise ActivationError(f"config.source.array.path: {cfg.path} is not a readable .npy file "
                            f"({type(e).__name__}: {e})") from e
    if self.acts_NxD.ndim != 2 or self.acts_NxD.shape[0] < 1 or self.acts_NxD.shape[1] < 1:
      raise ActivationError(f"config.source.array.path: {cfg.path} holds an array of shape {self.acts_NxD.shape}; "
                            "expected (N tokens, D units) with N, D >= 1")
    if not np.issubdtype(self.acts_NxD.dtype, np.floating):
      raise ActivationError(f"config.source.array.path: {cfg.path} holds {self.acts_NxD.dtype}; expected floats")
    self.cfg = cfg
    self.num_tokens, self.width = (int(n) for n in self.acts_NxD.shape)
    self.tokens = self._read_tokens(cfg.tokens) if cfg.tokens else {}
    self.identity = {"activations": _fingerprint(cfg.path), "shape": [self.num_tokens, self.width],
                     "tokens": _fingerprint(cfg.tokens) if cfg.tokens else None}
    self.hook_name = cfg.layer or "array"
    self.model_name = ""
    self.description = (f"array {os.path.basename(cfg.path)}: {self.num_tokens} rows x {self.width} units"
                        + (f", token metadata {sorted(self.tokens)}" if self.tokens else ""))

  def _read_tokens(self, path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
      raise ActivationError(f"config.source.array.tokens: no file {path}")
    try:
      with np.load(path) as found:
        tokens = {name: np.asarray(found[name]) for name in found.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
      raise ActivationError(f"config.source.array.tokens: {path} is not a readable .npz file "
                            f"({type(e).__name__}: {e})") from e
    unknown = sorted(set(tokens) - set(TOKEN_FIELDS))
    if unknown or not tokens:
      raise ActivationError(f"config.source.array.tokens: {path} holds {sorted(tokens)}; expected some of "
                            f"{list(TOKEN_FIELDS)} (one integer per activation row)")
    for name, values in tokens.items():
      if values.shape != (self.num_tokens,) or not np.issubdtype(values.dtype, np.integer):
        raise ActivationError(f"config.source.array.tokens: {name} in {path} is {values.dtype} {values.shape}; "
                              f"expected integers of shape ({self.num_tokens},), one per activation row")
    return tokens

  def row_metadata(self, rows: Any) -> list[dict[str, int]]:
    """{"row": its index in the file, and its token metadata} of each of `rows` (the atlas' top inputs)."""
    return [dict({"row": int(r)}, **{name: int(values[r]) for name, values in self.tokens.items()})
            for r in np.asarray(rows, np.int64).ravel()]
