"""The typed config of the toy-superposition study: the pentagon and dense cells, the n = 2, m = 1 phase
diagram and the privileged-basis sweep, each with its training knobs.

Every knob defines the run (`configuration.training_fingerprint`): the host checks in every
`history_every` steps of each sweep, when it records the loss, so there is no execution-only knob.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

from mpcodec.core import configuration
from mpcodec.core.optim import OptimConfig

# Tolerances of the pentagon verdict: D_i = 2/5 and 72 degree gaps (Elhage et al. 2022, section 6).
PENTAGON_DIMENSIONALITY_TOLERANCE = 0.05
PENTAGON_ANGLE_TOLERANCE_DEGREES = 5.0
# A neuron counts as monosemantic when its features per neuron is within this of 1 (a second positive
# weight of about 0.23 of the first already gives 1.1).
MONOSEMANTIC_TOLERANCE = 0.1


@dataclasses.dataclass(frozen=True)
class ToyTrainConfig:
  """Static knobs of one toy-model training run (sparsity and importance are traced inputs)."""

  num_features: int = 5
  hidden_dim: int = 2
  variant: Literal["relu_output", "relu_hidden"] = "relu_output"
  num_steps: int = 10_000
  batch_size: int = 1024
  optim: OptimConfig = OptimConfig(name="adam", learning_rate=1e-2, schedule="cosine")
  history_every: int = 1_000
  num_restarts: int = 4

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    yield "num_features", self.num_features >= 1, f"must be >= 1, got {self.num_features}"
    yield "hidden_dim", self.hidden_dim >= 1, f"must be >= 1, got {self.hidden_dim}"
    yield "num_steps", self.num_steps >= 1, f"must be >= 1, got {self.num_steps}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "history_every", 1 <= self.history_every <= self.num_steps, (
        f"must lie in [1, num_steps={self.num_steps}], got {self.history_every}")
    yield "history_every", self.num_steps % self.history_every == 0, (
        f"must divide num_steps={self.num_steps}, got {self.history_every}")
    yield "num_restarts", self.num_restarts >= 1, f"must be >= 1, got {self.num_restarts}"


@dataclasses.dataclass(frozen=True)
class PhaseDiagramConfig:
  """n = 2, m = 1 phase diagram: relative importance of feature 2 (feature 1 has 1) x feature density."""

  relative_importances: tuple[float, ...] = (0.1, 0.18, 0.32, 0.56, 1.0, 1.8, 3.2, 5.6, 10.0)
  feature_densities: tuple[float, ...] = (1.0, 0.56, 0.32, 0.18, 0.1, 0.056, 0.032, 0.018, 0.01)
  train: ToyTrainConfig = ToyTrainConfig(num_features=2, hidden_dim=1, num_steps=3_000, batch_size=512, history_every=300)

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    yield "relative_importances", bool(self.relative_importances) and min(self.relative_importances) > 0, (
        f"must be a non-empty list of positive values, got {self.relative_importances}")
    yield "feature_densities", bool(self.feature_densities) and all(
        0 < p <= 1 for p in self.feature_densities), (
            f"must be a non-empty list of values in (0, 1], got {self.feature_densities}")
    yield "train.num_features", self.train.num_features == 2, (
        f"the phase diagram is for n = 2 features, got {self.train.num_features}")
    yield "train.hidden_dim", self.train.hidden_dim == 1, (
        f"the phase diagram is for m = 1 dimension, got {self.train.hidden_dim}")


@dataclasses.dataclass(frozen=True)
class PrivilegedBasisConfig:
  """ReLU-hidden model h = ReLU(Wx) swept over sparsity, importance `importance_decay`**i.

  Elhage et al. 2022, section 7: with a privileged (neuron) basis one can count how many features each
  neuron carries; dense features get one neuron each, sparse ones share neurons (polysemanticity).
  """

  sparsities: tuple[float, ...] = (0.0, 0.7, 0.9, 0.97, 0.99)
  importance_decay: float = 0.9
  train: ToyTrainConfig = ToyTrainConfig(num_features=10, hidden_dim=5, variant="relu_hidden", batch_size=512)

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    yield "sparsities", len(set(self.sparsities)) >= 2, (
        f"needs at least two distinct values to compare dense and sparse cells, got {self.sparsities}")
    yield "sparsities", all(0.0 <= s < 1.0 for s in self.sparsities), (
        f"every value must lie in [0, 1), got {self.sparsities}")
    yield "importance_decay", 0.0 < self.importance_decay <= 1.0, (
        f"must lie in (0, 1], got {self.importance_decay}")
    yield "train.variant", self.train.variant == "relu_hidden", (
        f"features per neuron needs the privileged basis: variant 'relu_hidden', got {self.train.variant!r}")


@dataclasses.dataclass(frozen=True)
class ToySuperpositionConfig:
  """The toy-superposition experiment: pentagon, dense, phase diagram and the privileged-basis sweep.

  The pentagon and dense runs share `train` (one compiled program, two grid cells); the phase diagram
  (n = 2, m = 1) and the ReLU-hidden sweep have their own shapes and so their own programs.
  """

  seed: int = 0
  num_seeds: int = 4
  train: ToyTrainConfig = ToyTrainConfig(num_steps=5_000, history_every=500)
  pentagon_sparsity: float = 0.9
  dense_importance_decay: float = 0.7
  phase_diagram: PhaseDiagramConfig = PhaseDiagramConfig()
  privileged_basis: PrivilegedBasisConfig = PrivilegedBasisConfig()

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    yield "num_seeds", self.num_seeds >= 1, f"must be >= 1, got {self.num_seeds}"
    yield "train.hidden_dim", self.train.hidden_dim == 2, (
        f"the pentagon geometry is measured in a plane: needs hidden_dim = 2, got {self.train.hidden_dim}")
    yield "train.num_features", self.train.num_features >= 3, (
        f"needs at least 3 features to form a polygon, got {self.train.num_features}")
    yield "pentagon_sparsity", 0.0 <= self.pentagon_sparsity < 1.0, (
        f"must lie in [0, 1), got {self.pentagon_sparsity}")
    yield "dense_importance_decay", 0.0 < self.dense_importance_decay < 1.0, (
        f"must lie in (0, 1) so that importance ranks the features, got {self.dense_importance_decay}")
    yield "train", self.train.variant == "relu_output", (
        f"pentagon and dense results are for variant 'relu_output', got {self.train.variant!r}")


def parse_config(cfg: Any) -> ToySuperpositionConfig:
  """Validates a ConfigDict into a ToySuperpositionConfig; raises ConfigError naming the key."""
  return configuration.parse(ToySuperpositionConfig, cfg)
