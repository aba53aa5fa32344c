"""Outputs: the training report (per-run plots, accuracy table) and the analysis' tables, report and figures.

The training report's functions are importable from here too (`from mpcodec.studies.dynamics import report`).
"""

from mpcodec.studies.dynamics.report.training import (load_run, measure_label, plot_paths, plot_run,
                                                     write_accuracy_table)

__all__ = ["load_run", "measure_label", "plot_paths", "plot_run", "write_accuracy_table"]
