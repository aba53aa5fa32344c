"""Types of jumps: k-means on standardised jump features, the number of types chosen by silhouette.

Features of a jump (one row of the jump table): its fraction of training, log10(1 + true step), its size
relative to the series' range over the run (absolute value) and its sign, log10(1 + duration in steps),
the layer's depth fraction and the architecture family (one-hot). Each feature is standardised over all
jumps (a constant feature becomes 0). The number of types k is the one with the largest mean silhouette
over k = min_types..max_types (Rousseeuw 1987), not fixed in advance.

Stability: the seeds are split into two disjoint halves (by seed number); k-means with the chosen k is
fit on each half's jumps alone, every jump is assigned by both fits, and the adjusted Rand index of the
two assignments (Hubert & Arabie 1985) says how far the types are a property of the runs rather than of
particular seeds (1: the same partition; about 0: no better than chance).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn import cluster, metrics

from mpcodec.studies.dynamics.grid import FAMILIES

FEATURE_NAMES = ("fraction_of_training", "log10_step", "abs_relative_size", "sign", "log10_duration_steps",
                 "depth_fraction") + tuple(f"family_{f}" for f in FAMILIES)
# The silhouette of more than this many jumps is computed on a fixed random sample of them (its cost is
# quadratic in the number of points).
SILHOUETTE_SAMPLE = 3000


def jump_features(jumps: Mapping[str, np.ndarray]) -> np.ndarray:
  """(J, F) raw features of the jump table's rows, in FEATURE_NAMES order."""
  family_JxF = np.stack([jumps["family"] == f for f in FAMILIES], axis=1).astype(np.float64)
  return np.column_stack([
      jumps["fraction"].astype(np.float64), np.log10(1.0 + jumps["step"].astype(np.float64)),
      np.abs(jumps["relative_size"]).astype(np.float64), np.sign(jumps["size"]).astype(np.float64),
      np.log10(1.0 + jumps["duration_steps"].astype(np.float64)), jumps["depth_fraction"].astype(np.float64),
      family_JxF])


def standardise(features_JxF: np.ndarray) -> np.ndarray:
  """Each column minus its mean over its SD (a column with no spread becomes 0)."""
  mean_F = features_JxF.mean(axis=0)
  sd_F = features_JxF.std(axis=0)
  return np.where(sd_F > 0, (features_JxF - mean_F) / np.where(sd_F > 0, sd_F, 1.0), 0.0)


def _kmeans(num_types: int, seed: int) -> cluster.KMeans:
  return cluster.KMeans(n_clusters=num_types, n_init=4, random_state=seed)


def fit_types(jumps: Mapping[str, np.ndarray], min_types: int = 2, max_types: int = 8,
              min_jumps: int = 30, seed: int = 0) -> dict:
  """Jump types of the whole jump table.

  Returns {"labels" (J,) int (-1 when not clustered), "num_types", "silhouette_by_k", "stability" (ARI
  between the two seed halves, with the halves' seeds), "types" (per type: count and feature means in
  their own units), "reason" (why nothing was clustered, else None)}.
  """
  num_jumps = int(jumps["step"].size)
  result = {"labels": np.full(num_jumps, -1, np.int64), "num_types": None, "silhouette_by_k": {},
            "stability": {"adjusted_rand_index": None, "reason": None}, "types": [], "reason": None,
            "feature_names": list(FEATURE_NAMES), "num_jumps": num_jumps}
  if num_jumps < max(min_jumps, min_types + 1):
    result["reason"] = f"too few jumps to cluster: {num_jumps} (at least {max(min_jumps, min_types + 1)})"
    result["stability"]["reason"] = result["reason"]
    return result
  raw_JxF = jump_features(jumps)
  z_JxF = standardise(raw_JxF)
  distinct = np.unique(z_JxF, axis=0).shape[0]
  rng = np.random.default_rng(seed)
  sample = (np.sort(rng.choice(num_jumps, SILHOUETTE_SAMPLE, replace=False))
            if num_jumps > SILHOUETTE_SAMPLE else np.arange(num_jumps))
  scores, fits = {}, {}
  for k in range(min_types, min(max_types, distinct - 1) + 1):
    model = _kmeans(k, seed).fit(z_JxF)
    if np.unique(model.labels_[sample]).size < 2:
      continue
    scores[k] = float(metrics.silhouette_score(z_JxF[sample], model.labels_[sample]))
    fits[k] = model
  if not scores:
    result["reason"] = f"the {num_jumps} jumps have {distinct} distinct feature vectors: too few to cluster"
    result["stability"]["reason"] = result["reason"]
    return result
  best = max(scores, key=lambda k: (scores[k], -k))
  labels_J = fits[best].labels_.astype(np.int64)
  # Types numbered by their mean time in training, so type 0 is the earliest.
  order = np.argsort([jumps["fraction"][labels_J == t].mean() for t in range(best)], kind="stable")
  labels_J = np.argsort(order)[labels_J]
  result.update(labels=labels_J, num_types=best, silhouette_by_k={str(k): v for k, v in scores.items()})
  result["stability"] = _stability(jumps, z_JxF, best, seed)
  result["types"] = describe_types(jumps, raw_JxF, labels_J, best)
  return result


def _stability(jumps: Mapping[str, np.ndarray], z_JxF: np.ndarray, num_types: int, seed: int) -> dict:
  """ARI between the types fit on two disjoint halves of the seeds, each assigning every jump."""
  seeds = np.unique(jumps["seed"])
  if seeds.size < 2:
    return {"adjusted_rand_index": None, "reason": f"jumps from {seeds.size} seed(s): no two halves"}
  first, second = seeds[:seeds.size // 2], seeds[seeds.size // 2:]
  in_first_J = np.isin(jumps["seed"], first)
  halves = (in_first_J, ~in_first_J)
  if min(int(h.sum()) for h in halves) < 2 * num_types:
    return {"adjusted_rand_index": None, "first_half_seeds": first.tolist(),
            "second_half_seeds": second.tolist(),
            "reason": f"a half of the seeds has fewer than {2 * num_types} jumps"}
  assignments = [_kmeans(num_types, seed).fit(z_JxF[h]).predict(z_JxF) for h in halves]
  return {"adjusted_rand_index": float(metrics.adjusted_rand_score(*assignments)),
          "first_half_seeds": first.tolist(), "second_half_seeds": second.tolist(), "reason": None}


def _type_name(means: Mapping[str, float], shares: Mapping[str, float]) -> str:
  """A short computed description: phase of training, direction, and the family if one dominates."""
  fraction = means["fraction_of_training"]
  phase = "early" if fraction < 1 / 3 else ("middle" if fraction < 2 / 3 else "late")
  direction = "rise" if means["sign"] > 0.5 else ("fall" if means["sign"] < -0.5 else "mixed sign")
  family = max(shares, key=shares.get)
  where = f", {family}" if shares[family] >= 0.8 else ""
  depth_fraction = means["depth_fraction"]
  depth = "shallow" if depth_fraction < 1 / 3 else ("deep" if depth_fraction > 2 / 3 else "mid-depth")
  return f"{phase} {direction}, {depth} layers{where}"


def describe_types(jumps: Mapping[str, np.ndarray], raw_JxF: np.ndarray, labels_J: np.ndarray,
                   num_types: int) -> list[dict]:
  """Per type: count and the means of its features in their own units (step, size, duration in steps)."""
  types = []
  for t in range(num_types):
    members = labels_J == t
    shares = {f: float(np.mean(jumps["family"][members] == f)) for f in FAMILIES}
    means = {name: float(raw_JxF[members, i].mean()) for i, name in enumerate(FEATURE_NAMES[:6])}
    types.append({
        "type": t, "count": int(members.sum()), "name": _type_name(means, shares),
        "mean_step": float(jumps["step"][members].mean()),
        "mean_fraction_of_training": means["fraction_of_training"],
        "mean_abs_relative_size": means["abs_relative_size"],
        "fraction_rising": float(np.mean(jumps["size"][members] > 0)),
        "mean_duration_steps": float(jumps["duration_steps"][members].mean()),
        "mean_depth_fraction": means["depth_fraction"], "family_shares": shares})
  return types
