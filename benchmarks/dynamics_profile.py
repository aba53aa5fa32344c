"""Where a dynamics run's time goes: the parts of one measurement against the training steps between two.

  python -m benchmarks.dynamics_profile --data_dir=../shared/data
  python -m benchmarks.dynamics_profile --archs=mlp_512x2_256x2@mnist --repeats=5 --data_dir=../shared/data

For each arch@dataset at the default grid settings (configs/dynamics.py: seeds, batch, probe, measure_every),
milliseconds of each part jitted alone (median of --repeats, after a warm-up call): the `measure_every`
training steps between two measurements (vmapped over the seeds, as the run does them), and one
measurement of all seeds done seed by seed as the run does it, split into its parts: the probe forward
passes (test and train probes), every layer's spectrum with XLA's own LAPACK kernels and with the host
path (`mpcodec.metrics.host_lapack`: one callback per seed running the layers' SVDs over the cores), and
TwoNN. The measurement overhead the parts predict, (forward + spectra + TwoNN) / steps, is printed with
either spectrum path; the measured overhead of whole runs is what `python -m benchmarks.dynamics` prints.
Each layer's matrix shape and spectrum route (direct SVD or Gram) is listed, with the cost of one of its
decompositions.
"""

import os

# As in launch.dynamics: LAPACK's own worker threads would fight XLA's and the pool's for the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import results
from configs import dynamics as dynamics_config
from launch import common
from mpcodec.core import configuration
from mpcodec.core.errors import ConfigError
from mpcodec.data import registry
from mpcodec.metrics import dimensionality, host_lapack
from mpcodec.models import zoo
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics.train import sweep as dynamics_sweep

_ARCHS = flags.DEFINE_list(
    "archs", ["mlp_512x2_256x2@mnist", "cnn_32_64_128@mnist", "transformer_d128_h4_l4@mnist"],
    "arch@dataset runs to profile.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls of each part (median kept).")
_DATA_DIR = common.define_data_dir()


def _runs() -> list[str]:
  if _REPEATS.value < 1:
    raise ConfigError(f"--repeats must be >= 1, got {_REPEATS.value}")
  for run in _ARCHS.value:
    arch, _, dataset = run.partition("@")
    if arch not in zoo.ARCHITECTURES or dataset not in registry.DATASETS:
      raise ConfigError(f"--archs: {run!r} is not arch@dataset with an architecture of "
                        f"{sorted(zoo.ARCHITECTURES)} and a dataset of {sorted(registry.DATASETS)}")
  if not _ARCHS.value:
    raise ConfigError("--archs: give at least one arch@dataset")
  return list(_ARCHS.value)


def _sweep():
  return configuration.parse(dynamics_sweep.SweepConfig, dynamics_config.get_config(None))


def _milliseconds(fn, *args) -> float:
  jax.block_until_ready(fn(*args))   # compile and warm up
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def _with_host_path(on: bool, build):
  """`build()` with the host LAPACK path switched on or off. The path is chosen at trace time, and jit
  caches a function's trace across `jax.jit` wrappers, so `build` must trace a function of its own."""
  previous = os.environ.get(host_lapack.ENV_SWITCH)
  os.environ[host_lapack.ENV_SWITCH] = "1" if on else "0"
  try:
    return build()
  finally:
    if previous is None:
      os.environ.pop(host_lapack.ENV_SWITCH)
    else:
      os.environ[host_lapack.ENV_SWITCH] = previous


def profile_run(sweep, run: str, data_dir: str) -> dict:
  """Milliseconds of each part of `run` (see the module docstring)."""
  cfg = dynamics_sweep.run_config(sweep, run)
  prepared = dynamics.prepare(cfg, dynamics.load_dataset(cfg, data_dir))
  model, probe, program, data = prepared.model, prepared.probe, prepared.program, prepared.data
  state = jax.block_until_ready(prepared.fns.init(prepared.keys))
  params_S = state["params"]
  order_axis = None if cfg.shared_data_order else 0
  step_seeds = jax.vmap(program.train_step, in_axes=(0, order_axis, None, None))

  def steps(state_S):
    return jax.lax.scan(lambda s, step: step_seeds(s, prepared.order, data, step), state_S,
                        jnp.arange(cfg.measure_every))[0]

  def forward(params_S):
    return jax.lax.map(lambda p: (model.apply(p, data["probe_x"]), model.apply(p, data["train_probe_x"])[0]),
                       params_S)

  def matrices_of(params_S):
    return jax.lax.map(lambda p: dynamics.layer_matrices(cfg, probe, model.apply(p, data["probe_x"])[1],
                                                         data["rows"]), params_S)

  matrices_S = jax.block_until_ready(jax.jit(matrices_of)(params_S))

  def spectra():   # a new function each call: its own trace (see `_with_host_path`)
    return lambda mats_S: jax.lax.map(dimensionality.singular_values_many, mats_S)

  keys = dynamics.measure_keys(cfg, len(matrices_S))

  def twonn(mats_S):
    return jax.lax.map(lambda mats: [dimensionality.twonn_dimension(m, k, cfg.twonn_samples)
                                     for m, k in zip(mats, keys)], mats_S)

  parts = {
      "steps": _milliseconds(jax.jit(steps), state),
      "forward": _milliseconds(jax.jit(forward), params_S),
      "spectra_xla": _with_host_path(False, lambda: _milliseconds(jax.jit(spectra()), matrices_S)),
      "spectra_host": _with_host_path(True, lambda: _milliseconds(jax.jit(spectra()), matrices_S)),
      "twonn": _milliseconds(jax.jit(twonn), matrices_S),
  }
  layers = []
  for name, matrix_S in zip(probe.layer_names, matrices_S):
    shape = tuple(matrix_S.shape[1:])
    route = "direct SVD" if max(shape) < dimensionality.GRAM_ASPECT_RATIO * min(shape) else "Gram"
    one = _with_host_path(False, lambda m=matrix_S[0]: _milliseconds(
        jax.jit(lambda x: dimensionality.singular_values(x)), m))  # pylint: disable=unnecessary-lambda
    layers.append({"layer": name, "shape": shape, "route": route, "ms": one})
  return {"run": run, "num_seeds": cfg.num_seeds, "measure_every": cfg.measure_every, "parts": parts,
          "layers": layers}


def _print(result: dict) -> list[results.Row]:
  parts = result["parts"]
  print(f"\n{result['run']}: {result['num_seeds']} seeds, a measurement every {result['measure_every']} steps "
        f"(ms, median of {_REPEATS.value})")
  for name, label in (("steps", f"{result['measure_every']} training steps, all seeds"),
                      ("forward", "probe forward passes, seed by seed"),
                      ("spectra_xla", "spectra, XLA's LAPACK kernels"),
                      ("spectra_host", "spectra, host path over the cores"), ("twonn", "TwoNN")):
    print(f"  {label:>38}: {parts[name]:9.1f}")
  rows = []
  for path in ("xla", "host"):
    measurement = parts["forward"] + parts[f"spectra_{path}"] + parts["twonn"]
    overhead = 100 * measurement / parts["steps"]
    print(f"  predicted measurement overhead with the {path} spectra: {overhead:+.0f}%")
    rows.append(results.Row("dynamics_profile", f"{result['run']}: one measurement, {path} spectra",
                            "ms", measurement, "the training steps between two measurements", parts["steps"],
                            note=f"predicted overhead {overhead:+.0f}%"))
  for layer in result["layers"]:
    print(f"    {layer['layer']:>24} {str(layer['shape']):>14} {layer['route']:>10}: {layer['ms']:.2f} ms per seed")
  return rows


def check():
  runs = _runs()
  _sweep()
  data = common.check_datasets(common.data_dir(_DATA_DIR.value), [r.partition("@")[2] for r in runs])
  return {"config": "configs/dynamics.py", "profiled": ", ".join(runs), "data": data, "devices": common.devices()}


def main(argv):
  del argv
  runs = _runs()
  sweep = _sweep()
  data_dir = common.data_dir(_DATA_DIR.value)
  print(f"CPU {results.cpu_model()}, {host_lapack.usable_cores()} cores; devices {jax.devices()}; "
        f"host LAPACK path {'on' if host_lapack.enabled() else 'off'} by default here")
  rows = []
  for run in runs:
    rows += _print(profile_run(sweep, run, data_dir))
  results.write(rows)


if __name__ == "__main__":
  common.run(main, check)
