"""Benchmark of the dynamics runs: mpcodec's measured run against an ndt-style PyTorch tracker, and
training throughput with and without in-scan measurement.

  python -m benchmarks.dynamics --data_dir=../shared/data
  python -m benchmarks.dynamics --archs=mlp_512x2_256x2@mnist --steps=200 --repeats=5 --data_dir=../shared/data
  python -m benchmarks.dynamics --torch_baseline=false --full_grid --workdir=runs/dynamics_grid \
      --data_dir=../shared/data
  python -m benchmarks.dynamics --archs= --flops

`--data_dir` defaults to $MPCODEC_DATA_DIR; `--flops` alone reads no data. The PyTorch tracker needs
the `bench` extra (`pip install -e '.[bench]'`); without torch, the default `--torch_baseline` is skipped
with a line saying so, and an explicit `--torch_baseline` stops with one error line.

For one MLP, one CNN and one Transformer at the default grid settings (configs/dynamics.py: same batch,
probe, measure_every, seeds), prints steps/s and seed-steps/s of the training run with measurement every
`measure_every` steps (all seeds vmapped), of the same run without any measurement, and of the PyTorch
tracker of benchmarks/baselines/torch_tracker.py doing the same work (same architecture, batch, steps and probes, hooks
on every measured layer, `torch.linalg.svdvals` and TwoNN per layer every `measure_every` steps, the seeds
one after another), and the ratio of mpcodec's measured seed-steps/s to the tracker's. Compile time is
timed apart; the tracker gets a warm-up seed. The variants are timed interleaved (A B C A B C ...),
`--repeats` times each, and medians are reported (the ratio is the median of the ratios of the
interleaved pairs), so that load from other processes on a shared machine touches all alike. torch's
thread count is the faster of XLA's core count and 1 on a short probe, unless `--torch_threads` sets it.
Wall time and this process's CPU time are printed. `--full_grid` times the whole default grid (every
configuration trained and written as by launch.dynamics) and prints its wall time. `--estimate_grid`
times every architecture of the grid once per input kind (images on MNIST, text on AG News) over
`--steps` steps, with and without measurement, and extrapolates each configuration's and the whole
grid's wall time from the per-step and per-measurement costs (compile times added); with `--shards=N`,
also each shard's wall time when the grid is split as `launch.dynamics --shard=I/N` splits it. `--flops`
prints the grid's FLOP budget per family without training: training against the measurement's forward
passes (both from XLA's cost analysis of each model), the minutes they need at this machine's matmul
rate, and the batch size at which the forward passes alone stay within +25%.
"""

import dataclasses
import os

# LAPACK (the spectra of the measures) runs in scipy's OpenBLAS; its own worker threads fight XLA's for
# the cores and made each decomposition up to 40x slower on a 2-core machine. Set before numpy loads it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import results
from launch import common
from mpcodec.core import configuration
from mpcodec.core.errors import ConfigError
from mpcodec.data import registry
from mpcodec.models import zoo
from mpcodec.metrics import dimensionality, host_lapack
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics.train import sweep as dynamics_sweep
from mpcodec.studies.dynamics.train import shards as dynamics_shards

from mpcodec.studies.dynamics.train import flops as dynamics_flops

_ARCHS = flags.DEFINE_list(
    "archs", ["mlp_512x2_256x2@mnist", "cnn_32_64_128@mnist", "transformer_d128_h4_l4@mnist"],
    "arch@dataset runs to time (one per family by default).")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps timed per run (0 = the config's chunk).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions per variant, interleaved (median kept).")
_TORCH = flags.DEFINE_bool("torch_baseline", True, "Also time the ndt-style PyTorch tracker "
                           "(benchmarks/baselines/torch_tracker.py; needs torch, the 'bench' extra) side by side.")
_TORCH_THREADS = flags.DEFINE_integer(
    "torch_threads", 0, "torch intra-op threads. 0: the faster of the cores XLA uses and 1, chosen per run "
    "by a short timed probe (on a loaded machine torch's OpenMP threads wait for each other and 2 threads "
    "ran 5-20x slower than 1).")
_CONFIG_ARG = flags.DEFINE_string("config_arg", "", "Argument passed to configs/dynamics.py get_config.")
_DATA_DIR = common.define_data_dir()
_FULL_GRID = flags.DEFINE_bool("full_grid", False, "Also time the whole default grid.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of the --full_grid run (must be new).")
_ESTIMATE_GRID = flags.DEFINE_bool("estimate_grid", False,
                                   "Estimate the default grid's wall time from short timed runs.")
_SHARDS = flags.DEFINE_integer("shards", 1, "With --estimate_grid: also estimate each shard's wall time "
                               "when the grid is split as launch.dynamics --shard=I/N splits it, one "
                               "machine like this one per shard.")
_FLOPS = flags.DEFINE_bool("flops", False, "Print the grid's FLOP budget: training against measurement "
                           "forward passes per family, and the minutes they take at this machine's "
                           "matmul rate (no training; seconds to run).")


def _sweep_config():
  from configs import dynamics as dynamics_config  # pylint: disable=g-import-not-at-top
  return configuration.parse(dynamics_sweep.SweepConfig,
                             dynamics_config.get_config(_CONFIG_ARG.value or None))


def _time_variant(cfg, dataset, chunks):
  """(compile seconds, build callable) for one config; the callable runs `chunks` chunks once."""
  prepared = dynamics.prepare(cfg, dataset)
  program, fns, data, order = prepared.program, prepared.fns, prepared.data, prepared.order
  state = jax.block_until_ready(fns.init(prepared.keys))
  start = time.perf_counter()
  run_chunk = fns.run_chunk.lower(state, order, data, jnp.int32(0)).compile()
  compile_seconds = time.perf_counter() - start
  # A warm-up chunk: the first call also pays for allocating the program's buffers.
  state, _ = jax.block_until_ready(run_chunk(state, order, data, jnp.int32(0)))
  holder = {"state": state}

  def run():
    for index in range(chunks):
      holder["state"], out = run_chunk(holder["state"], order, data, jnp.int32(index * program.chunk_blocks))
    jax.block_until_ready(out)

  return compile_seconds, run, program.chunk_blocks * cfg.measure_every


def _timed(fn):
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


def _median(values):
  """Median of a list of numbers, or per component of a list of (wall, cpu) pairs."""
  medians = np.median(np.asarray(values, np.float64), axis=0)
  return float(medians) if medians.ndim == 0 else tuple(float(v) for v in medians)


def jax_threads() -> int:
  """Cores XLA's CPU client runs on: one intra-op thread per core this process may use."""
  return host_lapack.usable_cores()


def torch_tracker_for(cfg, prepared, dataset):
  """The PyTorch tracker doing `cfg`'s measured run on `prepared`'s probe sets (benchmarks.baselines.torch_tracker)."""
  from benchmarks.baselines import torch_tracker  # pylint: disable=g-import-not-at-top
  if dataset.kind != "image":
    raise app.UsageError(f"the PyTorch baseline reads images only; {cfg.dataset} is {dataset.kind}")
  run = torch_tracker.TrackerRun(
      arch=cfg.arch, num_seeds=cfg.num_seeds, num_steps=cfg.num_steps, batch_size=cfg.batch_size,
      measure_every=cfg.measure_every, learning_rate=cfg.optim.learning_rate,
      warmup_steps=cfg.optim.warmup_steps, twonn_samples=cfg.twonn_samples,
      num_classes=dataset.num_classes, arrays=prepared.probe.arrays, layer_names=prepared.probe.layer_names)
  return torch_tracker.Tracker(run)


def check_same_measures(prepared, cfg):
  """Largest relative difference between mpcodec's and the tracker's measures of the same matrices:
  (spectral measures, TwoNN).

  The matrices are every measured layer's (rows, units) matrix on the probe at seed 0's initialisation;
  TwoNN is compared on the first `twonn_samples` rows (all of them, so no subsample draw to match).
  """
  from benchmarks.baselines import torch_tracker  # pylint: disable=g-import-not-at-top
  torch = torch_tracker.require_torch()
  params = jax.tree.map(lambda x: x[0], prepared.fns.init(prepared.keys)["params"])
  _, acts = prepared.model.apply(params, prepared.data["probe_x"])
  spectral, twonn = 0.0, 0.0
  for name, layout in zip(prepared.probe.layer_names, prepared.probe.layer_layouts):
    matrix, _ = dimensionality.layer_matrix(acts[name], layout, cfg.conv_mode)
    if name in prepared.data["rows"]:
      matrix = matrix[prepared.data["rows"][name]]
    ours = dimensionality.all_measures(matrix, jax.random.PRNGKey(0), None)
    ours["twonn_dimension"] = dimensionality.twonn_dimension(matrix[:cfg.twonn_samples])
    matrix_t = torch.from_numpy(np.array(matrix))
    theirs = [float(v) for v in torch_tracker.spectral_measures(matrix_t)]
    theirs.append(float(torch_tracker.twonn(matrix_t[:cfg.twonn_samples])))
    differences = [abs(float(ours[key]) - value) / max(abs(value), 1e-12)
                   for key, value in zip(dimensionality.MEASURE_NAMES, theirs)]
    spectral, twonn = max(spectral, *differences[:4]), max(twonn, differences[4])
  return spectral, twonn


def choose_torch_threads(probe_tracker, requested):
  """Sets torch's threads to `requested`, or (0) to the faster of jax_threads() and 1 on `probe_tracker`.

  Returns a line saying what was chosen and why.
  """
  from benchmarks.baselines import torch_tracker  # pylint: disable=g-import-not-at-top
  torch = torch_tracker.require_torch()
  if requested:
    torch.set_num_threads(requested)
    probe_tracker.run()
    return f"{requested} (--torch_threads)"
  seconds = {}
  for threads in dict.fromkeys((jax_threads(), 1)):
    torch.set_num_threads(threads)
    probe_tracker.run()
    seconds[threads] = min(probe_tracker.run()[0] for _ in range(2))
  best = min(seconds, key=seconds.get)
  torch.set_num_threads(best)
  probe = ", ".join(f"{t} thread(s) {s:.2f}s" for t, s in seconds.items())
  return f"{best} (the faster on a one-seed probe: {probe}; XLA uses {jax_threads()})"


def benchmark_run(sweep, run, data_dir, steps, repeats, quiet=False, torch_baseline=False,
                  torch_threads=0):
  """Prints and returns the throughput of `run` with and without measurement (and of the tracker).

  The variants are timed interleaved (A B C A B C ...) `repeats` times each; medians are reported.
  """
  cfg = dynamics_sweep.run_config(sweep, run)
  dataset = dynamics.load_dataset(cfg, data_dir)
  steps = steps or cfg.chunk_blocks * cfg.measure_every
  steps = max(cfg.measure_every, steps - steps % cfg.measure_every)
  cfg = dataclasses.replace(cfg, num_steps=steps, measurements_per_chunk=steps // cfg.measure_every)
  variants = {}
  for label, measure in (("measured", True), ("train only", False)):
    variants[label] = _time_variant(dataclasses.replace(cfg, measure=measure), dataset, chunks=1)
  check = None
  if torch_baseline:
    prepared = dynamics.prepare(cfg, dataset)
    tracker = torch_tracker_for(cfg, prepared, dataset)
    check = check_same_measures(prepared, cfg)
    # Warm-up (allocations, first-call dispatch), as the compiled variants had; it also picks the threads.
    probe_tracker = type(tracker)(dataclasses.replace(tracker.run_cfg, num_seeds=1,
                                                      num_steps=2 * cfg.measure_every))
    threads = choose_torch_threads(probe_tracker, torch_threads)
    variants["torch tracker"] = (0.0, tracker.run, steps)
  times = {label: [] for label in variants}
  for _ in range(repeats):
    for label, (_, run_fn, _) in variants.items():
      times[label].append(_timed(run_fn))
  median = {label: _median(values) for label, values in times.items()}
  overhead_wall = 100 * (median["measured"][0] / median["train only"][0] - 1)
  overhead_cpu = 100 * (median["measured"][1] / median["train only"][1] - 1)
  seed_steps = cfg.num_seeds * steps
  result = {"run": run, "measured": median["measured"], "train_only": median["train only"],
            "overhead_wall_percent": overhead_wall, "overhead_cpu_percent": overhead_cpu,
            "steps": steps, "measurements": steps // cfg.measure_every, "seed_steps": seed_steps,
            "compile_seconds": variants["measured"][0],
            "walls": {label: [w for w, _ in values] for label, values in times.items()}}
  if torch_baseline:
    # Ratio of each interleaved pair (tracker time / mpcodec time of the same repeat), then its median.
    pair_ratios = [t[0] / m[0] for t, m in zip(times["torch tracker"], times["measured"])]
    result.update(torch=median["torch tracker"], ratio=_median(pair_ratios), pair_ratios=pair_ratios,
                  ratio_of_medians=median["torch tracker"][0] / median["measured"][0],
                  measure_difference=check, torch_threads=threads)
  if quiet:
    return result
  print(f"\n{run}: {cfg.num_seeds} seeds, batch {cfg.batch_size}, probe {cfg.probe_size}, measure every "
        f"{cfg.measure_every} steps, {steps} steps timed (median of {repeats}, interleaved)")
  for label, (compile_seconds, _, _) in variants.items():
    wall, cpu = median[label]
    compiled = f"; compile {compile_seconds:.1f}s" if label != "torch tracker" else ""
    print(f"  {label:>13}: {steps / wall:8.1f} steps/s, {seed_steps / wall:9.1f} seed-steps/s "
          f"(wall {wall:.2f}s, cpu {cpu:.2f}s{compiled})")
  print(f"  measurement overhead: {overhead_wall:+.1f}% wall, {overhead_cpu:+.1f}% cpu")
  if torch_baseline:
    print(f"  mpcodec / torch tracker seed-steps/s: {result['ratio']:.2f}x (median of the {repeats} "
          f"interleaved pairs {', '.join(f'{r:.2f}' for r in pair_ratios)}; ratio of medians "
          f"{result['ratio_of_medians']:.2f}x); torch threads: {threads}")
    print(f"  same matrices, largest relative difference of the measures: spectral {check[0]:.1e}, "
          f"TwoNN {check[1]:.1e}")
  return result


def estimate_grid(sweep, data_dir, steps, repeats, shards=1):
  """Extrapolates every configuration's wall time from one timed short run per architecture and kind."""
  probes = {}
  for run in sweep.runs:
    arch, dataset = run.split("@")
    kind = registry.DATASETS[dataset].kind
    probes.setdefault((arch, kind), f"{arch}@{'ag_news' if kind == 'text' else 'mnist'}")
  print(f"\ngrid estimate: {len(probes)} architecture/input-kind pairs timed over {steps or 'a chunk of'} "
        f"steps each, extrapolated to {len(sweep.runs)} configurations")
  costs = {}
  for (arch, kind), timed_run in probes.items():
    r = benchmark_run(sweep, timed_run, data_dir, steps, repeats, quiet=True)
    step_seconds = r["train_only"][0] / r["steps"]
    measure_seconds = max(r["measured"][0] - r["train_only"][0], 0.0) / r["measurements"]
    costs[(arch, kind)] = (step_seconds, measure_seconds, r["compile_seconds"])
    print(f"  [{len(costs)}/{len(probes)}] {timed_run:36s} {1e3 * step_seconds:8.1f} ms/step, "
          f"{1e3 * measure_seconds:8.1f} ms/measurement ({r['measurements']} timed), compile "
          f"{r['compile_seconds']:.1f}s", flush=True)
  estimates, by_family = {}, {}
  for run in sweep.runs:
    arch, dataset = run.split("@")
    cfg = dynamics_sweep.run_config(sweep, run)
    step_seconds, measure_seconds, compile_seconds = costs[(arch, registry.DATASETS[dataset].kind)]
    train = cfg.num_steps * step_seconds
    measure = cfg.num_measurements * measure_seconds
    estimates[run] = {"train_seconds": train, "measure_seconds": measure,
                      "compile_seconds": compile_seconds, "seconds": train + measure + compile_seconds}
    family = dynamics.family_of(arch)
    by_family[family] = by_family.get(family, 0.0) + estimates[run]["seconds"]
    print(f"  {run:36s} {estimates[run]['seconds'] / 60:6.2f} min (train {train:7.1f}s, measure "
          f"{measure:7.1f}s, compile {compile_seconds:4.1f}s; overhead {100 * measure / max(train, 1e-9):+6.0f}%)")
  for family, seconds in sorted(by_family.items()):
    print(f"  {family:12s} {seconds / 60:6.1f} min")
  total = sum(e["seconds"] for e in estimates.values())
  print(f"  estimated grid wall time: {total / 60:.2f} min (compiles counted per configuration, so a "
        f"little high; target < 90 min on 2 CPU cores)")
  shard_seconds = []
  if shards > 1:
    flops = dynamics_flops.estimated_costs(sweep)
    for index, runs in enumerate(dynamics_shards.shard_plan(sweep.runs, shards, flops.get), start=1):
      shard_seconds.append(sum(estimates[r]["seconds"] for r in runs))
      print(f"  shard {index}/{shards}: {len(runs)} run(s), {shard_seconds[-1] / 60:.2f} min")
    print(f"  with {shards} shards on {shards} machines like this one the grid takes "
          f"{max(shard_seconds) / 60:.2f} min (its slowest shard)")
  return {"runs": estimates, "total_seconds": total, "shard_seconds": shard_seconds}


def matmul_gflops(size=2048, repeats=10):
  """This machine's float32 matmul rate in GFLOP/s (size x size x size, jitted, best of `repeats`)."""
  a = jnp.ones((size, size), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a, a))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, a))
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best / 1e9


# The probe size the dynamics study asks for by default; the grid's CNNs and Transformers use less.
ISSUE_PROBE_SIZE = 512


def print_flop_budget(sweep, gflops):
  """Prints and returns `dynamics_flops.flop_budget` with the minutes each family needs at `gflops`."""
  budget = dynamics_flops.flop_budget(sweep)
  print(f"\nFLOP budget of {len(sweep.runs)} configurations (forward FLOPs of each model by XLA's cost "
        f"analysis x examples; spectra and TwoNN not counted); matmul rate here {gflops:.1f} GFLOP/s")
  print(f"  {'family':12s} {'runs':>4s} {'train TFLOP':>12s} {'measure-fwd TFLOP':>18s} "
        f"{'fwd overhead':>12s} {'train min':>10s} {'total min':>10s}")
  total_minutes = 0.0
  for family, entry in sorted(budget.items()):
    entry["train_minutes"] = entry["train"] / (gflops * 1e9) / 60
    entry["minutes"] = (entry["train"] + entry["measure"]) / (gflops * 1e9) / 60
    entry["overhead_percent"] = 100 * entry["measure"] / entry["train"]
    total_minutes += entry["minutes"]
    print(f"  {family:12s} {entry['runs']:4d} {entry['train'] / 1e12:12.2f} {entry['measure'] / 1e12:18.2f} "
          f"{entry['overhead_percent']:+11.0f}% {entry['train_minutes']:10.2f} {entry['minutes']:10.2f}")
  print(f"  the grid's forward and backward passes alone need at least {total_minutes:.2f} min at "
        f"{gflops:.1f} GFLOP/s, this machine's rate on a large matmul (target < 90 min on 2 CPU cores)")
  for family in sorted(budget):
    cfg = dynamics_flops.family_config(sweep, family)
    for probe_size in sorted({cfg.probe_size, ISSUE_PROBE_SIZE}):
      probed = dataclasses.replace(cfg, probe_size=probe_size)
      print(f"  {family}: batch {cfg.batch_size}, probe {probe_size} + train probe {cfg.train_probe_size}, "
            f"every {cfg.measure_every} steps: forward overhead "
            f"{100 * dynamics_flops.forward_overhead(probed):+.0f}%; +25% needs a batch of >= "
            f"{dynamics_flops.batch_for_overhead(probed, 0.25):.0f}"
            + (" (the configured probe)" if probe_size == cfg.probe_size else ""))
  # The two targets together: training grows with the batch that brings the forward overhead to +25%.
  for label, probe_size in (("the configured probes", None),
                            (f"a {ISSUE_PROBE_SIZE}-example probe", ISSUE_PROBE_SIZE)):
    flops = dynamics_flops.flops_within_overhead(sweep, 0.25, probe_size, budget)
    minutes = flops / (gflops * 1e9) / 60
    budget[f"minutes_within_25_percent_{probe_size or 'configured'}"] = minutes
    print(f"  with {label} and each family's batch raised to keep the forward overhead within +25%, the "
          f"grid's passes alone need at least {minutes:.2f} min at {gflops:.1f} GFLOP/s")
  budget["total_minutes"] = total_minutes
  return budget


def _torch_baseline() -> bool:
  """Whether the PyTorch tracker is timed: --torch_baseline with runs in --archs (`results.torch_peer`)."""
  return bool(_ARCHS.value) and results.torch_peer(_TORCH)


def _inputs(sweep):
  """(the datasets the chosen timings read, the --full_grid workdir); errors name the flag."""
  if _SHARDS.value < 1:
    raise app.UsageError(f"--shards must be >= 1, got {_SHARDS.value}")
  if _SHARDS.value > 1 and not _ESTIMATE_GRID.value:
    raise app.UsageError("--shards splits the grid estimate: pass --estimate_grid too")
  datasets = []
  for run in _ARCHS.value:
    arch, _, dataset = run.partition("@")
    if arch not in zoo.ARCHITECTURES or dataset not in registry.DATASETS:
      raise ConfigError(f"--archs: {run!r} is not arch@dataset with an architecture of "
                        f"{sorted(zoo.ARCHITECTURES)} and a dataset of {sorted(registry.DATASETS)}")
    datasets.append(dataset)
  if _ESTIMATE_GRID.value:   # each architecture is timed on MNIST (images) or AG News (text)
    kinds = {registry.DATASETS[r.partition("@")[2]].kind for r in sweep.runs}
    datasets += ["mnist"] * ("image" in kinds) + ["ag_news"] * ("text" in kinds)
  workdir = None
  if _FULL_GRID.value:
    if not _WORKDIR.value:
      raise app.UsageError("--full_grid needs --workdir (a new folder)")
    if os.path.exists(os.path.join(_WORKDIR.value, "dynamics")):
      raise app.UsageError(f"{_WORKDIR.value}/dynamics exists; --full_grid times a fresh grid")
    datasets += [r.partition("@")[2] for r in sweep.runs]
    workdir = _WORKDIR.value
  return datasets, workdir


def check():
  sweep = _sweep_config()
  datasets, workdir = _inputs(sweep)
  data = common.check_datasets(common.data_dir(_DATA_DIR.value), datasets) if datasets else "none read"
  timed = ", ".join(filter(None, [f"{len(_ARCHS.value)} run(s)" if _ARCHS.value else "",
                                  "grid estimate" * _ESTIMATE_GRID.value, "FLOP budget" * _FLOPS.value,
                                  "full grid" * _FULL_GRID.value])) or "nothing"
  baseline = "on" if _torch_baseline() else "off" + (" (torch not installed)" if _TORCH.value and _ARCHS.value
                                                     else "")
  config = "configs/dynamics.py" + (f":{_CONFIG_ARG.value}" if _CONFIG_ARG.value else "")
  items = {"config": f"{config} ({len(sweep.runs)} runs)", "timed": timed,
           "torch baseline": baseline, "data": data}
  if workdir is not None:
    items["workdir"] = common.check_workdir(workdir)
  items["devices"] = common.devices()
  return items


def _row(result, torch_baseline) -> results.Row:
  """The suite's row of one timed run: measured seed-steps/s against the tracker's (ratio of medians)."""
  work = f"dynamics tracking, {result['run']}, {result['steps']} steps"
  note = f"measurement overhead {result['overhead_wall_percent']:+.0f}% wall"
  rate = result["seed_steps"] / result["measured"][0]
  if not torch_baseline:
    return results.Row("dynamics", work, "seed-steps/s", rate, "PyTorch tracker",
                       note=f"{note}; {results.peer_not_run(_TORCH.value)}")
  return results.Row("dynamics", work, "seed-steps/s", rate, "PyTorch tracker",
                     result["seed_steps"] / result["torch"][0],
                     {"mpcodec": result["measured"][1], "peer": result["torch"][1]},
                     note + f"; median of paired ratios {result['ratio']:.2f}x")


def main(argv):
  del argv
  sweep = _sweep_config()
  datasets, _ = _inputs(sweep)
  data_dir = common.data_dir(_DATA_DIR.value) if datasets else None   # --flops alone: none
  print(f"devices: {jax.devices()}; cores visible: {os.cpu_count()}; XLA CPU threads: {jax_threads()}")
  torch_baseline = _torch_baseline()
  if torch_baseline:
    from benchmarks.baselines import torch_tracker  # pylint: disable=g-import-not-at-top
    print(f"torch {torch_tracker.require_torch().__version__}: intra-op threads chosen per run (below)")
  elif _TORCH.value and _ARCHS.value:
    print("PyTorch is not installed (pip install -e '.[bench]'): mpcodec's runs alone, no tracker ratio")
  rows = []
  for run in _ARCHS.value:
    result = benchmark_run(sweep, run, data_dir, _STEPS.value, _REPEATS.value, torch_baseline=torch_baseline,
                           torch_threads=_TORCH_THREADS.value)
    rows.append(_row(result, torch_baseline))
  results.write(rows)
  if _FLOPS.value:
    print_flop_budget(sweep, matmul_gflops())
  if _ESTIMATE_GRID.value:
    estimate_grid(sweep, data_dir, _STEPS.value, _REPEATS.value, _SHARDS.value)
  if _FULL_GRID.value:
    wall, cpu = time.perf_counter(), time.process_time()
    records = dynamics_sweep.run_sweep(sweep, _WORKDIR.value, data_dir)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    compile_total = sum(r.get("compile_seconds", 0.0) for r in records.values())
    print(f"\nfull grid: {len(records)} configurations in {wall / 60:.1f} min wall "
          f"({cpu / 60:.1f} min process CPU, {compile_total / 60:.1f} min of it compiling)")


if __name__ == "__main__":
  common.run(main, check)
