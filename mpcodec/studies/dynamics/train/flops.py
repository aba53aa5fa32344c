"""The FLOP model of the dynamics grid: each run's cost from XLA's cost analysis of its forward pass.

Used to balance shards and to budget the measurement overhead (no data are loaded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics.grid import family_of
from mpcodec.studies.dynamics.config import DynamicsConfig, SweepConfig, run_config

FAMILIES = ("mlp", "cnn", "transformer")


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
