"""The mono->poly training program: an MLP learns bar orientation (phase 1), then orientation XOR colour
(phase 2), and, with the control arm, phase 2's steps again on the phase-1 task.

`make_program(cfg)` describes the phases as pure functions of seed-stacked state and keys for the one run
loop (`mpcodec.core.loop`); `make_train(cfg) = loop.pure_train(make_program(...))` is the whole run of one
seed as one pure function of its keys. `run.train` runs the same program in checkpointed chunks.

The control arm (`control_arm`, on by default) is a third phase of the same program, "control": from the
same end-of-phase-1 state it trains phase 2's steps, optimizer and minibatch order on the phase-1 task,
so that XOR minus control isolates what the task switch does. It runs after phase 2, which carries the
end-of-phase-1 parameters along for it: phase 2 computes exactly what it computes without a control
arm, and the control exactly what a run whose phase 2 is the phase-1 task computes (both bit for bit,
tested).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp

from mpcodec.core import loop, seeds
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.classifier import ClassifierSteps
from mpcodec.core.optim import make_optimizer
from mpcodec.data.bars import BarsConfig, generate_bars, make_bars_splits
from mpcodec.models.mlp import MLP
from mpcodec.studies.mono_poly import curriculum
from mpcodec.studies.mono_poly.config import CONTROL, PHASES, MonoPolyConfig, phase_names

# Where phase 2's state keeps the end-of-phase-1 parameters that the control phase starts from.
PHASE1_PARAMS = "phase1_params"


def make_model(cfg: MonoPolyConfig) -> MLP:
  return MLP(hidden_widths=cfg.model.hidden_widths, num_classes=2)


def phase_steps(cfg: MonoPolyConfig, phase: str) -> ClassifierSteps:
  pc = cfg.phase(phase)
  return ClassifierSteps(make_model(cfg), make_optimizer(pc.optimizer, pc.steps), cfg.batch_size)


def _with_labels(split: dict, cfg: MonoPolyConfig) -> dict:
  """A split with every phase's labels (y_<phase>) attached."""
  split = dict(split)
  for phase in PHASES + (CONTROL,):
    split[f"y_{phase}"] = curriculum.task_labels(cfg.phase(phase).task, split["orientation"], split["colour"])
  return split


def make_datasets(cfg: MonoPolyConfig) -> tuple[dict, dict]:
  """The shared draw (from data_seed): train and test bars with images, x (N, 3072) and each phase's labels."""
  train, test = make_bars_splits(cfg.data, cfg.data_seed)
  out = []
  for split in (train, test):
    split = dict(split, x=split["images"].reshape(split["images"].shape[0], -1))
    out.append(_with_labels(split, cfg))
  return out[0], out[1]


def data_keys(cfg: MonoPolyConfig) -> jax.Array:
  """(S, 2) keys of each seed's own data draw: seeds.seed_key(data_seed, i, "data"), whatever the others."""
  return seeds.seed_keys(cfg.data_seed, cfg.seeds, "data")


@functools.partial(jax.jit, static_argnums=(1, 2))
def _flat_bars(key: jax.Array, num_samples: int, cfg: BarsConfig) -> dict[str, jax.Array]:
  """`generate_bars` with the images flattened to x (N, size * size * 3) and not kept otherwise."""
  split = generate_bars(key, num_samples, cfg)
  return {"x": split["images"].reshape(num_samples, -1), "orientation": split["orientation"],
          "colour": split["colour"]}


def _draw_seed_sets(data: BarsConfig, data_seed: int, seed_indices: tuple[int, ...]) -> tuple[dict, dict]:
  """Stacked train and test draws of these seeds."""
  splits = ([], [])
  for key in seeds.seed_keys(data_seed, seed_indices, "data"):
    for out, (index, size) in zip(splits, ((0, data.num_train), (1, data.num_test))):
      out.append(_flat_bars(jax.random.fold_in(key, index), size, data))
  return tuple({name: jnp.stack([d.pop(name) for d in split]) for name in ("x", "orientation", "colour")}
               for split in splits)


# The last draws are kept: the analysis after training reads the same ones, and drawing 16 seeds' sets
# costs about 20 CPU seconds. Never called under a trace (shapes come from `_draw_seed_sets` itself).
_seed_draws = functools.lru_cache(maxsize=1)(_draw_seed_sets)


def seed_datasets(cfg: MonoPolyConfig, draw=_seed_draws) -> tuple[dict, dict]:
  """Each seed's own train and test sets, stacked (seed axis first): x (S, N, 3072), the concept labels
  and each phase's labels (no separate image array: x[i].reshape(N, size, size, 3) is seed i's images).

  Seed i's sets are drawn like `make_bars_splits` from its data key (`data_keys`; train from
  fold_in(key, 0), test from fold_in(key, 1)), one seed at a time, so they do not depend on how many
  seeds run.
  """
  train, test = draw(cfg.data, cfg.data_seed, tuple(cfg.seeds))
  return _with_labels(train, cfg), _with_labels(test, cfg)


def run_datasets(cfg: MonoPolyConfig, draw=_seed_draws) -> tuple[dict, dict]:
  """The train and test sets the run uses: each seed's own (seed axis first) or the shared draw."""
  return seed_datasets(cfg, draw) if cfg.data_per_seed else make_datasets(cfg)


def data_axis(cfg: MonoPolyConfig) -> int | None:
  """The seed axis of `run_datasets`' arrays for jax.vmap: 0 for per-seed data, None when shared."""
  return 0 if cfg.data_per_seed else None


def data_description(cfg: MonoPolyConfig) -> str:
  """What the seeds' intervals cover, in the report's words."""
  if cfg.data_per_seed:
    order = ("its own minibatch order" if not cfg.shared_data_order
             else "one minibatch index sequence shared by all seeds, into each seed's own images")
    return (f"per-seed data: each seed draws its own train and test sets and {order}, so intervals "
            "over seeds cover the data draw as well as the initialisation")
  if cfg.shared_data_order:
    return ("seeds share one dataset and minibatch order: intervals cover initialisation only")
  return ("seeds share one dataset (each seed has its own minibatch order): intervals cover "
          "initialisation and data order, not the data draw")


def seed_keys(cfg: MonoPolyConfig) -> dict[str, jax.Array]:
  """Keys of every seed (seed axis first) by purpose: `init`, and one data order per phase.

  Seed i's keys are `seeds.seed_key(cfg.seed, i, purpose)` (see `mpcodec.core.seeds`), whatever the
  other seeds are.
  """
  purposes = ("init",) + tuple(f"data_order/{phase}" for phase in PHASES)
  return {purpose: seeds.seed_keys(cfg.seed, cfg.seeds, purpose) for purpose in purposes}


def order_key(cfg: MonoPolyConfig, phase: str, keys: dict[str, jax.Array]) -> jax.Array:
  """Minibatch-order key of a phase: shared by all seeds (from the data seed) or the seed's own.

  The control arm uses phase 2's, so that the two arms see the same minibatches and differ in the
  labels alone.
  """
  phase = PHASES[1] if phase == CONTROL else phase
  if cfg.shared_data_order:
    return seeds.shared_key(cfg.data_seed, f"data_order/{phase}")
  return keys[f"data_order/{phase}"]


def _seed_chunk(one_seed, axis: int | None, data_in_keys: bool = False) -> loop.Chunk:
  """The seed-stacked chunk of `one_seed`; with per-seed data (axis 0) each seed reads its own arrays,
  from the program's data or, with `data_in_keys`, from its keys' "data" entry."""
  if axis is None:
    return loop.vmap_chunk(one_seed)

  def chunk(state_S, keys_S, data_S, inputs, start_step, num_steps):
    if data_in_keys:
      data_S = keys_S["data"]
    return jax.vmap(lambda s, k, d: one_seed(s, k, d, inputs, start_step, num_steps))(state_S, keys_S, data_S)

  return chunk


def training_data(cfg: MonoPolyConfig, draw=_seed_draws) -> dict[str, jax.Array]:
  """What every chunk reads: the training images x and each phase's labels (per seed or shared)."""
  train_set, _ = run_datasets(cfg, draw)
  return {"x": train_set["x"], **{f"y_{phase}": train_set[f"y_{phase}"] for phase in phase_names(cfg)}}


def make_program(cfg: MonoPolyConfig, data: Any = None, data_in_keys: bool = False) -> loop.Program:
  """Every phase as a pure function of seed-stacked state and keys, for `mpcodec.core.loop`.

  data: `training_data(cfg)` (drawn when None), or its shapes where only shapes are needed.
  data_in_keys: with per-seed data, each seed reads its data from its keys (`train_keys`) instead, so
  that the program of one seed is a pure function of that seed's keys alone (`make_train`).
  """
  data_in_keys = data_in_keys and cfg.data_per_seed
  data = None if data_in_keys else training_data(cfg) if data is None else data
  names = phase_names(cfg)
  example_x = jnp.zeros((1, cfg.data.image_size ** 2 * 3), jnp.float32)
  first = phase_steps(cfg, PHASES[0])

  def init(keys):
    return jax.vmap(lambda k: first.init(k["init"], example_x))(keys)

  phases = []
  for phase in names:
    steps = phase_steps(cfg, phase)
    pc = cfg.phase(phase)

    def one_seed(state, keys, data, inputs, start_step, num_steps, steps=steps, phase=phase):
      del inputs
      trained = {k: state[k] for k in ("params", "opt_state")}
      trained, loss = steps.run_steps(trained, order_key(cfg, phase, keys), start_step, data["x"],
                                      data[f"y_{phase}"], num_steps)
      return {**state, **trained}, {"loss": loss}

    start = None
    if phase == PHASES[1] and cfg.control_arm:
      start = lambda state_S, steps=steps: {**jax.vmap(steps.fresh_optimizer)(state_S["params"]),
                                            PHASE1_PARAMS: state_S["params"]}
    elif phase == PHASES[1]:
      start = lambda state_S, steps=steps: jax.vmap(steps.fresh_optimizer)(state_S["params"])
    elif phase == CONTROL:
      start = lambda state_S, steps=steps: jax.vmap(steps.fresh_optimizer)(state_S[PHASE1_PARAMS])
    phases.append(loop.Phase(name=phase, num_steps=pc.steps, chunk=_seed_chunk(one_seed, data_axis(cfg), data_in_keys),
                             start=start, chunk_every=cfg.chunk_steps, checkpoint_every=pc.checkpoint_every))
  return loop.Program(study="mono->poly", init=init, phases=tuple(phases), data=data)


def train_keys(cfg: MonoPolyConfig) -> dict[str, Any]:
  """What `make_train`'s train takes, seed axis first: `seed_keys(cfg)`, and with per-seed data each
  seed's training data under "data" (drawn from its data key, `data_keys`)."""
  keys = seed_keys(cfg)
  return {**keys, "data": training_data(cfg)} if cfg.data_per_seed else keys


def make_train(cfg: MonoPolyConfig):
  """Returns train(keys) -> (state, history): every phase of one seed as one pure function,
  `loop.pure_train(make_program(cfg))` (each seed's data read from its keys).

  `keys` is one seed's entry of `train_keys(cfg)`; history maps each of `phase_names(cfg)` to
  {"loss": per step}. `jax.jit(jax.vmap(make_train(cfg)))(train_keys(cfg))` trains a whole sweep;
  `run.train` runs the same steps in checkpointed chunks.
  """
  return loop.pure_train(make_program(cfg, data_in_keys=True))


def checkpoint_root(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def checkpoint_dir(workdir: str, phase: str) -> str:
  """Where a phase's checkpoints live: <workdir>/checkpoints/<phase>/<step>."""
  return os.path.join(checkpoint_root(workdir), phase)


def abstract_carry(cfg: MonoPolyConfig, phase: str) -> Any:
  """Shapes and dtypes of what a checkpoint of `phase` holds: {'state', 'history'} (no training, no data)."""
  program = make_program(cfg, jax.eval_shape(lambda: training_data(cfg, draw=_draw_seed_sets)))
  return loop.abstract_carry(program, seed_keys(cfg), phase_names(cfg).index(phase))


def restore_state(cfg: MonoPolyConfig, store: CheckpointStore, step: int, phase: str,
                  template: Any = None) -> Any:
  """The seed-stacked train state saved at `step` of `phase` (checksums verified)."""
  template = abstract_carry(cfg, phase) if template is None else template
  return store.restore(step, template)["state"]


def hidden_activations(cfg: MonoPolyConfig, params: Any, x_NxD: jax.Array) -> dict[str, jax.Array]:
  """Activations by layer name of one seed's params on `x_NxD`."""
  _, acts = make_model(cfg).apply({"params": params}, x_NxD)
  return acts


@functools.lru_cache(maxsize=None)
def layer_names(cfg: MonoPolyConfig) -> tuple[str, ...]:
  return tuple(f"hidden_{i}" for i in range(len(cfg.model.hidden_widths)))

