"""Tests of the mono -> poly hypothesis tests, report rendering and plots on planted data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpcodec.metrics.selectivity import DEAD, MONOSEMANTIC, POLYSEMANTIC
from mpcodec.studies.mono_poly import report as mono_poly

NUM_SEEDS = 8
NUM_NEURONS = 10
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _planted(poly_shift_S, angle_drop=10.0, seed=0):
  """Neurons 0-2 polysemantic, 3-8 monosemantic, 9 dead; poly entropy and L2 shifted per seed."""
  rng = np.random.default_rng(seed)
  labels = np.full((NUM_SEEDS, NUM_NEURONS), MONOSEMANTIC)
  labels[:, :3] = POLYSEMANTIC
  labels[:, 9] = DEAD
  entropy = 5.0 + 0.05 * rng.normal(size=(NUM_SEEDS, NUM_NEURONS))
  l2 = 1.0 + 0.05 * rng.normal(size=(NUM_SEEDS, NUM_NEURONS))
  shift = np.asarray(poly_shift_S, dtype=np.float64)[:, None]
  entropy[:, :3] += shift
  l2[:, :3] += shift
  angle1 = 85.0 + rng.normal(size=NUM_SEEDS)
  angle2 = angle1 - angle_drop + 0.5 * rng.normal(size=NUM_SEEDS)
  return {"entropy": entropy, "l2": l2, "labels": labels, "mean_angle_phase1_end": angle1,
          "mean_angle_phase2_end": angle2}


def _reference_differences(values, labels):
  differences = []
  for s in range(values.shape[0]):
    poly = [values[s, h] for h in range(values.shape[1]) if labels[s, h] == POLYSEMANTIC]
    mono = [values[s, h] for h in range(values.shape[1]) if labels[s, h] == MONOSEMANTIC]
    if poly and mono:
      differences.append(sum(poly) / len(poly) - sum(mono) / len(mono))
  return differences


def test_planted_strong_effect_is_supported_and_matches_reference():
  per_seed = _planted(np.full(NUM_SEEDS, 1.0))
  per_seed["labels"][5, :3] = MONOSEMANTIC  # seed 5 has no polysemantic neuron: excluded
  result = mono_poly.test_hypotheses(per_seed, num_resamples=2000)
  json.dumps(result, allow_nan=False)
  for name, key in (("H1", "entropy"), ("H2", "l2")):
    h = result["hypotheses"][name]
    reference = _reference_differences(per_seed[key], per_seed["labels"])
    assert h["num_seeds_used"] == NUM_SEEDS - 1 and h["num_seeds_excluded"] == 1
    np.testing.assert_allclose(h["per_seed_difference"], reference)
    assert h["estimate"] == pytest.approx(sum(reference) / len(reference))
    assert h["ci_low"] <= h["estimate"] <= h["ci_high"]
    assert h["verdict"] == "supported"
    assert "supported" in h["statement"] and mono_poly.format_number(h["estimate"]) in h["statement"]
  h3 = result["hypotheses"]["H3"]
  angle_drop_S = per_seed["mean_angle_phase1_end"] - per_seed["mean_angle_phase2_end"]
  assert h3["estimate"] == pytest.approx(float(np.mean(angle_drop_S))) and h3["verdict"] == "supported"
  assert h3["cohens_dz"] == pytest.approx(np.mean(angle_drop_S) / np.std(angle_drop_S, ddof=1))
  assert h3["num_seeds_used"] == NUM_SEEDS


def test_planted_reversed_effect_is_contradicted():
  result = mono_poly.test_hypotheses(_planted(np.full(NUM_SEEDS, -1.0), angle_drop=-10.0),
                                     num_resamples=2000)
  for name in ("H1", "H2", "H3"):
    assert result["hypotheses"][name]["verdict"] == "contradicted", name
    assert result["hypotheses"][name]["estimate"] < 0


def test_tiny_symmetric_effect_is_inconclusive():
  # Per-seed shifts of +-0.01 in equal numbers, no noise: the mean difference is 0 and resampled means
  # fall on both sides of it, so the CI must contain 0 whatever the resampling seed.
  alternating_S = 0.01 * (-1.0) ** np.arange(NUM_SEEDS)
  per_seed = _planted(np.zeros(NUM_SEEDS))
  per_seed["entropy"] = np.where(per_seed["labels"] == POLYSEMANTIC, 5.0 + alternating_S[:, None], 5.0)
  per_seed["mean_angle_phase2_end"] = per_seed["mean_angle_phase1_end"] + alternating_S
  result = mono_poly.test_hypotheses(per_seed, num_resamples=2000)
  for name in ("H1", "H3"):
    h = result["hypotheses"][name]
    assert h["estimate"] == pytest.approx(0.0, abs=1e-9)
    assert h["ci_low"] < 0 < h["ci_high"]
    assert h["verdict"] == "inconclusive"


def test_no_seed_with_both_groups_gives_inconclusive_with_nulls():
  per_seed = _planted(np.ones(NUM_SEEDS))
  per_seed["labels"][:, :3] = MONOSEMANTIC
  result = mono_poly.test_hypotheses(per_seed, num_resamples=100)
  h1 = result["hypotheses"]["H1"]
  assert h1["num_seeds_used"] == 0 and h1["estimate"] is None and h1["verdict"] == "inconclusive"
  json.dumps(result, allow_nan=False)


def test_bad_input_names_the_key():
  per_seed = _planted(np.ones(NUM_SEEDS))
  del per_seed["l2"]
  with pytest.raises(ValueError, match="l2"):
    mono_poly.test_hypotheses(per_seed)
  per_seed = _planted(np.ones(NUM_SEEDS))
  per_seed["mean_angle_phase2_end"] = per_seed["mean_angle_phase2_end"][:3]
  with pytest.raises(ValueError, match="mean_angle_phase2_end"):
    mono_poly.test_hypotheses(per_seed)


def _table_row(markdown, heading):
  lines = markdown.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(heading))
  return [cell.strip() for cell in lines[start + 4].strip("|").split("|")]


def test_report_numbers_equal_computed_ones():
  per_seed = _planted(np.full(NUM_SEEDS, 0.7))
  hypotheses = mono_poly.test_hypotheses(per_seed, num_resamples=2000)
  phase1_labels = per_seed["labels"].copy()
  phase1_labels[:, :3] = MONOSEMANTIC
  summary = {"num_seeds": NUM_SEEDS, "final_test_accuracy": 0.98765,
             "label_counts": {"phase1": mono_poly.label_counts(phase1_labels),
                              "phase2": mono_poly.label_counts(per_seed["labels"])}}
  markdown = mono_poly.render_report_markdown(hypotheses, summary)
  for name, h in hypotheses["hypotheses"].items():
    cells = _table_row(markdown, f"### {name}:")
    assert int(cells[0]) == h["num_seeds_used"] and int(cells[1]) == h["num_seeds_excluded"]
    for cell, key in zip(cells[2:7], ("estimate", "ci_low", "ci_high", "standardized_effect", "cohens_dz")):
      assert cell == mono_poly.format_number(h[key])
      assert float(cell) == pytest.approx(h[key], rel=1e-3)
    assert cells[7] == f"**{h['verdict']}**"
    assert h["statement"] in markdown
  assert "| phase1 | 72 | 0 | 8 | 80 |" in markdown
  assert "| phase2 | 48 | 24 | 8 | 80 |" in markdown
  assert "| final_test_accuracy | 0.9877 |" in markdown
  assert "2000 resamples" in markdown


def test_plots_write_non_empty_pngs(tmp_path):
  rng = np.random.default_rng(0)
  mono_poly.plot_samples(rng.uniform(size=(5, 32, 32, 3)), [f"img {i}" for i in range(5)],
                         tmp_path / "samples.png", num_columns=3)
  w_in = rng.normal(size=(3, 32 * 32 * 3, 4))
  w_in[0, :, 1] = 0.0  # a zero neuron must still draw (mid-grey)
  mono_poly.plot_weight_images(w_in, tmp_path / "weights.png", max_seeds=2)
  rows = [{"seed": s, "phase": phase, "step": step, "loss": 1.0 / (1 + step + s), "mean angle": 80.0 - step}
          for s in range(3) for phase in (1, 2) for step in (0, 10, 20)]
  steps, curves = mono_poly.curves_from_history(rows, ["loss", "mean angle"], step_offsets={2: 30})
  np.testing.assert_array_equal(steps, [0, 10, 20, 30, 40, 50])
  assert curves["loss"].shape == (3, 6)
  assert curves["mean angle"][1, 3] == 80.0  # phase 2, step 0 of seed 1
  with pytest.raises(ValueError, match="two rows"):
    mono_poly.curves_from_history(rows, ["loss"], step_offsets={2: 20})
  paths = mono_poly.plot_metric_curves(steps, curves, phase_boundary_step=25, plot_dir=tmp_path / "plots",
                                       band="minmax")
  assert sorted(p.split("/")[-1] for p in paths) == ["metrics_loss.png", "metrics_mean_angle.png"]
  for path in [tmp_path / "samples.png", tmp_path / "weights.png", *paths]:
    data = open(path, "rb").read()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)
  with pytest.raises(ValueError, match="titles"):
    mono_poly.plot_samples(rng.uniform(size=(2, 32, 32, 3)), ["one"], tmp_path / "bad.png")


def test_weight_images_mark_each_neurons_label_and_show_the_colour_scale(tmp_path):
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  w_in = rng.normal(size=(3, 32 * 32 * 3, 3))
  labels = np.array([[MONOSEMANTIC, POLYSEMANTIC, DEAD], [POLYSEMANTIC, MONOSEMANTIC, MONOSEMANTIC],
                     [DEAD, DEAD, DEAD]])
  fig = mono_poly.weight_images_figure(w_in, labels, max_seeds=2)
  panels, colourbar_ax = fig.axes[:6], fig.axes[6]
  assert len(fig.axes) == 7   # 2 seeds x 3 neurons, and the colourbar
  short = {MONOSEMANTIC: "mono", POLYSEMANTIC: "poly", DEAD: "dead"}
  for index, ax in enumerate(panels):
    s, h = divmod(index, 3)
    code = labels[s, h]
    scale = np.max(np.abs(w_in[s, :, h]))
    assert ax.get_title() == f"n{h} {short[code]}\nmax|w| {scale:.2g}", (s, h)
    assert colors.same_color(ax.spines["left"].get_edgecolor(), mono_poly.LABEL_COLOURS[code]), (s, h)
    np.testing.assert_allclose(ax.images[0].get_array(),
                               (0.5 + w_in[s, :, h] / (2 * scale)).reshape(32, 32, 3), atol=1e-6)   # float32
  # The three label colours differ, so the frames tell the labels apart.
  assert len({colors.to_hex(c) for c in mono_poly.LABEL_COLOURS.values()}) == 3
  assert colourbar_ax.get_ylabel() == mono_poly.WEIGHT_COLOURBAR_LABEL
  assert "symmetric scale" in colourbar_ax.get_ylabel()
  assert [t.get_text() for t in colourbar_ax.get_yticklabels()] == ["-max", "0", "+max"]
  assert [t.get_text() for t in fig.legends[0].get_texts()] == ["monosemantic", "polysemantic", "dead"]
  # One seed's (H,) labels work too; labels that do not match w_in are refused, naming both shapes.
  single = mono_poly.weight_images_figure(w_in[0], labels[0])
  assert single.axes[2].get_title().startswith("n2 dead")
  with pytest.raises(ValueError, match=r"labels of shape \(3, 2\) do not match .* \(3, 3\)"):
    mono_poly.weight_images_figure(w_in, labels[:, :2])
  with pytest.raises(ValueError, match="unknown label codes \\[7\\]"):
    mono_poly.weight_images_figure(w_in, np.full((3, 3), 7))
  mono_poly.plot_weight_images(w_in, tmp_path / "labelled.png", labels=labels)
  data = (tmp_path / "labelled.png").read_bytes()
  assert len(data) > 1000 and data.startswith(PNG_MAGIC)
