"""Tests of the dynamics report: plots from a run's files and the accuracy table's statuses."""

import csv
import json
import os

import numpy as np

from mpcodec.studies.dynamics.report import training as report_dynamics
from mpcodec.studies.dynamics.config import SweepConfig

MEASURES = ("participation_ratio", "effective_rank", "stable_rank", "num_components_90", "twonn_dimension")


def _write_run(workdir, arch, dataset, accuracy, chance=0.1, vocab_size=None):
  """A finished run's .npz/.json as the sweep writes them, with made-up series."""
  folder = os.path.join(workdir, "dynamics")
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  num_seeds, steps, layers = len(accuracy), np.arange(0, 25, 5), ["hidden_0", "hidden_1"]
  arrays = {"steps": steps, "layer_names": np.asarray(layers), "final_test_accuracy": np.asarray(accuracy)}
  for name in MEASURES:
    arrays[name] = rng.uniform(1, 10, (num_seeds, steps.size, len(layers)))
  for name in ("train_loss", "test_loss"):
    arrays[name] = rng.uniform(0.1, 2.0, (num_seeds, steps.size))
  for name in ("train_accuracy", "test_accuracy"):
    arrays[name] = rng.uniform(0.2, 1.0, (num_seeds, steps.size))
  np.savez(os.path.join(folder, f"{arch}__{dataset}.npz"), **arrays)
  record = {"status": "finished", "arch": arch, "dataset": dataset, "measure_names": list(MEASURES),
            "final_test_accuracy": list(accuracy), "chance_accuracy": chance, "final_eval_size": 100,
            "rank_capped_layers": [], "dataset_metadata": {"vocab_size": vocab_size},
            "compile_seconds": 1.5, "run_seconds": 58.5}
  with open(os.path.join(folder, f"{arch}__{dataset}.json"), "w") as f:
    json.dump(record, f)
  return record


def test_plot_run_writes_heatmaps_and_curves(tmp_path):
  _write_run(str(tmp_path), "mlp_128_64", "mnist", [0.9, 0.92])
  paths = report_dynamics.plot_run(str(tmp_path), "mlp_128_64@mnist")
  assert [os.path.basename(p) for p in paths] == ["mlp_128_64__mnist_dimensionality.png",
                                                  "mlp_128_64__mnist_curves.png"]
  for path in paths:
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_heatmap_cells_hold_the_seed_mean_at_the_true_steps():
  rng = np.random.default_rng(1)
  steps = np.arange(0, 2001, 5)
  series = {"steps": steps, "layer_names": np.asarray(["hidden_0", "hidden_1", "hidden_2"])}
  series["effective_rank"] = rng.uniform(1, 10, (4, steps.size, 3))
  fig = report_dynamics.dimensionality_figure(series, ["effective_rank"], "t")
  ax = fig.axes[0]
  mesh = ax.collections[0]
  # Rows are layers in order, columns measured steps; each cell is the mean over the 4 seeds.
  np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(3, steps.size),
                             series["effective_rank"].mean(axis=0).T)
  edges = report_dynamics.step_cell_edges(steps)
  assert edges[0] == 0 and edges[-1] == 2000 and edges.size == steps.size + 1
  # Every interior cell is centred on its measured step.
  np.testing.assert_allclose((edges[1:-1][:-1] + edges[1:-1][1:]) / 2, steps[1:-1])
  assert ax.get_xscale() == "symlog"
  assert ax.xaxis.get_transform().linthresh == report_dynamics.HEATMAP_LINEAR_MEASUREMENTS * 5
  # The colourbar says what the colour is; the axis says where it turns logarithmic.
  assert mesh.colorbar.ax.get_ylabel() == "effective rank (dimensions)\n(mean of 4 seeds)"
  assert ax.get_xlabel() == "training step (linear to 50, log beyond)"
  # A short run stays on a linear axis.
  series_short = {k: (v[:, :5] if k == "effective_rank" else v) for k, v in series.items()}
  series_short["steps"] = steps[:5]
  ax_short = report_dynamics.dimensionality_figure(series_short, ["effective_rank"], "t").axes[0]
  assert ax_short.get_xscale() == "linear"
  assert ax_short.get_xlabel() == "training step"   # no "log" on a linear axis
  assert ax_short.collections[0].colorbar.ax.get_ylabel() == "effective rank (dimensions)\n(mean of 4 seeds)"


def test_accuracy_row_flags_failed_seeds_and_chance():
  ok = report_dynamics.accuracy_row("a@d", {"status": "finished", "final_test_accuracy": [0.9, 0.8],
                                            "chance_accuracy": 0.1}, "mlp", 0.1, 0.75)
  assert ok["status"] == "ok" and ok["failed_seeds"] == ""
  assert np.isclose(ok["mean_accuracy"], 0.85) and ok["min_accuracy"] == 0.8 and ok["max_accuracy"] == 0.9
  # Seed 1 ends at 0.15 < chance 0.1 + margin 0.1: shown as failed, not averaged away.
  some = report_dynamics.accuracy_row("a@d", {"status": "finished", "final_test_accuracy": [0.9, 0.15, 0.9],
                                              "chance_accuracy": 0.1}, "mlp", 0.1, 0.75)
  assert some["status"] == "some seeds failed" and some["failed_seeds"] == "1"
  at_chance = report_dynamics.accuracy_row("a@d", {"status": "finished", "final_test_accuracy": [0.26, 0.3],
                                                   "chance_accuracy": 0.25}, "mlp", 0.1, 0.75)
  assert at_chance["status"] == "mean at chance"
  text = report_dynamics.accuracy_row(
      "a@ag_news", {"status": "finished", "final_test_accuracy": [0.7, 0.72], "chance_accuracy": 0.25,
                    "dataset_metadata": {"vocab_size": 100}}, "mlp", 0.1, 0.75)
  assert text["status"] == "ok" and "75% text target" in text["note"]
  assert report_dynamics.accuracy_row("a@d", None, "mlp", 0.1, 0.75)["status"] == "not run"


def test_time_summary_adds_the_recorded_minutes():
  rows = [{"mean_accuracy": 0.9, "minutes": 2.25}, {"mean_accuracy": 0.8, "minutes": 0.5},
          {"mean_accuracy": 0.7, "minutes": None}, {"mean_accuracy": None}]
  assert report_dynamics.time_summary(rows) == (
      "3 of 4 runs finished; the wall times of 2 of them (compile + train, all seeds) add up to 2.8 min, "
      "on the machine(s) and under the load they ran with.")
  assert report_dynamics.time_summary([{"mean_accuracy": None}]) == "0 of 1 runs finished."
  assert report_dynamics.run_minutes({"compile_seconds": 30.0, "run_seconds": 90.0}) == 2.0
  assert report_dynamics.run_minutes({"run_seconds": 90.0}) is None


def test_accuracy_table_lists_every_run_including_missing(tmp_path):
  workdir = str(tmp_path)
  records = {"mlp_128_64@mnist": _write_run(workdir, "mlp_128_64", "mnist", [0.95, 0.05], chance=0.11)}
  _write_run(workdir, "cnn_32_64", "kmnist", [0.9, 0.9])   # another sweep's run in the same workdir
  sweep = SweepConfig(runs=("mlp_128_64@mnist", "cnn_32_64@mnist"))
  markdown = report_dynamics.write_accuracy_table(workdir, records, sweep)
  with open(tmp_path / "dynamics" / "accuracy_table.csv") as f:
    ordered = [(r["arch"], r["dataset"]) for r in csv.DictReader(f)]
  with open(tmp_path / "dynamics" / "accuracy_table.csv") as f:
    rows = {(r["arch"], r["dataset"]): r for r in csv.DictReader(f)}
  # The sweep's runs in its order (the missing one included), then the other run found on disk.
  assert ordered == [("mlp_128_64", "mnist"), ("cnn_32_64", "mnist"), ("cnn_32_64", "kmnist")]
  assert rows[("mlp_128_64", "mnist")]["status"] == "some seeds failed"
  assert rows[("mlp_128_64", "mnist")]["failed_seeds"] == "1"
  assert float(rows[("mlp_128_64", "mnist")]["mean_accuracy"]) == 0.5
  assert rows[("cnn_32_64", "mnist")]["status"] == "not run"
  assert "| mlp_128_64 | mnist | some seeds failed | 2 | 50.0 | 5.0..95.0 | 11.0 | 1 | 1.0 |" in markdown
  assert float(rows[("mlp_128_64", "mnist")]["minutes"]) == 1.0   # (1.5 + 58.5) s
  assert "2 of 3 runs finished; the wall times of 2 of them" in markdown and "add up to 2.0 min" in markdown
  assert (tmp_path / "dynamics" / "accuracy_table.md").read_text().endswith(markdown)


def test_a_truncated_record_on_disk_is_named_and_reported_missing(tmp_path, caplog):
  """A shard's run record cut short (a crash mid-write by hand, a full disk) is skipped with one log line
  naming it: the table lists that run as not run, and the other records still count."""
  workdir = str(tmp_path)
  _write_run(workdir, "mlp_128_64", "mnist", [0.9, 0.9])
  _write_run(workdir, "cnn_32_64", "mnist", [0.8, 0.8])
  truncated = tmp_path / "dynamics" / "cnn_32_64__mnist.json"
  truncated.write_text(truncated.read_text()[:40])
  (tmp_path / "dynamics" / "cnn_32_64__kmnist.json").write_text("[1, 2]")   # JSON, not a record
  sweep = SweepConfig(runs=("mlp_128_64@mnist", "cnn_32_64@mnist"))
  with caplog.at_level("WARNING"):
    report_dynamics.write_accuracy_table(workdir, {}, sweep)
  with open(tmp_path / "dynamics" / "accuracy_table.csv") as f:
    rows = {(r["arch"], r["dataset"]): r for r in csv.DictReader(f)}
  assert set(rows) == {("mlp_128_64", "mnist"), ("cnn_32_64", "mnist")}
  assert rows[("mlp_128_64", "mnist")]["status"] == "ok"
  assert rows[("cnn_32_64", "mnist")]["status"] == "not run"
  named = [r.getMessage() for r in caplog.records if "cnn_32_64__mnist.json" in r.getMessage()]
  assert len(named) == 1 and "does not parse" in named[0]
  assert any("cnn_32_64__kmnist.json" in r.getMessage() for r in caplog.records)
