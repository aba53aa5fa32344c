"""The analysis plots under plots/: truth tables, OR prevalence, lifts, tax against M, atoms by theme.

Every panel is drawn from the analysis payload or the primary run's arrays; a panel with nothing to show
says why in its title instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from mpcodec.core import io
from mpcodec.metrics import truth_tables as tt

PLOT_FILES = ("truth_tables.png", "or_prevalence.png", "lift_distributions.png", "tax_vs_m.png",
              "atoms_by_theme.png")


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _ci_bar(ax, x, summary, **kwargs):
  if summary is None:
    return
  mean, low, high = summary["mean"], summary["ci_low"], summary["ci_high"]
  err = None if low is None else [[mean - low], [high - mean]]
  ax.bar([x], [mean], yerr=err, capsize=3, **kwargs)


def truth_table_heatmaps(path: str, primary: Mapping[str, Any], top_neurons: int) -> None:
  """Mean activation per cell (neither, only a, only b, both) of each testable pair, for the neurons with
  the most testable pairs; one panel per neuron, rows = pairs labelled with their class."""
  plt = _pyplot()
  tables = primary.get("tables") if primary else None
  chosen = []
  if tables is not None:
    testable = np.asarray(tables.testable_P)
    neuron = np.asarray(primary["rooms"]["neuron_P"])
    counts = np.bincount(neuron[testable], minlength=primary["rooms"]["num_neurons"])
    chosen = [int(m) for m in np.argsort(-counts, kind="stable")[:top_neurons] if counts[m] > 0]
  fig, axes = plt.subplots(1, max(len(chosen), 1), figsize=(3.2 * max(len(chosen), 1), 3.4), squeeze=False)
  fig.subplots_adjust(wspace=0.9)
  if not chosen:
    axes[0, 0].set_title("no testable roommate pair", fontsize=8)
    axes[0, 0].axis("off")
  for ax, m in zip(axes[0], chosen):
    rows = np.flatnonzero(testable & (neuron == m))[:12]
    means = np.asarray(tables.means_Px4)[rows] / max(float(np.asarray(tables.scale_P)[rows[0]]), 1e-12)
    ax.imshow(means, aspect="auto", cmap="viridis")
    ax.set_xticks(range(4), ["00", "10", "01", "11"], fontsize=7)
    pairs = np.asarray(primary["rooms"]["pairs_Px2"])[rows]
    ax.set_yticks(range(len(rows)), [f"{a},{b} {tt.CLASS_NAMES[c]}" for (a, b), c in
                                     zip(pairs, np.asarray(tables.class_P)[rows])], fontsize=6)
    ax.set_title(f"neuron {m}", fontsize=8)
  fig.suptitle("truth tables (mean activation / neuron std) of the top neurons", fontsize=9)
  io.save_figure(fig, path)


def or_prevalence(path: str, section: Mapping[str, Any]) -> None:
  """OR prevalence of roommates against both nulls, per Squeezer K (bootstrap CI over seeds)."""
  plt = _pyplot()
  entries = section["by_squeezer_k"]
  fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(entries) + 2), 3.2))
  for i, entry in enumerate(entries):
    for j, (key, colour, name) in enumerate((("or_prevalence", "C0", "roommates"),
                                             ("null_permuted_or_prevalence", "C1", "permuted assignment"),
                                             ("null_random_pairs_or_prevalence", "C2", "random pairs"))):
      _ci_bar(ax, 4 * i + j, entry[key], color=colour, label=name if i == 0 else None)
  ax.set_xticks([4 * i + 1 for i in range(len(entries))],
                [f"K={e['squeezer_k']}{' *' if e['faithful'] else ''}" for e in entries], fontsize=7)
  ax.set_ylabel("OR prevalence")
  ax.set_title("OR gates among testable pairs (* = faithful K)", fontsize=9)
  if entries:
    ax.legend(fontsize=7)
  io.save_figure(fig, path)


def lift_distributions(path: str, primary: Mapping[str, Any]) -> None:
  """Histograms of log lift of roommate pairs and of their frequency-matched pairs (primary run)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.2))
  lifts = (primary or {}).get("lifts") or {}
  room, matched = lifts.get("_log_lift_roommates"), lifts.get("_log_lift_matched")
  if room is None or len(room) == 0:
    ax.set_title("no roommate pair with a matched pair", fontsize=8)
  else:
    bins = np.linspace(min(room.min(), matched.min()), max(room.max(), matched.max()) + 1e-9, 40)
    ax.hist(room, bins=bins, histtype="step", label=f"roommates ({len(room)})")
    ax.hist(matched, bins=bins, histtype="step", label="frequency-matched pairs")
    ax.axvline(0.0, color="grey", lw=0.6)
    ax.legend(fontsize=7)
    ax.set_title("co-activation: log lift", fontsize=9)
  ax.set_xlabel("log lift")
  io.save_figure(fig, path)


def tax_against_m(path: str, section: Mapping[str, Any]) -> None:
  """Superposition tax against the number of neurons M, one line per Squeezer K (CI over seeds)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.2))
  by_k: dict[int, list] = {}
  for entry in section["by_num_neurons"]:
    if entry["tax"] is not None:
      by_k.setdefault(entry["squeezer_k"], []).append(entry)
  for k, entries in sorted(by_k.items()):
    entries = sorted(entries, key=lambda e: e["num_neurons"])
    m = [e["num_neurons"] for e in entries]
    mean = np.array([e["tax"]["mean"] for e in entries])
    low = np.array([e["tax"]["ci_low"] if e["tax"]["ci_low"] is not None else e["tax"]["mean"] for e in entries])
    high = np.array([e["tax"]["ci_high"] if e["tax"]["ci_high"] is not None else e["tax"]["mean"] for e in entries])
    ax.errorbar(m, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label=f"K={k}")
  ax.axhline(1.0, color="grey", lw=0.6)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("synthetic neurons M")
  ax.set_ylabel("tax (FVU / monosemantic FVU)")
  ax.set_title("superposition tax" if by_k else "no tax defined", fontsize=9)
  if by_k:
    ax.legend(fontsize=7)
  io.save_figure(fig, path)


def atoms_by_theme(path: str, primary: Mapping[str, Any]) -> None:
  """The live atoms' decoder rows in 2-D (PCA), coloured by found theme and by each planted theme kind."""
  plt = _pyplot()
  panels = []
  if primary:
    live = np.asarray(primary["live_N"])
    if primary.get("theme_input"):
      panels.append((f"found ({primary['theme_input']})",
                     np.asarray(primary["theme_labels"][primary["theme_input"]])))
    panels += [(f"planted {kind}", np.asarray(labels)) for kind, labels in primary["planted"].items()]
  fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.4 * max(len(panels), 1), 3.2), squeeze=False)
  if not panels or int(live.sum()) < 2:
    axes[0, 0].set_title("fewer than two live atoms", fontsize=8)
  else:
    w = np.asarray(primary["sae_state"]["params"]["w_dec_NxD"], np.float64)[live]
    w = w - w.mean(0)
    _, _, vt = np.linalg.svd(w, full_matrices=False)
    xy = w @ vt[:2].T if vt.shape[0] >= 2 else np.stack([w @ vt[0], np.zeros(len(w))], -1)
    for ax, (name, labels) in zip(axes[0], panels):
      ax.scatter(xy[:, 0], xy[:, 1], c=labels[live], cmap="tab20", s=6)
      ax.set_title(name, fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
  fig.suptitle("atoms (decoder rows, first two principal components) by theme", fontsize=9)
  io.save_figure(fig, path)


def write_plots(folder: str, payload: Mapping[str, Any], primary: Mapping[str, Any], cfg: Any) -> None:
  """Every file of PLOT_FILES under `folder`."""
  truth_table_heatmaps(os.path.join(folder, "truth_tables.png"), primary, cfg.top_neurons)
  or_prevalence(os.path.join(folder, "or_prevalence.png"), payload["or_gates"])
  lift_distributions(os.path.join(folder, "lift_distributions.png"), primary)
  tax_against_m(os.path.join(folder, "tax_vs_m.png"), payload["superposition_tax"])
  atoms_by_theme(os.path.join(folder, "atoms_by_theme.png"), primary)
