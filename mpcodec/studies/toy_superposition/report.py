"""report.md of the toy-superposition run: every number in it comes from the run's summaries."""

from __future__ import annotations

from typing import Any

from mpcodec.metrics import superposition
from mpcodec.studies.toy_superposition.config import (MONOSEMANTIC_TOLERANCE, PENTAGON_ANGLE_TOLERANCE_DEGREES,
                                                      PENTAGON_DIMENSIONALITY_TOLERANCE, ToySuperpositionConfig)


def _privileged_basis_markdown(cfg: ToySuperpositionConfig, privileged: dict[str, Any]
                               ) -> list[str]:
  settings = cfg.privileged_basis
  train = settings.train
  m = train.hidden_dim
  trend = privileged["features_per_neuron_trend"]
  represented = privileged["represented_features_trend"]
  per_seed = lambda values: ", ".join(f"{v:.2f}" for v in values)
  lines = [
      f"## Privileged basis: h = ReLU(Wx), n = {train.num_features} features, m = {m} neurons",
      "",
      f"Importance {settings.importance_decay:g}^i, {cfg.num_seeds} seeds (best of "
      f"{train.num_restarts} restarts each), {train.num_steps} Adam steps, batch {train.batch_size}, "
      f"learning rate {train.optim.learning_rate:g} ({train.optim.schedule}). Features per neuron: "
      "participation ratio of a neuron's positive weights, mean over the m neurons (1 = monosemantic). "
      "Values are mean (min..max) over seeds (plots/features_per_neuron.png, "
      "metrics/privileged_basis.csv).",
      "",
      "| sparsity S | density 1 − S | features per neuron | represented features | D* = m/‖W‖_F² "
      "| share of ‖W‖_F² in negative weights |",
      "|---|---|---|---|---|---|",
  ]
  for row in privileged["rows"]:
    cells = [f"{row[name + '_mean']:.2f} ({row[name + '_min']:.2f}..{row[name + '_max']:.2f})"
             for name in ("features_per_neuron", "represented_features", "dimensions_per_feature",
                          "negative_weight_share")]
    lines.append(f"| {row['sparsity']:g} | {row['feature_density']:g} | " + " | ".join(cells) + " |")
  sparse_is_higher = trend["sparsest_per_seed"].mean() > trend["densest_per_seed"].mean()
  direction = "higher" if sparse_is_higher else "not higher"
  lines += [
      "",
      f"- Densest cell (S = {trend['densest_sparsity']:g}): features per neuron per seed "
      f"{per_seed(trend['densest_per_seed'])}; seeds whose every neuron is within "
      f"{MONOSEMANTIC_TOLERANCE:g} of 1 and that represent exactly the {m} most important features: "
      f"{privileged['num_seeds_densest_monosemantic_top_m']} of {cfg.num_seeds}.",
      f"- Sparsest cell (S = {trend['sparsest_sparsity']:g}): features per neuron per seed "
      f"{per_seed(trend['sparsest_per_seed'])}; the seed mean is {direction} than at the densest cell, "
      f"and a seed's value is higher at the sparsest than at the densest cell on "
      f"{trend['num_seeds_higher_when_sparsest']} of {cfg.num_seeds} seeds.",
      "- Over the sparsity grid the seed mean of features per neuron "
      + ("never decreases as sparsity grows" if trend["mean_is_monotone_in_sparsity"] else
         "does not rise monotonically with sparsity")
      + f"; it peaks at S = {trend['peak_sparsity']:g} ({trend['peak_mean']:.2f}).",
      f"- Represented features: mean {represented['densest_per_seed'].mean():.2f} at "
      f"S = {represented['densest_sparsity']:g} and {represented['sparsest_per_seed'].mean():.2f} at "
      f"S = {represented['sparsest_sparsity']:g} (m = {m}, n = {train.num_features}).",
  ]
  return lines


def report_markdown(cfg: ToySuperpositionConfig, pentagon: dict[str, Any],
                     dense: dict[str, Any], phase_rows: list[dict[str, Any]],
                     privileged: dict[str, Any]) -> str:
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
  lines += [""] + _privileged_basis_markdown(cfg, privileged)
  return "\n".join(lines) + "\n"
