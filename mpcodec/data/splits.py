"""Seeded, stratified train/test split of a labelled set that exists here only as one split."""

from __future__ import annotations

from typing import Any

import numpy as np


def stratified_split(labels: np.ndarray, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns sorted (train_indices, test_indices) holding `test_fraction` of every class in test.

  Per class c with n_c examples, round(n_c * test_fraction) examples (at least 1 and at most n_c - 1
  when n_c >= 2) are drawn without replacement with numpy's PCG64 generator seeded by `seed`.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
  rng = np.random.default_rng(seed)
  test_parts = []
  # np.unique sorts the classes, so the draws happen in a fixed order for a given seed.
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    num_test = int(round(len(members) * test_fraction))
    if len(members) >= 2:
      num_test = min(max(num_test, 1), len(members) - 1)
    test_parts.append(rng.choice(members, size=num_test, replace=False))
  test_mask = np.zeros(labels.shape[0], dtype=bool)
  if test_parts:
    test_mask[np.concatenate(test_parts)] = True
  return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


def split_metadata(labels: np.ndarray, train_indices: np.ndarray, test_indices: np.ndarray,
                   test_fraction: float, seed: int, num_classes: int, source: str) -> dict[str, Any]:
  """Describes a stratified split for a dataset's metadata (JSON-able)."""
  return {
      "kind": "stratified",
      "source": source,
      "seed": int(seed),
      "test_fraction": float(test_fraction),
      "train_size": int(train_indices.size),
      "test_size": int(test_indices.size),
      "train_class_counts": np.bincount(labels[train_indices], minlength=num_classes).tolist(),
      "test_class_counts": np.bincount(labels[test_indices], minlength=num_classes).tolist(),
  }
