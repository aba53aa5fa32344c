"""The mono->poly experiment: an MLP learns bar orientation (phase 1), then orientation XOR colour (phase 2).

`make_train(cfg)` returns the whole experiment for one seed as a pure function of a key;
`run_experiment(cfg, workdir)` runs S seeds at once (vmapped, seed axis sharded over the device mesh)
in checkpointed chunks, resuming from the latest checkpoint of the same config.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from typing import Any, Literal

import jax
import jax.numpy as jnp
from absl import logging

from mpcodec.core import configuration
from mpcodec.core import sharding
from mpcodec.core.checkpoint import CheckpointError, CheckpointStore
from mpcodec.core.errors import WorkdirError
from mpcodec.data.bars import BarsConfig, make_bars_splits
from mpcodec.models.mlp import MLP
from mpcodec.studies.mono_poly import curriculum
from mpcodec.core.classifier import ClassifierSteps
from mpcodec.core.optim import OptimConfig, make_optimizer
from mpcodec.core.loop import PhaseSchedule, run_phase

PHASES = ("phase1", "phase2")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  hidden_widths: tuple[int, ...] = (10,)

  def checks(self):
    yield "hidden_widths", len(self.hidden_widths) >= 1, "needs at least one hidden layer"
    for i, w in enumerate(self.hidden_widths):
      yield f"hidden_widths[{i}]", w >= 1, f"width must be >= 1, got {w}"


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
  task: Literal["orientation", "colour", "xor"] = "orientation"
  steps: int = 1000
  checkpoint_every: int = 100
  optimizer: OptimConfig = OptimConfig()

  def checks(self):
    yield "steps", self.steps >= 1, f"a phase needs at least 1 step, got {self.steps}"
    yield "checkpoint_every", self.checkpoint_every >= 1, f"must be >= 1, got {self.checkpoint_every}"


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
  poly_threshold: float = 0.3
  bootstrap_resamples: int = 10000
  bootstrap_seed: int = 0
  num_sample_images: int = 16

  def checks(self):
    yield "poly_threshold", 0 < self.poly_threshold < 1, f"must be in (0, 1), got {self.poly_threshold}"
    yield "bootstrap_resamples", self.bootstrap_resamples >= 100, f"must be >= 100, got {self.bootstrap_resamples}"
    yield "num_sample_images", self.num_sample_images >= 1, f"must be >= 1, got {self.num_sample_images}"


@dataclasses.dataclass(frozen=True)
class MonoPolyConfig:
  """Every knob of the mono->poly experiment (see configs/mono_poly.py for the defaults' reasons)."""

  num_seeds: int = 16
  first_seed: int = 0
  data_seed: int = 0
  batch_size: int = 32
  shared_data_order: bool = True
  log_every: int = 50
  data: BarsConfig = BarsConfig()
  model: ModelConfig = ModelConfig()
  phase1: PhaseConfig = PhaseConfig(task="orientation")
  phase2: PhaseConfig = PhaseConfig(task="xor")
  analysis: AnalysisConfig = AnalysisConfig()

  def checks(self):
    yield "num_seeds", self.num_seeds >= 1, f"must be >= 1, got {self.num_seeds}"
    yield "first_seed", self.first_seed >= 0, f"must be >= 0, got {self.first_seed}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield ("batch_size", self.batch_size <= self.data.num_train,
           f"{self.batch_size} is larger than the training set (data.num_train = {self.data.num_train})")
    yield "log_every", self.log_every >= 1, f"must be >= 1, got {self.log_every}"

  @property
  def seeds(self) -> list[int]:
    return list(range(self.first_seed, self.first_seed + self.num_seeds))

  def phase(self, name: str) -> PhaseConfig:
    return getattr(self, name)


def parse_config(cfg: Any) -> MonoPolyConfig:
  """Validates a ConfigDict into a MonoPolyConfig; raises ConfigError naming the key."""
  return configuration.parse(MonoPolyConfig, cfg)


def make_model(cfg: MonoPolyConfig) -> MLP:
  return MLP(hidden_widths=cfg.model.hidden_widths, num_classes=2)


def phase_steps(cfg: MonoPolyConfig, phase: str) -> ClassifierSteps:
  pc = cfg.phase(phase)
  return ClassifierSteps(make_model(cfg), make_optimizer(pc.optimizer, pc.steps), cfg.batch_size)


def make_datasets(cfg: MonoPolyConfig) -> tuple[dict, dict]:
  """Train and test bars with images flattened to (N, 3072) and both tasks' labels attached."""
  train, test = make_bars_splits(cfg.data, cfg.data_seed)
  out = []
  for split in (train, test):
    split = dict(split)
    split["x"] = split["images"].reshape(split["images"].shape[0], -1)
    for phase in PHASES:
      split[f"y_{phase}"] = curriculum.task_labels(cfg.phase(phase).task, split["orientation"], split["colour"])
    out.append(split)
  return out[0], out[1]


def seed_key(seed: int | jax.Array) -> jax.Array:
  return jax.random.PRNGKey(seed)


def order_key(cfg: MonoPolyConfig, phase: str, key: jax.Array | None) -> jax.Array:
  """Minibatch-order key of a phase: from the data seed when shared, else from the seed's key."""
  index = PHASES.index(phase)
  if cfg.shared_data_order:
    return jax.random.fold_in(jax.random.PRNGKey(cfg.data_seed), 1000 + index)
  return jax.random.fold_in(key, 1 + index)


def make_train(cfg: MonoPolyConfig):
  """Returns train(key) -> (state, history): both phases of one seed as one pure function.

  history maps "phase1"/"phase2" to the loss of every step. `jax.jit(jax.vmap(make_train(cfg)))(keys)`
  trains a whole sweep.
  """

  def train(key):
    train_set, _ = make_datasets(cfg)
    state = None
    history = {}
    for phase in PHASES:
      steps = phase_steps(cfg, phase)
      if state is None:
        state = steps.init(jax.random.fold_in(key, 0), train_set["x"])
      else:
        state = steps.fresh_optimizer(state["params"])
      state, history[phase] = steps.run_steps(
          state, order_key(cfg, phase, key), 0, train_set["x"], train_set[f"y_{phase}"], cfg.phase(phase).steps)
    return state, history

  return train


@functools.lru_cache(maxsize=None)
def _init_fn(cfg: MonoPolyConfig):
  steps = phase_steps(cfg, "phase1")
  return jax.jit(jax.vmap(lambda k, example_x: steps.init(jax.random.fold_in(k, 0), example_x),
                          in_axes=(0, None)))


@functools.lru_cache(maxsize=None)
def _fresh_optimizer_fn(cfg: MonoPolyConfig, phase: str):
  steps = phase_steps(cfg, phase)
  return jax.jit(jax.vmap(lambda s: steps.fresh_optimizer(s["params"])))


@functools.lru_cache(maxsize=None)
def _chunk_fn(cfg: MonoPolyConfig, phase: str, num_steps: int):
  """jit(vmap(run_steps)) of one chunk length, state buffers donated; cached per (config, phase, length)
  so that a resumed or repeated run in the same process reuses the compiled program."""
  steps = phase_steps(cfg, phase)

  def one_seed(state, key, start_step, x, y):
    return steps.run_steps(state, order_key(cfg, phase, key), start_step, x, y, num_steps)

  sweep = jax.vmap(one_seed, in_axes=(0, None if cfg.shared_data_order else 0, None, None, None))
  return jax.jit(sweep, donate_argnums=0)


class SweepRunner:
  """Jitted, vmapped entry points of one config: init, phase-2 start, the chunked steps of each phase."""

  def __init__(self, cfg: MonoPolyConfig, mesh=None):
    self.cfg = cfg
    self.keys = sharding.shard_seeds(jax.vmap(seed_key)(jnp.asarray(cfg.seeds)), mesh)

  def init(self, train_x: jax.Array) -> Any:
    return _init_fn(self.cfg)(self.keys, train_x[:1])

  def start_phase2(self, state: Any) -> Any:
    return _fresh_optimizer_fn(self.cfg, "phase2")(state)

  def run_chunk(self, phase: str, train_set: dict):
    # With a shared order the per-seed key is unused; pass one so the argument stays unbatched.
    key = self.keys[0] if self.cfg.shared_data_order else self.keys

    def run(state, start_step, num_steps):
      return _chunk_fn(self.cfg, phase, num_steps)(
          state, key, jnp.int32(start_step), train_set["x"], train_set[f"y_{phase}"])

    return run


def checkpoint_dir(workdir: str, phase: str) -> str:
  return os.path.join(workdir, "checkpoints", phase)


def run_metadata(cfg: MonoPolyConfig, phase: str) -> dict:
  return {"config": configuration.to_dict(cfg), "seeds": cfg.seeds, "phase": phase,
          "task": cfg.phase(phase).task}


def check_workdir(cfg: MonoPolyConfig, workdir: str, overwrite: bool) -> None:
  """Refuses a workdir whose checkpoints come from another config (unless `overwrite`: then clears it)."""
  root = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(root):
    return
  wanted = configuration.to_dict(cfg)
  for phase in PHASES:
    store = CheckpointStore(checkpoint_dir(workdir, phase))
    for step in store.all_steps()[-1:]:
      saved = store.restore_metadata(step).get("config")
      if saved != wanted:
        if overwrite:
          logging.warning("--overwrite: removing checkpoints of a different config in %s", root)
          shutil.rmtree(root)
          return
        differing = _differing_keys(saved or {}, wanted)
        raise WorkdirError(
            f"{workdir} holds checkpoints ({phase} step {step}) written with a different config "
            f"(differs at: {', '.join(differing[:5]) or 'structure'}); use another --workdir or pass --overwrite")


def _differing_keys(a: Any, b: Any, prefix: str = "config") -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      out += _differing_keys(a.get(k), b.get(k), f"{prefix}.{k}")
    return out
  return [] if a == b else [prefix]


def run_experiment(cfg: MonoPolyConfig, workdir: str, overwrite: bool = False, progress: Any = None) -> Any:
  """Trains every seed through both phases, resuming from the latest checkpoint; returns the final state."""
  check_workdir(cfg, workdir, overwrite)
  mesh = sharding.seed_mesh(cfg.num_seeds)
  runner = SweepRunner(cfg, mesh)
  train_set, _ = make_datasets(cfg)
  train_set = sharding.replicate(train_set, mesh)
  stores = {phase: CheckpointStore(checkpoint_dir(workdir, phase)) for phase in PHASES}
  state = runner.init(train_set["x"])
  phase2_template = runner.start_phase2(state)

  start = {"phase1": 0, "phase2": 0}
  resume_phase = "phase1"
  if stores["phase2"].latest_step() is not None:
    resume_phase = "phase2"
    start["phase2"] = stores["phase2"].latest_step()
    state = stores["phase2"].restore(start["phase2"], phase2_template)
  elif stores["phase1"].latest_step() is not None:
    start["phase1"] = stores["phase1"].latest_step()
    state = stores["phase1"].restore(start["phase1"], state)
  if start[resume_phase]:
    logging.info("resuming from %s step %d", resume_phase, start[resume_phase])
  if progress is not None:
    progress.update(start["phase1"] + start["phase2"] + (cfg.phase1.steps if resume_phase == "phase2" else 0))

  for phase in PHASES[PHASES.index(resume_phase):]:
    pc = cfg.phase(phase)
    if phase == "phase2" and resume_phase == "phase1":
      state = runner.start_phase2(state)
    schedule = PhaseSchedule(phase, pc.steps, cfg.log_every, pc.checkpoint_every)
    state = run_phase(schedule, runner.run_chunk(phase, train_set), state, start[phase], stores[phase],
                      run_metadata(cfg, phase), cfg.seeds, progress)
  return state


def restore_phase_params(workdir: str, phase: str, step: int | None = None):
  """(config, params stacked over seeds, step) restored from a phase's checkpoint (latest by default)."""
  store = CheckpointStore(checkpoint_dir(workdir, phase))
  steps = store.all_steps()
  if not steps:
    raise CheckpointError(f"no {phase} checkpoints in {store.directory}; train first with launch.mono_poly")
  step = steps[-1] if step is None else step
  cfg = parse_config(store.restore_metadata(step)["config"])
  template = abstract_state(cfg, phase)
  state = store.restore(step, template)
  return cfg, state["params"], step


def abstract_state(cfg: MonoPolyConfig, phase: str) -> Any:
  """Shapes and dtypes of the stacked train state of `phase` (no computation)."""
  steps = phase_steps(cfg, phase)
  x = jax.ShapeDtypeStruct((1, cfg.data.image_size * cfg.data.image_size * 3), jnp.float32)
  keys = jax.ShapeDtypeStruct((cfg.num_seeds, 2), jnp.uint32)
  return jax.eval_shape(jax.vmap(lambda k, x: steps.init(k, x), in_axes=(0, None)), keys, x)


def hidden_activations(cfg: MonoPolyConfig, params: Any, x_NxD: jax.Array) -> dict[str, jax.Array]:
  """Activations by layer name of one seed's params on `x_NxD`."""
  _, acts = make_model(cfg).apply({"params": params}, x_NxD)
  return acts


@functools.lru_cache(maxsize=None)
def layer_names(cfg: MonoPolyConfig) -> tuple[str, ...]:
  return tuple(f"hidden_{i}" for i in range(len(cfg.model.hidden_widths)))

