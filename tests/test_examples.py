"""Every script in examples/ runs as a user would run it (a subprocess from the repository root) and prints
what it promises; examples/README.md has a line for each."""

import os
import subprocess
import sys

import pytest

from tests import support

EXAMPLES_DIR = support.REPO_ROOT / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES_DIR.glob("*.py"))
# Scripts that run a launch (training in a subprocess): left out of the fast subset.
SLOW = {"metrics_from_a_checkpoint.py"}
# What each script must print (a script without an entry must print something).
PRINTS = {
    "metrics_on_your_arrays.py": ["participation ratio", "weight entropy", "-> OR", "-> XOR"],
    "metrics_from_a_checkpoint.py": ["phase2 step", "seed 0: participation ratio", "mean weight entropy"],
    "sae_on_your_activations.py": ["mean max cosine to the planted atoms", "reloaded k3_seed0"],
}


def test_examples_are_found_and_listed():
  assert {"metrics_on_your_arrays.py", "metrics_from_a_checkpoint.py"} <= set(SCRIPTS)
  listed = (EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
  for script in SCRIPTS:
    assert f"[`{script}`]({script})" in listed, f"examples/README.md has no line for {script}"


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in SCRIPTS])
def test_example_runs_and_prints(script):
  env = {**os.environ, "PYTHONPATH": ""}   # as a user runs it: the installed mpcodec, nothing else
  out = subprocess.run([sys.executable, str(EXAMPLES_DIR / script)], cwd=support.REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, f"{script} exited with {out.returncode}:\n{out.stderr[-3000:]}"
  assert out.stdout.strip(), f"{script} printed nothing"
  for text in PRINTS.get(script, []):
    assert text in out.stdout, f"{script} did not print {text!r}:\n{out.stdout[-2000:]}"
