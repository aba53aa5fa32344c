"""The mono->poly plots: sample images, each neuron's incoming weights as an image, metric curves."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import cm, colors, patches  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from mpcodec.core import io as report_io  # pylint: disable=wrong-import-position
from mpcodec.metrics.selectivity import DEAD, LABEL_NAMES, MONOSEMANTIC, POLYSEMANTIC  # pylint: disable=wrong-import-position


def plot_samples(images_NxHxWx3, titles: Sequence[str], path, num_columns: int = 8) -> None:
  """Draws example images in a grid with their titles (pixel values clipped to [0, 1] for display)."""
  images = np.asarray(images_NxHxWx3, dtype=np.float32)
  if images.ndim != 4 or len(titles) != images.shape[0]:
    raise ValueError(f"plot_samples: need (N,H,W,3) images and N titles, got {images.shape} and "
                     f"{len(titles)} titles")
  num_columns = max(1, min(num_columns, images.shape[0]))
  num_rows = math.ceil(images.shape[0] / num_columns)
  fig, axes = plt.subplots(num_rows, num_columns, figsize=(1.6 * num_columns, 1.8 * num_rows),
                           squeeze=False)
  for i, ax in enumerate(axes.ravel()):
    ax.axis("off")
    if i < images.shape[0]:
      ax.imshow(np.clip(images[i], 0.0, 1.0), interpolation="nearest")
      ax.set_title(titles[i], fontsize=7)
  report_io.save_figure(fig, path)


# How the weight images mark each neuron's label (the codes of mpcodec.metrics.selectivity).
LABEL_COLOURS = {MONOSEMANTIC: "tab:blue", POLYSEMANTIC: "tab:red", DEAD: "0.15"}
LABEL_LINESTYLES = {MONOSEMANTIC: "-", POLYSEMANTIC: "-", DEAD: (0, (2, 1))}   # dead: dashed frame
LABEL_SHORT_NAMES = {MONOSEMANTIC: "mono", POLYSEMANTIC: "poly", DEAD: "dead"}
WEIGHT_COLOURBAR_LABEL = "weight / the neuron's max |weight|\n(symmetric scale, each of R, G, B)"


def weight_images_figure(w_in, labels=None, image_shape: Sequence[int] = (32, 32, 3), max_seeds: int = 4):
  """The figure of `plot_weight_images` (not saved): one panel per neuron, one row per seed.

  w_in: (D, H) for one seed or (S, D, H). labels: None, or the neurons' selectivity labels (MONOSEMANTIC,
  POLYSEMANTIC, DEAD) of shape (H,) or (S, H) like w_in; each panel then gets a frame in its label's
  colour and the label in its title. Each neuron uses its own symmetric scale,
  pixel = 0.5 + w / (2 max|w|), so 0 is mid-grey and the sign of a weight stays visible; the panel title
  gives that max|w| and the colourbar the scale.
  """
  w_in_SxDxH = np.asarray(w_in, dtype=np.float32)
  if w_in_SxDxH.ndim == 2:
    w_in_SxDxH = w_in_SxDxH[None]
  if w_in_SxDxH.ndim != 3 or w_in_SxDxH.shape[1] != int(np.prod(image_shape)):
    raise ValueError(f"plot_weight_images: w_in of shape {np.asarray(w_in).shape} does not hold "
                     f"(seeds,) D x H kernels with D = prod{tuple(image_shape)}")
  labels_SxH = None
  if labels is not None:
    labels_SxH = np.asarray(labels)
    if labels_SxH.ndim == 1:
      labels_SxH = labels_SxH[None]
    expected = (w_in_SxDxH.shape[0], w_in_SxDxH.shape[2])
    if labels_SxH.shape != expected:
      raise ValueError(f"plot_weight_images: labels of shape {np.asarray(labels).shape} do not match "
                       f"w_in's (seeds, neurons) = {expected}")
    unknown = sorted(set(np.unique(labels_SxH).tolist()) - set(LABEL_COLOURS))
    if unknown:
      raise ValueError(f"plot_weight_images: unknown label codes {unknown}; expected "
                       f"{dict(zip(LABEL_NAMES, range(len(LABEL_NAMES))))}")
    labels_SxH = labels_SxH[:max_seeds]
  w_in_SxDxH = w_in_SxDxH[:max_seeds]
  num_seeds, _, num_neurons = w_in_SxDxH.shape
  fig, axes = plt.subplots(num_seeds, num_neurons, figsize=(1.2 * num_neurons + 1.0, 1.5 * num_seeds + 0.5),
                           squeeze=False, layout="constrained")
  for s in range(num_seeds):
    for h in range(num_neurons):
      ax = axes[s, h]
      w_D = w_in_SxDxH[s, :, h]
      scale = float(np.max(np.abs(w_D)))
      image = 0.5 + w_D / (2.0 * scale) if scale > 0 else np.full_like(w_D, 0.5)
      ax.imshow(image.reshape(tuple(image_shape)), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      title, colour = f"n{h}", "black"
      if labels_SxH is not None:
        code = int(labels_SxH[s, h])
        title, colour = f"n{h} {LABEL_SHORT_NAMES[code]}", LABEL_COLOURS[code]
        for spine in ax.spines.values():
          spine.set_edgecolor(colour)
          spine.set_linewidth(2.5)
          spine.set_linestyle(LABEL_LINESTYLES[code])
      ax.set_title(f"{title}\nmax|w| {scale:.2g}", fontsize=6.5, color=colour)
    axes[s, 0].set_ylabel(f"seed {s}", fontsize=7)
  colourbar = fig.colorbar(cm.ScalarMappable(colors.Normalize(-1.0, 1.0), "gray"),
                           ax=axes.ravel().tolist(), shrink=min(1.0, 0.9 / max(1, num_seeds) + 0.5),
                           ticks=[-1.0, 0.0, 1.0])
  colourbar.ax.set_yticklabels(["-max", "0", "+max"], fontsize=7)
  colourbar.set_label(WEIGHT_COLOURBAR_LABEL, fontsize=7)
  if labels_SxH is not None:
    handles = [patches.Patch(facecolor="none", edgecolor=LABEL_COLOURS[code], linewidth=2.5,
                             linestyle=LABEL_LINESTYLES[code], label=LABEL_NAMES[code])
               for code in sorted(LABEL_COLOURS)]
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=7, frameon=False)
  return fig


def plot_weight_images(w_in, path, image_shape: Sequence[int] = (32, 32, 3), max_seeds: int = 4,
                       labels=None) -> None:
  """Draws each neuron's incoming weights as an RGB image (one row per seed, first `max_seeds`) to
  `path`, each neuron marked with its label when `labels` are given; see `weight_images_figure`."""
  report_io.save_figure(weight_images_figure(w_in, labels, image_shape, max_seeds), path)


def curves_from_history(rows: Sequence[Mapping[str, Any]], metric_names: Sequence[str],
                        step_offsets: Mapping[Any, int] | None = None):
  """Turns history rows (seed, phase, step, metrics...) into (steps_T, {metric: (S, T) array}).

  The plotted step is row["step"] + step_offsets[row["phase"]] (offset 0 when not given), so phase 2
  can be placed after phase 1. A phase may start where the previous one ends: both points are kept at
  that step (phase 1's end, then phase 2's start), so a jump at the switch shows. Every seed must have
  the same steps.
  """
  step_offsets = step_offsets or {}
  plotted = lambda row: int(row["step"]) + int(step_offsets.get(row["phase"], 0))
  spans = {}
  for row in rows:
    low, high = spans.get(row["phase"], (plotted(row), plotted(row)))
    spans[row["phase"]] = (min(low, plotted(row)), max(high, plotted(row)))
  order = sorted(spans, key=lambda phase: spans[phase])
  for before, after in zip(order, order[1:]):
    if spans[after][0] < spans[before][1]:
      raise ValueError(f"history: phases {before!r} and {after!r} overlap at plotted steps {spans[before]} and "
                       f"{spans[after]}; give step_offsets that place each phase after the previous one")
  rank = {phase: i for i, phase in enumerate(order)}
  seeds = sorted({row["seed"] for row in rows})
  columns = sorted({(plotted(row), rank[row["phase"]]) for row in rows})
  seed_index = {seed: i for i, seed in enumerate(seeds)}
  column_index = {column: t for t, column in enumerate(columns)}
  curves = {name: np.full((len(seeds), len(columns)), np.nan) for name in metric_names}
  filled = set()
  for row in rows:
    t = column_index[(plotted(row), rank[row["phase"]])]
    if (row["seed"], t) in filled:
      raise ValueError(f"history: seed {row['seed']} has two rows of phase {row['phase']!r} at plotted step "
                       f"{columns[t][0]}")
    filled.add((row["seed"], t))
    for name in metric_names:
      curves[name][seed_index[row["seed"]], t] = float(row[name])
  for name, curve_SxT in curves.items():
    if np.isnan(curve_SxT).any():
      raise ValueError(f"history: metric {name!r} is missing for some (seed, step); every seed needs "
                       "the same steps")
  return np.asarray([step for step, _ in columns]), curves


# Each history metric's panel: (title, y-label with the unit, (lowest, highest) value it can take).
CURVE_LABELS = {
    "loss": ("training loss", "cross-entropy loss (nats)", (0.0, None)),
    "train_accuracy": ("train accuracy", "accuracy (fraction correct)", (0.0, 1.0)),
    "test_accuracy": ("held-out accuracy", "accuracy (fraction correct)", (0.0, 1.0)),
    "mean_entropy": ("weight entropy", "weight entropy (nats,\nmean over neurons)", (0.0, None)),
    "mean_l2": ("incoming-weight L2 norm", "L2 norm of incoming weights\n(mean over neurons)", (0.0, None)),
    "mean_angle": ("angle between neurons' weights", "mean pairwise angle (degrees)", (0.0, 180.0)),
    "num_polysemantic": ("polysemantic neurons", "polysemantic neurons (count)", (0.0, None)),
    "num_monosemantic": ("monosemantic neurons", "monosemantic neurons (count)", (0.0, None)),
    "num_dead": ("dead neurons", "dead neurons (count)", (0.0, None)),
}


def curve_labels(name: str, values) -> tuple[str, str, tuple[float | None, float | None]]:
  """(title, y-label, bounds) of a metric's curve; an unknown metric is named in words, bounded below by 0
  when none of its values is negative."""
  if name in CURVE_LABELS:
    return CURVE_LABELS[name]
  words = name.replace("_", " ")
  return words, words, (0.0 if np.nanmin(values) >= 0 else None, None)


def plot_metric_curves(steps_T, curves: Mapping[str, Any], phase_boundary_step: float, plot_dir,
                       band: str = "sd", control=None) -> list[str]:
  """Writes plot_dir/metrics_<name>.png per metric: mean over seeds with a band, phase boundary line.

  curves: {name: (S, T) array} over steps_T spanning phase 1 then phase 2. band "sd": mean +- 1 SD
  over seeds (ddof 0), clipped to the values the metric can take (a count never below 0, an accuracy
  never above 1); band "minmax": min to max over seeds. control: None, or (steps_C, {name: (S, C)}) of
  the control arm, drawn as a dashed mean line.
  """
  if band not in ("sd", "minmax"):
    raise ValueError(f"band must be 'sd' or 'minmax', got {band!r}")
  steps_T = np.asarray(steps_T)
  paths = []
  for name, curve in curves.items():
    curve_SxT = np.atleast_2d(np.asarray(curve, dtype=np.float64))
    if curve_SxT.shape[1] != steps_T.size:
      raise ValueError(f"metric {name!r}: {curve_SxT.shape[1]} points but {steps_T.size} steps")
    title, ylabel, (lowest, highest) = curve_labels(name, curve_SxT)
    mean_T = curve_SxT.mean(axis=0)
    if band == "sd":
      spread_T = curve_SxT.std(axis=0)
      low_T, high_T, band_text = mean_T - spread_T, mean_T + spread_T, "band ±1 SD"
      clipped = ((lowest is not None and np.any(low_T < lowest))
                 or (highest is not None and np.any(high_T > highest)))
      low_T = low_T if lowest is None else np.maximum(low_T, lowest)
      high_T = high_T if highest is None else np.minimum(high_T, highest)
      if clipped:
        band_text += " (clipped to the possible range)"
    else:
      low_T, high_T, band_text = curve_SxT.min(axis=0), curve_SxT.max(axis=0), "band min–max"
    fig, ax = plt.subplots(figsize=(5.8, 3.6), layout="constrained")
    ax.plot(steps_T, mean_T, color="C0", lw=1.5, label=f"mean over {curve_SxT.shape[0]} seeds")
    ax.fill_between(steps_T, low_T, high_T, color="C0", alpha=0.25, lw=0, label=band_text)
    if control is not None:
      ax.plot(control[0], np.mean(control[1][name], axis=0), color="C1", ls="--", lw=1.2,
              label="control arm (phase 1's task continued), mean")
    ax.axvline(phase_boundary_step, color="k", ls="--", lw=1, label="phase 1 | phase 2")
    ax.set_xlabel("training step (phase 1, then phase 2)")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    safe_name = re.sub(r"[^A-Za-z0-9_]+", "_", name)
    path = os.path.join(plot_dir, f"metrics_{safe_name}.png")
    report_io.save_figure(fig, path)
    paths.append(path)
  return paths
