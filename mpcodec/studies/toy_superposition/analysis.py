"""What the toy-superposition run found, from its kept models: the pentagon's geometry, the features the
dense models keep, the phase diagram's table and the privileged basis' features per neuron; and
`write_outputs`, which writes them with the plots and report.md under the workdir:
metrics/toy_superposition.json, metrics/phase_diagram.csv, metrics/privileged_basis.csv,
plots/phase_diagram.png, plots/features_per_neuron.png and report.md.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mpcodec.core import configuration, io
from mpcodec.metrics import superposition
from mpcodec.studies.toy_superposition import plots, report
from mpcodec.studies.toy_superposition.config import (MONOSEMANTIC_TOLERANCE, PENTAGON_ANGLE_TOLERANCE_DEGREES,
                                                      PENTAGON_DIMENSIONALITY_TOLERANCE, ToySuperpositionConfig)

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


def phase_diagram_table(cfg: ToySuperpositionConfig, params: dict[str, Any]
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


def compare_densest_and_sparsest(sparsities: tuple[float, ...], values_GxS: np.ndarray
                                 ) -> dict[str, Any]:
  """Per-seed values at the lowest and highest sparsity, and how the seed mean moves with sparsity.

  `values_GxS` has one row per entry of `sparsities` (any order) and one column per seed. The mean is
  "monotone" when it never decreases from one sparsity to the next larger one.
  """
  order = np.argsort(np.asarray(sparsities), kind="stable")
  densest, sparsest = order[0], order[-1]
  mean_by_sparsity = values_GxS[order].mean(axis=1)
  peak = order[int(np.argmax(mean_by_sparsity))]
  return {
      "densest_sparsity": sparsities[densest],
      "sparsest_sparsity": sparsities[sparsest],
      "densest_per_seed": values_GxS[densest],
      "sparsest_per_seed": values_GxS[sparsest],
      "num_seeds_higher_when_sparsest": int(np.sum(values_GxS[sparsest] > values_GxS[densest])),
      "mean_is_monotone_in_sparsity": bool(np.all(np.diff(mean_by_sparsity) >= 0)),
      "peak_sparsity": sparsities[peak],
      "peak_mean": float(values_GxS[peak].mean()),
  }


def summarize_privileged_basis(cfg: ToySuperpositionConfig, params: dict[str, Any],
                               history: dict[str, Any]) -> dict[str, Any]:
  """Per-cell, per-seed features per neuron, represented features and D* of the ReLU-hidden sweep.

  A model's features per neuron is the mean over its m neurons of `superposition.feature_participation_per_neuron`
  (participation ratio of a neuron's positive weights; Elhage et al. 2022, section 7). Arrays have
  leading axes (sparsities, seeds); `rows` has one entry per sparsity with mean, min and max over seeds.
  """
  privileged = cfg.privileged_basis
  weights_GxSxMxN = np.asarray(params["W"])
  hidden_dim = weights_GxSxMxN.shape[-2]
  per_neuron_GxSxM = np.asarray(superposition.feature_participation_per_neuron(weights_GxSxMxN))
  represented_GxSxN = np.asarray(superposition.represented_features(weights_GxSxMxN))
  per_seed = {
      "features_per_neuron": per_neuron_GxSxM.mean(axis=-1),
      "represented_features": represented_GxSxN.sum(axis=-1),
      "dimensions_per_feature": np.asarray(superposition.dimensions_per_feature_total(weights_GxSxMxN)),
      # Inhibitory weights also enter ‖W‖_F², so this share tells how far D* is set by them.
      "negative_weight_share": (np.sum(np.square(np.minimum(weights_GxSxMxN, 0.0)), axis=(-2, -1))
                                / np.sum(np.square(weights_GxSxMxN), axis=(-2, -1))),
      "final_loss": np.asarray(history["loss"])[..., -1],
  }
  rows = []
  for g, sparsity in enumerate(privileged.sparsities):
    row = {"sparsity": sparsity, "feature_density": round(1.0 - sparsity, 12)}
    for name, values_GxS in per_seed.items():
      row[name + "_mean"] = float(values_GxS[g].mean())
      row[name + "_min"] = float(values_GxS[g].min())
      row[name + "_max"] = float(values_GxS[g].max())
    rows.append(row)
  densest = int(np.argmin(privileged.sparsities))
  most_important_N = np.arange(weights_GxSxMxN.shape[-1]) < hidden_dim
  densest_monosemantic_S = (
      np.all(np.abs(per_neuron_GxSxM[densest] - 1.0) <= MONOSEMANTIC_TOLERANCE, axis=-1)
      & np.all(represented_GxSxN[densest] == most_important_N, axis=-1))
  return {
      **per_seed,
      "features_per_neuron_by_neuron": per_neuron_GxSxM,
      "represented": represented_GxSxN,
      "rows": rows,
      "features_per_neuron_trend": compare_densest_and_sparsest(privileged.sparsities,
                                                                per_seed["features_per_neuron"]),
      "represented_features_trend": compare_densest_and_sparsest(privileged.sparsities,
                                                                 per_seed["represented_features"]),
      "densest_monosemantic_top_m": densest_monosemantic_S,
      "num_seeds_densest_monosemantic_top_m": int(densest_monosemantic_S.sum()),
  }


def write_outputs(cfg: ToySuperpositionConfig, runs: dict[str, Any], workdir: str) -> dict[str, Any]:
  """Summaries of `runs` (`program.sweep_results`) written under `workdir`; returns them (as in the JSON)."""
  pentagon = summarize_pentagon(**runs["pentagon"])
  dense = summarize_dense(**runs["dense"], hidden_dim=cfg.train.hidden_dim)
  phase_rows, majority_PxI = phase_diagram_table(cfg, runs["phase_diagram"]["params"])
  privileged = summarize_privileged_basis(cfg, runs["privileged_basis"]["params"],
                                          runs["privileged_basis"]["history"])
  results = {"config": configuration.to_dict(cfg), "pentagon": pentagon, "dense": dense,
             "phase_diagram": {"rows": phase_rows, "class_names": list(superposition.SOLUTION_NAMES)},
             "privileged_basis": privileged}
  io.write_json(os.path.join(workdir, "metrics", "toy_superposition.json"), results)
  io.write_csv(os.path.join(workdir, "metrics", "phase_diagram.csv"), phase_rows)
  io.write_csv(os.path.join(workdir, "metrics", "privileged_basis.csv"), privileged["rows"])
  plots.plot_phase_diagram(cfg, majority_PxI, os.path.join(workdir, "plots", "phase_diagram.png"))
  plots.plot_features_per_neuron(cfg, privileged, os.path.join(workdir, "plots", "features_per_neuron.png"))
  io.write_text(os.path.join(workdir, "report.md"),
                report.report_markdown(cfg, pentagon, dense, phase_rows, privileged))
  return io.jsonable(results)
