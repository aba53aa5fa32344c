"""Runs the toy-superposition experiment and writes its tables, phase-diagram plot and report.

`run_experiment(cfg, workdir)` trains the pentagon and dense cells (one compiled program) and the
n = 2, m = 1 phase diagram (a second one), then writes under `workdir`:
metrics/toy_superposition.json, metrics/phase_diagram.csv, plots/phase_diagram.png and report.md.
Every number in the report is computed from the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from mpcodec import configuration
from mpcodec.metrics import superposition
from mpcodec.report import io
from mpcodec.train import toy_superposition as toy_train

# Tolerances of the pentagon verdict: D_i = 2/5 and 72 degree gaps (Elhage et al. 2022, section 6).
PENTAGON_DIMENSIONALITY_TOLERANCE = 0.05
PENTAGON_ANGLE_TOLERANCE_DEGREES = 5.0


def summarize_pentagon(params: dict[str, Any], history: dict[str, Any]) -> dict[str, Any]:
  """Per-seed geometry of the sparse, uniform-importance models (leading seed axis)."""
  weights_SxMxN = np.asarray(params["W"])
  dimensionality_SxN = np.asarray(superposition.feature_dimensionality(weights_SxMxN))
  gaps_SxN = np.asarray(superposition.embedding_angle_gaps(weights_SxMxN))
  n = weights_SxMxN.shape[-1]
  expected_dimensionality = weights_SxMxN.shape[-2] / n
  expected_gap = 360.0 / n
  is_polygon_S = (np.all(np.abs(dimensionality_SxN - expected_dimensionality)
                         <= PENTAGON_DIMENSIONALITY_TOLERANCE, axis=1)
                  & np.all(np.abs(gaps_SxN - expected_gap) <= PENTAGON_ANGLE_TOLERANCE_DEGREES, axis=1))
  return {
      "expected_feature_dimensionality": expected_dimensionality,
      "expected_angle_gap_degrees": expected_gap,
      "feature_dimensionality": dimensionality_SxN,
      "angle_gaps_degrees": gaps_SxN,
      "feature_norms": np.linalg.norm(weights_SxMxN, axis=-2),
      "bias": np.asarray(params["b"]),
      "dimensions_per_feature_total": np.asarray(
          superposition.dimensions_per_feature_total(weights_SxMxN)),
      "final_loss": np.asarray(history["loss"])[:, -1],
      "restart_final_loss": np.asarray(history["restart_final_loss"]),
      "is_regular_polygon": is_polygon_S,
      "num_seeds_regular_polygon": int(is_polygon_S.sum()),
      "max_abs_dimensionality_error": float(np.max(np.abs(dimensionality_SxN - expected_dimensionality))),
      "max_abs_angle_gap_error_degrees": float(np.max(np.abs(gaps_SxN - expected_gap))),
  }


def summarize_dense(params: dict[str, Any], history: dict[str, Any], hidden_dim: int) -> dict[str, Any]:
  """Per-seed represented features of the dense, decaying-importance models (leading seed axis)."""
  weights_SxMxN = np.asarray(params["W"])
  represented_SxN = np.asarray(superposition.represented_features(weights_SxMxN))
  most_important_N = np.arange(weights_SxMxN.shape[-1]) < hidden_dim
  top_m_only_S = np.all(represented_SxN == most_important_N, axis=1)
  return {
      "feature_norms": np.linalg.norm(weights_SxMxN, axis=-2),
      "represented": represented_SxN,
      "num_represented": represented_SxN.sum(axis=1),
      "feature_dimensionality": np.asarray(superposition.feature_dimensionality(weights_SxMxN)),
      "final_loss": np.asarray(history["loss"])[:, -1],
      "represents_exactly_top_m": top_m_only_S,
      "num_seeds_exactly_top_m": int(top_m_only_S.sum()),
  }


def phase_diagram_table(cfg: toy_train.ToySuperpositionConfig, params: dict[str, Any]
                        ) -> tuple[list[dict[str, Any]], np.ndarray]:
  """Rows (one per density x importance cell) and the (P, I) majority class over seeds."""
  phase = cfg.phase_diagram
  classes_PxIxS = np.asarray(superposition.classify_two_feature_solution(np.asarray(params["W"])))
  num_classes = len(superposition.SOLUTION_NAMES)
  counts_PxIxC = np.stack([(classes_PxIxS == c).sum(-1) for c in range(num_classes)], axis=-1)
  majority_PxI = counts_PxIxC.argmax(-1)  # ties go to the lower code, a fixed documented order
  norms_PxIxSx2 = np.linalg.norm(np.asarray(params["W"]), axis=-2)
  rows = []
  for p, density in enumerate(phase.feature_densities):
    for i, importance in enumerate(phase.relative_importances):
      row = {"feature_density": density, "sparsity": 1.0 - density, "relative_importance": importance,
             "majority_class": superposition.SOLUTION_NAMES[majority_PxI[p, i]]}
      for c, name in enumerate(superposition.SOLUTION_NAMES):
        row["fraction_" + name.replace(" ", "_")] = counts_PxIxC[p, i, c] / classes_PxIxS.shape[-1]
      row["mean_norm_feature_1"] = float(norms_PxIxSx2[p, i, :, 0].mean())
      row["mean_norm_feature_2"] = float(norms_PxIxSx2[p, i, :, 1].mean())
      rows.append(row)
  return rows, majority_PxI


def plot_phase_diagram(cfg: toy_train.ToySuperpositionConfig, majority_PxI: np.ndarray, path: str) -> None:
  """Coloured grid of the majority solution class per (relative importance, feature density) cell."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top

  phase = cfg.phase_diagram
  colours = ("#4c72b0", "#dd8452", "#55a868", "#bbbbbb")
  fig, ax = plt.subplots(figsize=(5.5, 4.5))
  ax.imshow(majority_PxI, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5,
            origin="upper", aspect="auto")
  ax.set_xticks(range(len(phase.relative_importances)), [f"{v:g}" for v in phase.relative_importances])
  ax.set_yticks(range(len(phase.feature_densities)), [f"{v:g}" for v in phase.feature_densities])
  ax.set_xlabel("relative importance of feature 2")
  ax.set_ylabel("feature density (1 - sparsity)")
  ax.set_title(f"n = 2, m = 1: fate of feature 2 (majority of {cfg.num_seeds} seeds)")
  ax.legend(handles=[Patch(color=c, label=name) for c, name in zip(colours, superposition.SOLUTION_NAMES)],
            loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
  io.save_figure(fig, path)


def _report_markdown(cfg: toy_train.ToySuperpositionConfig, pentagon: dict[str, Any],
                     dense: dict[str, Any], phase_rows: list[dict[str, Any]]) -> str:
  n, m = cfg.train.num_features, cfg.train.hidden_dim
  dims = pentagon["feature_dimensionality"]
  gaps = pentagon["angle_gaps_degrees"]
  lines = [
      "# Toy Models of Superposition",
      "",
      f"ReLU-output model x' = ReLU(WᵀWx + b), n = {n} features, m = {m} dimensions, "
      f"{cfg.num_seeds} seeds "
      f"(best of {cfg.train.num_restarts} restarts each), {cfg.train.num_steps} Adam steps, "
      f"batch {cfg.train.batch_size}, learning rate {cfg.train.optim.learning_rate:g} "
      f"({cfg.train.optim.schedule}).",
      "",
      f"## Sparse features, uniform importance (S = {cfg.pentagon_sparsity:g})",
      "",
      f"- Feature dimensionality D_i: min {dims.min():.3f}, max {dims.max():.3f} over all seeds and "
      f"features (regular polygon: {pentagon['expected_feature_dimensionality']:.3f}).",
      f"- Angles between consecutive embeddings: min {gaps.min():.1f}°, max {gaps.max():.1f}° "
      f"(regular polygon: {pentagon['expected_angle_gap_degrees']:.1f}°).",
      f"- Dimensions per feature D* = m/‖W‖_F²: mean "
      f"{pentagon['dimensions_per_feature_total'].mean():.3f}.",
      f"- Seeds forming a regular {n}-gon (every |D_i − {m}/{n}| ≤ "
      f"{PENTAGON_DIMENSIONALITY_TOLERANCE} and "
      f"every gap within {PENTAGON_ANGLE_TOLERANCE_DEGREES:g}°): "
      f"{pentagon['num_seeds_regular_polygon']} of {cfg.num_seeds}.",
      "",
      f"## Dense features (S = 0), importance {cfg.dense_importance_decay:g}^i",
      "",
      f"- Represented features (‖W_i‖ > {superposition.REPRESENTED_NORM}) per seed: "
      f"{', '.join(str(int(k)) for k in dense['num_represented'])} (m = {m}).",
      f"- Seeds representing exactly the {m} most important features: "
      f"{dense['num_seeds_exactly_top_m']} of {cfg.num_seeds}.",
      "- Mean ‖W_i‖ by feature: " + ", ".join(f"{v:.2f}" for v in dense["feature_norms"].mean(0)) + ".",
      "",
      "## Phase diagram (n = 2, m = 1)",
      "",
      "Majority class of feature 2 per cell (plots/phase_diagram.png, metrics/phase_diagram.csv):",
      "",
  ]
  for name in superposition.SOLUTION_NAMES:
    count = sum(row["majority_class"] == name for row in phase_rows)
    lines.append(f"- {name}: {count} of {len(phase_rows)} cells")
  return "\n".join(lines) + "\n"


def run_experiment(cfg: toy_train.ToySuperpositionConfig, workdir: str,
                   log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
  """Trains all sweeps, writes every output under `workdir`, returns the results dict (as in the JSON)."""
  configuration.check_values(cfg)
  log(f"pentagon + dense: {cfg.num_seeds} seeds x {cfg.train.num_restarts} restarts x 2 cells")
  runs = toy_train.run_pentagon_and_dense(cfg)
  pentagon = summarize_pentagon(**runs["pentagon"])
  dense = summarize_dense(**runs["dense"], hidden_dim=cfg.train.hidden_dim)
  phase = cfg.phase_diagram
  log(f"phase diagram: {len(phase.feature_densities)} x {len(phase.relative_importances)} cells x "
      f"{cfg.num_seeds} seeds x {phase.train.num_restarts} restarts")
  phase_runs = toy_train.run_phase_diagram(cfg)
  phase_rows, majority_PxI = phase_diagram_table(cfg, phase_runs["params"])

  results = {"config": configuration.to_dict(cfg), "pentagon": pentagon, "dense": dense,
             "phase_diagram": {"rows": phase_rows, "class_names": list(superposition.SOLUTION_NAMES)}}
  io.write_json(os.path.join(workdir, "metrics", "toy_superposition.json"), results)
  io.write_csv(os.path.join(workdir, "metrics", "phase_diagram.csv"), phase_rows)
  plot_phase_diagram(cfg, majority_PxI, os.path.join(workdir, "plots", "phase_diagram.png"))
  io.write_text(os.path.join(workdir, "report.md"), _report_markdown(cfg, pentagon, dense, phase_rows))
  log(f"wrote metrics, plot and report under {workdir}")
  return io.jsonable(results)
