"""Import rules of the code base (.importlinter at the repository root), checked with import-linter.

The rules: no import cycles between the subpackages of mpcodec, between the studies or between launch
mains; the library (core, data, models, metrics, sae) never imports a study; a study never imports
another; each launch main imports at most one study (its own). import-linter builds its graph with
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
  """Empty copies of every module of mpcodec/ and launch/ under `root`, then `sources` written over them."""
  for top in ("mpcodec", "launch"):
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


def _studies() -> set[str]:
  return {f"mpcodec.studies.{path.parent.name}" for path in STUDIES_DIR.glob("*/__init__.py")}


def _studies_not_forbidden(contracts: list[dict], module: str, studies: set[str]) -> set[str]:
  """The studies that no "forbidden" contract with `module` among its source modules forbids it."""
  forbidden = set()
  for contract in contracts:
    if contract["type"] == "forbidden" and module in contract["source_modules"]:
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
