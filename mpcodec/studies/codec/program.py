"""The codec's training programs: the SAE and the Squeezer of every (k, seed) run as programs of the one
run loop (`loop.Program`), their keys, batch streams and a pure call of each for notebooks and tests.

Runs are the product (k value × seed) of the config, stacked on one leading axis and vmapped, so one
compiled program trains the whole grid; every run sees the same batches (they are generated or read
once per step and shared). The run loop cuts the steps into chunks of `chunk_steps` under lax.scan and
checks each chunk for NaN; a ground-truth source generates its batches inside the compiled chunk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import configuration, loop, seeds
from mpcodec.core.checkpoint import CheckpointError, CheckpointStore
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import squeezer
from mpcodec.studies.codec import streams
from mpcodec.studies.codec.config import CodecConfig, LoopConfig, squeezer_config
from mpcodec.studies.codec.sources import ActivationSource, check_finite

State = dict[str, Any]
StepFn = Callable[[State, jax.Array], tuple[State, dict[str, jax.Array]]]

def run_keys(seed: int, num_seeds: int, k_values: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """Keys and k of every run, k-major: run r has k_values[r // num_seeds] and seed r % num_seeds.

  A seed's key does not depend on k, so runs that differ only in k start from the same weights.
  """
  keys = jnp.tile(seeds.seed_keys(seed, num_seeds, "sae_init"), (len(k_values), 1))
  ks = jnp.repeat(jnp.asarray(k_values, jnp.int32), num_seeds)
  return keys, ks



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


def stage_phase(name: str, step_fn: StepFn, source: ActivationSource, loop_cfg: LoopConfig) -> loop.Phase:
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


def init_batch(source: ActivationSource, loop_cfg: LoopConfig) -> jax.Array:
  """A data sample for init (input scale, decoder bias), from steps beyond the training stream."""
  return jnp.asarray(host_batches(source, loop_cfg.batch_size, streams.INIT_SAMPLE_START, loop_cfg.init_batches,
                                  "the init sample, batch", first_label=0).reshape(-1, source.width))



# ----------------------------------------------------------------------------- SAE


def sae_program(cfg: sae.SAEConfig, loop_cfg: LoopConfig, source: ActivationSource, name: str = "sae"
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


def train_sae(cfg: sae.SAEConfig, loop_cfg: LoopConfig, source: ActivationSource, seed: int,
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
                   loop_cfg: LoopConfig, source: ActivationSource, seed: int, num_seeds: int
                   ) -> tuple[State, dict[str, np.ndarray]]:
  """(Squeezer train states, history) of every (K, SAE run) as one pure call (see `train_sae`)."""
  program = squeezer_program(squeezer_cfg, sae_states, sae_cfg, loop_cfg, source)
  runs = int(sae_states["k"].shape[0]) * len(squeezer_k_values(squeezer_cfg))
  state, history = jax.jit(loop.pure_sweep(program))(squeezer_keys(seed, num_seeds, runs))
  return state["squeezer"], history_by_step(history["squeezer"])


def squeezer_program(squeezer_cfg: sae.SAEConfig, sae_states: State, sae_cfg: sae.SAEConfig,
                     loop_cfg: LoopConfig, source: ActivationSource, name: str = "squeezer",
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
                              loop_cfg: LoopConfig, source: ActivationSource, seed: int, num_seeds: int,
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



def make_program(cfg: CodecConfig, source: ActivationSource, sae_states: State | None = None,
                 sae_cfg: sae.SAEConfig | None = None) -> loop.Program:
  """The codec's SAE program, or with folded `sae_states` (of `sae_cfg`) its main Squeezer program."""
  if sae_states is None:
    return sae_program(cfg.sae, cfg.sae_loop, source)
  return squeezer_program(squeezer_config(cfg, source.width), sae_states, sae_cfg or cfg.sae, cfg.squeezer_loop,
                          source)


def make_train(cfg: CodecConfig, source: ActivationSource, sae_states: State | None = None,
               sae_cfg: sae.SAEConfig | None = None):
  """The stage as one pure function of the seeds' keys (`loop.pure_train` of `make_program`): what the
  run loop cuts into chunks."""
  return loop.pure_train(make_program(cfg, source, sae_states, sae_cfg))
