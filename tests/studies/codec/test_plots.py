"""The codec's figures on small synthetic inputs: every panel labelled and titled (or saying "no data"),
the MiniLM plots included; the SNR plot draws no non-positive value on its log axis."""

import types

import numpy as np
import pytest

from mpcodec.studies.codec import plots, text_plots, text_report
from tests.studies import figure_checks

RUNS = [{"k": 4, "seed_index": 0}, {"k": 4, "seed_index": 1}, {"k": 8, "seed_index": 0}]
SQUEEZER_RUNS = [dict(run, squeezer_k=8) for run in RUNS]


def _ci(mean, half=0.01):
  return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def _primary(rng, num_atoms=40, num_neurons=6):
  pairs = np.array([(a, a + 1) for a in range(0, 30, 2)])
  num_pairs = len(pairs)
  neuron = np.arange(num_pairs) % 3
  return {
      "tables": types.SimpleNamespace(testable_P=np.arange(num_pairs) % 4 != 3,
                                      means_Px4=rng.uniform(0, 2, (num_pairs, 4)),
                                      scale_P=np.ones(num_pairs), class_P=np.arange(num_pairs) % 4),
      "rooms": {"neuron_P": neuron, "num_neurons": num_neurons, "pairs_Px2": pairs},
      "lifts": {"_log_lift_roommates": rng.normal(0.3, 0.5, 50), "_log_lift_matched": rng.normal(0, 0.5, 50)},
      "live_N": np.arange(num_atoms) != 5,
      "theme_input": "decoder",
      "theme_labels": {"decoder": np.arange(num_atoms) % 3},
      "planted": {"co-firing": np.where(np.arange(num_atoms) < 30, np.arange(num_atoms) % 5, -1)},
      "sae_state": {"params": {"w_dec_NxD": rng.normal(size=(num_atoms, 8))}},
  }


def _payload():
  entries = [dict(sae_k=k, squeezer_k=squeezer_k, faithful=squeezer_k == 8, or_prevalence=_ci(0.05),
                  null_permuted_or_prevalence=_ci(0.0, 0.0), null_random_pairs_or_prevalence=_ci(0.02))
             for k in (4, 8) for squeezer_k in (8, 16)]
  tax = [dict(squeezer_k=squeezer_k, num_neurons=m, tax=_ci(1.0 + 0.1 * squeezer_k / m))
         for squeezer_k in (8, 16) for m in (8, 16, 32)]
  return {"or_gates": {"by_squeezer_k": entries}, "superposition_tax": {"by_num_neurons": tax}}


def test_codec_figures_are_readable(monkeypatch, tmp_path):
  saved = figure_checks.capture(monkeypatch)
  rng = np.random.default_rng(0)
  steps = 12
  history = {"fvu": np.linspace(1.0, 0.3, steps)[:, None] * np.ones((1, 3)),
             "l0": np.full((steps, 3), 4.0),                      # constant: said in the title
             "dead_fraction": rng.uniform(0, 0.2, (steps, 3)), "aux_loss": np.zeros((steps, 3))}
  plots.training_curves(history, RUNS, "SAE", str(tmp_path / "sae_training.png"))
  plots.training_curves(history, SQUEEZER_RUNS, "Squeezer", str(tmp_path / "squeezer_training.png"))
  metrics = {"density_edges": np.linspace(-7, 0, 29), "density_histogram": rng.integers(0, 9, (3, 28)),
             "dead_fraction": np.array([0.1, 0.2, 0.0]), "features_per_neuron": rng.integers(0, 6, (3, 16))}
  plots.latent_density(metrics, RUNS, str(tmp_path / "latent_density.png"))
  plots.features_per_neuron(metrics, SQUEEZER_RUNS, str(tmp_path / "features_per_neuron.png"))
  plots.write_plots(str(tmp_path / "analysis"), _payload(), _primary(rng), types.SimpleNamespace(top_neurons=3))
  figure_checks.assert_readable(saved)
  by_name = {path.rsplit("/", 1)[-1]: fig for path, fig, _ in saved}
  sae_axes = by_name["sae_training.png"].axes
  assert [ax.get_ylabel() for ax in sae_axes[1:3]] == ["L0 (active latents per token)", "dead latents (fraction)"]
  assert sae_axes[1].get_title() == "sparsity (constant 4)"
  assert by_name["squeezer_training.png"].axes[2].get_ylabel() == "dead synthetic neurons\n(fraction)"
  truth = by_name["truth_tables.png"]
  colourbars = [ax for ax in truth.axes if getattr(ax, "_colorbar", None) is not None]
  assert len(colourbars) == 1 and "std" in colourbars[0].get_ylabel()
  themes = by_name["atoms_by_theme.png"].axes
  assert themes[0].get_title() == "found themes (decoder clustering): 3"
  assert themes[1].get_title() == "planted themes (co-firing): 5"
  assert all(ax.get_legend() is not None for ax in themes)
  # Several SAE k: each OR group names its SAE k as well as its Squeezer K.
  labels = [t.get_text() for t in by_name["or_prevalence.png"].axes[0].get_xticklabels()]
  assert labels == ["SAE k=4\nK=8 *", "SAE k=4\nK=16", "SAE k=8\nK=8 *", "SAE k=8\nK=16"]


def test_codec_figures_without_data_say_why(monkeypatch, tmp_path):
  saved = figure_checks.capture(monkeypatch)
  payload = {"or_gates": {"by_squeezer_k": []},
             "superposition_tax": {"by_num_neurons": [dict(squeezer_k=8, num_neurons=8, tax=None)]}}
  plots.write_plots(str(tmp_path), payload, {}, types.SimpleNamespace(top_neurons=3))
  figure_checks.assert_readable(saved)
  for path, fig, _ in saved:
    assert any(t.get_text().startswith("no data: ") for t in fig.axes[0].texts), path


def _steering_summary():
  def cells(values):
    return [{"mean": v, "low": v - 0.05, "high": v + 0.05} for v in values]
  methods = {m: {"p_target_clean": cells([0.2, 0.2]), "p_target_steered": cells([0.3, 0.5]),
                 "kl": cells([0.1, 0.4]), "drift": cells([0.05, 0.2])} for m in ("theme", "atom", "diffmean")}
  return {"strengths": [1.0, 2.0], "sets": {"steering": methods, "neutral": methods}, "target_class": "World",
          "snr": [{"seed_index": 0, "atoms": [1, 4, 16], "snr": [-0.002, 0.01, 0.02]},
                  {"seed_index": 1, "atoms": [1, 4, 16], "snr": [0.004, 0.0, 0.03]}]}


def test_minilm_figures_are_readable_and_the_roc_is_titled_with_its_auroc(monkeypatch, tmp_path):
  saved = figure_checks.capture(monkeypatch)
  summary = _steering_summary()
  text_plots.plot_steering(summary, str(tmp_path / "steering.png"))
  text_plots.plot_snr(summary, str(tmp_path / "snr.png"))
  roc = {"theme": {"fpr": np.array([0.0, 0.0, 1.0]), "tpr": np.array([0.0, 1.0, 1.0]), "auroc": 1.0},
         "probe": {"fpr": np.array([0.0, 0.5, 1.0]), "tpr": np.array([0.0, 0.5, 1.0])}}
  text_plots.plot_roc(roc, 0.01, str(tmp_path / "roc.png"))
  figure_checks.assert_readable(saved)
  by_name = {path.rsplit("/", 1)[-1]: fig for path, fig, _ in saved}
  roc_ax = by_name["roc.png"].axes[0]
  assert "AUROC 1.000" in roc_ax.get_title()
  legend = [t.get_text() for t in roc_ax.get_legend().get_texts()]
  assert "theme (AUROC 1.000)" in legend and "probe (AUROC 0.500)" in legend   # computed from the curve
  # The SNR plot leaves out the two non-positive values (no logarithm) and says so.
  snr_ax = by_name["snr.png"].axes[0]
  seeds = {line.get_label(): line.get_xydata().tolist() for line in snr_ax.lines if "seed" in line.get_label()}
  assert seeds == {"seed 0": [[4, 0.01], [16, 0.02]], "seed 1": [[1, 0.004], [16, 0.03]]}
  assert "2 non-positive SNR value(s) not drawn" in snr_ax.get_title()
  # The √N reference starts at the drawn point of fewest atoms (seed 1's N = 1) and spans the others.
  reference = [line for line in snr_ax.lines if line.get_label().startswith("√N")][0]
  np.testing.assert_allclose(reference.get_xydata(), [[1, 0.004], [4, 0.008], [16, 0.016]])


@pytest.mark.parametrize("snr", [[], [-1.0, 0.0]])
def test_an_snr_plot_with_nothing_positive_says_no_data(monkeypatch, tmp_path, snr):
  saved = figure_checks.capture(monkeypatch)
  summary = dict(_steering_summary(), snr=[{"seed_index": 0, "atoms": [1, 2][:len(snr)], "snr": snr}])
  text_plots.plot_snr(summary, str(tmp_path / "snr.png"))
  figure_checks.assert_readable(saved)
  assert any(t.get_text().startswith("no data: ") for t in saved[0][1].axes[0].texts)


def test_minilm_theme_count_says_which_clustering_chose_it_and_names_the_other():
  themes = {"num_themes": 4, "criterion": "silhouette", "scores": {8: 0.03, 4: 0.05}, "method": "spectral",
            "vectors": "decoder", "k": 4}
  text = text_report._theme_count_text(themes, None)  # pylint: disable=protected-access
  assert text.startswith("4 themes: the number the silhouette chose among 4, 8 (`themes.k_range`)")
  assert "metrics/analysis.json (themes.recovery)" in text
  analysis_themes = {"recovery": [{"input": "decoder", "sae_k": 4, "num_themes": [2, 2]},
                                  {"input": "decoder", "sae_k": 8, "num_themes": [3, 5]}]}
  text = text_report._theme_count_text(dict(themes, scores={"4": 0.05}), analysis_themes)  # pylint: disable=protected-access
  assert "among 4 (`themes.k_range`)" in text
  assert "separate clustering of the same rows over `codec.analysis.theme_k_range` on the analysis window: 2, 2 " \
         "theme(s) for SAE k=4 (per seed)" in text
