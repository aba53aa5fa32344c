"""Stabilisation step of every layer, measure and seed of a sweep, and each run's convergence order.

The formulas are `mpcodec.metrics.convergence`'s; this module maps measurement indices to true training
steps (an index of M, "never stable", has no step), writes the rows of `convergence.csv` and decides
the order of each run and measure from the CI over its seeds (`convergence.convergence_order`). No order
is decided for a smoke run or a run with fewer than `stats.MIN_SEEDS` seeds: "cannot be tested", with
the reason, the correlation still reported.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np

from mpcodec.core import stats
from mpcodec.metrics import convergence
from mpcodec.studies.dynamics.series import RunSeries

CONVERGENCE_COLUMNS = ("run", "arch", "dataset", "family", "measure", "seed", "layer", "depth_fraction",
                       "stabilisation_index", "stabilisation_step", "stabilisation_fraction",
                       "never_stable", "constant", "band", "final_level")
ORDER_COLUMNS = ("run", "measure", "order", "effect", "ci_low", "ci_high", "num_seeds", "reason")


@functools.partial(jax.jit, static_argnames=("tail_fraction", "family_alpha", "seed_multiplier"))
def _stabilisation(series_SxMxL, tail_fraction, family_alpha, seed_multiplier):
  return convergence.stabilisation(series_SxMxL, tail_fraction, family_alpha, seed_multiplier)


_depth_order = jax.jit(convergence.depth_order_correlation)


def stabilisation_all(runs: Sequence[RunSeries], measures: Sequence[str], tail_fraction: float,
                      family_alpha: float, seed_multiplier: float
                      ) -> dict[tuple[str, str], dict[str, np.ndarray]]:
  """{(run, measure): `convergence.stabilisation` (each (S, L)) plus the true step of each index}.

  Layers are independent in the band and the index, so the series of every run and measure with the
  same seeds and measurements are concatenated along the layer axis and computed in one jitted call.
  "step" is -1 where the layer never settles (index M); "step_or_end" puts num_steps + 1 there, so a
  never-stable layer ranks after every layer that settles in the depth-order correlation.
  """
  groups: dict[tuple[int, int], list[tuple[RunSeries, str]]] = {}
  for run in runs:
    for measure in measures:
      groups.setdefault((run.num_seeds, run.num_measurements), []).append((run, measure))
  out = {}
  for members in groups.values():
    stacked = np.concatenate([run.measures[measure] for run, measure in members], axis=2)
    computed = {k: np.asarray(v) for k, v in _stabilisation(stacked, tail_fraction, family_alpha,
                                                            seed_multiplier).items()}
    start = 0
    for run, measure in members:
      part = {k: v[:, start:start + run.num_layers] for k, v in computed.items()}
      start += run.num_layers
      settled_SxL = part["index"] < run.num_measurements
      safe_SxL = np.minimum(part["index"], run.num_measurements - 1)
      part["step"] = np.where(settled_SxL, run.steps_M[safe_SxL], -1)
      part["step_or_end"] = np.where(settled_SxL, run.steps_M[safe_SxL], run.num_steps + 1)
      out[(run.run, measure)] = part
  return out


def convergence_rows(runs: Sequence[RunSeries], measures: Sequence[str], tail_fraction: float,
                     family_alpha: float, seed_multiplier: float, num_resamples: int,
                     no_verdict: str | None = None) -> tuple[list[dict], list[dict], dict]:
  """(rows of convergence.csv, one order row per run and measure, {(run, measure): stabilisation}).

  `no_verdict`: why no order may be decided anywhere (a smoke run), or None.
  """
  rows, orders = [], []
  by_run = stabilisation_all(runs, measures, tail_fraction, family_alpha, seed_multiplier)
  for run in runs:
    for measure in measures:
      out = by_run[(run.run, measure)]
      for s, seed in enumerate(run.seeds):
        for l, layer in enumerate(run.layer_names):
          step = int(out["step"][s, l])
          rows.append({
              "run": run.run, "arch": run.arch, "dataset": run.dataset, "family": run.family,
              "measure": measure, "seed": int(seed), "layer": layer,
              "depth_fraction": float(run.depth_fraction_L[l]),
              "stabilisation_index": int(out["index"][s, l]),
              "stabilisation_step": None if step < 0 else step,
              "stabilisation_fraction": None if step < 0 else step / run.num_steps,
              "never_stable": bool(out["never_stable"][s, l]), "constant": bool(out["constant"][s, l]),
              "band": float(out["band"][s, l]), "final_level": float(out["final_level"][s, l])})
      if run.num_layers < 2:
        orders.append({"run": run.run, "measure": measure, "order": "cannot be tested", "effect": None,
                       "ci_low": None, "ci_high": None, "num_seeds": run.num_seeds,
                       "reason": "one measured layer: no depth order"})
        continue
      rho_S, _ = _depth_order(out["step_or_end"], run.depth_fraction_L)
      order = convergence.convergence_order(np.asarray(rho_S), num_resamples=num_resamples)
      row = {"run": run.run, "measure": measure, **{k: order[k] for k in ORDER_COLUMNS[2:]}}
      why_not = no_verdict or (f"{run.num_seeds} seed(s), at least {stats.MIN_SEEDS} needed"
                               if run.num_seeds < stats.MIN_SEEDS else None)
      if why_not and row["order"] != "cannot be tested":
        row.update(order="cannot be tested", reason=why_not)
      orders.append(row)
  return rows, orders, by_run


def stable_at_start_per_seed(runs: Sequence[RunSeries], by_run: dict, measure: str,
                             seed_numbers: Sequence[int]) -> np.ndarray:
  """(seeds,) per seed number: the fraction of runs in which every layer settles at step 0.

  Seed number i of every run shares the seed scheme's key i, so it is one replicate of the whole grid;
  a run that lost seed i (failed, diverged) does not count for it. NaN for a seed in no run.
  """
  hits_S, counts_S = np.zeros(len(seed_numbers)), np.zeros(len(seed_numbers))
  position = {int(seed): i for i, seed in enumerate(seed_numbers)}
  for run in runs:
    index_SxL = by_run[(run.run, measure)]["index"]
    for s, seed in enumerate(run.seeds):
      counts_S[position[int(seed)]] += 1
      hits_S[position[int(seed)]] += float(np.all(index_SxL[s] == 0))
  return np.where(counts_S > 0, hits_S / np.maximum(counts_S, 1), np.nan)
