"""Training batches from a (N, D) array of activation rows held on disk (a memory map): the part the
`text` and `array` sources share. A source mixes in `ShuffledRows` and gives `acts_NxD`, `num_tokens`,
`width` and `cfg.seed`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class ShuffledRows:
  """Host batches of rows in per-epoch random orders, pure in the step (so a resumed run reads the same
  batches)."""

  def batch_fn(self, batch_size: int) -> None:
    """No device-side batch function: the rows come from the host (`batches`)."""
    del batch_size
    return None

  def indices(self, step: int, batch_size: int) -> np.ndarray:
    """Rows of batch `step` (pure in step: per-epoch permutations seeded by (seed, epoch))."""
    positions = step * batch_size + np.arange(batch_size)
    epochs, offsets = np.divmod(positions, self.num_tokens)
    out = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
      permutation = np.random.default_rng([self.cfg.seed, int(epoch)]).permutation(self.num_tokens)
      out[epochs == epoch] = permutation[offsets[epochs == epoch]]
    return out

  def rows_at(self, indices: np.ndarray) -> np.ndarray:
    """float32 activations of the given rows, in that order (read in sorted order from the memmap)."""
    order = np.argsort(indices, kind="stable")
    out = np.empty((indices.shape[0], self.width), np.float32)
    out[order] = self.acts_NxD[indices[order]]
    return out

  def batches(self, batch_size: int, start_step: int = 0) -> Iterator[np.ndarray]:
    step = start_step
    while True:
      yield self.rows_at(self.indices(step, batch_size))
      step += 1
