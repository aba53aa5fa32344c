"""How a codec finding becomes a verdict: per-seed values against the strongest null, through the
statistics layer (`mpcodec.core.stats`, rules in docs/replication.md).

A finding (`finding`) is a list of per-seed values judged by `stats.test_hypothesis`: their mean, Student t
interval, two-sided one-sample t test and verdict (supported / contradicted / inconclusive, or "cannot be
tested" with the reason: a smoke run, fewer than `stats.MIN_SEEDS` seeds, nothing measured);
`holm_family` re-decides a declared family after Holm. A truth-table or co-activation finding's
per-seed value is the trained Squeezer's figure minus the strongest null of that seed
(`against_strongest`): the null furthest in the predicted direction among those read within the run and
the null models (untrained Squeezers, the shuffled-latent Squeezer; `with_models`), so a finding that an
untrained or co-firing-blind model also shows is not supported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import stats

# The study's declared family of hypotheses: the top-level finding of each of these sections.
FAMILY = ("or_gates", "validation", "coactivation", "superposition_tax", "themes", "dead_latents")
# The nulls a finding is read against: the key in analysis.json and what it is.
NULL_KINDS = {
    "permuted_assignment": "the roommates of a permuted atom-to-neuron assignment, read through the same neurons",
    "random_pairs": "random live non-roommate pairs read through the first atom's neuron",
    "frequency_matched_pairs": "non-roommate pairs of matched firing rates (effect 0)",
    "permuted_themes": "theme labels permuted among the live themed atoms (effect 0)",
    "untrained": "untrained Squeezers of the same shape and K (random init; their mean per seed)",
    "shuffled_latents": "the Squeezer trained on SAE latents shuffled over tokens, column by column",
}


def _num(x: float) -> float | None:
  return float(x) if x is not None and math.isfinite(x) else None


def finite_values(values: Sequence[Any]) -> list[float]:
  """The finite values, as floats (None and NaN left out)."""
  return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def finding(values: Sequence[float | None], expected_sign: int, null: Any, reason: str = "", *,
            smoke: bool = False, name: str = "finding") -> dict[str, Any]:
  """An effect over seeds judged by `stats.test_hypothesis` (alone; `holm_family` re-decides a family).

  Seeds without a value (None, NaN) are left out and counted; "cannot be tested" with `reason` when no
  seed has one.
  """
  kept = finite_values(values)
  if not kept:
    return {"effect": None, "ci": None, "null": null, "expected_sign": expected_sign, "verdict": "cannot be tested",
            "reason": reason or "no seed could be analysed", "holm": False}
  result = stats.test_hypothesis(kept, expected_sign, name=name, smoke=smoke)
  ci = [_num(result.low), _num(result.high)]
  out = {"effect": result.estimate, "ci": ci if None not in ci else None, "per_seed": kept, "num_seeds": result.n,
         "null": null, "expected_sign": expected_sign, "p_value": _num(result.p_value), "verdict": result.verdict,
         "holm": False}
  if len(kept) < len(values):
    out["num_seeds_dropped"] = len(values) - len(kept)
  if result.verdict == "cannot be tested":
    out["reason"] = result.reason
  else:
    out["test"] = result.reason
  return out


def holm_family(findings: Mapping[str, dict[str, Any]], smoke: bool = False) -> None:
  """Re-decides each tested finding of one declared family after Holm (in place): p_adjusted, the
  verdict, the test's text, `holm` and `family_size`."""
  names = [n for n, f in findings.items() if f.get("verdict") != "cannot be tested" and f.get("per_seed")]
  results = stats.hypothesis_family([stats.test_hypothesis(findings[n]["per_seed"], findings[n]["expected_sign"],
                                                           name=n, smoke=smoke) for n in names])
  for result in results:
    findings[result.name].update(p_adjusted=_num(result.p_adjusted), verdict=result.verdict, test=result.reason,
                                 holm=True, family_size=result.family_size)


def verdict_text(section: Mapping[str, Any]) -> str:
  """A verdict as reports print it: "cannot be tested (smoke run)" carries its reason."""
  if section.get("verdict") == "cannot be tested" and section.get("reason"):
    return f"cannot be tested ({section['reason']})"
  return str(section.get("verdict"))


def against_strongest(trained: Sequence[Any], nulls: Mapping[str, Sequence[Any]], expected_sign: int
                      ) -> tuple[list[float | None], list[str | None], list[float | None]]:
  """Per seed: trained minus its strongest null, the null's name and its value.

  The strongest null is the one furthest in the predicted direction (largest expected_sign x value)
  among the nulls with a value for that seed; None where the seed has no trained value or no null.
  """
  values, names, null_values = [], [], []
  for i, value in enumerate(trained):
    candidates = {name: float(v[i]) for name, v in nulls.items() if v[i] is not None and math.isfinite(float(v[i]))}
    if value is None or not math.isfinite(float(value)) or not candidates:
      values.append(None)
      names.append(None)
      null_values.append(None)
      continue
    strongest = max(candidates, key=lambda name: expected_sign * candidates[name])
    values.append(float(value) - candidates[strongest])
    names.append(strongest)
    null_values.append(candidates[strongest])
  return values, names, null_values


def strongest_null(names: list[str | None], values: list[float | None], used: Sequence[str], **figures
                   ) -> dict[str, Any]:
  """A finding's `null`: which nulls were tried (NULL_KINDS), the strongest of each seed, and its figures."""
  return {"kind": "the strongest null of each seed (furthest in the predicted direction) among: "
                  + "; ".join(f"{n}: {NULL_KINDS[n]}" for n in used),
          "strongest_per_seed": names, "strongest_value_per_seed": values, "nulls": list(used), **figures}


def model_null(records: Sequence[Mapping], model: str, *path: str) -> list[Any] | None:
  """Per seed: a null model's figure (the mean over its inits for "untrained"); None where the model was
  not made for any seed."""
  if not any(model in (r.get("nulls") or {}) for r in records):
    return None
  out = []
  for r in records:
    found = (r.get("nulls") or {}).get(model)
    found = found if isinstance(found, list) else [found] if found is not None else []
    kept = finite_values([get(f, *path) for f in found])
    out.append(float(np.mean(kept)) if kept else None)
  return out


def with_models(records: Sequence[Mapping], within: Mapping[str, list[Any]], *path: str) -> dict[str, list[Any]]:
  """The within-run nulls and the null models' figures at `path` (models not made are left out)."""
  nulls = dict(within)
  for model in ("untrained", "shuffled_latents"):
    values = model_null(records, model, *path)
    if values is not None:
      nulls[model] = values
  return nulls



def no_verdict_reason(num_seeds: int, smoke: bool) -> str | None:
  """Why the whole run gives no verdict ("smoke run", "2 seeds, at least 5 needed"), or None."""
  if smoke:
    return "smoke run (the :smoke preset)"
  if num_seeds < stats.MIN_SEEDS:
    return f"{num_seeds} seed{'' if num_seeds == 1 else 's'}, at least {stats.MIN_SEEDS} needed"
  return None


def get(record: Any, *path: str) -> Any:
  """record[path[0]][path[1]]..., None where a key is missing."""
  for key in path:
    record = record.get(key) if isinstance(record, Mapping) else None
  return record
