"""Runs the toy-superposition experiment and writes its tables, phase-diagram plot and report.

`run_experiment(cfg, workdir)` trains the pentagon and dense cells (one compiled program), the
n = 2, m = 1 phase diagram (a second one) and the privileged-basis (ReLU-hidden) sparsity sweep (a
third), then writes under `workdir`: metrics/toy_superposition.json, metrics/phase_diagram.csv,
metrics/privileged_basis.csv, plots/phase_diagram.png, plots/features_per_neuron.png and report.md.
Every number in the report is computed from the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from mpcodec.core import configuration, progress, workdir as workdir_lib
from mpcodec.metrics import superposition
from mpcodec.core import io
from mpcodec.studies.toy_superposition import experiment as toy_train

# Tolerances of the pentagon verdict: D_i = 2/5 and 72 degree gaps (Elhage et al. 2022, section 6).
PENTAGON_DIMENSIONALITY_TOLERANCE = 0.05
PENTAGON_ANGLE_TOLERANCE_DEGREES = 5.0
# A neuron counts as monosemantic when its features per neuron is within this of 1 (a second positive
# weight of about 0.23 of the first already gives 1.1).
MONOSEMANTIC_TOLERANCE = 0.1


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


def summarize_privileged_basis(cfg: toy_train.ToySuperpositionConfig, params: dict[str, Any],
                               history: dict[str, Any]) -> dict[str, Any]:
  """Per-cell, per-seed features per neuron, represented features and D* of the ReLU-hidden sweep.

  A model's features per neuron is the mean over its m neurons of `superposition.features_per_neuron`
  (participation ratio of a neuron's positive weights; Elhage et al. 2022, section 7). Arrays have
  leading axes (sparsities, seeds); `rows` has one entry per sparsity with mean, min and max over seeds.
  """
  privileged = cfg.privileged_basis
  weights_GxSxMxN = np.asarray(params["W"])
  hidden_dim = weights_GxSxMxN.shape[-2]
  per_neuron_GxSxM = np.asarray(superposition.features_per_neuron(weights_GxSxMxN))
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


def plot_features_per_neuron(cfg: toy_train.ToySuperpositionConfig, privileged: dict[str, Any],
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


def _privileged_basis_markdown(cfg: toy_train.ToySuperpositionConfig, privileged: dict[str, Any]
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


def _report_markdown(cfg: toy_train.ToySuperpositionConfig, pentagon: dict[str, Any],
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


def main(raw_config: Any, workdir: str, log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
  """The launch: validates the config, then `run_experiment`."""
  return run_experiment(configuration.parse(toy_train.ToySuperpositionConfig, raw_config), workdir, log)


def run_experiment(cfg: toy_train.ToySuperpositionConfig, workdir: str,
                   log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
  """Trains all sweeps, writes every output under `workdir`, returns the results dict (as in the JSON).

  The workdir is proven writable and held (`<workdir>/.lock`) before anything trains: a second process
  on the same workdir is refused naming the holder, so two runs never replace each other's outputs.
  """
  configuration.check_values(cfg)
  with workdir_lib.locked(workdir):
    return _run_locked(cfg, workdir, log)


def _run_locked(cfg: toy_train.ToySuperpositionConfig, workdir: str,
                log: Callable[[str], None]) -> dict[str, Any]:
  phase, privileged_cfg = cfg.phase_diagram, cfg.privileged_basis
  # Each sweep is one compiled program (all its cells, seeds and restarts at once), so the bar moves
  # by whole sweeps, weighted by their training steps.
  sweeps = ((cfg.train, 2), (phase.train, len(phase.feature_densities) * len(phase.relative_importances)),
            (privileged_cfg.train, len(privileged_cfg.sparsities)))
  steps = [train.num_steps * cells * cfg.num_seeds * train.num_restarts for train, cells in sweeps]
  with progress.bar(sum(steps), "toy superposition (3 sweeps)", unit="model step") as bar:
    log(f"pentagon + dense: {cfg.num_seeds} seeds x {cfg.train.num_restarts} restarts x 2 cells")
    runs = toy_train.run_pentagon_and_dense(cfg)
    bar.update(steps[0])
    bar.set_postfix_str("pentagon + dense done")
    log(f"phase diagram: {len(phase.feature_densities)} x {len(phase.relative_importances)} cells x "
        f"{cfg.num_seeds} seeds x {phase.train.num_restarts} restarts")
    phase_runs = toy_train.run_phase_diagram(cfg)
    bar.update(steps[1])
    bar.set_postfix_str("phase diagram done")
    log(f"privileged basis (relu_hidden): {len(privileged_cfg.sparsities)} sparsities x {cfg.num_seeds} "
        f"seeds x {privileged_cfg.train.num_restarts} restarts")
    privileged_runs = toy_train.run_privileged_basis(cfg)
    bar.update(steps[2])
    bar.set_postfix_str("privileged basis done")
  pentagon = summarize_pentagon(**runs["pentagon"])
  dense = summarize_dense(**runs["dense"], hidden_dim=cfg.train.hidden_dim)
  phase_rows, majority_PxI = phase_diagram_table(cfg, phase_runs["params"])
  privileged = summarize_privileged_basis(cfg, privileged_runs["params"], privileged_runs["history"])

  results = {"config": configuration.to_dict(cfg), "pentagon": pentagon, "dense": dense,
             "phase_diagram": {"rows": phase_rows, "class_names": list(superposition.SOLUTION_NAMES)},
             "privileged_basis": privileged}
  io.write_json(os.path.join(workdir, "metrics", "toy_superposition.json"), results)
  io.write_csv(os.path.join(workdir, "metrics", "phase_diagram.csv"), phase_rows)
  io.write_csv(os.path.join(workdir, "metrics", "privileged_basis.csv"), privileged["rows"])
  plot_phase_diagram(cfg, majority_PxI, os.path.join(workdir, "plots", "phase_diagram.png"))
  plot_features_per_neuron(cfg, privileged, os.path.join(workdir, "plots", "features_per_neuron.png"))
  io.write_text(os.path.join(workdir, "report.md"),
                _report_markdown(cfg, pentagon, dense, phase_rows, privileged))
  log(f"wrote metrics, plot and report under {workdir}")
  return io.jsonable(results)
