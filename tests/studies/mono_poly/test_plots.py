"""The mono -> poly figures on small synthetic inputs: every panel labelled with its unit and titled, and
a ±1 SD band never leaves the range its quantity can take (a count below 0, an accuracy above 1)."""

import numpy as np

from mpcodec.metrics.selectivity import DEAD, MONOSEMANTIC, POLYSEMANTIC
from mpcodec.studies.mono_poly import plots as mono_poly_plots
from tests.studies import figure_checks


def _band_range(ax):
  vertices = np.concatenate([path.vertices for path in ax.collections[0].get_paths()])
  return vertices[:, 1].min(), vertices[:, 1].max()


def test_metric_curves_have_units_and_bands_inside_the_possible_range(monkeypatch, tmp_path):
  saved = figure_checks.capture(monkeypatch)
  steps = np.arange(0, 60, 10)
  curves = {"num_polysemantic": np.array([[0, 0, 1, 2, 3, 3], [0, 0, 0, 0, 0, 0], [0, 4, 5, 6, 6, 7]]),
            "test_accuracy": np.array([[0.5, 0.9, 1.0, 1.0, 1.0, 1.0], [0.4, 0.6, 0.7, 0.99, 1.0, 0.98],
                                       [0.5, 0.5, 0.9, 1.0, 1.0, 1.0]]),
            "mean_angle": np.array([[80.0, 79, 78, 70, 65, 60], [82, 80, 77, 71, 66, 61], [81, 80, 79, 72, 64, 62]]),
            "some new metric": np.array([[1.0, 2, 3, 4, 5, 6]] * 3)}
  mono_poly_plots.plot_metric_curves(steps, curves, phase_boundary_step=25, plot_dir=tmp_path)
  figure_checks.assert_readable(saved)
  axes = {path.rsplit("/", 1)[-1]: fig.axes[0] for path, fig, _ in saved}
  count = axes["metrics_num_polysemantic.png"]
  assert count.get_ylabel() == "polysemantic neurons (count)"
  assert _band_range(count)[0] >= 0.0      # mean - SD is below 0 at step 10: clipped
  assert "clipped" in count.get_legend().get_texts()[1].get_text()
  accuracy = axes["metrics_test_accuracy.png"]
  assert accuracy.get_ylabel() == "accuracy (fraction correct)" and _band_range(accuracy)[1] <= 1.0
  assert axes["metrics_mean_angle.png"].get_ylabel() == "mean pairwise angle (degrees)"
  assert axes["metrics_some_new_metric.png"].get_ylabel() == "some new metric"
  assert all(ax.get_xlabel() == "training step (phase 1, then phase 2)" for ax in axes.values())


def test_image_figures_are_readable(monkeypatch, tmp_path):
  saved = figure_checks.capture(monkeypatch)
  rng = np.random.default_rng(0)
  mono_poly_plots.plot_samples(rng.uniform(size=(5, 32, 32, 3)), [f"img {i}" for i in range(5)],
                         tmp_path / "samples.png", num_columns=3)
  labels = np.array([[MONOSEMANTIC, POLYSEMANTIC, DEAD], [POLYSEMANTIC, MONOSEMANTIC, MONOSEMANTIC]])
  mono_poly_plots.plot_weight_images(rng.normal(size=(2, 32 * 32 * 3, 3)), tmp_path / "weights.png", labels=labels)
  figure_checks.assert_readable(saved)
