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
from absl import logging

from mpcodec.core import configuration, loop
from mpcodec.core.checkpoint import CheckpointError, CheckpointStore
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import saelens, squeezer
from mpcodec.sae.training import run_name
from mpcodec.data.toy_features import ThemeConfig
from mpcodec.studies.codec.sources import (ActivationSource, GroundTruthConfig, GroundTruthSource, SourceConfig,
                                           check_finite, check_width, make_source)
from mpcodec.metrics import codec as codec_metrics
from mpcodec.studies.codec import analysis, dead_latents
from mpcodec.studies.codec import report as codec_report
from mpcodec.core import memory, seeds

State = dict[str, Any]
StepFn = Callable[[State, jax.Array], tuple[State, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Length and batching of one training loop."""

  steps: int = 2000
  batch_size: int = 512
  chunk_steps: int = 250
  checkpoint_every: int = 500   # steps between mid-run checkpoints (0: only at the end)
  init_batches: int = 4
  eval_batches: int = 8

  def checks(self):
    yield "steps", self.steps >= 1, f"must be >= 1, got {self.steps}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "chunk_steps", self.chunk_steps >= 1, f"must be >= 1, got {self.chunk_steps}"
    yield "checkpoint_every", self.checkpoint_every >= 0, f"must be >= 0, got {self.checkpoint_every}"
    yield "init_batches", self.init_batches >= 1, f"must be >= 1, got {self.init_batches}"
    yield "eval_batches", self.eval_batches >= 1, f"must be >= 1, got {self.eval_batches}"


def run_keys(seed: int, num_seeds: int, k_values: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """Keys and k of every run, k-major: run r has k_values[r // num_seeds] and seed r % num_seeds.

  A seed's key does not depend on k, so runs that differ only in k start from the same weights.
  """
  keys = jnp.tile(seeds.seed_keys(seed, num_seeds, "sae_init"), (len(k_values), 1))
  ks = jnp.repeat(jnp.asarray(k_values, jnp.int32), num_seeds)
  return keys, ks


# Streams of batches beyond the training steps: the init sample and the held-out evaluation window.
INIT_SAMPLE_START = 10 ** 8
EVAL_START = 2 * 10 ** 8


def host_batches(source: ActivationSource, batch_size: int, start_step: int, count: int,
                 what: str = "batch index", first_label: int | None = None) -> np.ndarray:
  """(count, B, D) host batches start_step..start_step+count-1, each checked for NaN/Inf.

  A bad batch is named `what` and its number counted from `first_label` (default: its step), so an
  error names the user's batch, not an internal stream offset.
  """
  stream = source.batches(batch_size, start_step)
  first_label = start_step if first_label is None else first_label
  out = []
  for i in range(count):
    batch = next(stream)
    check_finite(batch, first_label + i, what)
    out.append(np.asarray(batch, np.float32))
  return np.stack(out)


def stage_chunk(step_fn: StepFn, batch_fn: Callable | None) -> loop.Chunk:
  """A loop chunk of a codec stage: `step_fn` over steps' batches, generated on the device by `batch_fn`
  (ground truth) or read on the host (the chunk's inputs, step axis first). Metrics come out (runs, steps)."""

  def chunk(states, keys, data, inputs, start_step, num_steps):
    del keys, data
    if batch_fn is not None:
      def body(states, step):
        x_BxD = batch_fn(step)
        states, metrics = step_fn(states, x_BxD)
        metrics.setdefault("batch_has_nan", jnp.broadcast_to(~jnp.all(jnp.isfinite(x_BxD)),
                                                             metrics["loss"].shape))
        return states, metrics
      states, metrics = jax.lax.scan(body, states, start_step + jnp.arange(num_steps))
    else:
      states, metrics = jax.lax.scan(step_fn, states, inputs)
      metrics.pop("batch_has_nan", None)  # Host batches are checked before they are sent.
    return states, {name: jnp.swapaxes(values, 0, 1) for name, values in metrics.items()}

  return chunk


def stage_phase(name: str, step_fn: StepFn, source: ActivationSource, loop_cfg: "LoopConfig") -> loop.Phase:
  """One codec stage (SAE or Squeezer) as a phase of the one run loop."""
  batch_fn = source.batch_fn(loop_cfg.batch_size)
  inputs = None if batch_fn is not None else (
      lambda start, count: host_batches(source, loop_cfg.batch_size, start, count))
  return loop.Phase(name=name, num_steps=loop_cfg.steps, chunk=stage_chunk(step_fn, batch_fn), inputs=inputs,
                    chunk_every=loop_cfg.chunk_steps, checkpoint_every=loop_cfg.checkpoint_every or loop_cfg.steps,
                    bad_input_metric="batch_has_nan" if batch_fn is not None else None)


def history_by_step(history: dict[str, Any]) -> dict[str, np.ndarray]:
  """A stage's loop history as host arrays shaped (steps, runs), without the input-check flag."""
  return {name: np.swapaxes(np.asarray(values), 0, 1) for name, values in history.items()
          if name != "batch_has_nan"}


def init_batch(source: ActivationSource, loop_cfg: "LoopConfig") -> jax.Array:
  """A data sample for init (input scale, decoder bias), from steps beyond the training stream."""
  return jnp.asarray(host_batches(source, loop_cfg.batch_size, INIT_SAMPLE_START, loop_cfg.init_batches,
                                  "the init sample, batch", first_label=0).reshape(-1, source.width))


# ----------------------------------------------------------------------------- SAE


def sae_program(cfg: sae.SAEConfig, loop_cfg: "LoopConfig", source: ActivationSource, name: str = "sae"
                ) -> loop.Program:
  """SAE training of every (k, seed) run as a program of the one run loop (keys: `sae_keys`)."""
  sample_BxD = init_batch(source, loop_cfg)

  def init(keys):
    return jax.vmap(lambda key, k: sae.init_state(key, sample_BxD, k, cfg, loop_cfg.steps))(keys["init"], keys["k"])

  phase = stage_phase(name, sae_step_fn(cfg, loop_cfg.steps), source, loop_cfg)
  return loop.Program(study="codec", init=init, phases=(phase,))


def sae_keys(cfg: sae.SAEConfig, seed: int, num_seeds: int) -> dict[str, jax.Array]:
  """Per-run init keys and k of every (k, seed) run, k-major (see `run_keys`)."""
  keys, ks = run_keys(seed, num_seeds, cfg.k_values)
  return {"init": keys, "k": ks}


def train_sae(cfg: sae.SAEConfig, loop_cfg: "LoopConfig", source: ActivationSource, seed: int,
              num_seeds: int) -> tuple[State, dict[str, np.ndarray]]:
  """(SAE train states, history of (steps, runs) arrays) of every (k, seed) run as one pure call: the
  program `run_codec` trains in checkpointed chunks, for notebooks and tests (no files)."""
  state, history = jax.jit(loop.pure_sweep(sae_program(cfg, loop_cfg, source)))(sae_keys(cfg, seed, num_seeds))
  return state, history_by_step(history["sae"])


def run_names(ks: Any, num_seeds: int) -> list[str]:
  """How errors name each run: its k and seed index."""
  return [f"k={int(k)} seed {r % num_seeds}" for r, k in enumerate(np.asarray(ks))]


def sae_step_fn(cfg: sae.SAEConfig, total_steps: int) -> StepFn:
  return jax.vmap(lambda state, x: sae.train_step(state, x, cfg, total_steps), in_axes=(0, None))


def folded_sae_states(states: State) -> State:
  """Inference states on raw activations: input scale folded into the weights (scale becomes 1)."""
  def fold(state):
    params, threshold = sae.fold_input_scale(state["params"], state["input_scale"], state["threshold"])
    return {"params": params, "threshold": threshold, "k": state["k"],
            "input_scale": jnp.ones_like(state["input_scale"])}
  return jax.jit(jax.vmap(fold))(states)


def write_saelens(workdir: str, sae_states: State, sae_cfg: sae.SAEConfig, run_labels: list[dict],
                  hook_name: str, model_name: str = "", source_description: str = "") -> dict[str, str]:
  """Every SAE run as a SAELens folder <workdir>/saelens/k<k>_seed<i>/ (cfg.json, sae_weights.safetensors);
  returns {name: folder}. Without the safetensors package (the [lm] extra) it writes nothing and warns."""
  names = [run_name(label["k"], label["seed_index"]) for label in run_labels]
  metadata = [{"seed_index": label["seed_index"], "source": source_description} for label in run_labels]
  try:
    return saelens.save_runs(os.path.join(workdir, "saelens"), sae_states, sae_cfg, names, hook_name, model_name,
                             metadata)
  except ImportError as e:
    logging.warning("%s; the SAEs are not written in SAELens' format", e)
    return {}


def evaluate_sae(states: State, cfg: sae.SAEConfig, source: ActivationSource, loop_cfg: LoopConfig,
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

  errors, counts = 0.0, 0
  sum_x, sum_sq = 0.0, 0.0
  for i in range(loop_cfg.eval_batches):
    x_BxD = host_batches(source, loop_cfg.batch_size, EVAL_START + i, 1, "the evaluation window, batch", i)[0]
    error_R, counts_RxN = batch_stats(states, jnp.asarray(x_BxD))
    errors = errors + np.asarray(error_R, np.float64)
    counts = counts + np.asarray(counts_RxN, np.int64)
    sum_x = sum_x + x_BxD.astype(np.float64).sum(0)
    sum_sq = sum_sq + np.square(x_BxD.astype(np.float64)).sum()
  num_tokens = loop_cfg.eval_batches * loop_cfg.batch_size
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


def squeezer_keys(seed: int, num_seeds: int, runs: int, shuffle: bool = False) -> dict[str, jax.Array]:
  """One Squeezer key per Squeezer run, drawn like the SAE's: by seed index, the same for every k and K.

  `shuffle` adds the shuffled-latent null's keys ("shuffle"); its init keys are the trained Squeezer's, so
  the null starts from the same weights and differs only in the co-firing it sees.
  """
  keys = {"init": jnp.tile(seeds.seed_keys(seed, num_seeds, "squeezer_init"), (runs // num_seeds, 1))}
  if shuffle:
    keys["shuffle"] = jnp.tile(seeds.seed_keys(seed, num_seeds, "squeezer_shuffle"), (runs // num_seeds, 1))
  return keys


def squeezer_k_values(squeezer_cfg: sae.SAEConfig) -> tuple[int, ...]:
  """The Squeezer K values trained side by side (its `k_grid`, else its one `k`)."""
  return squeezer_cfg.k_values


def tile_runs(tree: Any, times: int) -> Any:
  """Every leaf repeated `times` times along its leading (run) axis: [r0, r1, .., r0, r1, ..]."""
  return jax.tree.map(lambda a: jnp.tile(a, (times,) + (1,) * (a.ndim - 1)), tree)


def train_squeezer(squeezer_cfg: sae.SAEConfig, sae_states: State, sae_cfg: sae.SAEConfig,
                   loop_cfg: "LoopConfig", source: ActivationSource, seed: int, num_seeds: int
                   ) -> tuple[State, dict[str, np.ndarray]]:
  """(Squeezer train states, history) of every (K, SAE run) as one pure call (see `train_sae`)."""
  program = squeezer_program(squeezer_cfg, sae_states, sae_cfg, loop_cfg, source)
  runs = int(sae_states["k"].shape[0]) * len(squeezer_k_values(squeezer_cfg))
  state, history = jax.jit(loop.pure_sweep(program))(squeezer_keys(seed, num_seeds, runs))
  return state["squeezer"], history_by_step(history["squeezer"])


def squeezer_program(squeezer_cfg: sae.SAEConfig, sae_states: State, sae_cfg: sae.SAEConfig,
                     loop_cfg: "LoopConfig", source: ActivationSource, name: str = "squeezer",
                     shuffle_latents: bool = False) -> loop.Program:
  """Squeezer training of every (K, SAE run) as a program of the one run loop, K-major.

  Squeezer run q has K = K_values[q // R] and squeezes SAE run q % R (R SAE runs); K is traced (its
  `k_grid` sets the static k_max), so one compiled program trains every K. Its state is {"squeezer":
  train state, "sae": the frozen (folded) SAE state of the same run}, so a checkpoint holds everything a
  resumed run needs. `shuffle_latents` trains the shuffled-latent null instead: every step, each SAE
  latent's column is permuted over the batch's tokens on its own (`shuffled_over_tokens`, keys
  {"shuffle"} per run in the state), which keeps every latent's firing rate and code values and removes
  co-firing.
  """
  sample_BxD = init_batch(source, loop_cfg)
  k_values = squeezer_k_values(squeezer_cfg)
  sae_runs = tile_runs(sae_states, len(k_values))
  squeezer_ks = jnp.repeat(jnp.asarray(k_values, jnp.int32), int(sae_states["k"].shape[0]))

  def init(keys):
    states = jax.vmap(lambda key, sae_state, k: dict(squeezer.init_state(
        key, sae_state, sample_BxD, sae_cfg, squeezer_cfg, loop_cfg.steps), k=k))(
            keys["init"], sae_runs, squeezer_ks)
    carry = {"squeezer": states, "sae": sae_runs}
    return dict(carry, shuffle=keys["shuffle"]) if shuffle_latents else carry

  def shuffled_step(state, sae_state, shuffle_key, x_BxD):
    latents_BxN = shuffled_over_tokens(jax.random.fold_in(shuffle_key, state["step"]),
                                       squeezer.latent_vector(sae_state, x_BxD, sae_cfg))
    state, metrics = sae.train_step(state, latents_BxN, squeezer_cfg, loop_cfg.steps)
    metrics["batch_has_nan"] = ~jnp.all(jnp.isfinite(x_BxD))
    return state, metrics

  def step(states, x_BxD):
    if shuffle_latents:
      new, metrics = jax.vmap(lambda state, sae_state, key: shuffled_step(state, sae_state, key, x_BxD))(
          states["squeezer"], states["sae"], states["shuffle"])
    else:
      new, metrics = jax.vmap(lambda state, sae_state: squeezer.train_step(
          state, sae_state, x_BxD, sae_cfg, squeezer_cfg, loop_cfg.steps))(states["squeezer"], states["sae"])
    return dict(states, squeezer=new), metrics

  return loop.Program(study="codec", init=init, phases=(stage_phase(name, step, source, loop_cfg),))


def shuffled_over_tokens(key: jax.Array, latents_BxN: jax.Array) -> jax.Array:
  """Each column of `latents_BxN` permuted over the B tokens on its own: the rows in one random order, then
  column n rotated by its own random offset s_n (a permutation per column, O(B N); a sort per column
  cost ~30x more). Every latent keeps its values and firing rate; two latents meet on the same token only
  where their offsets are equal (probability 1/B per pair and batch), so co-firing is destroyed."""
  key_rows, key_offsets = jax.random.split(key)
  num_tokens, num_latents = latents_BxN.shape
  rows_B = jax.random.permutation(key_rows, num_tokens)
  offset_N = jax.random.randint(key_offsets, (num_latents,), 0, num_tokens)
  source_BxN = rows_B[(jnp.arange(num_tokens)[:, None] + offset_N[None, :]) % num_tokens]
  return jnp.take_along_axis(latents_BxN, source_BxN, axis=0)


def untrained_squeezer_states(squeezer_cfg: sae.SAEConfig, sae_states: State, sae_cfg: sae.SAEConfig,
                              loop_cfg: "LoopConfig", source: ActivationSource, seed: int, num_seeds: int,
                              count: int) -> State | None:
  """`count` random-init Squeezers per Squeezer run (the untrained null), stacked (count, runs, ...): the
  same shape, K and initialisation as the trained ones (`squeezer_program`'s init), from keys of their own
  (purpose "squeezer_untrained", init i folded in). None when count is 0."""
  if count < 1:
    return None
  program = squeezer_program(squeezer_cfg, sae_states, sae_cfg, loop_cfg, source)
  runs = int(sae_states["k"].shape[0]) * len(squeezer_k_values(squeezer_cfg))
  base_S = seeds.seed_keys(seed, num_seeds, "squeezer_untrained")
  init = jax.jit(program.init)
  states = [init({"init": jnp.tile(jax.vmap(lambda key: jax.random.fold_in(key, i))(base_S),
                                   (runs // num_seeds, 1))})["squeezer"] for i in range(count)]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def evaluate_squeezer(states: State, sae_states: State, sae_cfg: sae.SAEConfig,
                      squeezer_cfg: sae.SAEConfig, source: ActivationSource, loop_cfg: LoopConfig,
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

  totals: dict[str, np.ndarray] = {}
  sum_x, sum_sq = 0.0, 0.0
  for i in range(loop_cfg.eval_batches):
    x_BxD = host_batches(source, loop_cfg.batch_size, EVAL_START + i, 1, "the evaluation window, batch", i)[0]
    stats = jax.tree.map(lambda a: np.asarray(a, np.float64), batch_stats(states, sae_states,
                                                                          jnp.asarray(x_BxD)))
    totals = {k: totals.get(k, 0.0) + v for k, v in stats.items()}
    sum_x = sum_x + x_BxD.astype(np.float64).sum(0)
    sum_sq = sum_sq + np.square(x_BxD.astype(np.float64)).sum()
  num_tokens = loop_cfg.eval_batches * loop_cfg.batch_size
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
  """Every knob of a codec run: source, SAE, Squeezer, their loops, and the analyses after them.

  Attributes:
    seed: base seed; run keys are fold_in(PRNGKey(seed), seed index).
    num_seeds: seeds trained side by side (times the number of k values in sae.k_grid).
    dense_above: a latent firing on more than this fraction of tokens counts as dense.
    sae_checkpoint: directory of a saved SAE store (workdir/checkpoints/sae of an earlier run) to reuse
      instead of training one; its input width must match the source.
    squeezer_k_grid: Squeezer K values trained side by side in one program (empty: `squeezer.k` alone);
      every analysis is reported per K.
    tax_width_factors: widths M = factor × layer width of the extra Squeezers trained for the
      superposition-tax sweep (one program each, the K values of the grid that fit); the main
      Squeezer's width is always in the sweep.
    shuffled_latent_squeezer: also train the shuffled-latent null, the main Squeezer stage again on SAE
      latents whose columns are permuted over tokens independently (stage "squeezer_shuffled", the same
      init keys); the analyses test every truth-table and co-activation finding against it.
    smoke: a smoke run (the `:smoke` preset): its report says so at the top and gives no verdict.
    analysis: the compression-rule analyses after the Squeezer (`analysis.AnalysisConfig`).
    dead_latents: the earlier study's dead-latent setting, trained when `dead_latents.enabled`.
  """

  seed: int = 0
  num_seeds: int = 2
  dense_above: float = 0.1
  sae_checkpoint: str = ""
  squeezer_k_grid: tuple[int, ...] = ()
  tax_width_factors: tuple[float, ...] = (0.25, 0.5, 2.0)
  shuffled_latent_squeezer: bool = True
  smoke: bool = False
  source: SourceConfig = SourceConfig()
  sae: sae.SAEConfig = sae.SAEConfig()
  sae_loop: LoopConfig = LoopConfig()
  squeezer: squeezer.SqueezerConfig = squeezer.SqueezerConfig()
  squeezer_loop: LoopConfig = LoopConfig(steps=1000)
  analysis: analysis.AnalysisConfig = analysis.AnalysisConfig()
  dead_latents: dead_latents.DeadLatentsConfig = dead_latents.DeadLatentsConfig()

  def checks(self):
    yield "num_seeds", self.num_seeds >= 1, f"must be >= 1, got {self.num_seeds}"
    yield "dense_above", 0.0 < self.dense_above <= 1.0, f"must lie in (0, 1], got {self.dense_above}"
    for i, k in enumerate(self.squeezer_k_grid):
      yield f"squeezer_k_grid[{i}]", k >= 1, f"must be >= 1, got {k}"
    yield "squeezer_k_grid", len(set(self.squeezer_k_grid)) == len(self.squeezer_k_grid), (
        f"repeats a value: {self.squeezer_k_grid}")
    for i, factor in enumerate(self.tax_width_factors):
      yield f"tax_width_factors[{i}]", factor > 0, f"must be > 0, got {factor}"


def parse_codec_config(cfg: Any) -> CodecConfig:
  """Validates a ConfigDict into a CodecConfig; raises ConfigError naming the key."""
  return configuration.parse(CodecConfig, cfg)


def squeezer_config(cfg: CodecConfig, width: int, num_neurons: int | None = None) -> sae.SAEConfig:
  """The Squeezer as an SAEConfig of `num_neurons` neurons (default: its M), K grid included."""
  base = cfg.squeezer.as_sae_config(width)
  if num_neurons is not None:
    base = dataclasses.replace(base, num_latents=num_neurons, aux_k=min(base.aux_k, num_neurons))
  return dataclasses.replace(base, k_grid=tuple(cfg.squeezer_k_grid))


def check_against_width(cfg: CodecConfig, width: int) -> None:
  """Rules that need the source width (the Squeezer's default M); raises ConfigError naming the key."""
  configuration.check_values(cfg.squeezer.as_sae_config(width), "config.squeezer")
  num_neurons = cfg.squeezer.resolved_num_neurons(width)
  for i, k in enumerate(cfg.squeezer_k_grid):
    if k > num_neurons:
      raise configuration.ConfigError(
          f"config.squeezer_k_grid[{i}]: K={k} must be <= the Squeezer's num_neurons={num_neurons}")
  # Every run of a stage is vmapped into one step: its batch x (inputs + latents) per run, before compiling.
  sae_runs = cfg.num_seeds * max(1, len(cfg.sae.k_grid))
  for key, loop_cfg, runs, units in (
      ("sae_loop.batch_size", cfg.sae_loop, sae_runs, width + cfg.sae.num_latents),
      ("squeezer_loop.batch_size", cfg.squeezer_loop, sae_runs * max(1, len(cfg.squeezer_k_grid)),
       cfg.sae.num_latents + num_neurons)):
    memory.check_fits(key, memory.estimate_bytes(runs, loop_cfg.batch_size, units),
                      f"a step of {runs} runs on {loop_cfg.batch_size} rows x {units} units")


def tax_widths(cfg: CodecConfig, width: int) -> list[int]:
  """The extra Squeezer widths of the tax sweep: round(factor × width), without the main one, ascending."""
  main = cfg.squeezer.resolved_num_neurons(width)
  return sorted({max(1, round(f * width)) for f in cfg.tax_width_factors} - {main})


def checkpoint_root(workdir: str) -> str:
  """The stages' checkpoints: <workdir>/checkpoints/sae/<step> and <workdir>/checkpoints/squeezer/<step>."""
  return os.path.join(workdir, "checkpoints")


# Knobs that change how a stage executes or what is computed after it, not its trained states.
_NOT_TRAINING = ("dense_above", "chunk_steps", "checkpoint_every", "eval_batches", "analysis", "smoke",
                 "shuffled_latent_squeezer")


def _training_only(config: Any) -> Any:
  if isinstance(config, dict):
    return {k: _training_only(v) for k, v in config.items() if k not in _NOT_TRAINING}
  return config


def sae_training_config(cfg: CodecConfig) -> dict:
  """What decides the SAE stage's trained states (checkpoints of another value are another run's)."""
  config = _training_only(configuration.to_dict(cfg))
  return {k: config[k] for k in ("seed", "num_seeds", "source", "sae", "sae_loop")}


def squeezer_training_config(cfg: CodecConfig, num_neurons: int | None = None) -> dict:
  """What decides a Squeezer stage's trained states: its own knobs and everything the SAE depends on
  (a tax-sweep stage adds its width; the other stages' knobs are not part of it)."""
  config = _training_only(configuration.to_dict(cfg))
  config = {k: v for k, v in config.items() if k not in ("tax_width_factors", "dead_latents")}
  return config if num_neurons is None else dict(config, tax_num_neurons=num_neurons)


def load_sae(directory: str, step: int | None = None) -> tuple[State, sae.SAEConfig, dict]:
  """(stacked folded SAE states, SAEConfig, metadata) from an SAE stage's checkpoints (latest step by
  default), restored as saved: no config or source is needed to read them."""
  if not os.path.isdir(directory):
    raise CheckpointError(f"no SAE checkpoint folder {directory}")
  store = CheckpointStore(directory)
  try:
    step = store.step_or_latest(step, "SAE checkpoint")
    metadata = store.restore_metadata(step)
    if "sae" not in metadata or metadata.get("step") != metadata.get("sae_steps"):
      raise CheckpointError(f"{store.directory} step {step} is not a finished SAE (train it to the end first)")
    sae_cfg = configuration.parse(sae.SAEConfig, metadata["sae"], "sae_checkpoint.sae")
    states = store.restore_as_saved(step)["state"]
  finally:
    store.close()
  return folded_sae_states(jax.tree.map(jnp.asarray, states)), sae_cfg, metadata


def train_squeezer_stages(cfg: CodecConfig, source: ActivationSource, sae_states: State, sae_cfg: sae.SAEConfig,
                          run_labels: list[dict], num_seeds: int, root: str, progress: Any, overwrite: bool
                          ) -> tuple[list, dict[int, str]]:
  """The main Squeezer (the configured width, first) and one per tax-sweep width: (trained stages, {width:
  why a stage was skipped}). The main stage carries its nulls: `untrained_states`
  (`analysis.untrained_squeezers` random inits per run) and, with `shuffled_latent_squeezer`, `shuffled`
  (the shuffled-latent Squeezer, trained after it)."""
  main_width = cfg.squeezer.resolved_num_neurons(source.width)
  stages, skipped = [], {}
  for num_neurons in [main_width] + tax_widths(cfg, source.width):
    stage = train_squeezer_stage(cfg, source, sae_states, sae_cfg, run_labels, num_seeds, num_neurons,
                                 num_neurons == main_width and not stages, root, progress, overwrite)
    if isinstance(stage, str):
      skipped[num_neurons] = stage
    else:
      stages.append(stage)
      if len(stages) == 1:
        stage.untrained_states = untrained_squeezer_states(stage.cfg, sae_states, sae_cfg, cfg.squeezer_loop, source,
                                                           cfg.seed, num_seeds, cfg.analysis.untrained_squeezers)
        if cfg.shuffled_latent_squeezer:
          stage.shuffled = train_squeezer_stage(cfg, source, sae_states, sae_cfg, run_labels, num_seeds,
                                                num_neurons, True, root, progress, overwrite, shuffle_latents=True)
  return stages, skipped


def train_squeezer_stage(cfg: CodecConfig, source: ActivationSource, sae_states: State, sae_cfg: sae.SAEConfig,
                         sae_labels: list[dict], num_seeds: int, num_neurons: int, main: bool, root: str,
                         progress: Any = None, overwrite: bool = False, shuffle_latents: bool = False
                         ) -> analysis.SqueezerStage | str:
  """Trains (or resumes, or loads) one Squeezer stage of `num_neurons` neurons over every SAE run.

  The main stage is "squeezer"; a tax-sweep stage is "squeezer_m<M>" and trains the grid's K values
  that fit in M; `shuffle_latents` (with `main`) trains the main stage's shuffled-latent null,
  "squeezer_shuffled". Returns the stage, or the reason it was not trained (no K fits).
  """
  full = squeezer_config(cfg, source.width, num_neurons)
  k_values = tuple(k for k in full.k_values if k <= num_neurons)
  if not k_values:
    return f"no Squeezer K of {list(full.k_values)} fits in M={num_neurons} neurons"
  squeezer_cfg = dataclasses.replace(full, k=k_values[0], k_grid=k_values if len(k_values) > 1 else ())
  sae_runs = int(sae_states["k"].shape[0])
  labels = [dict(sae_labels[q % sae_runs], squeezer_k=int(k)) for q, k in
            enumerate(np.repeat(np.asarray(k_values), sae_runs))]
  name = ("squeezer_shuffled" if shuffle_latents else "squeezer") if main else f"squeezer_m{num_neurons}"
  program = squeezer_program(squeezer_cfg, sae_states, sae_cfg, cfg.squeezer_loop, source, name=name,
                             shuffle_latents=shuffle_latents)
  config = squeezer_training_config(cfg, None if main else num_neurons)
  outcome = loop.run(program, squeezer_keys(cfg.seed, num_seeds, len(labels), shuffle=shuffle_latents), root,
                     seed_labels=[f"k={r['k']} K={r['squeezer_k']} seed {r['seed_index']}" for r in labels],
                     config=dict(config, shuffled_latents=True) if shuffle_latents else config,
                     metadata={"squeezer": configuration.to_dict(squeezer_cfg), "num_runs": len(labels),
                               "runs": labels, "source": source.description},
                     progress=progress, overwrite=overwrite)
  return analysis.SqueezerStage(
      name=name, num_neurons=num_neurons, cfg=squeezer_cfg, states=outcome.state["squeezer"],
      sae_run=np.arange(len(labels)) % sae_runs, labels=labels,
      history=history_by_step(outcome.history[name]))


def train_dead_latent_setting(cfg: CodecConfig, root: str, progress: Any = None, overwrite: bool = False
                              ) -> dict[str, Any]:
  """Trains the earlier study's dead-latent setting (one SAE program per AuxK value) and summarizes it."""
  setting = cfg.dead_latents
  source = GroundTruthSource(GroundTruthConfig(
      num_atoms=setting.num_concepts, dim=setting.dim, k_true=setting.concepts_per_token,
      noise_std=setting.noise_std, seed=cfg.source.ground_truth.seed, themes=ThemeConfig()))
  loop_cfg = dataclasses.replace(cfg.sae_loop, steps=setting.steps, batch_size=setting.batch_size,
                                 eval_batches=setting.eval_batches)
  counts, num_tokens = {}, 0
  for aux_k in setting.aux_k_values:
    sae_cfg = dataclasses.replace(cfg.sae, num_latents=setting.num_latents, k=setting.k, k_grid=(), aux_k=aux_k)
    keys = sae_keys(sae_cfg, cfg.seed, setting.num_seeds)
    name = f"dead_latents_aux{aux_k}"
    outcome = loop.run(sae_program(sae_cfg, loop_cfg, source, name=name), keys, root,
                       seed_labels=[f"aux_k={aux_k} seed {s}" for s in range(setting.num_seeds)],
                       config={"dead_latents": configuration.to_dict(setting), "sae": configuration.to_dict(sae_cfg),
                               "sae_loop": _training_only(configuration.to_dict(loop_cfg)), "seed": cfg.seed},
                       metadata={"source": source.description}, progress=progress, overwrite=overwrite)
    found = evaluate_sae(folded_sae_states(outcome.state), sae_cfg, source, loop_cfg, cfg.dense_above)
    counts[aux_k] = found["firing_counts"]
    num_tokens = int(found["num_tokens"])
  return dict(dead_latents.summarize(setting, counts, num_tokens, smoke=cfg.smoke), source=source.description)


def run_codec(cfg: CodecConfig, workdir: str, progress: Any = None, overwrite: bool = False) -> dict[str, Any]:
  """Trains (or loads) the SAE, then the Squeezers, through the one run loop; analyses them; writes
  metrics, the atlas, plots and the report.

  Each stage checkpoints as it trains and resumes from its latest checkpoint; a finished stage is not
  trained again, and a finished analysis of the same inputs is read back. `overwrite` removes
  checkpoints of another config instead of refusing them.
  """
  source = make_source(cfg.source)
  check_against_width(cfg, source.width)
  root = checkpoint_root(workdir)
  sae_cfg, sae_history = cfg.sae, None
  if cfg.sae_checkpoint:
    sae_final, sae_cfg, sae_meta = load_sae(cfg.sae_checkpoint)
    check_width(source.width, int(sae_meta["input_width"]), f"the SAE saved in {cfg.sae_checkpoint}")
    num_seeds = int(sae_meta["num_seeds"])
  else:
    num_seeds = cfg.num_seeds
    keys = sae_keys(sae_cfg, cfg.seed, num_seeds)
    metadata = {"sae": configuration.to_dict(sae_cfg), "full_config": configuration.to_dict(cfg),
                "input_width": source.width, "num_runs": int(keys["k"].shape[0]), "num_seeds": num_seeds,
                "runs": [{"k": int(k), "seed_index": r % num_seeds} for r, k in enumerate(np.asarray(keys["k"]))],
                "source": source.description, "sae_steps": cfg.sae_loop.steps}
    outcome = loop.run(sae_program(sae_cfg, cfg.sae_loop, source), keys, root,
                       seed_labels=run_names(keys["k"], num_seeds), config=sae_training_config(cfg),
                       metadata=metadata, progress=progress, overwrite=overwrite)
    sae_final = folded_sae_states(outcome.state)
    sae_history = history_by_step(outcome.history["sae"])
  run_labels = [{"k": int(k), "seed_index": r % num_seeds} for r, k in enumerate(np.asarray(sae_final["k"]))]
  write_saelens(workdir, sae_final, sae_cfg, run_labels,
                hook_name=cfg.source.layer if cfg.source.kind == "checkpoint" else "ground_truth",
                source_description=source.description)

  sae_metrics = evaluate_sae(sae_final, sae_cfg, source, cfg.sae_loop, cfg.dense_above)
  if isinstance(source, GroundTruthSource):
    sae_metrics.update(ground_truth_recovery(sae_final, sae_cfg, source, cfg.sae_loop.batch_size))

  stages, skipped = train_squeezer_stages(cfg, source, sae_final, sae_cfg, run_labels, num_seeds, root,
                                          progress, overwrite)
  main = stages[0]
  live_latents = sae_metrics["firing_counts"] > 0
  sq_metrics = evaluate_squeezer(main.states, tile_runs(sae_final, len(main.cfg.k_values)), sae_cfg, main.cfg,
                                 source, cfg.squeezer_loop, np.tile(live_latents, (len(main.cfg.k_values), 1)))
  dead_payload = (train_dead_latent_setting(cfg, root, progress, overwrite) if cfg.dead_latents.enabled
                  else None)
  analysis_payload = analysis.analyze(
      workdir, cfg.analysis, source=source, sae_states=sae_final, sae_cfg=sae_cfg, sae_labels=run_labels,
      stages=stages, skipped_widths=skipped, sae_metrics=sae_metrics, squeezer_metrics=sq_metrics,
      dead_latents_payload=dead_payload, primary_squeezer_k=cfg.squeezer.k,
      ultra_rare_below=cfg.dead_latents.ultra_rare_below, smoke=cfg.smoke,
      inputs_config=dict(squeezer_training_config(cfg), tax_width_factors=list(cfg.tax_width_factors),
                         dead_latents=configuration.to_dict(cfg.dead_latents)))
  return codec_report.write_codec_outputs(
      workdir, cfg=configuration.to_dict(cfg), source_description=source.description, run_labels=run_labels,
      sae_metrics=sae_metrics, sae_history=sae_history, squeezer_metrics=sq_metrics,
      squeezer_history=main.history, num_neurons=main.num_neurons, squeezer_labels=main.labels,
      analysis_payload=analysis_payload)
