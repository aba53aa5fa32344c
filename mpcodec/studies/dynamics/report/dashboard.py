"""The analysis' two figures: a dashboard of the whole sweep and a deep dive into one run per family.

Dashboard: one panel per finding that has data: convergence order per family; stabilisation step against
depth; jump timing over true training steps; jumps per series by architecture; jumps by layer depth; jump
types; critical periods' coordination against its circular-shift null; loss falling in critical windows
against its base rate; the fraction of layers critical over training; mechanism effects with their CIs;
the detector's recall. A finding without data gets no panel: the strip at the bottom names it with the
reason, below the replication verdicts. Deep dive: per family, the run with the most jumps: its seed-mean
series per layer with the jumps of every seed marked, and the critical intervals of its seed with the most.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from matplotlib import patches  # pylint: disable=g-import-not-at-top,wrong-import-position

from mpcodec.studies.dynamics.grid import FAMILIES  # pylint: disable=wrong-import-position
from mpcodec.studies.dynamics.report.training import measure_label  # pylint: disable=wrong-import-position

ORDERS = ("bottom-up", "top-down", "simultaneous", "unclear", "cannot be tested")
VERDICT_COLOURS = {"replicates": "tab:green", "does not replicate": "tab:red", "cannot be tested": "tab:gray"}
FAMILY_COLOURS = {"mlp": "tab:blue", "cnn": "tab:orange", "transformer": "tab:green"}
DEPTH_LABEL = "layer depth (0 = first layer, 1 = last)"


def no_data(ax, reason: str) -> None:
  """Marks a panel that has nothing to draw: "no data: <reason>" in its middle, no ticks."""
  ax.text(0.5, 0.5, f"no data: {reason}", ha="center", va="center", fontsize=9, wrap=True,
          transform=ax.transAxes)
  ax.set_xticks([])
  ax.set_yticks([])


def _families(findings) -> list[str]:
  return [f for f in FAMILIES if any(r.family == f for r in findings.sweep.runs)]


def _orders(ax, findings, primary, families):
  counts = {f: [sum(1 for o in findings.orders if o["measure"] == primary and o["order"] == order
                    and o["run"].split("_", 1)[0] == f) for order in ORDERS] for f in families}
  bottom = np.zeros(len(families))
  for i, order in enumerate(ORDERS):
    values = np.asarray([counts[f][i] for f in families], np.float64)
    if values.any():
      ax.bar(families, values, bottom=bottom, label=order)
    bottom += values
  ax.set_xlabel("architecture family")
  ax.set_ylabel("runs (count)")
  ax.yaxis.get_major_locator().set_params(integer=True)
  ax.legend(title="order of settling", fontsize=7, title_fontsize=7)


def _stabilisation(ax, findings, primary, families):
  rows = [r for r in findings.convergence_rows if r["measure"] == primary]
  for family in families:
    mine = [r for r in rows if r["family"] == family]
    settled = [r for r in mine if r["stabilisation_fraction"] is not None]
    never = [r for r in mine if r["stabilisation_fraction"] is None]
    ax.scatter([r["depth_fraction"] for r in settled], [r["stabilisation_fraction"] for r in settled], s=10,
               alpha=0.6, color=FAMILY_COLOURS[family], label=family)
    if never:
      ax.scatter([r["depth_fraction"] for r in never], [1.05] * len(never), s=14, marker="x",
                 color=FAMILY_COLOURS[family], label=f"{family}: never settles")
  ax.axhline(1.0, color="k", lw=0.5)
  ax.set_xlabel(DEPTH_LABEL)
  ax.set_ylabel("stabilisation step\n(fraction of training; x = never)")
  ax.legend(fontsize=7)


def _jump_timing(ax, findings, families):
  jumps = findings.jumps
  steps = np.asarray(jumps["step"], np.float64)
  bins = np.linspace(0, steps.max() + 1, 41)
  ax.hist([steps[jumps["family"] == f] for f in families], bins=bins, stacked=True, label=families,
          color=[FAMILY_COLOURS[f] for f in families])
  ax.set_xlabel("training step")
  ax.set_ylabel("jumps (count)")
  ax.legend(fontsize=7)


def _jumps_per_arch(ax, findings):
  num_series = findings.detection["num_series"]
  archs = sorted({r.arch for r in findings.sweep.runs})
  rates = []
  jump_runs = np.asarray(findings.jumps["run"])
  for arch in archs:
    runs = {r.run for r in findings.sweep.runs if r.arch == arch}
    series = sum(v for (run, _, _), v in num_series.items() if run in runs)
    count = int(np.sum(np.isin(jump_runs, list(runs)))) if jump_runs.size else 0
    rates.append(count / max(series, 1))
  ax.barh(range(len(archs)), rates)
  ax.set_yticks(range(len(archs)), archs, fontsize=7)
  ax.set_ylabel("architecture")
  ax.set_xlabel("jumps per series (mean count)")


def _jumps_by_depth(ax, findings, families):
  jumps = findings.jumps
  depth = np.asarray(jumps["depth_fraction"], np.float64)
  ax.hist([depth[jumps["family"] == f] for f in families], bins=np.linspace(0, 1, 11), label=families,
          color=[FAMILY_COLOURS[f] for f in families])
  ax.set_xlabel(DEPTH_LABEL)
  ax.set_ylabel("jumps (count)")
  ax.legend(fontsize=7)


def _types(ax, findings):
  types = findings.types
  scatter = ax.scatter(findings.jumps["fraction"], findings.jumps["relative_size"], c=types["labels"], s=6,
                       cmap="tab10", vmin=-0.5, vmax=9.5)
  ax.set_xlabel("jump position (fraction of training)")
  ax.set_ylabel("jump size / series range")
  handles, _ = scatter.legend_elements()
  ax.legend(handles, [f"type {t}" for t in range(len(handles))], fontsize=7)


def _null_scatter(ax, rows, families, observed, null, xlabel, ylabel):
  for family in families:
    mine = [r for r in rows if r["family"] == family]
    if mine:
      ax.scatter([r[null] for r in mine], [r[observed] for r in mine], s=10, alpha=0.6,
                 color=FAMILY_COLOURS[family], label=family)
  ax.plot([0, 1], [0, 1], color="k", lw=0.5, label="observed = null")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.legend(fontsize=7)


def findings_critical_mask(findings, run: str, measure: str):
  """The (S, L, W) critical mask of one run and measure, None if not computed."""
  values = findings.critical_per_run.get((run, measure))
  return None if values is None else values["critical_SxLxW"]


def _critical_curves(findings, primary, families) -> dict[str, np.ndarray]:
  curves = {}
  for family in families:
    found = []
    for run in findings.sweep.runs:
      critical = findings_critical_mask(findings, run.run, primary) if run.family == family else None
      if critical is not None:
        fraction_W = critical.mean(axis=(0, 1))
        found.append(np.interp(np.linspace(0, 1, 50), run.steps_M[:-1] / run.num_steps, fraction_W))
    if found:
      curves[family] = np.mean(found, axis=0)
  return curves


def _critical_timeline(ax, curves):
  for family, curve in curves.items():
    ax.plot(np.linspace(0, 1, 50), curve, color=FAMILY_COLOURS[family], label=family)
  ax.set_xlabel("fraction of training")
  ax.set_ylabel("layers critical (fraction, mean over runs)")
  ax.legend(fontsize=7)


def _mechanisms(ax, effects):
  labels = [f"{e['family']}: {e['mechanism']}" for e in effects]
  values = np.asarray([e["effect"] for e in effects])
  low = np.asarray([e["ci_low"] if e["ci_low"] is not None else e["effect"] for e in effects])
  high = np.asarray([e["ci_high"] if e["ci_high"] is not None else e["effect"] for e in effects])
  ax.errorbar(values, range(len(values)), xerr=[values - low, high - values], fmt="o", ms=4)
  ax.axvline(0, color="k", lw=0.5)
  ax.set_yticks(range(len(labels)), labels, fontsize=7)
  ax.set_ylabel("family: mechanism")
  ax.set_xlabel("change across jumps − across matched controls")


def _recall_by_size(validity: Mapping[str, Any]) -> dict[str, tuple[list[float], list[float]]]:
  """{noise: (planted sizes, recall averaged over layouts and positions)}."""
  out = {}
  for noise, by_layout in validity["recall"].items():
    values_by_size: dict[float, list[float]] = {}
    for by_position in by_layout.values():
      for by_size in by_position.values():
        for size, value in by_size.items():
          values_by_size.setdefault(float(size), []).append(value)
    sizes = sorted(values_by_size)
    out[noise] = (sizes, [float(np.mean(values_by_size[s])) for s in sizes])
  return out


def _validity(ax, validity: Mapping[str, Any]):
  for noise, (sizes, recall) in _recall_by_size(validity).items():
    ax.plot(sizes, recall, marker="o", label=f"{noise} noise")
  bars = validity.get("bars") or {}
  bar = bars.get("recall_bar", 0.9)
  ax.axhline(bar, color="k", lw=0.5, ls="--", label=f"bar {bar:g}")
  ax.set_xscale("log", base=2)
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel("planted step size (noise SDs)")
  ax.set_ylabel("recall (planted steps found\nwithin 2 measurements)")
  ax.legend(fontsize=7)


def _panels(findings, primary: str, families: list[str]
            ) -> list[tuple[str, str | None, Callable[[Any], None]]]:
  """(title, reason there is no data or None, draw(ax)) of every dashboard panel, in reading order."""
  has_jumps = np.asarray(findings.jumps["step"]).size > 0
  orders = [o for o in findings.orders if o["measure"] == primary]
  stabilisation = [r for r in findings.convergence_rows if r["measure"] == primary]
  critical = [r for r in findings.critical_rows if r["measure"] == primary and r["coordination"] is not None]
  loss_rows = [r for r in findings.critical_rows
               if r["measure"] == primary and r["loss_falling_fraction"] is not None]
  curves = _critical_curves(findings, primary, families)
  effects = [e for e in findings.mechanisms["effects"] if e["scope"] == "family" and e["effect"] is not None]
  types = findings.types
  ari = (types.get("stability") or {}).get("adjusted_rand_index")
  fp = (findings.validity.get("bars") or {}).get("false_positives_per_1000_max_on_nulls")
  num_series = sum(findings.detection["num_series"].values())
  no_jumps = None if has_jumps else f"no jump detected in {num_series} series"
  return [
      ("convergence order", None if orders else "no convergence order computed",
       lambda ax: _orders(ax, findings, primary, families)),
      ("stabilisation step by depth", None if stabilisation else "no stabilisation measured",
       lambda ax: _stabilisation(ax, findings, primary, families)),
      ("jump timing", no_jumps, lambda ax: _jump_timing(ax, findings, families)),
      ("jumps per architecture", no_jumps if findings.detection["num_series"] else "no series searched",
       lambda ax: _jumps_per_arch(ax, findings)),
      ("jumps by layer depth", no_jumps, lambda ax: _jumps_by_depth(ax, findings, families)),
      ("jump types" if types["reason"] or no_jumps else
       f"{types['num_types']} jump types (ARI across seed halves {'n/a' if ari is None else f'{ari:.2f}'})",
       types["reason"] or no_jumps, lambda ax: _types(ax, findings)),
      ("critical periods: coordination against its null",
       None if critical else "no run with critical windows",
       lambda ax: _null_scatter(ax, critical, families, "coordination", "coordination_null",
                                "circular-shift null (same quantity)",
                                "coordination (fraction of layers\ncritical together)")),
      ("loss falls in critical windows", None if loss_rows else "no run with critical windows",
       lambda ax: _null_scatter(ax, loss_rows, families, "loss_falling_fraction", "loss_base_rate",
                                "base rate: fraction of all windows\nwith falling loss",
                                "fraction of critical windows\nwith falling loss")),
      ("critical periods over training", None if curves else "no critical mask computed",
       lambda ax: _critical_timeline(ax, curves)),
      ("mechanism effects (95% CI over seeds)",
       None if effects else (findings.mechanisms["reason"] or "no effect computed"),
       lambda ax: _mechanisms(ax, effects)),
      ("jump detector recall" + (f"; worst null {fp:.2f} false positives / 1,000" if fp is not None else ""),
       None if isinstance(findings.validity.get("recall"), Mapping) else "see detector_validity.json",
       lambda ax: _validity(ax, findings.validity)),
  ]


def _number(value: Any) -> str:
  if value is None:
    return "n/a"
  return f"{value:.3g}" if isinstance(value, float) else str(value)


def _replication_and_notes(ax, rows, dropped):
  """The replication verdicts (claim, ours with its CI, verdict) and the panels left out with the reasons."""
  total = len(rows) + (len(dropped) + 1 if dropped else 0)
  ax.set_xlim(0, 1)
  ax.set_ylim(max(total, 1), 0)
  for i, row in enumerate(rows):
    ours = _number(row.get("result"))
    if row.get("ci_low") is not None and row.get("ci_high") is not None:
      ours += f" [{_number(row['ci_low'])}, {_number(row['ci_high'])}]"
    claim = row["claim"] if len(row["claim"]) <= 80 else row["claim"][:79] + "…"
    ax.text(0.0, i + 0.5, claim, fontsize=8, va="center")
    ax.text(0.62, i + 0.5, f"ours: {ours}", fontsize=8, va="center")
    ax.text(1.0, i + 0.5, row["verdict"], fontsize=8, va="center", ha="right",
            color=VERDICT_COLOURS.get(row["verdict"], "k"), weight="bold")
  if dropped:
    ax.text(0.0, len(rows) + 0.5, "Not drawn (no data):", fontsize=8, va="center", weight="bold")
    for j, (title, reason) in enumerate(dropped, start=1):
      ax.text(0.02, len(rows) + j + 0.5, f"{title}: {reason}", fontsize=8, va="center")
  ax.axis("off")
  ax.set_title("Replication of the earlier study" + (" and findings without data" if dropped else ""),
               fontsize=10)


STRIP_LINE_INCHES = 0.2   # height of one line of the replication strip
PANEL_INCHES = (4.6, 3.7)


def dashboard_figure(findings, primary: str):
  """The dashboard of the sweep's findings: a panel per finding with data, then the replication strip
  (in the last row's free cells when it fits there, else in a row of its own)."""
  families = _families(findings)
  panels = _panels(findings, primary, families)
  drawn = [(title, draw) for title, reason, draw in panels if reason is None]
  dropped = [(title, reason) for title, reason, _ in panels if reason is not None]
  columns = min(4, max(len(drawn), 2))
  rows = math.ceil(len(drawn) / columns)
  free = rows * columns - len(drawn)
  strip_height = 0.6 + STRIP_LINE_INCHES * (len(findings.replication) + (len(dropped) + 1 if dropped else 0))
  strip_in_last_row = rows > 0 and free >= 2 and strip_height <= PANEL_INCHES[1]
  heights = [PANEL_INCHES[1]] * rows + ([] if strip_in_last_row else [strip_height])
  with plt.rc_context({"font.size": 9}):
    fig = plt.figure(figsize=(PANEL_INCHES[0] * columns, sum(heights)), layout="constrained")
    grid = fig.add_gridspec(len(heights), columns, height_ratios=heights)
    for i, (title, draw) in enumerate(drawn):
      ax = fig.add_subplot(grid[i // columns, i % columns])
      draw(ax)
      ax.set_title(title, fontsize=10)
    strip = grid[rows - 1, columns - free:] if strip_in_last_row else grid[len(heights) - 1, :]
    _replication_and_notes(fig.add_subplot(strip), findings.replication, dropped)
    fig.suptitle(f"Training dynamics: {len(findings.sweep.runs)} runs ({', '.join(families)}); "
                 f"{measure_label(primary)} where one measure is shown", fontsize=12)
  return fig


def _critical_panel(ax, findings, run, primary):
  critical = findings_critical_mask(findings, run.run, primary)
  if critical is None:
    no_data(ax, "critical periods were not computed for this run and measure")
    ax.set_title(f"{run.run}: critical intervals", fontsize=10)
    return
  per_seed = critical.reshape(critical.shape[0], -1).sum(axis=1)
  if not per_seed.any():
    no_data(ax, f"no layer has a critical interval in any of the {critical.shape[0]} seeds")
    ax.set_title(f"{run.run}: critical intervals", fontsize=10)
    return
  s = int(np.argmax(per_seed))
  ax.imshow(critical[s], aspect="auto", interpolation="nearest", cmap="Greys", vmin=0, vmax=1,
            extent=(run.steps_M[0], run.steps_M[-1], run.num_layers - 0.5, -0.5))
  ax.set_yticks(range(run.num_layers), run.layer_names, fontsize=7)
  ax.set_xlabel("training step")
  ax.set_ylabel("layer (input side at the top)")
  ax.legend(handles=[patches.Patch(facecolor="black", label="critical: velocity above its surrogates"),
                     patches.Patch(facecolor="white", edgecolor="grey", label="not critical")],
            fontsize=7, loc="upper right")
  ax.set_title(f"{run.run}: critical intervals of seed {int(run.seeds[s])} "
               f"(the most of {critical.shape[0]} seeds)", fontsize=10)


def deep_dive_figure(findings, primary: str):
  """Per family present: the run with most jumps, its layers' series with jumps marked, critical mask."""
  families = _families(findings)
  jump_run = np.asarray(findings.jumps["run"])
  with plt.rc_context({"font.size": 9}):
    fig, axes = plt.subplots(len(families), 2, figsize=(14, 3.9 * len(families)), squeeze=False,
                             layout="constrained")
    for row, family in zip(axes, families):
      runs = [r for r in findings.sweep.runs if r.family == family]
      run = max(runs, key=lambda r: int(np.sum(jump_run == r.run)) if jump_run.size else 0)
      series_SxMxL = run.measures[primary]
      marked = False
      for l, layer in enumerate(run.layer_names):
        mean_M = series_SxMxL[:, :, l].mean(axis=0)
        line, = row[0].plot(run.steps_M, mean_M, lw=1, label=layer)
        if jump_run.size:
          mine = ((jump_run == run.run) & (findings.jumps["layer"] == layer)
                  & (findings.jumps["measure"] == primary))
          if mine.any():
            row[0].plot(findings.jumps["step"][mine], np.interp(findings.jumps["step"][mine], run.steps_M, mean_M),
                        "v", color=line.get_color(), ms=5, label=None if marked else "jump (any seed)")
            marked = True
      row[0].set_xlabel("training step")
      row[0].set_ylabel(f"{measure_label(primary)}\n(mean of {run.num_seeds} seeds)")
      row[0].set_title(f"{run.run}: layers and jumps ({int(np.sum(jump_run == run.run)) if jump_run.size else 0}"
                       " jumps, every measure and seed)", fontsize=10)
      row[0].legend(fontsize=7, ncol=2)
      _critical_panel(row[1], findings, run, primary)
    fig.suptitle(f"Deep dive, {measure_label(primary)}: per family, the run with the most jumps", fontsize=12)
  return fig


def penalty_curve_figure(rows: Sequence[Mapping]):
  """Jumps per 1,000 measurements against the detector's false-positive target, for the measured series
  and their matched surrogates (log-log), with the target itself as a line: what a count means depends
  on the penalty, and only the gap between the two curves is the series' own."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5.5, 4.0))
  targets = [r["false_positive_target_per_1000"] for r in rows]
  observed = [r["observed_per_1000"] or 0.0 for r in rows]
  expected = [r["expected_per_1000"] or 0.0 for r in rows]
  ax.plot(targets, observed, marker="o", label="measured series")
  ax.plot(targets, expected, marker="s", label="matched jump-free surrogates")
  ax.plot(targets, targets, color="k", lw=0.6, ls="--", label="false-positive target")
  ax.set_xscale("log", base=2)
  if all(v > 0 for v in observed + expected):
    ax.set_yscale("log")
  measure = rows[0]["measure"] if rows else ""
  ax.set_xlabel("detector's false-positive target (per 1,000 measurements)")
  ax.set_ylabel("jumps found per 1,000 measurements")
  ax.set_title(f"Jumps against the detector's penalty ({measure})", fontsize=10)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig
