"""The benchmark suite: its table says what its JSON says, it runs every benchmark at cpu-small, and the
GPU script and size are ready for a GPU host (syntax, and the work the gpu size lists)."""

import json
import os
import re
import subprocess
import sys

import pytest

from benchmarks import results, table
from tests import support

ROOT = support.REPO_ROOT
BENCHMARKS = {"mono_poly", "codec", "dynamics", "minilm"}   # the suite's mains, at every size


def _table_rows(text: str) -> list[list[str]]:
  """The cells of every body row of the markdown's table."""
  lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| benchmark |")]
  return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _planted_record() -> dict:
  rows = [results.Row("codec", "Top-K SAE", "tokens/s", 12000.0, "PyTorch Top-K SAE", 3000.0,
                      {"mpcodec": 1.0, "peer": 5.0}),
          results.Row("minilm", "MiniLM forward", "tokens/s", 812.5, "sentence-transformers",
                      note=results.peer_not_run(True, "sentence-transformers"))]
  return {"size": "cpu-small", "peers": "on", "load_average_after": 1.5,
          "machine": {"cpu_model": "Test CPU", "cores": 2, "load_average": 1.0, "xla_flags": "",
                      "platform": "cpu", "device_kind": "cpu", "device_count": 1},
          "versions": {"jax": "0.0", "torch": None}, "rows": [row.as_dict() for row in rows],
          "benchmarks": {"codec": {"returncode": 0, "error": ""},
                         "dynamics": {"returncode": 1, "error": "error: no data"}}}


def test_markdown_states_each_row_its_ratio_skips_and_failures():
  text = table.markdown(_planted_record())
  assert "CPU: Test CPU, 2 cores" in text and "torch not installed" in text
  codec, minilm, failed = _table_rows(text)
  assert codec[:7] == ["codec", "Top-K SAE", "tokens/s", "12,000", "PyTorch Top-K SAE", "3,000", "4.00x"]
  assert codec[7] == "1.00 / 5.00 (5.00x)"   # the same work in a fifth of the CPU seconds
  assert minilm[5:7] == ["-", "-"] and minilm[8] == "skipped: sentence-transformers is not installed"
  assert failed[:2] == ["dynamics", "failed (exit 1)"] and failed[-1] == "error: no data"


def test_the_gpu_size_lists_every_benchmark_and_1024_seeds_without_running_any():
  out = subprocess.run([sys.executable, "-m", "benchmarks.suite", "--size=gpu", "--dry_run",
                        "--data_dir=/nonexistent_is_not_read_in_a_dry_run_listing"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  listed = dict(re.findall(r"^  (\w+): (python -m .*)$", out.stdout, re.M))
  assert set(listed) == {"mono_poly", "codec", "dynamics", "minilm"}, out.stdout + out.stderr
  assert out.returncode == 0 and "--seeds=1,64,1024" in listed["mono_poly"]
  assert "--data_dir=/nonexistent_is_not_read_in_a_dry_run_listing" in listed["minilm"]


def test_the_gpu_script_parses_and_runs_the_gpu_size():
  script = ROOT / "benchmarks" / "gpu.sh"
  assert subprocess.run(["bash", "-n", str(script)], capture_output=True, check=False).returncode == 0
  text = script.read_text(encoding="utf-8")
  assert "jax[$cuda_extra]" in text and "-m benchmarks.suite --size=gpu" in text


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory):
  data = support.require_data("mnist", "ag_news", "minilm")
  out = tmp_path_factory.mktemp("suite")
  env = {**os.environ, "MPCODEC_DATA_DIR": str(data)}
  done = subprocess.run([sys.executable, "-m", "benchmarks.suite", "--size=cpu-small", "--peers=off",
                         f"--out={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                        check=False)
  assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
  return (json.loads((out / "suite.json").read_text(encoding="utf-8")),
          (out / "suite.md").read_text(encoding="utf-8"))


@pytest.mark.slow   # about a minute of CPU: four benchmark processes, each compiling its programs
def test_the_small_suite_runs_every_benchmark_and_its_table_matches_its_json(small_suite):
  record, text = small_suite
  assert set(record["benchmarks"]) == BENCHMARKS
  assert {row["benchmark"] for row in record["rows"]} == BENCHMARKS
  assert record["machine"]["cpu_model"] == results.cpu_model() and record["machine"]["cores"] == os.cpu_count()
  assert record["versions"]["jax"] and record["versions"]["jaxlib"]
  body = _table_rows(text)
  assert len(body) == len(record["rows"])
  for row, cells in zip(record["rows"], body):
    assert cells[:3] == [row["benchmark"], row["work"], row["unit"]]
    assert float(cells[3].replace(",", "")) == pytest.approx(row["mpcodec"], rel=5e-3, abs=5e-3)
    assert row["mpcodec"] > 0 and cells[6] == table.format_ratio(row["ratio"])
    if row["peer"] is None:
      assert row["note"].endswith("not run: --torch_baseline=false") and cells[6] == "-"
    else:   # the peers that are no PyTorch tool (a JAX loop, the dense decoder) still run
      assert row["ratio"] == pytest.approx(row["mpcodec"] / row["peer"])
  assert "PyTorch peers: off (--peers=off)" in text and record["machine"]["cpu_model"] in text
