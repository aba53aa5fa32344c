"""Training with every layer's effective dimensionality measured inside the jitted, seed-vmapped run.

One configuration = one architecture on one dataset, trained for `num_steps` Adam steps on several seeds
at once. The run is a nested `lax.scan`: the outer scan visits the measurement points, the inner scan
runs `measure_every` training steps between them; the host only sees a chunk of measurements at a time
(to log progress and stop on NaN), never one measurement at a time.

What is measured and when (all keyed by the true training step):
- `steps` = 0, measure_every, 2*measure_every, ..., num_steps. The measurement at step s reads the
  parameters after s updates, so step 0 is the initialisation and the last entry the trained model.
- On a fixed probe set (`probe_size` examples of the held-out split, chosen by `data_seed`, the same for
  every seed and step): the five measures of `mpcodec.metrics.dimensionality.all_measures` for every
  non-attention layer, and the probe's loss and accuracy (`test_loss`, `test_accuracy`).
- On a fixed subset of the training split (`train_probe_size` examples, also chosen by `data_seed`):
  `train_loss`, `train_accuracy`.
- For every update step t = 0..num_steps-1 (`update_steps`): the minibatch loss at the parameters before
  the update (`batch_loss`) and the global L2 norm of its gradient (`grad_norm`).

How a layer becomes a matrix: dense (probe, units); conv (probe*H*W, channels) by default, or the spatial
mean; token streams (probe*T, d_model) with padding tokens left out. Rows are gathered from a fixed index
set chosen on the host once: padding tokens are never chosen, and a layer with more than
`max_matrix_rows` rows (early conv layers: 512*28*28 rows) is measured on a fixed random subset of that
many rows, which bounds the cost of the spectrum. A layer whose matrix has fewer rows than features is
measured anyway (its rank is capped by the row count) and listed in `rank_capped_layers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mpcodec.data.dataset import Dataset
from mpcodec.metrics import dimensionality
from mpcodec.models import zoo
from mpcodec.core import losses, loop, seeds
from mpcodec.core.optim import make_optimizer
from mpcodec.studies.dynamics import grid
from mpcodec.studies.dynamics.config import DynamicsConfig
from mpcodec.studies.dynamics.grid import MEASURE_NAMES

family_of = grid.family_of   # for callers that reach the grid's vocabulary through the program

def dataset_options(cfg: DynamicsConfig, kind: str) -> dict[str, Any]:
  """The `get_dataset` options this config implies (text sets take vocabulary and length)."""
  if kind == "text":
    return {"vocab_size": cfg.vocab_size, "max_length": cfg.max_length}
  return {}


def load_dataset(cfg: DynamicsConfig, data_dir: str | None) -> Dataset:
  """`cfg.dataset` from the registry, split with `cfg.data_seed`, with the options `cfg` implies."""
  from mpcodec.data import registry  # pylint: disable=g-import-not-at-top
  kind = registry.DATASETS[cfg.dataset].kind
  return registry.get_dataset(cfg.dataset, data_dir, seed=cfg.data_seed, **dataset_options(cfg, kind))


def seed_keys(cfg: DynamicsConfig) -> jax.Array:
  """(num_seeds,) init keys: seed i's is `seeds.seed_key(cfg.seed, i, "init")`, the same in any sweep."""
  return seeds.seed_keys(cfg.seed, cfg.num_seeds, "init")


def data_order(cfg: DynamicsConfig, keys_S: dict[str, jax.Array]) -> jax.Array:
  """The data-order key the chunk takes: one shared by all seeds (from the data seed), or each seed's own
  (`keys_S["data_order"]` of `loop_keys`, seed axis first)."""
  return seeds.shared_key(cfg.data_seed, "data_order") if cfg.shared_data_order else keys_S["data_order"]


@dataclasses.dataclass(frozen=True)
class ProbeSets:
  """Host-side (numpy) probe data and the static facts about the measured layers."""

  arrays: dict[str, Any]           # train/probe arrays and row index sets, passed to the jitted run
  layer_names: tuple[str, ...]     # measured layers, in model order
  layer_layouts: tuple[str, ...]
  matrix_shapes: tuple[tuple[int, int], ...]   # (rows measured, features) per layer
  rank_capped_layers: tuple[str, ...]
  skipped_layers: tuple[str, ...]   # attention maps (never measured)
  probe_indices: np.ndarray         # positions in the held-out split
  train_probe_indices: np.ndarray   # positions in the training split


def model_for(cfg: DynamicsConfig, kind: str, num_classes: int, vocab_size: int | None = None,
              max_length: int | None = None):
  """The zoo model for `cfg.arch` on inputs of `kind` ('image' or 'text', which takes vocabulary size
  and length)."""
  if kind == "text":
    return zoo.build_model(cfg.arch, num_classes, "text", vocab_size=vocab_size, max_length=max_length,
                           embed_dim=cfg.embed_dim)
  return zoo.build_model(cfg.arch, num_classes, "image", embed_dim=cfg.embed_dim)


def build_model(cfg: DynamicsConfig, dataset: Dataset):
  """The zoo model for `cfg.arch` on `dataset` (text sets pass their vocabulary size and length)."""
  return model_for(cfg, dataset.kind, dataset.num_classes, dataset.vocab_size, dataset.max_length)


def _fixed_subset(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
  """`count` sorted positions out of `size` without replacement (all positions if count >= size)."""
  if count >= size:
    return np.arange(size)
  return np.sort(rng.choice(size, size=count, replace=False))


def make_probe_sets(cfg: DynamicsConfig, dataset: Dataset, model) -> ProbeSets:
  """Chooses the fixed probe sets and, per measured layer, the fixed rows of its matrix."""
  rng = np.random.default_rng(cfg.data_seed)
  probe_idx = _fixed_subset(rng, dataset.num_test, cfg.probe_size)
  train_probe_idx = _fixed_subset(rng, dataset.num_train, cfg.train_probe_size)
  probe_x = dataset.test_x[probe_idx]
  params_shape = jax.eval_shape(model.init, jax.random.PRNGKey(0), probe_x[:1])
  _, acts_shape = jax.eval_shape(model.apply, params_shape, probe_x)
  names, layouts, shapes, capped, skipped = [], [], [], [], []
  arrays: dict[str, Any] = {
      "train_x": dataset.train_x, "train_y": dataset.train_y,
      "probe_x": probe_x, "probe_y": dataset.test_y[probe_idx],
      "train_probe_x": dataset.train_x[train_probe_idx],
      "train_probe_y": dataset.train_y[train_probe_idx],
      "rows": {},
  }
  # eval_shape returns the dict with sorted keys (hidden_10 before hidden_2): restore depth order.
  for name in zoo.depth_sorted(acts_shape):
    struct = acts_shape[name]
    if zoo.is_attention_layer(name):
      skipped.append(name)
      continue
    layout = zoo.layer_layout(name, struct)
    if layout == "attention":
      skipped.append(name)
      continue
    if cfg.conv_mode == "spatial_mean" and layout == "conv":
      num_rows = struct.shape[0]
    else:
      num_rows = int(np.prod(struct.shape[:-1]))
    num_features = int(struct.shape[-1])
    candidates = np.arange(num_rows)
    if layout == "tokens" and dataset.kind == "text" and struct.shape[:2] == probe_x.shape:
      # Padding positions are not tokens: keep them out of the matrix altogether.
      candidates = np.flatnonzero(probe_x.reshape(-1) != 0)
    if candidates.size > cfg.max_matrix_rows:
      candidates = candidates[_fixed_subset(rng, candidates.size, cfg.max_matrix_rows)]
    if candidates.size != num_rows:
      arrays["rows"][name] = candidates.astype(np.int32)
    names.append(name)
    layouts.append(layout)
    shapes.append((int(candidates.size), num_features))
    if dimensionality.is_rank_capped(int(candidates.size), num_features):
      capped.append(name)
  return ProbeSets(arrays=arrays, layer_names=tuple(names), layer_layouts=tuple(layouts),
                   matrix_shapes=tuple(shapes), rank_capped_layers=tuple(capped),
                   skipped_layers=tuple(skipped), probe_indices=probe_idx,
                   train_probe_indices=train_probe_idx)


def _loss_and_accuracy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  return losses.cross_entropy(logits, labels), losses.accuracy(logits, labels)


@dataclasses.dataclass(frozen=True)
class DynamicsProgram:
  """Pure single-seed functions of one configuration; vmap them over seeds (see `vmapped`)."""

  init: Callable[[jax.Array], dict]                       # seed key -> state
  run_chunk: Callable[[dict, jax.Array, dict, jax.Array], tuple[dict, dict]]
  measure: Callable[[dict, dict], dict]                   # params, data -> series at one step
  train_step: Callable[[dict, jax.Array, dict, jax.Array], tuple[dict, tuple]]  # one update
  logits: Callable[[dict, jax.Array], jax.Array]
  chunk_blocks: int


def layer_matrices(cfg: DynamicsConfig, probe: ProbeSets, acts: dict, rows: dict) -> list[jax.Array]:
  """The measured layers' (rows x features) matrices of one seed's probe activations, in probe order
  (a layer with a row subset in `rows` keeps those rows)."""
  matrices = []
  for name, layout in zip(probe.layer_names, probe.layer_layouts):
    matrix, _ = dimensionality.layer_matrix(acts[name], layout, cfg.conv_mode)
    matrices.append(matrix[rows[name]] if name in rows else matrix)
  return matrices


def measure_keys(cfg: DynamicsConfig, num_layers: int) -> list[jax.Array]:
  """The TwoNN subsampling key of each measured layer (the same at every step and seed)."""
  return [jax.random.fold_in(jax.random.PRNGKey(cfg.data_seed), index) for index in range(num_layers)]


def make_functions(cfg: DynamicsConfig, model, probe: ProbeSets) -> DynamicsProgram:
  """Builds the pure functions of one configuration (one seed; `vmapped` adds the seed axis).

  `run_chunk(state, order_key, data, first_block)` runs `chunk_blocks` blocks; a block is one
  measurement (when cfg.measure) at step first_step followed by `measure_every` updates. `train(seed_key,
  order_key, data)` runs the whole schedule and the final measurement at step num_steps, returning the
  final state and the series (measurement series with a leading measurement axis; per-update series with
  a leading step axis).
  """
  optimizer = make_optimizer(cfg.optim, cfg.num_steps)
  chunk_blocks = cfg.chunk_blocks
  example_x = probe.arrays["probe_x"][:1]

  def init(seed_key):
    params = model.init(seed_key, example_x)
    return {"params": params, "opt_state": optimizer.init(params)}

  def measure(params, data):
    logits, acts = model.apply(params, data["probe_x"])
    test_loss, test_accuracy = _loss_and_accuracy(logits, data["probe_y"])
    matrices = layer_matrices(cfg, probe, acts, data["rows"])
    # Every layer's spectrum in one call (on a CPU backend, over the host's cores).
    per_matrix = dimensionality.all_measures_many(matrices, measure_keys(cfg, len(matrices)),
                                                  cfg.twonn_samples)
    per_layer = {name: [values[name] for values in per_matrix] for name in MEASURE_NAMES}
    train_logits, _ = model.apply(params, data["train_probe_x"])
    train_loss, train_accuracy = _loss_and_accuracy(train_logits, data["train_probe_y"])
    series = {name: jnp.stack(values) for name, values in per_layer.items()}
    series.update(train_loss=train_loss, train_accuracy=train_accuracy, test_loss=test_loss,
                  test_accuracy=test_accuracy)
    return series

  def loss_fn(params, x, y):
    logits, _ = model.apply(params, x)
    return _loss_and_accuracy(logits, y)[0]

  def train_step(state, order_key, data, step):
    index_B = jax.random.randint(jax.random.fold_in(order_key, step), (cfg.batch_size,), 0,
                                 data["train_x"].shape[0])
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], data["train_x"][index_B],
                                              data["train_y"][index_B])
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state}, (loss, optax.global_norm(grads))

  def logits(params, x):
    return model.apply(params, x)[0]

  run_chunk = _make_chunk(cfg, measure, train_step)

  return DynamicsProgram(init=init, run_chunk=run_chunk, measure=measure, train_step=train_step,
                         logits=logits, chunk_blocks=chunk_blocks)


def _make_chunk(cfg: DynamicsConfig, measure: Callable, train_step: Callable) -> Callable:
  """`run_chunk(state, order_key, data, first_block, num_blocks=chunk_blocks)`: an outer scan over
  `num_blocks` blocks, each a measurement at the block's first step followed by an inner scan over
  `measure_every` updates.

  Per-measurement outputs get a leading block axis; per-update outputs a leading step axis (after any
  axes that `measure` and `train_step` put first, e.g. seeds).
  """

  def block(state, order_key, data, block_index):
    first_step = block_index * cfg.measure_every
    series = measure(state["params"], data) if cfg.measure else {}
    state, (batch_loss, grad_norm) = jax.lax.scan(
        lambda s, step: train_step(s, order_key, data, step), state,
        first_step + jnp.arange(cfg.measure_every))
    return state, (series, batch_loss, grad_norm)

  def run_chunk(state, order_key, data, first_block, num_blocks=cfg.chunk_blocks):
    state, (series, batch_loss, grad_norm) = jax.lax.scan(
        lambda s, b: block(s, order_key, data, b), state, first_block + jnp.arange(num_blocks))
    # Scan stacks blocks first: (blocks, ...) per measurement, (blocks, measure_every, ...) per update.
    out = dict(series)
    out["batch_loss"] = batch_loss.reshape((-1,) + batch_loss.shape[2:])
    out["grad_norm"] = grad_norm.reshape((-1,) + grad_norm.shape[2:])
    return state, out

  return run_chunk


@dataclasses.dataclass(frozen=True)
class VmappedProgram:
  """Jitted functions with a leading seed axis on state (data shared by all seeds)."""

  init: Callable
  run_chunk: Callable
  measure: Callable
  logits: Callable


def vmapped(cfg: DynamicsConfig, program: DynamicsProgram) -> VmappedProgram:
  """Jitted seed-axis versions of the program (state donated between chunks).

  Training steps are vmapped over seeds (data order shared or per seed). Measurements are mapped over
  seeds one at a time with `lax.map`: batching the LAPACK eigendecomposition over seeds inside the scan
  made XLA's CPU runtime hang now and then (jax 0.10), while one seed's probe forward pass is already a
  wide enough matmul to keep the cores busy. Outputs put the seed axis first.
  """
  chunk = sweep_chunk(cfg, program)
  return VmappedProgram(
      init=jax.jit(jax.vmap(program.init)),
      run_chunk=jax.jit(lambda state, order, data, first_block: chunk(state, order, data, first_block,
                                                                       cfg.chunk_blocks), donate_argnums=0),
      measure=jax.jit(lambda params_S, data: _measure_seeds(program, params_S, data)),
      logits=jax.jit(jax.vmap(program.logits, in_axes=(0, None))),
  )


def _measure_seeds(program: DynamicsProgram, params_S, data):
  return jax.lax.map(lambda params: program.measure(params, data), params_S)


def sweep_chunk(cfg: DynamicsConfig, program: DynamicsProgram) -> Callable:
  """chunk(state_S, order, data, first_block, num_blocks) -> (state_S, series with the seed axis first).

  The production chunk: training steps vmapped over seeds, measurements seed by seed (see `vmapped`).
  """
  order_axis = None if cfg.shared_data_order else 0
  step_seeds = jax.vmap(program.train_step, in_axes=(0, order_axis, None, None))
  chunk = _make_chunk(cfg, lambda params_S, data: _measure_seeds(program, params_S, data), step_seeds)

  def run(state, order_key, data, first_block, num_blocks):
    state, out = chunk(state, order_key, data, first_block, num_blocks)
    return state, {k: jnp.swapaxes(v, 0, 1) for k, v in out.items()}

  return run


def make_program(cfg: DynamicsConfig, prepared: "Prepared") -> loop.Program:
  """The configuration as a program of the one run loop: one phase "train" of `num_steps` steps.

  Its history holds every measurement at steps 0, measure_every, ..., num_steps - measure_every (the one
  at num_steps is taken from the final state) and every update's `batch_loss` (checked for NaN/Inf) and
  `grad_norm`.
  """
  chunk = sweep_chunk(cfg, prepared.program)

  def loop_chunk(state_S, keys_S, data, inputs, start_step, num_steps):
    del inputs
    return chunk(state_S, data_order(cfg, keys_S), data, start_step // cfg.measure_every, num_steps // cfg.measure_every)

  phase = loop.Phase(name="train", num_steps=cfg.num_steps, chunk=loop_chunk,
                     chunk_every=cfg.chunk_blocks * cfg.measure_every,
                     checkpoint_every=cfg.checkpoint_every or cfg.num_steps,
                     extra_checkpoints=tuple(cfg.extra_checkpoints), loss_metric="batch_loss")
  return loop.Program(study=f"dynamics {cfg.arch} on {cfg.dataset}",
                      init=lambda keys_S: jax.vmap(prepared.program.init)(keys_S["init"]),
                      phases=(phase,), data=prepared.data)


def loop_keys(cfg: DynamicsConfig) -> dict[str, jax.Array]:
  """Every seed's keys by purpose (seed axis first): init and its own data order."""
  return {"init": seed_keys(cfg), "data_order": seeds.seed_keys(cfg.seed, cfg.num_seeds, "data_order")}


@dataclasses.dataclass(frozen=True)
class Prepared:
  """One configuration ready to run on one device: program, jitted seed-axis functions and inputs."""

  model: Any
  probe: ProbeSets
  program: DynamicsProgram
  fns: VmappedProgram
  data: dict            # probe.arrays as device arrays
  keys: jax.Array       # (num_seeds,) seed keys
  order: jax.Array      # data-order key(s), see `data_order`


def prepare(cfg: DynamicsConfig, dataset: Dataset) -> Prepared:
  """Model, probe sets, program, jitted functions, data and keys of `cfg` on `dataset` (no sharding)."""
  model = build_model(cfg, dataset)
  probe = make_probe_sets(cfg, dataset, model)
  program = make_functions(cfg, model, probe)
  keys = loop_keys(cfg)
  return Prepared(model=model, probe=probe, program=program, fns=vmapped(cfg, program),
                  data=jax.tree.map(jnp.asarray, probe.arrays), keys=keys["init"], order=data_order(cfg, keys))


def make_train(cfg: DynamicsConfig, prepared: "Prepared"):
  """The whole run as one pure function of the seeds' keys (`loop.pure_train` of `make_program`): what
  the run loop cuts into chunks."""
  return loop.pure_train(make_program(cfg, prepared))
