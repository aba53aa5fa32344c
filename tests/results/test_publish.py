"""results.publish: GNU time's log read, the command's workdir hidden, the config resolved as the launch
resolves it, bulky files refused, and the published folder's run.json."""

import json
import os

import numpy as np
import pytest

from configs import mono_poly as mono_poly_config
from results import publish

TIME_LOG = """\tCommand being timed: "python -m launch.mono_poly"
\tUser time (seconds): 116.96
\tSystem time (seconds): 6.36
\tPercent of CPU this job got: 64%
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:03:11.84
\tMaximum resident set size (kbytes): 2599252
\tExit status: 0
"""
COMMAND = ["python", "-m", "launch.mono_poly", "--config=configs/mono_poly.py:smoke", "--workdir=/somewhere/run",
           "--config.num_seeds=6"]


def test_time_log_is_read():
  timing = publish.parse_time_log(TIME_LOG)
  assert timing == {"user_cpu_s": 116.96, "system_cpu_s": 6.36, "cpu_percent": 64,
                    "wall_time_s": 3600 + 3 * 60 + 11.84, "peak_rss_mb": round(2599252 / 1024, 1), "exit_status": 0}


def test_a_failed_or_unreadable_run_is_refused(capsys):
  with pytest.raises(SystemExit):
    publish.parse_time_log(TIME_LOG.replace("Exit status: 0", "Exit status: 1"), "mono.time")
  assert "error: mono.time: the run exited with status 1" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    publish.parse_time_log("nothing here", "mono.time")
  assert "no 'Elapsed (wall clock) time' line" in capsys.readouterr().err


def test_public_command_names_no_machine_path():
  text = publish.public_command(["/opt/env/bin/python3.11"] + COMMAND[1:], "mono_poly")
  assert text == ("python -m launch.mono_poly --config=configs/mono_poly.py:smoke --workdir=runs/mono_poly "
                  "--config.num_seeds=6")
  quoted = publish.public_command(["python", "-m", "launch.codec", "--config.squeezer_k_grid=(128,)"], "codec")
  assert quoted == "python -m launch.codec '--config.squeezer_k_grid=(128,)'"


def test_config_is_resolved_as_the_launch_resolves_it(monkeypatch):
  monkeypatch.chdir(os.path.dirname(publish.RESULTS_DIR))
  expected = mono_poly_config.get_config("smoke")
  expected.num_seeds = 6
  assert publish.resolve_config(COMMAND, "launch.mono_poly") == json.loads(expected.to_json_best_effort())


def _workdir(tmp_path):
  workdir = tmp_path / "run"
  (workdir / "plots").mkdir(parents=True)
  (workdir / "metrics").mkdir()
  (workdir / "checkpoints").mkdir()
  (workdir / "report.json").write_text(json.dumps({"smoke": True}))
  (workdir / "report.md").write_text("# report\n")
  (workdir / "plots" / "metrics_mean_angle.png").write_bytes(b"png")
  (workdir / "plots" / "phase1_samples.png").write_bytes(b"not a key plot")
  (workdir / "metrics" / "crs_phase2.csv").write_text("seed\n0\n")
  (workdir / "checkpoints" / "state").write_bytes(b"x")
  return workdir


def test_publish_copies_the_selected_files_and_writes_run_json(tmp_path, monkeypatch):
  monkeypatch.chdir(os.path.dirname(publish.RESULTS_DIR))
  workdir, out = _workdir(tmp_path), tmp_path / "results"
  out.mkdir()
  folder = publish.publish("mono_poly", str(workdir), COMMAND, {"wall_time_s": 12.5},
                           repo=os.path.dirname(publish.RESULTS_DIR), results_dir=str(out))
  names = sorted(os.path.relpath(os.path.join(root, n), folder) for root, _, ns in os.walk(folder) for n in ns)
  assert names == ["config.json", "metrics/crs_phase2.csv", "plots/metrics_mean_angle.png", "report.json",
                   "report.md", "run.json"]
  run = json.loads((out / "mono_poly" / "run.json").read_text())
  assert run["wall_time_s"] == 12.5 and len(run["commit"]) == 40 and run["machine"]["logical_cores"] >= 1
  assert run["command"].endswith("--workdir=runs/mono_poly --config.num_seeds=6")
  assert json.loads((out / "mono_poly" / "config.json").read_text())["num_seeds"] == 6


def test_bulky_files_and_unfinished_runs_are_refused(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(os.path.dirname(publish.RESULTS_DIR))
  workdir = _workdir(tmp_path)
  (workdir / "metrics" / "crs_phase1.csv").write_bytes(b"0" * (publish.MAX_FILE_BYTES + 1))
  repo = os.path.dirname(publish.RESULTS_DIR)
  with pytest.raises(SystemExit):
    publish.publish("mono_poly", str(workdir), COMMAND, {"wall_time_s": 1.0}, repo, str(tmp_path / "out"))
  assert "error: metrics/crs_phase1.csv" in capsys.readouterr().err
  os.remove(workdir / "report.json")
  with pytest.raises(SystemExit):
    publish.publish("mono_poly", str(workdir), COMMAND, {"wall_time_s": 1.0}, repo, str(tmp_path / "out"))
  assert "no report.json (has the run finished its analysis?)" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_cost_only_writes_cost_json_and_nothing_else(tmp_path, monkeypatch):
  monkeypatch.chdir(os.path.dirname(publish.RESULTS_DIR))
  command = ["python", "-m", "launch.dynamics", "--config=configs/dynamics.py:smoke,dataset=mnist",
             "--workdir=/elsewhere/dyn", "--config.base.num_seeds=3"]
  path = publish.publish_cost("dynamics", command, {"wall_time_s": 3.0}, os.path.dirname(publish.RESULTS_DIR),
                              str(tmp_path))
  assert os.listdir(tmp_path / "dynamics") == ["cost.json"]
  part, = json.loads(open(path).read())["parts"]
  assert part["config"]["runs"] == ["mlp_128_64@mnist"] and part["config"]["base"]["num_seeds"] == 3
  assert part["command"].endswith("--workdir=runs/dynamics --config.base.num_seeds=3")
  other = command[:3] + ["--config=configs/dynamics.py:smoke,dataset=ag_news"]
  publish.publish_cost("dynamics", other, {"wall_time_s": 5.0}, os.path.dirname(publish.RESULTS_DIR), str(tmp_path))
  publish.publish_cost("dynamics", command, {"wall_time_s": 4.0}, os.path.dirname(publish.RESULTS_DIR), str(tmp_path))
  parts = json.loads(open(path).read())["parts"]
  assert [p["wall_time_s"] for p in parts] == [5.0, 4.0]   # the same command timed again replaces its entry


def test_cost_of_a_dynamics_shard_names_its_runs_and_publishes_the_finished_series(tmp_path, monkeypatch):
  from mpcodec.studies.dynamics.train import shards   # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(os.path.dirname(publish.RESULTS_DIR))
  command = ["python", "-m", "launch.dynamics", "--config=configs/dynamics.py:smoke", "--workdir=/w/dyn",
             "--shard=2/2"]
  runs = publish.resolve_config(command, "launch.dynamics")["runs"]
  workdir = tmp_path / "dyn"
  plan_path = shards.shard_plan_path(str(workdir), runs, 2)
  os.makedirs(os.path.dirname(plan_path))
  with open(plan_path, "w") as f:
    json.dump({"runs": sorted(runs), "count": 2, "shards": [[runs[0]], [runs[1]]]}, f)
  values = np.linspace(0.1, 9.0, 12, dtype=np.float32).reshape(2, 3, 2)
  np.savez(workdir / "dynamics" / "a__mnist.npz", steps=np.arange(3), participation_ratio=values,
           final_test_accuracy=np.array([0.91234567, 0.8]))
  (workdir / "dynamics" / "a__mnist.json").write_text(json.dumps({"status": "finished", "npz": "a__mnist.npz"}))
  (workdir / "dynamics" / "b__mnist.json").write_text(json.dumps({"status": "running", "npz": "b__mnist.npz"}))
  path = publish.publish_cost("dynamics", command, {"wall_time_s": 3.0}, os.path.dirname(publish.RESULTS_DIR),
                              str(tmp_path / "results"), workdir=str(workdir))
  part, = json.loads(open(path).read())["parts"]
  assert part["shard"] == {"index": 2, "count": 2, "runs": [runs[1]]}
  assert sorted(part["series"]) == sorted(["dynamics/a__mnist.npz", "dynamics/a__mnist.json",
                                           os.path.join("dynamics", os.path.relpath(plan_path, workdir / "dynamics"))])
  stored = np.load(tmp_path / "results" / "dynamics" / "dynamics" / "a__mnist.npz")
  assert stored["participation_ratio"].dtype == np.float16 and stored["final_test_accuracy"][0] == 0.91234567
  assert np.allclose(stored["participation_ratio"], values, rtol=1e-3, atol=0)


def test_compact_array_keeps_float16_only_where_every_value_stays_within_the_tolerance():
  rng = np.random.default_rng(0)
  normal = rng.uniform(0.5, 400.0, size=(3, 50)).astype(np.float32)
  normal[0, 0], normal[1, 1] = 0.0, np.nan
  compact = publish.compact_array(normal)
  assert compact.dtype == np.float16 and compact[0, 0] == 0 and np.isnan(compact[1, 1])
  finite = np.isfinite(normal)
  relative = np.abs(compact[finite].astype(np.float64) - normal[finite]) / np.maximum(np.abs(normal[finite]), 1e-30)
  assert relative.max() <= publish.COMPACT_RELATIVE_ERROR
  tiny = normal.copy()
  tiny[2, 3] = 3e-7               # below float16's normal range: its relative error would be large
  assert publish.compact_array(tiny).dtype == np.float32
  huge = normal.copy()
  huge[2, 3] = 1e5                # overflows float16
  assert publish.compact_array(huge).dtype == np.float32
  assert publish.compact_array(np.arange(5, dtype=np.int32)).dtype == np.int32


def test_dirty_means_code_differs_not_what_earlier_parts_published(tmp_path):
  import subprocess   # pylint: disable=g-import-not-at-top
  def git(*args):
    subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
  (tmp_path / "results" / "dynamics").mkdir(parents=True)
  (tmp_path / "results" / "dynamics" / "cost.json").write_text("{}")
  (tmp_path / "results" / "publish.py").write_text("code\n")
  git("init", "-q")
  git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
  assert publish.git_commit(str(tmp_path))["dirty"] is False
  (tmp_path / "results" / "dynamics" / "cost.json").write_text('{"parts": []}')
  assert publish.git_commit(str(tmp_path))["dirty"] is False
  (tmp_path / "results" / "publish.py").write_text("changed code\n")
  assert publish.git_commit(str(tmp_path))["dirty"] is True


def test_publishing_the_whole_study_keeps_what_its_parts_cost(tmp_path, monkeypatch):
  monkeypatch.chdir(os.path.dirname(publish.RESULTS_DIR))
  workdir, out = _workdir(tmp_path), tmp_path / "results"
  (out / "mono_poly").mkdir(parents=True)
  (out / "mono_poly" / "cost.json").write_text('{"parts": [1]}')
  (out / "mono_poly" / "stale.md").write_text("from an earlier publication")
  publish.publish("mono_poly", str(workdir), COMMAND, {"wall_time_s": 1.0}, repo=os.path.dirname(publish.RESULTS_DIR),
                  results_dir=str(out))
  assert (out / "mono_poly" / "cost.json").read_text() == '{"parts": [1]}'
  assert not (out / "mono_poly" / "stale.md").exists()


def test_a_dynamics_grid_is_published_with_its_analysis_and_every_run_series(tmp_path, monkeypatch):
  monkeypatch.chdir(os.path.dirname(publish.RESULTS_DIR))
  workdir = tmp_path / "dyn"
  (workdir / "analysis" / "plots").mkdir(parents=True)
  (workdir / "dynamics" / "checkpoints").mkdir(parents=True)
  (workdir / "analysis" / "report.json").write_text(json.dumps({"smoke": False}))
  (workdir / "analysis" / "report.md").write_text("# dynamics analysis\n")
  (workdir / "analysis" / "jumps.csv").write_text("run\n")              # per jump: rewritten by the analysis
  (workdir / "analysis" / "critical_periods.csv").write_text("run\n")
  (workdir / "analysis" / "plots" / "dashboard.png").write_bytes(b"png")
  (workdir / "dynamics" / "checkpoints" / "state").write_bytes(b"x")
  np.savez(workdir / "dynamics" / "a__mnist.npz", steps=np.arange(3), participation_ratio=np.ones((2, 3, 1), np.float32))
  (workdir / "dynamics" / "a__mnist.json").write_text(json.dumps({"status": "finished", "npz": "a__mnist.npz"}))
  out = tmp_path / "results"
  command = ["python", "-m", "launch.dynamics", "--config=configs/dynamics.py:smoke", "--workdir=/w/dyn"]
  folder = publish.publish("dynamics", str(workdir), command, {"wall_time_s": 9.0},
                           repo=os.path.dirname(publish.RESULTS_DIR), results_dir=str(out))
  names = sorted(os.path.relpath(os.path.join(root, n), folder) for root, _, ns in os.walk(folder) for n in ns)
  assert names == ["analysis/critical_periods.csv", "analysis/plots/dashboard.png", "analysis/report.json", "analysis/report.md",
                   "config.json",
                   "dynamics/a__mnist.json", "dynamics/a__mnist.npz", "report.json", "report.md", "run.json"]
  run = json.loads((out / "dynamics" / "run.json").read_text())
  assert sorted(run["files"]) == sorted(n for n in names if n != "run.json")


def test_publishing_a_published_folder_onto_itself_is_refused(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(os.path.dirname(publish.RESULTS_DIR))
  folder = tmp_path / "results" / "mono_poly"
  folder.mkdir(parents=True)
  (folder / "report.json").write_text("{}")
  with pytest.raises(SystemExit):
    publish.publish("mono_poly", str(folder), COMMAND, {"wall_time_s": 1.0}, os.path.dirname(publish.RESULTS_DIR),
                    str(tmp_path / "results"))
  assert "is the published folder itself" in capsys.readouterr().err
  assert (folder / "report.json").exists()
