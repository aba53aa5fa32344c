"""The analysis' dashboard and deep dive on small synthetic findings: every panel labelled and titled, a
finding without data named with its reason instead of an empty panel; and the left-out runs' wording."""

import types

import numpy as np

from mpcodec.core import io
from mpcodec.studies.dynamics.report import analysis as analysis_report
from mpcodec.studies.dynamics.report import dashboard
from tests.studies import figure_checks

MEASURE = "participation_ratio"


def _run(name, family, num_layers=3, num_seeds=3, num_measurements=21):
  rng = np.random.default_rng(len(name))
  steps = np.arange(num_measurements) * 5
  return types.SimpleNamespace(
      run=name, arch=name.split("@")[0], family=family, steps_M=steps, num_steps=int(steps[-1]),
      measures={MEASURE: rng.uniform(2, 10, (num_seeds, num_measurements, num_layers))},
      layer_names=tuple(f"hidden_{l}" for l in range(num_layers)), num_layers=num_layers,
      seeds=np.arange(num_seeds), num_seeds=num_seeds)


def _findings(with_data: bool):
  runs = [_run("mlp_128_64@mnist", "mlp"), _run("cnn_32_64@mnist", "cnn")]
  rng = np.random.default_rng(0)
  count = 40 if with_data else 0
  jumps = {"step": rng.integers(0, 100, count), "family": np.array(["mlp", "cnn"] * (count // 2)),
           "depth_fraction": rng.uniform(0, 1, count), "run": np.array([r.run for r in runs] * (count // 2)),
           "layer": np.array(["hidden_0", "hidden_1"] * (count // 2)), "measure": np.array([MEASURE] * count),
           "fraction": rng.uniform(0, 1, count), "relative_size": rng.uniform(0, 1, count)}
  critical_rows = [dict(measure=MEASURE, family=r.family, coordination=0.6, coordination_null=0.4,
                        loss_falling_fraction=0.8, loss_base_rate=0.6) for r in runs] if with_data else []
  critical = {(r.run, MEASURE): {"critical_SxLxW": np.arange(3 * 3 * 20).reshape(3, 3, 20) % 7 == 0}
              for r in runs} if with_data else {}
  effects = [dict(scope="family", family="mlp", mechanism="attention entropy", effect=0.2, ci_low=0.1,
                  ci_high=0.3)] if with_data else []
  recall = {"white": {"single": {"early": {"0.5": 0.1, "2": 0.6, "8": 1.0}}}}
  return types.SimpleNamespace(
      sweep=types.SimpleNamespace(runs=runs),
      orders=[dict(measure=MEASURE, order="bottom-up", run=r.run) for r in runs],
      convergence_rows=[dict(measure=MEASURE, family=r.family, depth_fraction=l / 2,
                             stabilisation_fraction=None if l == 2 else 0.3 * l) for r in runs for l in range(3)],
      jumps=jumps, detection={"num_series": {(r.run, MEASURE, s): 3 for r in runs for s in range(3)}},
      types=({"reason": None, "labels": np.arange(count) % 2, "num_types": 2,
              "stability": {"adjusted_rand_index": 0.8}} if with_data else
             {"reason": "too few jumps to cluster: 0 (at least 30)", "labels": np.zeros(0, int)}),
      critical_rows=critical_rows, critical_per_run=critical,
      mechanisms={"effects": effects, "reason": None if with_data else "the planned checkpoints are not saved"},
      validity=({"recall": recall, "bars": {"recall_bar": 0.9, "false_positives_per_1000_max_on_nulls": 0.4}}
                if with_data else {}),
      replication=[dict(claim="2,991 jumps", result=40.0, ci_low=30.0, ci_high=50.0, verdict="does not replicate"),
                   dict(claim="MLPs show more jumps than CNNs", result=None, ci_low=None, ci_high=None,
                        verdict="cannot be tested")])


def _save_both(findings, tmp_path):
  io.save_figure(dashboard.dashboard_figure(findings, MEASURE), tmp_path / "dashboard.png")
  io.save_figure(dashboard.deep_dive_figure(findings, MEASURE), tmp_path / "architecture_deep_dive.png")


def test_dashboard_and_deep_dive_are_readable(monkeypatch, tmp_path):
  saved = figure_checks.capture(monkeypatch)
  _save_both(_findings(with_data=True), tmp_path)
  figure_checks.assert_readable(saved)
  board = saved[0][1]
  titles = [ax.get_title() for ax in board.axes]
  assert len(titles) == 12 and titles[-1] == "Replication of the earlier study"   # 11 findings + the strip
  assert "2 jump types (ARI across seed halves 0.80)" in titles
  strip = " ".join(t.get_text() for t in board.axes[-1].texts)
  assert "ours: 40 [30, 50]" in strip and "ours: n/a" in strip
  dive = saved[1][1]
  assert dive.axes[0].get_ylabel() == "participation ratio (dimensions)\n(mean of 3 seeds)"
  assert dive.axes[1].get_legend() is not None   # what black means


def test_findings_without_data_are_named_with_their_reason_not_drawn_empty(monkeypatch, tmp_path):
  saved = figure_checks.capture(monkeypatch)
  _save_both(_findings(with_data=False), tmp_path)
  figure_checks.assert_readable(saved)
  board = saved[0][1]
  titles = [ax.get_title() for ax in board.axes]
  assert titles == ["convergence order", "stabilisation step by depth",
                    "Replication of the earlier study and findings without data"]
  strip = [t.get_text() for t in board.axes[-1].texts]
  for line in ("jump timing: no jump detected in 18 series", "jumps per architecture: no jump detected in 18 series",
               "jump types: too few jumps to cluster: 0 (at least 30)",
               "mechanism effects (95% CI over seeds): the planned checkpoints are not saved",
               "jump detector recall: see detector_validity.json"):
    assert line in strip, strip
  for ax in saved[1][1].axes[1::2]:   # no critical mask: the deep dive's right panels say so
    assert any(t.get_text().startswith("no data: critical periods were not computed") for t in ax.texts)


def test_runs_at_chance_are_not_called_diverged():
  exclusions = {
      "diverged_runs": [{"run": "mlp@mnist", "message": "loss is nan at step 40"},
                        {"run": "cnn@kmnist", "message": "every seed failed or diverged"}],
      "excluded_seeds": [{"run": "cnn@kmnist", "seed": s, "reason": "failed: final held-out accuracy below chance"}
                         for s in range(3)] + [
                        {"run": "mlp@fashion", "seed": 1, "reason": "diverged: NaN/Inf in test_loss"},
                        {"run": "mlp@fashion", "seed": 2, "reason": "failed: final held-out accuracy"}]}
  assert analysis_report.left_out_counts(exclusions) == {"runs": {"at chance": 1, "diverged": 1},
                                                         "seeds": {"at chance": 1, "diverged": 1}}
  assert analysis_report.left_out_text(exclusions) == (
      "1 run at chance and 1 run diverged and 2 seeds of other runs (1 at chance, 1 diverged) left out")
  assert analysis_report.left_out_text({"diverged_runs": [], "excluded_seeds": []}) == "nothing left out"
