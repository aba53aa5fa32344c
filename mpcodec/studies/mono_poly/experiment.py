"""The mono->poly experiment: an MLP learns bar orientation (phase 1), then orientation XOR colour (phase 2).

`make_program(cfg)` describes both phases as pure functions for the one run loop (`mpcodec.core.loop`);
`make_train(cfg)` is the whole experiment of one seed as one pure function of its keys, and
`train(cfg, workdir)` runs the same program for S seeds at once (vmapped, seed axis sharded over the
device mesh) in checkpointed chunks, resuming from the latest checkpoint of the same config.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Literal

import jax
import jax.numpy as jnp

from mpcodec.core import configuration, loop, seeds, sharding
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.data.bars import BarsConfig, make_bars_splits
from mpcodec.models.mlp import MLP
from mpcodec.studies.mono_poly import curriculum
from mpcodec.core.classifier import ClassifierSteps
from mpcodec.core.optim import OptimConfig, make_optimizer

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
  seed: int = 0                  # base seed: seed i draws from seeds.seed_key(seed, i, purpose)
  first_seed: int = 0            # the sweep trains seeds first_seed .. first_seed + num_seeds - 1
  data_seed: int = 0
  batch_size: int = 32
  shared_data_order: bool = True
  log_every: int = 50
  data: BarsConfig = BarsConfig()
  model: ModelConfig = ModelConfig()
  phase1: PhaseConfig = PhaseConfig(task="orientation", steps=1500)
  phase2: PhaseConfig = PhaseConfig(task="xor", steps=4000, checkpoint_every=200)
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


def seed_keys(cfg: MonoPolyConfig) -> dict[str, jax.Array]:
  """Keys of every seed (seed axis first) by purpose: `init`, and one data order per phase.

  Seed i's keys are `seeds.seed_key(cfg.seed, i, purpose)` (see `mpcodec.core.seeds`), whatever the
  other seeds are.
  """
  purposes = ("init",) + tuple(f"data_order/{phase}" for phase in PHASES)
  return {purpose: seeds.seed_keys(cfg.seed, cfg.seeds, purpose) for purpose in purposes}


def order_key(cfg: MonoPolyConfig, phase: str, keys: dict[str, jax.Array]) -> jax.Array:
  """Minibatch-order key of a phase: shared by all seeds (from the data seed) or the seed's own."""
  if cfg.shared_data_order:
    return seeds.shared_key(cfg.data_seed, f"data_order/{phase}")
  return keys[f"data_order/{phase}"]


def make_program(cfg: MonoPolyConfig) -> loop.Program:
  """Both phases as pure functions of seed-stacked state and keys, for `mpcodec.core.loop`."""
  train_set, _ = make_datasets(cfg)
  data = {"x": train_set["x"], **{f"y_{phase}": train_set[f"y_{phase}"] for phase in PHASES}}
  example_x = jnp.zeros((1, train_set["x"].shape[1]), jnp.float32)
  first = phase_steps(cfg, PHASES[0])

  def init(keys):
    return jax.vmap(lambda k: first.init(k["init"], example_x))(keys)

  phases = []
  for phase in PHASES:
    steps = phase_steps(cfg, phase)
    pc = cfg.phase(phase)

    def one_seed(state, keys, data, inputs, start_step, num_steps, steps=steps, phase=phase):
      del inputs
      state, loss = steps.run_steps(state, order_key(cfg, phase, keys), start_step, data["x"],
                                    data[f"y_{phase}"], num_steps)
      return state, {"loss": loss}

    start = None
    if phase != PHASES[0]:
      start = lambda state_S, steps=steps: jax.vmap(steps.fresh_optimizer)(state_S["params"])
    phases.append(loop.Phase(name=phase, num_steps=pc.steps, chunk=loop.vmap_chunk(one_seed), start=start,
                             chunk_every=cfg.log_every, checkpoint_every=pc.checkpoint_every))
  return loop.Program(study="mono->poly", init=init, phases=tuple(phases), data=data)


def make_train(cfg: MonoPolyConfig):
  """Returns train(keys) -> (state, history): both phases of one seed as one pure function.

  `keys` is one seed's entry of `seed_keys(cfg)`; history maps "phase1"/"phase2" to {"loss": per step}.
  `jax.jit(jax.vmap(make_train(cfg)))(seed_keys(cfg))` trains a whole sweep; `run_experiment` runs the
  same program in checkpointed chunks.
  """
  return loop.pure_train(make_program(cfg))


def checkpoint_root(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def checkpoint_dir(workdir: str, phase: str) -> str:
  return os.path.join(checkpoint_root(workdir), phase)


def training_config(cfg: MonoPolyConfig) -> dict:
  """The knobs that decide what training computes: checkpoints of another value belong to another run.

  Analysis settings and the chunk length (`log_every`, which only sets how often the host looks) are
  left out, so changing them reuses the checkpoints.
  """
  config = configuration.to_dict(cfg)
  for key in ("analysis", "log_every"):
    config.pop(key)
  return config


def activation_source(cfg: MonoPolyConfig) -> dict:
  """How a generic reader rebuilds the model and its inputs from a checkpoint (no study code needed)."""
  return {"model": {"kind": "mlp", "hidden_widths": list(cfg.model.hidden_widths), "num_classes": 2},
          "params_path": ["state", "params"],
          "inputs": {"kind": "bars", "config": configuration.to_dict(cfg.data), "data_seed": cfg.data_seed,
                     "flatten": True}}


def train(cfg: MonoPolyConfig, workdir: str, overwrite: bool = False, progress: Any = None) -> loop.Outcome:
  """Trains every seed through both phases in checkpointed chunks, resuming from the latest checkpoint.

  The seed axis is sharded over every device of every process (`sharding.seed_mesh`).
  """
  mesh = sharding.seed_mesh(cfg.num_seeds)
  return loop.run(make_program(cfg), seed_keys(cfg), checkpoint_root(workdir), seed_labels=cfg.seeds,
                  config=training_config(cfg),
                  metadata={"full_config": configuration.to_dict(cfg), "activation_source": activation_source(cfg)},
                  mesh=mesh, progress=progress, overwrite=overwrite)


def run_experiment(cfg: MonoPolyConfig, workdir: str, overwrite: bool = False, progress: Any = None) -> Any:
  """`train`, returning the final state (seed axis first)."""
  return train(cfg, workdir, overwrite=overwrite, progress=progress).state


def abstract_carry(cfg: MonoPolyConfig, phase: str) -> Any:
  """Shapes and dtypes of what a checkpoint of `phase` holds: {'state', 'history'} (no training)."""
  program = make_program(cfg)
  return loop.abstract_carry(program, seed_keys(cfg), PHASES.index(phase))


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

