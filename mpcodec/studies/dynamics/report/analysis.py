"""The analysis' outputs under `<workdir>/analysis/`: tables, report.json, report.md and the plots.

Files: convergence.csv, jumps.csv, jump_excess.csv (every series' jumps against its matched surrogates),
penalty_curve.csv, critical_periods.csv, checkpoint_plan.json, mechanisms.csv (effects) and
mechanism_values.csv (every window's values), detector_validity.json, report.json (strict JSON: NaN and
Inf are null; "smoke": true when no verdict may be given), report.md (opening with a banner then),
plots/dashboard.png, plots/architecture_deep_dive.png and plots/penalty_curve.png. Each is written
atomically; none holds a machine path.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import io, stats
from mpcodec.studies.dynamics.analyze import critical as critical_analysis
from mpcodec.studies.dynamics.report import dashboard
from mpcodec.studies.dynamics.analyze import jumps as jump_analysis
from mpcodec.studies.dynamics.analyze import mechanisms as mechanism_effects
from mpcodec.studies.dynamics.analyze import stabilisation as stabilisation_analysis
from mpcodec.studies.dynamics.grid import FAMILIES
from mpcodec.studies.dynamics.series import SweepSeries

ANALYSIS_FOLDER = "analysis"
OUTPUT_FILES = ("convergence.csv", "jumps.csv", "jump_excess.csv", "penalty_curve.csv", "critical_periods.csv",
                "checkpoint_plan.json",
                "mechanisms.csv",
                "mechanism_values.csv", "detector_validity.json", "report.json", "report.md",
                "plots/dashboard.png", "plots/architecture_deep_dive.png", "plots/penalty_curve.png")


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
  series: dict[str, np.ndarray]          # every searched series with its expected false jumps
  penalty_curve: list[dict]
  timing: dict[str, np.ndarray]          # per seed: raw and corrected shares of jumps early and late
  hypotheses: list[dict]
  no_verdict_reason: str | None          # why no verdict is given (smoke run, too few seeds), or None


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
  series = findings.series
  for family, values in by_family.items():
    mine = series["family"] == family
    values["expected_false_jumps"] = float(series["expected_false_jumps"][mine].sum())
    values["excess_per_series"] = float(series["excess"][mine].mean()) if mine.any() else None
  seed_mean = lambda name: (float(np.nanmean(findings.timing[name]))
                            if np.isfinite(findings.timing[name]).any() else None)
  return {"total": total, "num_series": int(sum(num_series.values())), "by_family": by_family,
          "by_measure": by_measure, "primary_measure": primary,
          "expected_false_jumps": float(series["expected_false_jumps"].sum()),
          "excess": float(series["excess"].sum()),
          "surrogates_per_series": findings.config["surrogates_per_series"],
          "fraction_first_10pct": float(np.mean(fraction < 0.1)) if total else None,
          "fraction_after_50pct": float(np.mean(fraction > 0.5)) if total else None,
          "timing_by_seed": stats.to_json({"seeds": findings.seed_numbers,
                                           **{k: np.asarray(v).tolist() for k, v in findings.timing.items()}}),
          "fraction_first_10pct_seed_mean": {"raw": seed_mean("first_raw"), "corrected": seed_mean("first_corrected")},
          "fraction_after_50pct_seed_mean": {"raw": seed_mean("late_raw"), "corrected": seed_mean("late_corrected")},
          "penalty_curve": findings.penalty_curve,
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
      "smoke": findings.no_verdict_reason is not None, "no_verdict_reason": findings.no_verdict_reason,
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
                                                                   "num_measurements", "recall_by_position",
                                                                   "position_bin_edges",
                                                                   "false_positives_by_position_per_1000")},
      "hypotheses": findings.hypotheses, "replication": findings.replication,
      "replication_rules": "docs/replication.md", "seconds": findings.stage_seconds,
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
  banner = [stats.smoke_banner(report["no_verdict_reason"]) + "\n"] if report.get("smoke") else []
  parts = banner + ["# Training dynamics: analysis of the sweep\n",
           f"{len(report['runs'])} runs analysed on {report['primary_measure']} (headline) and "
           f"{len(report['measures'])} measures; {left_out_text(exclusions)}"
           + (" (listed in report.json; diverged: the loss became NaN/Inf; at chance: final held-out "
              "accuracy below chance + the fail margin)" if any(left_out_counts(exclusions).values()) else "")
           + ". The seed is the unit: every statistic is computed per seed number over the grid; intervals "
           "are Student t over seeds (`mpcodec.core.stats`, rules in docs/replication.md).\n",
           *_verdict_sections(report),
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
  parts += _jump_sections(report["jumps"])
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
            "Coordination is tested against max(1/L, its circular-shift null) (it is at least 1/L whenever a "
            "layer is critical), the falling-loss fraction against its length-matched base rate; effect = "
            "observed - null per seed, 95% t interval, Holm over the table.\n\n",
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


def _verdict_sections(report: Mapping[str, Any]) -> list[str]:
  """The replication table (TOST against each claim's declared margin, Holm) and the hypotheses."""
  rows = [{**r, "claimed": r["claimed"] if r["claimed"] is not None else
           ("sign > 0" if (r.get("expected_sign") or 0) > 0 else "sign < 0"),
           "margin": (f"+-{_cell(r['margin'])} ({r['margin_kind']})" if r.get("margin") is not None else ""),
           "interval": (f"[{_cell(r['ci_low'])}, {_cell(r['ci_high'])}] ({_cell(100 * r['confidence'], 3)}%)"
                        if r.get("ci_low") is not None else "")} for r in report["replication"]]
  margins = [f"- {r['key']}: {r['margin_reason']}" for r in report["replication"] if r.get("margin_reason")]
  hypotheses = [{**h, "interval": (f"[{_cell(h['low'])}, {_cell(h['high'])}]" if h.get("low") is not None else "")}
                for h in report.get("hypotheses", [])]
  return ["## Replication of the earlier study\n",
          "Each claimed figure is tested for equivalence within its declared margin (TOST: replicates when "
          "the 90% t interval over seeds lies inside claim +- margin, does not replicate when the 95% "
          "interval lies wholly outside), a claimed direction by a t test, Holm over the table; \"raw\" is "
          "the earlier study's own statistic on our data, shown beside and never the verdict. Rules and "
          "margins: docs/replication.md.\n\n",
          _table(rows, ("claim", "claimed", "margin", "result", "interval", "raw_result", "num_seeds", "verdict",
                        "reason"),
                 ("claim (quoted)", "claimed", "margin", "ours", "interval", "raw", "seeds", "verdict",
                  "reason")),
          "\nWhat \"ours\" is, per claim, and each margin's reason:\n\n"
          + "\n".join(f"- {r['key']}: {r['statistic']}" for r in report["replication"]) + "\n\n"
          + "\n".join(margins) + "\n",
          "\n## Hypotheses of this study\n",
          "One family (Holm), each on per-seed values over the grid, two-sided t test, expected sign +.\n\n",
          _table(hypotheses, ("name", "estimate", "interval", "n", "verdict", "reason"),
                 ("hypothesis", "effect", "95% interval", "seeds", "verdict", "reason")),
          "\n"]


def _jump_sections(jumps: Mapping[str, Any]) -> list[str]:
  """The jump counts against matched surrogates and the penalty, and their timing raw and corrected."""
  first, late = jumps["fraction_first_10pct_seed_mean"], jumps["fraction_after_50pct_seed_mean"]
  text = (f"{jumps['total']} jumps in {jumps['num_series']} series; the detector finds "
          f"{_cell(jumps['expected_false_jumps'])} in jump-free surrogates matched to the same series (mean of "
          f"{jumps['surrogates_per_series']} per series: each series' fitted trend and AR(1), same length, "
          f"penalty and minimum size), an excess of {_cell(jumps['excess'])} (jump_excess.csv). Share in "
          f"the first 10% of training, mean over seeds: raw {_cell(first['raw'])}, corrected for the "
          f"detector's recall and false positives by position {_cell(first['corrected'])}; after 50%: raw "
          f"{_cell(late['raw'])}, corrected {_cell(late['corrected'])}.\n\n")
  curve = ("\nJumps against the detector's false-positive target (primary measure; penalty_curve.csv, "
           "plots/penalty_curve.png):\n\n"
           + _table(jumps["penalty_curve"], ("false_positive_target_per_1000", "num_series", "observed_jumps",
                                             "expected_false_jumps", "excess"),
                    ("target per 1,000", "series", "found", "in matched surrogates", "excess")))
  return [text, _table([{"family": f, **v} for f, v in jumps["by_family"].items()],
                       ("family", "runs", "series", "jumps", "jumps_per_series", "expected_false_jumps",
                        "excess_per_series")), curve]


def series_rows(series: Mapping[str, np.ndarray]) -> list[dict]:
  """Rows of jump_excess.csv: every searched series with its observed and expected false jumps."""
  return [{c: series[c][i].item() if hasattr(series[c][i], "item") else series[c][i] for c in jump_analysis.SERIES_COLUMNS}
          for i in range(series["run"].size)]


def jump_rows(jumps: dict[str, np.ndarray], labels_J: np.ndarray) -> list[dict]:
  """The jump table as rows of jumps.csv (type = -1 / empty when the jumps were not clustered)."""
  count = int(np.asarray(jumps["step"]).size)
  return [{**{c: jumps[c][j] for c in jump_analysis.JUMP_COLUMNS if c != "type"},
           "type": int(labels_J[j]) if labels_J[j] >= 0 else None} for j in range(count)]


def write_outputs(workdir: str, findings: Findings, primary: str, plots: bool) -> dict[str, Any]:
  """Writes every output file under `<workdir>/analysis/` and returns report.json's content."""
  folder = os.path.join(workdir, ANALYSIS_FOLDER)
  report = build_report(findings, primary)
  io.write_csv(os.path.join(folder, "convergence.csv"), findings.convergence_rows,
               stabilisation_analysis.CONVERGENCE_COLUMNS)
  rows_J = jump_rows(findings.jumps, findings.types["labels"])
  io.write_csv(os.path.join(folder, "jumps.csv"), rows_J,
               jump_analysis.JUMP_COLUMNS)
  io.write_csv(os.path.join(folder, "jump_excess.csv"), series_rows(findings.series),
               jump_analysis.SERIES_COLUMNS)
  io.write_csv(os.path.join(folder, "penalty_curve.csv"), findings.penalty_curve,
               jump_analysis.PENALTY_CURVE_COLUMNS)
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
    io.save_figure(dashboard.penalty_curve_figure(findings.penalty_curve),
                   os.path.join(folder, "plots", "penalty_curve.png"))
  report["seconds"] = dict(findings.stage_seconds)
  io.write_text(os.path.join(folder, "report.md"), markdown(report))
  io.write_json(os.path.join(folder, "report.json"), report)   # last: its presence marks a whole analysis
  return report
