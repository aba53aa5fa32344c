"""Import rules of the code base (.importlinter at the repository root), checked with import-linter.

The rules: no import cycles between the subpackages of mpcodec, between the studies or between launch
mains; the library (core, data, models, metrics, sae) never imports a study; a study never imports
another; each launch main and benchmark main imports at most one study (its own), the PyTorch baselines
none; neither mpcodec nor launch imports the benchmarks. import-linter builds its graph with
grimp, which reads every import statement, those inside functions included: the scratch-tree test
below shows a lazy import breaking each rule.
"""

import os
import subprocess
import sys

import pytest
from importlinter.api import read_configuration

from tests import support

CONFIG = support.REPO_ROOT / ".importlinter"
STUDIES_DIR = support.REPO_ROOT / "mpcodec" / "studies"
LAUNCH_DIR = support.REPO_ROOT / "launch"
BENCHMARKS_DIR = support.REPO_ROOT / "benchmarks"
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def _lint_imports(cwd) -> tuple[int, str]:
  """(exit status, output with whitespace runs collapsed) of `lint-imports` on the repository's contracts."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["COLUMNS"] = "200"
  out = subprocess.run([sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", str(CONFIG)], cwd=cwd,
                       env=env, capture_output=True, text=True, timeout=300)
  return out.returncode, " ".join((out.stdout + out.stderr).split())


def _contract_names() -> list[str]:
  return [contract["name"] for contract in read_configuration(str(CONFIG))["contracts_options"]]


def test_the_code_base_keeps_every_import_contract():
  status, output = _lint_imports(support.REPO_ROOT)
  assert status == 0, output
  for name in _contract_names():
    assert f"{name} KEPT" in output, name


def _scratch_tree(root, sources: dict[str, str]) -> None:
  """Empty copies of every module of mpcodec/, launch/ and benchmarks/ under `root`, then `sources` over them."""
  for top in ("mpcodec", "launch", "benchmarks"):
    for path in (support.REPO_ROOT / top).rglob("*.py"):
      copy = root / path.relative_to(support.REPO_ROOT)
      copy.parent.mkdir(parents=True, exist_ok=True)
      copy.write_text("")
  for relative, text in sources.items():
    (root / relative).write_text(text)


LAZY_STUDY_IMPORT = "def load():\n  from mpcodec.studies.mono_poly import experiment\n  return experiment\n"
BREAKING_TREES = {
    "The library (core, data, models, metrics, sae) never imports a study": {
        "mpcodec/models/checkpointed.py": LAZY_STUDY_IMPORT},
    "A study never imports another study": {"mpcodec/studies/codec/sources.py": LAZY_STUDY_IMPORT},
    "No import cycles between the subpackages of mpcodec, between the studies, or between launch mains": {
        "mpcodec/data/bars.py": "from mpcodec.core import errors\n",
        "mpcodec/core/loop.py": "def load():\n  import mpcodec.data.bars\n  return mpcodec.data.bars\n"},
    "The codec mains import no study but codec": {
        "launch/codec.py": "from mpcodec.studies.codec import pipeline\n\n\ndef main():\n"
                           "  from mpcodec.studies.dynamics import sweep\n  return pipeline, sweep\n"},
    "launch.common imports no study": {
        "launch/common.py": "def run():\n  import mpcodec.studies.toy_superposition.report\n"},
    "Neither the library nor a launch imports the benchmarks": {
        "mpcodec/sae/training.py": "def compare():\n  from benchmarks.baselines import torch_tracker\n"},
    "The mono_poly mains import no study but mono_poly": {
        "benchmarks/mono_poly.py": "def main():\n  from mpcodec.studies.codec import pipeline\n"},
    "The PyTorch baselines, the benchmark suite, its rows and the library-only benchmarks import no study": {
        "benchmarks/baselines/torch_tracker.py": "def run():\n  import mpcodec.studies.dynamics\n"},
}


def test_the_contracts_hold_on_an_empty_scratch_tree(tmp_path):
  """The scratch copy that the test below breaks keeps every contract before anything is written into it."""
  _scratch_tree(tmp_path, {})
  status, output = _lint_imports(tmp_path)
  assert status == 0, output


@pytest.mark.parametrize("broken_contract", sorted(BREAKING_TREES))
def test_an_import_inside_a_function_breaks_its_contract(tmp_path, broken_contract):
  _scratch_tree(tmp_path, BREAKING_TREES[broken_contract])
  status, output = _lint_imports(tmp_path)
  assert status != 0, output
  assert f"{broken_contract} BROKEN" in output and output.count(" BROKEN") == 1, output


def _launch_modules() -> list[str]:
  return sorted(f"launch.{path.stem}" for path in LAUNCH_DIR.glob("*.py") if path.stem != "__init__")


def _benchmark_modules() -> list[str]:
  """Every module of benchmarks/, its subpackages' modules included (packages' __init__ files left out)."""
  return sorted(".".join(("benchmarks",) + path.relative_to(BENCHMARKS_DIR).with_suffix("").parts)
                for path in BENCHMARKS_DIR.rglob("*.py") if path.stem != "__init__")


def _studies() -> set[str]:
  return {f"mpcodec.studies.{path.parent.name}" for path in STUDIES_DIR.glob("*/__init__.py")}


def _studies_not_forbidden(contracts: list[dict], module: str, studies: set[str]) -> set[str]:
  """The studies that no "forbidden" contract with `module` among its source modules forbids it."""
  forbidden = set()
  for contract in contracts:
    sources = contract.get("source_modules", [])
    if contract["type"] == "forbidden" and any(module == s or module.startswith(s + ".") for s in sources):
      forbidden |= {study for study in studies for banned in contract["forbidden_modules"]
                    if study == banned or study.startswith(banned + ".")}
  return studies - forbidden


def test_every_launch_main_is_forbidden_all_studies_but_one():
  contracts = read_configuration(str(CONFIG))["contracts_options"]
  studies = _studies()
  assert len(studies) >= 4 and "launch.codec" in _launch_modules()
  allowed = {module: _studies_not_forbidden(contracts, module, studies) for module in _launch_modules()}
  too_many = {module: sorted(names) for module, names in allowed.items() if len(names) > 1}
  assert not too_many, f"add these launch modules to a contract in {CONFIG} that forbids other studies: {too_many}"
  assert allowed["launch.common"] == allowed["launch.fetch_data"] == set()
  # The check would see a main that no contract names: it may import every study.
  assert _studies_not_forbidden([], "launch.codec", studies) == studies


def test_every_benchmark_module_is_forbidden_all_studies_but_one():
  """benchmarks/ is covered like launch/: each main imports at most its own study, the baselines none."""
  contracts = read_configuration(str(CONFIG))["contracts_options"]
  studies = _studies()
  modules = _benchmark_modules()
  assert {"benchmarks.mono_poly", "benchmarks.dynamics", "benchmarks.baselines.torch_tracker"} <= set(modules)
  allowed = {module: _studies_not_forbidden(contracts, module, studies) for module in modules}
  too_many = {module: sorted(names) for module, names in allowed.items() if len(names) > 1}
  assert not too_many, f"add these benchmark modules to a contract in {CONFIG} that forbids other studies: {too_many}"
  baselines = [module for module in modules if module.startswith("benchmarks.baselines.")]
  assert baselines and all(allowed[module] == set() for module in baselines), baselines
  # Nothing in the library or in launch/ may import any of them.
  guard = [c for c in contracts if c["type"] == "forbidden" and c["forbidden_modules"] == ["benchmarks"]]
  assert guard and {"mpcodec", "launch"} <= set(guard[0]["source_modules"]), guard
