"""Critical periods of every run, seed and measure, with their nulls (`mpcodec.metrics.critical_periods`).

Per run, measure and seed: each layer's intervals whose velocity exceeds the threshold of its own
phase-randomised surrogates; coordination (the fraction of layers critical together) against its floor
and its null; and the fraction of critical windows over which the loss falls against the length-matched
base rate of falling loss over all windows of the run. Surrogate thresholds of every series of one
length are computed in one jitted call; the nulls in one call per run and measure, vmapped over seeds.

Coordination is at least 1/L whenever any layer is critical (one layer of L alone), so a run of three
layers reads 0.33 with no coordination at all. Its effect is therefore
    coordination effect = coordination - max(1/L, circular-shift null)
per seed, and the loss's
    loss excess = falling fraction - base rate;
each is tested over seeds per run (`run_effects`, Holm over every run's two effects) and, averaged over
the runs of a seed, over the grid (`grid_per_seed`). The earlier study's raw thresholds (coordination >
0.3, falling fraction > 0.3) are computed beside them, never as the verdict.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import stats
from mpcodec.metrics import critical_periods as cp
from mpcodec.studies.dynamics.series import RunSeries

CRITICAL_COLUMNS = ("run", "arch", "dataset", "family", "measure", "seed", "num_layers", "num_windows",
                    "critical_fraction", "coordination", "coordination_floor", "coordination_null",
                    "coordination_effect", "loss_falling_fraction", "loss_base_rate", "loss_excess",
                    "first_critical_step", "last_critical_step")
# The earlier study's thresholds for a "strong" critical period, on coordination and the falling fraction.
RAW_THRESHOLD = 0.3


@functools.partial(jax.jit, static_argnames=("num_surrogates", "alpha"))
def _thresholds(series_NxM, steps_M, keys_N, num_surrogates, alpha):
  return jax.vmap(cp.critical_periods, in_axes=(0, None, 0, None, None))(
      series_NxM, steps_M, keys_N, num_surrogates, alpha)


@functools.partial(jax.jit, static_argnames=("num_shifts",))
def _run_nulls(critical_SxLxW, loss_SxM, keys_S, num_shifts):
  coordination_S = jax.vmap(cp.coordination)(critical_SxLxW)
  null_S = jnp.mean(jax.vmap(cp.coordination_null, in_axes=(0, 0, None))(critical_SxLxW, keys_S, num_shifts),
                    axis=-1)
  loss = jax.vmap(cp.loss_correlation)(critical_SxLxW, loss_SxM)
  return coordination_S, null_S, loss


# Series per jitted call: the surrogates of a block take BLOCK x num_surrogates x M floats (80 MB for
# 256 x 199 x 400), where all of a grid's series at once would take gigabytes.
BLOCK = 256


def _blocked_critical(series_NxM: np.ndarray, steps_M: np.ndarray, keys_N: jax.Array, num_surrogates: int,
                      alpha: float) -> np.ndarray:
  """Critical masks (N, M - 1) of many series, in blocks of one fixed size (the last one padded), so
  one compiled program serves every block."""
  num_series = series_NxM.shape[0]
  padded = -(-num_series // BLOCK) * BLOCK
  series_NxM = np.concatenate([series_NxM, np.repeat(series_NxM[:1], padded - num_series, 0)])
  keys_N = jnp.concatenate([keys_N, jnp.repeat(keys_N[:1], padded - num_series, 0)])
  steps_M = jnp.asarray(steps_M)
  blocks = [np.asarray(_thresholds(jnp.asarray(series_NxM[i:i + BLOCK]), steps_M, keys_N[i:i + BLOCK],
                                   num_surrogates, alpha).critical) for i in range(0, padded, BLOCK)]
  return np.concatenate(blocks)[:num_series]


def _masks(runs: Sequence[RunSeries], measure: str, key: jax.Array, num_surrogates: int, alpha: float
           ) -> dict[str, np.ndarray]:
  """{run: critical mask (S, L, W)}: one jitted call per series length (all runs, seeds and layers)."""
  masks = {}
  by_steps: dict[tuple, list[RunSeries]] = {}
  for run in runs:
    by_steps.setdefault(tuple(run.steps_M.tolist()), []).append(run)
  for steps, group in by_steps.items():
    # Rows: (run, seed, layer) of every run in the group, layers of a seed contiguous.
    series_NxM = np.concatenate([np.swapaxes(r.measures[measure], 1, 2).reshape(-1, len(steps))
                                 for r in group])
    # The key of a series depends only on its run, seed number and layer index, so the thresholds
    # never depend on which other runs are in the sweep.
    keys_N = jnp.stack([jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
        key, run_hash(r.run)), int(seed)), layer) for r in group for seed in r.seeds
        for layer in range(r.num_layers)])
    critical_NxW = _blocked_critical(series_NxM, np.asarray(steps, np.float32), keys_N, num_surrogates, alpha)
    start = 0
    for r in group:
      count = r.num_seeds * r.num_layers
      masks[r.run] = critical_NxW[start:start + count].reshape(r.num_seeds, r.num_layers, -1)
      start += count
  return masks


def run_hash(run: str) -> int:
  """A stable 31-bit number of a run name (Python's hash() changes between processes)."""
  value = 0
  for char in run.encode():
    value = (value * 131 + char) % (2**31 - 1)
  return value


def critical_rows(runs: Sequence[RunSeries], measures: Sequence[str], key: jax.Array, loss_series: str,
                  num_surrogates: int, alpha: float, num_shifts: int) -> tuple[list[dict], dict]:
  """(rows of critical_periods.csv, {(run, measure): per-seed arrays}) for every run with >= 2 layers.

  A run with one measured layer has no coordination: its rows hold None there and say so in the report.
  """
  rows, per_run = [], {}
  for m, measure in enumerate(measures):
    masks = _masks(runs, measure, jax.random.fold_in(key, m), num_surrogates, alpha)
    for run in runs:
      critical_SxLxW = masks[run.run]
      windows_S = np.asarray(cp.num_windows(critical_SxLxW)).sum(axis=1)
      if run.num_layers >= 2:
        keys_S = jnp.stack([jax.random.fold_in(jax.random.fold_in(key, run_hash(run.run) + m), int(s))
                            for s in run.seeds])
        coordination_S, null_S, loss = _run_nulls(jnp.asarray(critical_SxLxW), jnp.asarray(
            run.losses[loss_series]), keys_S, num_shifts)
        coordination_S, null_S = np.asarray(coordination_S), np.asarray(null_S)
        falling_S, base_S = np.asarray(loss.falling_fraction), np.asarray(loss.base_rate)
      else:
        coordination_S = null_S = falling_S = base_S = np.full(run.num_seeds, np.nan)
      any_W = critical_SxLxW.any(axis=1)
      floor = float(cp.coordination_floor(max(run.num_layers, 1)))
      effect_S = coordination_S - np.maximum(floor, null_S)
      excess_S = falling_S - base_S
      per_run[(run.run, measure)] = {"coordination": coordination_S, "coordination_null": null_S,
                                     "coordination_floor": floor, "coordination_effect": effect_S,
                                     "loss_falling_fraction": falling_S, "loss_base_rate": base_S,
                                     "loss_excess": excess_S, "num_windows": windows_S,
                                     "critical_SxLxW": critical_SxLxW}
      for s, seed in enumerate(run.seeds):
        critical_steps = run.steps_M[:-1][any_W[s]]   # interval t starts at measurement t
        has = windows_S[s] > 0 and run.num_layers >= 2
        rows.append({
            "run": run.run, "arch": run.arch, "dataset": run.dataset, "family": run.family,
            "measure": measure, "seed": int(seed), "num_layers": run.num_layers,
            "num_windows": int(windows_S[s]), "critical_fraction": float(critical_SxLxW[s].mean()),
            "coordination": float(coordination_S[s]) if has else None,
            "coordination_floor": floor if run.num_layers >= 2 else None,
            "coordination_null": float(null_S[s]) if has else None,
            "coordination_effect": float(effect_S[s]) if has else None,
            "loss_falling_fraction": float(falling_S[s]) if has else None,
            "loss_base_rate": float(base_S[s]) if has else None,
            "loss_excess": float(excess_S[s]) if has else None,
            "first_critical_step": int(critical_steps[0]) if critical_steps.size else None,
            "last_critical_step": int(critical_steps[-1]) if critical_steps.size else None})
  return rows, per_run


EFFECT_QUANTITIES = (
    # (quantity, observed, what it is tested against)
    ("coordination", "coordination", "max(1/L, circular-shift null)"),
    ("loss_correlation", "loss_falling_fraction", "length-matched base rate of falling loss"),
)


def _null_of(values: dict, quantity: str) -> np.ndarray:
  if quantity == "coordination":
    return np.maximum(values["coordination_floor"], np.nan_to_num(values["coordination_null"]))
  return np.nan_to_num(values["loss_base_rate"])


def run_effects(runs: Sequence[RunSeries], per_run: dict, measure: str, smoke: bool = False) -> list[dict]:
  """Per run: coordination against max(1/L, its circular-shift null) and the falling fraction against its
  base rate, each an effect over the seeds that have critical windows (`cp.effect_over_seeds`: t
  interval, "cannot be tested" below stats.MIN_SEEDS seeds or for a smoke run); the verdicts are then
  re-decided with Holm over every tested effect of the table (one declared family)."""
  effects = []
  for run in runs:
    values = per_run[(run.run, measure)]
    if run.num_layers < 2:
      reason = "one measured layer: coordination across layers is not defined"
      for quantity, _, against in EFFECT_QUANTITIES:
        effects.append({"run": run.run, "measure": measure, "quantity": quantity, "against": against,
                        "effect": None, "ci_low": None, "ci_high": None, "observed": None, "null": None,
                        "num_seeds": run.num_seeds, "num_excluded": run.num_seeds, "p_value": None,
                        "p_adjusted": None, "verdict": "cannot be tested", "reason": reason})
      continue
    valid_S = values["num_windows"] > 0
    for quantity, observed, against in EFFECT_QUANTITIES:
      effect = cp.effect_over_seeds(np.nan_to_num(values[observed]), _null_of(values, quantity), 1,
                                    valid_S=valid_S, smoke=smoke)
      if effect["verdict"] == "cannot be tested" and not valid_S.all():
        effect["reason"] += f" ({int((~valid_S).sum())} seed(s) without any critical window)"
      effects.append({"run": run.run, "measure": measure, "quantity": quantity, "against": against,
                      **effect, "p_adjusted": None})
  tested = [e for e in effects if e["verdict"] != "cannot be tested"]
  if tested:
    adjusted = stats.holm([e["p_value"] for e in tested])
    for effect, p_adjusted in zip(tested, adjusted):
      effect["p_adjusted"] = float(p_adjusted)
      effect["verdict"] = str(stats.hypothesis_verdicts(p_adjusted, effect["effect"], 1))
      effect["reason"] = f"p = {effect['p_value']:.3g}, Holm over {len(tested)} effects: {p_adjusted:.3g}"
  return effects


def _normalised(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
  """(observed - null) / (1 - null): the excess as a share of the room above the null (0 if none)."""
  room = 1.0 - null
  return np.where(room > 0, (observed - null) / np.where(room > 0, room, 1.0), 0.0)


def grid_per_seed(runs: Sequence[RunSeries], per_run: dict, measure: str,
                  seed_numbers: Sequence[int]) -> dict[str, np.ndarray]:
  """Per seed number (one replicate of the grid), over the runs with >= 2 layers that have that seed:

  coordination_effect / loss_excess: the mean over the runs with a critical window of the per-run effects
  above; falling_fraction / base_rate: the means of the raw fraction and its base rate; strong: the
  fraction of runs whose coordination effect and loss excess each reach RAW_THRESHOLD of the room above
  their null ((x - null) / (1 - null); a run without a window is not strong); strong_raw: the fraction
  with coordination > RAW_THRESHOLD and falling fraction > RAW_THRESHOLD, the earlier study's rule. NaN
  for a seed with no such run.
  """
  names = ("coordination_effect", "loss_excess", "falling_fraction", "base_rate", "strong", "strong_raw")
  out = {name: np.full(len(seed_numbers), np.nan) for name in names}
  for i, seed in enumerate(seed_numbers):
    lists: dict[str, list[float]] = {name: [] for name in names}
    for run in runs:
      if seed not in run.seeds or run.num_layers < 2:
        continue
      values = per_run[(run.run, measure)]
      s = int(np.flatnonzero(run.seeds == seed)[0])
      has = bool(values["num_windows"][s] > 0)
      coordination, falling = float(values["coordination"][s]), float(values["loss_falling_fraction"][s])
      null = max(values["coordination_floor"], float(np.nan_to_num(values["coordination_null"][s])))
      base = float(values["loss_base_rate"][s])
      lists["strong_raw"].append(float(has and coordination > RAW_THRESHOLD and falling > RAW_THRESHOLD))
      lists["strong"].append(float(has and _normalised(np.float64(coordination), np.float64(null)) >= RAW_THRESHOLD
                                   and _normalised(np.float64(falling), np.float64(base)) >= RAW_THRESHOLD))
      if has:
        lists["coordination_effect"].append(coordination - null)
        lists["loss_excess"].append(falling - base)
        lists["falling_fraction"].append(falling)
        lists["base_rate"].append(base)
    for name in names:
      if lists[name]:
        out[name][i] = float(np.mean(lists[name]))
  return out
