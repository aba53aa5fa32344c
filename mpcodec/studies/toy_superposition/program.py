"""The toy-superposition training run as one program of the run loop: three sweeps, seeds vmapped.

`make_program(cfg)` has one phase per sweep (`SWEEPS`): the pentagon and dense cells, the n = 2, m = 1
phase diagram and the privileged-basis (ReLU-hidden) sparsity sweep. Each phase trains every (seed, grid
cell, restart) model of its sweep at once: its state holds params and optimizer state with leading axes
(seed, cell, restart); a cell differs from another only by its (sparsity, importance) inputs, and every
cell of a seed starts from the same initialisations. A step samples a fresh batch from
`fold_in(data_key, step)`, so a chunked, resumed run equals one pure call (`make_train`) bit for bit.
The history holds each restart's loss averaged over blocks of `history_every` steps and, per step, the
largest loss over the seed's models (what the loop checks for NaN/Inf). `sweep_results` keeps, per seed
and cell, the restart with the lowest last-block loss.

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

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from mpcodec.core import loop, seeds
from mpcodec.core.optim import make_optimizer
from mpcodec.data.toy_features import sample_sparse_features
from mpcodec.models import toy_superposition as toy_model
from mpcodec.studies.toy_superposition.config import ToySuperpositionConfig, ToyTrainConfig

Params = dict[str, jax.Array]
SWEEPS = ("pentagon_dense", "phase_diagram", "privileged_basis")
BLOCK_LOSS = "block_loss"     # (S, blocks, cells, restarts): loss averaged over each history_every steps
WORST_LOSS = "worst_loss"     # (S, steps): the largest loss over a seed's models (the NaN/Inf check)


def importance_weighted_mse(reconstruction_BxN: jax.Array, features_BxN: jax.Array,
                            importance_N: jax.Array) -> jax.Array:
  """Loss = mean over the batch of Σ_i I_i (x_i - x'_i)² (Elhage et al. 2022, section 2)."""
  return jnp.mean(jnp.sum(importance_N * jnp.square(features_BxN - reconstruction_BxN), axis=-1))


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
  """(num_seeds,) keys of a sweep: seed i's is `seeds.seed_key(seed, i, "toy_train")` (restarts, init
  and data are folded in from it), the same whatever the number of seeds."""
  return seeds.seed_keys(seed, num_seeds, "toy_train")


def sweep_train_config(cfg: ToySuperpositionConfig, sweep: str) -> ToyTrainConfig:
  return {"pentagon_dense": cfg.train, "phase_diagram": cfg.phase_diagram.train,
          "privileged_basis": cfg.privileged_basis.train}[sweep]


def sweep_grid(cfg: ToySuperpositionConfig, sweep: str) -> dict[str, jax.Array]:
  """A sweep's cells: sparsity_G (G,) and importance_GxN (G, N).

  pentagon_dense: the sparse uniform cell, then the dense decaying one; phase_diagram: every (feature
  density, relative importance) pair, density major; privileged_basis: one cell per sparsity.
  """
  if sweep == "pentagon_dense":
    n = cfg.train.num_features
    return {"sparsity_G": jnp.array([cfg.pentagon_sparsity, 0.0], jnp.float32),
            "importance_GxN": jnp.stack([jnp.ones((n,), jnp.float32),
                                         cfg.dense_importance_decay ** jnp.arange(n, dtype=jnp.float32)])}
  if sweep == "phase_diagram":
    phase = cfg.phase_diagram
    density_P = jnp.asarray(phase.feature_densities, jnp.float32)
    relative_I = jnp.asarray(phase.relative_importances, jnp.float32)
    density_G = jnp.repeat(density_P, len(relative_I))
    return {"sparsity_G": 1.0 - density_G,
            "importance_GxN": jnp.stack([jnp.ones_like(density_G), jnp.tile(relative_I, len(density_P))], axis=-1)}
  privileged = cfg.privileged_basis
  importance_N = privileged.importance_decay ** jnp.arange(privileged.train.num_features, dtype=jnp.float32)
  return {"sparsity_G": jnp.asarray(privileged.sparsities, jnp.float32),
          "importance_GxN": jnp.tile(importance_N, (len(privileged.sparsities), 1))}


def _restart_keys(key: jax.Array, num_restarts: int) -> jax.Array:
  return jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(num_restarts))


class _Restart:
  """One restart of one cell: its initial state, and `steps` of training from an absolute step."""

  def __init__(self, cfg: ToyTrainConfig):
    self.cfg = cfg
    self.optimizer = make_optimizer(cfg.optim, cfg.num_steps)

  def init(self, restart_key: jax.Array) -> dict[str, Any]:
    key_init = jax.random.fold_in(restart_key, seeds.purpose_id("init"))
    params = toy_model.init_params(key_init, self.cfg.num_features, self.cfg.hidden_dim)
    return {"params": params, "opt_state": self.optimizer.init(params)}

  def steps(self, state: dict[str, Any], restart_key: jax.Array, sparsity: jax.Array, importance_N: jax.Array,
            start_step: jax.Array, num_steps: int) -> tuple[dict[str, Any], jax.Array]:
    """(state, losses (num_steps,)) after steps [start_step, start_step + num_steps)."""
    cfg = self.cfg
    key_data = jax.random.fold_in(restart_key, seeds.purpose_id("data_order"))

    def loss_fn(params: Params, features_BxN: jax.Array, importance_N: jax.Array) -> jax.Array:
      reconstruction_BxN, _ = toy_model.apply(params, features_BxN, cfg.variant)
      return importance_weighted_mse(reconstruction_BxN, features_BxN, importance_N)

    def step(carry, step_index):
      params, opt_state = carry
      features_BxN = sample_sparse_features(jax.random.fold_in(key_data, step_index), cfg.batch_size,
                                            cfg.num_features, sparsity)
      loss, grads = jax.value_and_grad(loss_fn)(params, features_BxN, importance_N)
      updates, opt_state = self.optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (state["params"], state["opt_state"]),
                                               start_step + jnp.arange(num_steps))
    return {"params": params, "opt_state": opt_state}, losses


def _block_means(losses_xT: jax.Array, history_every: int) -> jax.Array:
  """Losses (..., T) -> means over consecutive blocks of `history_every` steps (..., T / history_every)."""
  return jnp.mean(losses_xT.reshape(losses_xT.shape[:-1] + (-1, history_every)), axis=-1)


def _sweep_phase(cfg: ToySuperpositionConfig, sweep: str) -> loop.Phase:
  train_cfg = sweep_train_config(cfg, sweep)
  restart = _Restart(train_cfg)

  def chunk(state_S, keys_S, data, inputs, start_step, num_steps):
    del inputs
    grid = data[sweep]

    def one_seed(state_GR, key):
      keys_R = _restart_keys(key, train_cfg.num_restarts)

      def one_cell(state_R, sparsity, importance_N):
        over_restarts = jax.vmap(restart.steps, in_axes=(0, 0, None, None, None, None))
        return over_restarts(state_R, keys_R, sparsity, importance_N, start_step, num_steps)

      return jax.vmap(one_cell)(state_GR, grid["sparsity_G"], grid["importance_GxN"])

    state, losses_SxGxRxT = jax.vmap(one_seed)(state_S[sweep], keys_S)
    blocks_SxGxRxB = _block_means(losses_SxGxRxT, train_cfg.history_every)
    metrics = {BLOCK_LOSS: jnp.moveaxis(blocks_SxGxRxB, -1, 1),
               WORST_LOSS: jnp.max(losses_SxGxRxT, axis=(1, 2))}
    return {**state_S, sweep: state}, metrics

  return loop.Phase(name=sweep, num_steps=train_cfg.num_steps, chunk=chunk, chunk_every=train_cfg.history_every,
                    checkpoint_every=train_cfg.num_steps, loss_metric=WORST_LOSS)


def make_program(cfg: ToySuperpositionConfig) -> loop.Program:
  """The three sweeps as phases of one program for `mpcodec.core.loop` (seed axis first)."""
  grids = {sweep: sweep_grid(cfg, sweep) for sweep in SWEEPS}

  def init(keys_S):
    state = {}
    for sweep in SWEEPS:
      train_cfg = sweep_train_config(cfg, sweep)
      restart = _Restart(train_cfg)
      num_cells = grids[sweep]["sparsity_G"].shape[0]

      def one_seed(key, restart=restart, train_cfg=train_cfg, num_cells=num_cells):
        state_R = jax.vmap(restart.init)(_restart_keys(key, train_cfg.num_restarts))
        return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_cells,) + leaf.shape), state_R)

      state[sweep] = jax.vmap(one_seed)(keys_S)
    return state

  return loop.Program(study="toy superposition", init=init,
                      phases=tuple(_sweep_phase(cfg, sweep) for sweep in SWEEPS), data=grids)


def make_train(cfg: ToySuperpositionConfig) -> Callable[[jax.Array], tuple[Any, dict]]:
  """train(key) -> (state, history) of one seed: `loop.pure_train(make_program(cfg))`.

  `jax.jit(jax.vmap(make_train(cfg)))(seed_keys(cfg.seed, cfg.num_seeds))` trains every sweep for every
  seed; `sweep_results` reads the kept restarts from its output.
  """
  return loop.pure_train(make_program(cfg))


def make_cell_train(cfg: ToyTrainConfig) -> Callable[[jax.Array, jax.Array, jax.Array], tuple[Params, dict]]:
  """train(key, sparsity, importance_N) -> (params, history) of one cell: the same restart steps as a
  sweep's, all steps in one scan, the best restart kept (history as in `sweep_results`)."""
  restart = _Restart(cfg)

  def train(key, sparsity, importance_N):
    keys_R = _restart_keys(key, cfg.num_restarts)
    state_R = jax.vmap(restart.init)(keys_R)
    state_R, losses_RxT = jax.vmap(restart.steps, in_axes=(0, 0, None, None, None, None))(
        state_R, keys_R, sparsity, importance_N, jnp.int32(0), cfg.num_steps)
    return _keep_best(state_R["params"], _block_means(losses_RxT, cfg.history_every))

  return train


def _keep_best(params_R: Params, blocks_RxB: jax.Array) -> tuple[Params, dict[str, jax.Array]]:
  """The restart with the lowest last-block loss: its params and history."""
  kept = jnp.argmin(blocks_RxB[:, -1])
  params = jax.tree.map(lambda leaf: leaf[kept], params_R)
  return params, {"loss": blocks_RxB[kept], "restart_final_loss": blocks_RxB[:, -1], "kept_restart": kept}


def sweep_results(cfg: ToySuperpositionConfig, state_S: Any, history_S: Any) -> dict[str, Any]:
  """The kept models of each sweep from a run's final state and history (seed axis first), as the report
  reads them: {"pentagon", "dense"}: {"params", "history"} with a leading seed axis;
  "phase_diagram": leading axes (densities, importances, seeds); "privileged_basis": (sparsities, seeds);
  and the importances of the pentagon_dense cells and of the privileged-basis features."""
  kept = {}
  for sweep in SWEEPS:
    blocks_SxGxRxB = jnp.moveaxis(jnp.asarray(history_S[sweep][BLOCK_LOSS]), 1, -1)
    keep = jax.vmap(jax.vmap(_keep_best))   # over seeds, then cells
    params, history = keep(state_S[sweep]["params"], blocks_SxGxRxB)
    kept[sweep] = {"params": params, "history": history}
  grid_first = lambda tree: jax.tree.map(lambda leaf: jnp.swapaxes(leaf, 0, 1), tree)   # (S, G) -> (G, S)
  pentagon_dense = grid_first(kept["pentagon_dense"])
  take = lambda g: jax.tree.map(lambda leaf: leaf[g], pentagon_dense)
  phase = cfg.phase_diagram
  shape = (len(phase.feature_densities), len(phase.relative_importances))
  return {"pentagon": take(0), "dense": take(1),
          "importance": sweep_grid(cfg, "pentagon_dense")["importance_GxN"],
          "phase_diagram": jax.tree.map(lambda leaf: leaf.reshape(shape + leaf.shape[1:]),
                                        grid_first(kept["phase_diagram"])),
          "privileged_basis": {**grid_first(kept["privileged_basis"]),
                               "importance": sweep_grid(cfg, "privileged_basis")["importance_GxN"][0]}}
