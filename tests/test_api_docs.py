"""The API reference: the README's pdoc command builds every page with Python warnings as errors.

pdoc reports what it cannot document through Python warnings, not its exit status: a module that fails
to import, an `__all__` entry that does not resolve, a type annotation it cannot evaluate. Turned into
errors (`python -W error`), any of them fails the build. One warning is let through: pdoc evaluates a
NamedTuple's field annotations (ForwardRef(...) under `from __future__ import annotations`) without the
class's module, so names of that module do not resolve there; the page shows the annotation as written.
(pdoc does not check backticked references: an unknown name is left as code, unlinked.)
"""

import re
import shlex
import subprocess
import sys

from tests import support

MODULES = ("mpcodec.metrics", "mpcodec.sae", "mpcodec.checkpoints", "mpcodec.core.loop")
WARNINGS_AS_ERRORS = ["-W", "error", "-W", "ignore:Error parsing type annotation ForwardRef(:UserWarning"]


def readme_command() -> list[str]:
  """The README's one pdoc command, split into arguments."""
  readme = (support.REPO_ROOT / "README.md").read_text(encoding="utf-8")
  lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
           for line in block.splitlines() if "-m pdoc" in line]
  assert len(lines) == 1, f"README.md: expected one pdoc command in a bash block, found {lines}"
  return shlex.split(lines[0])


def build(modules, output_dir, cwd=support.REPO_ROOT, docformat="google"):
  command = [sys.executable, *WARNINGS_AS_ERRORS, "-m", "pdoc", "-d", docformat, "-o", str(output_dir), *modules]
  return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_readme_command_documents_the_public_api():
  command = readme_command()
  assert command[:3] == ["python", "-m", "pdoc"], command
  docformat = command[command.index("-d") + 1]
  assert docformat == "google"   # Args/Returns/Raises/Attributes sections become lists; prose is Markdown
  assert command[command.index("-o") + 1] == "docs/api"   # git-ignored
  assert tuple(arg for arg in command[3:] if arg.startswith("mpcodec")) == MODULES


def test_api_reference_builds_without_warnings(tmp_path):
  out = build(MODULES, tmp_path)
  assert out.returncode == 0, out.stderr[-4000:]
  for module in MODULES:
    page = tmp_path / (module.replace(".", "/") + ".html")
    assert page.is_file(), f"no page {page}"
  assert (tmp_path / "index.html").is_file()
  # Every public name of mpcodec.checkpoints has its entry, with its docstring's first line.
  from mpcodec import checkpoints
  html = (tmp_path / "mpcodec" / "checkpoints.html").read_text(encoding="utf-8")
  for name in checkpoints.__all__:
    assert f'id="{name}"' in html, name
  assert "The parameters, config and step of one stage of an mpcodec run" in html


def test_a_broken_all_entry_fails_the_build(tmp_path):
  """What the build would catch: an `__all__` name that does not resolve makes pdoc warn, hence fail."""
  package = tmp_path / "src" / "probe"
  package.mkdir(parents=True)
  (package / "__init__.py").write_text('"""A probe."""\n\n__all__ = ["gone"]\n')
  out = build(["probe"], tmp_path / "out", cwd=tmp_path / "src")
  assert out.returncode != 0
  assert "Found 'gone' in probe.__all__, but it does not resolve" in out.stderr
