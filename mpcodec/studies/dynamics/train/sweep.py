"""The dynamics sweep: a grid of architecture x dataset configurations, each trained on all seeds at once.

`run_seeds` trains one configuration (seed axis vmapped, chunks of the nested scan between host checks)
and `run_sweep` walks a grid, skipping configurations already finished. Each configuration writes
`<workdir>/dynamics/<arch>__<dataset>.npz` (series with a seed axis first, opens with numpy alone) and
then `<arch>__<dataset>.json` (config, layers, steps, final accuracies, flags). The JSON is written last
and atomically, so its presence with a matching config marks the configuration as finished.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import configuration, loop, sharding, workdir as workdir_lib
from mpcodec.core.errors import CheckpointError, ConfigError, DataError, NonFiniteError, WorkdirError
from mpcodec.data.dataset import Dataset
from mpcodec.core import io
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics.config import EXECUTION_ONLY_FIELDS, DynamicsConfig, SweepConfig, run_config
from mpcodec.studies.dynamics.report import training as report_dynamics
from mpcodec.studies.dynamics import series as results
from mpcodec.studies.dynamics.grid import STEP_SERIES, family_of, training_order
from mpcodec.studies.dynamics.train import parallel


def _signature(tree) -> tuple:
  """Hashable shapes, dtypes and tree structure of a pytree of arrays (a compile-cache key part)."""
  leaves, treedef = jax.tree.flatten(tree)
  return (str(treedef),) + tuple((tuple(x.shape), str(x.dtype)) for x in leaves)


def run_seeds(cfg: DynamicsConfig, dataset: Dataset, checkpoint_dir: str | None = None, mesh=None,
              progress: Any = None, cache: dict | None = None, overwrite: bool = False,
              outputs: Sequence[str] = ()) -> results.RunResult:
  """Trains all seeds of one configuration through the one run loop; NonFiniteError on NaN/Inf loss.

  `checkpoint_dir` holds the run's checkpoints (every `checkpoint_every` steps and at
  `extra_checkpoints`), so a killed run resumes where it stopped; None trains in a temporary folder.
  `progress` is a tqdm-like bar that gets every step. `mesh` (from `mpcodec.core.sharding.seed_mesh`)
  shards the seed axis over devices. `cache` (a dict kept by the caller) reuses compiled programs
  across configurations with the same architecture, config and input shapes (MNIST and Fashion-MNIST).
  `outputs`: the files derived from these checkpoints, removed first when `overwrite` replaces them.
  """
  if checkpoint_dir is None:
    with tempfile.TemporaryDirectory() as scratch:
      return run_seeds(cfg, dataset, scratch, mesh, progress, cache, overwrite, outputs)
  start = time.perf_counter()
  prepared = dynamics.prepare(cfg, dataset)
  probe = prepared.probe
  # What the traced program depends on besides the arrays' values: the config without the dataset
  # name and execution-only knobs, the model's output size and input kind, the measured layers and
  # every array's shape.
  result_config = dataclasses.replace(cfg, dataset="", **{k: getattr(DynamicsConfig(), k)
                                                          for k in EXECUTION_ONLY_FIELDS})
  cache_key = (result_config, cfg.chunk_blocks, dataset.kind, dataset.num_classes, dataset.vocab_size,
               dataset.max_length, probe.layer_names, probe.layer_layouts, _signature(prepared.data),
               None if mesh is None else tuple(mesh.devices.shape))
  program = dataclasses.replace(dynamics.make_program(cfg, prepared), cache_key=cache_key)
  setup_seconds = time.perf_counter() - start
  outcome = loop.run(program, dynamics.loop_keys(cfg), checkpoint_dir,
                     seed_labels=list(range(cfg.num_seeds)), config=results.result_defining(configuration.to_dict(cfg)),
                     mesh=mesh, progress=progress, overwrite=overwrite, compile_cache=cache, outputs=outputs)
  start = time.perf_counter()
  params = outcome.state["params"]
  series = sharding.to_host(outcome.history["train"])
  if cfg.measure:
    final = sharding.to_host(prepared.fns.measure(params, sharding.put_replicated(prepared.data, mesh)))
    for k, v in final.items():
      series[k] = np.concatenate([series[k], v[:, None]], axis=1)
  else:
    series = {k: v for k, v in series.items() if k in STEP_SERIES}
  final_accuracy, eval_size = evaluate(cfg, prepared.fns.logits, params, dataset)
  return results.RunResult(steps=cfg.measured_steps, update_steps=np.arange(cfg.num_steps, dtype=np.int32),
                   series=series, final_test_accuracy=final_accuracy, final_eval_size=eval_size,
                   probe=probe, params=sharding.to_host(params),
                   compile_seconds=setup_seconds + outcome.compile_seconds,
                   run_seconds=outcome.train_seconds + time.perf_counter() - start)


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
    predictions = np.argmax(sharding.to_host(logits_fn(params, jnp.asarray(x_batch))), axis=-1)
    correct = correct + (predictions[:, :num_real] == y[start:start + num_real]).sum(axis=1)
  return np.asarray(correct, np.float64) / size, size


@dataclasses.dataclass
class SweepHooks:
  """Progress callbacks for a launcher (the library prints nothing).

  `progress` is a tqdm-like bar over the steps of every run still to train (resumed steps included).
  """

  on_run_start: Callable[[int, int, str], None] = lambda index, total, run: None
  on_run_end: Callable[[str, Mapping[str, Any], bool], None] = lambda run, record, skipped: None
  progress: Any = None


def pending_runs(sweep: SweepConfig, workdir: str, overwrite: bool = False) -> tuple[dict, list[str]]:
  """({run: record} of the finished runs, [runs still to train]); SweepError for a finished run of
  another config (unless `overwrite`)."""
  records, pending = {}, []
  for run in sweep.runs:
    record = None if overwrite else results.finished_record(workdir, run, run_config(sweep, run))
    if record is None:
      pending.append(run)
    else:
      records[run] = record
  return records, pending


def check_batch_sizes(sweep: SweepConfig, datasets: Mapping[str, Dataset]) -> None:
  """Refuses a batch, probe or eval subset larger than its split, naming the run and the key."""
  for run in sweep.runs:
    cfg = run_config(sweep, run)
    dataset = datasets.get(cfg.dataset)
    if dataset is None:
      continue
    family = family_of(cfg.arch)
    for key, value, limit, split in (("batch_size", cfg.batch_size, dataset.num_train, "training"),
                                     ("train_probe_size", cfg.train_probe_size, dataset.num_train, "training")):
      if value > limit:
        raise ConfigError(f"config.{family}.{key}: {value} is larger than the {split} split of "
                          f"{cfg.dataset} ({limit} examples) for {run}")


def run_sweep(sweep: SweepConfig, workdir: str, data_dir: str | None = None,
              overwrite: bool = False, hooks: SweepHooks | None = None) -> dict[str, dict]:
  """Trains every run of the grid not finished yet; returns {run: JSON record, or {'status': 'diverged'}
  or {'status': 'failed', 'message': why} for a run that could not train (e.g. a corrupt checkpoint)}.

  Every run's config is built and validated, every dataset loaded and the batch sizes checked, and the
  workdir proven writable, before anything trains. A run checkpoints as it trains (`checkpoint_every`,
  `extra_checkpoints`) and resumes from its latest checkpoint when the sweep is started again; each run
  is held by one process at a time. A finished run whose plots are missing gets them again.
  """
  hooks = hooks or SweepHooks()
  workdir_lib.check_writable(workdir)
  configs = {run: run_config(sweep, run) for run in sweep.runs}
  records, pending = pending_runs(sweep, workdir, overwrite)
  datasets: dict[str, Dataset] = {}
  for run in pending:
    cfg = configs[run]
    if cfg.dataset not in datasets:
      datasets[cfg.dataset] = dynamics.load_dataset(cfg, data_dir)
  check_batch_sizes(sweep, datasets)
  cache: dict = {}
  mesh = sharding.seed_mesh(sweep.base.num_seeds)
  primary = jax.process_index() == 0
  for run in sweep.runs:
    if run in records:
      if sweep.plots and primary and not all(os.path.exists(p) for p in report_dynamics.plot_paths(
          workdir, run, records[run])):
        report_dynamics.plot_run(workdir, run)
      hooks.on_run_end(run, records[run], True)
  # Same architecture next to each other, so compiled programs are reused while they are cached.
  order = training_order(pending)
  meshes = parallel.device_meshes() if sweep.spread_runs and jax.process_count() == 1 else []
  if len(meshes) > 1 and len(order) > 1:
    progress = parallel.Locked(hooks.progress) if hooks.progress is not None else None

    def train(run, run_mesh, run_cache):
      cfg = configs[run]
      return _train_run(cfg, datasets[cfg.dataset], workdir, run, run_mesh, progress, run_cache, overwrite)

    for index, (run, (result, failure)) in enumerate(parallel.train_side_by_side(order, train, meshes)):
      cfg = configs[run]
      hooks.on_run_start(index, len(order), run)
      records[run] = _write_run(sweep, workdir, run, cfg, datasets[cfg.dataset], result, failure)
      hooks.on_run_end(run, records[run], False)
    return {run: records.get(run) for run in sweep.runs}
  for index, run in enumerate(order):
    cfg = configs[run]
    hooks.on_run_start(index, len(order), run)
    result, failure = _train_run(cfg, datasets[cfg.dataset], workdir, run, mesh, hooks.progress, cache,
                                 overwrite)
    records[run] = _write_run(sweep, workdir, run, cfg, datasets[cfg.dataset], result, failure)
    hooks.on_run_end(run, records[run], False)
    next_arch = order[index + 1].partition("@")[0] if index + 1 < len(order) else None
    if next_arch != cfg.arch:
      cache.clear()  # Compiled programs of a finished architecture are not needed again.
  return {run: records[run] for run in sweep.runs}


def _train_run(cfg: DynamicsConfig, dataset: Dataset, workdir: str, run: str, mesh, progress, cache: dict,
               overwrite: bool) -> tuple[results.RunResult | None, dict | None]:
  """(the trained result, None), or (None, the record of a run that could not train or diverged)."""
  ckpt_dir = results.checkpoint_dir(workdir, run)
  lock = workdir_lib.locked(ckpt_dir) if jax.process_index() == 0 else workdir_lib.writable(ckpt_dir)
  try:
    with lock:
      return run_seeds(cfg, dataset, ckpt_dir, mesh=mesh, progress=progress, cache=cache,
                       overwrite=overwrite, outputs=report_dynamics.derived_outputs(workdir, run)), None
  except (CheckpointError, DataError, WorkdirError) as e:
    # This run alone cannot train (a corrupt checkpoint, its folder held by another process): the others
    # train, the table marks it, and the launch ends non-zero. Nothing is written over its files.
    return None, {"status": "failed", "arch": cfg.arch, "dataset": cfg.dataset, "message": str(e),
                  "chance_accuracy": results.chance_accuracy(dataset)}
  except NonFiniteError as e:
    return None, {"status": "diverged", "arch": cfg.arch, "dataset": cfg.dataset, "message": str(e),
                  "chance_accuracy": results.chance_accuracy(dataset), "config": configuration.to_dict(cfg)}


def _write_run(sweep: SweepConfig, workdir: str, run: str, cfg: DynamicsConfig, dataset: Dataset,
               result: results.RunResult | None, failure: dict | None) -> dict:
  """Writes a run's outcome (process 0 alone) and returns its record."""
  primary = jax.process_index() == 0
  if failure is not None:
    if failure["status"] == "diverged" and primary:
      # On disk for the tables of other shards; not a finished run, so the next sweep tries it again.
      io.write_json(results.result_paths(workdir, run)[1], failure)
    return failure
  if primary:
    record = results.write_series(workdir, run, cfg, dataset, result, sweep.fail_margin)
    if sweep.plots:
      report_dynamics.plot_run(workdir, run, record)
    results.mark_finished(workdir, run, record)
  # Several processes: process 0 alone writes the files; the others return the record it wrote.
  sharding.barrier(f"mpcodec.dynamics: {run} written")
  return record if primary else results.finished_record(workdir, run, cfg)


def unfinished(records: Mapping[str, Mapping[str, Any]]) -> list[str]:
  """The runs whose record is not 'finished' (diverged, failed, or not run)."""
  return [run for run, record in records.items() if (record or {}).get("status") != "finished"]
