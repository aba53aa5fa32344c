"""Analyses a mono->poly run from its checkpoints: metric tables, plots, report.md and report.json.

  python -m launch.analyze_mono_poly --workdir=runs/mono_poly
  python -m launch.analyze_mono_poly --workdir=runs/mono_poly --allow_incomplete   # label it incomplete
"""

from absl import flags

from launch import common
from mpcodec.studies.mono_poly import analysis

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by launch.mono_poly.")
_ALLOW_INCOMPLETE = flags.DEFINE_bool(
    "allow_incomplete", False, "Analyse a run that has not reached its configured steps; the report says so.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  print(analysis.summary_text(analysis.analyze(_WORKDIR.value, allow_incomplete=_ALLOW_INCOMPLETE.value)))


if __name__ == "__main__":
  common.run(main)
