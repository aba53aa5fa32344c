"""The analysis' outputs under `<workdir>/analysis/`: tables, report.json, report.md and the plots.

Files: convergence.csv, jumps.csv, critical_periods.csv, checkpoint_plan.json, mechanisms.csv (effects)
and mechanism_values.csv (every window's values), detector_validity.json, report.json (strict JSON:
NaN and Inf are null), report.md, plots/dashboard.png and plots/architecture_deep_dive.png. Each is
written atomically; none holds a machine path.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import io
from mpcodec.studies.dynamics import critical_analysis, dashboard, jump_analysis, mechanism_effects
from mpcodec.studies.dynamics import stabilisation_analysis
from mpcodec.studies.dynamics.program import FAMILIES
from mpcodec.studies.dynamics.sweep_series import SweepSeries

ANALYSIS_FOLDER = "analysis"
OUTPUT_FILES = ("convergence.csv", "jumps.csv", "critical_periods.csv", "checkpoint_plan.json",
                "mechanisms.csv",
                "mechanism_values.csv", "detector_validity.json", "report.json", "report.md",
                "plots/dashboard.png", "plots/architecture_deep_dive.png")


@dataclasses.dataclass
class Findings:
  """Everything the analysis computed, before anything is written."""

  sweep: SweepSeries
  measures: tuple[str, ...]
  config: dict
  validity: dict
  convergence_rows: list[dict]
  orders: list[dict]
  stable_at_start_S: np.ndarray
  seed_numbers: list[int]
  jumps: dict[str, np.ndarray]
  detection: dict
  types: dict
  critical_rows: list[dict]
  critical_per_run: dict
  critical_effects: list[dict]
  plan: dict
  rerun: dict | None
  mechanisms: dict
  replication: list[dict]
  stage_seconds: dict[str, float]


def _jump_summary(findings: Findings, primary: str) -> dict:
  jumps = findings.jumps
  total = int(np.asarray(jumps["step"]).size)
  num_series = findings.detection["num_series"]
  by_family = {}
  for family in FAMILIES:
    runs = [r for r in findings.sweep.runs if r.family == family]
    if not runs:
      continue
    series = sum(v for (run, _, _), v in num_series.items() if any(r.run == run for r in runs))
    count = int(np.sum(jumps["family"] == family)) if total else 0
    by_family[family] = {"runs": len(runs), "series": series, "jumps": count,
                         "jumps_per_series": count / series if series else None}
  by_measure = {m: int(np.sum(jumps["measure"] == m)) if total else 0 for m in findings.measures}
  fraction = np.asarray(jumps["fraction"], np.float64)
  return {"total": total, "num_series": int(sum(num_series.values())), "by_family": by_family,
          "by_measure": by_measure, "primary_measure": primary,
          "fraction_first_10pct": float(np.mean(fraction < 0.1)) if total else None,
          "fraction_after_50pct": float(np.mean(fraction > 0.5)) if total else None,
          "penalty_tables": findings.detection["penalties"]}


def _runs_section(sweep: SweepSeries) -> list[dict]:
  return [{"run": r.run, "family": r.family, "num_seeds": r.num_seeds, "seeds": r.seeds.tolist(),
           "num_measurements": r.num_measurements, "num_steps": r.num_steps, "layers": list(r.layer_names),
           "ci_unavailable": r.ci_reason} for r in sweep.runs]


def build_report(findings: Findings, primary: str) -> dict[str, Any]:
  """The content of report.json."""
  types = {k: v for k, v in findings.types.items() if k != "labels"}
  orders = [o for o in findings.orders if o["measure"] == primary]
  order_counts = {}
  for order in orders:
    order_counts[order["order"]] = order_counts.get(order["order"], 0) + 1
  plan_runs = findings.plan["runs"]
  return {
      "runs": _runs_section(findings.sweep), "exclusions": findings.sweep.exclusion_summary(),
      "measures": list(findings.measures), "primary_measure": primary, "config": findings.config,
      "convergence": {"orders": findings.orders, "order_counts_primary": order_counts,
                      "fraction_of_runs_all_layers_stable_at_step_0_by_seed": dict(zip(
                          map(str, findings.seed_numbers), findings.stable_at_start_S.tolist()))},
      "jumps": _jump_summary(findings, primary), "jump_types": types,
      "critical_periods": {"effects": findings.critical_effects, "measure": primary,
                           "loss_series": findings.config["loss_series"]},
      "checkpoint_plan": {"runs_with_windows": sum(bool(p["windows"]) for p in plan_runs.values()),
                          "windows": sum(len(p["windows"]) for p in plan_runs.values()),
                          "extra_checkpoints": {r: p["extra_checkpoints"] for r, p in plan_runs.items()}},
      "rerun": findings.rerun,
      "mechanisms": {k: findings.mechanisms[k] for k in ("effects", "answers", "skipped", "reason")},
      "detector_validity": {k: findings.validity.get(k) for k in ("bars", "false_positives_per_1000",
                                                                   "num_measurements")},
      "replication": findings.replication, "seconds": findings.stage_seconds,
  }


def _cell(value: Any, digits: int = 4) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return "" if not np.isfinite(value) else f"{value:.{digits}g}"
  return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
           headers: Sequence[str] | None = None) -> str:
  headers = headers or columns
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(_cell(r.get(c)).replace("|", "/") for c in columns) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def _why_left_out(reasons: Sequence[str]) -> str:
  """'at chance' when every reason is a failed seed (final accuracy below chance + the fail margin),
  'diverged' when none is, 'at chance or diverged' when both occur."""
  failed = [r.startswith("failed") for r in reasons]
  if failed and all(failed):
    return "at chance"
  return "at chance or diverged" if any(failed) else "diverged"


def left_out_counts(exclusions: Mapping[str, Any]) -> dict[str, dict[str, int]]:
  """{"runs": {why: count}, "seeds": {why: count}} of what the analysis left out, why in words.

  A run is "diverged" only when its loss became NaN/Inf; a run whose every seed ended below chance + the
  fail margin is "at chance" (the sweep's records list both among the runs left out)."""
  reasons_by_run: dict[str, list[str]] = {}
  for seed in exclusions["excluded_seeds"]:
    reasons_by_run.setdefault(seed["run"], []).append(seed["reason"])
  runs: dict[str, int] = {}
  for entry in exclusions["diverged_runs"]:
    why = _why_left_out(reasons_by_run.get(entry["run"], []))
    runs[why] = runs.get(why, 0) + 1
  left_out = {entry["run"] for entry in exclusions["diverged_runs"]}
  seeds: dict[str, int] = {}
  for seed in exclusions["excluded_seeds"]:
    if seed["run"] not in left_out:
      why = _why_left_out([seed["reason"]])
      seeds[why] = seeds.get(why, 0) + 1
  return {"runs": runs, "seeds": seeds}


def left_out_text(exclusions: Mapping[str, Any]) -> str:
  """'1 run at chance and 2 seeds (1 at chance, 1 diverged) left out', or 'nothing left out'."""
  counts = left_out_counts(exclusions)
  parts = [f"{n} run{'s' if n != 1 else ''} {why}" for why, n in sorted(counts["runs"].items())]
  seeds = counts["seeds"]
  if seeds:
    total = sum(seeds.values())
    parts.append(f"{total} seed{'s' if total != 1 else ''} of other runs ("
                 + ", ".join(f"{n} {why}" for why, n in sorted(seeds.items())) + ")")
  return (" and ".join(parts) + " left out") if parts else "nothing left out"


def markdown(report: Mapping[str, Any]) -> str:
  """report.md: the replication table first, then every finding with its CI and verdict."""
  exclusions = report["exclusions"]
  parts = ["# Training dynamics: analysis of the sweep\n",
           f"{len(report['runs'])} runs analysed on {report['primary_measure']} (headline) and "
           f"{len(report['measures'])} measures; {left_out_text(exclusions)}"
           + (" (listed in report.json; diverged: the loss became NaN/Inf; at chance: final held-out "
              "accuracy below chance + the fail margin)" if any(left_out_counts(exclusions).values()) else "")
           + ". Intervals are 95% percentile-bootstrap CIs over seeds.\n",
           "## Replication of the earlier study\n",
           _table(report["replication"], ("claim", "claimed", "result", "ci_low", "ci_high", "num_seeds",
                                          "verdict", "reason"),
                  ("claim (quoted)", "claimed", "ours", "CI low", "CI high", "seeds", "verdict", "reason")),
           "## Jump detector validity\n"]
  validity = report["detector_validity"]
  parts.append(f"Planted and null series of {validity.get('num_measurements')} measurements "
               "(detector_validity.json holds recall by noise, layout, position and size).\n\n")
  bars = (validity.get("bars") or {}).items()
  parts.append(_table([{"bar": k, "value": v} for k, v in bars], ("bar", "value")))
  nulls = (validity.get("false_positives_per_1000") or {}).items()
  parts.append("\n" + _table([{"null": k, "value": v} for k, v in nulls],
                             ("null", "value"), ("null series", "false positives per 1,000 measurements")))
  counts = report["convergence"]["order_counts_primary"]
  parts += ["## Convergence order\n",
            ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + " (runs, primary measure)\n\n",
            _table([o for o in report["convergence"]["orders"] if o["measure"] == report["primary_measure"]],
                   ("run", "order", "effect", "ci_low", "ci_high", "num_seeds", "reason")),
            "## Jumps\n"]
  jumps = report["jumps"]
  parts.append(f"{jumps['total']} jumps in {jumps['num_series']} series; "
               f"{_cell(jumps['fraction_first_10pct'])} of them in the first 10% of training, "
               f"{_cell(jumps['fraction_after_50pct'])} after 50%.\n\n")
  parts.append(_table([{"family": f, **v} for f, v in jumps["by_family"].items()],
                      ("family", "runs", "series", "jumps", "jumps_per_series")))
  types = report["jump_types"]
  parts.append("\n### Jump types\n")
  if types["reason"]:
    parts.append(f"Not clustered: {types['reason']}.\n")
  else:
    stability = types["stability"]
    parts.append(f"{types['num_types']} types (silhouette); stability across seed halves: adjusted Rand "
                 f"index {_cell(stability['adjusted_rand_index'])}"
                 f"{' (' + stability['reason'] + ')' if stability.get('reason') else ''}.\n\n")
    parts.append(_table(types["types"], ("type", "name", "count", "mean_step", "mean_abs_relative_size",
                                         "fraction_rising", "mean_duration_steps", "mean_depth_fraction")))
  parts += ["\n## Critical periods\n",
            f"Measure {report['critical_periods']['measure']}; "
            f"loss: {report['critical_periods']['loss_series']}.\n\n",
            _table(report["critical_periods"]["effects"], ("run", "quantity", "observed", "null", "effect",
                                                           "ci_low", "ci_high", "verdict", "reason")),
            "\n## Mechanisms across jumps against matched controls\n"]
  mechanisms = report["mechanisms"]
  parts.append(_table(mechanisms["answers"], ("question", "verdict", "effect", "ci_low", "ci_high",
                                              "num_seeds",
                                              "reason")))
  if mechanisms["reason"]:
    parts.append(f"\nNot measured: {mechanisms['reason']}.\n")
  if report.get("rerun"):
    parts.append("\n## Re-run\n")
    reruns = report["rerun"].items()
    parts.append(_table([{"run": r, **v, "differing": " ".join(v["differing"])} for r, v in reruns],
                        ("run", "identical", "differing")))
  parts.append("\n## Time per stage (s)\n\n" + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items())
               + "\n")
  return "\n".join(parts)


def write_outputs(workdir: str, findings: Findings, primary: str, plots: bool) -> dict[str, Any]:
  """Writes every output file under `<workdir>/analysis/` and returns report.json's content."""
  folder = os.path.join(workdir, ANALYSIS_FOLDER)
  report = build_report(findings, primary)
  io.write_csv(os.path.join(folder, "convergence.csv"), findings.convergence_rows,
               stabilisation_analysis.CONVERGENCE_COLUMNS)
  jump_rows = jump_analysis.jump_rows(findings.jumps, findings.types["labels"])
  io.write_csv(os.path.join(folder, "jumps.csv"), jump_rows,
               jump_analysis.JUMP_COLUMNS)
  io.write_csv(os.path.join(folder, "critical_periods.csv"), findings.critical_rows,
               critical_analysis.CRITICAL_COLUMNS)
  io.write_json(os.path.join(folder, "checkpoint_plan.json"), findings.plan)
  io.write_csv(os.path.join(folder, "mechanisms.csv"), findings.mechanisms["effects"],
               mechanism_effects.MECHANISM_COLUMNS)
  io.write_csv(os.path.join(folder, "mechanism_values.csv"), findings.mechanisms["values"],
               mechanism_effects.VALUE_COLUMNS)
  io.write_json(os.path.join(folder, "detector_validity.json"), findings.validity)
  if plots:
    io.save_figure(dashboard.dashboard_figure(findings, primary),
                   os.path.join(folder, "plots", "dashboard.png"))
    io.save_figure(dashboard.deep_dive_figure(findings, primary),
                   os.path.join(folder, "plots", "architecture_deep_dive.png"))
  report["seconds"] = dict(findings.stage_seconds)
  io.write_text(os.path.join(folder, "report.md"), markdown(report))
  io.write_json(os.path.join(folder, "report.json"), report)   # last: its presence marks a whole analysis
  return report
