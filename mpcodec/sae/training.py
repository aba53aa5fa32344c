"""Train Top-K / BatchTopK SAEs on your own activations in one call: several k and seeds in one program.

  result = train_sae(acts_TxD, SAETrainingConfig(sae=SAEConfig(num_latents=4096), steps=5000),
                     seeds=4, ks=(16, 32, 64), workdir="runs/my_sae")
  result.metrics[32]["fvu"]           # (4,): the FVU of each seed, on held-out rows
  save_saelens(result, "saelens/")    # one SAELens folder per (k, seed)

`acts_TxD` is any array of T tokens (rows) by D features: numpy, or an `np.memmap` larger than memory
(only batches are read). Before anything compiles, the config is validated (types, unknown keys and
every `checks()`; one ValueError naming the key), as are the ks, the seeds, the array's rank and the
batch size against its rows; the array is read once in chunks to refuse NaN/Inf, naming the first bad
row, and to fingerprint it. Then:

- rows: the last `eval_fraction` of the rows (at most `max_eval_tokens`) are held out for the metrics;
  training batches are drawn uniformly with replacement from the other rows, batch t from a generator
  seeded by (config.seed, t) alone, so a resumed run draws the same batches; every run shares them;
- runs: each (k, seed) pair is one run, k-major, all stacked on one axis and vmapped in ONE compiled
  program: k is a traced value (selection takes the static max(ks) largest entries and masks ranks
  >= k), so every run pays for the largest k's selection;
- seed i's initial weights come from the key (config.seed, i, "sae_init"): they depend neither on k nor
  on the other seeds trained beside it;
- training runs through the project's run loop (`mpcodec.core.loop`): lax.scan chunks, a NaN/Inf loss
  stops the run naming its step, k and seed, one progress bar; with a workdir, Orbax checkpoints go to
  `<workdir>/checkpoints/sae/` and the same call resumes from the latest (a different config or array
  is refused). Without one, the loop checkpoints into a temporary folder that is removed at the end;
- metrics, on the evaluation rows, through the inference rule of the SAELens export (Top-K per token;
  BatchTopK by its learned threshold): FVU = Σ||x - x̂||² / Σ||x - x̄||², L0 = mean active latents per
  token, dead fraction = the fraction of latents that never fire on those rows.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import configuration, loop, seeds as seeds_lib, workdir as workdir_lib
from mpcodec.core import progress as progress_lib
from mpcodec.core.errors import ConfigError, InterruptedRun, NonFiniteError
from mpcodec.sae import activation_rows, autoencoder, saelens
from mpcodec.sae.evaluation import evaluate, folded
from mpcodec.sae.autoencoder import SAEConfig

PHASE = "sae"
_NOT_TRAINING = ("chunk_steps", "checkpoint_every")   # how a run is cut, not what it computes


@dataclasses.dataclass(frozen=True)
class SAETrainingConfig:
  """Knobs of one `train_sae` call (the input width comes from the array).

  Attributes:
    sae: the SAE: dictionary size, k, activation, AuxK, optimizer.
    steps: optimizer steps.
    batch_size: rows per step.
    seed: base seed of the initial weights (with each seed index) and of the batch order.
    init_tokens: training rows sampled once to set the input scale and the decoder bias.
    eval_fraction: the last fraction of the rows, held out of training for the metrics (0: none).
    max_eval_tokens: at most this many evaluation rows (held out; or the first training rows if none is).
    chunk_steps: steps per compiled chunk between the host's checks (progress, NaN).
    checkpoint_every: steps between checkpoints in the workdir (0: only at the end).
  """

  sae: SAEConfig = SAEConfig()
  steps: int = 2000
  batch_size: int = 512
  seed: int = 0
  init_tokens: int = 4096
  eval_fraction: float = 0.1
  max_eval_tokens: int = 65_536
  chunk_steps: int = 100
  checkpoint_every: int = 500

  def checks(self):
    yield "steps", self.steps >= 1, f"must be >= 1, got {self.steps}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "seed", self.seed >= 0, f"must be >= 0, got {self.seed}"
    yield "init_tokens", self.init_tokens >= 1, f"must be >= 1, got {self.init_tokens}"
    yield "eval_fraction", 0.0 <= self.eval_fraction < 1.0, f"must lie in [0, 1), got {self.eval_fraction}"
    yield "max_eval_tokens", self.max_eval_tokens >= 1, f"must be >= 1, got {self.max_eval_tokens}"
    yield "chunk_steps", self.chunk_steps >= 1, f"must be >= 1, got {self.chunk_steps}"
    yield "checkpoint_every", self.checkpoint_every >= 0, f"must be >= 0, got {self.checkpoint_every}"
    yield from ((f"sae.{key}", ok, msg) for key, ok, msg in self.sae.checks())


@dataclasses.dataclass(frozen=True, eq=False)
class SAEResult:
  """The SAEs of every (k, seed) of one `train_sae` call, their metrics and their training history.

  Attributes:
    config: the config trained, its `sae.k` / `sae.k_grid` set to the ks.
    ks: the k values, in order.
    seeds: the seed indices (seed i's initial weights come from the key (config.seed, i, "sae_init")).
    params: {k: parameters stacked over seeds}: w_enc_NxD (S, N, D), b_enc_N (S, N), w_dec_NxD (S, N, D),
      b_dec_D (S, D); the input scale is folded in, so they act on raw activations.
    threshold: {k: (S,)} the BatchTopK inference threshold on raw activations (unused by Top-K).
    metrics: {k: {"fvu", "l0", "dead_fraction": (S,), "firing_counts": (S, N)}} on the evaluation rows.
    history: {k: {name: (S, steps)}} per-step metrics on the training batches (loss, fvu, l0, ...).
    eval_rows: (first, end) of the rows the metrics were computed on.
    eval_held_out: whether those rows were held out of training.
    compile_seconds, train_seconds: of the run loop in this call (0 steps trained when it resumed a
      finished run).
  """

  config: SAETrainingConfig
  ks: tuple[int, ...]
  seeds: tuple[int, ...]
  params: dict[int, dict[str, np.ndarray]]
  threshold: dict[int, np.ndarray]
  metrics: dict[int, dict[str, np.ndarray]]
  history: dict[int, dict[str, np.ndarray]]
  eval_rows: tuple[int, int]
  eval_held_out: bool
  compile_seconds: float
  train_seconds: float

  def _position(self, k: int, seed: int) -> int:
    if k not in self.params:
      raise ValueError(f"k: {k!r} was not trained; ks are {list(self.ks)}")
    if seed not in self.seeds:
      raise ValueError(f"seed: {seed!r} was not trained; seeds are {list(self.seeds)}")
    return self.seeds.index(seed)

  def state(self, k: int, seed: int) -> dict[str, Any]:
    """The inference state of one SAE (params, k, input scale 1, threshold), as `apply` and the Squeezer
    functions take it."""
    j = self._position(k, seed)
    return {"params": {name: value[j] for name, value in self.params[k].items()}, "k": np.int32(k),
            "input_scale": np.float32(1.0), "threshold": self.threshold[k][j]}

  def sae(self, k: int, seed: int, hook_name: str = "", model_name: str = "") -> saelens.SAELensSAE:
    """One SAE in the form a SAELens export holds (encode, decode), its metrics in the metadata."""
    j = self._position(k, seed)
    return saelens.from_state(self.state(k, seed), self.config.sae, hook_name, model_name,
                              self._metadata(k, j))

  def _metadata(self, k: int, j: int) -> dict[str, Any]:
    found = self.metrics[k]
    return {"seed_index": int(self.seeds[j]), "base_seed": self.config.seed, "steps": self.config.steps,
            "eval_rows": list(self.eval_rows), "eval_held_out": self.eval_held_out,
            **{name: float(found[name][j]) for name in ("fvu", "l0", "dead_fraction")}}

  def summary(self) -> str:
    """One line per (k, seed): FVU, L0 and dead fraction on the evaluation rows."""
    rows = "held-out" if self.eval_held_out else "training"
    lines = [f"{len(self.ks) * len(self.seeds)} SAEs of {self.config.sae.num_latents} latents; metrics on "
             f"{self.eval_rows[1] - self.eval_rows[0]} {rows} rows"]
    for k in self.ks:
      for j, seed in enumerate(self.seeds):
        m = self.metrics[k]
        lines.append(f"k={k} seed {seed}: FVU {m['fvu'][j]:.4f}  L0 {m['l0'][j]:.2f}  "
                     f"dead {100 * m['dead_fraction'][j]:.1f}%")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- validation


def _as_mapping(config: Any) -> dict[str, Any]:
  if isinstance(config, SAEConfig):
    return {"sae": configuration.to_dict(config)}
  if dataclasses.is_dataclass(config) and not isinstance(config, type):
    return configuration.to_dict(config)
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  if not isinstance(config, Mapping):
    raise ConfigError(f"config: expected an SAETrainingConfig, an SAEConfig or a mapping, got "
                      f"{type(config).__name__}")
  return {key: configuration.to_dict(value) for key, value in config.items()}


def _int_list(name: str, values: Any, minimum: int) -> list[int]:
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
    raise ValueError(f"{name}: expected a non-empty sequence of integers, got {values!r}")
  out = []
  for i, value in enumerate(values):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
      raise ValueError(f"{name}[{i}]: expected an integer >= {minimum}, got {value!r}")
    out.append(int(value))
  if len(set(out)) != len(out):
    raise ValueError(f"{name}: repeats a value: {out}")
  return out


def _seed_indices(seeds: Any) -> tuple[int, ...]:
  if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, (bool, np.bool_)):
    if seeds < 1:
      raise ValueError(f"seeds: expected a number of seeds >= 1 or a sequence of seed indices, got {seeds}")
    return tuple(range(int(seeds)))
  return tuple(_int_list("seeds", seeds, 0))


def validated_config(config: Any, ks: Sequence[int] | None = None) -> SAETrainingConfig:
  """`config` (an SAETrainingConfig, an SAEConfig or a mapping) checked in full, with `ks` (if given) as
  its k values; ConfigError (a ValueError) naming the first bad key, or `ks[i]`."""
  raw = _as_mapping(config)
  sae_raw = raw.get("sae", {})
  if ks is not None and isinstance(sae_raw, Mapping):   # (a malformed section is named by `parse`)
    values = _int_list("ks", ks, 1)
    num_latents = sae_raw.get("num_latents", SAEConfig.num_latents)
    for i, k in enumerate(values):
      if isinstance(num_latents, int) and k > num_latents:
        raise ConfigError(f"ks[{i}]: k={k} must lie in [1, config.sae.num_latents={num_latents}]")
    raw["sae"] = {**sae_raw, "k": values[0], "k_grid": values if len(values) > 1 else []}
  return configuration.parse(SAETrainingConfig, raw, "config")


# ----------------------------------------------------------------------------- the program


def run_keys(cfg: SAETrainingConfig, seed_indices: Sequence[int]) -> dict[str, jax.Array]:
  """Init keys and k of every run, k-major: run r has ks[r // S] and seed_indices[r % S]."""
  keys = seeds_lib.seed_keys(cfg.seed, list(seed_indices), "sae_init")
  ks = cfg.sae.k_values
  return {"init": jnp.tile(keys, (len(ks), 1)),
          "k": jnp.repeat(jnp.asarray(ks, jnp.int32), len(seed_indices))}


def sae_program(acts_TxD: np.ndarray, cfg: SAETrainingConfig, num_train: int) -> loop.Program:
  """Every run's SAE training as a program of the run loop; host batches are read per chunk."""
  sample_BxD = jnp.asarray(activation_rows.init_sample(acts_TxD, cfg.seed, cfg.init_tokens, num_train))
  sae_cfg, steps = cfg.sae, cfg.steps

  def init(keys):
    return jax.vmap(lambda key, k: autoencoder.init_state(key, sample_BxD, k, sae_cfg, steps))(
        keys["init"], keys["k"])

  step_fn = jax.vmap(lambda state, x_BxD: autoencoder.train_step(state, x_BxD, sae_cfg, steps),
                     in_axes=(0, None))

  def chunk(states, keys, data, inputs, start_step, num_steps):
    del keys, data, start_step, num_steps
    states, metrics = jax.lax.scan(step_fn, states, inputs)
    metrics.pop("batch_has_nan")   # The array was checked before training.
    return states, {name: jnp.swapaxes(values, 0, 1) for name, values in metrics.items()}

  def inputs(start: int, count: int) -> np.ndarray:
    out = np.empty((count, cfg.batch_size, acts_TxD.shape[1]), np.float32)
    for i in range(count):
      rows = activation_rows.batch_rows(cfg.seed, start + i, num_train, cfg.batch_size)
      out[i] = activation_rows.read_rows(acts_TxD, rows)
    return out

  phase = loop.Phase(name=PHASE, num_steps=steps, chunk=chunk, inputs=inputs, chunk_every=cfg.chunk_steps,
                     checkpoint_every=cfg.checkpoint_every or steps)
  return loop.Program(study="sae", init=init, phases=(phase,))


# ----------------------------------------------------------------------------- the one call


def train_sae(acts_TxD: Any, config: Any = SAETrainingConfig(), *, seeds: int | Sequence[int] = 1,
              ks: Sequence[int] | None = None, workdir: str | None = None, progress: bool = True,
              overwrite: bool = False) -> SAEResult:
  """Trains an SAE for every (k, seed) on the rows of `acts_TxD` in one compiled program; see the module
  docstring for the rows, the batches, the keys and the metrics.

  Args:
    acts_TxD: (T, D) activations, T tokens of D features: a numpy array or an np.memmap.
    config: an SAETrainingConfig, an SAEConfig (the rest default) or a mapping of their keys.
    seeds: a number of seeds (indices 0..S-1) or the seed indices to train.
    ks: the k values to train (default: config.sae.k, or config.sae.k_grid); they replace both.
    workdir: checkpoints go to <workdir>/checkpoints/sae/ and a second call resumes from them; None keeps
      no files.
    progress: show a progress bar.
    overwrite: with a workdir that holds checkpoints of another config or array, remove them instead of
      refusing.
  Returns:
    SAEResult: parameters per k stacked over seeds (acting on raw activations), metrics, history.
  Raises:
    ValueError naming the argument or config key (ConfigError, ActivationError are ValueErrors);
    NonFiniteError naming the step, k and seed whose loss became NaN/Inf.
  """
  acts = activation_rows.checked_array(acts_TxD)
  seed_indices = _seed_indices(seeds)
  cfg = validated_config(config, ks)
  num_train, eval_rows, held_out = activation_rows.eval_split(acts.shape[0], cfg.eval_fraction,
                                                              cfg.max_eval_tokens)
  if cfg.batch_size > num_train:
    held = f", {acts.shape[0] - num_train} held out by config.eval_fraction" if held_out else ""
    raise ConfigError(f"config.batch_size: {cfg.batch_size} is more than the {num_train} training rows of "
                      f"acts_TxD ({acts.shape[0]} rows{held})")
  fingerprint = activation_rows.scan_rows(acts)
  ks_trained = cfg.sae.k_values
  labels = [f"k={k} seed {s}" for k in ks_trained for s in seed_indices]
  trained = {key: value for key, value in configuration.to_dict(cfg).items() if key not in _NOT_TRAINING}
  guard = {"trainer": trained, "seeds": list(seed_indices),
           "data": {"shape": list(acts.shape), "fingerprint": fingerprint}}
  metadata = {"runs": [{"k": k, "seed_index": s} for k in ks_trained for s in seed_indices],
              "input_width": int(acts.shape[1])}
  program = sae_program(acts, cfg, num_train)
  keys = run_keys(cfg, seed_indices)

  def run(root):
    if not progress:
      return loop.run(program, keys, root, seed_labels=labels, config=guard, metadata=metadata,
                      overwrite=overwrite)
    with progress_lib.bar(cfg.steps, f"SAE ({len(ks_trained)} k x {len(seed_indices)} seeds)") as bar:
      return loop.run(program, keys, root, seed_labels=labels, config=guard, metadata=metadata,
                      progress=bar, overwrite=overwrite)

  if workdir is not None:
    with workdir_lib.locked(workdir):
      outcome = run(os.path.join(workdir, "checkpoints"))
  else:
    with tempfile.TemporaryDirectory(prefix="mpcodec_sae_") as root:
      try:
        outcome = run(root)
      except NonFiniteError as e:
        raise NonFiniteError(str(e).split("; the last good checkpoint")[0] + " (no workdir: nothing was kept)"
                             ) from None
      except InterruptedRun:
        raise InterruptedRun("train_sae: interrupted (no workdir: nothing was kept)") from None

  params_R, threshold_R = folded(outcome.state)
  found = evaluate(params_R, threshold_R, outcome.state["k"], acts, eval_rows, cfg.sae, cfg.batch_size)
  num_seeds = len(seed_indices)

  def by_k(tree):
    host = jax.tree.map(np.asarray, tree)
    return {k: jax.tree.map(lambda a, i=i: a[i * num_seeds:(i + 1) * num_seeds], host)
            for i, k in enumerate(ks_trained)}

  return SAEResult(config=cfg, ks=tuple(ks_trained), seeds=seed_indices, params=by_k(params_R),
                   threshold=by_k(threshold_R), metrics=by_k(found), history=by_k(outcome.history[PHASE]),
                   eval_rows=eval_rows, eval_held_out=held_out, compile_seconds=outcome.compile_seconds,
                   train_seconds=outcome.train_seconds)


# ----------------------------------------------------------------------------- SAELens


def run_name(k: int, seed: int) -> str:
  """The folder name of one (k, seed) SAE: "k32_seed0"."""
  return f"k{k}_seed{seed}"


def save_saelens(result: SAEResult, directory: str | os.PathLike, *, hook_name: str = "",
                 model_name: str = "") -> dict[str, str]:
  """Writes every SAE of `result` as a SAELens folder `<directory>/k<k>_seed<i>/` (cfg.json and
  sae_weights.safetensors); returns {name: folder}. `hook_name` and `model_name` go into each cfg's
  metadata (SAELens uses them to hook a model), beside the SAE's seed and metrics.
  """
  if not isinstance(result, SAEResult):
    raise TypeError(f"result: expected the SAEResult of train_sae, got {type(result).__name__}")
  out = {}
  for k in result.ks:
    for seed in result.seeds:
      name = run_name(k, seed)
      out[name] = saelens.save(os.path.join(os.fspath(directory), name),
                               result.sae(k, seed, hook_name, model_name))
  return out


def load_saelens(directory: str | os.PathLike) -> saelens.SAELensSAE:
  """Reads one SAELens folder (cfg.json, sae_weights.safetensors) into an SAE with encode and decode.

  Raises SAELensFormatError (a ValueError), one line naming the file and field of each problem: a
  missing file or field, a d_in or d_sae that is not a positive integer, an unknown architecture, an
  unimplemented normalisation, a missing or mis-shaped tensor, NaN/Inf weights.
  """
  return saelens.load(directory)
