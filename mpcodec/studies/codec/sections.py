"""The sections of metrics/analysis.json: every run's records combined over seeds, per Squeezer K.

Each section has its definition, the hypothesis tested, one entry per (SAE k, Squeezer K) with the
faithfulness ratio of that K beside the finding, and at the top level the finding at the primary K:
`effect` (mean over seeds), `ci` (percentile bootstrap over seeds, null with one seed), `null` (what the
effect is measured against) and a computed `verdict` (supported / contradicted / inconclusive, or
"cannot be tested" with a `reason`). `where_faithful` lists the faithful K values and the verdicts there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import stats
from mpcodec.studies.codec.dead_latents import ci_summary


def _verdict(low: float | None, high: float | None, expected_sign: int) -> str:
  return stats.verdict(math.nan if low is None else low, math.nan if high is None else high, expected_sign)


def finding(values: Sequence[float | None], expected_sign: int, null: Any, reason: str = "") -> dict[str, Any]:
  """An effect over seeds: mean, bootstrap CI, the null, a computed verdict; "cannot be tested" without seeds."""
  kept = [float(v) for v in values if v is not None and math.isfinite(v)]
  if not kept:
    return {"effect": None, "ci": None, "null": null, "verdict": "cannot be tested",
            "reason": reason or "no seed could be analysed"}
  summary = ci_summary(kept)
  return {"effect": summary["mean"], "ci": [summary["ci_low"], summary["ci_high"]], "per_seed": summary["per_seed"],
          "num_seeds": len(kept), "null": null, "verdict": _verdict(summary["ci_low"], summary["ci_high"],
                                                                     expected_sign)}


def _get(record: Any, *path: str) -> Any:
  for key in path:
    record = record.get(key) if isinstance(record, Mapping) else None
  return record


def _values(records: Sequence[Mapping], *path: str) -> list[Any]:
  return [_get(r, *path) for r in records]


def _ci_or_none(values: Sequence[Any]) -> dict[str, Any] | None:
  kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  return ci_summary(kept) if kept else None


def _mean(values: Sequence[Any]) -> float | None:
  kept = [float(v) for v in values if v is not None]
  return float(np.mean(kept)) if kept else None


def _reason(records: Sequence[Mapping], *path: str) -> str:
  for r in records:
    reason = _get(r, *path, "reason")
    if reason:
      return reason
  return ""


def _difference(a: Sequence[Any], b: Sequence[Any]) -> list[float | None]:
  return [x - y if x is not None and y is not None else None for x, y in zip(a, b)]


def _groups(records: Sequence[Mapping], keys: Sequence[str]) -> list[tuple[tuple, list[Mapping]]]:
  out: dict[tuple, list[Mapping]] = {}
  for r in records:
    out.setdefault(tuple(r[k] for k in keys), []).append(r)
  return sorted(out.items())


def _faithfulness(records: Sequence[Mapping], faithful_below: float) -> dict[str, Any]:
  ratio = _ci_or_none(_values(records, "superposition_tax", "faithfulness_ratio"))
  return {"faithfulness_ratio": ratio,
          "faithful": bool(ratio is not None and ratio["mean"] <= faithful_below)}


def _section(definition: str, hypothesis: str, entries: list[dict], primary: tuple[int, int],
             extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Top level = the entry at the primary (SAE k, Squeezer K); where_faithful sums up the faithful Ks."""
  top = next((e for e in entries if (e["sae_k"], e["squeezer_k"]) == primary), entries[0] if entries else None)
  section: dict[str, Any] = {"definition": definition, "hypothesis": hypothesis, "by_squeezer_k": entries}
  if top is None:
    section.update(effect=None, ci=None, null=None, verdict="cannot be tested", reason="no Squeezer run")
  else:
    section.update({k: top[k] for k in ("effect", "ci", "null", "verdict") if k in top})
    section.update(primary_sae_k=top["sae_k"], primary_squeezer_k=top["squeezer_k"])
    if "reason" in top:
      section["reason"] = top["reason"]
  faithful = [e for e in entries if e.get("faithful")]
  section["where_faithful"] = {"squeezer_k": [e["squeezer_k"] for e in faithful],
                               "verdicts": [e["verdict"] for e in faithful]}
  section.update(extra or {})
  return section


# ----------------------------------------------------------------------------- sections


def or_gates_section(records: Sequence[Mapping], primary: tuple[int, int], faithful_below: float, margin: float,
                     min_count: int) -> dict[str, Any]:
  entries = []
  for (sae_k, squeezer_k), group in _groups(records, ("k", "squeezer_k")):
    room = _values(group, "or_gates", "roommates", "prevalence", "OR")
    perm = _values(group, "or_gates", "null_permuted_assignment", "prevalence", "OR")
    rand = _values(group, "or_gates", "null_random_pairs", "prevalence", "OR")
    reason = _reason(group, "or_gates")
    entry = {"sae_k": sae_k, "squeezer_k": squeezer_k, **_faithfulness(group, faithful_below),
             "or_prevalence": _ci_or_none(room),
             "class_prevalence": {c: _mean(_values(group, "or_gates", "roommates", "prevalence", c))
                                  for c in ("OR", "AND", "XOR", "OTHER")},
             "num_roommate_pairs": _values(group, "or_gates", "num_roommate_pairs"),
             "num_testable": _values(group, "or_gates", "roommates", "num_testable"),
             "num_untestable": _values(group, "or_gates", "roommates", "num_untestable"),
             "null_permuted_or_prevalence": _ci_or_none(perm),
             "null_random_pairs_or_prevalence": _ci_or_none(rand),
             **finding(_difference(room, perm), +1, {"kind": "permuted atom-to-neuron assignment",
                                                     "or_prevalence": _mean(perm)}, reason),
             "vs_random_pairs": finding(_difference(room, rand), +1, {"kind": "random non-roommate pairs",
                                                                      "or_prevalence": _mean(rand)}, reason)}
    entries.append(entry)
  return _section(
      f"OR prevalence = OR pairs / testable roommate pairs; truth tables over held-out tokens, margin {margin:g} "
      f"x the neuron's std, >= {min_count} samples per cell. Effect = OR prevalence minus that of the permuted "
      "assignment's roommates", "roommates' truth tables are OR gates more often than chance", entries, primary)


def validation_section(records: Sequence[Mapping], primary: tuple[int, int], faithful_below: float
                       ) -> dict[str, Any]:
  entries = []
  for (sae_k, squeezer_k), group in _groups(records, ("k", "squeezer_k")):
    reason = _reason(group, "validation")
    similarity = _values(group, "validation", "matched_similarity")
    null_similarity = _values(group, "validation", "null_matched_similarity")
    distance = _values(group, "validation", "distance")
    null = _values(group, "validation", "null_mean")
    entries.append({"sae_k": sae_k, "squeezer_k": squeezer_k, **_faithfulness(group, faithful_below),
                    "matched_similarity": _ci_or_none(similarity),
                    "null_matched_similarity": _ci_or_none(null_similarity),
                    "real_class_prevalence": _values(group, "validation", "real_prevalence"),
                    "synthetic_class_prevalence": _values(group, "validation", "synthetic_prevalence"),
                    "num_pairs": _values(group, "validation", "num_pairs"),
                    **finding(_difference(similarity, null_similarity), +1,
                              {"kind": "the same matching for the permuted-assignment Squeezer",
                               "matched_similarity": _mean(null_similarity)}, reason),
                    "class_distribution": {
                        "distance": _ci_or_none(distance), "null_distance": _ci_or_none(null),
                        **finding(_difference(null, distance), +1,
                                  {"kind": "permuted-assignment Squeezer", "distance": _mean(null)}, reason)}})
  return _section(
      "truth tables of the real neurons of the layer the SAE was trained on, over the same roommate pairs, "
      "matched one to one to the synthetic neurons (Hungarian on the cosine of centred truth tables); effect = "
      "matched similarity minus that of the permuted-assignment Squeezer; class_distribution: total-variation "
      "distance of the OR/AND/XOR/OTHER shares, null minus observed (> 0: closer than chance)",
      "the synthetic neurons' interference patterns match the real neurons' (the Validation Hypothesis)",
      entries, primary)


def coactivation_section(records: Sequence[Mapping], primary: tuple[int, int], faithful_below: float,
                         tolerance: float) -> dict[str, Any]:
  entries = []
  for (sae_k, squeezer_k), group in _groups(records, ("k", "squeezer_k")):
    entry = {"sae_k": sae_k, "squeezer_k": squeezer_k, **_faithfulness(group, faithful_below),
             "roommates_mean_log_lift": _ci_or_none(_values(group, "coactivation", "roommates_mean_log_lift")),
             "matched_mean_log_lift": _ci_or_none(_values(group, "coactivation", "matched_mean_log_lift")),
             "roommates_mean_code_correlation": _mean(_values(group, "coactivation",
                                                              "roommates_mean_code_correlation")),
             "matched_mean_code_correlation": _mean(_values(group, "coactivation", "matched_mean_code_correlation")),
             "permutation_p_value": _values(group, "coactivation", "permutation_p_value"),
             "num_pairs": _values(group, "coactivation", "num_pairs"),
             **finding(_values(group, "coactivation", "effect"), -1,
                       {"kind": "frequency-matched non-roommate pairs",
                        "mean_log_lift": _mean(_values(group, "coactivation", "matched_mean_log_lift")),
                        "permutation_null_mean_log_lift": _mean(_values(group, "coactivation",
                                                                        "permutation_null_mean_log_lift"))},
                       _reason(group, "coactivation"))}
    entry["direction"] = {"supported": "roommates co-fire less than matched pairs",
                          "contradicted": "roommates co-fire more than matched pairs",
                          "inconclusive": "no difference resolved", "cannot be tested": None}[entry["verdict"]]
    entries.append(entry)
  return _section(
      "mean over roommate pairs of log lift(a, b) - log lift(matched pair), lift = P(a and b) / (P(a) P(b)) "
      f"(smoothed), matched pairs: non-roommates with firing rates within {tolerance:.0%}. Two-sided: both "
      "signs are findings", "roommates co-activate less than frequency-matched pairs (the earlier claim)",
      entries, primary)


def tax_section(records: Sequence[Mapping], primary: tuple[int, int], main_width: int, faithful_below: float,
                skipped_widths: Mapping[int, str]) -> dict[str, Any]:
  entries = []
  for (num_neurons, sae_k, squeezer_k), group in _groups(records, ("num_neurons", "k", "squeezer_k")):
    tax = _values(group, "superposition_tax", "tax")
    entries.append({"num_neurons": num_neurons, "sae_k": sae_k, "squeezer_k": squeezer_k,
                    **_faithfulness(group, faithful_below), "tax": _ci_or_none(tax),
                    "fvu_squeezer": _ci_or_none(_values(group, "superposition_tax", "fvu_squeezer")),
                    "fvu_baseline": _ci_or_none(_values(group, "superposition_tax", "fvu_baseline")),
                    **finding([math.log(t) if t is not None and t > 0 else None for t in tax], +1,
                              {"kind": "monosemantic baseline with the same M (log tax 0)", "tax": 1.0},
                              _reason(group, "superposition_tax"))})
  main_entries = [e for e in entries if e["num_neurons"] == main_width]
  section = _section(
      "tax = FVU through the Squeezer's M neurons / FVU of the SAE keeping only its M most-variance atoms "
      "(the others at their mean code); effect = log tax over seeds", "superposition costs: tax > 1",
      main_entries, primary)
  section["by_num_neurons"] = entries
  section["skipped_num_neurons"] = {str(m): reason for m, reason in skipped_widths.items()}
  section["num_neurons"] = main_width
  return section


def themes_section(sae_records: Sequence[Mapping], records: Sequence[Mapping], primary: tuple[int, int],
                   faithful_below: float, inputs: Sequence[str], planted_kinds: Sequence[str],
                   recovered_ari: float) -> dict[str, Any]:
  recovery = []
  for (sae_k,), group in _groups(sae_records, ("k",)):
    for kind in inputs:
      row: dict[str, Any] = {"sae_k": sae_k, "input": kind,
                             "num_themes": _values(group, "themes", kind, "num_themes"),
                             "theme_sizes": _values(group, "themes", kind, "theme_sizes")}
      reason = _reason(group, "themes", kind)
      if reason:
        row["reason"] = reason
      row["adjusted_rand"] = {}
      for planted in planted_kinds:
        ari = _values(group, "themes", kind, "adjusted_rand", planted)
        row["adjusted_rand"][planted] = {
            "ari": _ci_or_none(ari),
            **finding([a - recovered_ari if a is not None else None for a in ari], +1,
                      {"kind": f"ARI threshold {recovered_ari:g}"}, reason or "no ARI")}
      recovery.append(row)
  share_keys = sorted({k for r in records for k in (r.get("share_theme") or {})})
  entries = []
  for (sae_k, squeezer_k), group in _groups(records, ("k", "squeezer_k")):
    entry = {"sae_k": sae_k, "squeezer_k": squeezer_k, **_faithfulness(group, faithful_below), "by_themes": {}}
    for key in share_keys:
      entry["by_themes"][key] = {
          "observed": _ci_or_none(_values(group, "share_theme", key, "observed")),
          **finding(_values(group, "share_theme", key, "effect"), +1,
                    {"kind": "theme labels permuted among the live themed atoms",
                     "fraction": _mean(_values(group, "share_theme", key, "null_mean"))},
                    _reason(group, "share_theme", key))}
    lead = share_keys[0] if share_keys else None
    entry.update({k: v for k, v in (entry["by_themes"].get(lead) or {"verdict": "cannot be tested",
                                                                      "reason": "no themes", "effect": None,
                                                                      "ci": None, "null": None}).items()
                  if k in ("effect", "ci", "null", "verdict", "reason")})
    entry["themes_used"] = lead
    entries.append(entry)
  which = {row["input"]: {planted: row["adjusted_rand"][planted]["verdict"] for planted in planted_kinds}
           for row in recovery if row["sae_k"] == primary[0]}
  return _section(
      "atoms clustered from decoder rows, encoder rows or the co-activation graph; ARI against the planted "
      "themes (ground truth: latents inherit the theme of their matched true atom); effect = fraction of "
      "roommate pairs in one theme minus its permutation null", "roommates share a theme more often than chance",
      entries, primary, {"recovery": recovery, "which_clustering_recovers_which": which,
                         "planted_kinds": list(planted_kinds)})


def dead_latents_section(sae_metrics: Mapping[str, np.ndarray], sae_labels: Sequence[Mapping],
                         earlier: Mapping[str, Any] | None, ultra_rare_below: float) -> dict[str, Any]:
  counts = np.asarray(sae_metrics["firing_counts"])
  num_tokens = int(sae_metrics["num_tokens"])
  this_run = []
  for (sae_k,), _ in _groups(sae_labels, ("k",)):
    rows = [i for i, label in enumerate(sae_labels) if label["k"] == sae_k]
    dead = (counts[rows] == 0).mean(-1)
    rare = ((counts[rows] > 0) & (counts[rows] < ultra_rare_below * num_tokens)).mean(-1)
    this_run.append({"sae_k": sae_k, "dead_fraction": ci_summary(dead), "ultra_rare_fraction": ci_summary(rare),
                     "num_latents": int(counts.shape[-1]), "num_eval_tokens": num_tokens})
  section: dict[str, Any] = {
      "definition": "dead: never fired on the held-out tokens; ultra-rare: fired on fewer than "
                    f"{ultra_rare_below:g} of them. Effect = dead fraction without AuxK minus with AuxK "
                    "(the earlier setting)",
      "hypothesis": "AuxK reduces dead latents in the earlier setting", "this_run": this_run}
  if earlier is None:
    section.update(effect=None, ci=None, null=None, verdict="cannot be tested",
                   reason="the earlier setting was not run (set config.dead_latents.enabled=True)")
  else:
    effect = earlier["auxk_effect"]
    section.update(effect=effect.get("mean"), ci=[effect.get("ci_low"), effect.get("ci_high")]
                   if "mean" in effect else None, null=effect.get("null"), verdict=effect["verdict"])
    if "reason" in effect:
      section["reason"] = effect["reason"]
    section["earlier_setting"] = dict(earlier)
  return section


def build_payload(cfg: Any, computed: Mapping[str, Any], *, skipped_widths: Mapping[int, str],
                  dead_latents_payload: Mapping[str, Any] | None, sae_metrics: Mapping[str, np.ndarray],
                  squeezer_metrics: Mapping[str, np.ndarray], ultra_rare_below: float) -> dict[str, Any]:
  """analysis.json: every section, the faithful Ks, and what the window held."""
  del squeezer_metrics
  records = [r for r in computed["squeezer_records"] if r["stage"] == computed["main_stage"]]
  sae_labels = [{"k": r["k"], "seed_index": r["seed_index"]} for r in computed["sae_records"]]
  primary = (sae_labels[0]["k"], computed["primary_k"])
  main_width = computed["widths"][0]
  faithful_below = cfg.faithful_below
  payload = {
      "or_gates": or_gates_section(records, primary, faithful_below, cfg.margin, cfg.min_count),
      "validation": validation_section(records, primary, faithful_below),
      "coactivation": coactivation_section(records, primary, faithful_below, cfg.match_tolerance),
      "superposition_tax": tax_section(computed["squeezer_records"], primary, main_width, faithful_below,
                                       skipped_widths),
      "themes": themes_section(computed["sae_records"], records, primary, faithful_below, cfg.theme_inputs,
                               computed["planted_kinds"], cfg.theme_recovered_ari),
      "dead_latents": dead_latents_section(sae_metrics, sae_labels, dead_latents_payload, ultra_rare_below),
  }
  faith = {e["squeezer_k"]: e for e in payload["or_gates"]["by_squeezer_k"] if e["sae_k"] == primary[0]}
  payload["faithfulness"] = {
      "faithful_below": faithful_below,
      "by_squeezer_k": [{"squeezer_k": k, "faithfulness_ratio": e["faithfulness_ratio"], "faithful": e["faithful"]}
                        for k, e in sorted(faith.items())],
      "faithful_squeezer_k": [k for k, e in sorted(faith.items()) if e["faithful"]]}
  payload["primary"] = {"sae_k": primary[0], "squeezer_k": primary[1], "num_neurons": main_width}
  payload["window"] = {"num_tokens": int(computed["window"].x_BxD.shape[0]), "first_batch": int(
      computed["window"].step_B[0]) if computed["window"].step_B.size else None}
  payload["runs"] = {"sae": computed["sae_records"], "squeezer": computed["squeezer_records"]}
  return payload
