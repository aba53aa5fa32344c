"""The toy-superposition plots: the phase diagram and features per neuron against feature density."""

from __future__ import annotations

from typing import Any

import numpy as np

from mpcodec.core import io
from mpcodec.metrics import superposition
from mpcodec.studies.toy_superposition.config import ToySuperpositionConfig


def plot_phase_diagram(cfg: ToySuperpositionConfig, majority_PxI: np.ndarray, path: str) -> None:
  """Coloured grid of the majority solution class per (relative importance, feature density) cell."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top

  phase = cfg.phase_diagram
  colours = ("#4c72b0", "#dd8452", "#55a868", "#bbbbbb")
  fig, ax = plt.subplots(figsize=(6.0, 4.5), layout="constrained")
  ax.imshow(majority_PxI, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5,
            origin="upper", aspect="auto")
  ax.set_xticks(range(len(phase.relative_importances)), [f"{v:g}" for v in phase.relative_importances])
  ax.set_yticks(range(len(phase.feature_densities)), [f"{v:g}" for v in phase.feature_densities])
  ax.set_xlabel("relative importance of feature 2 (feature 1 has 1)")
  ax.set_ylabel("feature density (1 - sparsity)")
  ax.set_title(f"n = 2, m = 1: fate of feature 2 (majority of {cfg.num_seeds} seeds)")
  ax.legend(handles=[Patch(color=c, label=name) for c, name in zip(colours, superposition.SOLUTION_NAMES)],
            loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
  io.save_figure(fig, path)


def plot_features_per_neuron(cfg: ToySuperpositionConfig, privileged: dict[str, Any],
                             path: str) -> None:
  """Features per neuron and represented features vs feature density: seed mean, min..max band."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  train = cfg.privileged_basis.train
  sparsities = np.asarray(cfg.privileged_basis.sparsities)
  order = np.argsort(sparsities)
  density_G = 1.0 - sparsities[order]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
  panels = (("features_per_neuron", "polysemanticity of the neurons",
             "features per neuron (participation ratio\nof positive weights, mean over neurons)",
             ((1, "one feature per neuron"),)),
            ("represented_features", "features the model keeps",
             f"represented features (count, ‖W_i‖ > {superposition.REPRESENTED_NORM:g})",
             ((train.hidden_dim, f"m = {train.hidden_dim} neurons"),
              (train.num_features, f"n = {train.num_features} features"))))
  for ax, (name, title, label, references) in zip(axes, panels):
    values_GxS = np.asarray(privileged[name], np.float64)[order]
    ax.fill_between(density_G, values_GxS.min(1), values_GxS.max(1), alpha=0.25,
                    label=f"min..max over {values_GxS.shape[1]} seeds")
    ax.plot(density_G, values_GxS.mean(1), "o-", label="mean over seeds")
    for value, text in references:
      ax.axhline(value, color="grey", linestyle=":", linewidth=1)
      ax.annotate(text, (density_G.min(), value), textcoords="offset points", xytext=(2, 3),
                  ha="left", fontsize=8, color="grey")
    if density_G.min() > 0:
      ax.set_xscale("log")
    ax.set_xlabel("feature density 1 − S (log scale)" if density_G.min() > 0 else "feature density 1 − S")
    ax.set_ylabel(label)
    ax.set_title(title, fontsize=10)
    # Below the axes: the curve's shape (and so the free corner) depends on the run.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8, frameon=False)
  fig.suptitle(f"ReLU-hidden model h = ReLU(Wx), n = {train.num_features}, m = {train.hidden_dim}, "
               f"importance {cfg.privileged_basis.importance_decay:g}^i")
  io.save_figure(fig, path)
