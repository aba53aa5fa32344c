"""Summaries, plots and report.md of the MiniLM codec study, with the replication table of earlier claims.

Every figure comes with a percentile bootstrap CI over its replicates (SAE seeds, or seeds × splits) and
every verdict is computed from that interval:
  - a claim "at least c" (a ratio, a rate) replicates when the CI's low end reaches c, does not when its
    high end is below c, and is inconclusive when the CI straddles c;
  - a law with an exponent (SNR ∝ N^0.5) replicates when the CI contains the exponent, else not;
  - a figure without replicates (one seed) or without a finite value cannot be tested.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import io, stats

# The earlier study's claims, quoted.
CLAIM_DOUBLING = "thematic steering doubled the target probability"
CLAIM_STABILITY = "(thematic steering) 1.8x more stable than single-atom steering"
CLAIM_SNR = "the SNR of population steering scales with sqrt(N) atoms"
CLAIM_DETECTION = "98.2% safety detection rate with near-zero false positives"


def interval(values: Sequence[float], rng_seed: int = 0) -> dict[str, Any]:
  """{mean, low, high, n, values} of the finite values (bootstrap CI; low/high None with < 2 values)."""
  finite = [float(v) for v in np.asarray(values, np.float64).ravel() if math.isfinite(float(v))]
  if not finite:
    return {"mean": None, "low": None, "high": None, "n": 0, "values": []}
  mean, low, high = stats.bootstrap_ci(np.asarray(finite), rng_seed=rng_seed)
  if not (math.isfinite(low) and math.isfinite(high)):
    low = high = None
  return {"mean": mean, "low": low, "high": high, "n": len(finite), "values": finite}


def at_least_verdict(ci: Mapping[str, Any], claimed: float) -> str:
  """'replicates' (low ≥ claimed), 'does not replicate' (high < claimed), 'inconclusive' (between), or
  'cannot be tested' (no CI)."""
  low, high = ci.get("low"), ci.get("high")
  if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
    return "cannot be tested"
  if low >= claimed:
    return "replicates"
  if high < claimed:
    return "does not replicate"
  return "inconclusive"


def contains_verdict(ci: Mapping[str, Any], claimed: float) -> str:
  """'replicates' when low ≤ claimed ≤ high, 'does not replicate' otherwise, 'cannot be tested' (no CI)."""
  low, high = ci.get("low"), ci.get("high")
  if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
    return "cannot be tested"
  return "replicates" if low <= claimed <= high else "does not replicate"


# ----------------------------------------------------------------------------- steering


def steering_summary(result: Mapping[str, Any], reference_strength: float, choices: Sequence[Mapping]
                     ) -> dict[str, Any]:
  """metrics/steering.json: per set, method, metric and strength a CI over SAE seeds; the claims."""
  strengths = list(result["strengths"])
  ref = strengths.index(reference_strength)
  by_set: dict[str, Any] = {}
  for set_name, methods in result["sets"].items():
    by_set[set_name] = {}
    for method, metrics in methods.items():
      table = {name: [interval(values[:, a]) for a in range(len(strengths))]
               for name, values in metrics.items()}
      ratio = metrics["p_target_steered"] / np.maximum(metrics["p_target_clean"], 1e-30)
      table["p_target_ratio"] = [interval(ratio[:, a]) for a in range(len(strengths))]
      by_set[set_name][method] = table
  sets = result["sets"]
  ratio_theme = (sets["steering"]["theme"]["p_target_steered"][:, ref]
                 / np.maximum(sets["steering"]["theme"]["p_target_clean"][:, ref], 1e-30))
  kl_theme, kl_atom = sets["neutral"]["theme"]["kl"][:, ref], sets["neutral"]["atom"]["kl"][:, ref]
  stability = np.where(kl_theme > 0, kl_atom / np.where(kl_theme > 0, kl_theme, 1.0), np.nan)
  exponents = [row["exponent"] for row in result["snr"]]
  doubling, stable, snr = interval(ratio_theme), interval(stability), interval(exponents)
  snr_reasons = sorted({row["reason"] for row in result["snr"] if row.get("reason")})
  claims = {
      "doubling": dict(claim=CLAIM_DOUBLING, claimed=2.0, ours=doubling,
                       verdict=at_least_verdict(doubling, 2.0),
                       definition=f"p_steered(target) / p_clean(target) under the probe, theme vector at "
                                  f"strength {reference_strength}, held-out documents of the other classes"),
      "stability": dict(claim=CLAIM_STABILITY, claimed=1.8, ours=stable,
                        verdict=at_least_verdict(stable, 1.8),
                        definition=f"KL(single atom) / KL(theme) of the probe's distribution on neutral "
                                   f"(Shakespeare) lines at strength {reference_strength}"),
      "snr": dict(claim=CLAIM_SNR, claimed=0.5, ours=snr, verdict=contains_verdict(snr, 0.5),
                  definition="; ".join([f"exponent beta of SNR ∝ N^beta over the N most target-selective "
                                        f"atoms summed, strength {result['snr_strength']}"] + snr_reasons)),
  }
  return {"strengths": strengths, "reference_strength": reference_strength, "sets": by_set,
          "snr": [dict(row) for row in result["snr"]], "choices": [dict(c) for c in choices],
          "claims": claims}


# ----------------------------------------------------------------------------- detection


def detection_summary(result: Mapping[str, Any]) -> dict[str, Any]:
  """metrics/detection.json: per detector a CI of each rate; theme − probe AUROC; the detection claim."""
  rows = result["rows"]
  detectors = {}
  for name in ("theme", "probe", "diffmean"):
    mine = [row for row in rows if row["detector"] == name]
    detectors[name] = {key: interval([row[key] for row in mine])
                       for key in ("auroc", "tpr_at_fpr", "calibrated_tpr", "calibrated_fpr")}
  probe_by_split = {row["split"]: row["auroc"] for row in rows if row["detector"] == "probe"}
  differences = [row["auroc"] - probe_by_split[row["split"]] for row in rows if row["detector"] == "theme"]
  difference = interval(differences)
  comparison = stats.verdict(difference["low"] if difference["low"] is not None else math.nan,
                             difference["high"] if difference["high"] is not None else math.nan, 1)
  tpr = detectors["theme"]["calibrated_tpr"]
  claim = dict(claim=CLAIM_DETECTION, claimed=0.982, ours=tpr, verdict=at_least_verdict(tpr, 0.982),
               definition=f"held-out detection rate of the theme detector at the threshold that flags at "
                          f"most {result['max_fpr']:.0%} of the training negatives")
  return {"detectors": detectors, "theme_minus_probe_auroc": dict(difference, verdict={
              "supported": "the theme detector beats the raw-activation probe",
              "contradicted": "the raw-activation probe beats the theme detector",
              "inconclusive": "no clear difference"}[comparison]),
          "rows": list(rows), "claims": {"detection": claim}, "max_fpr": result["max_fpr"],
          "num_documents": result["num_documents"], "num_test_documents": result["num_test_documents"],
          "part_sizes": result["part_sizes"]}


# ----------------------------------------------------------------------------- plots


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _no_data(ax, reason: str) -> None:
  ax.text(0.5, 0.5, f"no data: {reason}", ha="center", va="center", fontsize=8, wrap=True,
          transform=ax.transAxes)
  ax.set_xticks([])
  ax.set_yticks([])


METHOD_ORDER = ("theme", "atom", "diffmean")   # one colour per steering vector in every panel
STEERING_PANELS = (
    ("steering", "p_target_steered", "steering set: target probability",
     "p(target class) under the probe\n(held-out documents of other classes)"),
    ("neutral", "kl", "neutral set: distribution shift", "KL(clean ‖ steered) of the probe (nats)"),
    ("neutral", "drift", "neutral set: embedding drift", "cosine drift 1 − cos(clean, steered)"),
)


def plot_steering(summary: Mapping[str, Any], path: str) -> None:
  """Target probability, KL and drift against the strength α: mean over SAE seeds with its 95% CI."""
  plt = _pyplot()
  strengths = summary["strengths"]
  fig, axes = plt.subplots(1, len(STEERING_PANELS), figsize=(4.4 * len(STEERING_PANELS), 3.8),
                           layout="constrained")
  for ax, (set_name, metric, title, ylabel) in zip(axes, STEERING_PANELS):
    methods = summary["sets"][set_name]
    for method in sorted(methods, key=lambda m: (m not in METHOD_ORDER, METHOD_ORDER.index(m)
                                                 if m in METHOD_ORDER else 0, m)):
      table = methods[method]
      means = np.asarray([c["mean"] if c["mean"] is not None else np.nan for c in table[metric]], float)
      low = [c["low"] if c["low"] is not None else m for c, m in zip(table[metric], means)]
      high = [c["high"] if c["high"] is not None else m for c, m in zip(table[metric], means)]
      line, = ax.plot(strengths, means, marker="o", label=method)
      ax.fill_between(strengths, np.asarray(low, float), np.asarray(high, float), color=line.get_color(),
                      alpha=0.2, lw=0)
    if metric == "p_target_steered":
      clean = summary["sets"][set_name]["theme"]["p_target_clean"][0]["mean"]
      if clean is not None:
        ax.axhline(clean, color="grey", linestyle=":", label="clean (no steering)")
    ax.set_xlabel("strength α (fraction of the activation norm)")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
  target = summary.get("target_class")
  fig.suptitle(f"Steering{f' towards {target}' if target else ''}: mean over SAE seeds, band = 95% "
               "bootstrap CI (DiffMean: one vector, no band)", fontsize=10)
  io.save_figure(fig, path)


def plot_snr(summary: Mapping[str, Any], path: str) -> None:
  """Population-steering SNR against the number N of atoms summed, on log axes, one line per SAE seed.

  Only positive SNRs have a logarithm: the others are left out of the lines and counted in a note; the
  √N reference starts at the first drawn point."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.0, 3.8), layout="constrained")
  dropped, drawn = 0, []
  for row in summary["snr"]:
    atoms, snr = np.asarray(row["atoms"], float), np.asarray(row["snr"], float)
    if not snr.size:
      continue
    positive = np.isfinite(snr) & (snr > 0)
    dropped += int(np.sum(~positive))
    if positive.any():
      ax.loglog(atoms[positive], snr[positive], marker="o", label=f"seed {row['seed_index']}")
      drawn += list(zip(atoms[positive].tolist(), snr[positive].tolist()))
  anchor = min(drawn, key=lambda point: point[0]) if drawn else None   # the drawn point of fewest atoms
  atoms = sorted({n for row in summary["snr"] for n in row["atoms"]})
  ax.set_xlabel("atoms summed N")
  ax.set_ylabel("SNR of the embedding change\nalong the target margin")
  ax.set_title("population steering: SNR against N" + (
      f"\n({dropped} non-positive SNR value(s) not drawn: no logarithm)" if dropped else ""), fontsize=9)
  if anchor is None:
    _no_data(ax, "no positive SNR to draw on a log axis" if dropped else "no SNR measured")
  else:
    reference = [n for n in atoms if n >= anchor[0]]
    ax.loglog(reference, [anchor[1] * math.sqrt(n / anchor[0]) for n in reference], "k:",
              label="√N from the point of fewest atoms")
    ax.legend(fontsize=8)
  io.save_figure(fig, path)


def _auroc_of_curve(curve: Mapping[str, np.ndarray]) -> float:
  fpr, tpr = np.asarray(curve["fpr"], float), np.asarray(curve["tpr"], float)
  return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) if fpr.size > 1 else float("nan")


def plot_roc(roc: Mapping[str, Mapping[str, np.ndarray]], max_fpr: float, path: str) -> None:
  """ROC of every detector on the test part of one split, each labelled with its AUROC."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.6, 4.2), layout="constrained")
  aurocs = {}
  for name, curve in roc.items():
    aurocs[name] = float(curve["auroc"]) if curve.get("auroc") is not None else _auroc_of_curve(curve)
    ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUROC {aurocs[name]:.3f})")
  ax.axvline(max_fpr, color="grey", linestyle=":", label=f"false-positive budget {max_fpr:.0%}")
  ax.plot([0, 1], [0, 1], color="lightgrey", linewidth=0.8, label="chance (AUROC 0.5)")
  ax.set_xlabel("false-positive rate")
  ax.set_ylabel("detection rate (true-positive rate)")
  best = max(aurocs, key=lambda name: aurocs[name]) if aurocs else None
  ax.set_title("ROC, SAE seed 0, split 0" + (f": best AUROC {aurocs[best]:.3f} ({best})" if best else ""),
               fontsize=9)
  if roc:
    ax.legend(fontsize=7, loc="lower right")
  else:
    _no_data(ax, "no detector was evaluated")
  io.save_figure(fig, path)


# ----------------------------------------------------------------------------- report.md


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
  return [[c["claim"], str(c["claimed"]), _fmt(c["ours"]), c["definition"], c["verdict"]] for c in claims]


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


def report_markdown(*, source: str, reconstruction: Mapping[str, Any], themes: Mapping[str, Any],
                    steering: Mapping[str, Any], detection: Mapping[str, Any],
                    claims: Sequence[Mapping[str, Any]], analysis_note: str,
                    analysis_themes: Mapping[str, Any] | None = None) -> str:
  """report.md of the study; `analysis_themes`: the analysis payload's themes section (its theme counts)."""
  lines = ["# The codec on MiniLM (all-MiniLM-L6-v2)", "", f"Source: {source}.", "",
           "## Replication table", "",
           "Ours: estimate [95% bootstrap CI] over SAE seeds (and data splits for detection).", ""]
  lines += _table(["earlier claim", "claimed", "ours", "our definition", "verdict"], replication_rows(claims))
  lines += [analysis_note, "", "## Reconstruction quality (held-out documents)", "",
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
  lines += ["## Themes on real text", "",
            _theme_count_text(themes, analysis_themes)
            + f" Rows: the most target-selective ({themes['target_class']}) first. "
            "Mean activation per class: the theme's activation maxed over each document's tokens, averaged "
            "over the class. All themes: `metrics/themes_text.json`.", ""]
  classes = themes["class_names"]
  lines += _table(["theme", "atoms", "d (target)", "top tokens"] + list(classes),
                  [[t["theme"], t["size"], f"{t['target_selectivity']:.2f}",
                    " ".join(t["top_tokens"][:8]) or "none"]
                   + [f"{v:.3f}" for v in t["mean_max_by_class"]] for t in themes["themes"][:12]])
  ref = steering["reference_strength"]
  lines += ["## Thematic steering", "",
            f"Target class {themes['target_class']}; vectors added at every real token with norm α‖x_t‖. "
            "Plots: `plots/steering.png` (target probability, KL and drift against α), `plots/snr.png`.", ""]
  rows = []
  for a, strength in enumerate(steering["strengths"]):
    for method in ("theme", "atom", "diffmean"):
      tgt, neu = steering["sets"]["steering"][method], steering["sets"]["neutral"][method]
      rows.append([strength, method, _fmt(tgt["p_target_clean"][a]), _fmt(tgt["p_target_steered"][a]),
                   _fmt(tgt["p_target_ratio"][a], 2), _fmt(neu["kl"][a], 4), _fmt(neu["drift"][a], 4),
                   _fmt(tgt["snr"][a], 2)])
  lines += _table(["α", "vector", "p(target) clean", "p(target) steered", "ratio", "KL neutral",
                   "drift neutral", "SNR"], rows)
  lines += [f"Claims read at α = {ref}.", "", "## Guardrail detection", "",
            f"Per split, of {detection['num_documents']} documents: {detection['part_sizes']['fit']} fit the "
            f"detectors, {detection['part_sizes']['calibration']} set the threshold, "
            f"{detection['part_sizes']['test']} test them; rates at a {detection['max_fpr']:.0%} "
            "false-positive budget. ROC (seed 0, split 0): `plots/roc.png`.", ""]
  lines += _table(["detector", "AUROC", "TPR at FPR budget (test ROC)", "calibrated TPR", "calibrated FPR"],
                  [[name, _fmt(d["auroc"]), _fmt(d["tpr_at_fpr"]), _fmt(d["calibrated_tpr"]),
                    _fmt(d["calibrated_fpr"])] for name, d in detection["detectors"].items()])
  diff = detection["theme_minus_probe_auroc"]
  lines += [f"Theme − probe AUROC: {_fmt(diff)}: {diff['verdict']}.", ""]
  return "\n".join(lines)


def write_json(workdir: str, name: str, payload: Any) -> None:
  io.write_json(os.path.join(workdir, "metrics", name), payload)
