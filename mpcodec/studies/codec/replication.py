"""The replication table: each claim of the earlier study beside our per-seed result and a verdict of the
statistics layer, plus the analysis part of report.md. Claim texts are as recorded in code (the earlier
log's own wording is not held, docs/replication.md section 3); every figure is read from the analysis
payload.

CLAIMS declares each claim once: what we compute per seed, and either the claimed figure with its margin
and the margin's reason, or the claimed direction. Verdicts (`stats.REPLICATION_VERDICTS`):
- a claimed figure c: TOST equivalence within c +- margin (`stats.test_equivalence`): "replicates" when the
  90% t interval over seeds lies inside the band, "does not replicate" when the 95% interval lies wholly
  outside it, "inconclusive" otherwise; ratios are tested on the log scale;
- a claimed direction: `stats.test_direction_claim` on the per-seed effect against the strongest null;
- "themes found by clustering atoms": a direction per clustering (ARI above the recovery threshold where
  themes are planted, else the clustering score above that of shuffled inputs); it replicates when one
  clustering does after Bonferroni over them, and does not when every one is shown not to;
- Holm over the table's tested claims (`stats.replication_family`): one table, one family;
- "cannot be tested": a smoke run, fewer than `stats.MIN_SEEDS` seeds, or nothing measured (the reason
  says which).
The earlier atlas (512 atoms mapped to 128 neurons) is not a statistical claim: its shape is set by the
configuration, so it is stated beside the table (`atlas_claim`) with no verdict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mpcodec.core import stats
from mpcodec.studies.codec.verdicts import verdict_text

REPLICATION_VERDICTS = stats.REPLICATION_VERDICTS
FIVE_POINTS = "a fraction: 5 percentage points is the smallest difference read as another finding"


@dataclasses.dataclass(frozen=True)
class Claim:
  """One claim of the earlier study: its text (as recorded in code), what we compute per seed, and the
  claimed figure (`shown` as quoted; `claimed` on the tested `scale`) with its margin, or a direction."""
  key: str
  claim: str
  statistic: str
  shown: str = ""
  claimed: float = math.nan
  scale: Literal["fraction", "log", "direction"] = "direction"
  margin: stats.Margin | None = None
  expected_sign: int = 0


CLAIMS = (
    Claim("or_prevalence", "OR-gate prevalence 21.8%",
          "fraction of the testable roommate pairs classed OR, at the primary (SAE k, Squeezer K)", "21.8%",
          0.218, "fraction", stats.Margin(0.05, "absolute", FIVE_POINTS)),
    Claim("or_structures", "re-compression discovers logical OR structures",
          "OR prevalence minus that of the strongest null of its seed (permuted assignment, random pairs, "
          "untrained Squeezers, the shuffled-latent Squeezer)", "above every null", expected_sign=+1),
    Claim("faithfulness", "faithfulness ratio 1.82x",
          "log faithfulness ratio (squared error through SAE + Squeezer / of the SAE alone) at the primary K",
          "1.82x", math.log(1.82), "log",
          stats.Margin(math.log(1.1), "absolute", "+-10% on the log scale: a relative 25% let a ratio of 2.35 "
                       "'replicate' 1.82; 10% keeps the upper edge (2.0) at the faithfulness threshold "
                       "faithful_below = 2")),
    Claim("dead_features", '"3,758 dead features" of 4,096 (100 concepts, 768 dims), without AuxK',
          "dead fraction of the earlier setting's SAE without AuxK", "3,758 of 4,096 (91.7%)", 3758 / 4096,
          "fraction", stats.Margin(0.05, "absolute", FIVE_POINTS + " (+-205 of 4,096 latents)")),
    Claim("coactivation", "roommate pairs have significantly lower co-activation than random pairs",
          "roommates' mean log lift minus that of frequency-matched pairs, minus the lowest null of its seed "
          "(0, the untrained Squeezers', the shuffled-latent Squeezer's)", "lower", expected_sign=-1),
    Claim("tax", "superposition tax: a 10.9x MSE increase over a monosemantic baseline",
          "log superposition tax at the main M and the primary K", "10.9x", math.log(10.9), "log",
          stats.Margin(math.log(1.2), "absolute", "+-20% on the log scale: a ratio, whose spread over "
                       "settings is wider than the faithfulness ratio's")),
    Claim("themes", "themes found by clustering atoms",
          "per clustering input: ARI against each planted theme kind minus the recovery threshold where themes "
          "are planted, else the clustering's best score minus that of the same clustering of shuffled inputs; "
          "the best clustering, Bonferroni over them", "found", expected_sign=+1),
)
ATLAS_CLAIM = "an atlas of 512 atoms mapped to 128 neurons"


def _entry(section: Mapping[str, Any], key: str = "by_squeezer_k") -> Mapping[str, Any] | None:
  wanted = (section.get("primary_sae_k"), section.get("primary_squeezer_k"))
  for entry in section.get(key, []):
    if (entry.get("sae_k"), entry.get("squeezer_k")) == wanted:
      return entry
  return None


def _per_seed(summary: Mapping[str, Any] | None) -> list[float] | None:
  return None if summary is None else summary.get("per_seed")


def _log(values: Sequence[float] | None) -> list[float] | None:
  return None if values is None else [math.log(v) for v in values if v is not None and v > 0]


def _inputs(payload: Mapping[str, Any]) -> dict[str, tuple[list[float] | None, str]]:
  """Each claim's per-seed values (None: not measured) and why they may be missing."""
  gates, tax, dead = payload["or_gates"], payload["superposition_tax"], payload["dead_latents"]
  gates_entry, tax_entry = _entry(gates), _entry(tax)
  faith = next((e for e in payload["faithfulness"]["by_squeezer_k"]
                if e["squeezer_k"] == payload["primary"]["squeezer_k"]), None)
  off = next((s for s in (dead.get("earlier_setting") or {}).get("by_aux_k", []) if s["aux_k"] == 0), None)
  return {
      "or_prevalence": (_per_seed(gates_entry and gates_entry["or_prevalence"]), gates.get("reason", "")),
      "or_structures": (gates.get("per_seed"), gates.get("reason", "")),
      "faithfulness": (_log(_per_seed(faith and faith["faithfulness_ratio"])), "no faithfulness ratio"),
      "dead_features": (_per_seed(off and off["dead_fraction"]),
                        dead.get("reason", "the earlier setting without AuxK was not run")),
      "coactivation": (payload["coactivation"].get("per_seed"), payload["coactivation"].get("reason", "")),
      "tax": (_log(_per_seed(tax_entry and tax_entry["tax"])), tax.get("reason", "")),
  }


def _theme_members(payload: Mapping[str, Any]) -> tuple[dict[str, list[float]], str, str]:
  """The themes claim's clusterings: {name: per-seed values}, what the values are, and why none has a
  value (if so). Where themes are planted and some clustering has an ARI, the recovery grid; otherwise
  (no planted themes, or no latent matched to a true atom) whether each clustering finds themes at all."""
  themes = payload["themes"]
  recovery = {f"{row['input']} -> {kind}": row["adjusted_rand"][kind] for row in themes.get("recovery", [])
              if row["sae_k"] == payload["primary"]["sae_k"] for kind in themes.get("planted_kinds", [])}
  if any(f.get("per_seed") for f in recovery.values()):
    findings, what = recovery, "ARI minus the recovery threshold"
  else:
    findings, what = dict(themes.get("exist") or {}), "clustering score minus that of shuffled inputs"
  reason = next((f"{name}: {f['reason']}" for name, f in findings.items() if f.get("reason")),
                "no clustering input")
  return {name: f.get("per_seed") or [] for name, f in findings.items()}, what, reason


def _union(members: Mapping[str, list[float]], smoke: bool) -> tuple[stats.ReplicationResult | None, str]:
  """The themes claim over its clusterings: the one with the smallest p_for, its p_for times the number
  tested (Bonferroni), and the largest p_against (every clustering must be shown not to recover)."""
  results = {name: stats.test_direction_claim(values, +1, name=name, smoke=smoke)
             for name, values in members.items() if values}
  tested = [r for r in results.values() if r.verdict != "cannot be tested"]
  if not tested:
    first = next(iter(results.values()), None)
    return (dataclasses.replace(first, name="themes") if first else None), (first.name if first else "")
  best = min(tested, key=lambda r: r.p_for)
  return (dataclasses.replace(best, name="themes", p_for=min(1.0, len(tested) * best.p_for),
                              p_against=max(r.p_against for r in tested)),
          f"{best.name} (best of {len(tested)})")


def _test(claim: Claim, values: list[float] | None, reason: str, smoke: bool) -> stats.ReplicationResult:
  if not values:
    return stats.ReplicationResult.untestable(claim.key, reason or "not measured", claim.claimed, claim.margin)
  if claim.margin is None:
    return stats.test_direction_claim(values, claim.expected_sign, name=claim.key, smoke=smoke)
  return stats.test_equivalence(values, claim.claimed, claim.margin, name=claim.key, smoke=smoke)


def figure_text(value: float, scale: str) -> str:
  """A value on its claim's scale: a fraction in percent, a log ratio as a ratio, an exponent plain."""
  if not math.isfinite(value):
    return "n/a"
  if scale == "fraction":
    return f"{100 * value:.1f}%"
  if scale == "log":
    return f"{math.exp(value):.3g}x"
  if scale == "exponent":
    return f"{value:.3g}"
  return f"{value:+.3g}"


def result_text(result: stats.ReplicationResult, scale: str, member: str = "") -> str:
  """Our estimate with its t interval (or the seed count without one) on the claim's scale, for a table."""
  if not result.n:
    return "n/a"
  text = figure_text(result.estimate, scale)
  if math.isfinite(result.low):
    text += (f" [{figure_text(result.low, scale)}, {figure_text(result.high, scale)}] "
             f"({100 * result.confidence:g}% t interval, {result.n} seeds)")
  else:
    text += f" ({result.n} seed{'' if result.n == 1 else 's'}, no interval)"
  return text + (f"; {member}" if member else "")


def _margin(claim: Any) -> str:
  if claim.margin is None:
    return f"none (a direction: {'above' if claim.expected_sign > 0 else 'below'} 0)"
  if claim.scale == "fraction":
    return f"+-{100 * claim.margin.value:g} points"
  if claim.scale == "log":
    return f"+-{100 * (math.exp(claim.margin.value) - 1):.0f}% (log scale)"
  return f"+-{claim.margin.value:g}"


def _finite(x: float) -> float | None:
  return float(x) if x is not None and math.isfinite(x) else None


def claim_row(claim: Any, result: stats.ReplicationResult, ours: str) -> dict[str, Any]:
  """A replication table's row: a claim (a `Claim` here, a `text_claims.ClaimSpec` for the text stages),
  its result after Holm over the table, and `ours`, our figure as the table shows it."""
  return {
      "key": claim.key, "claim": claim.claim, "claimed": claim.shown, "statistic": claim.statistic,
      "ours": ours, "margin": _margin(claim),
      "margin_reason": claim.margin.reason if claim.margin else None, "scale": claim.scale,
      "estimate": _finite(result.estimate), "ci_low": _finite(result.low), "ci_high": _finite(result.high),
      "confidence": result.confidence if result.n else None, "num_seeds": int(result.n),
      "p_for": _finite(result.p_for), "p_against": _finite(result.p_against),
      "p_for_adjusted": _finite(result.p_for_adjusted), "p_against_adjusted": _finite(result.p_against_adjusted),
      "family_size": result.family_size, "verdict": result.verdict, "reason": result.reason}


def replication_rows(payload: Mapping[str, Any], tolerance: float | None = None) -> list[dict[str, Any]]:
  """One row per claim of CLAIMS: claim, claimed, statistic, ours, margin, verdict, reason and the tests'
  figures. `tolerance` is not read (kept for callers of the older rule)."""
  del tolerance
  smoke = bool(payload.get("smoke"))
  inputs = _inputs(payload)
  results, members = [], {}
  for claim in CLAIMS:
    if claim.key == "themes":
      grid, what, why_not = _theme_members(payload)
      result, members[claim.key] = _union(grid, smoke)
      if result is None:
        result = stats.ReplicationResult.untestable(claim.key, why_not)
      members[claim.key] += f" ({what})" if members[claim.key] else ""
    else:
      values, reason = inputs[claim.key]
      result = _test(claim, values, reason, smoke)
    results.append(result)
  return [claim_row(claim, result, result_text(result, claim.scale, members.get(claim.key, "")))
          for claim, result in zip(CLAIMS, stats.replication_family(results))]


def atlas_claim(shape: Mapping[str, Any] | None) -> dict[str, Any]:
  """The earlier atlas beside the table: our atlas' shape, and no verdict (the shape is configured)."""
  ours = ("no live atom" if not shape or not shape.get("num_live_atoms") else
          f"{shape['num_live_atoms']} live of {shape['num_atoms']} atoms -> {shape['num_neurons']} neurons "
          "(atlas.json)")
  return {"claim": ATLAS_CLAIM, "ours": ours, "verdict": None,
          "note": "not a statistical claim: an atlas' shape is set by the configuration (SAE latents, Squeezer "
                  "M), so it is stated, not tested"}


# ----------------------------------------------------------------------------- report.md


def _fmt(value: Any, percent: bool = False) -> str:
  if value is None:
    return "n/a"
  return f"{100 * value:.1f}%" if percent else f"{value:.3g}"


def _ci_text(summary: Mapping[str, Any] | None, percent: bool = False) -> str:
  if summary is None:
    return "n/a"
  low, high = summary.get("ci_low"), summary.get("ci_high")
  ci = f" [{_fmt(low, percent)}, {_fmt(high, percent)}]" if low is not None else " (one seed, no CI)"
  return _fmt(summary["mean"], percent) + ci


def _faithful_widths(payload: Mapping[str, Any]) -> str:
  return ", ".join(f"({e['num_neurons']}, {e['squeezer_k']})" for e in payload["superposition_tax"]["by_num_neurons"]
                   if e["faithful"] and e["sae_k"] == payload["primary"]["sae_k"])


def _seeds_note(payload: Mapping[str, Any]) -> str:
  reason = payload.get("no_verdict_reason")
  if reason:
    return f"No verdict below: {reason}; every verdict reads \"cannot be tested\"."
  return (f"Verdicts over {payload.get('num_seeds')} seeds (the seed is the unit: t intervals and t tests, "
          f"Holm over the study's {len(payload.get('family', {}).get('hypotheses', []))} hypotheses).")


def analysis_markdown(payload: Mapping[str, Any], tolerance: float | None = None) -> str:
  """The report.md sections of the analyses: faithful Ks, each finding per K against its nulls, themes,
  the replication table and the atlas beside it."""
  del tolerance
  lines = ["## Compression rules", "",
           f"Held-out window: {payload['window']['num_tokens']} tokens. Primary run: SAE k="
           f"{payload['primary']['sae_k']}, Squeezer K={payload['primary']['squeezer_k']}, "
           f"M={payload['primary']['num_neurons']}. Findings are read where the Squeezer is faithful "
           f"(faithfulness ratio <= {payload['faithfulness']['faithful_below']:g}): "
           f"K in {payload['faithfulness']['faithful_squeezer_k'] or 'none'}."
           + ("" if payload["faithfulness"]["faithful_squeezer_k"] else
              " No K is faithful at this M, so no finding below is read on a faithful Squeezer.")
           + f" Faithful (M, K) of the tax sweep: {_faithful_widths(payload) or 'none'}. " + _seeds_note(payload), "",
           "Every truth-table and co-activation finding is tested against the strongest null of each seed, "
           "the untrained Squeezers (same shape and K, random init) and the Squeezer trained on shuffled "
           "latents included (per-K verdicts: each alone; section verdicts: Holm).", "",
           "| Squeezer K | faithfulness ratio | faithful | OR prevalence | untrained null | shuffled-latent null | "
           "OR vs strongest null | co-activation vs strongest null | roommates share theme |",
           "|---|---|---|---|---|---|---|---|---|"]
  coact = {e["squeezer_k"]: e for e in payload["coactivation"]["by_squeezer_k"]}
  themes = {e["squeezer_k"]: e for e in payload["themes"]["by_squeezer_k"]}
  for e in payload["or_gates"]["by_squeezer_k"]:
    if e["sae_k"] != payload["primary"]["sae_k"]:
      continue
    k = e["squeezer_k"]
    lines.append(f"| {k} | {_ci_text(e['faithfulness_ratio'])} | {'yes' if e['faithful'] else 'no'} | "
                 f"{_ci_text(e['or_prevalence'], True)} | {_ci_text(e.get('null_untrained_or_prevalence'), True)} | "
                 f"{_ci_text(e.get('null_shuffled_latents_or_prevalence'), True)} | "
                 f"{_fmt(e['effect'], True)} ({verdict_text(e)}) | "
                 f"{_fmt(coact[k]['effect'])} ({verdict_text(coact[k])}) | "
                 f"{_fmt(themes[k]['effect'])} ({verdict_text(themes[k])}) |")
  lines += ["", "Superposition tax by M and K (`plots/tax_vs_m.png`):", "",
            "| M | K | tax | FVU Squeezer | FVU monosemantic | faithfulness ratio |", "|---|---|---|---|---|---|"]
  for e in payload["superposition_tax"]["by_num_neurons"]:
    if e["sae_k"] == payload["primary"]["sae_k"]:
      lines.append(f"| {e['num_neurons']} | {e['squeezer_k']} | {_ci_text(e['tax'])} | {_ci_text(e['fvu_squeezer'])} "
                   f"| {_ci_text(e['fvu_baseline'])} | {_ci_text(e['faithfulness_ratio'])} |")
  lines += ["", "Section verdicts at the primary K (metrics/analysis.json; Holm over the sections):", ""]
  for name in ("or_gates", "validation", "coactivation", "superposition_tax", "themes", "dead_latents"):
    section = payload[name]
    extra = f" ({section['reason']})" if section.get("reason") and section["verdict"] != "cannot be tested" else ""
    lines.append(f"- {name}: {verdict_text(section)}{extra}; where faithful: "
                 f"{section.get('where_faithful', {}).get('verdicts', 'n/a')}")
  exist = payload["themes"].get("exist") or {}
  if exist:
    lines += ["", "Themes: a clustering finds themes only where its best score beats the same clustering of "
              "shuffled inputs (Holm over the inputs):", ""]
    lines += [f"- {kind}: {found['themes_found']} (score {_ci_text(found['score'])} against "
              f"{_ci_text(found['null_score'])} shuffled)" for kind, found in exist.items()]
  recovery = payload["themes"].get("which_clustering_recovers_which") or {}
  if recovery and any(recovery.values()):
    lines += ["", "Which clustering recovers which planted theme kind (ARI above the threshold = supported; "
              "Holm over the grid):", ""]
    lines += [f"- {inp}: " + ", ".join(f"{kind} {v}" for kind, v in kinds.items()) for inp, kinds in recovery.items()]
  rows = payload.get("replication") or replication_rows(payload)
  lines += ["", "## Replication of the earlier claims", "",
            "Each claimed figure is tested by equivalence within its declared margin (TOST over seeds; ratios "
            "on the log scale), each claimed direction against the strongest null; Holm over the table. "
            "Rules and margins: docs/replication.md of the mpcodec repository (section 3).", "",
            "| claim | claimed | ours | margin | verdict | why |", "|---|---|---|---|---|---|"]
  lines += [f"| {r['claim']} | {r['claimed']} | {r['ours']} | {r['margin']} | {verdict_text(r)} | {r['reason']} |"
            for r in rows]
  atlas = payload.get("atlas_claim") or atlas_claim(payload.get("atlas_shape"))
  lines += ["", f"Beside the table, no verdict: \"{atlas['claim']}\". Ours: {atlas['ours']}; {atlas['note']}."]
  return "\n".join(lines) + "\n"
