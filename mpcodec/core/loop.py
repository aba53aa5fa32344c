"""The one run loop of every study: a pure program cut into lax.scan chunks between host checks.

A study describes its training run as a `Program`: `init(keys_S) -> state_S` and one or more `Phase`s,
each a seed-stacked `chunk(state_S, keys_S, data, inputs, start_step, num_steps) -> (state_S, metrics)`
that runs steps [start_step, start_step + num_steps) under `lax.scan`. `pure_train(program)` runs every
phase as one chunk (the whole run as one pure function of a key); `run` cuts the same functions into
chunks and adds what a long run needs, without changing a bit of the result:

- chunk boundaries depend only on the absolute step (multiples of `chunk_every`, of `checkpoint_every`,
  any `extra_checkpoints`, the phase's end), so a resumed run executes the same chunks;
- every metric of every chunk is written into history buffers carried with the state (seed axis first),
  so the history survives a resume, is checkpointed with the state and sharded like it;
- after each chunk a small summary computed on the device (is every loss finite, where is the first
  non-finite one) is checked on the host: a NaN/Inf stops the run naming study, phase, step and seed,
  and no state after it is ever saved, so the last checkpoint is the last good one;
- checkpoints are saved asynchronously (Orbax) from a copy of the state, and the host dispatches the
  next chunk before it fetches the previous chunk's summary, so the device never waits for the host;
- which chunk ends save: each phase's planned steps, a stop, and with a `CheckpointPolicy` of a minimum
  interval in seconds any chunk end that long after the last save (a resume point, removed when its
  phase ends); the time rule never moves a chunk boundary, so resuming stays bit-identical;
- a run resumes from the latest checkpoint of its phases; SIGINT (and SIGTERM, a scheduler's pre-emption)
  ends it cleanly after the current chunk with a checkpoint; SIGKILL loses only the work since the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mpcodec.core import program as program_lib
from mpcodec.core import resume, sharding, stopping
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.checkpoint_policy import CheckpointPolicy
from mpcodec.core.errors import ActivationError, InterruptedRun, NonFiniteError
from mpcodec.core.program import (LOSS, Chunk, Phase, Program, State, abstract_carry, initial_carry, pure_sweep,
                                  pure_train, vmap_chunk)
from mpcodec.core.resume import check_checkpoints

__all__ = ["LOSS", "Chunk", "CheckpointPolicy", "Outcome", "Phase", "Program", "State", "abstract_carry",
           "check_checkpoints", "initial_carry", "pure_sweep", "pure_train", "run", "vmap_chunk"]

# ------------------------------------------------------------------------------------------------
# The chunked, checkpointed run.


@dataclasses.dataclass
class Outcome:
  """What `run` returns: final state and history (seed axis first) and where the time went."""

  state: State
  history: dict[str, dict[str, Any]]
  resumed_from: tuple[str, int] | None
  compile_seconds: float
  train_seconds: float
  steps_trained: int
  num_seeds: int

  @property
  def seed_steps_per_second(self) -> float:
    return self.steps_trained * self.num_seeds / self.train_seconds if self.train_seconds else float("nan")


class _Compiled:
  """AOT-compiled chunk programs per (phase, length), compile time measured apart from run time."""

  def __init__(self, program: Program, mesh, cache: dict | None = None):
    self.program, self.mesh = program, mesh
    self.cache: dict = {} if cache is None or program.cache_key is None else cache
    self.seconds = 0.0
    shardings = {}
    if mesh is not None:
      shardings = dict(out_shardings=(sharding.seed_sharding(mesh), sharding.replicated_sharding(mesh)))
    self._jit_kwargs = shardings
    self.copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree),
                        **({"out_shardings": sharding.seed_sharding(mesh)} if mesh is not None else {}))

  def get(self, phase: Phase, num_steps: int, carry, keys, data, inputs):
    key = (self.program.cache_key, phase.name, num_steps)
    if key not in self.cache:
      start = time.perf_counter()
      fn = program_lib.chunk_with_history(self.program, phase, num_steps, carry["history"][phase.name])
      jitted = jax.jit(fn, donate_argnums=0, **self._jit_kwargs)
      self.cache[key] = jitted.lower(carry, keys, data, inputs, jnp.int32(0)).compile()
      self.seconds += time.perf_counter() - start
    return self.cache[key]


def run(program: Program, keys: Any, checkpoint_root: str, *, seed_labels: Sequence[Any],
        config: Mapping, metadata: Mapping | None = None, mesh=None, progress: Any = None,
        overwrite: bool = False, compile_cache: dict | None = None, outputs: Sequence[str] = (),
        checkpoint_policy: CheckpointPolicy | None = None) -> Outcome:
  """Trains `program` for seeds `keys` (a pytree of (S, 2) keys) in checkpointed chunks, resuming where
  it stopped.

  Args:
    checkpoint_root: one store per phase, `<checkpoint_root>/<phase name>/<step>`.
    seed_labels: how errors name seed i (its seed number, or "k=32 seed 1").
    config: the training config (JSON-able); checkpoints of another config are refused (or removed
      with `overwrite`). Knobs that do not change training (analysis settings) must not be in it.
    metadata: more JSON saved with every checkpoint.
    mesh: device mesh of the seed axis (`sharding.seed_mesh`); None for one device.
    progress: tqdm-like (`update(n)`, `set_postfix_str(s)`); gets every step trained, resumed ones too.
    compile_cache: a dict kept by the caller to reuse compiled chunks across runs (see Program.cache_key).
    outputs: files and folders derived from these checkpoints (report, metrics, plots), removed before
      the checkpoints when `overwrite` removes a run of another config.
    checkpoint_policy: which chunk ends save besides the phases' planned steps (a minimum interval in
      seconds); None: from MPCODEC_CHECKPOINT_INTERVAL_S, by step alone when it is unset. With several
      processes each must be given a policy with an interval or none alike; process 0's clock decides.
  Raises:
    NonFiniteError naming study, phase, step and seed; InterruptedRun after SIGINT or SIGTERM (with a
    checkpoint; exit status 130 or 143).
  """
  num_seeds = int(jax.tree.leaves(keys)[0].shape[0])
  policy = CheckpointPolicy.from_environment() if checkpoint_policy is None else checkpoint_policy
  if len(seed_labels) != num_seeds:
    raise ValueError(f"{len(seed_labels)} seed labels for {num_seeds} seeds")
  resume.check_checkpoints(checkpoint_root, [p.name for p in program.phases], config, overwrite,
                           os.path.dirname(checkpoint_root) or checkpoint_root, outputs)
  saved_metadata = {"study": program.study, "config": dict(config), "seeds": list(seed_labels),
                    **(metadata or {})}
  stores = {p.name: CheckpointStore(os.path.join(checkpoint_root, p.name), all_processes=True)
            for p in program.phases}
  keys = sharding.put_seed_axis(keys, mesh)
  data = sharding.put_replicated(program.data, mesh)
  compiled = _Compiled(program, mesh, compile_cache)

  def inputs_of(phase, start, num_steps):
    inputs = program_lib.host_inputs(phase, start, num_steps)
    return None if inputs is None else sharding.put_replicated(inputs, mesh)

  carry = sharding.put_seed_axis(initial_carry(program, keys, program_lib.abstract_inputs), mesh)

  (resume_index, resume_step), resumed_from = resume.resume_point(program, stores), None
  for index in range(1, resume_index + 1):
    carry = sharding.put_seed_axis(program_lib.start_phase(program.phases[index], index, carry), mesh)
  if resume_step or resume_index:
    phase = program.phases[resume_index]
    carry = stores[phase.name].restore(resume_step, carry)
    resumed_from = (phase.name, resume_step)
    logging.info("%s: resuming from %s step %d", program.study, phase.name, resume_step)
  if progress is not None:
    progress.update(sum(p.num_steps for p in program.phases[:resume_index]) + resume_step)

  for index in range(resume_index):  # a kill between a finished phase's end and its clean-up below
    _remove_unplanned(program.phases[index], stores[program.phases[index].name])
  stop, timer = stopping.StopFlag(), policy.timer()
  train_seconds, steps_trained = 0.0, 0
  with stop.installed(), stopping.closing(stores.values()):
    for index in range(resume_index, len(program.phases)):
      phase = program.phases[index]
      store = stores[phase.name]
      start = resume_step if index == resume_index else 0
      if index > resume_index:  # The start's outputs may come out replicated: place them like the rest.
        carry = sharding.put_seed_axis(program_lib.start_phase(phase, index, carry), mesh)
      if start == 0 and 0 not in store.all_steps():
        store.save(0, compiled.copy(carry), dict(saved_metadata, phase=phase.name, step=0), wait=False)
      tic = time.perf_counter()
      compile_before = compiled.seconds
      carry = _run_phase(program, phase, carry, keys, data, start, store, saved_metadata, seed_labels,
                         compiled, inputs_of, progress, stop, timer)
      store.wait()
      _remove_unplanned(phase, store)
      train_seconds += time.perf_counter() - tic - (compiled.seconds - compile_before)
      steps_trained += phase.num_steps - start
  return Outcome(state=carry["state"], history=carry["history"], resumed_from=resumed_from,
                 compile_seconds=compiled.seconds, train_seconds=train_seconds,
                 steps_trained=steps_trained, num_seeds=num_seeds)


def _remove_unplanned(phase: Phase, store: CheckpointStore) -> None:
  """A finished phase keeps exactly its planned steps, as an uninterrupted run does: a checkpoint off the
  plan (a stop's, or the time rule's) has served as a resume point."""
  for step in [s for s in store.all_steps() if not phase.is_checkpoint_step(s)]:
    store.delete(step)


def _agreed(decision: bool) -> bool:
  """Process 0's decision in every process (each has its own clock; a save is collective)."""
  if jax.process_count() == 1:
    return decision
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.int32(decision)))


def _run_phase(program, phase, carry, keys, data, start, store, saved_metadata, seed_labels, compiled,
               inputs_of, progress, stop, timer) -> dict:
  """Runs one phase's chunks from `start`, pipelined: chunk i+1 is dispatched before chunk i is checked."""
  pending = None  # (start, end, summary, snapshot or None) of the chunk dispatched last

  def settle(item):
    chunk_start, chunk_end, summary, snapshot = item
    summary = jax.device_get(summary)
    if not bool(summary.get("input_finite", True)):
      store.wait()
      step = chunk_start + int(summary["input_step_offset"])
      raise ActivationError(f"{program.study} {phase.name}: activations contain NaN/Inf in batch index {step} "
                            f"(the input of step {step}); the last good checkpoint is {phase.name} step "
                            f"{store.latest_step()} in {store.directory}")
    if not bool(summary["finite"]):
      store.wait()
      seed = int(summary["seed_index"])
      last = store.latest_step()
      raise NonFiniteError(
          f"{program.study} {phase.name}: loss is {float(summary['value'])} at step "
          f"{chunk_start + int(summary['step_offset'])} for seed {seed_labels[seed]} (index {seed}); the "
          f"last good checkpoint is {phase.name} step {last} in {store.directory}")
    if progress is not None:
      progress.update(chunk_end - chunk_start)
      progress.set_postfix_str(f"{phase.name} loss {float(summary['mean_last']):.4f}")
    if snapshot is not None:
      mean_last = float(summary["mean_last"])
      store.save(chunk_end, snapshot, dict(saved_metadata, phase=phase.name, step=chunk_end), wait=False,
                 on_saved=lambda: logging.info("%s %s step %d: mean loss %.4f, checkpoint saved", program.study,
                                               phase.name, chunk_end, mean_last))

  for chunk_start, chunk_end in phase.boundaries(start):
    inputs = inputs_of(phase, chunk_start, chunk_end - chunk_start)
    fn = compiled.get(phase, chunk_end - chunk_start, carry, keys, data, inputs)
    carry, summary = fn(carry, keys, data, inputs, jnp.int32(chunk_start))
    planned = phase.is_checkpoint_step(chunk_end) or stop.requested
    wanted = planned if timer.policy.min_interval_s is None else _agreed(timer.decide(planned))
    snapshot = compiled.copy(carry) if wanted else None
    if pending is not None:
      settle(pending)
    pending = (chunk_start, chunk_end, summary, snapshot)
    if stop.requested:
      break
  if pending is not None:
    settle(pending)
  if stop.requested:
    if pending is not None and pending[3] is None:  # SIGINT came after the last chunk's snapshot choice.
      store.save(pending[1], carry, dict(saved_metadata, phase=phase.name, step=pending[1]))
    store.wait()
    if stop.preempted:
      raise InterruptedRun(f"{program.study}: pre-empted (SIGTERM) at {phase.name} step {pending[1]}; checkpoint "
                           f"saved in {store.directory}; the same command resumes from it",
                           exit_status=128 + signal.SIGTERM)
    raise InterruptedRun(f"{program.study}: interrupted at {phase.name} step {pending[1]}; checkpoint saved "
                         f"in {store.directory}; the same command resumes from it")
  return carry
