"""Tests of the dynamics runs: in-scan measurement, seeds vmapped, the sweep's files, resume, bad input."""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dynamics as dynamics_config
from mpcodec.core import configuration, loop
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import SweepError
from mpcodec.data.dataset import Dataset
from mpcodec.metrics import dimensionality
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics.train import sweep as dynamics_sweep
from mpcodec.studies.dynamics.train import shards as dynamics_shards
from mpcodec.studies.dynamics import series as dynamics_results
from mpcodec.studies.dynamics.train import flops as dynamics_flops
from tests import support

DATA_DIR = str(support.DATA_DIR)   # also imported by tests/core/test_sharding.py


@pytest.fixture
def smoke_data_dir() -> str:
  """The real-data folder the smoke grid reads (MNIST, AG News); else the test is skipped (or failed)."""
  return str(support.require_data("mnist", "ag_news/test.csv"))


_toy_images = support.toy_images


def _toy_config(**overrides):
  values = dict(arch="mlp_32x4", dataset="mnist", num_seeds=2, num_steps=10, batch_size=8,
                measure_every=5, probe_size=24, train_probe_size=16, twonn_samples=12,
                measurements_per_chunk=1, shared_data_order=False)
  values.update(overrides)
  cfg = dynamics.DynamicsConfig(**values)
  configuration.check_values(cfg)
  return cfg


def _train_one_seed(cfg, program, seed_key, order_key, data):
  """One seed's whole run from the single-seed program: every chunk, then the final measurement."""
  state = program.init(seed_key)
  chunks = []
  for chunk_index in range(cfg.num_steps // cfg.measure_every // program.chunk_blocks):
    state, out = program.run_chunk(state, order_key, data, chunk_index * program.chunk_blocks)
    chunks.append(out)
  series = {k: jnp.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}
  for k, v in program.measure(state["params"], data).items():
    series[k] = jnp.concatenate([series[k], v[None]])
  return state, series


@pytest.fixture(scope="module")
def toy_run():
  """One 2-seed run of the toy set through the seed-axis program, and a single-seed run of seed 1."""
  cfg = _toy_config()
  dataset = _toy_images()
  prepared = dynamics.prepare(cfg, dataset)
  model, program, fns, probe = prepared.model, prepared.program, prepared.fns, prepared.probe
  data = prepared.data
  keys, order = prepared.keys, prepared.order
  state = fns.init(keys)
  chunks = []
  for chunk in range(2):
    state, out = fns.run_chunk(state, order, data, jnp.int32(chunk))
    chunks.append(jax.device_get(out))
  series = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}
  final = jax.device_get(fns.measure(state["params"], data))
  for k, v in final.items():
    series[k] = np.concatenate([series[k], v[:, None]], axis=1)
  single_state, single_series = jax.jit(functools.partial(_train_one_seed, cfg, program))(keys[1], order[1], data)
  return dict(cfg=cfg, dataset=dataset, model=model, probe=probe, data=data, params=state["params"],
              series=series, single_params=single_state["params"], single_series=single_series)


def test_vmapped_seeds_equal_single_runs(toy_run):
  series, single = toy_run["series"], toy_run["single_series"]
  assert set(series) == set(single)
  for name, values in single.items():
    np.testing.assert_allclose(series[name][1], values, rtol=2e-4, atol=2e-5, err_msg=name)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b, rtol=1e-5, atol=1e-6),
               toy_run["params"], toy_run["single_params"])
  # The seeds differ from each other (their own init and data order).
  assert not np.allclose(series["batch_loss"][0], series["batch_loss"][1])


def test_series_shapes_and_training_progress(toy_run):
  series, cfg = toy_run["series"], toy_run["cfg"]
  layers = toy_run["probe"].layer_names
  assert layers == ("hidden_0", "hidden_1", "hidden_2", "hidden_3")
  assert cfg.measured_steps.tolist() == [0, 5, 10]
  for name in dynamics.MEASURE_NAMES:
    assert series[name].shape == (2, 3, 4)
  assert series["test_accuracy"].shape == (2, 3)
  assert series["batch_loss"].shape == (2, 10) and series["grad_norm"].shape == (2, 10)
  assert np.all(series["grad_norm"] > 0)
  # Probe rows (24) < width (32): measured anyway and flagged.
  assert toy_run["probe"].rank_capped_layers == ("hidden_0", "hidden_1", "hidden_2", "hidden_3")


def test_in_scan_measurement_equals_host_recomputation(toy_run):
  """The final in-scan measurement (step 10) equals measures recomputed outside jit from the params."""
  cfg, model, probe, data = toy_run["cfg"], toy_run["model"], toy_run["probe"], toy_run["data"]
  for seed in range(cfg.num_seeds):
    params = jax.tree.map(lambda a, s=seed: a[s], toy_run["params"])
    logits, acts = model.apply(params, np.asarray(data["probe_x"]))
    labels = np.asarray(data["probe_y"])
    accuracy = np.mean(np.argmax(np.asarray(logits), -1) == labels)
    shifted = np.asarray(logits, np.float64) - np.max(np.asarray(logits, np.float64), -1, keepdims=True)
    loss = np.mean(np.log(np.exp(shifted).sum(-1)) - shifted[np.arange(labels.size), labels])
    assert toy_run["series"]["test_accuracy"][seed, -1] == pytest.approx(accuracy, abs=1e-6)
    assert toy_run["series"]["test_loss"][seed, -1] == pytest.approx(loss, rel=1e-4)
    for index, name in enumerate(probe.layer_names):
      matrix, _ = dimensionality.layer_matrix(acts[name], "dense")
      expected = dimensionality.all_measures(matrix, jax.random.fold_in(jax.random.PRNGKey(cfg.data_seed),
                                                                        index), cfg.twonn_samples)
      for measure in dynamics.MEASURE_NAMES:
        np.testing.assert_allclose(toy_run["series"][measure][seed, -1, index], expected[measure],
                                   rtol=1e-3, atol=1e-4, err_msg=f"{name} {measure} seed {seed}")
    # An independent check of one spectral measure: participation ratio from numpy's eigenvalues.
    hidden = np.asarray(acts["hidden_0"], np.float64)
    eigvals = np.linalg.eigvalsh(np.cov(hidden, rowvar=False))
    assert toy_run["series"]["participation_ratio"][seed, -1, 0] == pytest.approx(
        eigvals.sum() ** 2 / np.sum(eigvals ** 2), rel=1e-3)


def test_token_rows_leave_out_padding():
  """A text transformer's token matrices take exactly the probe's non-padding positions."""
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 9, 30)
  tokens = np.zeros((30, 8), np.int32)
  for i, length in enumerate(lengths):
    tokens[i, :length] = rng.integers(2, 50, length)
  labels = rng.integers(0, 2, 30).astype(np.int32)
  dataset = Dataset("text", "text", tokens, labels, tokens, labels, 2, metadata={"vocab_size": 50})
  cfg = _toy_config(arch="transformer_d64_h4_l4", probe_size=30)
  probe = dynamics.make_probe_sets(cfg, dataset, dynamics.build_model(cfg, dataset))
  assert probe.layer_names == ("block_0", "block_1", "block_2", "block_3")
  assert probe.skipped_layers == tuple(f"block_{i}/attention" for i in range(4))
  expected_rows = np.flatnonzero(probe.arrays["probe_x"].reshape(-1) != 0)
  for name in probe.layer_names:
    np.testing.assert_array_equal(probe.arrays["rows"][name], expected_rows)
  assert probe.matrix_shapes[0] == (int(lengths.sum()), 64)


def test_bad_names_are_refused_before_compiling():
  with pytest.raises(configuration.ConfigError, match="valid names are .*mlp_128_64"):
    configuration.check_values(dynamics.DynamicsConfig(arch="mlp_nope"))
  with pytest.raises(configuration.ConfigError, match="unknown dataset 'cifar'.*ag_news"):
    configuration.check_values(dynamics.DynamicsConfig(dataset="cifar"))
  with pytest.raises(configuration.ConfigError, match="measure_every"):
    configuration.check_values(dynamics.DynamicsConfig(num_steps=12, measure_every=5))
  cfg = dynamics_config.get_config("smoke")
  cfg.runs = ["mlp_128_64@mnist", "mlp_nope@mnist"]
  with pytest.raises(configuration.ConfigError, match=r"runs\[1\].*unknown architecture 'mlp_nope'"):
    configuration.parse(dynamics_sweep.SweepConfig, cfg)
  with pytest.raises(ValueError, match="selects no run.*valid arch names"):
    dynamics_config.get_config("arch=mlp_nope")
  with pytest.raises(ValueError, match="expected 'smoke' or key=value"):
    dynamics_config.get_config("archs=mlp_128_64")


def test_chunk_length_does_not_change_results():
  """Runs differing only in measurements per host call give the same series, step for step."""
  dataset = _toy_images()
  results = [dynamics_sweep.run_seeds(_toy_config(measurements_per_chunk=chunk), dataset)
             for chunk in (1, 2)]
  assert set(results[0].series) == set(results[1].series)
  for name, values in results[0].series.items():
    np.testing.assert_allclose(results[1].series[name], values, rtol=1e-6, atol=1e-7, err_msg=name)
  np.testing.assert_array_equal(results[0].final_test_accuracy, results[1].final_test_accuracy)


def test_default_grid_has_the_55_configurations():
  runs = configuration.parse(dynamics_sweep.SweepConfig, dynamics_config.get_config()).runs
  assert len(runs) == 55 and len(set(runs)) == 55
  families = [dynamics.family_of(r.split("@")[0]) for r in runs]
  assert (families.count("mlp"), families.count("cnn"), families.count("transformer")) == (32, 9, 14)
  assert dynamics_config.get_config("arch=mlp_128_64,dataset=mnist").runs == ["mlp_128_64@mnist"]
  sweep = configuration.parse(dynamics_sweep.SweepConfig, dynamics_config.get_config())
  chunks = {f: dynamics_sweep.run_config(sweep, r).chunk_blocks
            for r, f in zip(runs, families)}
  assert chunks == {"mlp": 100, "cnn": 50, "transformer": 20}


def test_shards_split_the_grid_without_overlap():
  runs = configuration.parse(dynamics_sweep.SweepConfig, dynamics_config.get_config()).runs
  assert dynamics_shards.parse_shard("2/3") == (2, 3) and dynamics_shards.parse_shard("1/1") == (1, 1)
  for bad in ("0/2", "3/2", "2", "a/b", "1/0", ""):
    with pytest.raises(ValueError, match="expected I/N"):
      dynamics_shards.parse_shard(bad)
  for count in (1, 2, 3, 7):
    shards = [dynamics_shards.shard_runs(runs, i, count) for i in range(1, count + 1)]
    assert sorted(r for shard in shards for r in shard) == sorted(runs)   # every run, exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1   # equal costs: equal counts
    for shard in shards:
      assert list(shard) == dynamics_sweep.training_order(shard)
  # The split depends on the grid alone, not on the order the runs are listed in.
  assert dynamics_shards.shard_runs(runs[::-1], 2, 3) == dynamics_shards.shard_runs(runs, 2, 3)
  with pytest.raises(ValueError, match="1..2"):
    dynamics_shards.shard_runs(runs, 3, 2)
  # By cost, largest first to the least loaded shard: 5 -> 1, 4 -> 2, 3 -> 2 (7), 3 -> 1 (8), 3 -> 2 (10).
  costs = {"a@x": 3.0, "b@x": 5.0, "c@x": 3.0, "d@x": 4.0, "e@x": 3.0}
  assert dynamics_shards.shard_runs(list(costs), 1, 2, costs.get) == ("b@x", "c@x")
  assert dynamics_shards.shard_runs(list(costs), 2, 2, costs.get) == ("a@x", "d@x", "e@x")


def test_estimated_cost_counts_forward_flops_times_examples():
  cfg = dynamics.DynamicsConfig(arch="mlp_128_64", dataset="mnist", num_seeds=2, num_steps=10,
                                batch_size=8, measure=False)
  per_example = dynamics_flops.estimated_cost(cfg) / (3 * 8 * 10 * 2)
  matmul_flops = 2 * (784 * 128 + 128 * 64 + 64 * 10)
  assert matmul_flops <= per_example <= 1.1 * matmul_flops
  # Both probes pass once per measurement: 6 measurements (steps 0, 2, ..., 10) of 30 + 10 examples.
  measured = dataclasses.replace(cfg, measure=True, measure_every=2, probe_size=30, train_probe_size=10)
  extra = dynamics_flops.estimated_cost(measured) - dynamics_flops.estimated_cost(cfg)
  np.testing.assert_allclose(extra, per_example * 6 * 40 * 2, rtol=1e-6)
  # Text runs cost by their token length: a Transformer on 48 tokens costs more than on 16 patches.
  text = dynamics.DynamicsConfig(arch="transformer_d64_h4_l4", dataset="ag_news", max_length=48)
  image = dataclasses.replace(text, dataset="mnist")
  assert dynamics_flops.estimated_cost(text) > 2 * dynamics_flops.estimated_cost(image)


def test_launch_shards_share_a_workdir_and_table(tmp_path, smoke_data_dir):
  """Two shards of the smoke grid, one after the other in one workdir: each trains only its own run, and
  the table shows the other shard's run as not run until it has finished."""
  import csv  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = support.REPO_ROOT
  workdir = tmp_path / "grid"

  def launch(shard):
    return subprocess.run(
        [sys.executable, "-m", "launch.dynamics", "--config=configs/dynamics.py:smoke,arch=mlp_128_64",
         "--config.plots=False", f"--workdir={workdir}", f"--data_dir={smoke_data_dir}", f"--shard={shard}"],
        cwd=root, capture_output=True, text=True, timeout=600, check=False)

  def table():
    with open(workdir / "dynamics" / "accuracy_table.csv") as f:
      return {f"{r['arch']}@{r['dataset']}": r for r in csv.DictReader(f)}

  bad = launch("3/2")
  assert bad.returncode != 0 and "expected I/N with 1 <= I <= N" in bad.stderr
  assert not workdir.exists()
  # The MNIST run is the costlier (784 inputs against a 64-wide mean embedding): shard 1 gets it.
  sweep = configuration.parse(dynamics_sweep.SweepConfig, dynamics_config.get_config("smoke,arch=mlp_128_64"))
  assert dynamics_shards.sweep_shard(sweep, 1, 2) == ("mlp_128_64@mnist",)
  assert dynamics_shards.sweep_shard(sweep, 2, 2) == ("mlp_128_64@ag_news",)
  second = launch("2/2")
  assert second.returncode == 0, second.stderr[-2000:]
  assert (workdir / "dynamics" / "mlp_128_64__ag_news.json").exists()
  assert not (workdir / "dynamics" / "mlp_128_64__mnist.json").exists()
  rows = table()
  assert rows["mlp_128_64@mnist"]["status"] == "not run"
  assert rows["mlp_128_64@ag_news"]["status"] != "not run"
  assert float(rows["mlp_128_64@ag_news"]["minutes"]) > 0
  first = launch("1/2")
  assert first.returncode == 0, first.stderr[-2000:]
  rows = table()
  assert all(rows[r]["status"] != "not run" for r in ("mlp_128_64@ag_news", "mlp_128_64@mnist"))
  assert "2 of 2 runs finished" in (workdir / "dynamics" / "accuracy_table.md").read_text()


def test_smoke_sweep_writes_true_steps_and_resumes(tmp_path, smoke_data_dir):
  cfg = dynamics_config.get_config("smoke,arch=mlp_128_64")
  cfg.plots = False
  sweep = configuration.parse(dynamics_sweep.SweepConfig, cfg)
  assert sweep.runs == ("mlp_128_64@mnist", "mlp_128_64@ag_news")
  workdir = str(tmp_path)
  records = dynamics_sweep.run_sweep(sweep, workdir, smoke_data_dir)
  for run in sweep.runs:
    npz_path, json_path = dynamics_results.result_paths(workdir, run)
    with np.load(npz_path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
    assert arrays["steps"].tolist() == [0, 5, 10, 15, 20]
    assert arrays["update_steps"].tolist() == list(range(20))
    assert arrays["layer_names"].tolist() == ["hidden_0", "hidden_1"]
    assert arrays["effective_rank"].shape == (2, 5, 2)
    assert arrays["batch_loss"].shape == (2, 20)
    assert np.all(np.isfinite(arrays["effective_rank"]))
    with open(json_path) as f:
      record = json.load(f)
    assert record == json.loads(json.dumps(records[run]))
    assert record["steps"] == [0, 5, 10, 15, 20] and record["status"] == "finished"
    assert len(record["final_test_accuracy"]) == 2
    assert record["rank_capped_layers"] == ["hidden_0", "hidden_1"]   # 48 probe rows < 128, 64 units
  # MNIST learns something in 20 steps; AG News uses the made-up split of its test file.
  assert np.mean(records["mlp_128_64@mnist"]["final_test_accuracy"]) > 0.3
  assert records["mlp_128_64@ag_news"]["dataset_metadata"]["split"]["kind"] == "stratified"

  mtimes = {p: os.path.getmtime(p) for run in sweep.runs for p in dynamics_results.result_paths(workdir, run)}
  skipped = []
  hooks = dynamics_sweep.SweepHooks(on_run_end=lambda run, record, was_skipped: skipped.append(was_skipped))
  dynamics_sweep.run_sweep(sweep, workdir, smoke_data_dir, hooks=hooks)
  assert skipped == [True, True]
  assert mtimes == {p: os.path.getmtime(p) for p in mtimes}

  # The chunk length changes only how often progress is reported: finished runs still count.
  rechunked = dataclasses.replace(sweep, base=dataclasses.replace(sweep.base, measurements_per_chunk=4))
  skipped.clear()
  dynamics_sweep.run_sweep(rechunked, workdir, smoke_data_dir, hooks=hooks)
  assert skipped == [True, True]

  changed = dataclasses.replace(sweep, base=dataclasses.replace(sweep.base, num_steps=10))
  with pytest.raises(SweepError, match="different config"):
    dynamics_sweep.run_sweep(changed, workdir, smoke_data_dir)


def test_flop_budget_matches_the_closed_form():
  """Smoke grid: 5 measurements of 48 + 32 probe examples against 3 x 16 x 20 training examples."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  sweep = configuration.parse(dynamics_sweep.SweepConfig, dynamics_config.get_config("smoke"))
  cfg = dynamics_sweep.run_config(sweep, sweep.runs[0])
  expected = 5 * (48 + 32) / (3 * 16 * 20)
  assert dynamics_flops.forward_overhead(cfg) == pytest.approx(expected)
  assert dynamics_flops.batch_for_overhead(cfg, 0.25) == pytest.approx(expected * 16 / 0.25)
  budget = dynamics_flops.flop_budget(sweep)
  assert set(budget) == {"mlp"} and budget["mlp"]["runs"] == 2
  assert budget["mlp"]["measure"] / budget["mlp"]["train"] == pytest.approx(expected, rel=1e-6)
  costs = [dynamics_flops.estimated_cost(dynamics_sweep.run_config(sweep, r)) for r in sweep.runs]
  assert budget["mlp"]["train"] + budget["mlp"]["measure"] == pytest.approx(sum(costs), rel=1e-6)
  # Within +25%: the batch goes from 16 to 16 x expected / 0.25 = 26.7, training FLOPs with it.
  train, measure = budget["mlp"]["train"], budget["mlp"]["measure"]
  assert dynamics_flops.flops_within_overhead(sweep, 0.25) == pytest.approx(
      train * expected / 0.25 + measure, rel=1e-6)
  # A 512-example probe: 512 + 32 examples per measurement instead of 48 + 32.
  with_512 = 5 * (512 + 32) / (3 * 16 * 20)
  assert dynamics_flops.flops_within_overhead(sweep, 0.25, probe_size=512) == pytest.approx(
      train * with_512 / 0.25 + measure * (512 + 32) / (48 + 32), rel=1e-6)
  # Already within the limit: nothing changes.
  assert dynamics_flops.flops_within_overhead(sweep, 0.5) == pytest.approx(train + measure, rel=1e-6)
  # The benchmark prints the same figures; it needs no data for --flops alone.
  out = subprocess.run([sys.executable, "-m", "benchmarks.dynamics", "--archs=", "--flops",
                        "--config_arg=smoke"], cwd=support.REPO_ROOT, capture_output=True,
                       text=True, timeout=600, check=False, env={**os.environ, "MPCODEC_DATA_DIR": ""})
  assert out.returncode == 0, out.stderr[-2000:]
  assert "forward overhead +42%; +25% needs a batch of >= 27 (the configured probe)" in out.stdout
  # 5 x (512 + 32) / 960 = 2.83; 2.83 x 16 / 0.25 = 181.
  assert ("probe 512 + train probe 32, every 5 steps: forward overhead +283%; +25% needs a batch of >= 181"
          in out.stdout)
  assert "with the configured probes and each family's batch raised" in out.stdout
  assert "with a 512-example probe and each family's batch raised" in out.stdout


def test_shard_plan_is_written_once_and_read_by_every_shard(tmp_path, monkeypatch):
  sweep = configuration.parse(dynamics_sweep.SweepConfig, dynamics_config.get_config("smoke"))
  workdir = str(tmp_path)
  first = [dynamics_shards.sweep_shard(sweep, i, 2, workdir) for i in (1, 2)]
  assert first == [("mlp_128_64@mnist",), ("mlp_128_64@ag_news",)]   # MNIST has 784 inputs: costlier
  path = dynamics_shards.shard_plan_path(workdir, sweep.runs, 2)
  with open(path) as f:
    assert json.load(f)["shards"] == [list(s) for s in first]
  # A machine whose cost estimates come out the other way round still follows the plan on disk.
  monkeypatch.setattr(dynamics_flops, "estimated_cost",
                      lambda cfg: 1.0 if cfg.dataset == "mnist" else 2.0)
  assert dynamics_shards.sweep_shard(sweep, 1, 2) == ("mlp_128_64@ag_news",)   # no workdir: its own
  assert [dynamics_shards.sweep_shard(sweep, i, 2, workdir) for i in (1, 2)] == first
  # More shards than runs: the extra shards get none.
  assert dynamics_shards.shard_plan(sweep.runs, 3)[2] == ()
  with open(path, "w") as f:
    json.dump({"runs": ["other@mnist"], "count": 2, "shards": [[], []]}, f)
  with pytest.raises(SweepError, match="another selection"):
    dynamics_shards.sweep_shard(sweep, 1, 2, workdir)


def test_diverged_run_is_recorded_for_the_table_and_tried_again(tmp_path):
  data_dir = str(support.require_data("mnist"))
  cfg = dynamics_config.get_config("smoke,arch=mlp_128_64,dataset=mnist")
  cfg.plots = False
  cfg.mlp.learning_rate = 1e30   # Adam moves every weight by ~1e30 at once: logits overflow to inf.
  sweep = configuration.parse(dynamics_sweep.SweepConfig, cfg)
  workdir = str(tmp_path)
  records = dynamics_sweep.run_sweep(sweep, workdir, data_dir)
  assert records["mlp_128_64@mnist"]["status"] == "diverged"
  with open(dynamics_results.result_paths(workdir, "mlp_128_64@mnist")[1]) as f:
    on_disk = json.load(f)
  assert on_disk["status"] == "diverged" and "loss is" in on_disk["message"]
  from mpcodec.studies.dynamics.report import training as report_dynamics  # pylint: disable=g-import-not-at-top
  markdown = report_dynamics.write_accuracy_table(workdir, {}, sweep)   # as another shard sees it
  assert "| mlp_128_64 | mnist | diverged |" in markdown
  started = []
  hooks = dynamics_sweep.SweepHooks(on_run_start=lambda index, total, run: started.append(run))
  dynamics_sweep.run_sweep(sweep, workdir, data_dir, hooks=hooks)
  assert started == ["mlp_128_64@mnist"]   # not a finished run: tried again


def test_benchmark_estimates_the_grid_from_short_runs(smoke_data_dir):
  """The benchmark's grid estimate runs end to end and adds up its per-configuration figures."""
  import re  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = support.REPO_ROOT
  out = subprocess.run(
      [sys.executable, "-m", "benchmarks.dynamics", "--archs=", "--estimate_grid", "--steps=10",
       "--repeats=1", "--config_arg=smoke,arch=mlp_128_64", f"--data_dir={smoke_data_dir}", "--shards=2"],
      cwd=root, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "[1/2] mlp_128_64@mnist" in out.stdout and "[2/2] mlp_128_64@ag_news" in out.stdout
  minutes = {m.group(1): float(m.group(2)) for m in re.finditer(
      r"^\s+(mlp_128_64@\w+)\s+([\d.]+) min \(train", out.stdout, re.MULTILINE)}
  assert set(minutes) == {"mlp_128_64@mnist", "mlp_128_64@ag_news"} and min(minutes.values()) > 0
  total = float(re.search(r"estimated grid wall time: ([\d.]+) min", out.stdout).group(1))
  assert abs(total - sum(minutes.values())) <= 0.02
  # Each of the two shards gets one run (the costlier MNIST one goes to shard 1).
  shard_minutes = [float(m) for m in re.findall(r"shard \d/2: 1 run\(s\), ([\d.]+) min", out.stdout)]
  expected_minutes = [minutes["mlp_128_64@mnist"], minutes["mlp_128_64@ag_news"]]
  assert shard_minutes == pytest.approx(expected_minutes, abs=0.011)
  slowest = float(re.search(r"with 2 shards on 2 machines like this one the grid takes ([\d.]+) min",
                            out.stdout).group(1))
  assert slowest == pytest.approx(max(shard_minutes), abs=0.011)


def test_chunked_checkpointed_resumed_run_equals_one_pure_call_bit_for_bit(tmp_path):
  """The production chunks (measurements seed by seed, steps vmapped), cut at every 2 measurements,
  checkpointed every 10 steps and resumed mid-run, equal the same program as one pure call."""
  cfg = _toy_config(num_steps=20, measurements_per_chunk=2, checkpoint_every=10, shared_data_order=True)
  prepared = dynamics.prepare(cfg, _toy_images())
  program = dynamics.make_program(cfg, prepared)
  keys = dynamics.loop_keys(cfg)
  pure_state, pure_history = jax.jit(loop.pure_sweep(program))(keys)

  def run(workdir):
    return loop.run(program, keys, str(workdir), seed_labels=[0, 1], config={"toy": True})

  full = run(tmp_path)
  store = CheckpointStore(tmp_path / "train")
  assert store.all_steps() == [0, 10, 20]
  store.delete_after(10)
  resumed = run(tmp_path)
  assert resumed.resumed_from == ("train", 10) and resumed.steps_trained == 10
  for outcome in (full, resumed):
    for got, want in ((outcome.state, pure_state), (outcome.history, pure_history)):
      assert jax.tree.structure(got) == jax.tree.structure(want)
      for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_make_train_is_the_pure_train_of_make_program():
  """make_train has one meaning in every study: loop.pure_train of make_program; vmapped over the seeds it
  equals the sweep the run loop cuts into chunks."""
  cfg = _toy_config(num_steps=10)
  prepared = dynamics.prepare(cfg, _toy_images())
  keys = dynamics.loop_keys(cfg)
  state, history = jax.jit(jax.vmap(dynamics.make_train(cfg, prepared)))(keys)
  sweep_state, sweep_history = jax.jit(loop.pure_sweep(dynamics.make_program(cfg, prepared)))(keys)
  support.assert_trees_equal(state, sweep_state)
  # The measurements are reductions that XLA may order differently under the extra vmap: float rounding.
  for got, want in zip(jax.tree.leaves(history), jax.tree.leaves(sweep_history)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
