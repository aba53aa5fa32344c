"""The dynamics sweep: a grid of architecture x dataset configurations, each trained on all seeds at once.

`run_seeds` trains one configuration (seed axis vmapped, chunks of the nested scan between host checks)
and `run_sweep` walks a grid, skipping configurations already finished. Each configuration writes
`<workdir>/dynamics/<arch>__<dataset>.npz` (series with a seed axis first, opens with numpy alone) and
then `<arch>__<dataset>.json` (config, layers, steps, final accuracies, flags). The JSON is written last
and atomically, so its presence with a matching config marks the configuration as finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import configuration, sharding
from mpcodec.core.errors import NonFiniteError, SweepError
from mpcodec.data.dataset import Dataset
from mpcodec.core import io
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics.program import DynamicsConfig, ProbeSets

FAMILIES = ("mlp", "cnn", "transformer")




@dataclasses.dataclass
class RunResult:
  """Everything one configuration produced (numpy; seed axis first)."""

  steps: np.ndarray                  # (M,) true steps of the measurements
  update_steps: np.ndarray           # (T,) steps of the per-update series
  series: dict[str, np.ndarray]      # measures (S, M, L), scalars (S, M), per-update (S, T)
  final_test_accuracy: np.ndarray    # (S,) on `final_eval_size` held-out examples
  final_eval_size: int
  probe: ProbeSets
  params: Any                        # final parameters, seed axis first
  compile_seconds: float
  run_seconds: float


def _signature(tree) -> tuple:
  """Hashable shapes, dtypes and tree structure of a pytree of arrays (a compile-cache key part)."""
  leaves, treedef = jax.tree.flatten(tree)
  return (str(treedef),) + tuple((tuple(x.shape), str(x.dtype)) for x in leaves)


def run_seeds(cfg: DynamicsConfig, dataset: Dataset, mesh=None,
              on_chunk: Callable[[int, int], None] | None = None,
              cache: dict | None = None) -> RunResult:
  """Trains all seeds of one configuration chunk by chunk; raises NonFiniteError on NaN/Inf loss.

  `on_chunk(steps_done, num_steps)` is called after each chunk (progress bars). `mesh` (from
  `mpcodec.core.sharding.seed_mesh`) shards the seed axis over devices; None keeps one device. `cache` (a
  dict kept by the caller) reuses compiled programs across configurations with the same architecture,
  config and input shapes (MNIST and Fashion-MNIST share one).
  """
  cache = {} if cache is None else cache
  prepared = dynamics.prepare(cfg, dataset)
  probe = prepared.probe
  data = sharding.replicate(prepared.data, mesh)
  keys = sharding.shard_seeds(prepared.keys, mesh)
  data_order = prepared.order if cfg.shared_data_order else sharding.shard_seeds(prepared.order, mesh)

  start = time.perf_counter()
  # What the traced program depends on besides the arrays' values: the config without the dataset
  # name, the model's output size and input kind, the measured layers and every array's shape.
  cache_key = (dataclasses.replace(cfg, dataset=""), dataset.kind, dataset.num_classes,
               dataset.vocab_size, dataset.max_length, probe.layer_names, probe.layer_layouts,
               _signature(data), None if mesh is None else tuple(mesh.devices.shape))
  # The state is placed seed-sharded explicitly: jit may choose another layout for init's output, and
  # the AOT-compiled functions accept only the shardings they were lowered with.
  if cache_key not in cache:
    fns = prepared.fns
    state = sharding.shard_seeds(fns.init(keys), mesh)
    run_chunk = fns.run_chunk.lower(state, data_order, data, jnp.int32(0)).compile()
    measure = fns.measure.lower(state["params"], data).compile() if cfg.measure else None
    cache[cache_key] = (prepared.program, fns, run_chunk, measure)
  program, fns, run_chunk, measure = cache[cache_key]
  state = jax.block_until_ready(sharding.shard_seeds(fns.init(keys), mesh))
  compile_seconds = time.perf_counter() - start

  start = time.perf_counter()
  chunks = []
  steps_per_chunk = program.chunk_blocks * cfg.measure_every
  for chunk_index in range(cfg.num_steps // steps_per_chunk):
    state, out = run_chunk(state, data_order, data, jnp.int32(chunk_index * program.chunk_blocks))
    out = jax.device_get(out)
    bad = ~np.isfinite(out["batch_loss"])
    if bad.any():
      seed, step = np.argwhere(bad)[0]
      raise NonFiniteError(f"{cfg.arch} on {cfg.dataset}: loss is {out['batch_loss'][seed, step]} at "
                          f"step {chunk_index * steps_per_chunk + step} on seed {seed}")
    chunks.append(out)
    if on_chunk is not None:
      on_chunk((chunk_index + 1) * steps_per_chunk, cfg.num_steps)
  # Chunk outputs carry (S, blocks, ...) per measurement and (S, steps) per update.
  series = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}
  if cfg.measure:
    final = jax.device_get(measure(state["params"], data))
    for k, v in final.items():
      series[k] = np.concatenate([series[k], v[:, None]], axis=1)
  final_accuracy, eval_size = evaluate(cfg, fns.logits, state["params"], dataset)
  run_seconds = time.perf_counter() - start
  return RunResult(steps=cfg.measured_steps, update_steps=np.arange(cfg.num_steps, dtype=np.int32),
                   series=series, final_test_accuracy=final_accuracy, final_eval_size=eval_size,
                   probe=probe, params=jax.device_get(state["params"]),
                   compile_seconds=compile_seconds, run_seconds=run_seconds)


def evaluate(cfg: DynamicsConfig, logits_fn: Callable, params, dataset: Dataset) -> tuple[np.ndarray, int]:
  """Per-seed accuracy on the held-out split (a fixed `final_eval_size` subset if set), in batches.

  `logits_fn(params, x)` maps seed-stacked params and one batch to (S, batch, classes) logits.
  """
  rng = np.random.default_rng(cfg.data_seed + 1)
  size = dataset.num_test if cfg.final_eval_size == 0 else min(cfg.final_eval_size, dataset.num_test)
  index = np.arange(size) if size == dataset.num_test else np.sort(
      rng.choice(dataset.num_test, size=size, replace=False))
  x, y = dataset.test_x[index], dataset.test_y[index]
  correct = 0
  for start in range(0, size, cfg.eval_batch_size):
    x_batch = x[start:start + cfg.eval_batch_size]
    num_real = x_batch.shape[0]
    if num_real < cfg.eval_batch_size:
      # Pad to one static batch shape so the evaluation compiles once.
      x_batch = np.concatenate([x_batch, np.repeat(x_batch[:1], cfg.eval_batch_size - num_real, 0)])
    predictions = np.asarray(jnp.argmax(logits_fn(params, jnp.asarray(x_batch)), axis=-1))
    correct = correct + (predictions[:, :num_real] == y[start:start + num_real]).sum(axis=1)
  return np.asarray(correct, np.float64) / size, size


# ----------------------------------------------------------------------------------------------------
# The grid.


@dataclasses.dataclass(frozen=True)
class FamilySettings:
  """Per-family knobs of the grid (model cost differs by orders of magnitude between families)."""

  batch_size: int = 64
  probe_size: int = 512
  train_probe_size: int = 256
  learning_rate: float = 1e-3
  warmup_steps: int = 0
  final_eval_size: int = 0
  measurements_per_chunk: int = 0   # measurements per host call; 0 = the base config's

  def checks(self):
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "probe_size", self.probe_size >= 3, f"must be >= 3, got {self.probe_size}"
    yield "train_probe_size", self.train_probe_size >= 1, f"must be >= 1, got {self.train_probe_size}"
    yield "learning_rate", self.learning_rate > 0, f"must be > 0, got {self.learning_rate}"
    yield "warmup_steps", self.warmup_steps >= 0, f"must be >= 0, got {self.warmup_steps}"
    yield "final_eval_size", self.final_eval_size >= 0, f"must be >= 0, got {self.final_eval_size}"
    yield ("measurements_per_chunk", self.measurements_per_chunk >= 0,
           f"must be >= 0 (0 = the base config's), got {self.measurements_per_chunk}")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """A grid of `arch@dataset` runs sharing `base` (whose arch and dataset are replaced per run)."""

  runs: tuple[str, ...] = ("mlp_128_64@mnist",)
  base: DynamicsConfig = DynamicsConfig()
  mlp: FamilySettings = FamilySettings()
  cnn: FamilySettings = FamilySettings()
  transformer: FamilySettings = FamilySettings()
  fail_margin: float = 0.1          # a seed below chance + margin counts as failed
  text_accuracy_target: float = 0.75   # held-out accuracy asked of every text run (flagged if missed)
  plots: bool = True

  def checks(self):
    yield "runs", len(self.runs) >= 1, "must name at least one arch@dataset run"
    yield "runs", len(set(self.runs)) == len(self.runs), f"has duplicates: {list(self.runs)}"
    for index, run in enumerate(self.runs):
      arch, _, dataset = run.partition("@")
      yield f"runs[{index}]", bool(arch) and bool(dataset), f"must read 'arch@dataset', got {run!r}"
      yield f"runs[{index}]", family_of(arch) in FAMILIES, (
          f"architecture {arch!r} belongs to no family of {FAMILIES}")
      # Names are checked against the zoo and the registry through the run's own config.
      try:
        configuration.check_values(dataclasses.replace(self.base, arch=arch, dataset=dataset))
      except configuration.ConfigError as e:
        yield f"runs[{index}]", False, str(e).split(": ", 1)[-1]
    yield "fail_margin", 0 <= self.fail_margin < 1, f"must lie in [0, 1), got {self.fail_margin}"
    yield ("text_accuracy_target", 0 <= self.text_accuracy_target <= 1,
           f"must lie in [0, 1], got {self.text_accuracy_target}")


def family_of(arch: str) -> str:
  """'mlp', 'cnn' or 'transformer' from the architecture name's prefix."""
  return arch.split("_", 1)[0]


def run_config(sweep: SweepConfig, run: str) -> DynamicsConfig:
  """The full config of one `arch@dataset` run: base + its family's settings."""
  arch, _, dataset = run.partition("@")
  family: FamilySettings = getattr(sweep, family_of(arch))
  optim = dataclasses.replace(sweep.base.optim, learning_rate=family.learning_rate,
                              warmup_steps=family.warmup_steps)
  cfg = dataclasses.replace(sweep.base, arch=arch, dataset=dataset, batch_size=family.batch_size,
                            probe_size=family.probe_size, train_probe_size=family.train_probe_size,
                            final_eval_size=family.final_eval_size, optim=optim)
  if family.measurements_per_chunk:
    cfg = dataclasses.replace(cfg, measurements_per_chunk=family.measurements_per_chunk)
  configuration.check_values(cfg, f"config for {run}")
  return cfg


def select_runs(runs: tuple[str, ...], archs: str = "", datasets: str = "") -> tuple[str, ...]:
  """Runs whose arch / dataset is in the comma- or '+'-separated lists (empty list = all)."""
  def names(text):
    return {n for n in text.replace("+", ",").split(",") if n}
  wanted_archs, wanted_datasets = names(archs), names(datasets)
  selected = tuple(r for r in runs
                   if (not wanted_archs or r.partition("@")[0] in wanted_archs)
                   and (not wanted_datasets or r.partition("@")[2] in wanted_datasets))
  return selected


def training_order(runs: Sequence[str]) -> list[str]:
  """The order runs train in: by architecture, then dataset, so one architecture's compiled programs are
  reused by its runs one after another."""
  return sorted(runs, key=lambda r: (r.partition("@")[0], r.partition("@")[2]))


def parse_shard(text: str) -> tuple[int, int]:
  """'I/N' (1 <= I <= N) -> (I, N); ValueError naming the expected form otherwise."""
  index, sep, count = text.partition("/")
  try:
    index_value, count_value = int(index), int(count)
  except ValueError:
    index_value = count_value = 0
  if not sep or not 1 <= index_value <= count_value:
    raise ValueError(f"shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/2 and 2/2 for two processes")
  return index_value, count_value


def forward_flops(cfg: DynamicsConfig) -> float:
  """The model's forward FLOPs on one example of `cfg.dataset`: XLA's cost analysis of the lowered
  forward pass, from the registry's shapes (no data are loaded)."""
  from mpcodec.data import registry  # pylint: disable=g-import-not-at-top
  info = registry.DATASETS[cfg.dataset]
  model = dynamics.model_for(cfg, info.kind, info.num_classes, cfg.vocab_size, cfg.max_length)
  if info.kind == "text":
    example = jax.ShapeDtypeStruct((1, cfg.max_length), jnp.int32)
  else:
    example = jax.ShapeDtypeStruct((1,) + tuple(info.example_shape), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), example)
  analysis = jax.jit(model.apply).lower(params, example).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis["flops"])


def _train_examples(cfg: DynamicsConfig) -> int:
  """Example passes of training, all seeds: 3 x batch per update (forward and backward)."""
  return 3 * cfg.batch_size * cfg.num_steps * cfg.num_seeds


def _measure_examples(cfg: DynamicsConfig) -> int:
  """Example passes of the measurements, all seeds: both probes forward at every measurement."""
  return cfg.num_measurements * (cfg.probe_size + cfg.train_probe_size) * cfg.num_seeds


def estimated_cost(cfg: DynamicsConfig, flops: float | None = None) -> float:
  """A run's relative cost, for balancing shards: `forward_flops` (or `flops`, if already at hand) times
  the example passes of training and measurement, for all seeds.

  The spectra of a measurement are left out; they matter for the cheap MLPs only.
  """
  flops = forward_flops(cfg) if flops is None else flops
  return flops * (_train_examples(cfg) + _measure_examples(cfg))


def estimated_costs(sweep: SweepConfig) -> dict[str, float]:
  """`estimated_cost` of every run of the sweep."""
  return {run: estimated_cost(run_config(sweep, run)) for run in sweep.runs}


def forward_overhead(cfg: DynamicsConfig) -> float:
  """Measurement's forward passes over training's, in FLOPs of the same model: num_measurements x
  (probe + train probe) examples forward against 3 x batch x steps (forward and backward); the spectra
  and TwoNN come on top."""
  return _measure_examples(cfg) / _train_examples(cfg)


def batch_for_overhead(cfg: DynamicsConfig, overhead: float) -> float:
  """The batch size at which `forward_overhead(cfg)` equals `overhead` (it falls as 1 / batch)."""
  return forward_overhead(cfg) * cfg.batch_size / overhead


def flop_budget(sweep: SweepConfig) -> dict[str, dict[str, float]]:
  """Per family: {'runs', 'train', 'measure'}, the FLOPs of training and of the measurements' forward
  passes summed over the sweep's runs (`estimated_cost`; spectra and TwoNN not counted)."""
  budget: dict[str, dict[str, float]] = {}
  for run in sweep.runs:
    cfg = run_config(sweep, run)
    flops = forward_flops(cfg)
    entry = budget.setdefault(family_of(cfg.arch), {"runs": 0, "train": 0.0, "measure": 0.0})
    entry["runs"] += 1
    entry["train"] += flops * _train_examples(cfg)
    entry["measure"] += flops * _measure_examples(cfg)
  return budget


def family_config(sweep: SweepConfig, family: str) -> DynamicsConfig:
  """The config of the sweep's first run of `family` (batch and probe sizes are set per family)."""
  return run_config(sweep, next(r for r in sweep.runs if family_of(r.partition("@")[0]) == family))


def flops_within_overhead(sweep: SweepConfig, overhead: float, probe_size: int | None = None,
                          budget: Mapping[str, Mapping[str, float]] | None = None) -> float:
  """The grid's FLOPs (training + measurement forward passes) once every family's batch is raised, where
  needed, to keep `forward_overhead` within `overhead`; with `probe_size`, every family measures on
  that many held-out examples instead of its own. `budget` is `flop_budget(sweep)` if already at hand.

  Training FLOPs grow in proportion to the batch, the measurement's with the probe examples.
  """
  budget = flop_budget(sweep) if budget is None else budget
  total = 0.0
  for family in FAMILIES:
    if family not in budget:
      continue
    cfg = family_config(sweep, family)
    probed = dataclasses.replace(cfg, probe_size=probe_size or cfg.probe_size)
    batch = max(cfg.batch_size, batch_for_overhead(probed, overhead))
    probe_scale = (probed.probe_size + cfg.train_probe_size) / (cfg.probe_size + cfg.train_probe_size)
    total += budget[family]["train"] * batch / cfg.batch_size + budget[family]["measure"] * probe_scale
  return total


def shard_plan(runs: Sequence[str], count: int,
               cost: Callable[[str], float] | None = None) -> list[tuple[str, ...]]:
  """The runs of each of `count` shards, each in training order.

  The runs are dealt out by cost, largest first, each to the shard with the least cost so far (ties to
  the lower shard), so `count` processes started together finish at about the same time. `cost(run)`
  is e.g. `estimated_cost` of the run's config; without it every run costs the same, and the shards get
  equal counts. The plan depends on the runs and costs alone, not on their listed order or on what has
  finished, so shards never overlap and a restarted shard picks up exactly its own runs. With more
  shards than runs, some shards get none.
  """
  if count < 1:
    raise ValueError(f"the number of shards must be >= 1, got {count}")
  order = training_order(runs)
  costs = {run: (cost(run) if cost else 1.0) for run in order}
  loads, assigned = [0.0] * count, [set() for _ in range(count)]
  # Sorting is stable, so runs of equal cost keep the training order.
  for run in sorted(order, key=lambda r: -costs[r]):
    shard = min(range(count), key=lambda s: (loads[s], s))
    loads[shard] += costs[run]
    assigned[shard].add(run)
  return [tuple(r for r in order if r in mine) for mine in assigned]


def shard_runs(runs: Sequence[str], index: int, count: int,
               cost: Callable[[str], float] | None = None) -> tuple[str, ...]:
  """The runs that shard `index` (1-based) of `count` trains (see `shard_plan`)."""
  if not 1 <= index <= count:
    raise ValueError(f"shard index must lie in 1..{count}, got {index}")
  return shard_plan(runs, count, cost)[index - 1]


def shard_plan_path(workdir: str, runs: Sequence[str], count: int) -> str:
  """Where the plan of splitting `runs` into `count` shards is kept under workdir/dynamics/."""
  key = hashlib.sha256(json.dumps([sorted(runs), count]).encode()).hexdigest()[:16]
  return os.path.join(workdir, "dynamics", "shard_plans", f"{count}_shards_{key}.json")


def sweep_shard(sweep: SweepConfig, index: int, count: int,
                workdir: str | None = None) -> tuple[str, ...]:
  """The sweep's runs for shard `index` of `count`, balanced by `estimated_cost` of each run's config.

  With a workdir, the first shard to get there writes the plan (`shard_plan_path`, created only if
  absent) and every shard then reads it: processes on machines whose cost estimates differ (another
  backend or JAX version) still split the grid the same way.
  """
  if not 1 <= index <= count:
    raise ValueError(f"shard index must lie in 1..{count}, got {index}")
  if workdir is None:
    return shard_runs(sweep.runs, index, count, estimated_costs(sweep).get)
  path = shard_plan_path(workdir, sweep.runs, count)
  if not os.path.exists(path):
    costs = estimated_costs(sweep)
    # Of shards starting together, the first to write wins and every one reads its plan.
    io.write_json_once(path, {"runs": sorted(sweep.runs), "count": count, "estimated_flops": costs,
                              "shards": [list(s) for s in shard_plan(sweep.runs, count, costs.get)]})
  with open(path, encoding="utf-8") as f:
    plan = json.load(f)
  if plan.get("runs") != sorted(sweep.runs) or plan.get("count") != count:
    raise SweepError(f"{path} is the plan of another selection of runs or number of shards; delete it")
  return tuple(plan["shards"][index - 1])


# ----------------------------------------------------------------------------------------------------
# Outputs.


def result_paths(workdir: str, run: str) -> tuple[str, str]:
  """(npz, json) paths of one run under workdir/dynamics/."""
  arch, _, dataset = run.partition("@")
  stem = os.path.join(workdir, "dynamics", f"{arch}__{dataset}")
  return stem + ".npz", stem + ".json"


# Config fields that change how a run is executed but not its results: the chunk length only sets how
# often the host sees progress (the steps, measurements and random streams do not depend on it).
EXECUTION_ONLY_FIELDS = ("measurements_per_chunk",)


def _result_defining(config_dict: Mapping[str, Any] | None) -> dict | None:
  if config_dict is None:
    return None
  return {k: v for k, v in config_dict.items() if k not in EXECUTION_ONLY_FIELDS}


def finished_record(workdir: str, run: str, cfg: DynamicsConfig) -> dict | None:
  """The run's JSON record if it finished with this config; None if not finished; SweepError if the
  finished result was made by another config (fields in EXECUTION_ONLY_FIELDS may differ)."""
  npz_path, json_path = result_paths(workdir, run)
  if not os.path.exists(json_path):
    return None
  with open(json_path, encoding="utf-8") as f:
    record = json.load(f)
  if record.get("status") != "finished" or not os.path.exists(npz_path):
    return None
  if _result_defining(record.get("config")) != _result_defining(configuration.to_dict(cfg)):
    raise SweepError(f"{json_path} holds a finished run of a different config; use another workdir or "
                     f"pass --overwrite to retrain it")
  return record


def chance_accuracy(dataset: Dataset) -> float:
  """Accuracy of always predicting the held-out split's most frequent class."""
  return float(np.bincount(dataset.test_y, minlength=dataset.num_classes).max() / dataset.num_test)


def write_result(workdir: str, run: str, cfg: DynamicsConfig, dataset: Dataset, result: RunResult,
                 fail_margin: float) -> dict:
  """Writes the run's .npz, then its .json (the completion mark); returns the JSON record."""
  npz_path, json_path = result_paths(workdir, run)
  probe = result.probe
  arrays = {
      "steps": result.steps.astype(np.int32),
      "update_steps": result.update_steps.astype(np.int32),
      "seeds": np.arange(cfg.num_seeds, dtype=np.int32),
      "layer_names": np.asarray(probe.layer_names, dtype=np.str_),
      "layer_layouts": np.asarray(probe.layer_layouts, dtype=np.str_),
      "final_test_accuracy": result.final_test_accuracy.astype(np.float64),
  }
  for name, values in result.series.items():
    arrays[name] = np.asarray(values)
  with io.atomic_path(npz_path) as tmp:
    with open(tmp, "wb") as f:  # A file object: np.savez would append ".npz" to a path.
      np.savez_compressed(f, **arrays)
  chance = chance_accuracy(dataset)
  accuracy = result.final_test_accuracy
  record = {
      "status": "finished",
      "arch": cfg.arch,
      "dataset": cfg.dataset,
      "family": family_of(cfg.arch),
      "config": configuration.to_dict(cfg),
      "npz": os.path.basename(npz_path),
      "measure_names": list(dynamics.MEASURE_NAMES) if cfg.measure else [],
      "layer_names": list(probe.layer_names),
      "layer_layouts": list(probe.layer_layouts),
      "matrix_shapes": {n: list(s) for n, s in zip(probe.layer_names, probe.matrix_shapes)},
      "rank_capped_layers": list(probe.rank_capped_layers),
      "skipped_layers": list(probe.skipped_layers),
      "steps": result.steps.tolist(),
      "step_definition": "measurement at step s reads the parameters after s updates (0 = initialisation)",
      "num_update_steps": int(result.update_steps.size),
      "final_test_accuracy": accuracy.tolist(),
      "final_eval_size": result.final_eval_size,
      "chance_accuracy": chance,
      "failed_seeds": [int(s) for s in np.flatnonzero(accuracy < chance + fail_margin)],
      "dataset_metadata": {k: v for k, v in dataset.metadata.items()
                           if k in ("split", "vocab_size", "max_length", "test_oov_rate",
                                    "train_truncated_fraction")},
      "probe": {"test_indices_count": int(probe.probe_indices.size),
                "train_indices_count": int(probe.train_probe_indices.size)},
      "compile_seconds": result.compile_seconds,
      "run_seconds": result.run_seconds,
  }
  io.write_json(json_path, record)
  return record


def load_series(npz_path: str) -> dict[str, np.ndarray]:
  """A run's series as plain numpy arrays (no pickle)."""
  with np.load(npz_path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


@dataclasses.dataclass
class SweepHooks:
  """Progress callbacks for a launcher (the library prints nothing)."""

  on_run_start: Callable[[int, int, str], None] = lambda index, total, run: None
  on_chunk: Callable[[int, int], None] = lambda done, total: None
  on_run_end: Callable[[str, Mapping[str, Any], bool], None] = lambda run, record, skipped: None


def run_sweep(sweep: SweepConfig, workdir: str, data_dir: str | None = None,
              overwrite: bool = False, hooks: SweepHooks | None = None) -> dict[str, dict]:
  """Trains every run of the grid not finished yet; returns {run: JSON record, or {'status': 'diverged'}}.

  Every run's config is built and validated, and every dataset name checked, before anything trains.
  """
  hooks = hooks or SweepHooks()
  configs = {run: run_config(sweep, run) for run in sweep.runs}
  records: dict[str, dict] = {}
  pending = []
  for run, cfg in configs.items():
    record = None if overwrite else finished_record(workdir, run, cfg)
    if record is None:
      pending.append(run)
    else:
      records[run] = record
  datasets: dict[str, Dataset] = {}
  cache: dict = {}
  mesh = sharding.seed_mesh(sweep.base.num_seeds)
  # Same architecture next to each other, so compiled programs are reused while they are cached.
  order = training_order(pending)
  for run in sweep.runs:
    if run in records:
      hooks.on_run_end(run, records[run], True)
  for index, run in enumerate(order):
    cfg = configs[run]
    hooks.on_run_start(index, len(order), run)
    if cfg.dataset not in datasets:
      datasets[cfg.dataset] = dynamics.load_dataset(cfg, data_dir)
    dataset = datasets[cfg.dataset]
    try:
      result = run_seeds(cfg, dataset, mesh=mesh, on_chunk=hooks.on_chunk, cache=cache)
    except NonFiniteError as e:
      records[run] = {"status": "diverged", "arch": cfg.arch, "dataset": cfg.dataset,
                      "message": str(e), "chance_accuracy": chance_accuracy(dataset),
                      "config": configuration.to_dict(cfg)}
      # On disk for the tables of other shards; not a finished run, so the next sweep tries it again.
      io.write_json(result_paths(workdir, run)[1], records[run])
      hooks.on_run_end(run, records[run], False)
      continue
    records[run] = write_result(workdir, run, cfg, dataset, result, sweep.fail_margin)
    if sweep.plots:
      from mpcodec.studies.dynamics import report as report_dynamics  # pylint: disable=g-import-not-at-top
      report_dynamics.plot_run(workdir, run)
    hooks.on_run_end(run, records[run], False)
    next_arch = order[index + 1].partition("@")[0] if index + 1 < len(order) else None
    if next_arch != cfg.arch:
      cache.clear()  # Compiled programs of a finished architecture are not needed again.
  return {run: records[run] for run in sweep.runs}
