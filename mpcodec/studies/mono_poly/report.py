"""report.md of the mono -> poly experiment (the plots are in `plots.py`).

The hypotheses and their tests are in `hypotheses.py`; `render_report_markdown` lays out what they
return, and every number in the report comes from inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mpcodec.core import stats
from mpcodec.metrics.selectivity import LABEL_NAMES
from mpcodec.studies.mono_poly.hypotheses import ARM_NAMES, format_number


def label_counts(labels_SxH) -> dict[str, int]:
  """Number of neurons with each label over all seeds: {"monosemantic": n, "polysemantic": n, "dead": n}."""
  labels = np.asarray(labels_SxH).ravel()
  return {name: int(np.sum(labels == code)) for code, name in enumerate(LABEL_NAMES)}


def _cell_interval(low: float | None, high: float | None) -> str:
  if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
    return "n/a"
  return f"[{format_number(low)}, {format_number(high)}]"


def _hypothesis_table(result: Mapping[str, Any], min_seeds: int) -> list[str]:
  """One row per arm (figures only) and one for the tested per-seed value (its test and verdict)."""
  unit = f", {result['unit']}" if result.get("unit") else ""
  test = result["test"]
  pct = round(100 * test["confidence"])
  lines = [f"| per-seed value{unit} | seeds | mean | {pct}% t interval | k of n seeds show the effect | "
           "Cohen's d_z | p | p, Holm | verdict |", "|---|---|---|---|---|---|---|---|---|"]
  for arm, summary in result["arms"].items():
    what = result["effect"] if arm == "xor" else "the same, neurons grouped by their XOR-arm labels"
    if result["quantity"] == "mean_angle" and arm != "xor":
      what = "phase-1-end minus control-end mean pairwise angle"
    lines.append(f"| {ARM_NAMES[arm]}: {what} | {summary['n']} | {format_number(summary['estimate'])} | "
                 f"{_cell_interval(summary['low'], summary['high'])} | {summary['k_of_n']} of {summary['n']} | "
                 "– | – | – | not tested alone |")
  tested = "XOR minus control" if "control" in result["arms"] else "XOR arm (no control arm)"
  d_z = format_number(test["cohens_dz"]) if test["n"] >= min_seeds else f"not shown (< {min_seeds} seeds)"
  untested = result["verdict"] == "cannot be tested"
  lines.append(f"| **{tested} (tested)** | {test['n']} | {format_number(test['estimate'])} | "
               f"{_cell_interval(test['low'], test['high'])} | {test['k_of_n']} of {test['n']} | {d_z} | "
               f"{'n/a' if untested else format_number(test['p_value'])} | "
               f"{'n/a' if untested else format_number(test['p_adjusted'])} | **{result['verdict_text']}** |")
  return lines


def render_report_markdown(hypotheses: Mapping[str, Any], summary: Mapping[str, Any],
                           design: Mapping[str, Any] | None = None) -> str:
  """report.md text from `hypotheses.test_hypotheses` output, a run summary and the run's design.

  summary: "label_counts": {phase: {label name: count}} (e.g. from `label_counts`), and optionally
  any other scalar entries (seeds, accuracies, ...), listed in a "Run" table in key order.
  design: "smoke" and "no_verdict_reason" (a banner at the top when no verdict may be given), "data"
  and "control" (sentences on what the seeds' intervals cover and on the control arm), and "warnings"
  (lines shown at the top, e.g. a phase that ends at chance).
  """
  results = hypotheses["hypotheses"]
  rules = hypotheses["rules"]
  design = design or {}
  lines = ["# mono -> poly: hypothesis tests across seeds", ""]
  if design.get("smoke"):
    lines += [stats.smoke_banner(design["no_verdict_reason"]), ""]
  for warning in design.get("warnings", ()):
    lines += [f"> **Warning:** {warning}.", ""]
  if design:
    lines += ["## Design", "",
              f"- Seeds: {design['num_seeds']}; {design['data']}.",
              f"- The {design['control']}.",
              f"- Verdicts: {rules['test']}, Holm-adjusted across {', '.join(rules['family'])} at alpha "
              f"{rules['alpha']:g}; a hypothesis needs at least {rules['min_seeds']} seeds with a value, and a "
              "smoke run gives none (\"cannot be tested\").", ""]
  scalars = {k: v for k, v in summary.items() if k != "label_counts" and not isinstance(v, (Mapping, list))}
  if scalars:
    lines += ["## Run", "", "| quantity | value |", "|---|---|"]
    for key, value in scalars.items():
      shown = format_number(value) if isinstance(value, float) else str(value)
      lines.append(f"| {key} | {shown} |")
    lines.append("")
  counts = summary.get("label_counts", {})
  if counts:
    lines += ["## Neuron labels (all seeds)", "",
              "| phase | " + " | ".join(LABEL_NAMES) + " | total |",
              "|---" * (len(LABEL_NAMES) + 2) + "|"]
    for phase, phase_counts in counts.items():
      row = [int(phase_counts.get(name, 0)) for name in LABEL_NAMES]
      lines.append(f"| {phase} | " + " | ".join(str(n) for n in row) + f" | {sum(row)} |")
    lines.append("")
  lines += ["## Hypotheses", ""]
  for name, result in results.items():
    tested = [f"Tested as XOR minus control: {result['tested_claim']}.", ""] if "control" in result["arms"] else []
    lines += [f"### {name}: {result['claim']}", "", *tested, *_hypothesis_table(result, rules["min_seeds"]), "",
              result["statement"], ""]
  lines += ["Each arm's row shows its own figures; only the tested row is tested. k of n: seeds whose value "
            "is above 0 (the predicted sign). Cohen's d_z: the mean of the per-seed values over their SD, "
            f"shown from {rules['min_seeds']} seeds. p: two-sided one-sample t test; p, Holm: adjusted over "
            "the hypotheses that could be tested. The interval is not adjusted.", ""]
  return "\n".join(lines)
