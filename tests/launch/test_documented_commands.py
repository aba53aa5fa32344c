"""Every launch command the READMEs and the config and launch docstrings show runs as written.

The commands are collected from the fenced ```bash blocks and the inline code of every README (lines that
start with `python -m launch.` or `python -m benchmarks.`, or run one after `&&`, continuation lines joined; a `pip install ... &&`
prefix, a trailing `&` and a `# comment` are dropped; `srun`/`sbatch` cluster examples are not run) and
from the module docstrings of configs/*.py, launch/*.py and benchmarks/*.py.
Each runs with `--check_only` appended, so it parses its flags and config, checks its data, model and
workdir, and stops before anything compiles. All of them run in ONE Python process (a driver that clears
the previous launch's flags and runs the next launch module as __main__, as `python -m` does), since ~60
processes importing JAX would take minutes on 2 cores.

They run from a scratch copy of the repository root (symlinks to its files, no runs/ folder, so other runs
in the checkout cannot change the outcome) with the real data at `../shared/data` beside it, and without
MPCODEC_DATA_DIR or MPCODEC_MODEL_DIR: as on a fresh machine, where those variables are not set and a
command that left out `--data_dir` would fail.
"""

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time

import pytest

from tests import support

REPO_ROOT = support.REPO_ROOT
# The module prefixes of the commands collected: the study launches and the benchmark mains.
PREFIXES = ("python -m launch.", "python -m benchmarks.")

# The least number of commands the collector must find in each file: a broken collector (or a README
# that lost its commands) fails here instead of passing with nothing to run.
MIN_COMMANDS = {
    "README.md": 8,
    "mpcodec/studies/codec/README.md": 12,
    "mpcodec/studies/dynamics/README.md": 15,
    "mpcodec/studies/mono_poly/README.md": 6,
    "mpcodec/studies/toy_superposition/README.md": 3,
    "configs/codec.py": 4,
    "configs/codec_minilm.py": 2,
    "configs/codec_smollm2.py": 3,
    "configs/dynamics.py": 4,
    "configs/dynamics_analysis.py": 3,
    "configs/mono_poly.py": 2,
    "configs/toy_superposition.py": 2,
    "launch/analyze_mono_poly.py": 2,
    "benchmarks/codec.py": 3,
    "benchmarks/dynamics.py": 4,
    "benchmarks/minilm.py": 2,
    "benchmarks/mono_poly.py": 2,
    "launch/codec.py": 4,
    "launch/dynamics.py": 5,
    "launch/dynamics_analysis.py": 3,
    "launch/fetch_data.py": 1,
    "launch/mono_poly.py": 2,
    "launch/toy_superposition.py": 2,
}


def documented_files() -> list[str]:
  """The READMEs, config files, launch and benchmark mains whose commands are collected (repository-relative)."""
  readmes = ["README.md"] + sorted(str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.glob("mpcodec/studies/*/README.md"))
  modules = sorted(str(p.relative_to(REPO_ROOT)) for folder in ("configs", "launch", "benchmarks")
                   for p in (REPO_ROOT / folder).glob("*.py") if p.name != "__init__.py")
  return readmes + modules


def _logical_lines(text: str) -> list[tuple[int, str]]:
  """(1-based number of the first line, the line with its `\\` continuations joined)."""
  joined, start, parts = [], None, []
  for number, line in enumerate(text.splitlines(), 1):
    if start is None:
      start = number
    stripped = line.rstrip()
    if stripped.endswith("\\"):
      parts.append(stripped[:-1].strip())
      continue
    parts.append(stripped.strip())
    joined.append((start, " ".join(p for p in parts if p)))
    start, parts = None, []
  if parts:
    joined.append((start, " ".join(parts)))
  return joined


def _command_start(line: str) -> int:
  """Where the first `python -m launch.`/`python -m benchmarks.` command of `line` starts, or -1."""
  starts = [at for at in (line.find(prefix) for prefix in PREFIXES) if at >= 0]
  return min(starts) if starts else -1


def launch_command(line: str) -> list[str] | None:
  """The `python -m launch.X ...` (or `benchmarks.X`) argv of one logical line, or None when it runs none.

  The command starts the line, or follows `&&` (a `pip install ... &&` prefix is dropped); one wrapped in
  another launcher (`srun ...`, `sbatch --wrap="..."`: cluster examples) is not collected. `&&`, `;`, `|`,
  a trailing `&` and a `# comment` end it.
  """
  at = _command_start(line)
  if at < 0:
    return None
  before = line[:at].strip()
  if before and not before.endswith("&&"):
    return None
  tokens = shlex.split(line[at:], comments=True)
  for index, token in enumerate(tokens):
    if token in ("&&", ";", "|", "&", "||"):
      return tokens[:index]
  return tokens


def collect(relative: str, text: str | None = None) -> list[tuple[int, list[str]]]:
  """(line number, argv) of every launch command documented in the file `relative` (or in `text`)."""
  text = (REPO_ROOT / relative).read_text(encoding="utf-8") if text is None else text
  lines = text.splitlines()
  found = []

  def add(first_line: int, chunk: list[str], whole_lines_only: bool) -> None:
    for number, line in _logical_lines("\n".join(chunk)):
      if whole_lines_only and not line.startswith(PREFIXES):
        continue
      argv = launch_command(line)
      if argv is not None:
        found.append((first_line + number - 1, argv))

  if relative.endswith(".md"):
    fence, block = None, []
    for number, line in enumerate(lines, 1):
      stripped = line.strip()
      if stripped.startswith("```"):
        if fence is None:
          fence, block = stripped[3:].strip(), []
        else:
          if fence == "bash" and block:
            add(block[0][0], [chunk for _, chunk in block], whole_lines_only=False)
          fence = None
      elif fence == "bash":
        block.append((number, line))
      elif fence is None:
        for span in re.findall(r"`([^`]*)`", line):
          if span.startswith(PREFIXES):
            found.append((number, launch_command(span)))
  else:
    # The module docstring as written in the source, so that `\` continuations and line numbers are kept.
    node = ast.parse(text).body[0] if ast.parse(text).body else None
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
      add(node.lineno, lines[node.lineno - 1:node.end_lineno], whole_lines_only=True)
  return sorted(found)


def test_the_collector_reads_blocks_continuations_prefixes_and_inline_commands():
  readme = textwrap.dedent('''\
      Run `python -m launch.mono_poly --config=configs/mono_poly.py --workdir=runs/a` first.
      ```bash
      pip install -e '.[lm]' && python -m launch.codec --config=configs/codec.py \\
          --workdir=runs/b   # a comment
      python -m launch.dynamics --config=configs/dynamics.py --shard=1/2 --data_dir=../shared/data &
      sbatch --array=1-4 --wrap="python -m launch.dynamics --config=configs/dynamics.py --workdir=c"
      python -m pytest -q tests
      ```
      ```python
      print("python -m launch.not_a_command")
      ```
      ''')
  found = collect("README.md", readme)
  assert [number for number, _ in found] == [1, 3, 5]
  assert found[0][1] == ["python", "-m", "launch.mono_poly", "--config=configs/mono_poly.py", "--workdir=runs/a"]
  assert found[1][1] == ["python", "-m", "launch.codec", "--config=configs/codec.py", "--workdir=runs/b"]
  assert found[2][1][-1] == "--data_dir=../shared/data"
  module = '"""Title.\n\n  python -m launch.toy_superposition --config=configs/x.py \\\n      --workdir=runs/t\n"""\n'
  assert collect("configs/x.py", module) == [
      (3, ["python", "-m", "launch.toy_superposition", "--config=configs/x.py", "--workdir=runs/t"])]
  bench = '"""Title.\n\n  python -m benchmarks.mono_poly --seeds=1,8   # speed\n  print(python -m benchmarks.x)\n"""\n'
  assert collect("benchmarks/x.py", bench) == [(3, ["python", "-m", "benchmarks.mono_poly", "--seeds=1,8"])]


def test_every_documented_file_has_its_commands():
  files = documented_files()
  assert set(MIN_COMMANDS) <= set(files), sorted(set(MIN_COMMANDS) - set(files))
  for relative in files:
    commands = collect(relative)
    assert len(commands) >= MIN_COMMANDS.get(relative, 0), (relative, commands)
    for number, argv in commands:
      assert argv[:2] == ["python", "-m"] and argv[2].startswith(("launch.", "benchmarks.")), (
          relative, number, argv)
      assert not any(token in ("...", "DIR", "DATA") or "<" in token for token in argv), (
          f"{relative}:{number}: a placeholder in {shlex.join(argv)}")


# Run by the test in one process: for each command, the previous launch's flags are removed, the flags
# reset, the environment adjusted, and the launch module run as __main__ with the command's argv.
DRIVER = r'''
import contextlib, io, json, os, runpy, sys, traceback
from absl import app, flags
from launch import common  # noqa: F401  (defines --check_only once, before the snapshot of the flags)
app.define_help_flags()
commands_path, results_path = sys.argv[1:3]
commands = json.load(open(commands_path, encoding="utf-8"))
base = set(flags.FLAGS)
results = []
for item in commands:
  for name in [n for n in flags.FLAGS if n not in base]:
    if name in flags.FLAGS:
      delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  saved = dict(os.environ)
  for key, value in item["env"].items():
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value
  sys.argv = [item["argv"][2]] + item["argv"][3:]
  out, err, started = io.StringIO(), io.StringIO(), __import__("time").perf_counter()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      runpy.run_module(item["argv"][2], run_name="__main__", alter_sys=True)
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      if isinstance(e.code, str):
        print(e.code, file=sys.stderr)
    except BaseException:  # a bug: keep its traceback for the test's message
      code = -1
      traceback.print_exc(file=err)
  os.environ.clear()
  os.environ.update(saved)
  results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                  "seconds": __import__("time").perf_counter() - started})
json.dump(results, open(results_path, "w", encoding="utf-8"))
'''

FRESH_MACHINE = {"MPCODEC_DATA_DIR": None, "MPCODEC_MODEL_DIR": None}
# Commands that must fail their checks: (argv, environment changes, what the error line must name).
BAD_COMMANDS = [
    (["python", "-m", "launch.dynamics", "--config=configs/dynamics.py:smoke", "--workdir=runs/bad"], {},
     ("--data_dir", "MPCODEC_DATA_DIR")),
    (["python", "-m", "launch.codec", "--config=configs/codec_minilm.py:smoke", "--workdir=runs/bad"], {},
     ("--data_dir", "MPCODEC_DATA_DIR")),
    (["python", "-m", "benchmarks.dynamics", "--archs=", "--estimate_grid"], {},
     ("--data_dir", "MPCODEC_DATA_DIR")),
    (["python", "-m", "launch.dynamics", "--config=configs/dynamics.py:smoke", "--workdir=runs/bad"],
     {"MPCODEC_DATA_DIR": "../shared/no_data_here"}, ("../shared/no_data_here", "MPCODEC_DATA_DIR")),
    (["python", "-m", "launch.codec", "--config=configs/codec_minilm.py:smoke", "--workdir=runs/bad",
      "--data_dir=../shared/data", "--config.source.text.model_dir=../shared/data"], {},
     ("--config.source.text.model_dir", "config.json")),
    (["python", "-m", "launch.mono_poly", "--config=configs/mono_poly.py:smoke", "--workdir=runs/bad",
      "--config.num_seeds=0"], {}, ("config.num_seeds",)),
]


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
  """{(file, line): (argv, result)} of every documented command, and the bad commands' results."""
  data = support.require_data("mnist", "fashion-mnist", "kmnist", "ag_news", "qmnist", "shakespeare",
                              "minilm")
  root = tmp_path_factory.mktemp("checkout")
  mirror = root / "repo"
  mirror.mkdir()
  for entry in REPO_ROOT.iterdir():
    if entry.name not in ("runs", ".git", ".venv", ".pytest_cache") and not entry.name.startswith("workdir"):
      (mirror / entry.name).symlink_to(entry)
  (root / "shared").mkdir()
  (root / "shared" / "data").symlink_to(data.resolve())
  documented = [((relative, number), argv) for relative in documented_files()
                for number, argv in collect(relative)]
  items = [{"argv": argv + ["--check_only"], "env": FRESH_MACHINE} for _, argv in documented]
  items += [{"argv": argv + ["--check_only"], "env": {**FRESH_MACHINE, **env}} for argv, env, _ in BAD_COMMANDS]
  commands, results = root / "commands.json", root / "results.json"
  commands.write_text(json.dumps(items), encoding="utf-8")
  env = {k: v for k, v in os.environ.items() if k not in FRESH_MACHINE}
  started = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", DRIVER, str(commands), str(results)], cwd=mirror, env=env,
                       capture_output=True, text=True, timeout=600)
  seconds = time.perf_counter() - started
  assert out.returncode == 0, out.stderr[-4000:]
  outcome = json.loads(results.read_text(encoding="utf-8"))
  return {"documented": [(where, argv, result) for (where, argv), result in zip(documented, outcome)],
          "bad": outcome[len(documented):], "stderr": out.stderr, "mirror": mirror, "seconds": seconds}


def test_every_documented_command_passes_its_checks(checked):
  failures = []
  for (relative, number), argv, result in checked["documented"]:
    module = argv[2]
    if result["code"] != 0 or f"check_only: {module} OK (" not in result["stdout"]:
      failures.append(f"{relative}:{number}: {shlex.join(argv)}\n    exit {result['code']}: "
                      f"{(result['stderr'] or result['stdout']).strip()[-1500:]}")
  assert not failures, f"{len(failures)} documented command(s) fail their checks:\n" + "\n".join(failures)
  # Nothing was trained or written: the checks made no workdir (runs/ did not exist before).
  assert not (checked["mirror"] / "runs").exists()


def test_a_bad_command_fails_its_checks_with_one_error_line(checked):
  for (argv, _, names), result in zip(BAD_COMMANDS, checked["bad"]):
    lines = result["stderr"].strip().splitlines()
    assert result["code"] not in (0, -1), (argv, result)
    assert lines and lines[-1].startswith("error: "), (argv, result["stderr"][-2000:])
    assert "Traceback" not in result["stderr"], (argv, result["stderr"][-2000:])
    for name in names:
      assert name in lines[-1], (argv, name, lines[-1])
    assert "check_only:" not in result["stdout"]
  assert not (checked["mirror"] / "runs").exists()


def test_checks_start_the_backend_without_the_tpu_lines(checked):
  """The check of a launch starts JAX's backend (its `devices` item) with no libtpu lines in the log."""
  assert any("devices cpu" in r["stdout"] or "devices gpu" in r["stdout"] for _, _, r in checked["documented"])
  logs = checked["stderr"] + "".join(r["stderr"] for _, _, r in checked["documented"])
  assert "libtpu" not in logs and "Unable to initialize backend" not in logs, logs[-3000:]
  print(f"{len(checked['documented'])} documented commands checked in {checked['seconds']:.1f} s")
