"""The downstream text stages' part of report.md: the replication table, the hypotheses, reconstruction,
themes on real text, steering and detection, every number read from their payloads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mpcodec.core import stats
from mpcodec.studies.codec.text_claims import verdict_text
from mpcodec.studies.codec.text_plots import METHOD_ORDER



def _fmt(ci: Mapping[str, Any] | str | None, digits: int = 3) -> str:
  if isinstance(ci, str):
    return ci
  if not ci or ci.get("mean") is None:
    return "n/a"
  text = f"{ci['mean']:.{digits}f}"
  if ci.get("low") is not None:
    text += f" [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]"
  return text


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  """A markdown table; a "|" inside a cell is escaped so that it cannot split the cell."""
  return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
          + ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows] + [""])


def replication_rows(claims: Sequence[Mapping[str, Any]]) -> list[list[str]]:
  """The replication table's cells: claim, claimed, ours, margin, our statistic, verdict, why."""
  return [[c["claim"], str(c["claimed"]), c["ours"], c["margin"],
           c["statistic"] + (f"; {c['note']}" if c.get("note") else ""), verdict_text(c),
           c["reason"] if c["verdict"] != "cannot be tested" else "-"]
          for c in claims]


def _hypothesis_rows(found: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
  rows = []
  for name, h in found.items():
    effect = _fmt({"mean": h.get("estimate"), "low": h.get("low"), "high": h.get("high")})
    left_out = f", {h['num_seeds_left_out']} left out" if h.get("num_seeds_left_out") else ""
    rows.append([name, h["hypothesis"], f"{effect} ({h.get('n', 0)} seeds{left_out})",
                 f"{h.get('k_of_n', 0)}/{h.get('n', 0)}", verdict_text(h),
                 h["reason"] if h["verdict"] != "cannot be tested" else "-"])
  return rows


def _theme_count_text(themes: Mapping[str, Any], analysis_themes: Mapping[str, Any] | None) -> str:
  """Which clustering gave the number of themes here, and the other clustering's count (a different one).

  This section's themes (metrics/themes_text.json) are what steering and detection use; the codec
  section's "roommates share a theme" finding clusters the same kind of rows again, over its own range
  of theme counts on the analysis window (metrics/analysis.json, themes.recovery)."""
  tried = ", ".join(str(k) for k in sorted(themes.get("scores") or {}, key=float))
  text = (f"{themes['num_themes']} themes: the number the {themes.get('criterion') or 'criterion'} chose"
          + (f" among {tried} (`themes.k_range`)" if tried else "")
          + f", from {themes['method']} clustering of the {themes['vectors']} rows of SAE run k={themes['k']} "
          "seed 0; steering and detection use these themes.")
  counts = [count for entry in (analysis_themes or {}).get("recovery", [])
            if entry.get("input") == themes["vectors"] and entry.get("sae_k") == themes["k"]
            for count in entry.get("num_themes", [])]
  if counts:
    per_seed = ", ".join(str(c) for c in counts)
    text += (f" The codec section's theme finding (roommates share a theme) uses a separate clustering of "
             f"the same rows over `codec.analysis.theme_k_range` on the analysis window: {per_seed} "
             f"theme(s) for SAE k={themes['k']} (per seed).")
  else:
    text += (" The codec section's theme finding (roommates share a theme) uses a separate clustering over "
             "`codec.analysis.theme_k_range`, whose count is in metrics/analysis.json (themes.recovery).")
  return text


def report_markdown(*, source: str, reconstruction: Mapping[str, Any] | None, themes: Mapping[str, Any] | None,
                    steering: Mapping[str, Any] | None, detection: Mapping[str, Any] | None,
                    claims: Sequence[Mapping[str, Any]], hypotheses: Mapping[str, Mapping[str, Any]],
                    analysis_note: str, analysis_themes: Mapping[str, Any] | None = None,
                    no_verdict: str | None = None, model_title: str = "MiniLM (all-MiniLM-L6-v2)") -> str:
  """The study's part of report.md; `claims`: `replication_table` rows; `hypotheses`: `hypotheses()`;
  `analysis_themes`: the analysis payload's themes section (its theme counts); `no_verdict`: why the run
  gives no verdict (the caller puts the banner at the top of the file); `model_title`: the text model's name
  in the title. A stage that did not run (its payload
  None: not in `config.stages`) has a one-line section saying so."""
  tested = [c for c in claims if c["verdict"] != "cannot be tested"]
  lines = [f"# The codec on {model_title}", "", f"Source: {source}.", "",
           "## Replication table", "",
           "Each claimed figure is tested by equivalence within its declared margin (TOST over SAE seeds at "
           f"alpha = {stats.ALPHA:g}: replicates when the 90% t interval lies inside the band, does not when the "
           "95% interval lies wholly outside it; ratios on the log scale); the Validation Hypothesis as a "
           f"direction; Holm over the table's tested claims ({len(tested)} in this run). SAE seeds share the "
           "documents, the probe and the detection splits. "
           + (f"Steering is read at the strength fixed in the config before the run (α = "
              f"{steering['reference_strength']:g}). " if steering else "")
           + "Margins and their reasons: docs/replication.md (section 3) and report.json.", ""]
  if no_verdict:
    lines += [f"No verdict: {no_verdict}; every row reads \"cannot be tested\".", ""]
  lines += _table(["earlier claim", "claimed", "ours", "margin", "our statistic", "verdict", "why"],
                  replication_rows(claims))
  lines += ["## Hypotheses", "",
            f"Per-seed effects, one-sample t test over SAE seeds, Holm over the {len(hypotheses)} (one family); "
            "the random control is the mean over same-norm random directions drawn for each seed.", ""]
  lines += _table(["name", "hypothesis", "effect [95% t interval]", "seeds with the predicted sign", "verdict",
                   "test"], _hypothesis_rows(hypotheses))
  lines += [analysis_note, ""]
  lines += (_reconstruction(reconstruction) + _themes(themes, analysis_themes) + _steering(steering, themes)
            + _detection(detection, themes, hypotheses))
  return "\n".join(lines)


def _not_run(title: str, stage: str) -> list[str]:
  return [f"## {title}", "", f"Not run (`{stage}` is not in `config.stages`).", ""]


def _reconstruction(reconstruction: Mapping[str, Any] | None) -> list[str]:
  if reconstruction is None:
    return _not_run("Reconstruction quality (held-out documents)", "reconstruction")
  lines = ["## Reconstruction quality (held-out documents)", "",
            "FVU, L0 and dead fraction on held-out tokens; splicing replaces the layer by the SAE's "
            "reconstruction at every real token; mean ablation replaces it by the mean activation. Probe "
            "accuracy recovered = (spliced − ablated) / (clean − ablated), the encoder's analogue of CE loss "
            "recovered.", ""]
  lines += _table(["k", "seed", "FVU", "L0", "dead", "cos(spliced, clean)", "acc clean", "acc spliced",
                   "acc ablated", "recovered"],
                  [[r["k"], r["seed_index"], f"{r['fvu']:.3f}", f"{r['l0']:.1f}", f"{r['dead_fraction']:.3f}",
                    f"{r['spliced_cosine']:.4f}", f"{r['accuracy_clean']:.3f}",
                    f"{r['accuracy_spliced']:.3f}",
                    f"{r['accuracy_ablated']:.3f}",
                    "n/a" if r["accuracy_recovered"] is None else f"{r['accuracy_recovered']:.3f}"]
                   for r in reconstruction["runs"]])
  return lines


def _themes(themes: Mapping[str, Any] | None, analysis_themes: Mapping[str, Any] | None) -> list[str]:
  if themes is None:
    return _not_run("Themes on real text", "themes_text")
  lines = ["## Themes on real text", "",
            _theme_count_text(themes, analysis_themes)
            + f" Rows: the most target-selective ({themes['target_class']}) first. "
            "Mean activation per class: the theme's activation maxed over each document's tokens, averaged "
            "over the class. All themes: `metrics/themes_text.json`.", ""]
  classes = themes["class_names"]
  lines += _table(["theme", "atoms", "d (target)", "top tokens"] + list(classes),
                  [[t["theme"], t["size"], f"{t['target_selectivity']:.2f}",
                    " ".join(t["top_tokens"][:8]) or "none"]
                   + [f"{v:.3f}" for v in t["mean_max_by_class"]] for t in themes["themes"][:12]])
  return lines


def _steering(steering: Mapping[str, Any] | None, themes: Mapping[str, Any]) -> list[str]:
  if steering is None:
    return _not_run("Thematic steering", "steering")
  ref = steering["reference_strength"]
  methods = [m for m in METHOD_ORDER if m in steering["sets"]["steering"]]
  lines = ["## Thematic steering", "",
            f"Target class {themes['target_class']}; vectors added at every real token with norm α‖x_t‖, so every "
            f"vector, the random control's {steering.get('random_directions')} directions per seed included, "
            "moves the activations equally far. Mean [95% t interval over SAE seeds]. Plots: "
            "`plots/steering.png` (target probability, KL and drift against α), `plots/snr.png`.", ""]
  rows = []
  for a, strength in enumerate(steering["strengths"]):
    for method in methods:
      tgt, neu = steering["sets"]["steering"][method], steering["sets"]["neutral"][method]
      rows.append([f"{strength:g}" + (" (reference)" if strength == ref else ""), method,
                   _fmt(tgt["p_target_clean"][a]), _fmt(tgt["p_target_steered"][a]),
                   _fmt(tgt["p_target_ratio"][a], 2), _fmt(neu["kl"][a], 4), _fmt(neu["drift"][a], 4),
                   _fmt(tgt["snr"][a], 2)])
  lines += _table(["α", "vector", "p(target) clean", "p(target) steered", "ratio", "KL neutral",
                   "drift neutral", "SNR"], rows)
  lines += [f"Claims and hypotheses are read at α = {ref:g}, fixed in the config (`steering.reference_strength`) "
            "before the run; the other strengths are a descriptive curve and choose nothing. The SNR law is "
            f"measured at α = {steering.get('snr_strength', ref):g} (`steering.snr_strength`).", ""]
  return lines


def _detection(detection: Mapping[str, Any] | None, themes: Mapping[str, Any],
               hypotheses: Mapping[str, Mapping[str, Any]]) -> list[str]:
  if detection is None:
    return _not_run("Detecting an AG News class", "detection")
  target = detection.get("target_class", themes["target_class"])
  sizes = detection["part_sizes"]
  lines = ["## Detecting an AG News class (the earlier \"safety detection\" claim)", "",
            f"What is detected: documents of the AG News class {target} among the other three classes (a news "
            "topic, not safety content). Each split divides the "
            f"{detection['num_documents']} documents, class by class, into three disjoint parts: {sizes['fit']} fit "
            f"the detectors (and choose the theme), {sizes['calibration']} set the threshold (at most "
            f"{detection['max_fpr']:.0%} of their negatives flagged), {sizes['test']} give the detection rate and "
            "the false-positive rate. Theme: mean [95% t interval over SAE seeds]; probe and DiffMean (no SAE): "
            "over splits. The oracle column reads its threshold off the test part's own ROC (optimistic, not a "
            "deployable rate). ROC (seed 0, split 0): `plots/roc.png`.", ""]
  lines += _table(["detector", "AUROC (test)", "detection rate (test, calibrated threshold)",
                   "false-positive rate (test, calibrated threshold)", "oracle TPR at FPR ≤ budget"],
                  [[name, _fmt(d["auroc"]), _fmt(d["calibrated_tpr"]), _fmt(d["calibrated_fpr"]),
                    _fmt(d["tpr_at_fpr"])] for name, d in detection["detectors"].items()])
  diff = detection["theme_minus_probe_auroc"]
  found = hypotheses.get("theme_detector_above_probe", {})
  lines += [f"Theme − probe AUROC (per seed, mean over splits): {_fmt(diff)}; hypothesis "
            f"theme_detector_above_probe: {verdict_text(found) if found else 'n/a'}.", ""]
  return lines


