"""Tests of the mono -> poly hypothesis tests (per arm, XOR minus control, Holm), report.md and plots on
planted data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from mpcodec.core import stats
from mpcodec.metrics.selectivity import DEAD, MONOSEMANTIC, POLYSEMANTIC
from mpcodec.studies.mono_poly import analysis as mono_poly_analysis, config as mono_poly_config_lib, hypotheses
from mpcodec.studies.mono_poly import plots as mono_poly_plots
from mpcodec.studies.mono_poly import report as mono_poly

NUM_SEEDS = 8
NUM_NEURONS = 10
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _planted(poly_shift_S, control_shift_S=None, angle_drop_S=10.0, control_angle_drop_S=0.0, num_seeds=NUM_SEEDS,
             noise=0.05, seed=0):
  """XOR arm: neurons 0-2 polysemantic, 3-8 monosemantic, 9 dead, poly entropy and L2 shifted per seed by
  poly_shift_S; the control arm: the same neurons (all monosemantic there) shifted by control_shift_S."""
  rng = np.random.default_rng(seed)
  labels = np.full((num_seeds, NUM_NEURONS), MONOSEMANTIC)
  labels[:, :3] = POLYSEMANTIC
  labels[:, 9] = DEAD
  shift = np.broadcast_to(np.asarray(poly_shift_S, np.float64), (num_seeds,))[:, None]
  control_shift = np.broadcast_to(np.asarray(0.0 if control_shift_S is None else control_shift_S, np.float64),
                                  (num_seeds,))[:, None]
  arms = []
  for arm_shift in (shift, control_shift):
    entropy = 5.0 + noise * rng.normal(size=(num_seeds, NUM_NEURONS))
    l2 = 1.0 + noise * rng.normal(size=(num_seeds, NUM_NEURONS))
    entropy[:, :3] += arm_shift
    l2[:, :3] += arm_shift
    arms.append((entropy, l2))
  angle1 = 85.0 + rng.normal(size=num_seeds)
  per_seed = {"entropy": arms[0][0], "l2": arms[0][1], "labels": labels, "mean_angle_phase1_end": angle1,
              "mean_angle_phase2_end": angle1 - angle_drop_S + 0.5 * rng.normal(size=num_seeds)}
  control_labels = np.where(labels == DEAD, DEAD, MONOSEMANTIC)
  control = {"entropy": arms[1][0], "l2": arms[1][1], "labels": control_labels,
             "mean_angle_end": angle1 - control_angle_drop_S + 0.5 * rng.normal(size=num_seeds)}
  return per_seed, control


def _reference_differences(values, labels):
  """Per seed mean(poly) - mean(mono) written out; None where a seed lacks a group."""
  differences = []
  for s in range(values.shape[0]):
    poly = [values[s, h] for h in range(values.shape[1]) if labels[s, h] == POLYSEMANTIC]
    mono = [values[s, h] for h in range(values.shape[1]) if labels[s, h] == MONOSEMANTIC]
    differences.append(sum(poly) / len(poly) - sum(mono) / len(mono) if poly and mono else None)
  return differences


def test_xor_minus_control_matches_reference_and_groups_control_neurons_by_xor_labels():
  per_seed, control = _planted(np.full(NUM_SEEDS, 1.0), np.full(NUM_SEEDS, 0.2), control_angle_drop_S=-1.0)
  per_seed["labels"][5, :3] = MONOSEMANTIC  # seed 5 has no polysemantic neuron in the XOR arm: left out
  result = hypotheses.test_hypotheses(per_seed, control)
  json.dumps(result, allow_nan=False)
  for name, key in (("H1", "entropy"), ("H2", "l2")):
    h = result["hypotheses"][name]
    xor = _reference_differences(per_seed[key], per_seed["labels"])
    ctrl = _reference_differences(control[key], per_seed["labels"])  # the XOR arm's labels
    expected = [None if x is None else x - c for x, c in zip(xor, ctrl)]
    assert h["per_seed"]["xor"] == pytest.approx(xor) and h["per_seed"]["control"] == pytest.approx(ctrl)
    assert h["per_seed"]["tested"] == pytest.approx(expected)
    assert h["num_seeds_used"] == NUM_SEEDS - 1 and h["num_seeds_excluded"] == 1
    used = [v for v in expected if v is not None]
    assert h["test"]["estimate"] == pytest.approx(np.mean(used)) and h["test"]["n"] == NUM_SEEDS - 1
    interval = scipy.stats.t.interval(0.95, len(used) - 1, loc=np.mean(used), scale=scipy.stats.sem(used))
    assert (h["test"]["low"], h["test"]["high"]) == pytest.approx(interval)
    assert h["arms"]["control"]["estimate"] == pytest.approx(np.mean([c for c in ctrl if c is not None]))
    assert h["verdict"] == "supported" and h["test"]["k_of_n"] == NUM_SEEDS - 1
    assert f"{NUM_SEEDS - 1} of {NUM_SEEDS - 1} seeds show a larger effect under XOR" in h["statement"]
  h3 = result["hypotheses"]["H3"]
  expected = control["mean_angle_end"] - per_seed["mean_angle_phase2_end"]
  assert h3["per_seed"]["tested"] == pytest.approx(expected.tolist())
  assert h3["test"]["cohens_dz"] == pytest.approx(np.mean(expected) / np.std(expected, ddof=1))
  assert "Cohen's d_z (mean / SD of the per-seed values) =" in h3["statement"]
  assert h3["arms"]["xor"]["mean_angle_end"] == pytest.approx(per_seed["mean_angle_phase2_end"].mean())
  assert result["rules"]["control_arm"] and result["rules"]["family"] == ["H1", "H2", "H3"]


def _values_with_p(p_value, num_seeds):
  """Per-seed values whose two-sided one-sample t test of mean 0 has exactly this p-value."""
  z = np.linspace(-1.0, 1.0, num_seeds)
  z = (z - z.mean()) / z.std(ddof=1)
  t = scipy.stats.t.isf(p_value / 2, num_seeds - 1)
  return t / math.sqrt(num_seeds) + z


def _exact(h1_S, h2_S, h3_S):
  """XOR arm with per-seed effects exactly h1_S, h2_S, h3_S and a control arm with none."""
  num_seeds = len(h1_S)
  labels = np.full((num_seeds, 4), MONOSEMANTIC)
  labels[:, 0] = POLYSEMANTIC
  entropy, l2 = np.zeros((num_seeds, 4)), np.zeros((num_seeds, 4))
  entropy[:, 0], l2[:, 0] = h1_S, h2_S
  angle1 = np.full(num_seeds, 90.0)
  per_seed = {"entropy": entropy, "l2": l2, "labels": labels, "mean_angle_phase1_end": angle1,
              "mean_angle_phase2_end": angle1 - np.asarray(h3_S)}
  control = {"entropy": np.zeros_like(entropy), "l2": np.zeros_like(l2), "labels": labels,
             "mean_angle_end": angle1}
  return per_seed, control


def test_holm_across_h1_to_h3_decides_the_verdicts():
  # Raw p-values 0.001, 0.03 and 0.04 at 8 seeds: each alone would be supported; Holm over the three
  # adjusts them to 0.003, 0.06 and 0.06, so only H1 is.
  values = {"H1": _values_with_p(0.001, 8), "H2": _values_with_p(0.03, 8), "H3": _values_with_p(0.04, 8)}
  result = hypotheses.test_hypotheses(*_exact(values["H1"], values["H2"], values["H3"]))["hypotheses"]
  for name, p in (("H1", 0.001), ("H2", 0.03), ("H3", 0.04)):
    assert result[name]["per_seed"]["tested"] == pytest.approx(values[name].tolist(), abs=1e-9)
    assert result[name]["test"]["p_value"] == pytest.approx(p, rel=1e-6)
  adjusted = stats.holm([0.001, 0.03, 0.04])
  assert [result[n]["test"]["p_adjusted"] for n in ("H1", "H2", "H3")] == pytest.approx(adjusted.tolist(), rel=1e-6)
  assert adjusted.tolist() == pytest.approx([0.003, 0.06, 0.06])
  assert [result[n]["verdict"] for n in ("H1", "H2", "H3")] == ["supported", "inconclusive", "inconclusive"]
  assert all(result[n]["test"]["family_size"] == 3 for n in result)
  # Planted against the prediction: contradicted, Holm-adjusted as well.
  result = hypotheses.test_hypotheses(*_exact(-values["H1"], -values["H1"], -values["H1"]))["hypotheses"]
  assert {result[n]["verdict"] for n in result} == {"contradicted"}


def test_smoke_run_gives_no_verdict_and_its_report_says_so():
  per_seed, control = _planted(np.full(NUM_SEEDS, 1.0))
  result = hypotheses.test_hypotheses(per_seed, control, smoke=True)
  for h in result["hypotheses"].values():
    assert h["verdict"] == "cannot be tested" and h["verdict_text"] == "cannot be tested (smoke run)"
    assert h["test"]["p_value"] is None
  design = {"num_seeds": NUM_SEEDS, "data": "per-seed data: ...", "control": "control arm: ...", "smoke": True,
            "no_verdict_reason": "smoke run (the :smoke preset)"}
  markdown = mono_poly.render_report_markdown(result, {"seeds": NUM_SEEDS}, design)
  lines = markdown.splitlines()
  assert lines[2] == stats.smoke_banner("smoke run (the :smoke preset)")
  assert markdown.count("**cannot be tested (smoke run)**") == 3
  assert "per-seed data: ..." in markdown


def test_below_the_seed_minimum_nothing_is_tested_and_d_z_is_not_shown():
  per_seed, control = _planted(np.full(4, 1.0), num_seeds=4)
  result = hypotheses.test_hypotheses(per_seed, control)
  for h in result["hypotheses"].values():
    assert h["verdict_text"] == "cannot be tested (4 seeds, at least 5 needed)"
    assert h["test"]["cohens_dz"] is None and "d_z" not in h["statement"]
    assert "4 of 4 seeds show" in h["statement"]
  markdown = mono_poly.render_report_markdown(result, {"seeds": 4})
  assert markdown.count("not shown (< 5 seeds)") == 3


def test_seeds_without_both_groups_are_left_out_and_counted():
  per_seed, control = _planted(np.full(NUM_SEEDS, 1.0), angle_drop_S=5.0)
  per_seed["labels"][3:, :3] = MONOSEMANTIC  # only seeds 0-2 have polysemantic neurons
  result = hypotheses.test_hypotheses(per_seed, control)["hypotheses"]
  for name in ("H1", "H2"):
    assert result[name]["num_seeds_used"] == 3 and result[name]["num_seeds_excluded"] == 5
    assert result[name]["verdict_text"] == "cannot be tested (3 seeds, at least 5 needed)"
    assert "5 of 8 seeds left out" in result[name]["statement"]
  # H3 is the only member of the family that could be tested: Holm over one leaves its p as it is.
  assert result["H3"]["test"]["family_size"] == 1 and result["H3"]["verdict"] == "supported"
  assert result["H3"]["test"]["p_adjusted"] == result["H3"]["test"]["p_value"]
  per_seed["labels"][:, :3] = MONOSEMANTIC
  result = hypotheses.test_hypotheses(per_seed, control)
  assert result["hypotheses"]["H1"]["num_seeds_used"] == 0 and result["hypotheses"]["H1"]["test"]["estimate"] is None
  assert "no seed has a value" in result["hypotheses"]["H1"]["statement"]
  json.dumps(result, allow_nan=False)


def test_support_from_the_control_alone_is_said_when_the_xor_arm_does_not_show_the_claim():
  # Polysemantic neurons' L2 norm below the monosemantic ones' under XOR (-0.05), further below under the
  # control (-0.5): XOR minus control is positive and supported, the claim about the XOR arm is not.
  per_seed, control = _planted(np.full(NUM_SEEDS, -0.05), np.full(NUM_SEEDS, -0.5), noise=0.01)
  result = hypotheses.test_hypotheses(per_seed, control)["hypotheses"]
  h2 = result["H2"]
  assert h2["verdict"] == "supported" and h2["arms"]["xor"]["estimate"] < 0
  assert h2["tested_claim"].startswith("the polysemantic-minus-monosemantic difference in incoming-weight L2")
  assert "The support is for the difference from the control only" in h2["statement"]
  assert "points the other way" in h2["statement"]
  per_seed, control = _planted(np.full(NUM_SEEDS, 1.0), np.full(NUM_SEEDS, 0.2))
  h1 = hypotheses.test_hypotheses(per_seed, control)["hypotheses"]["H1"]
  assert h1["verdict"] == "supported" and "difference from the control only" not in h1["statement"]


def test_pooled_means_that_point_the_other_way_are_explained():
  # Seed 0 sits high with one polysemantic neuron, seed 1 low with eight: within each seed polysemantic
  # neurons are 0.1 higher, pooled over both they are far lower.
  labels = np.full((2, 9), MONOSEMANTIC)
  labels[0, 0] = POLYSEMANTIC
  labels[1, :8] = POLYSEMANTIC
  entropy = np.stack([np.full(9, 10.0), np.zeros(9)]) + 0.1 * (labels == POLYSEMANTIC)
  per_seed = {"entropy": entropy, "l2": entropy, "labels": labels, "mean_angle_phase1_end": np.full(2, 90.0),
              "mean_angle_phase2_end": np.full(2, 89.0)}
  h1 = hypotheses.test_hypotheses(per_seed)["hypotheses"]["H1"]
  assert h1["arms"]["xor"]["estimate"] == pytest.approx(0.1)
  assert h1["arms"]["xor"]["pooled_polysemantic"] < h1["arms"]["xor"]["pooled_monosemantic"]
  assert "The pooled means point the other way from the per-seed estimate" in h1["statement"]
  same_way = dict(per_seed, entropy=np.zeros((2, 9)) + 0.1 * (labels == POLYSEMANTIC))
  assert "point the other way" not in hypotheses.test_hypotheses(same_way)["hypotheses"]["H1"]["statement"]


def test_without_a_control_arm_the_xor_effect_is_tested_alone():
  per_seed, _ = _planted(np.full(NUM_SEEDS, 1.0))
  result = hypotheses.test_hypotheses(per_seed)
  h3 = result["hypotheses"]["H3"]
  drop = per_seed["mean_angle_phase1_end"] - per_seed["mean_angle_phase2_end"]
  assert h3["per_seed"]["tested"] == pytest.approx(drop.tolist()) and list(h3["arms"]) == ["xor"]
  assert h3["tested_value"] == "XOR-arm effect, per seed (no control arm)" and not result["rules"]["control_arm"]
  assert "(no control arm)" in h3["statement"] and h3["verdict"] == "supported"


def test_bad_input_names_the_key():
  per_seed, control = _planted(np.ones(NUM_SEEDS))
  del per_seed["l2"]
  with pytest.raises(ValueError, match="l2"):
    hypotheses.test_hypotheses(per_seed)
  per_seed, control = _planted(np.ones(NUM_SEEDS))
  per_seed["mean_angle_phase2_end"] = per_seed["mean_angle_phase2_end"][:3]
  with pytest.raises(ValueError, match="mean_angle_phase2_end"):
    hypotheses.test_hypotheses(per_seed)
  per_seed, control = _planted(np.ones(NUM_SEEDS))
  control["entropy"] = control["entropy"][:, :4]
  with pytest.raises(ValueError, match=r"control\['entropy'\]"):
    hypotheses.test_hypotheses(per_seed, control)


def _table_rows(markdown, heading):
  lines = markdown.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(heading))
  header = next(i for i in range(start, len(lines)) if lines[i].startswith("| per-seed value"))
  return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[header + 2:header + 5]]


def test_report_numbers_equal_computed_ones():
  per_seed, control = _planted(np.full(NUM_SEEDS, 0.7), np.full(NUM_SEEDS, 0.1))
  result = hypotheses.test_hypotheses(per_seed, control)
  summary = {"num_seeds": NUM_SEEDS, "final_test_accuracy": 0.98765,
             "label_counts": {"phase1": mono_poly.label_counts(control["labels"]),
                              "phase2": mono_poly.label_counts(per_seed["labels"])}}
  markdown = mono_poly.render_report_markdown(result, summary)
  for name, h in result["hypotheses"].items():
    xor_row, control_row, tested_row = _table_rows(markdown, f"### {name}:")
    for row, arm in ((xor_row, h["arms"]["xor"]), (control_row, h["arms"]["control"])):
      assert int(row[1]) == arm["n"] and row[2] == mono_poly.format_number(arm["estimate"])
      assert row[3] == f"[{mono_poly.format_number(arm['low'])}, {mono_poly.format_number(arm['high'])}]"
      assert row[4] == f"{arm['k_of_n']} of {arm['n']}" and row[8] == "not tested alone"
    test = h["test"]
    assert tested_row[0] == "**XOR minus control (tested)**" and int(tested_row[1]) == test["n"]
    assert tested_row[2] == mono_poly.format_number(test["estimate"])
    assert tested_row[5] == mono_poly.format_number(test["cohens_dz"])
    assert tested_row[6] == mono_poly.format_number(test["p_value"])
    assert tested_row[7] == mono_poly.format_number(test["p_adjusted"])
    assert tested_row[8] == f"**{h['verdict']}**"
    assert h["statement"] in markdown
  assert "| phase1 | 72 | 0 | 8 | 80 |" in markdown
  assert "| phase2 | 48 | 24 | 8 | 80 |" in markdown
  assert "| final_test_accuracy | 0.9877 |" in markdown
  assert "Holm" in markdown and "No verdicts" not in markdown
  assert f"Tested as XOR minus control: {result['hypotheses']['H3']['tested_claim']}." in markdown


def test_plots_write_non_empty_pngs(tmp_path):
  rng = np.random.default_rng(0)
  mono_poly_plots.plot_samples(rng.uniform(size=(5, 32, 32, 3)), [f"img {i}" for i in range(5)],
                         tmp_path / "samples.png", num_columns=3)
  w_in = rng.normal(size=(3, 32 * 32 * 3, 4))
  w_in[0, :, 1] = 0.0  # a zero neuron must still draw (mid-grey)
  mono_poly_plots.plot_weight_images(w_in, tmp_path / "weights.png", max_seeds=2)
  rows = [{"seed": s, "phase": phase, "step": step, "loss": 1.0 / (1 + step + s), "mean angle": 80.0 - step - phase}
          for s in range(3) for phase in (1, 2) for step in (0, 10, 20)]
  steps, curves = mono_poly_plots.curves_from_history(rows, ["loss", "mean angle"], step_offsets={2: 30})
  np.testing.assert_array_equal(steps, [0, 10, 20, 30, 40, 50])
  assert curves["loss"].shape == (3, 6)
  assert curves["mean angle"][1, 3] == 78.0  # phase 2, step 0 of seed 1
  # Phase 2 starting where phase 1 ends keeps both points at that step, phase 1's first: the switch shows.
  steps, curves = mono_poly_plots.curves_from_history(rows, ["loss", "mean angle"], step_offsets={2: 20})
  np.testing.assert_array_equal(steps, [0, 10, 20, 20, 30, 40])
  np.testing.assert_array_equal(curves["mean angle"][0, 2:4], [59.0, 78.0])
  with pytest.raises(ValueError, match="overlap"):
    mono_poly_plots.curves_from_history(rows, ["loss"], step_offsets={2: 10})
  with pytest.raises(ValueError, match="two rows"):
    mono_poly_plots.curves_from_history(rows + rows[:1], ["loss"], step_offsets={2: 30})
  control = mono_poly_plots.curves_from_history([r for r in rows if r["phase"] == 2], ["loss", "mean angle"], {2: 20})
  paths = mono_poly_plots.plot_metric_curves(steps, curves, phase_boundary_step=20, plot_dir=tmp_path / "plots",
                                       band="minmax", control=control)
  assert sorted(p.split("/")[-1] for p in paths) == ["metrics_loss.png", "metrics_mean_angle.png"]
  for path in [tmp_path / "samples.png", tmp_path / "weights.png", *paths]:
    data = open(path, "rb").read()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)
  with pytest.raises(ValueError, match="titles"):
    mono_poly_plots.plot_samples(rng.uniform(size=(2, 32, 32, 3)), ["one"], tmp_path / "bad.png")


def test_weight_images_mark_each_neurons_label_and_show_the_colour_scale(tmp_path):
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  w_in = rng.normal(size=(3, 32 * 32 * 3, 3))
  labels = np.array([[MONOSEMANTIC, POLYSEMANTIC, DEAD], [POLYSEMANTIC, MONOSEMANTIC, MONOSEMANTIC],
                     [DEAD, DEAD, DEAD]])
  fig = mono_poly_plots.weight_images_figure(w_in, labels, max_seeds=2)
  panels, colourbar_ax = fig.axes[:6], fig.axes[6]
  assert len(fig.axes) == 7   # 2 seeds x 3 neurons, and the colourbar
  short = {MONOSEMANTIC: "mono", POLYSEMANTIC: "poly", DEAD: "dead"}
  for index, ax in enumerate(panels):
    s, h = divmod(index, 3)
    code = labels[s, h]
    scale = np.max(np.abs(w_in[s, :, h]))
    assert ax.get_title() == f"n{h} {short[code]}\nmax|w| {scale:.2g}", (s, h)
    assert colors.same_color(ax.spines["left"].get_edgecolor(), mono_poly_plots.LABEL_COLOURS[code]), (s, h)
    np.testing.assert_allclose(ax.images[0].get_array(),
                               (0.5 + w_in[s, :, h] / (2 * scale)).reshape(32, 32, 3), atol=1e-6)   # float32
  # The three label colours differ, so the frames tell the labels apart.
  assert len({colors.to_hex(c) for c in mono_poly_plots.LABEL_COLOURS.values()}) == 3
  assert colourbar_ax.get_ylabel() == mono_poly_plots.WEIGHT_COLOURBAR_LABEL
  assert "symmetric scale" in colourbar_ax.get_ylabel()
  assert [t.get_text() for t in colourbar_ax.get_yticklabels()] == ["-max", "0", "+max"]
  assert [t.get_text() for t in fig.legends[0].get_texts()] == ["monosemantic", "polysemantic", "dead"]
  # One seed's (H,) labels work too; labels that do not match w_in are refused, naming both shapes.
  single = mono_poly_plots.weight_images_figure(w_in[0], labels[0])
  assert single.axes[2].get_title().startswith("n2 dead")
  with pytest.raises(ValueError, match=r"labels of shape \(3, 2\) do not match .* \(3, 3\)"):
    mono_poly_plots.weight_images_figure(w_in, labels[:, :2])
  with pytest.raises(ValueError, match="unknown label codes \\[7\\]"):
    mono_poly_plots.weight_images_figure(w_in, np.full((3, 3), 7))
  mono_poly_plots.plot_weight_images(w_in, tmp_path / "labelled.png", labels=labels)
  data = (tmp_path / "labelled.png").read_bytes()
  assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def _results_with_final_accuracy(accuracy_by_phase, labels_by_phase, num_test):
  """A planted analysis result: each phase's last checkpoint with these per-seed test accuracies."""
  from configs import mono_poly as mono_poly_config  # pylint: disable=g-import-not-at-top
  from mpcodec.core import configuration  # pylint: disable=g-import-not-at-top
  cfg = mono_poly_config_lib.parse_config(configuration.override(mono_poly_config.get_config(), {
      "data.num_test": num_test}))
  phases = {phase: {"steps": [0, 10], "metrics": {10: {"test_accuracy": np.asarray(accuracy, np.float32)}},
                    "chance_accuracy": mono_poly_analysis.chance_accuracy(labels_by_phase[phase], len(accuracy))}
            for phase, accuracy in accuracy_by_phase.items()}
  return {"config": cfg, "phases": phases}


def test_a_phase_that_ends_at_chance_is_warned_about():
  """Chance: the majority class (0.75 of planted labels, 0.5 of balanced ones); at chance: within 3 binomial
  standard errors above it (0.75 + 3 sqrt(0.75 * 0.25 / 400) = 0.815; 0.5 + 3 * 0.025 = 0.575)."""
  num_test = 400
  balanced = np.tile([0, 1], (4, num_test // 2))
  skewed = np.tile([1, 1, 1, 0], num_test // 4)        # shared by all seeds: (N,)
  np.testing.assert_allclose(mono_poly_analysis.chance_accuracy(skewed, 4), [0.75] * 4)
  results = _results_with_final_accuracy(
      {"phase1": [0.99, 0.98, 0.97, 0.99], "phase2": [0.51, 0.57, 0.58, 0.9], "control": [0.8, 0.81, 0.82, 0.95]},
      {"phase1": balanced, "phase2": balanced, "control": skewed}, num_test)
  warnings = mono_poly_analysis.chance_warnings(results)
  assert len(warnings) == 2
  assert warnings[0].startswith("phase2 (xor) ends at chance on 2 of 4 seeds: final test accuracy 0.640")
  assert "chance 0.500" in warnings[0] and "at most 0.575" in warnings[0]
  assert warnings[1].startswith("control (orientation) ends at chance on 2 of 4 seeds") and "chance 0.750" in warnings[1]
  assert not mono_poly_analysis.chance_warnings(_results_with_final_accuracy(
      {"phase1": [0.9] * 4}, {"phase1": balanced}, num_test))
  # The warning opens report.md, and is in the terminal summary.
  per_seed, control = _planted(np.full(NUM_SEEDS, 1.0))
  result = hypotheses.test_hypotheses(per_seed, control)
  design = {"num_seeds": NUM_SEEDS, "data": "per-seed data", "control": "control arm", "warnings": warnings}
  lines = mono_poly.render_report_markdown(result, {"seeds": NUM_SEEDS}, design).splitlines()
  assert lines[2] == f"> **Warning:** {warnings[0]}." and lines[4] == f"> **Warning:** {warnings[1]}."
  text = mono_poly_analysis.summary_text({"summary": {}, "warnings": warnings, "hypotheses": {}})
  assert text.splitlines() == [f"WARNING: {line}" for line in warnings]
