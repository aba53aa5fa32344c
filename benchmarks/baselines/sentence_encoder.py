"""The baseline of benchmarks.minilm: sentence-transformers' `SentenceTransformer.encode` in PyTorch.

sentence-transformers and torch come from the `bench` extra; `encoder` returns None when they are not
installed, and the benchmark then times the Flax model alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import importlib.util

import numpy as np


def available() -> bool:
  """Whether sentence-transformers and torch are installed (found, not imported)."""
  return all(importlib.util.find_spec(name) is not None for name in ("sentence_transformers", "torch"))


def encoder(model_dir: str, max_length: int, threads: int) -> Callable[[Sequence[str], int], np.ndarray] | None:
  """`encode(texts, batch_size) -> (texts, width) float32` of the model in `model_dir` on the CPU, with
  `threads` intra-op threads and texts truncated at `max_length` tokens; None without the bench extra."""
  if not available():
    return None
  import sentence_transformers  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
  model.max_seq_length = max_length

  def encode(texts: Sequence[str], batch_size: int) -> np.ndarray:
    return model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

  return encode
