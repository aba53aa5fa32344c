"""Host loop of a seed sweep: run chunks of jitted steps, check for NaN/Inf, checkpoint, show progress.

The host only decides where chunks end. Chunk boundaries are a function of the absolute step (the next
multiple of `log_every` or `checkpoint_every`, or the end of the phase), so a run resumed from a
checkpoint executes exactly the same compiled chunks as an uninterrupted one and ends bit-identical.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mpcodec.core.checkpoint import CheckpointStore


from mpcodec.core.errors import NonFiniteError as NonFiniteLossError


@dataclasses.dataclass(frozen=True)
class PhaseSchedule:
  name: str
  total_steps: int
  log_every: int
  checkpoint_every: int

  def chunk_end(self, step: int) -> int:
    """Where the chunk that starts at `step` ends."""
    candidates = (
        (step // self.log_every + 1) * self.log_every,
        (step // self.checkpoint_every + 1) * self.checkpoint_every,
        self.total_steps,
    )
    return min(candidates)

  def is_checkpoint_step(self, step: int) -> bool:
    return step == 0 or step % self.checkpoint_every == 0 or step == self.total_steps


def sweep_seed_keys(base_seed: int, num_seeds: int) -> jax.Array:
  """(num_seeds,) keys; seed i is fold_in(PRNGKey(base_seed), i), so seed i is the same in any sweep size."""
  base = jax.random.PRNGKey(base_seed)
  return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_seeds))


def first_non_finite(losses_SxT: np.ndarray) -> tuple[int, int] | None:
  """(seed index, step offset) of the earliest non-finite loss, or None if all are finite."""
  bad = ~np.isfinite(losses_SxT)
  if not bad.any():
    return None
  offsets = np.where(bad.any(axis=0))[0]
  t = int(offsets[0])
  return int(np.where(bad[:, t])[0][0]), t


def run_phase(schedule: PhaseSchedule, run_chunk: Callable[[Any, int, int], tuple[Any, Any]], state: Any,
              start_step: int, store: CheckpointStore, metadata: dict, seeds: list[int],
              progress: Any = None) -> Any:
  """Trains from `start_step` to the end of the phase; saves at checkpoint steps.

  `run_chunk(state, start_step, num_steps)` returns the new state and losses shaped (seeds, num_steps).
  A non-finite loss raises NonFiniteLossError naming the phase, step and seed; the last good
  checkpoint stays on disk because a chunk's state is saved only after its losses pass the check.
  """
  step = start_step
  if step == 0 and 0 not in store.all_steps():
    store.save(0, state, metadata)
  while step < schedule.total_steps:
    end = schedule.chunk_end(step)
    state, losses = run_chunk(state, step, end - step)
    losses = np.asarray(losses)
    bad = first_non_finite(losses)
    if bad is not None:
      seed_index, offset = bad
      raise NonFiniteLossError(
          f"{schedule.name}: loss is {losses[seed_index, offset]} at step {step + offset} for seed "
          f"{seeds[seed_index]} (index {seed_index}); the last good checkpoint is {schedule.name} step "
          f"{store.latest_step()} in {store.directory}")
    step = end
    if progress is not None:
      progress.update(losses.shape[1])
      progress.set_postfix_str(f"{schedule.name} loss {losses[:, -1].mean():.4f}")
    if schedule.is_checkpoint_step(step):
      store.save(step, state, metadata)
      logging.info("%s step %d: mean loss %.4f, checkpoint saved", schedule.name, step, losses[:, -1].mean())
  return state
