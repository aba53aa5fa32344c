"""The mono->poly command end to end (smoke config): every output file, resume, clear errors."""

import csv
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
from tests import support

REPO_ROOT = str(support.REPO_ROOT)
EXPECTED_FILES = [
    "metrics/crs_phase1.csv", "metrics/crs_phase2.csv", "metrics/crs_control.csv", "metrics/training_history.csv",
    "plots/phase1_samples.png", "plots/phase2_samples.png", "plots/phase1_weights.png",
    "plots/phase2_weights.png", "plots/metrics_loss.png", "plots/metrics_test_accuracy.png",
    "plots/metrics_mean_entropy.png", "plots/metrics_mean_l2.png", "plots/metrics_mean_angle.png",
    "plots/metrics_num_polysemantic.png", "report.md", "report.json",
]


def run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=600)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("smoke"))
  out = run("launch.mono_poly", "--config=configs/mono_poly.py:smoke", f"--workdir={workdir}")
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir, out


def test_smoke_run_writes_every_file(smoke_run):
  workdir, out = smoke_run
  for name in EXPECTED_FILES:
    path = os.path.join(workdir, name)
    assert os.path.getsize(path) > 0, name
  with open(os.path.join(workdir, "metrics", "training_history.csv")) as f:
    history = list(csv.DictReader(f))
  # 4 seeds x (phase1, phase2 and control steps 0, 20, 40, 60).
  assert len(history) == 4 * 12
  assert {r["phase"] for r in history} == {"phase1", "phase2", "control"}
  assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in history)
  with open(os.path.join(workdir, "metrics", "crs_phase2.csv")) as f:
    crs = list(csv.DictReader(f))
  assert len(crs) == 4 * 10 and {r["label"] for r in crs} <= {"monosemantic", "polysemantic", "dead"}
  with open(os.path.join(workdir, "report.json")) as f:
    report = json.load(f)  # strict JSON: NaN would fail to parse with parse_constant below
  json.loads(open(os.path.join(workdir, "report.json")).read(),
             parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
  assert set(report["hypotheses"]) == {"H1", "H2", "H3"}
  # A smoke run says so at the top of report.md and in report.json, and gives no verdict.
  assert report["smoke"] is True and report["design"]["control_arm"] and report["design"]["data_per_seed"]
  for result in report["hypotheses"].values():
    assert result["verdict"] == "cannot be tested" and result["verdict_text"] == "cannot be tested (smoke run)"
    assert set(result["arms"]) == {"xor", "control"}
  report_md = open(os.path.join(workdir, "report.md")).read()
  assert report_md.splitlines()[2].startswith("> **No verdicts: smoke run")
  assert report_md.count("**cannot be tested (smoke run)**") == 3 and "per-seed data" in report_md
  assert "NO VERDICTS: smoke run" in out.stdout and "H3: cannot be tested (smoke run)" in out.stdout


# An absl INFO line: "I1205 11:27:00.833536 139658312993664 checkpoint_manager.py:701] message".
ABSL_INFO_FILE = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ (\S+?\.py):\d+\]", re.MULTILINE)


def test_default_log_has_no_tpu_discovery_or_orbax_info_lines(smoke_run):
  """A launch's default log leaves out JAX's "Unable to initialize backend 'tpu'" (libtpu) line and
  Orbax's INFO lines (several per checkpoint save and restore; this run saves and restores many)."""
  import orbax.checkpoint  # pylint: disable=g-import-not-at-top
  _, out = smoke_run
  assert "libtpu" not in out.stderr and "Unable to initialize backend" not in out.stderr, out.stderr[-3000:]
  orbax_root = pathlib.Path(orbax.checkpoint.__file__).parent
  ours = {p.name for top in ("mpcodec", "launch") for p in (support.REPO_ROOT / top).rglob("*.py")}
  orbax_files = {p.name for p in orbax_root.rglob("*.py")} - ours
  sample = "I1205 11:27:00.833536 139658312993664 checkpoint_manager.py:701] Saving checkpoint at step 1"
  assert ABSL_INFO_FILE.findall(sample) == ["checkpoint_manager.py"] and "checkpoint_manager.py" in orbax_files
  noisy = [name for name in ABSL_INFO_FILE.findall(out.stderr) if name in orbax_files]
  assert not noisy, out.stderr[-3000:]


def test_rerun_resumes_and_changed_config_is_refused(smoke_run):
  workdir, _ = smoke_run
  again = run("launch.mono_poly", "--config=configs/mono_poly.py:smoke", f"--workdir={workdir}", "--noanalyze")
  assert again.returncode == 0, again.stderr[-3000:]
  changed = run("launch.mono_poly", "--config=configs/mono_poly.py:smoke", f"--workdir={workdir}",
                "--config.batch_size=16", "--noanalyze")
  assert changed.returncode == 1
  assert "error:" in changed.stderr and "config.batch_size" in changed.stderr
  assert "Traceback" not in changed.stderr


def test_bad_config_and_missing_checkpoints_fail_cleanly(tmp_path):
  bad = run("launch.mono_poly", "--config=configs/mono_poly.py:smoke", f"--workdir={tmp_path}",
            "--config.phase1.steps=0")
  assert bad.returncode == 1 and "config.phase1.steps" in bad.stderr and "Traceback" not in bad.stderr
  assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))
  missing = run("launch.analyze_mono_poly", f"--workdir={tmp_path}")
  assert missing.returncode == 1 and "no phase1 checkpoints" in missing.stderr
  assert "Traceback" not in missing.stderr
