"""Training and evaluation loops of the SAE and the Squeezer over an activation source.

Runs are the product (k value × seed) of the config, stacked on one leading axis and vmapped, so one
compiled program trains the whole grid; every run sees the same batches (they are generated or read
once per step and shared). The host runs chunks of `chunk_steps` steps under lax.scan and checks each
chunk for NaN; a ground-truth source generates its batches inside the compiled chunk.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import configuration
from mpcodec.core.checkpoint import CheckpointError, CheckpointStore
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import squeezer
from mpcodec.studies.codec.sources import (ActivationError, ActivationSource, GroundTruthSource, SourceConfig,
                                   check_finite, check_width, make_source)
from mpcodec.metrics import codec as codec_metrics
from mpcodec.studies.codec import report as codec_report
from mpcodec.core import seeds

State = dict[str, Any]
StepFn = Callable[[State, jax.Array], tuple[State, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Length and batching of one training loop."""

  steps: int = 2000
  batch_size: int = 512
  chunk_steps: int = 250
  init_batches: int = 4
  eval_batches: int = 8

  def checks(self):
    yield "steps", self.steps >= 1, f"must be >= 1, got {self.steps}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "chunk_steps", self.chunk_steps >= 1, f"must be >= 1, got {self.chunk_steps}"
    yield "init_batches", self.init_batches >= 1, f"must be >= 1, got {self.init_batches}"
    yield "eval_batches", self.eval_batches >= 1, f"must be >= 1, got {self.eval_batches}"


def run_keys(seed: int, num_seeds: int, k_values: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """Keys and k of every run, k-major: run r has k_values[r // num_seeds] and seed r % num_seeds.

  A seed's key does not depend on k, so runs that differ only in k start from the same weights.
  """
  keys = jnp.tile(seeds.seed_keys(seed, num_seeds, "sae_init"), (len(k_values), 1))
  ks = jnp.repeat(jnp.asarray(k_values, jnp.int32), num_seeds)
  return keys, ks


def host_batches(source: ActivationSource, batch_size: int, start_step: int, count: int) -> np.ndarray:
  """(count, B, D) host batches start_step..start_step+count-1, each checked for NaN."""
  stream = source.batches(batch_size, start_step)
  out = []
  for i in range(count):
    batch = next(stream)
    check_finite(batch, start_step + i)
    out.append(np.asarray(batch, np.float32))
  return np.stack(out)


class ChunkRunner:
  """Jitted lax.scan over chunks of steps of a vmapped step function, with NaN checks between chunks."""

  def __init__(self, step_fn: StepFn, source: ActivationSource, batch_size: int):
    self.step_fn = step_fn
    self.source = source
    self.batch_size = batch_size
    self.batch_fn = source.batch_fn(batch_size)
    self._compiled: dict[int, Callable] = {}

  def _chunk(self, num_steps: int) -> Callable:
    if num_steps not in self._compiled:
      if self.batch_fn is not None:
        def chunk(states, start_step):
          def body(states, step):
            return self.step_fn(states, self.batch_fn(step))
          return jax.lax.scan(body, states, start_step + jnp.arange(num_steps))
      else:
        def chunk(states, batches_CxBxD):
          return jax.lax.scan(self.step_fn, states, batches_CxBxD)
      self._compiled[num_steps] = jax.jit(chunk, donate_argnums=0)
    return self._compiled[num_steps]

  def run(self, states: State, start_step: int, num_steps: int) -> tuple[State, dict[str, np.ndarray]]:
    """Runs steps [start_step, start_step + num_steps); raises ActivationError on a NaN batch."""
    if self.batch_fn is not None:
      states, metrics = self._chunk(num_steps)(states, jnp.int32(start_step))
    else:
      batches = host_batches(self.source, self.batch_size, start_step, num_steps)
      states, metrics = self._chunk(num_steps)(states, jnp.asarray(batches))
    metrics = jax.tree.map(np.asarray, metrics)
    nan_steps = np.flatnonzero(metrics.pop("batch_has_nan").reshape(num_steps, -1).any(axis=-1))
    if nan_steps.size:
      raise ActivationError(f"activations contain NaN/Inf in batch index {start_step + int(nan_steps[0])}")
    return states, metrics


def train_loop(step_fn: StepFn, states: State, source: ActivationSource, loop: LoopConfig,
               on_chunk: Callable[[int], None] | None = None) -> tuple[State, dict[str, np.ndarray]]:
  """Trains for loop.steps steps in chunks; returns (states, history of (steps, runs) arrays)."""
  runner = ChunkRunner(step_fn, source, loop.batch_size)
  history: list[dict[str, np.ndarray]] = []
  step = 0
  while step < loop.steps:
    num_steps = min(loop.chunk_steps, loop.steps - step)
    states, metrics = runner.run(states, step, num_steps)
    history.append(metrics)
    step += num_steps
    if on_chunk is not None:
      on_chunk(num_steps)
  return states, {name: np.concatenate([h[name] for h in history]) for name in history[0]}


def init_batch(source: ActivationSource, loop: LoopConfig) -> jax.Array:
  """A data sample for init (input scale, decoder bias), from steps beyond the training stream."""
  start = 10 ** 8  # Far from training steps so the init sample is not a training batch.
  return jnp.asarray(host_batches(source, loop.batch_size, start, loop.init_batches).reshape(
      -1, source.width))


# ----------------------------------------------------------------------------- SAE


def init_sae_states(cfg: sae.SAEConfig, loop: LoopConfig, source: ActivationSource, seed: int,
                    num_seeds: int) -> State:
  """Stacked SAE train states of every (k, seed) run."""
  keys, ks = run_keys(seed, num_seeds, cfg.k_values)
  sample_BxD = init_batch(source, loop)
  init = jax.jit(jax.vmap(lambda key, k: sae.init_state(key, sample_BxD, k, cfg, loop.steps)))
  return init(keys, ks)


def sae_step_fn(cfg: sae.SAEConfig, total_steps: int) -> StepFn:
  return jax.vmap(lambda state, x: sae.train_step(state, x, cfg, total_steps), in_axes=(0, None))


def folded_sae_states(states: State) -> State:
  """Inference states on raw activations: input scale folded into the weights (scale becomes 1)."""
  def fold(state):
    params, threshold = sae.fold_input_scale(state["params"], state["input_scale"], state["threshold"])
    return {"params": params, "threshold": threshold, "k": state["k"],
            "input_scale": jnp.ones_like(state["input_scale"])}
  return jax.jit(jax.vmap(fold))(states)


def evaluate_sae(states: State, cfg: sae.SAEConfig, source: ActivationSource, loop: LoopConfig,
                 dense_above: float) -> dict[str, np.ndarray]:
  """Window metrics of every run on `eval_batches` held-out batches (per-run arrays).

  FVU is pooled over the window: Σ||x - x̂||² / Σ||x - x̄||² with x̄ the window mean.
  """
  @jax.jit
  def batch_stats(states, x_BxD):
    def one(state):
      x_hat_BxD, codes = sae.apply(state, x_BxD, cfg)
      acts_BxN = sae.dense_codes(codes, x_BxD.shape[0], cfg.num_latents)
      return codec_metrics.sum_squared_error(x_BxD, x_hat_BxD), codec_metrics.firing_counts(acts_BxN)
    return jax.vmap(one)(states)

  start = 2 * 10 ** 8  # Held-out steps, beyond training and init.
  errors, counts = 0.0, 0
  sum_x, sum_sq = 0.0, 0.0
  for i in range(loop.eval_batches):
    x_BxD = host_batches(source, loop.batch_size, start + i, 1)[0]
    error_R, counts_RxN = batch_stats(states, jnp.asarray(x_BxD))
    errors = errors + np.asarray(error_R, np.float64)
    counts = counts + np.asarray(counts_RxN, np.int64)
    sum_x = sum_x + x_BxD.astype(np.float64).sum(0)
    sum_sq = sum_sq + np.square(x_BxD.astype(np.float64)).sum()
  num_tokens = loop.eval_batches * loop.batch_size
  variance = sum_sq - np.square(sum_x).sum() / num_tokens
  counts_j = jnp.asarray(counts)
  hist, edges = jax.vmap(lambda c: codec_metrics.latent_density_histogram(c, num_tokens))(counts_j)
  return {
      "fvu": errors / variance,
      "l0": counts.sum(-1) / num_tokens,
      "dead_fraction": np.asarray(jax.vmap(codec_metrics.dead_fraction)(counts_j)),
      "dense_fraction": np.asarray(jax.vmap(
          lambda c: codec_metrics.dense_fraction(c, num_tokens, dense_above))(counts_j)),
      "firing_counts": counts,
      "num_tokens": np.asarray(num_tokens),
      "density_histogram": np.asarray(hist),
      "density_edges": np.asarray(edges[0]),
  }


def ground_truth_recovery(states: State, cfg: sae.SAEConfig, source: Any, batch_size: int
                          ) -> dict[str, np.ndarray]:
  """Recovery of a known dictionary: mean max cosine, Hungarian-matched cosine and correlation per run."""
  true_NxD = source.dictionary_NxD
  mmcs = jax.jit(jax.vmap(lambda w: codec_metrics.mean_max_cosine_similarity(w, true_NxD)))(
      states["params"]["w_dec_NxD"])
  x_BxD, f_BxN = source.sample(3 * 10 ** 8, batch_size)
  acts = jax.jit(jax.vmap(lambda s: sae.dense_codes(sae.apply(s, x_BxD, cfg)[1], batch_size,
                                                     cfg.num_latents)))(states)
  runs = acts.shape[0]
  return {
      "mean_max_cosine_similarity": np.asarray(mmcs),
      "matched_cosine_similarity": np.asarray([codec_metrics.matched_cosine_similarity(
          states["params"]["w_dec_NxD"][r], true_NxD) for r in range(runs)]),
      "matched_pair_correlation": np.asarray([codec_metrics.matched_pair_correlation(
          acts[r], f_BxN) for r in range(runs)]),
  }


# ----------------------------------------------------------------------------- Squeezer


def init_squeezer_states(squeezer_cfg: sae.SAEConfig, sae_states: State, sae_cfg: sae.SAEConfig,
                         loop: LoopConfig, source: ActivationSource, seed: int, num_seeds: int) -> State:
  """Stacked Squeezer train states, one per SAE run (same run order)."""
  runs = sae_states["k"].shape[0]
  # One Squeezer key per SAE run, drawn like the SAE's: by seed index, the same for every k.
  keys = jnp.tile(seeds.seed_keys(seed, num_seeds, "squeezer_init"), (runs // num_seeds, 1))
  sample_BxD = init_batch(source, loop)
  init = jax.jit(jax.vmap(lambda key, sae_state: squeezer.init_state(
      key, sae_state, sample_BxD, sae_cfg, squeezer_cfg, loop.steps)))
  return init(keys, sae_states)


def squeezer_step_fn(sae_states: State, sae_cfg: sae.SAEConfig, squeezer_cfg: sae.SAEConfig,
                     total_steps: int) -> StepFn:
  """Vmapped Squeezer step; the frozen SAE states are closed over (one per run)."""
  def step(states, x_BxD):
    return jax.vmap(lambda state, sae_state: squeezer.train_step(
        state, sae_state, x_BxD, sae_cfg, squeezer_cfg, total_steps))(states, sae_states)
  return step


def evaluate_squeezer(states: State, sae_states: State, sae_cfg: sae.SAEConfig,
                      squeezer_cfg: sae.SAEConfig, source: ActivationSource, loop: LoopConfig,
                      live_latents_RxN: np.ndarray) -> dict[str, np.ndarray]:
  """Window metrics of every Squeezer run: latent FVU, activation FVU, faithfulness, neurons."""
  @jax.jit
  def batch_stats(states, sae_states, x_BxD):
    def one(state, sae_state):
      out = squeezer.reconstructions(state, sae_state, x_BxD, sae_cfg, squeezer_cfg)
      z = out["latents"]
      return {
          "latent_error": codec_metrics.sum_squared_error(z, out["latents_hat"]),
          "latent_sum": jnp.sum(z, axis=0),
          "latent_sum_sq": jnp.sum(jnp.square(z)),
          "squeezed_error": codec_metrics.sum_squared_error(x_BxD, out["x_hat_squeezed"]),
          "sae_error": codec_metrics.sum_squared_error(x_BxD, out["x_hat_sae"]),
          "neuron_counts": codec_metrics.firing_counts(out["neurons"]),
      }
    return jax.vmap(one)(states, sae_states)

  start = 2 * 10 ** 8
  totals: dict[str, np.ndarray] = {}
  sum_x, sum_sq = 0.0, 0.0
  for i in range(loop.eval_batches):
    x_BxD = host_batches(source, loop.batch_size, start + i, 1)[0]
    stats = jax.tree.map(lambda a: np.asarray(a, np.float64), batch_stats(states, sae_states,
                                                                          jnp.asarray(x_BxD)))
    totals = {k: totals.get(k, 0.0) + v for k, v in stats.items()}
    sum_x = sum_x + x_BxD.astype(np.float64).sum(0)
    sum_sq = sum_sq + np.square(x_BxD.astype(np.float64)).sum()
  num_tokens = loop.eval_batches * loop.batch_size
  x_variance = sum_sq - np.square(sum_x).sum() / num_tokens
  latent_variance = totals["latent_sum_sq"] - np.square(totals["latent_sum"]).sum(-1) / num_tokens
  per_neuron = np.asarray(jax.vmap(codec_metrics.features_per_neuron)(
      states["params"]["w_enc_NxD"], jnp.asarray(live_latents_RxN)))
  neuron_counts = totals["neuron_counts"].astype(np.int64)
  return {
      "latent_fvu": totals["latent_error"] / latent_variance,
      "activation_fvu_through_squeezer": totals["squeezed_error"] / x_variance,
      "activation_fvu_sae_alone": totals["sae_error"] / x_variance,
      "faithfulness_ratio": totals["squeezed_error"] / totals["sae_error"],
      "features_per_neuron": per_neuron,
      "dead_neuron_fraction": (neuron_counts == 0).mean(-1),
      "neuron_firing_counts": neuron_counts,
      "num_tokens": np.asarray(num_tokens),
  }


# ----------------------------------------------------------------------------- the whole run


@dataclasses.dataclass(frozen=True)
class CodecConfig:
  """Every knob of a codec run: source, SAE, Squeezer and their loops.

  Attributes:
    seed: base seed; run keys are fold_in(PRNGKey(seed), seed index).
    num_seeds: seeds trained side by side (times the number of k values in sae.k_grid).
    dense_above: a latent firing on more than this fraction of tokens counts as dense.
    sae_checkpoint: directory of a saved SAE store (workdir/checkpoints/sae of an earlier run) to reuse
      instead of training one; its input width must match the source.
  """

  seed: int = 0
  num_seeds: int = 2
  dense_above: float = 0.1
  sae_checkpoint: str = ""
  source: SourceConfig = SourceConfig()
  sae: sae.SAEConfig = sae.SAEConfig()
  sae_loop: LoopConfig = LoopConfig()
  squeezer: squeezer.SqueezerConfig = squeezer.SqueezerConfig()
  squeezer_loop: LoopConfig = LoopConfig(steps=1000)

  def checks(self):
    yield "num_seeds", self.num_seeds >= 1, f"must be >= 1, got {self.num_seeds}"
    yield "dense_above", 0.0 < self.dense_above <= 1.0, f"must lie in (0, 1], got {self.dense_above}"


def parse_codec_config(cfg: Any) -> CodecConfig:
  """Validates a ConfigDict into a CodecConfig; raises ConfigError naming the key."""
  return configuration.parse(CodecConfig, cfg)


def check_against_width(cfg: CodecConfig, width: int) -> None:
  """Rules that need the source width (the Squeezer's default M); raises ConfigError naming the key."""
  configuration.check_values(cfg.squeezer.as_sae_config(width), "config.squeezer")


SAE_STORE = ("checkpoints", "sae")
SQUEEZER_STORE = ("checkpoints", "squeezer")


def save_states(directory: str, step: int, states: State, metadata: dict) -> None:
  """Saves stacked inference states (params, threshold, k, input_scale) with JSON metadata."""
  store = CheckpointStore(directory)
  store.save(step, jax.tree.map(np.asarray, states), metadata)
  store.close()


def load_sae(directory: str, step: int | None = None) -> tuple[State, sae.SAEConfig, dict]:
  """(stacked folded SAE states, SAEConfig, metadata) saved by `run_codec` (latest step by default)."""
  store = CheckpointStore(directory)
  steps = store.all_steps()
  if not steps:
    raise CheckpointError(f"no SAE checkpoint in {store.directory}")
  step = steps[-1] if step is None else step
  metadata = store.restore_metadata(step)
  sae_cfg = configuration.parse(sae.SAEConfig, metadata["sae"], "sae_checkpoint.sae")
  runs, width = int(metadata["num_runs"]), int(metadata["input_width"])
  n = sae_cfg.num_latents
  template = {
      "params": {"w_enc_NxD": np.zeros((runs, n, width), np.float32), "b_enc_N": np.zeros((runs, n), np.float32),
                 "w_dec_NxD": np.zeros((runs, n, width), np.float32), "b_dec_D": np.zeros((runs, width), np.float32)},
      "threshold": np.zeros(runs, np.float32), "k": np.zeros(runs, np.int32),
      "input_scale": np.zeros(runs, np.float32)}
  states = store.restore(step, template)
  store.close()
  return jax.tree.map(jnp.asarray, states), sae_cfg, metadata


def run_codec(cfg: CodecConfig, workdir: str, on_chunk: Callable[[int], None] | None = None
              ) -> dict[str, Any]:
  """Trains (or loads) the SAE, then the Squeezer, saves both and writes metrics, plots and report.md."""
  source = make_source(cfg.source)
  check_against_width(cfg, source.width)
  sae_cfg, sae_history = cfg.sae, None
  if cfg.sae_checkpoint:
    sae_final, sae_cfg, sae_meta = load_sae(cfg.sae_checkpoint)
    check_width(source.width, int(sae_meta["input_width"]), f"the SAE saved in {cfg.sae_checkpoint}")
    num_seeds = int(sae_meta["num_seeds"])
  else:
    num_seeds = cfg.num_seeds
    states = init_sae_states(sae_cfg, cfg.sae_loop, source, cfg.seed, num_seeds)
    states, sae_history = train_loop(sae_step_fn(sae_cfg, cfg.sae_loop.steps), states, source,
                                     cfg.sae_loop, on_chunk)
    sae_final = folded_sae_states(states)
  runs = int(sae_final["k"].shape[0])
  run_labels = [{"k": int(k), "seed_index": r % num_seeds} for r, k in enumerate(np.asarray(sae_final["k"]))]
  metadata = {"sae": configuration.to_dict(sae_cfg), "config": configuration.to_dict(cfg),
              "input_width": source.width, "num_runs": runs, "num_seeds": num_seeds,
              "runs": run_labels, "source": source.description}
  if not cfg.sae_checkpoint:
    save_states(os.path.join(workdir, *SAE_STORE), cfg.sae_loop.steps, sae_final, metadata)

  sae_metrics = evaluate_sae(sae_final, sae_cfg, source, cfg.sae_loop, cfg.dense_above)
  if isinstance(source, GroundTruthSource):
    sae_metrics.update(ground_truth_recovery(sae_final, sae_cfg, source, cfg.sae_loop.batch_size))

  squeezer_cfg = cfg.squeezer.as_sae_config(source.width)
  sq_states = init_squeezer_states(squeezer_cfg, sae_final, sae_cfg, cfg.squeezer_loop, source, cfg.seed,
                                   num_seeds)
  sq_states, sq_history = train_loop(
      squeezer_step_fn(sae_final, sae_cfg, squeezer_cfg, cfg.squeezer_loop.steps), sq_states, source,
      cfg.squeezer_loop, on_chunk)
  live_latents = sae_metrics["firing_counts"] > 0
  sq_metrics = evaluate_squeezer(sq_states, sae_final, sae_cfg, squeezer_cfg, source, cfg.squeezer_loop,
                                 live_latents)
  save_states(os.path.join(workdir, *SQUEEZER_STORE), cfg.squeezer_loop.steps,
              folded_sae_states(sq_states), dict(metadata, squeezer=configuration.to_dict(squeezer_cfg)))

  return codec_report.write_codec_outputs(
      workdir, cfg=configuration.to_dict(cfg), source_description=source.description, run_labels=run_labels,
      sae_metrics=sae_metrics, sae_history=sae_history, squeezer_metrics=sq_metrics,
      squeezer_history=sq_history, num_neurons=squeezer_cfg.num_latents)
