"""The typed config of the mono->poly study: every knob, its default and its value rules.

Which knobs define a run (the checkpoints' fingerprint, `configuration.training_fingerprint`): all of
them but the analysis settings, the smoke label and `chunk_steps` (how often the host checks in), which
are marked `{"run": False}`; changing those reuses the checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mpcodec.core import configuration
from mpcodec.core.optim import OptimConfig
from mpcodec.data.bars import BarsConfig

PHASES = ("phase1", "phase2")
CONTROL = "control"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  hidden_widths: tuple[int, ...] = (10,)

  def checks(self):
    yield "hidden_widths", len(self.hidden_widths) >= 1, "needs at least one hidden layer"
    for i, w in enumerate(self.hidden_widths):
      yield f"hidden_widths[{i}]", w >= 1, f"width must be >= 1, got {w}"


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
  """One phase. Its checkpoint steps are part of the run: the analysis reads every one of them."""

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
  num_sample_images: int = 16

  def checks(self):
    yield "poly_threshold", 0 < self.poly_threshold < 1, f"must be in (0, 1), got {self.poly_threshold}"
    yield "num_sample_images", self.num_sample_images >= 1, f"must be >= 1, got {self.num_sample_images}"


@dataclasses.dataclass(frozen=True)
class MonoPolyConfig:
  """Every knob of the mono->poly experiment (see configs/mono_poly.py for the defaults' reasons)."""

  RENAMED = {"log_every": "chunk_steps"}   # old config key -> its name now (accepted with a warning)

  num_seeds: int = 16
  seed: int = 0                  # base seed: seed i draws from seeds.seed_key(seed, i, purpose)
  first_seed: int = 0            # the sweep trains seeds first_seed .. first_seed + num_seeds - 1
  data_seed: int = 0             # base of the data draws: the shared dataset, or each seed's own
  # Each seed draws its own train and test sets (seeds.seed_key(data_seed, i, "data")), so that an
  # interval over seeds covers the data draw as well as the initialisation; False: one shared draw.
  data_per_seed: bool = True
  batch_size: int = 32
  # One minibatch index sequence for all seeds (drawn from data_seed) instead of one per seed. With a
  # shared dataset it is one gather and one wide matmul per step for the whole sweep; with per-seed
  # data each seed still sees its own images.
  shared_data_order: bool = False
  # Phase 2 again on the phase-1 task from the same end-of-phase-1 state: H1-H3 as XOR minus control.
  control_arm: bool = True
  # A seconds-long preset: the report says so and gives no verdict (it changes no computation).
  smoke: bool = configuration.execution_only(False)
  # Steps between the host's check-ins (progress, NaN check, the chunks of the run loop).
  chunk_steps: int = configuration.execution_only(50)
  data: BarsConfig = BarsConfig()
  model: ModelConfig = ModelConfig()
  phase1: PhaseConfig = PhaseConfig(task="orientation", steps=1500)
  phase2: PhaseConfig = PhaseConfig(task="xor", steps=4000, checkpoint_every=200)
  analysis: AnalysisConfig = configuration.execution_only(AnalysisConfig())

  def checks(self):
    yield "num_seeds", self.num_seeds >= 1, f"must be >= 1, got {self.num_seeds}"
    yield "first_seed", self.first_seed >= 0, f"must be >= 0, got {self.first_seed}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield ("batch_size", self.batch_size <= self.data.num_train,
           f"{self.batch_size} is larger than the training set (data.num_train = {self.data.num_train})")
    yield "chunk_steps", self.chunk_steps >= 1, f"must be >= 1, got {self.chunk_steps}"

  @property
  def seeds(self) -> list[int]:
    return list(range(self.first_seed, self.first_seed + self.num_seeds))

  def phase(self, name: str) -> PhaseConfig:
    """A phase's config; the control phase is phase 2's steps and optimizer on phase 1's task."""
    if name == CONTROL:
      return dataclasses.replace(self.phase2, task=self.phase1.task)
    return getattr(self, name)


def parse_config(cfg: Any) -> MonoPolyConfig:
  """Validates a ConfigDict into a MonoPolyConfig; raises ConfigError naming the key."""
  return configuration.parse(MonoPolyConfig, cfg)


def phase_names(cfg: MonoPolyConfig) -> tuple[str, ...]:
  """The program's phases in the order they train: phase 1, phase 2, and the control arm (if on)."""
  return PHASES + (CONTROL,) if cfg.control_arm else PHASES


def training_config(cfg: MonoPolyConfig) -> dict:
  """The knobs that decide what training computes (`configuration.training_fingerprint`)."""
  return configuration.training_fingerprint(cfg)
