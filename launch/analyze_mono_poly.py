"""Analyses a mono->poly run from its checkpoints: metric tables, plots, report.md and report.json.

  python -m launch.analyze_mono_poly --workdir=runs/mono_poly
  python -m launch.analyze_mono_poly --workdir=runs/mono_poly --allow_incomplete   # label it incomplete
"""

import os

from absl import flags

from launch import common
from mpcodec.core.errors import CheckpointError
from mpcodec.studies.mono_poly import analysis, program
from mpcodec.studies.mono_poly.config import PHASES

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by launch.mono_poly.")
_ALLOW_INCOMPLETE = flags.DEFINE_bool(
    "allow_incomplete", False, "Analyse a run that has not reached its configured steps; the report says so.")
flags.mark_flags_as_required(["workdir"])


def check():
  workdir = common.check_input_workdir(_WORKDIR.value, ("checkpoints",), "launch.mono_poly")
  if workdir is None:
    return {"workdir": common.pending(_WORKDIR.value, "launch.mono_poly")}
  for phase in PHASES:
    folder = program.checkpoint_dir(workdir, phase)
    if not (os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))):
      raise CheckpointError(f"no {phase} checkpoints in {folder}; run launch.mono_poly first")
  return {"workdir": common.check_workdir(workdir), "devices": common.devices()}


def main(argv):
  del argv
  print(analysis.summary_text(analysis.analyze(_WORKDIR.value, allow_incomplete=_ALLOW_INCOMPLETE.value)))


if __name__ == "__main__":
  common.run(main, check)
