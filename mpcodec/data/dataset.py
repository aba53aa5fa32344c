"""The in-memory dataset every loader returns, and the error every loader raises on bad data.

A `Dataset` holds both splits as numpy arrays: images as float32 (N, H, W, C) in [0, 1], text as int32
(N, L) token ids (0 = padding, 1 = out of vocabulary), labels as int32 class indices starting at 0.
Where the split came from, the files it was read from and the class names live in `metadata`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from mpcodec.core import errors

# Loaders raise it from here; it is one of the user errors of `mpcodec.core.errors`.
DataError = errors.DataError




@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train and test splits of one classification dataset, held in memory as numpy arrays."""

  name: str
  kind: Literal["image", "text"]
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: int
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.kind not in ("image", "text"):
      raise ValueError(f"dataset {self.name!r}: kind must be 'image' or 'text', got {self.kind!r}")
    for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
      if x.shape[0] != y.shape[0]:
        raise ValueError(f"dataset {self.name!r}: {split} has {x.shape[0]} inputs but "
                         f"{y.shape[0]} labels")
      if y.ndim != 1 or y.dtype != np.int32:
        raise ValueError(f"dataset {self.name!r}: {split} labels must be 1-D int32, got "
                         f"{y.dtype} of shape {y.shape}")
      if y.size and (y.min() < 0 or y.max() >= self.num_classes):
        raise ValueError(f"dataset {self.name!r}: {split} labels must lie in [0, {self.num_classes}), "
                         f"found [{y.min()}, {y.max()}]")
      expected_dtype = np.float32 if self.kind == "image" else np.int32
      expected_ndim = 4 if self.kind == "image" else 2
      if x.dtype != expected_dtype or x.ndim != expected_ndim:
        raise ValueError(f"dataset {self.name!r}: {split} inputs of a {self.kind} set must be "
                         f"{np.dtype(expected_dtype).name} with {expected_ndim} axes, got {x.dtype} "
                         f"of shape {x.shape}")
    if self.train_x.shape[1:] != self.test_x.shape[1:]:
      raise ValueError(f"dataset {self.name!r}: train inputs {self.train_x.shape[1:]} and test inputs "
                       f"{self.test_x.shape[1:]} differ in shape")

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example: (H, W, C) for images, (L,) for text."""
    return tuple(self.train_x.shape[1:])

  @property
  def num_train(self) -> int:
    return int(self.train_x.shape[0])

  @property
  def num_test(self) -> int:
    return int(self.test_x.shape[0])

  @property
  def max_length(self) -> int | None:
    """Token sequence length of a text set; None for images."""
    return int(self.train_x.shape[1]) if self.kind == "text" else None

  @property
  def vocab_size(self) -> int | None:
    """Number of token ids (padding and OOV included) of a text set, i.e. the embedding table size."""
    return int(self.metadata["vocab_size"]) if self.kind == "text" else None

  @property
  def class_names(self) -> tuple[str, ...]:
    names = self.metadata.get("class_names")
    return tuple(names) if names else tuple(str(c) for c in range(self.num_classes))

  def class_counts(self, split: Literal["train", "test"]) -> np.ndarray:
    """Number of examples of each class in `split`, shape (num_classes,)."""
    labels = self.train_y if split == "train" else self.test_y
    return np.bincount(labels, minlength=self.num_classes)

  def summary(self) -> str:
    """One line for logs: name, kind, sizes, input shape, classes."""
    return (f"{self.name} ({self.kind}): {self.num_train} train / {self.num_test} test, "
            f"input {self.input_shape}, {self.num_classes} classes")
