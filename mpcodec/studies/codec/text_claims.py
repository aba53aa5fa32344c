"""The downstream text stages' statistics: the replication table of the earlier study's claims, the
hypotheses, and the steering and detection summaries they read.

The unit of replication is the SAE seed (the seeds share the documents, the probe and the detection
splits; a seed changes the SAE's initialisation and batch order). Figures come with a Student t interval
over seeds (`stats.t_interval`); every verdict is the statistics layer's (`mpcodec.core.stats`, the rules
in docs/replication.md):
  - a claimed figure (the steering ratio, the stability ratio, the SNR exponent, the detection rate) is
    tested by equivalence within its margin declared in CLAIMS (`stats.test_equivalence`: TOST over seeds;
    ratios on the log scale); a claimed direction (the Validation Hypothesis) by
    `stats.test_direction_claim`; the table, the codec's rows included, is one Holm family
    (`stats.replication_family`);
  - the hypotheses (HYPOTHESES: theme and atom above the random control of the same norm, the theme
    detector above the raw-activation probe) are one Holm family (`stats.test_family`);
  - a smoke run or fewer than `stats.MIN_SEEDS` seeds: every verdict "cannot be tested" and a banner at
    the top of report.md (`no_verdict_reason`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from mpcodec.core import stats
from mpcodec.core.stats import rules as stats_rules
from mpcodec.studies.codec import replication

# The earlier study's claims, as recorded in code (docs/replication.md, section 3).
CLAIM_DOUBLING = "thematic steering doubled the target probability"
CLAIM_STABILITY = "(thematic steering) 1.8x more stable than single-atom steering"
CLAIM_SNR = "the SNR of population steering scales with sqrt(N) atoms"
CLAIM_DETECTION = ("98.2% detection rate with near-zero false positives (a \"safety\" detector in the earlier "
                   "work; here an AG News class)")


@dataclasses.dataclass(frozen=True)
class ClaimSpec:
  """One claim of the earlier study: its text, what we compute per SAE seed, and the claimed figure (`shown`
  as quoted, `claimed` on the tested `scale`) with its margin, or a claimed direction (`expected_sign`)."""
  key: str
  claim: str
  statistic: str
  shown: str
  claimed: float = math.nan
  scale: Literal["log", "fraction", "exponent", "direction"] = "direction"
  margin: stats.Margin | None = None
  expected_sign: int = 0


_RATIO_MARGIN = stats.Margin(math.log(1.2), "absolute", "+-20% on the log scale: a ratio (right-skewed, so "
                             "tested as a log); a fifth is the smallest change read as another finding")
CLAIMS = {
    "doubling": ClaimSpec(
        "doubling", CLAIM_DOUBLING, "per SAE seed: log(mean p_steered(target) / mean p_clean(target)) under the "
        "probe, theme vector at the reference strength, held-out documents of the other classes", "2x",
        math.log(2.0), "log", _RATIO_MARGIN),
    "stability": ClaimSpec(
        "stability", CLAIM_STABILITY, "per SAE seed: log(KL(single atom) / KL(theme)) of the probe's "
        "distribution on neutral (Shakespeare) lines at the reference strength", "1.8x", math.log(1.8), "log",
        _RATIO_MARGIN),
    "snr": ClaimSpec(
        "snr", CLAIM_SNR, "per SAE seed: the exponent beta of SNR ∝ N^beta (least squares on log-log) over the "
        "N most target-selective atoms summed", "exponent 0.5", 0.5, "exponent",
        stats.Margin(0.1, "absolute", "separates sqrt(N) (0.5) from N^0.25 and from linear scaling (1.0)")),
    "detection": ClaimSpec(
        "detection", CLAIM_DETECTION, "per SAE seed, mean over splits: the theme detector's detection rate on "
        "the test part at the threshold set on the disjoint calibration part (at most max_fpr of its negatives "
        "flagged)", "98.2%", 0.982, "fraction",
        stats.Margin(0.02, "absolute", "near the ceiling 5 points would accept a miss rate almost four times "
                     "the claimed one; the false-positive part holds by calibration and is reported, not tested")),
}

# The study's own hypotheses (one Holm family), each a per-SAE-seed effect with a predicted sign.
HYPOTHESES = {
    "theme_above_random": "the theme vector raises p(target) more than random directions of the same norm "
                          "(per seed: log ratio of the theme minus that of the random control, reference "
                          "strength)",
    "atom_above_random": "the single atom raises p(target) more than random directions of the same norm (per "
                         "seed: log ratio of the atom minus that of the random control, reference strength)",
    "theme_detector_above_probe": "a theme's activation detects the class better than a logistic probe on the "
                                  "raw activations (per seed: mean over splits of theme AUROC minus probe "
                                  "AUROC on the test part)",
}


def no_verdict_reason(num_seeds: int, smoke: bool) -> str | None:
  """Why the run gives no verdict at all ("smoke run", "2 seeds, at least 5 needed"), or None."""
  return stats_rules.untestable_reason(num_seeds, stats.MIN_SEEDS, smoke)


def finite(values: Sequence[Any]) -> list[float]:
  """The finite values, as floats (a seed without a value is left out; callers count it)."""
  return [float(v) for v in np.asarray(values, np.float64).ravel() if math.isfinite(float(v))]


def interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
  """{mean, low, high, n, values} of the finite values: Student t interval over them (`stats.t_interval`);
  low / high None with fewer than 2 values."""
  kept = finite(values)
  if not kept:
    return {"mean": None, "low": None, "high": None, "n": 0, "values": []}
  found = stats.t_interval(kept, confidence=confidence)
  low, high = (found.low, found.high) if math.isfinite(found.low) else (None, None)
  return {"mean": found.estimate, "low": low, "high": high, "n": len(kept), "values": kept}


def interval_text(cell: Mapping[str, Any], spec: str = ".3f") -> str:
  """An `interval` cell as a report prints it: "mean [low, high]" in the format `spec`, the mean alone
  without an interval, "n/a" without a mean."""
  if cell["mean"] is None:
    return "n/a"
  if cell["low"] is None:
    return format(cell["mean"], spec)
  return f"{cell['mean']:{spec}} [{cell['low']:{spec}}, {cell['high']:{spec}}]"


@dataclasses.dataclass(frozen=True)
class ClaimTest:
  """A claim's declaration and its test before Holm; `note` says which seeds were left out and why."""
  spec: ClaimSpec
  result: stats.ReplicationResult
  note: str = ""


def test_claim(spec: ClaimSpec, values: Sequence[Any], smoke: bool, why_missing: str = "",
               dropped_reason: str = "") -> ClaimTest:
  """The claim's test on its per-seed values (non-finite ones left out and counted in the note)."""
  values = list(values)
  kept = finite(values)
  note = (f"{len(values) - len(kept)} of {len(values)} seeds left out ({dropped_reason or 'no finite value'})"
          if len(kept) < len(values) else "")
  if not kept:
    reason = (no_verdict_reason(0, smoke) if smoke else why_missing or (note and f"no seed has a value: {note}")
              or "not measured")
    return ClaimTest(spec, stats.ReplicationResult.untestable(spec.key, reason, spec.claimed, spec.margin), note)
  if spec.margin is None:
    result = stats.test_direction_claim(kept, spec.expected_sign, name=spec.key, smoke=smoke)
  else:
    result = stats.test_equivalence(kept, spec.claimed, spec.margin, name=spec.key, smoke=smoke)
  return ClaimTest(spec, result, note)


test_claim.__test__ = False  # Not a pytest test, though its name starts with "test".


def replication_table(tests: Sequence[ClaimTest]) -> list[dict[str, Any]]:
  """The table's rows: each claim re-decided after Holm over the table's tested claims."""
  return [{**replication.claim_row(test.spec, result, replication.result_text(result, test.spec.scale)),
           "note": test.note}
          for test, result in zip(tests, stats.replication_family([t.result for t in tests]))]


def verdict_text(row: Mapping[str, Any]) -> str:
  """A verdict as the report prints it: "cannot be tested (smoke run)" carries its reason."""
  if row.get("verdict") == "cannot be tested" and row.get("reason"):
    return f"cannot be tested ({row['reason']})"
  return str(row.get("verdict"))


def hypotheses(steering: Mapping[str, Any] | None, detection: Mapping[str, Any] | None, smoke: bool
               ) -> dict[str, Any]:
  """HYPOTHESES tested on their per-seed effects, one Holm family (`stats.test_family`); as JSON dicts. A
  stage that did not run (None) leaves its hypotheses "cannot be tested"."""
  effects = {"theme_above_random": steering["per_seed"]["theme_minus_random"] if steering else [],
             "atom_above_random": steering["per_seed"]["atom_minus_random"] if steering else [],
             "theme_detector_above_probe": detection["per_seed"]["theme_minus_probe_auroc"] if detection else []}
  missing = {"theme_above_random": steering, "atom_above_random": steering, "theme_detector_above_probe": detection}
  kept = {name: finite(values) for name, values in effects.items()}
  tested = stats.test_family({name: values for name, values in kept.items() if values}, +1, smoke=smoke)
  out = {}
  for name, statement in HYPOTHESES.items():
    why = "no seed has a value" if missing[name] is not None else "its stage is not in config.stages"
    result = tested.get(name) or stats.HypothesisResult.untestable(name, +1, why)
    out[name] = dict(stats.to_json(result), hypothesis=statement,
                     num_seeds_left_out=len(effects[name]) - len(kept[name]))
  return out


def not_run(keys: Sequence[str], stage: str) -> list[ClaimTest]:
  """The claims of a stage that did not run, "cannot be tested" (before Holm)."""
  return [ClaimTest(CLAIMS[key], stats.ReplicationResult.untestable(
      key, f"the {stage} stage is not in config.stages", CLAIMS[key].claimed, CLAIMS[key].margin)) for key in keys]


# ----------------------------------------------------------------------------- steering


def _log_ratio(steered: np.ndarray, clean: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where((steered > 0) & (clean > 0), np.log(np.maximum(steered, 1e-300))
                    - np.log(np.maximum(clean, 1e-300)), np.nan)


def steering_summary(result: Mapping[str, Any], reference_strength: float, choices: Sequence[Mapping]
                     ) -> dict[str, Any]:
  """metrics/steering.json: per set, method, metric and strength a t interval over SAE seeds; the per-seed
  values at the reference strength that the claims and hypotheses read."""
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
  steer, neutral = result["sets"]["steering"], result["sets"]["neutral"]
  log_ratio = {method: _log_ratio(m["p_target_steered"][:, ref], m["p_target_clean"][:, ref])
               for method, m in steer.items()}
  with np.errstate(divide="ignore", invalid="ignore"):
    kl_theme, kl_atom = neutral["theme"]["kl"][:, ref], neutral["atom"]["kl"][:, ref]
    log_stability = np.where((kl_theme > 0) & (kl_atom > 0), np.log(np.maximum(kl_atom, 1e-300))
                             - np.log(np.maximum(kl_theme, 1e-300)), np.nan)
  per_seed = {
      "log_ratio": {method: values.tolist() for method, values in log_ratio.items()},
      "log_stability": log_stability.tolist(),
      "snr_exponent": [row["exponent"] for row in result["snr"]],
      "theme_minus_random": (log_ratio["theme"] - log_ratio["random"]).tolist(),
      "atom_minus_random": (log_ratio["atom"] - log_ratio["random"]).tolist(),
  }
  return {"strengths": strengths, "reference_strength": reference_strength,
          "reference_strength_declared": "in the config (steering.reference_strength) before the run; the "
                                         "sweep over strengths is descriptive and chooses nothing",
          "random_directions": result.get("random_directions"), "snr_strength": result["snr_strength"],
          "sets": by_set, "per_seed": per_seed,
          "snr": [dict(row) for row in result["snr"]], "choices": [dict(c) for c in choices],
          "definitions": {key: CLAIMS[key].statistic for key in ("doubling", "stability", "snr")}}


def steering_tests(summary: Mapping[str, Any], smoke: bool) -> list[ClaimTest]:
  """The doubling, stability and SNR claims' tests on the summary's per-seed values (before Holm)."""
  per_seed = summary["per_seed"]
  snr_reasons = sorted({row["reason"] for row in summary["snr"] if row.get("reason")})
  # The summary's own definitions (a causal LM's generation stage measures next-token distributions).
  defined = summary.get("definitions", {})
  spec = {key: dataclasses.replace(CLAIMS[key], statistic=defined.get(key, CLAIMS[key].statistic))
          for key in ("doubling", "stability", "snr")}
  return [test_claim(spec["doubling"], per_seed["log_ratio"]["theme"], smoke,
                     dropped_reason="a target probability of 0 has no logarithm"),
          test_claim(spec["stability"], per_seed["log_stability"], smoke,
                     dropped_reason="a KL divergence of 0 gives no ratio"),
          test_claim(spec["snr"], per_seed["snr_exponent"], smoke,
                     dropped_reason="; ".join(snr_reasons) or "no exponent")]


# ----------------------------------------------------------------------------- detection

DETECTION_RATES = ("auroc", "calibrated_tpr", "calibrated_fpr", "tpr_at_fpr")


def detection_summary(result: Mapping[str, Any]) -> dict[str, Any]:
  """metrics/detection.json: per detector a t interval of each rate, the per-seed values the claim and the
  hypothesis read.

  The theme detector depends on the SAE seed: its per-seed value is the mean over splits, its interval
  over seeds. The probe and DiffMean do not: their interval is over splits (which share documents)."""
  rows = result["rows"]
  seeds = sorted({row["seed_index"] for row in rows if row["detector"] == "theme"})
  theme_by_seed = {s: [row for row in rows if row["detector"] == "theme" and row["seed_index"] == s]
                   for s in seeds}
  per_seed = {key: [float(np.mean([row[key] for row in theme_by_seed[s]])) for s in seeds]
              for key in DETECTION_RATES}
  probe_by_split = {row["split"]: row["auroc"] for row in rows if row["detector"] == "probe"}
  per_seed["theme_minus_probe_auroc"] = [
      float(np.mean([row["auroc"] - probe_by_split[row["split"]] for row in theme_by_seed[s]])) for s in seeds]
  detectors = {"theme": {key: interval(per_seed[key]) for key in DETECTION_RATES}}
  for name in ("probe", "diffmean"):
    mine = [row for row in rows if row["detector"] == name]
    detectors[name] = {key: interval([row[key] for row in mine]) for key in DETECTION_RATES}
  return {"detectors": detectors, "per_seed": per_seed, "seed_indices": seeds,
          "theme_minus_probe_auroc": interval(per_seed["theme_minus_probe_auroc"]),
          "rows": list(rows), "max_fpr": result["max_fpr"],
          "num_documents": result["num_documents"], "num_test_documents": result["num_test_documents"],
          "part_sizes": result["part_sizes"],
          "definitions": {
              "calibrated_tpr": "detection rate on the test part at the threshold set on the calibration part "
                                "(at most max_fpr of its negatives flagged); parts of one split are disjoint",
              "calibrated_fpr": "false-positive rate of that threshold on the test part",
              "tpr_at_fpr": "oracle: the best detection rate at FPR <= max_fpr read off the test part's own "
                            "ROC (its threshold is chosen on the test part; not a deployable rate)",
              "interval": "theme: over SAE seeds (mean over splits per seed); probe, DiffMean: over splits"}}


def detection_tests(summary: Mapping[str, Any], smoke: bool) -> list[ClaimTest]:
  """The detection claim's test on the per-seed calibrated detection rates (before Holm)."""
  return [test_claim(CLAIMS["detection"], summary["per_seed"]["calibrated_tpr"], smoke)]


# ----------------------------------------------------------------------------- the codec's rows

# The statistic is the analysis' validation effect per seed; the report reads its definition from
# metrics/analysis.json where it is given there (this text is the fallback).
_VALIDATION = ClaimSpec(
    "validation", "the Validation Hypothesis: if the synthetic neurons' interference patterns match the "
    "original model's neurons, the SAE atoms are the model's true atoms",
    "per seed: the analysis' validation effect on MiniLM's FFN neurons and the synthetic neurons (> 0: their "
    "Hungarian-matched truth tables agree better than under the strongest null)", "match", expected_sign=+1)


def _or_prevalence_spec() -> ClaimSpec:
  """The codec table's OR-prevalence claim (its margin and reason declared once, in replication.CLAIMS)."""
  claim = next(c for c in replication.CLAIMS if c.key == "or_prevalence")
  return ClaimSpec(claim.key, claim.claim, claim.statistic, claim.shown, claim.claimed, "fraction",
                                 claim.margin)


def analysis_claims(payload: Mapping[str, Any] | None, smoke: bool) -> list[ClaimTest]:
  """The replication tests (before Holm) of the part-2 findings the study reports on MiniLM: the Validation
  Hypothesis on its FFN neurons (the analysis' validation section's per-seed effect, a direction) and OR
  prevalence (per-seed prevalence at the primary (SAE k, Squeezer K), equivalence within the codec table's
  margin)."""
  or_spec = _or_prevalence_spec()
  if payload is None:
    return [ClaimTest(spec, stats.ReplicationResult.untestable(
        spec.key, "the part-2 analyses are disabled", spec.claimed, spec.margin)) for spec in (_VALIDATION, or_spec)]
  validation = payload["validation"]
  gates = payload["or_gates"]
  primary = (gates.get("primary_sae_k"), gates.get("primary_squeezer_k"))
  entry = next((e for e in gates.get("by_squeezer_k", []) if (e.get("sae_k"), e.get("squeezer_k")) == primary),
               None)
  prevalence = ((entry or {}).get("or_prevalence") or {}).get("per_seed") or []
  validation_spec = (dataclasses.replace(_VALIDATION, statistic=f"per seed: {validation['definition']}")
                     if validation.get("definition") else _VALIDATION)
  return [test_claim(validation_spec, validation.get("per_seed") or [], smoke,
                                   why_missing=validation.get("reason") or "no seed could be analysed"),
          test_claim(or_spec, prevalence, smoke,
                                   why_missing=gates.get("reason") or "no OR prevalence at the primary K")]


def analysis_note(payload: Mapping[str, Any] | None) -> str:
  if payload is None:
    return "The part-2 analyses are disabled (`config.analysis.enabled`)."
  return ("The part-2 analyses (truth tables, OR prevalence, validation on MiniLM's FFN neurons, "
          "co-activation, tax, themes, atlas) are in `metrics/analysis.json` and `atlas.json`, the codec's "
          "section above.")
