"""The training-dynamics study.

config.py (typed configs), grid.py (families, measures, run names), program.py (the measured training
program), run.py (what the launch calls), series.py (the results on disk, written and read),
analysis.py (the analysis entry point); train/, analyze/ and report/ hold the steps of each.
"""
