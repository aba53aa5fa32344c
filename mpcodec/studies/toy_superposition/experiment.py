"""Training of the toy superposition models as one pure function, vmapped over seeds and a grid.

`make_train(cfg)` closes over the static knobs (shapes, steps, batch, optimizer) and returns
`train(key, sparsity, importance_N) -> (params, history)`: the whole run under `lax.scan`, a fresh batch
per step from `fold_in(data_key, step)`, an optax optimizer from `mpcodec.core.optim` (Adam as in
the paper), importance-weighted MSE. `make_sweep(cfg)` nests two vmaps, over a flat grid of
(sparsity, importance) cells and over seeds, inside one jitted program. `cfg.variant` picks the model
("relu_output" or the privileged-basis "relu_hidden"); the same machinery trains both.

Restarts: the loss is not convex. When two random initial embeddings start nearly collinear (5 random
directions in a plane often include such a pair), the weaker one is pushed down by interference from the
stronger: either its output ReLU dies (W_i -> 0 with b_i < 0, after which feature i gets no gradient) or
it stays stuck collinear while the other four form a square, a local minimum with ~40% more loss than the
pentagon. Neither more steps nor another learning rate or batch size removed this (13-15 of 16 seeds
reached the pentagon at n = 5, m = 2, S = 0.9-0.97), so each seed trains `num_restarts` initialisations
in parallel (vmapped) and keeps the one with the lowest final training loss; every restart's final loss
is in the history. In the n = 2, m = 1 phase diagram a single start often missed the antipodal solution
at low density (feature 2 starting on the same side as feature 1), and best-of-4 restarts fixed it.
Reference: Elhage et al. 2022, Toy Models of Superposition (batch 1024, Adam, lr 1e-3 in their code).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from mpcodec.data.toy_features import sample_sparse_features
from mpcodec.models import toy_superposition as toy_model
from mpcodec.core.optim import OptimConfig, make_optimizer
from mpcodec.core import seeds

Params = dict[str, jax.Array]
TrainFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[Params, dict[str, jax.Array]]]


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


def importance_weighted_mse(reconstruction_BxN: jax.Array, features_BxN: jax.Array,
                            importance_N: jax.Array) -> jax.Array:
  """Loss = mean over the batch of Σ_i I_i (x_i - x'_i)² (Elhage et al. 2022, section 2)."""
  return jnp.mean(jnp.sum(importance_N * jnp.square(features_BxN - reconstruction_BxN), axis=-1))


def make_train(cfg: ToyTrainConfig) -> TrainFn:
  """Returns train(key, sparsity, importance_N) -> (params, history), best of `num_restarts` runs.

  history["loss"] (num_steps / history_every,): the kept run's training loss averaged over each block
  of `history_every` steps; history["restart_final_loss"] (num_restarts,): every restart's last block;
  history["kept_restart"]: index of the kept run (lowest last-block loss).
  """
  optimizer = make_optimizer(cfg.optim, cfg.num_steps)

  def loss_fn(params: Params, features_BxN: jax.Array, importance_N: jax.Array) -> jax.Array:
    reconstruction_BxN, _ = toy_model.apply(params, features_BxN, cfg.variant)
    return importance_weighted_mse(reconstruction_BxN, features_BxN, importance_N)

  def train_once(key: jax.Array, sparsity: jax.Array, importance_N: jax.Array
                 ) -> tuple[Params, jax.Array]:
    key_init = jax.random.fold_in(key, seeds.purpose_id("init"))
    key_data = jax.random.fold_in(key, seeds.purpose_id("data_order"))
    params = toy_model.init_params(key_init, cfg.num_features, cfg.hidden_dim)

    def step(carry, step_index):
      params, opt_state = carry
      features_BxN = sample_sparse_features(jax.random.fold_in(key_data, step_index), cfg.batch_size,
                                            cfg.num_features, sparsity)
      loss, grads = jax.value_and_grad(loss_fn)(params, features_BxN, importance_N)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(cfg.num_steps))
    return params, jnp.mean(losses.reshape(-1, cfg.history_every), axis=1)

  def train(key: jax.Array, sparsity: jax.Array, importance_N: jax.Array
            ) -> tuple[Params, dict[str, jax.Array]]:
    restart_keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(cfg.num_restarts))
    params_R, losses_RxH = jax.vmap(train_once, in_axes=(0, None, None))(restart_keys, sparsity,
                                                                        importance_N)
    kept = jnp.argmin(losses_RxH[:, -1])
    params = jax.tree.map(lambda leaf: leaf[kept], params_R)
    history = {"loss": losses_RxH[kept], "restart_final_loss": losses_RxH[:, -1], "kept_restart": kept}
    return params, history

  return train


def make_sweep(cfg: ToyTrainConfig) -> Callable[[jax.Array, jax.Array, jax.Array],
                                                tuple[Params, dict[str, jax.Array]]]:
  """Returns a jitted sweep(keys_S, sparsity_G, importance_GxN) -> results with leading axes (G, S).

  One compiled program trains every (grid cell, seed) pair: vmap over the flat grid axis of
  (sparsity, importance vector) cells, and inside it vmap over the seed keys (shared by all cells, so
  a cell differs from another only by its hyperparameters).
  """
  train = make_train(cfg)
  over_seeds = jax.vmap(train, in_axes=(0, None, None))
  over_grid = jax.vmap(over_seeds, in_axes=(None, 0, 0))
  return jax.jit(over_grid)


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


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
  """(num_seeds,) keys of a sweep: seed i's is `seeds.seed_key(seed, i, "toy_train")` (restarts, init
  and data are folded in from it), the same whatever the number of seeds."""
  return seeds.seed_keys(seed, num_seeds, "toy_train")


def run_pentagon_and_dense(cfg: ToySuperpositionConfig) -> dict[str, dict[str, jax.Array]]:
  """Trains the sparse-uniform (pentagon) and dense-decaying cells for every seed in one program.

  Returns {"pentagon": {"params", "history"}, "dense": {...}}, arrays with a leading seed axis.
  """
  n = cfg.train.num_features
  sparsity_G = jnp.array([cfg.pentagon_sparsity, 0.0], jnp.float32)
  importance_GxN = jnp.stack([jnp.ones((n,), jnp.float32),
                              cfg.dense_importance_decay ** jnp.arange(n, dtype=jnp.float32)])
  params, history = make_sweep(cfg.train)(seed_keys(cfg.seed, cfg.num_seeds), sparsity_G, importance_GxN)
  take = lambda g: jax.tree.map(lambda leaf: leaf[g], {"params": params, "history": history})
  return {"pentagon": take(0), "dense": take(1), "importance": importance_GxN}


def run_phase_diagram(cfg: ToySuperpositionConfig) -> dict[str, jax.Array]:
  """Trains every (feature density, relative importance) cell for every seed in one program.

  Returns params and history with leading axes (densities, importances, seeds).
  """
  phase = cfg.phase_diagram
  density_P = jnp.asarray(phase.feature_densities, jnp.float32)
  relative_I = jnp.asarray(phase.relative_importances, jnp.float32)
  density_G = jnp.repeat(density_P, len(relative_I))
  importance_Gx2 = jnp.stack([jnp.ones_like(density_G), jnp.tile(relative_I, len(density_P))], axis=-1)
  params, history = make_sweep(phase.train)(seed_keys(cfg.seed, cfg.num_seeds), 1.0 - density_G,
                                            importance_Gx2)
  unflatten = lambda leaf: leaf.reshape((len(density_P), len(relative_I)) + leaf.shape[1:])
  return jax.tree.map(unflatten, {"params": params, "history": history})


def run_privileged_basis(cfg: ToySuperpositionConfig) -> dict[str, jax.Array]:
  """Trains the ReLU-hidden model at every sparsity for every seed in one program.

  Returns params and history with leading axes (sparsities, seeds), and the (n,) importance.
  """
  privileged = cfg.privileged_basis
  n = privileged.train.num_features
  sparsity_G = jnp.asarray(privileged.sparsities, jnp.float32)
  importance_N = privileged.importance_decay ** jnp.arange(n, dtype=jnp.float32)
  importance_GxN = jnp.tile(importance_N, (len(privileged.sparsities), 1))
  params, history = make_sweep(privileged.train)(seed_keys(cfg.seed, cfg.num_seeds), sparsity_G,
                                                 importance_GxN)
  return {"params": params, "history": history, "importance": importance_N}
