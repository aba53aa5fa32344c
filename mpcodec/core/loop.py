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
- a run resumes from the latest checkpoint of its phases; SIGINT (and SIGTERM, a scheduler's pre-emption)
  ends it cleanly after the current chunk with a checkpoint; SIGKILL loses only the work since the last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mpcodec.core import sharding
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import ActivationError, InterruptedRun, NonFiniteError, WorkdirError

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


def _chunk_with_history(program: Program, phase: Phase, num_steps: int, total: Mapping) -> Callable:
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
    carry = initial_carry(program, keys, _abstract_inputs)
    for index in range(1, phase_index + 1):
      carry = _start(program.phases[index], index, carry)
    return carry

  return jax.eval_shape(build)


def _abstract_inputs(phase: Phase, start: int, num_steps: int) -> Any:
  """Shapes of a chunk's host inputs for `num_steps` steps, from one step's inputs (step axis first)."""
  del start
  if phase.inputs is None:
    return None
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_steps,) + np.shape(x)[1:], np.asarray(x).dtype),
                      phase.inputs(0, 1))


def _start(phase: Phase, index: int, carry: dict, barrier: bool = False) -> dict:
  """The carry at the phase's step 0. The start runs as a program of its own: jitted alone in `run`, and
  between optimization barriers inside `pure_sweep`, so XLA fuses it with nothing around it (a fused
  multiply-add across it would change the last bit) and both paths compute the same bits."""
  if phase.start is None or index == 0:
    return carry
  if barrier:
    state = jax.lax.optimization_barrier(phase.start(jax.lax.optimization_barrier(carry["state"])))
  else:
    state = jax.jit(phase.start)(carry["state"])
  return {**carry, "state": state}


def _host_inputs(phase: Phase, start: int, num_steps: int) -> Any:
  if phase.inputs is None:
    return None
  return phase.inputs(start, num_steps)


def pure_sweep(program: Program) -> Callable[[Any], tuple[State, dict]]:
  """train(keys_S) -> (state_S, history_S): every phase as one chunk, no host in between.

  `run` cuts exactly these computations into chunks, so its result equals this one bit for bit.
  """

  def train(keys):
    carry = initial_carry(program, keys, _abstract_inputs)  # shapes only: inputs are read once, below
    for index, phase in enumerate(program.phases):
      carry = _start(phase, index, carry, barrier=True)
      fn = _chunk_with_history(program, phase, phase.num_steps, carry["history"][phase.name])
      carry, _ = fn(carry, keys, program.data, _host_inputs(phase, 0, phase.num_steps), jnp.int32(0))
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


class _StopFlag:
  """Turns SIGINT (Ctrl-C) and SIGTERM (a scheduler pre-empting the job) into a request to stop at the
  next chunk boundary with a checkpoint (main thread only); a second signal stops at once."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.requested = False
    self.signum: int | None = None

  @property
  def preempted(self) -> bool:
    return self.signum == signal.SIGTERM

  @contextlib.contextmanager
  def installed(self):
    if threading.current_thread() is not threading.main_thread():
      yield
      return
    previous = {signum: signal.getsignal(signum) for signum in self.SIGNALS}

    def handler(signum, frame):
      del frame
      if self.requested:  # A second signal: stop at once.
        raise KeyboardInterrupt
      self.requested, self.signum = True, signum
      what = "pre-empted (SIGTERM)" if signum == signal.SIGTERM else "interrupt"
      logging.warning("%s: stopping after the current chunk and saving a checkpoint", what)

    for signum in self.SIGNALS:
      signal.signal(signum, handler)
    try:
      yield
    finally:
      for signum, before in previous.items():
        signal.signal(signum, before)


@contextlib.contextmanager
def _closing(stores):
  """Closes every store on the way out (an error too), after its pending saves are on disk. On the way
  out of an error, a store that fails to close (the same full disk) is a warning: the first error is the
  one reported."""
  try:
    yield
  except BaseException:
    for store in stores:
      try:
        store.close()
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("closing the checkpoints in %s after an error: %s", store.directory,
                        str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
    raise
  for store in stores:
    store.close()


def _differing_keys(a: Any, b: Any, prefix: str = "config") -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out += _differing_keys(a.get(k), b.get(k), f"{prefix}.{k}")
    return out
  return [] if a == b else [prefix]


def check_checkpoints(root: str, phase_names: Sequence[str], config: Mapping, overwrite: bool,
                      what: str, outputs: Sequence[str] = ()) -> None:
  """Refuses checkpoints of these phases under `root` written with another training config (with
  `overwrite`: removes `outputs`, the files and folders derived from them, first, so a crash after it
  never leaves an old report beside new checkpoints, then the phases' checkpoints). Every phase's latest
  checkpoint is compared."""
  if not os.path.isdir(root):
    return
  for name in phase_names:
    if not os.path.isdir(os.path.join(root, name)):
      continue
    store = CheckpointStore(os.path.join(root, name))
    for step in store.all_steps()[-1:]:
      saved = store.restore_metadata(step).get("config")
      if saved == config:
        continue
      if overwrite:
        store.close()
        # Several processes: every one has read the checkpoints before process 0 alone removes them.
        sharding.barrier("mpcodec.loop: overwrite read")
        if jax.process_index() == 0:
          for output in outputs:
            if os.path.isdir(output) and not os.path.islink(output):
              shutil.rmtree(output, ignore_errors=True)
            elif os.path.lexists(output):
              os.remove(output)
          for other in phase_names:
            logging.warning("--overwrite: removing checkpoints of a different config in %s",
                            os.path.join(root, other))
            shutil.rmtree(os.path.join(root, other), ignore_errors=True)
        sharding.barrier("mpcodec.loop: overwrite done")
        return
      differing = _differing_keys(saved or {}, dict(config))
      raise WorkdirError(
          f"{what} holds checkpoints ({name} step {step}) written with a different config (differs at: "
          f"{', '.join(differing[:5]) or 'structure'}); use another --workdir or pass --overwrite")


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
      fn = _chunk_with_history(self.program, phase, num_steps, carry["history"][phase.name])
      jitted = jax.jit(fn, donate_argnums=0, **self._jit_kwargs)
      self.cache[key] = jitted.lower(carry, keys, data, inputs, jnp.int32(0)).compile()
      self.seconds += time.perf_counter() - start
    return self.cache[key]


def run(program: Program, keys: Any, checkpoint_root: str, *, seed_labels: Sequence[Any],
        config: Mapping, metadata: Mapping | None = None, mesh=None, progress: Any = None,
        overwrite: bool = False, compile_cache: dict | None = None, outputs: Sequence[str] = ()) -> Outcome:
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
  Raises:
    NonFiniteError naming study, phase, step and seed; InterruptedRun after SIGINT or SIGTERM (with a
    checkpoint; exit status 130 or 143).
  """
  num_seeds = int(jax.tree.leaves(keys)[0].shape[0])
  if len(seed_labels) != num_seeds:
    raise ValueError(f"{len(seed_labels)} seed labels for {num_seeds} seeds")
  check_checkpoints(checkpoint_root, [p.name for p in program.phases], config, overwrite,
                    os.path.dirname(checkpoint_root) or checkpoint_root, outputs)
  saved_metadata = {"study": program.study, "config": dict(config), "seeds": list(seed_labels),
                    **(metadata or {})}
  stores = {p.name: CheckpointStore(os.path.join(checkpoint_root, p.name), all_processes=True)
            for p in program.phases}
  keys = sharding.put_seed_axis(keys, mesh)
  data = sharding.put_replicated(program.data, mesh)
  compiled = _Compiled(program, mesh, compile_cache)

  def inputs_of(phase, start, num_steps):
    inputs = _host_inputs(phase, start, num_steps)
    return None if inputs is None else sharding.put_replicated(inputs, mesh)

  carry = sharding.put_seed_axis(initial_carry(program, keys, _abstract_inputs), mesh)

  (resume_index, resume_step), resumed_from = _resume_point(program, stores), None
  for index in range(resume_index + 1):
    carry = sharding.put_seed_axis(_start(program.phases[index], index, carry), mesh) if index > 0 else carry
  if resume_step or resume_index:
    phase = program.phases[resume_index]
    carry = stores[phase.name].restore(resume_step, carry)
    resumed_from = (phase.name, resume_step)
    logging.info("%s: resuming from %s step %d", program.study, phase.name, resume_step)
  if progress is not None:
    progress.update(sum(p.num_steps for p in program.phases[:resume_index]) + resume_step)

  stop = _StopFlag()
  train_seconds, steps_trained = 0.0, 0
  with stop.installed(), _closing(stores.values()):
    for index in range(resume_index, len(program.phases)):
      phase = program.phases[index]
      store = stores[phase.name]
      start = resume_step if index == resume_index else 0
      if index > resume_index:  # The start's outputs may come out replicated: place them like the rest.
        carry = sharding.put_seed_axis(_start(phase, index, carry), mesh)
      if start == 0 and 0 not in store.all_steps():
        store.save(0, compiled.copy(carry), dict(saved_metadata, phase=phase.name, step=0), wait=False)
      tic = time.perf_counter()
      compile_before = compiled.seconds
      carry = _run_phase(program, phase, carry, keys, data, start, store, saved_metadata, seed_labels,
                         compiled, inputs_of, progress, stop)
      store.wait()
      # A stop's checkpoint off the plan (SIGINT, SIGTERM) has served its resume: the finished phase keeps
      # exactly the planned steps, as an uninterrupted run does.
      for step in [s for s in store.all_steps() if not phase.is_checkpoint_step(s)]:
        store.delete(step)
      train_seconds += time.perf_counter() - tic - (compiled.seconds - compile_before)
      steps_trained += phase.num_steps - start
  return Outcome(state=carry["state"], history=carry["history"], resumed_from=resumed_from,
                 compile_seconds=compiled.seconds, train_seconds=train_seconds,
                 steps_trained=steps_trained, num_seeds=num_seeds)


def _resume_point(program: Program, stores: Mapping[str, CheckpointStore]) -> tuple[int, int]:
  """(phase index, step) to resume from: the latest checkpoint before the first one missing.

  A run is finished only when every checkpoint step of every phase is in place. When a step is missing
  (deleted after a corruption, as the error advises) while later ones exist, the run resumes from the last
  checkpoint before the gap, and the later ones (which the resumed run writes again, bit for bit) are
  removed, so the history and every analysed step come from one unbroken run.
  """
  resume, gap = (0, 0), None
  for index, phase in enumerate(program.phases):
    present = stores[phase.name].all_steps()
    expected = [0] + [end for _, end in phase.boundaries(0) if phase.is_checkpoint_step(end)]
    missing = next((step for step in expected if step not in present), None)
    usable = [step for step in present if missing is None or step < missing]
    if usable:
      resume = (index, usable[-1])
    if missing is not None:
      gap = (index, missing)
      break
  if gap is None:
    return resume
  later = [(phase.name, step) for index, phase in enumerate(program.phases) if index >= gap[0]
           for step in stores[phase.name].all_steps()
           if index > resume[0] or step > resume[1]]
  if later:
    resume_phase = program.phases[resume[0]].name
    logging.warning("%s: checkpoint %s step %d is missing while %d later ones exist: resuming from %s step %d "
                    "and writing the later ones again", program.study, program.phases[gap[0]].name, gap[1],
                    len(later), resume_phase, resume[1])
    for index in range(resume[0], len(program.phases)):
      stores[program.phases[index].name].delete_after(resume[1] if index == resume[0] else -1)
  return resume


def _run_phase(program, phase, carry, keys, data, start, store, saved_metadata, seed_labels, compiled,
               inputs_of, progress, stop) -> dict:
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
    wanted = phase.is_checkpoint_step(chunk_end) or stop.requested
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

