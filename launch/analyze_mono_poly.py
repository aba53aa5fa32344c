"""Analyses a mono->poly run from its checkpoints: metric tables, plots, report.md and report.json.

  python -m launch.analyze_mono_poly --workdir=runs/mono_poly
"""

from absl import flags

from launch import common
from mpcodec.studies.mono_poly import analysis as mono_poly_run

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by launch.mono_poly.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  print(mono_poly_run.summary_text(mono_poly_run.analyze(_WORKDIR.value)))


if __name__ == "__main__":
  common.run(main)
