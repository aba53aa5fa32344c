"""Static check of the whole code base: no unused imports or names, undefined names or shadowed imports."""

import io
from pathlib import Path

from pyflakes import api, reporter

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("mpcodec", "launch", "configs", "tests")


def test_pyflakes_finds_nothing():
  out, err = io.StringIO(), io.StringIO()
  count = api.checkRecursive([str(ROOT / name) for name in CHECKED], reporter.Reporter(out, err))
  assert count == 0 and not err.getvalue(), out.getvalue() + err.getvalue()


def test_pyflakes_check_can_fail(tmp_path):
  """The check above would see a problem: an unused import in a scratch file is reported."""
  bad = tmp_path / "bad.py"
  bad.write_text("import os\n")
  out = io.StringIO()
  assert api.checkRecursive([str(bad)], reporter.Reporter(out, io.StringIO())) == 1
  assert "'os' imported but unused" in out.getvalue()
