"""The findings page's sections: how each published study's report.json, run.json and config.json read as
Markdown (results.findings assembles them). Every number comes from those files."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# ---------------------------------------------------------------------------------------------------- numbers


def num(x: Any, digits: int = 3) -> str:
  """A number to `digits` significant figures; None or NaN as 'n/a'; small p-values as '< 1e-6'."""
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "n/a"
  if isinstance(x, bool):
    return str(x).lower()
  if isinstance(x, int):
    return f"{x:,}"
  if x == 0:
    return "0"
  text = f"{x:.{digits}g}"
  if "e" in text:
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"
  return text


def p_text(p: Any) -> str:
  if p is None:
    return "n/a"
  return "< 1e-6" if p < 1e-6 else num(p, 2)


def interval(low: Any, high: Any, digits: int = 3) -> str:
  return f"[{num(low, digits)}, {num(high, digits)}]"


def minutes(seconds: float) -> str:
  return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def cost_lines(run: Mapping[str, Any], source: str = "run.json") -> list[str]:
  """The run's cost and provenance: command, commit, machine, wall and CPU time, peak memory."""
  machine = run["machine"]
  parts = [f"{minutes(run['wall_time_s'])} wall"]
  if run.get("earlier_stages_wall_time_s"):
    earlier = run["earlier_stages_wall_time_s"]
    parts = [f"{minutes(run['wall_time_s'] + earlier)} wall in all ({minutes(earlier)} for the stages an earlier "
             f"launch of the same workdir finished, reused, and {minutes(run['wall_time_s'])} for this launch)"]
  if "user_cpu_s" in run:
    parts.append(f"{minutes(run['user_cpu_s'] + run.get('system_cpu_s', 0.0))} CPU")
  if "peak_rss_mb" in run:
    parts.append(f"{run['peak_rss_mb'] / 1024:.1f} GB peak memory")
  commit = run["commit"][:12] + (" (with uncommitted changes)" if run["dirty"] else "")
  return [f"- **Cost**: {', '.join(parts)} on {machine['logical_cores']} cores of an {machine['cpu_model']} "
          f"shared with other work (absolute times vary with the load; `{source}`).",
          f"- **Command** (commit {commit}): `{run['command']}`"] + (
              [f"- **How it was run**: {run['note']}"] if run.get("note") else [])


# ---------------------------------------------------------------------------------------------------- studies


def mono_poly_section(report: Mapping[str, Any], run: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
  design, summary = report["design"], report["summary"]
  labels = summary["label_counts"]
  lines = [
      f"{design['num_seeds']} seeds, "
      + ("each with its own data draw and minibatch order" if design["data_per_seed"] else "one shared dataset")
      + (", with a control arm that continues the same end-of-phase-1 network on orientation; each hypothesis "
         "is tested on XOR minus control per seed (Student t over seeds, Holm over H1-H3)."
         if design["control_arm"] else ", without a control arm."),
      f"Phase-2 test accuracy {num(summary['phase2 test accuracy, mean over seeds'], 4)} (lowest seed "
      f"{num(summary['phase2 test accuracy, lowest seed'], 4)}); neurons monosemantic / polysemantic / dead: "
      + "; ".join(f"{phase} {c['monosemantic']} / {c['polysemantic']} / {c['dead']}" for phase, c in labels.items())
      + ".", "",
      "| hypothesis | XOR arm [95% t CI], k of n | control arm [95% t CI] | XOR − control [95% t CI], k of n, "
      "d_z | p (Holm) | verdict |", "|---|---|---|---|---|---|"]
  notes = []
  for name, h in report["hypotheses"].items():
    xor, control, test = h["arms"]["xor"], h["arms"]["control"], h["test"]
    unit = f" ({h['unit']})" if h["unit"] else ""
    lines.append(
        f"| {name}: {h['claim']}{unit} | {num(xor['estimate'])} {interval(xor['low'], xor['high'])}, "
        f"{xor['k_of_n']} of {xor['n']} | {num(control['estimate'])} {interval(control['low'], control['high'])} | "
        f"{num(test['estimate'])} {interval(test['low'], test['high'])}, {test['k_of_n']} of {test['n']}, "
        f"{num(test['cohens_dz'], 2)} | {p_text(test['p_value'])} ({p_text(test['p_adjusted'])}) | "
        f"**{h['verdict']}** |")
    if h["verdict"] == "supported" and xor["estimate"] * h["expected_sign"] <= 0:
      notes.append(f"{name} is supported as tested (XOR minus control) but not as worded: in the XOR arm alone "
                   f"the effect points the other way (mean {num(xor['estimate'])}, {xor['k_of_n']} of "
                   f"{xor['n']} seeds with the predicted sign).")
    if h["num_seeds_excluded"]:
      notes.append(f"{name}: {h['num_seeds_excluded']} seeds lacked a polysemantic or a monosemantic neuron "
                   "and were left out.")
  lines.append("")
  supported = [n for n, h in report["hypotheses"].items() if h["verdict"] == "supported"]
  others = [f"{n} ({h['verdict']})" for n, h in report["hypotheses"].items() if h["verdict"] != "supported"]
  lines.append("- **Replication**: the earlier work is an experiment design whose predictions are H1-H3 "
               "(docs/replication.md, section 1); "
               + (f"{', '.join(supported)} supported" if supported else "none supported")
               + (f"; {', '.join(others)}" if others else "") + ".")
  lines += [f"- {note}" for note in notes]
  widths = " x ".join(str(w) for w in config["model"]["hidden_widths"])
  lines += [f"- **Limits**: one architecture (hidden ReLU layers of {widths} neurons) and one pair of "
            "concepts on synthetic bars; a neuron's label depends on the CRS threshold "
            "(`analysis.poly_threshold`); the control arm rules out \"more training\" but not every "
            "difference between the two tasks (XOR of the two concepts is not linearly separable; orientation is)."]
  return lines + cost_lines(run)


def toy_superposition_section(report: Mapping[str, Any], run: Mapping[str, Any],
                              config: Mapping[str, Any]) -> list[str]:
  cfg = report["config"]
  n, m, seeds = cfg["train"]["num_features"], cfg["train"]["hidden_dim"], cfg["num_seeds"]
  pentagon, dense, privileged = report["pentagon"], report["dense"], report["privileged_basis"]
  rows = report["phase_diagram"]["rows"]
  dims = [d for seed in pentagon["feature_dimensionality"] for d in seed]
  gaps = [g for seed in pentagon["angle_gaps_degrees"] for g in seed]
  lines = [
      f"{seeds} seeds per cell (best of {cfg['train']['num_restarts']} restarts each). Elhage et al. (2022) report, for these toy models: "
      "sparse features of equal importance stored by n = 5 features in m = 2 dimensions as a regular "
      "pentagon; dense features stored as the m most important ones, the rest dropped; in the n = 2, m = 1 "
      "model, dense features give feature 2 its own dimension or nothing by importance, while sparse "
      "features of similar importance share the dimension as an antipodal pair (superposition), a region "
      "that widens as features get sparser; with a ReLU on the hidden layer (a privileged basis), neurons "
      "are monosemantic for dense features and hold more features as features get sparser. Ours:", "",
      "| earlier finding (Elhage et al. 2022) | this run |", "|---|---|",
      f"| n = {n}, m = {m}, sparse (S = {num(cfg['pentagon_sparsity'])}): a regular pentagon, D_i = "
      f"{num(pentagon['expected_feature_dimensionality'])} | {pentagon['num_seeds_regular_polygon']} of {seeds} "
      f"seeds form a regular {n}-gon; D_i {num(min(dims))}..{num(max(dims))}, gaps "
      f"{num(min(gaps))}..{num(max(gaps))}° |",
      f"| dense features: the m = {m} most important represented, the rest dropped | "
      f"{dense['num_seeds_exactly_top_m']} of {seeds} seeds represent exactly those {m} |"]
  lines += _phase_diagram_rows(rows)
  trend = privileged["features_per_neuron_trend"]
  pb = cfg["privileged_basis"]["train"]
  densest_mean = sum(trend["densest_per_seed"]) / len(trend["densest_per_seed"])
  sparsest_mean = sum(trend["sparsest_per_seed"]) / len(trend["sparsest_per_seed"])
  lines += [
      f"| privileged basis (n = {pb['num_features']}, m = {pb['hidden_dim']}): monosemantic neurons for dense "
      f"features | S = {num(trend['densest_sparsity'])}: {privileged['num_seeds_densest_monosemantic_top_m']} "
      f"of {seeds} seeds with every neuron monosemantic on the {pb['hidden_dim']} most important features; "
      f"features per neuron {num(densest_mean)} (seed mean) |",
      f"| privileged basis: more features per neuron as features get sparser | S = "
      f"{num(trend['sparsest_sparsity'])}: {num(sparsest_mean)}; higher than at S = "
      f"{num(trend['densest_sparsity'])} on {trend['num_seeds_higher_when_sparsest']} of {seeds} seeds; the "
      f"seed mean {'rises monotonically' if trend['mean_is_monotone_in_sparsity'] else 'does not rise monotonically'}"
      f" with sparsity and peaks at S = {num(trend['peak_sparsity'])} ({num(trend['peak_mean'])}) |", "",
      "- **Replication**: set beside the published figures as facts; the toy study declares no margins or "
      "statistical verdicts (its checks are counts of seeds meeting geometric criteria, stated in its report).",
      f"- **Limits**: {seeds} seeds, no intervals; the geometric criteria (tolerances on D_i, on the angle gaps "
      "and on a neuron's features per neuron, in the study's report code) are the study's own; the phase diagram's classes are majorities over the seeds of a "
      "cell; the comparison with the paper's figures is qualitative (their plots, not their numbers).",
      *cost_lines(run)]
  return lines


def _phase_diagram_rows(rows: list[Mapping[str, Any]]) -> list[str]:
  """Table rows comparing the n = 2, m = 1 phase diagram with the published shape."""
  dense = [r for r in rows if r["feature_density"] == max(x["feature_density"] for x in rows)]
  below = [r for r in dense if r["relative_importance"] < 1]
  above = [r for r in dense if r["relative_importance"] > 1]
  densities = sorted({r["feature_density"] for r in rows}, reverse=True)
  per_density = [sum(r["majority_class"] == "superposition" for r in rows if r["feature_density"] == d)
                 for d in densities]
  return [
      f"| n = 2, m = 1, dense (density {num(dense[0]['feature_density'])}): feature 2 dropped when less "
      "important, its own dimension when more | "
      f"'not represented' in {sum(r['majority_class'] == 'not represented' for r in below)} of {len(below)} cells "
      f"with importance < 1; 'dedicated dimension' in "
      f"{sum(r['majority_class'] == 'dedicated dimension' for r in above)} of {len(above)} with importance > 1 |",
      "| n = 2, m = 1: superposition for sparse features of similar importance, widening with sparsity | "
      "cells whose majority is superposition, per density from dense to sparse ("
      + ", ".join(num(d) for d in densities) + "): " + ", ".join(str(c) for c in per_density)
      + f" of {len(rows) // len(densities)} |"]


def _codec_tables(block: Mapping[str, Any]) -> list[str]:
  """The codec's hypothesis table and replication table (the `codec` block of a report, or a ground-truth
  report itself), with the replication counts and what could not be tested."""
  lines = ["| hypothesis | effect [95% t CI] | p (Holm) | verdict |", "|---|---|---|---|"]
  for name, h in block["hypotheses"].items():
    if h.get("effect") is None:
      lines.append(f"| {name}: {h.get('hypothesis') or ''} | — | — | **{h['verdict']}** ({h.get('reason')}) |")
      continue
    ci = h.get("ci") or [None, None]
    lines.append(f"| {name}: {h.get('hypothesis') or ''} | {num(h.get('effect'))} {interval(*ci)} | "
                 f"{p_text(h.get('p_value'))} ({p_text(h.get('p_adjusted'))}) | **{h['verdict']}** |")
  lines += ["", "Replication table (equivalence within the declared margins, Holm over the table):", ""]
  lines += _replication_rows(block["replication"])
  atlas = block.get("atlas") or {}
  if atlas:
    lines += ["", f"Beside the table, without a verdict: {atlas['claim']}: {atlas['ours']} ({atlas['note']})."]
  lines += ["", "- **Replication**: " + _counts([row["verdict"] for row in block["replication"]]) + " of "
            f"{len(block['replication'])} claims."]
  themes = block.get("themes_found")
  if isinstance(themes, Mapping):
    lines.append("- Themes, per clustering input: " + "; ".join(f"{k}: {v}" for k, v in themes.items()) + ".")
  elif themes is not None:
    lines.append(f"- Themes: {themes}.")
  untestable = [f"{row['key']} ({row['reason']})" for row in block["replication"]
                if row["verdict"] == "cannot be tested"]
  if untestable:
    lines.append("- Not testable in this run: " + "; ".join(untestable) + ".")
  return lines


def _replication_rows(rows: list[Mapping[str, Any]]) -> list[str]:
  lines = ["| claim of the earlier work | claimed | ours | margin | verdict |", "|---|---|---|---|---|"]
  for row in rows:
    lines.append(f"| {row['claim']} | {row['claimed']} | {row['ours']} | {row['margin'] or '—'} | "
                 f"**{row['verdict']}** |")
  return lines


def codec_section(report: Mapping[str, Any], run: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
  gt = config["source"]["ground_truth"]
  lines = [
      f"{report['num_seeds']} seeds; the source: {gt['num_atoms']} known atoms in {gt['dim']} dimensions, "
      f"{gt['k_true']} active per token; an SAE of {config['sae']['num_latents']} latents (k = "
      f"{config['sae']['k']}) decompresses it and a Squeezer (K grid "
      f"{', '.join(str(k) for k in config['squeezer_k_grid'])}) re-compresses the latents. Every finding is "
      "the trained Squeezer's value minus the strongest null of its seed (untrained and shuffled-latent "
      "Squeezers among them); Holm over the study's hypotheses.", ""]
  lines += _codec_tables(report)
  lines += ["- **Limits**: the source is synthetic (known atoms, planted themes), so the findings say what "
            "the pipeline recovers where the truth is known, not what a language model does; the earlier "
            "work's dead-latent setting is a separate, expensive run (`:dead_latents`) not included here.",
            *cost_lines(run)]
  return lines


def codec_text_section(report: Mapping[str, Any], run: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
  """A codec run on a real model's layer (MiniLM, SmolLM2): the compression-rule analysis on its neurons
  (the `codec` block), then the downstream claims (steering, detection, generation) with their verdicts."""
  text, sae = config["source"]["text"], config["sae"]
  lines = [
      f"{report['num_seeds']} SAE seeds on `{text['layer']}` of {text['model']} over {text['corpus']} "
      f"({num(text['limit']) + ' items' if text.get('limit') else 'all its items'}, truncated to "
      f"{text['max_length']} tokens); an "
      f"SAE of {num(sae['num_latents'])} latents (k = {sae['k']}), the Squeezer ("
      f"{'K grid ' + ', '.join(map(str, config['squeezer_k_grid'])) if config['squeezer_k_grid'] else 'K = ' + str(config['squeezer']['k'])}"
      f") back into the layer's width; stages: "
      f"{', '.join(config['stages'])}. Every finding is set against the strongest null of its seed; Holm "
      "within each family.", "", "**The compression rules on the model's neurons:**", ""]
  lines += _codec_tables(report["codec"])
  lines += ["", "**Downstream claims** (per-seed values, Student t over seeds, Holm within the family):", "",
            "| hypothesis | estimate [95% t CI] | p (Holm) | verdict |", "|---|---|---|---|"]
  for name, h in report["hypotheses"].items():
    if h.get("estimate") is None:
      lines.append(f"| {name}: {h['hypothesis']} | — | — | **{h['verdict']}** ({h.get('reason')}) |")
      continue
    lines.append(f"| {name}: {h['hypothesis']} | {num(h['estimate'])} {interval(h.get('low'), h.get('high'))} | "
                 f"{p_text(h.get('p_value'))} ({p_text(h.get('p_adjusted'))}) | **{h['verdict']}** |")
  lines += ["", "The earlier work's claims on this model:", ""] + _replication_rows(report["replication"])
  untestable = [f"{row['key']} ({row['reason']})" for row in report["replication"]
                if row["verdict"] == "cannot be tested"]
  lines += ["", "- **Replication**: " + _counts([row["verdict"] for row in report["replication"]]) + " of "
            f"{len(report['replication'])} claims."]
  if untestable:
    lines.append("- Not testable in this run: " + "; ".join(untestable) + ".")
  converged = report["codec"].get("training_converged")
  if converged:   # runs published before the check existed do not say
    unsettled = [stage for stage, settled in converged.items() if settled is False]
    lines.append("- **Training**: " + (f"the {' and the '.join(s.upper() if s == 'sae' else s.capitalize() for s in unsettled)} "
                 "had not converged in every run (FVU or dead fraction still moving over the last 20% of steps; "
                 "see report.md), so the findings describe codes that were still changing." if unsettled else
                 "converged in every run (FVU and dead fraction settled over the last 20% of steps)."))
  lines += ["- **Limits**: one layer of one model, over one corpus, at the settings above (see the config); the "
            "earlier work's claims were made on GPT-2 Small, so a claim that does not replicate here may hold "
            "there.", *cost_lines(run)]
  return lines


def _dynamics_replication_rows(rows: list[Mapping[str, Any]]) -> list[str]:
  lines = ["| claim of the earlier work | claimed | ours | margin | verdict |", "|---|---|---|---|---|"]
  for row in rows:
    ours = num(row.get("result"))
    if row.get("ci_low") is not None and row.get("ci_high") is not None:
      ours += f" {interval(row['ci_low'], row['ci_high'])} ({row['confidence']:.0%} t interval, {row['num_seeds']} seeds)"
    margin = "—"
    if row.get("margin") is not None:   # a relative margin is stored as its width around the claimed value
      margin = (f"+-{num(row['margin'])} ({row['margin'] / row['claimed']:.0%} of the claim)"
                if row["margin_kind"] == "relative" and row.get("claimed") else f"+-{num(row['margin'])}")
    verdict = f"**{row['verdict']}**" + (f" ({row['reason']})" if row["verdict"] == "cannot be tested" else "")
    claimed = row["claimed"]
    claimed = int(claimed) if isinstance(claimed, float) and claimed.is_integer() and claimed > 1 else claimed
    lines.append(f"| {row['claim']} | {num(claimed)} | {ours} | {margin} | {verdict} |")
  return lines


def dynamics_section(report: Mapping[str, Any], run: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
  """The dynamics grid: what was trained, the hypotheses against their nulls, the replication table."""
  base, runs = config["base"], report["runs"]
  families: dict[str, int] = {}
  for entry in runs:
    families[entry["family"]] = families.get(entry["family"], 0) + 1
  excluded = report["exclusions"]
  lines = [
      f"{len(runs)} configurations ({', '.join(f'{n} {f}' for f, n in sorted(families.items()))}), "
      f"{base['num_seeds']} seeds x {base['num_steps']:,} steps each; every {base['measure_every']} steps each "
      f"layer's participation ratio, effective rank, stable rank, components for 90% and TwoNN dimension on "
      f"held-out and training probes. Primary measure: {report['primary_measure']}. Left out: "
      f"{excluded['num_diverged_runs']} run(s) that diverged or failed on every seed, "
      f"{excluded['num_excluded_seeds']} seed(s) below chance + margin or non-finite.", "",
      "| hypothesis | estimate [95% t CI] | p (Holm) | verdict |", "|---|---|---|---|"]
  for h in report["hypotheses"]:
    if h.get("p_value") is None:
      lines.append(f"| {h['name']} | — | — | **{h['verdict']}** ({h.get('reason')}) |")
      continue
    lines.append(f"| {h['name']} | {num(h['estimate'])} {interval(h.get('low'), h.get('high'))} | "
                 f"{p_text(h.get('p_value'))} ({p_text(h.get('p_adjusted'))}) | **{h['verdict']}** |")
  lines += ["", "The earlier repository's figures (equivalence within the declared margins, Holm over the table):",
            "", *_dynamics_replication_rows(report["replication"]), "",
            "- **Replication**: " + _counts([row["verdict"] for row in report["replication"]]) + " of "
            f"{len(report['replication'])} claims."]
  bars = report["detector_validity"]["bars"]
  lines.append(f"- **The jump detector** {'passed' if bars['passed'] else 'did not pass'} its validity bars "
               f"(false positives at most {num(bars['false_positive_bar_per_1000'])} per 1,000 measurements on "
               f"null series: {num(bars['false_positives_per_1000_max_on_nulls'])}; recall of 2-SD steps on "
               f"white noise {num(bars['recall_white_min_at_2sd_and_more'])}, bar {num(bars['recall_bar'])}).")
  lines += ["- **Limits**: small models on small inputs (MNIST-like images, AG News), 2,000 steps; the probes are a "
            "few hundred examples, so rank-based measures of wide layers are capped by the probe size (flagged "
            "per run in report.md).", *cost_lines(run)]
  return lines


def dynamics_cost_note(cost: Mapping[str, Any]) -> str:
  """What the timed part of the dynamics grid was, read from its resolved config."""
  base = cost["config"]["base"]
  runs = cost["shard"]["runs"] if cost.get("shard") else cost["config"]["runs"]
  shard = f" (shard {cost['shard']['index']}/{cost['shard']['count']})" if cost.get("shard") else ""
  text = (f"- That part{shard}: {len(runs)} configuration{'s' if len(runs) != 1 else ''} ({', '.join(runs)}), "
          f"{base['num_seeds']} seeds x {base['num_steps']:,} steps.")
  own = {"dynamics/" + run.replace("@", "__") + ".npz" for run in runs}
  published = [path for path in cost.get("series", []) if path in own]
  if published:
    text += (f" The measured series of the {len(published)} configuration{'s' if len(published) != 1 else ''} "
             "it finished are committed in `results/dynamics/dynamics/`, where later parts continue.")
  return text



def _counts(verdicts: list[str]) -> str:
  counts: dict[str, int] = {}
  for verdict in verdicts:
    counts[verdict] = counts.get(verdict, 0) + 1
  return ", ".join(f"{count} {verdict}" for verdict, count in counts.items())


def verdict_summary(key: str, report: Mapping[str, Any]) -> str:
  """One table cell: the verdicts of a published study (hypotheses; the replication table's claims)."""
  if key == "mono_poly":
    return "; ".join(f"{name} {h['verdict']}" for name, h in report["hypotheses"].items())
  if key == "codec_ground_truth":
    return (f"hypotheses: {_counts([h['verdict'] for h in report['hypotheses'].values()])}; claims: "
            f"{_counts([row['verdict'] for row in report['replication']])}")
  if key == "dynamics":
    return (f"hypotheses: {_counts([h['verdict'] for h in report['hypotheses']])}; claims: "
            f"{_counts([row['verdict'] for row in report['replication']])}")
  if key == "toy_superposition":
    return "geometry beside the published figures (no statistical verdicts)"
  if key in ("codec_minilm", "codec_smollm2"):
    return (f"rules: {_counts([row['verdict'] for row in report['codec']['replication']])}; downstream claims: "
            f"{_counts([row['verdict'] for row in report['replication']])}")
  return "see its section"
