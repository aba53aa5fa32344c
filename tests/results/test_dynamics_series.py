"""The dynamics grid's committed series (results/dynamics/dynamics/, added shard by shard): every run there
reads back as launch.dynamics wrote it, was trained with the default grid's config for that run, and lies
in the committed shard plan; its measures agree with its record."""

import dataclasses
import json
import os
import shutil

import numpy as np

from configs import dynamics as dynamics_config
from mpcodec.core import configuration
from mpcodec.studies.dynamics import series
from mpcodec.studies.dynamics.config import SweepConfig, run_config
from mpcodec.studies.dynamics.train import shards
from results import findings

PUBLISHED = os.path.join(findings.RESULTS_DIR, "dynamics")
FOLDER = os.path.join(PUBLISHED, "dynamics")


def _records():
  names = sorted(n for n in os.listdir(FOLDER) if n.endswith(".json") and "__" in n)
  return {n: series.read_record(os.path.join(FOLDER, n)) for n in names}


def test_committed_series_are_finished_runs_of_the_default_grid_in_its_shard_plan():
  grid = configuration.parse(SweepConfig, dynamics_config.get_config())
  records = _records()
  assert records, "results/dynamics/dynamics/ holds no run"
  with open(os.path.join(FOLDER, series.GRID_CONFIG_NAME)) as f:
    assert json.load(f) == json.loads(json.dumps(series.grid_defining(configuration.to_dict(grid))))
  plans = [os.path.join(FOLDER, "shard_plans", n) for n in os.listdir(os.path.join(FOLDER, "shard_plans"))]
  assert len(plans) == 1, plans
  with open(plans[0]) as f:
    plan = json.load(f)
  assert plans[0] == shards.shard_plan_path(PUBLISHED, grid.runs, plan["count"])
  planned = {run for shard in plan["shards"] for run in shard}
  assert planned == set(grid.runs)
  for name, record in records.items():
    run = f"{record['arch']}@{record['dataset']}"
    assert record["status"] == "finished" and run in planned, name
    assert series.finished_record(PUBLISHED, run, run_config(grid, run)) == record, name


def test_committed_series_read_back_with_their_records():
  sweep = series.load_sweep(PUBLISHED)
  records = _records()
  assert {r.run for r in sweep.runs} | {d["run"] for d in sweep.diverged_runs} == {
      f"{r['arch']}@{r['dataset']}" for r in records.values()}
  for run in sweep.runs:
    cfg = run.record["config"]
    assert run.num_measurements == cfg["num_steps"] // cfg["measure_every"] + 1, run.run
    assert run.steps_M[-1] == cfg["num_steps"] and run.num_seeds + len(run.record["failed_seeds"]) <= cfg["num_seeds"]
    for name, values in run.measures.items():
      assert values.shape == (run.num_seeds, run.num_measurements, run.num_layers) and np.isfinite(values).all()
    stored = series.load_series(run.npz_path)
    # The committed file holds the run's final accuracies exactly as its record does.
    assert stored["final_test_accuracy"].tolist() == run.record["final_test_accuracy"], run.run


def test_the_published_analysis_reproduces_from_the_committed_series(tmp_path):
  """launch.dynamics_analysis on a copy of the committed series (as `--workdir=results/dynamics` would, without
  writing into the repository) gives the published hypotheses and replication table: the same verdicts, and
  every number within 1% (the committed series are float16, and CPUs of another kind round float32 work
  differently)."""
  from configs import dynamics_analysis as analysis_config   # pylint: disable=g-import-not-at-top
  from mpcodec.studies.dynamics import analysis   # pylint: disable=g-import-not-at-top
  with open(os.path.join(PUBLISHED, "report.json")) as f:
    published = json.load(f)
  shutil.copytree(FOLDER, tmp_path / "dynamics")
  cfg = configuration.parse(analysis.AnalysisConfig, analysis_config.get_config())
  again = analysis.analyze(str(tmp_path), dataclasses.replace(cfg, plots=False))

  def close(a, b):
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 0.01 * max(abs(b), 1e-2))
  assert [h["verdict"] for h in again["hypotheses"]] == [h["verdict"] for h in published["hypotheses"]]
  for mine, theirs in zip(again["hypotheses"], published["hypotheses"]):
    assert close(mine["estimate"], theirs["estimate"]), (mine["name"], mine["estimate"], theirs["estimate"])
  assert [r["key"] for r in again["replication"]] == [r["key"] for r in published["replication"]]
  for mine, theirs in zip(again["replication"], published["replication"]):
    assert mine["verdict"] == theirs["verdict"], (mine["key"], mine["verdict"], theirs["verdict"])
    for key in ("result", "ci_low", "ci_high"):
      assert close(mine.get(key), theirs.get(key)), (mine["key"], key, mine.get(key), theirs.get(key))
