"""Tests of the toy-superposition privileged-basis summary, plots and report section (no training)."""

import numpy as np

from mpcodec.core.configuration import parse
from mpcodec.metrics import superposition
from mpcodec.studies.toy_superposition import analysis as toy_analysis, plots as toy_plots, report as toy_report
from mpcodec.studies.toy_superposition.config import ToySuperpositionConfig
from tests.studies import figure_checks


def _participation_ratio_of_positive_weights(weights_MxN):
  """Numpy reference: (Σ_i w_i²)² / Σ_i w_i⁴ over w = max(W_j, 0), per neuron j."""
  squared = np.maximum(weights_MxN, 0.0) ** 2
  return squared.sum(-1) ** 2 / (squared ** 2).sum(-1)


def _config():
  return parse(ToySuperpositionConfig, dict(
      num_seeds=2, privileged_basis=dict(sparsities=(0.9, 0.0), importance_decay=0.8, train=dict(
          num_features=4, hidden_dim=2, variant="relu_hidden", num_steps=10, history_every=5))))


# Axes (sparsity cell, seed, neuron, feature); cell 0 is S = 0.9, cell 1 is S = 0.
WEIGHTS_GxSxMxN = np.array([
    [[[1.0, 1.0, -0.5, 0.0], [0.0, 0.0, 1.0, 1.0]],    # two features per neuron, negatives ignored
     [[0.8, 0.8, 0.8, 0.0], [0.0, 0.0, 0.0, 0.9]]],    # three and one
    [[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],     # monosemantic, the two most important features
     [[0.0, 1.0, 0.0, 0.0], [1.0, 0.3, 0.0, 0.0]]],    # second neuron mixes in 0.3 of feature 2
], np.float32)


def test_summary_matches_numpy_reference():
  cfg = _config()
  loss_GxSxH = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
  summary = toy_analysis.summarize_privileged_basis(cfg, {"W": WEIGHTS_GxSxMxN}, {"loss": loss_GxSxH})
  per_neuron = _participation_ratio_of_positive_weights(WEIGHTS_GxSxMxN.astype(np.float64))
  np.testing.assert_allclose(summary["features_per_neuron_by_neuron"], per_neuron, rtol=1e-5)
  np.testing.assert_allclose(per_neuron[0], [[2.0, 2.0], [3.0, 1.0]], rtol=1e-6)
  np.testing.assert_allclose(summary["features_per_neuron"], per_neuron.mean(-1), rtol=1e-5)
  norms = np.linalg.norm(WEIGHTS_GxSxMxN, axis=-2)
  np.testing.assert_array_equal(summary["represented_features"], (norms > 0.5).sum(-1))
  np.testing.assert_allclose(summary["dimensions_per_feature"], 2 / (WEIGHTS_GxSxMxN ** 2).sum((-2, -1)),
                             rtol=1e-5)
  np.testing.assert_array_equal(summary["final_loss"], loss_GxSxH[..., -1])
  np.testing.assert_allclose(summary["negative_weight_share"][0], [0.25 / 4.25, 0.0], rtol=1e-6)

  rows = summary["rows"]
  assert [(row["sparsity"], row["feature_density"]) for row in rows] == [(0.9, 0.1), (0.0, 1.0)]
  dense_per_seed = per_neuron[1].mean(-1)
  np.testing.assert_allclose(rows[1]["features_per_neuron_min"], dense_per_seed.min(), rtol=1e-5)
  np.testing.assert_allclose(rows[1]["features_per_neuron_max"], dense_per_seed.max(), rtol=1e-5)
  np.testing.assert_allclose(rows[1]["features_per_neuron_mean"], dense_per_seed.mean(), rtol=1e-5)
  assert rows[0]["represented_features_mean"] == 4.0

  # Seed 1's dense neuron 2 is at (1.09)² / 1.0081 ≈ 1.18, outside the monosemantic tolerance.
  np.testing.assert_array_equal(summary["densest_monosemantic_top_m"], [True, False])
  trend = summary["features_per_neuron_trend"]
  assert trend["densest_sparsity"] == 0.0 and trend["sparsest_sparsity"] == 0.9
  assert trend["num_seeds_higher_when_sparsest"] == 2
  assert trend["mean_is_monotone_in_sparsity"] and trend["peak_sparsity"] == 0.9


def test_trend_detects_a_non_monotone_peak_and_per_seed_reversals():
  trend = toy_analysis.compare_densest_and_sparsest(
      (0.5, 0.0, 0.9), np.array([[3.0, 3.5], [1.0, 2.5], [2.0, 2.0]]))
  assert trend["densest_sparsity"] == 0.0 and trend["sparsest_sparsity"] == 0.9
  np.testing.assert_array_equal(trend["densest_per_seed"], [1.0, 2.5])
  assert trend["num_seeds_higher_when_sparsest"] == 1
  assert not trend["mean_is_monotone_in_sparsity"]
  assert trend["peak_sparsity"] == 0.5 and trend["peak_mean"] == 3.25


def test_plot_and_report_section_state_the_computed_values(tmp_path):
  cfg = _config()
  summary = toy_analysis.summarize_privileged_basis(cfg, {"W": WEIGHTS_GxSxMxN},
                                                  {"loss": np.ones((2, 2, 2), np.float32)})
  path = tmp_path / "features_per_neuron.png"
  toy_plots.plot_features_per_neuron(cfg, summary, str(path))
  assert path.stat().st_size > 0
  text = "\n".join(toy_report._privileged_basis_markdown(cfg, summary))  # pylint: disable=protected-access
  assert "| 0.9 | 0.1 | 2.00 (2.00..2.00) | 4.00 (4.00..4.00) |" in text
  assert "1 of 2." in text  # monosemantic seeds at the densest cell
  assert "on 2 of 2 seeds" in text
  assert "never decreases as sparsity grows" in text


def test_figures_are_readable(monkeypatch, tmp_path):
  saved = figure_checks.capture(monkeypatch)
  cfg = _config()
  summary = toy_analysis.summarize_privileged_basis(cfg, {"W": WEIGHTS_GxSxMxN},
                                                  {"loss": np.ones((2, 2, 2), np.float32)})
  toy_plots.plot_features_per_neuron(cfg, summary, str(tmp_path / "features_per_neuron.png"))
  phase = cfg.phase_diagram
  majority = np.arange(len(phase.feature_densities) * len(phase.relative_importances)).reshape(
      len(phase.feature_densities), len(phase.relative_importances)) % 4
  toy_plots.plot_phase_diagram(cfg, majority, str(tmp_path / "phase_diagram.png"))
  figure_checks.assert_readable(saved)
  legend = [t.get_text() for t in saved[1][1].axes[0].get_legend().get_texts()]
  assert legend == list(superposition.SOLUTION_NAMES)   # what each colour of the grid means
