"""The analysis' two figures: a dashboard of the whole sweep and a deep dive into one run per family.

Dashboard (12 panels): convergence order per family; stabilisation step against depth; jump timing over
true training steps; jumps per series by architecture; jumps by layer depth; jump types; critical
periods' coordination against its circular-shift null; loss correlation against its base rate; the
fraction of layers critical over training; mechanism effects with their CIs; the detector's recall; the
replication verdicts. Deep dive: per family, the run with the most jumps: its seed-mean series per layer
with the jumps of every seed marked, and seed 0's critical intervals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from mpcodec.studies.dynamics.program import FAMILIES  # pylint: disable=wrong-import-position

ORDERS = ("bottom-up", "top-down", "simultaneous", "unclear", "cannot be tested")
VERDICT_COLOURS = {"replicates": "tab:green", "does not replicate": "tab:red", "cannot be tested": "tab:gray"}


def _empty(ax, text: str) -> None:
  ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, wrap=True, transform=ax.transAxes)
  ax.set_xticks([])
  ax.set_yticks([])


def _orders(ax, findings, primary):
  counts = {f: [sum(1 for o in findings.orders if o["measure"] == primary and o["order"] == order
                    and o["run"].split("_", 1)[0] == f) for order in ORDERS] for f in FAMILIES}
  bottom = np.zeros(len(FAMILIES))
  for i, order in enumerate(ORDERS):
    values = np.asarray([counts[f][i] for f in FAMILIES])
    ax.bar(FAMILIES, values, bottom=bottom, label=order)
    bottom += values
  ax.set_ylabel("runs")
  ax.set_title(f"convergence order ({primary})", fontsize=9)
  ax.legend(fontsize=6)


def _stabilisation(ax, findings, primary):
  rows = [r for r in findings.convergence_rows if r["measure"] == primary]
  for family in FAMILIES:
    mine = [r for r in rows if r["family"] == family]
    if mine:
      ax.scatter([r["depth_fraction"] for r in mine],
                 [1.05 if r["stabilisation_fraction"] is None else r["stabilisation_fraction"]
                  for r in mine],
                 s=6, alpha=0.5, label=family)
  ax.axhline(1.0, color="k", lw=0.5)
  ax.set_xlabel("layer depth fraction")
  ax.set_ylabel("stabilisation (fraction of training;\nabove 1 = never)")
  ax.set_title("stabilisation step by depth", fontsize=9)
  ax.legend(fontsize=6)


def _jump_timing(ax, jumps):
  if not np.asarray(jumps["step"]).size:
    return _empty(ax, "no jumps detected")
  steps = np.asarray(jumps["step"], np.float64)
  bins = np.linspace(0, steps.max() + 1, 41)
  ax.hist([steps[jumps["family"] == f] for f in FAMILIES], bins=bins, stacked=True, label=list(FAMILIES))
  ax.set_xlabel("true training step")
  ax.set_ylabel("jumps")
  ax.set_title("jump timing", fontsize=9)
  ax.legend(fontsize=6)


def _jumps_per_arch(ax, findings):
  num_series = findings.detection["num_series"]
  archs = sorted({r.arch for r in findings.sweep.runs})
  rates = []
  for arch in archs:
    runs = {r.run for r in findings.sweep.runs if r.arch == arch}
    series = sum(v for (run, _, _), v in num_series.items() if run in runs)
    in_runs = np.isin(findings.jumps["run"], list(runs)) if np.asarray(findings.jumps["step"]).size else []
    count = int(np.sum(in_runs))
    rates.append(count / max(series, 1))
  ax.barh(range(len(archs)), rates)
  ax.set_yticks(range(len(archs)), archs, fontsize=5)
  ax.set_xlabel("jumps per series")
  ax.set_title("jumps per architecture", fontsize=9)


def _jumps_by_depth(ax, jumps):
  if not np.asarray(jumps["step"]).size:
    return _empty(ax, "no jumps detected")
  depth = np.asarray(jumps["depth_fraction"], np.float64)
  ax.hist([depth[jumps["family"] == f] for f in FAMILIES], bins=np.linspace(0, 1, 11), label=list(FAMILIES))
  ax.set_xlabel("layer depth fraction")
  ax.set_ylabel("jumps")
  ax.set_title("jumps by layer", fontsize=9)
  ax.legend(fontsize=6)


def _types(ax, findings):
  types = findings.types
  if types["reason"]:
    return _empty(ax, f"jump types: {types['reason']}")
  labels = types["labels"]
  scatter = ax.scatter(findings.jumps["fraction"], findings.jumps["relative_size"], c=labels, s=5,
                       cmap="tab10")
  ax.set_xlabel("fraction of training")
  ax.set_ylabel("size / series range")
  ari = types["stability"]["adjusted_rand_index"]
  ax.set_title(f"{types['num_types']} jump types (ARI across seed halves "
               f"{'n/a' if ari is None else f'{ari:.2f}'})", fontsize=9)
  ax.legend(*scatter.legend_elements(), fontsize=5, loc="best")


def _null_scatter(ax, findings, primary, observed, null, title, xlabel, ylabel):
  rows = [r for r in findings.critical_rows if r["measure"] == primary and r[observed] is not None]
  if not rows:
    return _empty(ax, f"{title}: no run with critical windows")
  for family in FAMILIES:
    mine = [r for r in rows if r["family"] == family]
    if mine:
      ax.scatter([r[null] for r in mine], [r[observed] for r in mine], s=8, alpha=0.6, label=family)
  ax.plot([0, 1], [0, 1], color="k", lw=0.5)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=6)


def _critical_timeline(ax, findings, primary):
  for family in FAMILIES:
    curves = []
    for run in findings.sweep.runs:
      if run.family != family:
        continue
      critical = findings_critical_mask(findings, run.run, primary)
      if critical is not None:
        fraction_W = critical.mean(axis=(0, 1))
        fraction = np.interp(np.linspace(0, 1, 50), run.steps_M[:-1] / run.num_steps, fraction_W)
        curves.append(fraction)
    if curves:
      ax.plot(np.linspace(0, 1, 50), np.mean(curves, axis=0), label=family)
  ax.set_xlabel("fraction of training")
  ax.set_ylabel("fraction of layers critical")
  ax.set_title("critical periods over training", fontsize=9)
  ax.legend(fontsize=6)


def findings_critical_mask(findings, run: str, measure: str):
  """The (S, L, W) critical mask of one run and measure, None if not computed."""
  values = findings.critical_per_run.get((run, measure))
  return None if values is None else values["critical_SxLxW"]


def _mechanisms(ax, findings):
  effects = [e for e in findings.mechanisms["effects"] if e["scope"] == "family" and e["effect"] is not None]
  if not effects:
    return _empty(ax, f"mechanisms: {findings.mechanisms['reason'] or 'no effect computed'}")
  labels = [f"{e['family']}: {e['mechanism']}" for e in effects]
  values = np.asarray([e["effect"] for e in effects])
  low = np.asarray([e["ci_low"] if e["ci_low"] is not None else e["effect"] for e in effects])
  high = np.asarray([e["ci_high"] if e["ci_high"] is not None else e["effect"] for e in effects])
  ax.errorbar(values, range(len(values)), xerr=[values - low, high - values], fmt="o", ms=3)
  ax.axvline(0, color="k", lw=0.5)
  ax.set_yticks(range(len(labels)), labels, fontsize=5)
  ax.set_xlabel("change across jumps - across controls")
  ax.set_title("mechanism effects (95% CI over seeds)", fontsize=9)


def _validity(ax, validity: Mapping[str, Any]):
  """Recall against planted step size per noise: mean over layouts and positions."""
  recall = validity.get("recall")
  if not isinstance(recall, Mapping):
    return _empty(ax, "detector validity: see detector_validity.json")
  for noise, by_layout in recall.items():
    values_by_size: dict[float, list[float]] = {}
    for by_position in by_layout.values():
      for by_size in by_position.values():
        for size, value in by_size.items():
          values_by_size.setdefault(float(size), []).append(value)
    sizes = sorted(values_by_size)
    ax.plot(sizes, [np.mean(values_by_size[s]) for s in sizes], marker="o", label=noise)
  bars = validity.get("bars") or {}
  ax.axhline(bars.get("recall_bar", 0.9), color="k", lw=0.5, ls="--")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("planted step (noise SDs)")
  ax.set_ylabel("recall (within 2 measurements)")
  fp = bars.get("false_positives_per_1000_max_on_nulls")
  ax.set_title(f"detector recall; worst null {fp:.2f} FP / 1,000" if fp is not None else "detector recall",
               fontsize=9)
  ax.legend(fontsize=6)


def _replication(ax, rows):
  ax.set_xlim(0, 1)
  ax.set_ylim(0, len(rows))
  for i, row in enumerate(reversed(rows)):
    ax.text(0.0, i + 0.5, row["claim"][:60], fontsize=5, va="center")
    ax.text(1.0, i + 0.5, row["verdict"], fontsize=6, va="center", ha="right",
            color=VERDICT_COLOURS.get(row["verdict"], "k"))
  ax.axis("off")
  ax.set_title("replication of the earlier study", fontsize=9)


def dashboard_figure(findings, primary: str):
  """The 12-panel dashboard of the sweep's findings."""
  fig, axes = plt.subplots(3, 4, figsize=(20, 13))
  axes = axes.ravel()
  _orders(axes[0], findings, primary)
  _stabilisation(axes[1], findings, primary)
  _jump_timing(axes[2], findings.jumps)
  _jumps_per_arch(axes[3], findings)
  _jumps_by_depth(axes[4], findings.jumps)
  _types(axes[5], findings)
  _null_scatter(axes[6], findings, primary, "coordination", "coordination_null",
                "coordination against its null",
                "circular-shift null", "observed")
  _null_scatter(axes[7], findings, primary, "loss_falling_fraction", "loss_base_rate",
                "loss falls in critical windows", "base rate over all windows", "observed")
  _critical_timeline(axes[8], findings, primary)
  _mechanisms(axes[9], findings)
  _validity(axes[10], findings.validity)
  _replication(axes[11], findings.replication)
  fig.suptitle(f"Training dynamics: {len(findings.sweep.runs)} runs ({primary} where one measure is shown)")
  fig.tight_layout()
  return fig


def deep_dive_figure(findings, primary: str):
  """Per family present: the run with most jumps, its layers' series with jumps marked, critical mask."""
  families = [f for f in FAMILIES if any(r.family == f for r in findings.sweep.runs)]
  fig, axes = plt.subplots(len(families), 2, figsize=(14, 3.6 * len(families)), squeeze=False)
  jump_run = np.asarray(findings.jumps["run"])
  for row, family in zip(axes, families):
    runs = [r for r in findings.sweep.runs if r.family == family]
    run = max(runs, key=lambda r: int(np.sum(jump_run == r.run)) if jump_run.size else 0)
    series_SxMxL = run.measures[primary]
    for l, layer in enumerate(run.layer_names):
      line, = row[0].plot(run.steps_M, series_SxMxL[:, :, l].mean(axis=0), lw=1, label=layer)
      if jump_run.size:
        mine = ((jump_run == run.run) & (findings.jumps["layer"] == layer)
                & (findings.jumps["measure"] == primary))
        row[0].plot(findings.jumps["step"][mine], np.interp(findings.jumps["step"][mine], run.steps_M,
                                                            series_SxMxL[:, :, l].mean(axis=0)),
                    "v", color=line.get_color(), ms=4)
    row[0].set_xlabel("true training step")
    row[0].set_ylabel(f"{primary} (seed mean)")
    row[0].set_title(f"{run.run}: layers and jumps (markers: any seed)", fontsize=9)
    row[0].legend(fontsize=5, ncol=2)
    critical = findings_critical_mask(findings, run.run, primary)
    if critical is None:
      _empty(row[1], "no critical mask")
    else:
      row[1].imshow(critical[0], aspect="auto", interpolation="nearest", cmap="Greys",
                    extent=(run.steps_M[0], run.steps_M[-1], run.num_layers - 0.5, -0.5))
      row[1].set_yticks(range(run.num_layers), run.layer_names, fontsize=6)
      row[1].set_xlabel("true training step")
      row[1].set_title(f"{run.run}: critical intervals, seed {int(run.seeds[0])}", fontsize=9)
  fig.tight_layout()
  return fig
