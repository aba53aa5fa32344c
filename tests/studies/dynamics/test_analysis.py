"""The analysis of a dynamics sweep: every output on the real smoke grid, the re-run bit for bit, bad input,
and the replication logic and jump types on planted structure."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import dynamics as dynamics_config, dynamics_analysis as analysis_config
from mpcodec.core import configuration
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import DataError, SweepError
from mpcodec.studies.dynamics import analysis, analysis_report, checkpoint_plan, critical_analysis
from mpcodec.studies.dynamics import jump_analysis
from mpcodec.studies.dynamics import jump_types, replication, results, stabilisation_analysis
from mpcodec.studies.dynamics import sweep as dynamics_sweep, sweep_series
from tests import support

MNIST_RUN, TEXT_RUN = "mlp_128_64@mnist", "mlp_128_64@ag_news"


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
  """The smoke grid (MLP on real MNIST and AG News), 3 seeds of 100 steps: 21 measurements per series."""
  data_dir = str(support.require_data("mnist", "ag_news/test.csv"))
  cfg = dynamics_config.get_config("smoke,steps=100,seeds=3")
  cfg.plots = False
  workdir = str(tmp_path_factory.mktemp("dynamics_smoke"))
  dynamics_sweep.run_sweep(configuration.parse(dynamics_sweep.SweepConfig, cfg), workdir, data_dir)
  return workdir, data_dir


def _smoke_config(**overrides) -> analysis.AnalysisConfig:
  cfg = configuration.parse(analysis.AnalysisConfig, analysis_config.get_config("smoke"))
  return dataclasses.replace(cfg, **overrides)


@pytest.fixture(scope="module")
def analysed(smoke_workdir):
  """The whole analysis with the re-run of the MNIST run."""
  workdir, data_dir = smoke_workdir
  report = analysis.analyze(workdir, _smoke_config(rerun_runs=(MNIST_RUN,)), data_dir=data_dir, rerun=True)
  return workdir, report


def _strict_json(path):
  with open(path, encoding="utf-8") as f:
    return json.loads(f.read(), parse_constant=lambda name: pytest.fail(f"{path} holds {name}"))


def test_the_analysis_writes_every_output(analysed):
  workdir, report = analysed
  folder = os.path.join(workdir, "analysis")
  for name in analysis_report.OUTPUT_FILES:
    assert os.path.getsize(os.path.join(folder, name)) > 0, name
  assert _strict_json(os.path.join(folder, "report.json")) == json.loads(json.dumps(report, allow_nan=False))
  rows = report["replication"]
  assert [r["claim"] for r in rows] == [c.quote for c in replication.CLAIMS]
  assert all(r["verdict"] in replication.VERDICTS for r in rows)
  by_key = {r["key"]: r for r in rows}
  # No Transformer or CNN in the smoke grid: those claims say why they cannot be tested.
  assert by_key["transformer_output_projections"]["reason"] == "no transformer run in the sweep"
  assert by_key["mlp_more_than_cnn"]["verdict"] == "cannot be tested"
  assert "| claim (quoted) |" in open(os.path.join(folder, "report.md"), encoding="utf-8").read()


def test_steps_in_the_tables_are_true_training_steps(analysed):
  workdir, _ = analysed
  series, _ = results.load_series(results.result_paths(workdir, MNIST_RUN)[0]), None
  steps = series["steps"]
  assert steps.tolist() == list(range(0, 101, 5))
  jumps = _csv(os.path.join(workdir, "analysis", "jumps.csv"))
  assert jumps, "the smoke series hold jumps"
  for row in jumps:
    assert int(row["step"]) == steps[int(row["index"])]
    assert float(row["fraction"]) == pytest.approx(int(row["step"]) / 100)
  for row in _csv(os.path.join(workdir, "analysis", "convergence.csv")):
    if row["stabilisation_step"]:
      assert int(row["stabilisation_step"]) == steps[int(row["stabilisation_index"])]
    else:
      assert int(row["stabilisation_index"]) == steps.size and row["never_stable"] == "True"


def _csv(path):
  import csv  # pylint: disable=g-import-not-at-top
  with open(path, encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_the_rerun_reproduces_the_saved_series_bit_for_bit(analysed):
  workdir, report = analysed
  plan = _strict_json(os.path.join(workdir, "analysis", "checkpoint_plan.json"))["runs"][MNIST_RUN]
  assert plan["windows"] and plan["extra_checkpoints"]
  assert set(report["rerun"]) == {MNIST_RUN} and report["rerun"][MNIST_RUN]["identical"]
  saved = results.load_series(results.result_paths(workdir, MNIST_RUN)[0])
  again = results.load_series(results.result_paths(checkpoint_plan.rerun_workdir(workdir), MNIST_RUN)[0])
  assert sorted(saved) == sorted(again)
  for name in saved:
    assert saved[name].dtype == again[name].dtype and saved[name].tobytes() == again[name].tobytes(), name
  rerun_dir = checkpoint_plan.rerun_workdir(workdir)
  store = CheckpointStore(os.path.join(results.checkpoint_dir(rerun_dir, MNIST_RUN),
                                       "train"))
  try:
    assert set(plan["checkpoint_steps"]) <= set(store.all_steps())
  finally:
    store.close()
  # The sweep's own results are untouched and the mechanisms were measured at the planned windows.
  assert not os.path.exists(os.path.join(results.checkpoint_dir(workdir, MNIST_RUN), "train",
                                         str(plan["extra_checkpoints"][0])))
  values = _csv(os.path.join(workdir, "analysis", "mechanism_values.csv"))
  assert {r["run"] for r in values} == {MNIST_RUN}
  assert {r["mechanism"] for r in values} == {"activation_sparsity", "class_selectivity"}
  for row in values:
    assert float(row["change"]) == pytest.approx(float(row["after"]) - float(row["before"]))


def test_a_workdir_without_sweep_outputs_stops_with_one_message(tmp_path):
  with pytest.raises(SweepError, match="holds no finished dynamics sweep output"):
    analysis.analyze(str(tmp_path), _smoke_config())
  assert not os.path.exists(tmp_path / "analysis")
  out = subprocess.run([sys.executable, "-m", "launch.dynamics_analysis", f"--workdir={tmp_path}"],
                       cwd=support.REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1 and out.stderr.strip().splitlines()[-1].startswith("error: "), out.stderr[-2000:]
  assert "holds no finished dynamics sweep output" in out.stderr


def _copy_run(source_workdir, target, run=MNIST_RUN):
  """A new workdir holding one run's series and record (returned for editing)."""
  npz, json_path = results.result_paths(str(source_workdir), run)
  new_npz, new_json = results.result_paths(str(target), run)
  os.makedirs(os.path.dirname(new_npz), exist_ok=True)
  shutil.copy(npz, new_npz)
  shutil.copy(json_path, new_json)
  with open(new_json, encoding="utf-8") as f:
    return json.load(f), new_npz, new_json


def test_series_of_another_format_version_are_refused_by_name(smoke_workdir, tmp_path):
  record, _, json_path = _copy_run(smoke_workdir[0], tmp_path)
  record["format_version"] = 2
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(record, f)
  with pytest.raises(DataError, match=rf"{os.path.basename(json_path)}: series format version 2"):
    analysis.analyze(str(tmp_path), _smoke_config())
  assert not os.path.exists(tmp_path / "analysis")


def test_diverged_and_failed_seeds_are_left_out_and_counted(smoke_workdir, tmp_path):
  record, npz_path, json_path = _copy_run(smoke_workdir[0], tmp_path)
  arrays = results.load_series(npz_path)
  arrays["participation_ratio"][1, 7:, 0] = np.nan   # seed 1 diverged
  with open(npz_path, "wb") as f:
    np.savez(f, **arrays)
  record["failed_seeds"] = [2]                        # seed 2 ended at chance
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(record, f)
  diverged = {"status": "diverged", "arch": "mlp_32x4", "dataset": "mnist",
              "message": "loss is nan at step 40"}
  with open(results.result_paths(str(tmp_path), "mlp_32x4@mnist")[1], "w", encoding="utf-8") as f:
    json.dump(diverged, f)
  sweep = sweep_series.load_sweep(str(tmp_path))
  (run,) = sweep.runs
  assert run.seeds.tolist() == [0] and not np.isnan(run.measures["participation_ratio"]).any()
  reasons = [(e["seed"], e["reason"].split(":")[0]) for e in sweep.excluded_seeds]
  assert reasons == [(1, "diverged"), (2, "failed")]
  assert [d["run"] for d in sweep.diverged_runs] == ["mlp_32x4@mnist"]
  # One usable seed: no CI, so every verdict is "cannot be tested", with the reason.
  report = analysis.analyze(str(tmp_path), _smoke_config(plots=False))
  assert report["exclusions"]["num_excluded_seeds"] == 2 and report["exclusions"]["num_diverged_runs"] == 1
  assert report["runs"][0]["ci_unavailable"].startswith("1 usable seed")
  for row in report["replication"]:
    assert row["verdict"] == "cannot be tested" and row["reason"], row
  for order in report["convergence"]["orders"]:
    assert order["order"] == "cannot be tested" and "seed" in order["reason"]
  for effect in report["critical_periods"]["effects"]:
    assert effect["verdict"] == "cannot be tested" and effect["reason"]


# ------------------------------------------------------------------------------------- planted structure


def _write_synthetic_run(workdir, run, series_SxMxL, steps_M, loss_SxM):
  arch, _, dataset = run.partition("@")
  npz_path, json_path = results.result_paths(str(workdir), run)
  os.makedirs(os.path.dirname(npz_path), exist_ok=True)
  layers = [f"hidden_{l}" for l in range(series_SxMxL.shape[2])]
  with open(npz_path, "wb") as f:
    np.savez(f, steps=steps_M.astype(np.int32), seeds=np.arange(series_SxMxL.shape[0], dtype=np.int32),
             layer_names=np.asarray(layers), layer_layouts=np.asarray(["dense"] * len(layers)),
             participation_ratio=series_SxMxL.astype(np.float32), test_loss=loss_SxM.astype(np.float32),
             train_loss=loss_SxM.astype(np.float32))
  record = {"status": "finished", "arch": arch, "dataset": dataset, "family": arch.split("_")[0],
            "config": {"num_steps": int(steps_M[-1])}, "npz": os.path.basename(npz_path),
            "measure_names": ["participation_ratio"], "layer_names": layers, "steps": steps_M.tolist(),
            "failed_seeds": []}
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(record, f)


def _replication_of_planted_steps(workdir, planted, seed=0):
  """Replication rows of one synthetic run: 4 seeds x 3 layers of white noise around 10 over 201
  measurements (1,000 steps), each series stepping by 8 SD (alternating sign) at the planted indices."""
  rng = np.random.default_rng(seed)
  steps_M = np.arange(0, 1001, 5)
  series_SxMxL = 10.0 + rng.normal(size=(4, steps_M.size, 3))
  for number, index in enumerate(planted):
    series_SxMxL[:, index:, :] += 8.0 * (-1) ** number
  loss_SxM = np.exp(-steps_M / 300.0)[None] + 0.01 * rng.normal(size=(4, steps_M.size))
  _write_synthetic_run(workdir, "mlp_32x4@mnist", series_SxMxL, steps_M, loss_SxM)
  sweep = sweep_series.load_sweep(str(workdir))
  cfg = _smoke_config()
  key = jax.random.PRNGKey(0)
  jumps, _ = jump_analysis.detect_jumps(sweep.runs, ("participation_ratio",), cfg.detector, 0, 1.0)
  # Every planted step is found within 2 measurements (the validity harness' tolerance).
  for s in range(4):
    for l in range(3):
      mine = jumps["index"][(jumps["seed"] == s) & (jumps["layer_index"] == l)]
      assert all(np.min(np.abs(mine - i)) <= 2 for i in planted), (s, l, mine, planted)
  measures = ("participation_ratio",)
  _, _, stabilisation = stabilisation_analysis.convergence_rows(sweep.runs, measures, 0.2, 0.05, 1.0, 1000)
  stable_S = stabilisation_analysis.stable_at_start_per_seed(sweep.runs, stabilisation, "participation_ratio",
                                                             [0, 1, 2, 3])
  _, critical = critical_analysis.critical_rows(sweep.runs, measures, key, "train_loss", 99, 0.05, 100)
  rows = replication.replication_table(sweep.runs, jumps, stable_S, critical, "participation_ratio",
                                       0.05, 0.1, 1000, analysis.is_output_projection)
  return {r["key"]: r for r in rows}


@pytest.mark.parametrize("planted,first_tenth,verdict", [
    ((8, 15, 120, 170), 0.5, "does not replicate"),              # steps 40, 75 early; 600, 850 late
    ((5, 9, 12, 15, 18, 190), 5 / 6, "replicates"),              # 83.3% in the first 10%, as claimed
])
def test_planted_early_jumps_give_their_fraction_in_the_first_tenth(tmp_path, planted, first_tenth, verdict):
  rows = _replication_of_planted_steps(tmp_path, planted)
  row = rows["jumps_first_10pct"]
  assert row["result"] == pytest.approx(first_tenth, abs=0.05) and row["verdict"] == verdict
  assert row["ci_low"] <= row["result"] <= row["ci_high"]
  late = sum(1 for i in planted if i * 5 > 500) / len(planted)
  assert rows["jumps_after_50pct"]["result"] == pytest.approx(late, abs=0.05)
  assert rows["transformer_output_projections"]["verdict"] == "cannot be tested"


def test_jump_types_recover_planted_groups_and_are_stable_across_seed_halves():
  """Two planted kinds of jump (early large rises in shallow layers, late small falls in deep ones)."""
  rng = np.random.default_rng(1)
  count = 120
  early = np.arange(count) % 2 == 0
  fraction = np.where(early, rng.uniform(0.0, 0.08, count), rng.uniform(0.7, 0.95, count))
  jumps = {"fraction": fraction, "step": (fraction * 2000).astype(np.int64),
           "size": np.where(early, rng.uniform(3, 5, count), -rng.uniform(0.5, 1.0, count)),
           "duration_steps": np.where(early, 5, 40), "depth_fraction": np.where(early, 0.0, 1.0),
           "family": np.asarray(["mlp"] * count), "seed": np.arange(count) % 4}
  jumps["relative_size"] = jumps["size"] / 10.0
  types = jump_types.fit_types(jumps, max_types=5)
  assert types["num_types"] == 2 and types["reason"] is None
  assert set(types["labels"][early]) == {0} and set(types["labels"][~early]) == {1}   # type 0 is the earlier
  assert types["stability"]["adjusted_rand_index"] == pytest.approx(1.0)
  assert types["types"][0]["fraction_rising"] == 1.0 and types["types"][1]["fraction_rising"] == 0.0
  few = jump_types.fit_types({k: v[:10] for k, v in jumps.items()})
  assert few["reason"].startswith("too few jumps to cluster") and (few["labels"] == -1).all()
