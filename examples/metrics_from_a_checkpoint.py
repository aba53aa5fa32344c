"""Metrics from a checkpoint: train a seconds-long mono->poly run, then load it in three lines.

  python examples/metrics_from_a_checkpoint.py

Any workdir of launch.mono_poly, launch.dynamics or launch.codec loads the same way (`checkpoints.stages`
lists what a workdir holds).
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

from mpcodec import checkpoints
from mpcodec.metrics import mean_pairwise_angle_degrees, participation_ratio, weight_entropy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

with tempfile.TemporaryDirectory() as workdir:
  # The smoke run (4 seeds, 60 steps a phase), training only; launches run from the repository root.
  launch = subprocess.run([sys.executable, "-m", "launch.mono_poly", "--config=configs/mono_poly.py:smoke",
                           f"--workdir={workdir}", "--noanalyze"], cwd=REPO, capture_output=True, text=True)
  if launch.returncode:
    sys.exit(launch.stderr)

  run = checkpoints.load(workdir)                                  # the last phase, its latest step
  acts_SxNxH = checkpoints.activations(run, layer="hidden_0")      # on the run's own test images
  w_in_SxDxH = run.params["hidden_0"]["kernel"]

  print(f"{run.stage} step {run.step}, seeds {list(run.seeds)}, stages {list(checkpoints.stages(workdir))}")
  for seed, acts_NxH, w_in_DxH in zip(run.seeds, acts_SxNxH, w_in_SxDxH):
    print(f"seed {seed}: participation ratio {float(participation_ratio(acts_NxH)):.2f}, "
          f"mean weight entropy {float(np.mean(weight_entropy(w_in_DxH))):.2f} nats, "
          f"mean angle {float(mean_pairwise_angle_degrees(w_in_DxH)):.1f} degrees")
