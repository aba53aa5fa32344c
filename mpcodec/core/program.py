"""A study's training run as data: a `Program` of `Phase`s, each a seed-stacked chunk function, and the
same run as one pure function (`pure_sweep`, `pure_train`).

The history buffers (every metric of every step, seed axis first) are part of the carry, so that the
chunked run of `mpcodec.core.loop` and one pure call compute the same bits; `mpcodec.core.loop`
re-exports the public names of this module.
"""

from __future__ import annotations

import dataclasses
import fractions
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

State = Any
# chunk(state_S, keys_S, data, inputs, start_step, num_steps) -> (state_S, metrics of (S, T, ...) arrays)
Chunk = Callable[[State, jax.Array, Any, Any, jax.Array, int], tuple[State, dict[str, jax.Array]]]
LOSS = "loss"


@dataclasses.dataclass(frozen=True)
class Phase:
  """One phase of a program (e.g. pre-training, then the task that mixes concepts).

  Attributes:
    name: also the folder of its checkpoints.
    num_steps: steps of the phase.
    chunk: seed-stacked chunk function (see `vmap_chunk` to build one from a single-seed function).
      Its metrics carry the seed axis first, then a step axis whose length is proportional to
      `num_steps` (per step, or per measurement); metrics[loss_metric] (S, num_steps) is checked for
      NaN/Inf.
    start: state at the phase's step 0 from the previous phase's last state (e.g. a fresh optimizer).
    inputs: host-side inputs of the chunk [start, start + num_steps) (e.g. activation batches read from
      files), arrays with the step axis first, passed to `chunk` unbatched; None when it needs none.
    chunk_every: chunks end at multiples of this step (progress and NaN checks).
    checkpoint_every: checkpoints at multiples of this step, at step 0 and at the end.
    extra_checkpoints: more steps to checkpoint at (e.g. around a detected jump).
    loss_metric: the metric checked for NaN/Inf and shown in the progress bar.
    bad_input_metric: a boolean metric (S, num_steps) that is true where a step's input batch held
      NaN/Inf (inputs generated on the device); the run stops with an ActivationError naming the step.
  """

  name: str
  num_steps: int
  chunk: Chunk
  start: Callable[[State], State] | None = None
  inputs: Callable[[int, int], Any] | None = None
  chunk_every: int = 100
  checkpoint_every: int = 1000
  extra_checkpoints: tuple[int, ...] = ()
  loss_metric: str = LOSS
  bad_input_metric: str | None = None

  def is_checkpoint_step(self, step: int) -> bool:
    return (step == 0 or step % self.checkpoint_every == 0 or step == self.num_steps
            or step in self.extra_checkpoints)

  def chunk_end(self, step: int) -> int:
    """Where the chunk that starts at `step` ends: a function of the absolute step alone."""
    candidates = [(step // self.chunk_every + 1) * self.chunk_every,
                  (step // self.checkpoint_every + 1) * self.checkpoint_every, self.num_steps]
    candidates += [s for s in self.extra_checkpoints if s > step]
    return min(candidates)

  def boundaries(self, start: int = 0) -> list[tuple[int, int]]:
    """(start, end) of every chunk from `start` to the end of the phase."""
    out, step = [], start
    while step < self.num_steps:
      end = self.chunk_end(step)
      out.append((step, end))
      step = end
    return out


@dataclasses.dataclass(frozen=True)
class Program:
  """A study's training run: seed-stacked init, its phases, the arrays every chunk reads."""

  study: str
  init: Callable[[jax.Array], State]
  phases: tuple[Phase, ...]
  data: Any = None
  # Programs with equal keys trace to the same computation on the same shapes (e.g. one architecture on
  # MNIST and on Fashion-MNIST): `run(..., compile_cache=...)` then compiles once for all of them.
  cache_key: Any = None


def vmap_chunk(single_seed: Callable[..., tuple[State, dict]]) -> Chunk:
  """A seed-stacked chunk from `single_seed(state, key, data, inputs, start_step, num_steps)`.

  Data and inputs are shared by all seeds; a value computed from them alone (a minibatch drawn from a
  shared order key) is computed once for the whole sweep, because vmap batches only what depends on
  the seed's state or key.
  """

  def chunk(state_S, keys_S, data, inputs, start_step, num_steps):
    return jax.vmap(lambda s, k: single_seed(s, k, data, inputs, start_step, num_steps))(state_S, keys_S)

  return chunk


# ------------------------------------------------------------------------------------------------
# History buffers: the whole run's metrics, carried with the state.


def _history_shapes(program: Program, phase: Phase, state: Any, keys: Any, inputs: Any) -> dict:
  """Shapes of the phase's metrics over the whole phase (one chunk of num_steps steps)."""
  _, metrics = jax.eval_shape(lambda s, k, d, i: phase.chunk(s, k, d, i, jnp.int32(0), phase.num_steps),
                              state, keys, program.data, inputs)
  if phase.loss_metric not in metrics:
    raise ValueError(f"{program.study} {phase.name}: a chunk's metrics must include {phase.loss_metric!r}")
  return metrics


def _empty_history(shapes: Mapping[str, jax.ShapeDtypeStruct]) -> dict:
  return {name: jnp.full(s.shape, jnp.nan, s.dtype) if jnp.issubdtype(s.dtype, jnp.floating)
          else jnp.zeros(s.shape, s.dtype) for name, s in shapes.items()}


def _rate(metric_len: int, num_steps: int) -> fractions.Fraction:
  return fractions.Fraction(metric_len, num_steps)


def chunk_with_history(program: Program, phase: Phase, num_steps: int, total: Mapping) -> Callable:
  """(carry, keys, data, inputs, start) -> (carry, summary): the chunk, its metrics written into the
  history buffers at the start step's offset, and the device-side summary of its losses."""

  def run(carry, keys, data, inputs, start_step):
    state, metrics = phase.chunk(carry["state"], keys, data, inputs, start_step, num_steps)
    history = dict(carry["history"][phase.name])
    for name, values in metrics.items():
      rate = _rate(total[name].shape[1], phase.num_steps)
      offset = (start_step // rate.denominator) * rate.numerator
      history[name] = jax.lax.dynamic_update_slice_in_dim(history[name], values.astype(history[name].dtype),
                                                          offset, axis=1)
    loss_SxT = metrics[phase.loss_metric]
    bad_SxT = ~jnp.isfinite(loss_SxT)
    first_t = jnp.argmax(bad_SxT.any(axis=0))
    first_s = jnp.argmax(bad_SxT[:, first_t])
    summary = {"finite": ~bad_SxT.any(), "step_offset": first_t, "seed_index": first_s,
               "value": loss_SxT[first_s, first_t], "mean_last": jnp.mean(loss_SxT[:, -1])}
    if phase.bad_input_metric is not None:
      bad_input_T = metrics[phase.bad_input_metric].any(axis=0)
      summary.update(input_finite=~bad_input_T.any(), input_step_offset=jnp.argmax(bad_input_T))
    return {"state": state, "history": {**carry["history"], phase.name: history}}, summary

  return run


def initial_carry(program: Program, keys: jax.Array, inputs_of: Callable[[Phase, int, int], Any]) -> dict:
  """{'state': init(keys), 'history': empty buffers of every phase} (the start of every run)."""
  state = jax.jit(program.init)(keys)
  history, probe = {}, state
  for index, phase in enumerate(program.phases):
    if phase.start is not None and index > 0:
      probe = jax.eval_shape(phase.start, probe)
    history[phase.name] = _empty_history(_history_shapes(program, phase, probe, keys,
                                                         inputs_of(phase, 0, phase.num_steps)))
  return {"state": state, "history": history}


def abstract_carry(program: Program, keys: Any, phase_index: int) -> Any:
  """Shapes and dtypes of the carry at the start of phase `phase_index` (restore targets; no compute)."""

  def build():
    carry = initial_carry(program, keys, abstract_inputs)
    for index in range(1, phase_index + 1):
      carry = start_phase(program.phases[index], index, carry)
    return carry

  return jax.eval_shape(build)


def abstract_inputs(phase: Phase, start: int, num_steps: int) -> Any:
  """Shapes of a chunk's host inputs for `num_steps` steps, from one step's inputs (step axis first)."""
  del start
  if phase.inputs is None:
    return None
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_steps,) + np.shape(x)[1:], np.asarray(x).dtype),
                      phase.inputs(0, 1))


def start_phase(phase: Phase, index: int, carry: dict, barrier: bool = False) -> dict:
  """The carry at the phase's step 0. The start runs as a program of its own: jitted alone in `loop.run`, and
  between optimization barriers inside `pure_sweep`, so XLA fuses it with nothing around it (a fused
  multiply-add across it would change the last bit) and both paths compute the same bits."""
  if phase.start is None or index == 0:
    return carry
  if barrier:
    state = jax.lax.optimization_barrier(phase.start(jax.lax.optimization_barrier(carry["state"])))
  else:
    state = jax.jit(phase.start)(carry["state"])
  return {**carry, "state": state}


def host_inputs(phase: Phase, start: int, num_steps: int) -> Any:
  if phase.inputs is None:
    return None
  return phase.inputs(start, num_steps)


def pure_sweep(program: Program) -> Callable[[Any], tuple[State, dict]]:
  """train(keys_S) -> (state_S, history_S): every phase as one chunk, no host in between.

  `loop.run` cuts exactly these computations into chunks, so its result equals this one bit for bit.
  """

  def train(keys):
    carry = initial_carry(program, keys, abstract_inputs)  # shapes only: inputs are read once, below
    for index, phase in enumerate(program.phases):
      carry = start_phase(phase, index, carry, barrier=True)
      fn = chunk_with_history(program, phase, phase.num_steps, carry["history"][phase.name])
      carry, _ = fn(carry, keys, program.data, host_inputs(phase, 0, phase.num_steps), jnp.int32(0))
    return carry["state"], carry["history"]

  return train


def pure_train(program: Program) -> Callable[[Any], tuple[State, dict]]:
  """train(key) -> (state, history) of ONE seed: the whole run as one pure function of its key(s).

  `jax.jit(jax.vmap(pure_train(program)))(keys)` trains a sweep.
  """
  sweep = pure_sweep(program)

  def train(key):
    state, history = sweep(jax.tree.map(lambda k: k[None], key))
    squeeze = lambda x: x[0]
    return jax.tree.map(squeeze, state), jax.tree.map(squeeze, history)

  return train
