"""The sections of metrics/analysis.json: every run's records combined over seeds, per Squeezer K.

Each section has its definition, the hypothesis tested, one entry per (SAE k, Squeezer K) with the
faithfulness ratio of that K beside the finding, and at the top level the finding at the primary K. A
finding is judged by the statistics layer (`verdicts.finding`): its per-seed values, their mean
(`effect`), Student t interval (`ci`), the two-sided one-sample t test (`p_value`) and a verdict
(supported / contradicted / inconclusive, or "cannot be tested" with a `reason`: a smoke run, fewer than
`stats.MIN_SEEDS` seeds, nothing measured).

Every truth-table and co-activation finding is tested against the strongest null of each seed
(`verdicts.against_strongest`): the per-seed value is the trained Squeezer's figure minus the null figure
that lies furthest in the predicted direction, among the nulls read within the run (permuted assignment,
random non-roommate pairs, frequency-matched pairs, permuted themes) and the null models (the mean of
the untrained Squeezers, the shuffled-latent Squeezer), so a finding an untrained model also shows is not
supported. The sections' top-level findings are one declared family (Holm, `verdicts.FAMILY`); the per-K
entries, the comparisons with each single null and the theme grids say whether Holm was applied
(`holm`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import stats
from mpcodec.studies.codec.dead_latents import ci_summary
from mpcodec.studies.codec.verdicts import (FAMILY, NULL_KINDS, against_strongest, finding, finite_values, get,
                                            holm_family, no_verdict_reason, strongest_null, verdict_text,
                                            with_models)


def _values(records: Sequence[Mapping], *path: str) -> list[Any]:
  return [get(r, *path) for r in records]


def _ci_or_none(values: Sequence[Any]) -> dict[str, Any] | None:
  kept = finite_values(values)
  return ci_summary(kept) if kept else None


def _mean(values: Sequence[Any] | None) -> float | None:
  kept = finite_values(values or [])
  return float(np.mean(kept)) if kept else None


def _reason(records: Sequence[Mapping], *path: str) -> str:
  for r in records:
    reason = get(r, *path, "reason")
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


def _versus_each(trained: Sequence[Any], nulls: Mapping[str, list[Any]], expected_sign: int, reason: str,
                 smoke: bool, figure: str) -> dict[str, Any]:
  """The trained figure against each null alone (not Holm-adjusted)."""
  return {name: finding(_difference(trained, values), expected_sign, {"kind": NULL_KINDS[name], figure: _mean(values)},
                        reason, smoke=smoke, name=name) for name, values in nulls.items()}


def _section(definition: str, hypothesis: str, entries: list[dict], primary: tuple[int, int],
             extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Top level = the entry at the primary (SAE k, Squeezer K); where_faithful sums up the faithful Ks."""
  top = next((e for e in entries if (e["sae_k"], e["squeezer_k"]) == primary), entries[0] if entries else None)
  section: dict[str, Any] = {"definition": definition, "hypothesis": hypothesis, "by_squeezer_k": entries}
  if top is None:
    section.update(effect=None, ci=None, null=None, verdict="cannot be tested", reason="no Squeezer run")
  else:
    section.update({k: top[k] for k in ("effect", "ci", "null", "verdict", "per_seed", "num_seeds", "expected_sign",
                                        "p_value", "test", "reason") if k in top})
    section.update(primary_sae_k=top["sae_k"], primary_squeezer_k=top["squeezer_k"])
  faithful = [e for e in entries if e.get("faithful")]
  section["where_faithful"] = {"squeezer_k": [e["squeezer_k"] for e in faithful],
                               "verdicts": [e["verdict"] for e in faithful]}
  section.update(extra or {})
  return section


# ----------------------------------------------------------------------------- sections


_SHORT = {"permuted_assignment": "permuted"}


def or_gates_section(records: Sequence[Mapping], primary: tuple[int, int], faithful_below: float, margin: float,
                     min_count: int, smoke: bool = False) -> dict[str, Any]:
  entries = []
  for (sae_k, squeezer_k), group in _groups(records, ("k", "squeezer_k")):
    room = _values(group, "or_gates", "roommates", "prevalence", "OR")
    nulls = with_models(group, {
        "permuted_assignment": _values(group, "or_gates", "null_permuted_assignment", "prevalence", "OR"),
        "random_pairs": _values(group, "or_gates", "null_random_pairs", "prevalence", "OR")},
        "or_gates", "roommates", "prevalence", "OR")
    reason = _reason(group, "or_gates")
    values, names, strongest = against_strongest(room, nulls, +1)
    entry = {"sae_k": sae_k, "squeezer_k": squeezer_k, **_faithfulness(group, faithful_below),
             "or_prevalence": _ci_or_none(room),
             "class_prevalence": {c: _mean(_values(group, "or_gates", "roommates", "prevalence", c))
                                  for c in ("OR", "AND", "XOR", "OTHER")},
             "num_roommate_pairs": _values(group, "or_gates", "num_roommate_pairs"),
             "num_testable": _values(group, "or_gates", "roommates", "num_testable"),
             "num_untestable": _values(group, "or_gates", "roommates", "num_untestable"),
             # (the within-run nulls keep the keys plots.py reads)
             **{f"null_{_SHORT.get(name, name)}_or_prevalence": _ci_or_none(v) for name, v in nulls.items()},
             **finding(values, +1, strongest_null(names, strongest, list(nulls), or_prevalence=_mean(strongest)),
                       reason, smoke=smoke, name="or_gates"),
             "vs_nulls": _versus_each(room, nulls, +1, reason, smoke, "or_prevalence")}
    entries.append(entry)
  return _section(
      f"OR prevalence = OR pairs / testable roommate pairs; truth tables over held-out tokens, margin {margin:g} "
      f"x the neuron's std, >= {min_count} samples per cell. Effect = OR prevalence minus that of the strongest "
      "null of each seed (permuted assignment, random pairs, untrained Squeezers, shuffled-latent Squeezer); "
      "vs_nulls: against each null alone", "roommates' truth tables are OR gates more often than under every "
      "null, an untrained Squeezer's and a co-firing-blind one's included", entries, primary)


def validation_section(records: Sequence[Mapping], primary: tuple[int, int], faithful_below: float,
                       smoke: bool = False) -> dict[str, Any]:
  entries = []
  for (sae_k, squeezer_k), group in _groups(records, ("k", "squeezer_k")):
    reason = _reason(group, "validation")
    similarity = _values(group, "validation", "matched_similarity")
    distance = _values(group, "validation", "distance")
    similarity_nulls = with_models(group, {"permuted_assignment": _values(group, "validation",
                                                                           "null_matched_similarity")},
                                    "validation", "matched_similarity")
    distance_nulls = with_models(group, {"permuted_assignment": _values(group, "validation", "null_mean")},
                                  "validation", "distance")
    values, names, strongest = against_strongest(similarity, similarity_nulls, +1)
    d_values, d_names, d_strongest = against_strongest(distance, distance_nulls, -1)
    entries.append({"sae_k": sae_k, "squeezer_k": squeezer_k, **_faithfulness(group, faithful_below),
                    "matched_similarity": _ci_or_none(similarity),
                    "null_matched_similarity": _ci_or_none(similarity_nulls["permuted_assignment"]),
                    **{f"null_{name}_matched_similarity": _ci_or_none(v) for name, v in similarity_nulls.items()
                       if name != "permuted_assignment"},
                    "real_class_prevalence": _values(group, "validation", "real_prevalence"),
                    "synthetic_class_prevalence": _values(group, "validation", "synthetic_prevalence"),
                    "num_pairs": _values(group, "validation", "num_pairs"),
                    **finding(values, +1, strongest_null(names, strongest, list(similarity_nulls),
                                                          matched_similarity=_mean(strongest)),
                              reason, smoke=smoke, name="validation"),
                    "class_distribution": {
                        "distance": _ci_or_none(distance),
                        **{f"null_{name}_distance": _ci_or_none(v) for name, v in distance_nulls.items()},
                        **finding(d_values, -1, strongest_null(d_names, d_strongest, list(distance_nulls),
                                                                distance=_mean(d_strongest)),
                                  reason, smoke=smoke, name="class_distribution")}})
  return _section(
      "truth tables of the real neurons of the layer the SAE was trained on, over the same roommate pairs, "
      "matched one to one to the synthetic neurons (Hungarian on the cosine of centred truth tables); effect = "
      "matched similarity minus that of the strongest null of each seed (the permuted-assignment Squeezer, the "
      "untrained Squeezers, the shuffled-latent Squeezer); class_distribution: total-variation distance of the "
      "OR/AND/XOR/OTHER shares, observed minus the closest null (< 0: closer than every null)",
      "the synthetic neurons' interference patterns match the real neurons' (the Validation Hypothesis)",
      entries, primary)


_DIRECTION = {"supported": "roommates co-fire less than under every null",
              "contradicted": "roommates co-fire more than under the null that co-fires least",
              "inconclusive": "no difference resolved", "cannot be tested": None}


def coactivation_section(records: Sequence[Mapping], primary: tuple[int, int], faithful_below: float,
                         tolerance: float, smoke: bool = False) -> dict[str, Any]:
  entries = []
  for (sae_k, squeezer_k), group in _groups(records, ("k", "squeezer_k")):
    effect = _values(group, "coactivation", "effect")
    nulls = with_models(group, {"frequency_matched_pairs": [0.0] * len(group)}, "coactivation", "effect")
    reason = _reason(group, "coactivation")
    values, names, strongest = against_strongest(effect, nulls, -1)
    entry = {"sae_k": sae_k, "squeezer_k": squeezer_k, **_faithfulness(group, faithful_below),
             "effect_vs_matched_pairs": _ci_or_none(effect),
             "roommates_mean_log_lift": _ci_or_none(_values(group, "coactivation", "roommates_mean_log_lift")),
             "matched_mean_log_lift": _ci_or_none(_values(group, "coactivation", "matched_mean_log_lift")),
             **{f"null_{name}_effect": _ci_or_none(v) for name, v in nulls.items()
                if name != "frequency_matched_pairs"},
             "roommates_mean_code_correlation": _mean(_values(group, "coactivation",
                                                              "roommates_mean_code_correlation")),
             "matched_mean_code_correlation": _mean(_values(group, "coactivation", "matched_mean_code_correlation")),
             "permutation_null_mean_log_lift": _mean(_values(group, "coactivation", "permutation_null_mean_log_lift")),
             "permutation_p_value": _values(group, "coactivation", "permutation_p_value"),
             "num_pairs": _values(group, "coactivation", "num_pairs"),
             **finding(values, -1, strongest_null(names, strongest, list(nulls), effect=_mean(strongest)),
                       reason, smoke=smoke, name="coactivation"),
             "vs_nulls": _versus_each(effect, nulls, -1, reason, smoke, "effect")}
    entry["direction"] = _DIRECTION[entry["verdict"]]
    entries.append(entry)
  return _section(
      "per roommate pair, log lift(a, b) - log lift(matched pair), lift = P(a and b) / (P(a) P(b)) (smoothed), "
      f"matched pairs: non-roommates with firing rates within {tolerance:.0%}; its mean over pairs "
      "(effect_vs_matched_pairs) minus that of the strongest null of each seed (the matched pairs themselves, "
      "i.e. 0; the untrained Squeezers' roommates; the shuffled-latent Squeezer's roommates), the lowest. "
      "Two-sided: both signs are findings", "roommates co-activate less than frequency-matched pairs, and less "
      "than an untrained or co-firing-blind Squeezer's roommates (the earlier claim)", entries, primary)


def tax_section(records: Sequence[Mapping], primary: tuple[int, int], main_width: int, faithful_below: float,
                skipped_widths: Mapping[int, str], smoke: bool = False) -> dict[str, Any]:
  entries = []
  for (num_neurons, sae_k, squeezer_k), group in _groups(records, ("num_neurons", "k", "squeezer_k")):
    tax = _values(group, "superposition_tax", "tax")
    entries.append({"num_neurons": num_neurons, "sae_k": sae_k, "squeezer_k": squeezer_k,
                    **_faithfulness(group, faithful_below), "tax": _ci_or_none(tax),
                    "fvu_squeezer": _ci_or_none(_values(group, "superposition_tax", "fvu_squeezer")),
                    "fvu_baseline": _ci_or_none(_values(group, "superposition_tax", "fvu_baseline")),
                    **finding([math.log(t) if t is not None and t > 0 else None for t in tax], +1,
                              {"kind": "monosemantic baseline with the same M (log tax 0)", "tax": 1.0},
                              _reason(group, "superposition_tax"), smoke=smoke, name="superposition_tax")})
  main_entries = [e for e in entries if e["num_neurons"] == main_width]
  section = _section(
      "tax = FVU through the Squeezer's M neurons / FVU of the SAE keeping only its M most-variance atoms "
      "(the others at their mean code); effect = log tax over seeds", "superposition costs: tax > 1",
      main_entries, primary)
  section["by_num_neurons"] = entries
  section["skipped_num_neurons"] = {str(m): reason for m, reason in skipped_widths.items()}
  section["num_neurons"] = main_width
  return section


def _themes_found(found: Mapping[str, Any], num_themes: Sequence[Any]) -> str:
  if found["verdict"] == "supported":
    return f"themes found ({', '.join(str(n) for n in num_themes)} per seed)"
  if found["verdict"] == "cannot be tested":
    return verdict_text(found)
  return "no themes found"


def theme_existence(sae_records: Sequence[Mapping], inputs: Sequence[str], sae_k: int, smoke: bool = False
                    ) -> dict[str, Any]:
  """Per clustering input: do themes exist? The best clustering score minus that of the same clustering
  of shuffled inputs, per seed, +1 predicted; Holm over the inputs. "themes found" only when supported,
  else "no themes found" (or why it cannot be tested)."""
  group = [r for r in sae_records if r["k"] == sae_k]
  out = {}
  for kind in inputs:
    reason = _reason(group, "themes", kind) or next((r["themes"][kind]["null_reason"] for r in group
                                                     if r["themes"][kind].get("null_reason")), "")
    out[kind] = {"score": _ci_or_none(_values(group, "themes", kind, "score")),
                 "null_score": _ci_or_none(_values(group, "themes", kind, "null_score")),
                 **finding(_values(group, "themes", kind, "score_excess"), +1,
                           {"kind": "the same clustering of shuffled inputs (co-activation: codes permuted over "
                                    "tokens column by column; rows: each coordinate permuted over the atoms)",
                            "score": _mean(_values(group, "themes", kind, "null_score"))},
                           reason or "no clustering score", smoke=smoke, name=kind)}
  holm_family(out, smoke)
  for kind, found in out.items():
    found["themes_found"] = _themes_found(found, _values(group, "themes", kind, "num_themes"))
  return out


def themes_section(sae_records: Sequence[Mapping], records: Sequence[Mapping], primary: tuple[int, int],
                   faithful_below: float, inputs: Sequence[str], planted_kinds: Sequence[str],
                   recovered_ari: float, smoke: bool = False) -> dict[str, Any]:
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
                      {"kind": f"ARI threshold {recovered_ari:g}"}, reason or "no ARI", smoke=smoke,
                      name=f"{kind} -> {planted}")}
      recovery.append(row)
  # The recovery grid of the primary SAE k is one family (Holm over inputs x planted kinds).
  grid = {f"{row['input']} -> {planted}": row["adjusted_rand"][planted] for row in recovery
          if row["sae_k"] == primary[0] for planted in planted_kinds}
  holm_family(grid, smoke)
  share_keys = sorted({k for r in records for k in (r.get("share_theme") or {})})
  entries = []
  for (sae_k, squeezer_k), group in _groups(records, ("k", "squeezer_k")):
    entry = {"sae_k": sae_k, "squeezer_k": squeezer_k, **_faithfulness(group, faithful_below), "by_themes": {}}
    for key in share_keys:
      effect = _values(group, "share_theme", key, "effect")
      nulls = with_models(group, {"permuted_themes": [0.0] * len(group)}, "share_theme", key, "effect")
      values, names, strongest = against_strongest(effect, nulls, +1)
      entry["by_themes"][key] = {
          "observed": _ci_or_none(_values(group, "share_theme", key, "observed")),
          "effect_vs_permuted_themes": _ci_or_none(effect),
          **{f"null_{name}_effect": _ci_or_none(v) for name, v in nulls.items() if name != "permuted_themes"},
          **finding(values, +1, strongest_null(names, strongest, list(nulls), effect=_mean(strongest),
                                                fraction=_mean(_values(group, "share_theme", key, "null_mean"))),
                    _reason(group, "share_theme", key), smoke=smoke, name="themes")}
    lead = share_keys[0] if share_keys else None
    entry.update({k: v for k, v in (entry["by_themes"].get(lead) or {"verdict": "cannot be tested",
                                                                      "reason": "no themes", "effect": None,
                                                                      "ci": None, "null": None}).items()
                  if k in ("effect", "ci", "null", "verdict", "reason", "per_seed", "num_seeds", "expected_sign",
                           "p_value", "test")})
    entry["themes_used"] = lead
    entries.append(entry)
  which = {row["input"]: {planted: row["adjusted_rand"][planted]["verdict"] for planted in planted_kinds}
           for row in recovery if row["sae_k"] == primary[0]}
  exist = theme_existence(sae_records, inputs, primary[0], smoke)
  return _section(
      "atoms clustered from decoder rows, encoder rows or the co-activation graph; exist: the clustering's best "
      "score minus that of the same clustering of shuffled inputs (themes found only when above it); ARI "
      "against the planted themes (ground truth: latents inherit the theme of their matched true atom); effect "
      "= fraction of roommate pairs in one theme minus its permutation null, minus the strongest null of each "
      "seed (0, the untrained Squeezers', the shuffled-latent Squeezer's)",
      "roommates share a theme more often than chance and than under an untrained or co-firing-blind Squeezer",
      entries, primary, {"recovery": recovery, "which_clustering_recovers_which": which,
                         "planted_kinds": list(planted_kinds), "exist": exist,
                         "themes_found": {kind: found["themes_found"] for kind, found in exist.items()}})


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
                   if effect.get("ci_low") is not None else None, null=effect.get("null"), verdict=effect["verdict"])
    section.update({k: effect[k] for k in ("per_seed", "expected_sign", "p_value", "test", "reason") if k in effect})
    section["earlier_setting"] = dict(earlier)
  return section


def build_payload(cfg: Any, computed: Mapping[str, Any], *, skipped_widths: Mapping[int, str],
                  dead_latents_payload: Mapping[str, Any] | None, sae_metrics: Mapping[str, np.ndarray],
                  squeezer_metrics: Mapping[str, np.ndarray], ultra_rare_below: float, smoke: bool = False
                  ) -> dict[str, Any]:
  """analysis.json: every section, the faithful Ks, what the window held, and whether verdicts are given."""
  del squeezer_metrics
  records = [r for r in computed["squeezer_records"] if r["stage"] == computed["main_stage"]]
  sae_labels = [{"k": r["k"], "seed_index": r["seed_index"]} for r in computed["sae_records"]]
  primary = (sae_labels[0]["k"], computed["primary_k"])
  main_width = computed["widths"][0]
  faithful_below = cfg.faithful_below
  num_seeds = len({label["seed_index"] for label in sae_labels})
  reason = no_verdict_reason(num_seeds, smoke)
  payload = {
      "smoke": bool(smoke), "num_seeds": num_seeds, "min_seeds": stats.MIN_SEEDS, "no_verdict_reason": reason,
      "or_gates": or_gates_section(records, primary, faithful_below, cfg.margin, cfg.min_count, smoke),
      "validation": validation_section(records, primary, faithful_below, smoke),
      "coactivation": coactivation_section(records, primary, faithful_below, cfg.match_tolerance, smoke),
      "superposition_tax": tax_section(computed["squeezer_records"], primary, main_width, faithful_below,
                                       skipped_widths, smoke),
      "themes": themes_section(computed["sae_records"], records, primary, faithful_below, cfg.theme_inputs,
                               computed["planted_kinds"], cfg.theme_recovered_ari, smoke),
      "dead_latents": dead_latents_section(sae_metrics, sae_labels, dead_latents_payload, ultra_rare_below),
  }
  holm_family({name: payload[name] for name in FAMILY}, smoke)
  payload["family"] = {"hypotheses": list(FAMILY), "correction": "Holm over the tested hypotheses",
                       "alpha": stats.ALPHA}
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
