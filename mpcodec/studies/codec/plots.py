"""The codec's plots under plots/: training curves, latent density, features per neuron (every run), and
the analysis' truth tables, OR prevalence, lifts, tax against M and atoms by theme.

Every panel is drawn from the metric arrays, the analysis payload or the primary run's arrays; a panel
with nothing to show says "no data" and why instead of failing or drawing a made-up value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import io
from mpcodec.metrics import truth_tables as tt

PLOT_FILES = ("truth_tables.png", "or_prevalence.png", "lift_distributions.png", "tax_vs_m.png",
              "atoms_by_theme.png")

# The panels of the training curves: (history key, panel title, y-label for the SAE, for the Squeezer).
HISTORY_PANELS = (
    ("fvu", "reconstruction error", "FVU of the activations\n(unexplained variance, fraction)",
     "FVU of the SAE latents\n(unexplained variance, fraction)"),
    ("l0", "sparsity", "L0 (active latents per token)", "L0 (active synthetic\nneurons per token)"),
    ("dead_fraction", "dead units", "dead latents (fraction)", "dead synthetic neurons\n(fraction)"),
    ("aux_loss", "AuxK loss", "AuxK loss (normalised MSE\nof the residual)",
     "AuxK loss (normalised MSE\nof the residual)"),
)
CELL_NAMES = ("neither", "a only", "b only", "both")   # the truth-table cells 00, 10, 01, 11


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def no_data(ax, reason: str) -> None:
  """Marks a panel that has nothing to draw: "no data: <reason>" in its middle, no ticks."""
  ax.text(0.5, 0.5, f"no data: {reason}", ha="center", va="center", fontsize=8, wrap=True,
          transform=ax.transAxes)
  ax.set_xticks([])
  ax.set_yticks([])


def run_name(row: Mapping[str, Any]) -> str:
  squeezer_k = f" K={row['squeezer_k']}" if "squeezer_k" in row else ""
  return f"k={row['k']}{squeezer_k} seed {row['seed_index']}"


# ----------------------------------------------------------------------------- every run


def training_curves(history: Mapping[str, np.ndarray], run_labels: Sequence[dict], model: str, path: str
                    ) -> None:
  """One panel per training metric against the step, one line per run; `model` "SAE" or "Squeezer"."""
  plt = _pyplot()
  panels = [panel for panel in HISTORY_PANELS if panel[0] in history]
  fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.6 * max(len(panels), 1), 3.4), squeeze=False,
                           layout="constrained")
  for ax, (name, title, sae_label, squeezer_label) in zip(axes[0], panels):
    values = np.asarray(history[name], np.float64)
    steps = np.arange(1, values.shape[0] + 1)
    for r, label in enumerate(run_labels):
      ax.plot(steps, values[:, r], lw=0.9, label=run_name(label))
    ax.set_xlabel("training step")
    ax.set_ylabel(sae_label if model == "SAE" else squeezer_label)
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() == finite.max():
      title += f" (constant {finite.min():g})"
    elif name in ("fvu", "aux_loss") and finite.size and finite.min() > 0:
      ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
  if not panels:
    no_data(axes[0, 0], "no training history")
    axes[0, 0].set_title("training curves", fontsize=9)
  else:
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=7,
               frameon=False)
  fig.suptitle(f"{model} training (one line per run)")
  io.save_figure(fig, path)


def latent_density(metrics: Mapping[str, np.ndarray], run_labels: Sequence[dict], path: str) -> None:
  """Histogram of the live latents' log10 firing frequency per run (dead latents in the legend)."""
  plt = _pyplot()
  edges = np.asarray(metrics["density_edges"])
  centres = 0.5 * (edges[1:] + edges[:-1])
  fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
  for r, label in enumerate(run_labels):
    dead = float(np.asarray(metrics["dead_fraction"])[r])
    ax.step(centres, np.asarray(metrics["density_histogram"])[r], where="mid", lw=0.9,
            label=f"{run_name(label)} (dead {dead:.1%})")
  ax.set_xlabel("log10 firing frequency (fraction of tokens)")
  ax.set_ylabel("live latents (count)")
  ax.set_title("SAE latent density (held-out tokens)", fontsize=9)
  ax.legend(fontsize=6)
  io.save_figure(fig, path)


def features_per_neuron(metrics: Mapping[str, np.ndarray], run_labels: Sequence[dict], path: str) -> None:
  """Histogram of the number of SAE features each synthetic neuron carries, one outline per run."""
  plt = _pyplot()
  per_neuron = np.asarray(metrics["features_per_neuron"])
  bins = np.arange(per_neuron.max() + 2) - 0.5
  fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
  for r, label in enumerate(run_labels):
    ax.hist(per_neuron[r], bins=bins, histtype="step", label=run_name(label))
  ax.set_xlabel("SAE features per synthetic neuron (count)")
  ax.set_ylabel("synthetic neurons (count)")
  ax.set_title("Squeezer: features per synthetic neuron", fontsize=9)
  ax.legend(fontsize=6)
  io.save_figure(fig, path)


# ----------------------------------------------------------------------------- the analysis


def _ci_bar(ax, x, summary, **kwargs):
  if summary is None or summary.get("mean") is None:
    return
  mean, low, high = summary["mean"], summary["ci_low"], summary["ci_high"]
  err = None if low is None or high is None else [[mean - low], [high - mean]]
  ax.bar([x], [mean], yerr=err, capsize=3, **kwargs)


def truth_table_heatmaps(path: str, primary: Mapping[str, Any], top_neurons: int) -> None:
  """Mean activation per cell (neither, only a, only b, both) of each testable pair, for the neurons with
  the most testable pairs; one panel per neuron, rows = pairs labelled with their class; one colour scale."""
  plt = _pyplot()
  tables = primary.get("tables") if primary else None
  chosen = []
  if tables is not None:
    testable = np.asarray(tables.testable_P)
    neuron = np.asarray(primary["rooms"]["neuron_P"])
    counts = np.bincount(neuron[testable], minlength=primary["rooms"]["num_neurons"])
    chosen = [int(m) for m in np.argsort(-counts, kind="stable")[:top_neurons] if counts[m] > 0]
  panels = []
  for m in chosen:
    rows = np.flatnonzero(testable & (neuron == m))[:12]
    means = np.asarray(tables.means_Px4)[rows] / max(float(np.asarray(tables.scale_P)[rows[0]]), 1e-12)
    panels.append((m, rows, means))
  fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.0 * max(len(panels), 1) + 1.0, 3.6),
                           squeeze=False, layout="constrained")
  if not panels:
    no_data(axes[0, 0], "no testable roommate pair")
    axes[0, 0].set_title("truth tables", fontsize=9)
  else:
    high = max(float(np.nanmax(means)) for _, _, means in panels)
    low = min(min(float(np.nanmin(means)) for _, _, means in panels), 0.0)
    for ax, (m, rows, means) in zip(axes[0], panels):
      image = ax.imshow(means, aspect="auto", cmap="viridis", vmin=low, vmax=high)
      ax.set_xticks(range(4), CELL_NAMES, fontsize=7, rotation=30)
      pairs = np.asarray(primary["rooms"]["pairs_Px2"])[rows]
      ax.set_yticks(range(len(rows)), [f"{a},{b} {tt.CLASS_NAMES[c]}" for (a, b), c in
                                       zip(pairs, np.asarray(tables.class_P)[rows])], fontsize=6)
      ax.set_xlabel("which atom of the pair fires")
      ax.set_ylabel("roommate pair (atoms a,b) and class", fontsize=8)
      ax.set_title(f"neuron {m}: {len(rows)} pair{'s' if len(rows) != 1 else ''}", fontsize=9)
    colourbar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9)
    colourbar.set_label("mean neuron activation\n(in units of the neuron's std)", fontsize=8)
  fig.suptitle("Truth tables of the neurons with the most testable roommate pairs", fontsize=10)
  io.save_figure(fig, path)


def or_prevalence(path: str, section: Mapping[str, Any]) -> None:
  """OR prevalence of roommates against both nulls, per (SAE k, Squeezer K) (bootstrap CI over seeds)."""
  plt = _pyplot()
  entries = section["by_squeezer_k"]
  fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(entries) + 2), 3.4), layout="constrained")
  several_sae_k = len({e.get("sae_k") for e in entries}) > 1
  for i, entry in enumerate(entries):
    for j, (key, colour, name) in enumerate((("or_prevalence", "C0", "roommates"),
                                             ("null_permuted_or_prevalence", "C1", "permuted assignment (null)"),
                                             ("null_random_pairs_or_prevalence", "C2", "random pairs (null)"))):
      _ci_bar(ax, 4 * i + j, entry.get(key), color=colour, label=name if i == 0 else None)
  ax.set_xticks([4 * i + 1 for i in range(len(entries))],
                [(f"SAE k={e['sae_k']}\n" if several_sae_k else "")
                 + f"K={e['squeezer_k']}{' *' if e['faithful'] else ''}" for e in entries], fontsize=7)
  ax.set_xlabel("Squeezer K (* = faithful)")
  ax.set_ylabel("OR prevalence\n(fraction of testable pairs)")
  ax.set_title("OR gates among testable pairs, 95% CI over seeds", fontsize=9)
  if entries:
    ax.legend(fontsize=7)
  else:
    no_data(ax, "no Squeezer run analysed")
  io.save_figure(fig, path)


def lift_distributions(path: str, primary: Mapping[str, Any]) -> None:
  """Histograms of log lift of roommate pairs and of their frequency-matched pairs (primary run)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
  lifts = (primary or {}).get("lifts") or {}
  room, matched = lifts.get("_log_lift_roommates"), lifts.get("_log_lift_matched")
  ax.set_title("co-activation of roommates against matched pairs", fontsize=9)
  ax.set_xlabel("log lift = ln P(a and b) / (P(a) P(b))")
  ax.set_ylabel("pairs (count)")
  if room is None or len(room) == 0:
    no_data(ax, "no roommate pair with a frequency-matched pair")
  else:
    bins = np.linspace(min(room.min(), matched.min()), max(room.max(), matched.max()) + 1e-9, 40)
    ax.hist(room, bins=bins, histtype="step", label=f"roommates ({len(room)})")
    ax.hist(matched, bins=bins, histtype="step", label=f"frequency-matched pairs ({len(matched)})")
    ax.axvline(0.0, color="grey", lw=0.6, label="independent (lift 1)")
    ax.legend(fontsize=7)
  io.save_figure(fig, path)


def tax_against_m(path: str, section: Mapping[str, Any]) -> None:
  """Superposition tax against the number of neurons M, one line per Squeezer K (CI over seeds)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
  by_k: dict[int, list] = {}
  for entry in section["by_num_neurons"]:
    if entry["tax"] is not None and entry["tax"].get("mean") is not None:
      by_k.setdefault(entry["squeezer_k"], []).append(entry)
  for k, entries in sorted(by_k.items()):
    entries = sorted(entries, key=lambda e: e["num_neurons"])
    m = [e["num_neurons"] for e in entries]
    mean = np.array([e["tax"]["mean"] for e in entries])
    low = np.array([e["tax"]["ci_low"] if e["tax"]["ci_low"] is not None else e["tax"]["mean"] for e in entries])
    high = np.array([e["tax"]["ci_high"] if e["tax"]["ci_high"] is not None else e["tax"]["mean"] for e in entries])
    ax.errorbar(m, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label=f"K={k}")
  ax.set_title("superposition tax, 95% CI over seeds", fontsize=9)
  ax.set_xlabel("synthetic neurons M (log scale)")
  ax.set_ylabel("tax = FVU through the Squeezer\n/ FVU of the M best atoms alone")
  if by_k:
    ax.axhline(1.0, color="grey", lw=0.6, label="no tax (1)")
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=7)
  else:
    no_data(ax, "no tax defined (no Squeezer width with a monosemantic baseline)")
  io.save_figure(fig, path)


def _theme_scatter(ax, xy: np.ndarray, labels: np.ndarray) -> None:
  """Points coloured by theme, grey for atoms in no theme; a legend names the themes (the first 12)."""
  unthemed = labels < 0
  if unthemed.any():
    ax.scatter(xy[unthemed, 0], xy[unthemed, 1], s=5, color="lightgrey", label="no theme")
  themes = np.unique(labels[~unthemed])
  cmap = _pyplot().get_cmap("tab10" if len(themes) <= 10 else "tab20")
  for i, theme in enumerate(themes):
    mine = labels == theme
    ax.scatter(xy[mine, 0], xy[mine, 1], s=6, color=cmap(i % cmap.N),
               label=f"theme {theme} ({int(mine.sum())})" if i < 12 else None)
  if len(themes) > 12:
    ax.scatter([], [], s=0, label=f"... {len(themes) - 12} more")
  ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def atoms_by_theme(path: str, primary: Mapping[str, Any]) -> None:
  """The live atoms' decoder rows in 2-D (PCA), coloured by found theme and by each planted theme kind."""
  plt = _pyplot()
  panels, live = [], None
  if primary:
    live = np.asarray(primary["live_N"])
    if primary.get("theme_input"):
      labels = np.asarray(primary["theme_labels"][primary["theme_input"]])
      found = len(np.unique(labels[live][labels[live] >= 0]))
      panels.append((f"found themes ({primary['theme_input']} clustering): {found}", labels))
    for kind, labels in primary["planted"].items():
      labels = np.asarray(labels)
      planted = len(np.unique(labels[live][labels[live] >= 0]))
      panels.append((f"planted themes ({kind}): {planted}", labels))
  fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.6 * max(len(panels), 1), 3.6), squeeze=False,
                           layout="constrained")
  if live is None or int(live.sum()) < 2:
    no_data(axes[0, 0], "fewer than two live atoms")
    axes[0, 0].set_title("atoms by theme", fontsize=9)
  elif not panels:
    no_data(axes[0, 0], "no theme clustering and no planted themes")
    axes[0, 0].set_title("atoms by theme", fontsize=9)
  else:
    w = np.asarray(primary["sae_state"]["params"]["w_dec_NxD"], np.float64)[live]
    w = w - w.mean(0)
    _, singular, vt = np.linalg.svd(w, full_matrices=False)
    xy = w @ vt[:2].T if vt.shape[0] >= 2 else np.stack([w @ vt[0], np.zeros(len(w))], -1)
    share = singular ** 2 / max(float(np.sum(singular ** 2)), 1e-30)
    for ax, (name, labels) in zip(axes[0], panels):
      _theme_scatter(ax, xy, labels[live])
      ax.set_title(name, fontsize=9)
      ax.set_xlabel(f"PC 1 of the decoder rows ({share[0]:.0%} of variance)")
      ax.set_ylabel(f"PC 2 ({share[1]:.0%} of variance)" if share.size > 1 else "PC 2 (none)")
  fig.suptitle(f"Live atoms ({int(live.sum()) if live is not None else 0}) by theme: decoder rows on their "
               "first two principal components", fontsize=10)
  io.save_figure(fig, path)


def write_plots(folder: str, payload: Mapping[str, Any], primary: Mapping[str, Any], cfg: Any) -> None:
  """Every file of PLOT_FILES under `folder`."""
  truth_table_heatmaps(os.path.join(folder, "truth_tables.png"), primary, cfg.top_neurons)
  or_prevalence(os.path.join(folder, "or_prevalence.png"), payload["or_gates"])
  lift_distributions(os.path.join(folder, "lift_distributions.png"), primary)
  tax_against_m(os.path.join(folder, "tax_vs_m.png"), payload["superposition_tax"])
  atoms_by_theme(os.path.join(folder, "atoms_by_theme.png"), primary)
