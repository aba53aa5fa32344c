"""The compression-rule analyses of one Squeezer run, on held-out arrays: each returns a JSON-able dict.

Every function takes host or device arrays of one run (the SAE codes of held-out activations, the
Squeezer's neuron activations, its encoder) and calls the pure metrics of `mpcodec.metrics` (truth
tables, co-activation, superposition tax, themes) inside one jitted pass per analysis. A run where an
analysis cannot be made (no live atom, no neuron holding two atoms, no testable pair) gets a `reason`
and null values, never a NaN. Seeds are combined later (`analysis.py`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from mpcodec.metrics import coactivation, superposition_tax, themes
from mpcodec.metrics import sparse_cells as sc
from mpcodec.metrics import truth_tables as tt
from mpcodec.metrics import validation as validation_metrics


@dataclasses.dataclass(frozen=True)
class RuleSettings:
  """The analyses' knobs that shapes and nulls depend on (a subset of `analysis.AnalysisConfig`)."""

  min_count: int = 8
  margin: float = 0.5
  max_pairs: int = 65536
  match_tolerance: float = 0.2
  lift_pseudo_count: float = 1.0
  num_permutations: int = 20
  lift_permutations: int = 10
  chunk_size: int = 256


def padded_size(count: int, cap: int) -> int:
  """The next power of two >= count (>= 1), at most `cap`: few distinct static shapes, few compiles."""
  return int(min(cap, 1 << max(0, int(count - 1).bit_length()))) if count > 0 else 1


_max_row_count = jax.jit(lambda codes_BxN: jnp.max(jnp.sum(codes_BxN > 0, axis=1)))
_row_lists_from_dense = jax.jit(sc.row_lists_from_dense, static_argnums=1)


def row_lists(codes_BxN: Any) -> tuple[jax.Array, jax.Array]:
  """(value_BxK, column_BxK): each row's firing codes as Top-K row lists (`metrics.sparse_cells`).

  K is the largest number of firing codes in a row, rounded up to a power of two (few compiles), so
  every row's firing codes are listed and the sparse passes equal the dense ones.
  """
  codes_BxN = jnp.asarray(codes_BxN, jnp.float32)
  k = padded_size(int(_max_row_count(codes_BxN)), codes_BxN.shape[1])
  return _row_lists_from_dense(codes_BxN, k)


@functools.partial(jax.jit, static_argnames="num_neurons")
def _assignment_pass(w_enc_MxN, live_N, *, num_neurons):
  assignment_N = tt.hard_assignment(w_enc_MxN, live_N)
  return assignment_N, tt.count_roommate_pairs(assignment_N, num_neurons)


_roommate_pairs = jax.jit(tt.roommate_pairs, static_argnums=(1, 2))


def roommate_count(w_enc_MxN: Any, live_N: Any) -> int:
  """Number of roommate pairs of one Squeezer encoder (to pad every run of a stage to one shape)."""
  return int(_assignment_pass(jnp.asarray(w_enc_MxN), jnp.asarray(live_N), num_neurons=int(np.shape(w_enc_MxN)[0]))[1])


def roommates(w_enc_MxN: Any, live_N: Any, settings: RuleSettings, padded_pairs: int | None = None
              ) -> dict[str, Any]:
  """Hard assignment, roommate pairs (padded to `padded_pairs`, default the next power of two of their
  count, at most max_pairs) and their count for one Squeezer encoder."""
  num_neurons = int(np.shape(w_enc_MxN)[0])
  assignment_N, count = _assignment_pass(jnp.asarray(w_enc_MxN), jnp.asarray(live_N), num_neurons=num_neurons)
  count = int(count)
  size = padded_size(count, settings.max_pairs) if padded_pairs is None else max(padded_pairs, 1)
  pairs_Px2, neuron_P, valid_P = _roommate_pairs(assignment_N, num_neurons, size)
  return {"assignment_N": assignment_N, "pairs_Px2": pairs_Px2, "neuron_P": neuron_P, "valid_P": valid_P,
          "num_pairs": min(count, size), "num_pairs_total": count, "num_neurons": num_neurons}


def _class_summary(tables: tt.TruthTables, valid_P: jax.Array) -> dict[str, Any]:
  found = tt.prevalence(tables.class_P, valid_P)
  fraction = np.asarray(found.fraction_C, np.float64)
  num_testable = int(found.num_testable)
  return {
      "num_pairs": int(np.sum(np.asarray(valid_P))), "num_testable": num_testable,
      "num_untestable": int(np.asarray(found.count_C)[tt.UNTESTABLE]),
      "counts": {name: int(c) for name, c in zip(tt.CLASS_NAMES, np.asarray(found.count_C))},
      "prevalence": ({name: float(f) for name, f in zip(tt.CLASS_NAMES[:tt.UNTESTABLE], fraction)}
                     if num_testable else None),
  }


@functools.partial(jax.jit, static_argnames=("num_neurons", "num_null", "min_count", "margin"))
def _or_gate_pass(key, neurons_BxM, value_BxK, column_BxK, assignment_N, pairs_Px2, neuron_P, valid_P, *,
                  num_neurons, num_null, min_count, margin):
  """Truth tables of the roommates, of random non-roommates and of the permuted assignment's roommates.

  Each pair reads only the rows where one of its atoms fires (`sparse_cells`); padding pairs get zero
  counts and means and stay untestable.
  """
  key_random, key_permuted = jax.random.split(key)
  num_atoms = assignment_N.shape[0]
  def tables(pairs, neurons, valid):
    return sc.sparse_truth_tables(neurons_BxM, value_BxK, column_BxK, pairs, neurons, min_count, num_atoms,
                                  margin, valid)
  roommate = tables(pairs_Px2, neuron_P, valid_P)
  random_pairs, random_neuron, random_valid = tt.random_nonroommate_pairs(key_random, assignment_N, num_null)
  random = tables(random_pairs, random_neuron, random_valid)
  permuted_N = tt.permuted_assignment(key_permuted, assignment_N)
  perm_pairs, perm_neuron, perm_valid = tt.roommate_pairs(permuted_N, num_neurons, pairs_Px2.shape[0])
  permuted = tables(perm_pairs, perm_neuron, perm_valid)
  return roommate, (random, random_valid), (permuted, perm_pairs, perm_neuron, perm_valid)


def or_gates(key: jax.Array, neurons_BxM: Any, codes_BxN: Any, rooms: dict[str, Any], settings: RuleSettings
             ) -> dict[str, Any]:
  """Truth-table classes of the roommate pairs and of two nulls; keeps the tables for the atlas and plots.

  Nulls: random live non-roommate pairs read through the first atom's neuron, and the roommates of the
  same neurons after the live atoms' neurons are permuted (`truth_tables.permuted_assignment`).
  """
  out: dict[str, Any] = {"num_roommate_pairs": rooms["num_pairs"]}
  if rooms["num_pairs"] == 0:
    out["reason"] = "no neuron holds two live atoms: no roommate pairs"
    return out
  value_BxK, column_BxK = row_lists(codes_BxN)
  roommate, (random, random_valid), (permuted, perm_pairs, perm_neuron, perm_valid) = _or_gate_pass(
      key, jnp.asarray(neurons_BxM), value_BxK, column_BxK, rooms["assignment_N"], rooms["pairs_Px2"],
      rooms["neuron_P"], rooms["valid_P"], num_neurons=rooms["num_neurons"],
      num_null=int(rooms["pairs_Px2"].shape[0]), min_count=settings.min_count, margin=settings.margin)
  out["roommates"] = _class_summary(roommate, rooms["valid_P"])
  out["null_random_pairs"] = _class_summary(random, random_valid)
  out["null_permuted_assignment"] = _class_summary(permuted, perm_valid)
  if out["roommates"]["num_testable"] == 0:
    out["reason"] = (f"no roommate pair has >= {settings.min_count} samples in each of its four truth-table "
                     "cells")
  out["_tables"] = roommate
  out["_permuted"] = (permuted, perm_pairs, perm_neuron)
  return out


_layer_truth_tables = jax.jit(sc.sparse_layer_truth_tables, static_argnames=("min_count", "num_atoms"))


def _testable_subset(tables: tt.TruthTables, pairs_Px2: Any, neuron_P: Any, cap: int):
  """The testable pairs only, padded to a power of two: (tables, pairs, neurons, valid) on the host."""
  keep_P = np.asarray(tables.testable_P)
  size = padded_size(int(keep_P.sum()), cap)
  pairs, neurons, valid = validation_metrics.select_pairs(np.asarray(pairs_Px2), np.asarray(neuron_P), keep_P, size)
  index = np.flatnonzero(keep_P)[:size]
  index = np.concatenate([index, np.zeros(size - index.size, np.int64)])
  subset = tt.TruthTables(*(np.asarray(field)[index] for field in tables))
  return subset._replace(testable_P=subset.testable_P & valid), pairs, neurons, valid


def _compare_with_layer(real_BxD, codes, tables, pairs_Px2, neuron_P, num_neurons, settings):
  """`codes`: (value_BxK, column_BxK, num_atoms), the SAE codes as row lists."""
  value_BxK, column_BxK, num_atoms = codes
  subset, pairs, neurons, valid = _testable_subset(tables, pairs_Px2, neuron_P, settings.max_pairs)
  layer = _layer_truth_tables(jnp.asarray(real_BxD), value_BxK, column_BxK, jnp.asarray(pairs),
                              min_count=settings.min_count, num_atoms=num_atoms, valid_P=jnp.asarray(valid))
  return validation_metrics.validation_distance(subset, neurons, layer, num_neurons, settings.margin)


def validation(real_BxD: Any, codes_BxN: Any, rooms: dict[str, Any], gates: dict[str, Any],
               settings: RuleSettings) -> dict[str, Any]:
  """The Validation Hypothesis on one run: the real neurons' truth tables on the same roommate pairs,
  matched to the synthetic neurons (`metrics.validation`), against the permuted-assignment Squeezer.

  `gates` is this run's `or_gates` output (its roommate and permuted tables). Effect measures: matched
  similarity (higher = closer) and the class-distribution distance (lower = closer).
  """
  if rooms["num_pairs"] == 0 or "_tables" not in gates:
    return {"reason": "no neuron holds two live atoms: no roommate pairs to read through the real neurons"}
  num_neurons = rooms["num_neurons"]
  codes = (*row_lists(codes_BxN), int(np.shape(codes_BxN)[1]))
  observed = _compare_with_layer(real_BxD, codes, gates["_tables"], rooms["pairs_Px2"], rooms["neuron_P"],
                                 num_neurons, settings)
  permuted, perm_pairs, perm_neuron = gates["_permuted"]
  null = _compare_with_layer(real_BxD, codes, permuted, perm_pairs, perm_neuron, num_neurons, settings)
  out = {"matched_similarity": observed.matched_similarity, "distance": observed.tv_distance,
         "null_matched_similarity": null.matched_similarity, "null_mean": null.tv_distance,
         "num_pairs": observed.num_pairs, "num_matched_neurons": observed.num_matched_neurons,
         "synthetic_prevalence": dict(zip(tt.CLASS_NAMES, observed.synthetic_fraction_C)),
         "real_prevalence": dict(zip(tt.CLASS_NAMES, observed.layer_fraction_C)),
         "match": np.asarray(observed.match_M).tolist()}
  if observed.reason or null.reason:
    out["reason"] = observed.reason or f"null: {null.reason}"
  return out


@functools.partial(jax.jit, static_argnames=("num_permutations", "pseudo_count", "tolerance", "chunk_size"))
def _coactivation_pass(key, codes_BxN, value_BxK, column_BxK, assignment_N, pairs_Px2, valid_P, *,
                       num_permutations, pseudo_count, tolerance, chunk_size):
  key_match, key_null = jax.random.split(key)
  rate_N = jnp.mean(codes_BxN > 0, axis=0)
  matched_Px2, matched_valid_P = coactivation.frequency_matched_pairs(key_match, rate_N, pairs_Px2, valid_P,
                                                                      tolerance, assignment_N)
  both_P = valid_P & matched_valid_P
  # One pass over the data per pair set gives the lifts and correlations: `coactivation_effect`'s
  # difference of mean log lifts over the pairs with a match, without reading the codes twice. Each pair
  # reads only the rows where one of its atoms fires; pairs outside the mask get zero counts (unused).
  num_atoms = codes_BxN.shape[1]
  roommate = sc.sparse_pair_statistics(value_BxK, column_BxK, pairs_Px2, num_atoms, valid_P)
  matched = sc.sparse_pair_statistics(value_BxK, column_BxK, matched_Px2, num_atoms, both_P)
  log_lift_P = jnp.log(coactivation.lift_from_counts(roommate, pseudo_count))
  log_lift_matched_P = jnp.log(coactivation.lift_from_counts(matched, pseudo_count))
  roommates_mean = coactivation.masked_mean(log_lift_P, both_P)
  matched_mean = coactivation.masked_mean(log_lift_matched_P, both_P)
  effect = coactivation.CoactivationEffect(roommates_mean, matched_mean, roommates_mean - matched_mean,
                                           jnp.sum(both_P))
  null_R = coactivation.permutation_null(key_null, codes_BxN, pairs_Px2, both_P, num_permutations,
                                         pseudo_count, chunk_size)
  correlation = coactivation.masked_mean(roommate.correlation_P, both_P)
  correlation_matched = coactivation.masked_mean(matched.correlation_P, both_P)
  return effect, null_R, log_lift_P, log_lift_matched_P, both_P, correlation, correlation_matched


def coactivation_of(key: jax.Array, codes_BxN: Any, rooms: dict[str, Any], settings: RuleSettings
                    ) -> dict[str, Any]:
  """Roommates' mean log lift against frequency-matched non-roommate pairs and a permutation null."""
  if rooms["num_pairs"] == 0:
    return {"reason": "no neuron holds two live atoms: no roommate pairs"}
  codes_BxN = jnp.asarray(codes_BxN, jnp.float32)
  value_BxK, column_BxK = row_lists(codes_BxN)
  effect, null_R, log_lift_P, log_lift_matched_P, both_P, corr, corr_matched = _coactivation_pass(
      key, codes_BxN, value_BxK, column_BxK, rooms["assignment_N"], rooms["pairs_Px2"], rooms["valid_P"],
      num_permutations=settings.lift_permutations, pseudo_count=settings.lift_pseudo_count,
      tolerance=settings.match_tolerance, chunk_size=settings.chunk_size)
  num_pairs = int(effect.num_pairs)
  if num_pairs == 0:
    return {"reason": f"no roommate pair has a non-roommate pair of firing rates within "
                      f"{settings.match_tolerance:.0%}", "num_pairs": 0}
  both = np.asarray(both_P)
  null = np.asarray(null_R, np.float64)
  observed = float(effect.roommates_mean_log_lift)
  return {
      "num_pairs": num_pairs,
      "roommates_mean_log_lift": observed,
      "matched_mean_log_lift": float(effect.matched_mean_log_lift),
      "effect": float(effect.effect),
      "roommates_mean_code_correlation": float(corr),
      "matched_mean_code_correlation": float(corr_matched),
      "permutation_null_mean_log_lift": float(null.mean()),
      "permutation_null_sd": float(null.std()),
      # Two-sided permutation p-value with the +1 correction (never 0).
      "permutation_p_value": float((1 + np.sum(np.abs(null - null.mean()) >= abs(observed - null.mean())))
                                   / (1 + null.size)),
      "_log_lift_roommates": np.asarray(log_lift_P)[both],
      "_log_lift_matched": np.asarray(log_lift_matched_P)[both],
  }


_fvu_sweep = jax.jit(superposition_tax.monosemantic_fvu_sweep, static_argnums=(5,))


def monosemantic_fvus(x_BxD: Any, codes_BxN: Any, w_dec_NxD: Any, b_dec_D: Any, widths: list[int],
                      max_active: int) -> dict[int, float]:
  """FVU of the monosemantic baseline at every width M (the SAE with its M most-variance atoms)."""
  fvu_J = _fvu_sweep(jnp.asarray(x_BxD), jnp.asarray(codes_BxN), jnp.asarray(w_dec_NxD), jnp.asarray(b_dec_D),
                     jnp.asarray(widths, jnp.int32), max_active)
  return {m: float(v) for m, v in zip(widths, np.asarray(fvu_J))}


def tax_of(x_BxD: np.ndarray, x_hat_squeezed_BxD: np.ndarray, x_hat_sae_BxD: np.ndarray,
           fvu_baseline: float) -> dict[str, Any]:
  """FVU through the Squeezer, faithfulness ratio and superposition tax of one run on the window."""
  x = np.asarray(x_BxD, np.float64)
  variance = float(np.sum(np.square(x - x.mean(0))))
  error_squeezed = float(np.sum(np.square(x - x_hat_squeezed_BxD)))
  error_sae = float(np.sum(np.square(x - x_hat_sae_BxD)))
  found = superposition_tax.tax_from_fvu(error_squeezed / max(variance, 1e-30), fvu_baseline)
  out = {"fvu_squeezer": float(found.fvu_compressed), "fvu_baseline": float(found.fvu_baseline),
         "fvu_sae": error_sae / max(variance, 1e-30),
         "faithfulness_ratio": error_squeezed / error_sae if error_sae > 0 else None,
         "tax": float(found.tax) if bool(found.defined) else None}
  if not bool(found.defined):
    out["reason"] = "the monosemantic baseline reconstructs exactly (FVU 0): the tax is undefined"
  return out


def transfer_labels(w_dec_NxD: np.ndarray, true_NxD: np.ndarray, true_label_T: np.ndarray,
                    min_cosine: float) -> np.ndarray:
  """Each SAE latent's planted label: that of the true atom it is matched to (Hungarian on decoder cosine)
  when their cosine is at least `min_cosine`; -1 otherwise."""
  learned = np.asarray(w_dec_NxD, np.float64)
  true = np.asarray(true_NxD, np.float64)
  cosine = (learned / np.maximum(np.linalg.norm(learned, axis=-1, keepdims=True), 1e-12)) @ (
      true / np.maximum(np.linalg.norm(true, axis=-1, keepdims=True), 1e-12)).T
  rows, cols = scipy.optimize.linear_sum_assignment(cosine, maximize=True)
  labels = np.full(learned.shape[0], -1, np.int32)
  good = cosine[rows, cols] >= min_cosine
  labels[rows[good]] = np.asarray(true_label_T)[cols[good]]
  return labels


def cluster_inputs(kind: str, w_dec_NxD: np.ndarray, w_enc_NxD: np.ndarray, codes_BxN: np.ndarray
                   ) -> dict[str, np.ndarray]:
  """The keyword arguments of `themes.cluster_atoms` for one input kind."""
  if kind == "decoder":
    return {"vectors_NxD": np.asarray(w_dec_NxD)}
  if kind == "encoder":
    return {"vectors_NxD": np.asarray(w_enc_NxD)}
  return {"affinity_NxN": themes.coactivation_affinity(np.asarray(codes_BxN))}


def shuffled_cluster_inputs(kind: str, inputs: dict[str, np.ndarray], codes_BxN: np.ndarray, live_N: np.ndarray,
                            rng: np.random.Generator) -> dict[str, np.ndarray]:
  """The same clustering input with its structure shuffled away (the themes' null).

  Co-activation graph: the affinity of codes whose columns are each permuted over tokens on their own
  (every atom keeps its firing rate and values; co-firing is gone). Decoder or encoder rows: each
  coordinate permuted over the live atoms on its own (every coordinate keeps its values; shared
  directions are gone).
  """
  if kind == "coactivation":
    return {"affinity_NxN": themes.coactivation_affinity(rng.permuted(np.asarray(codes_BxN), axis=0))}
  vectors = np.array(inputs["vectors_NxD"], np.float64)
  live = np.flatnonzero(live_N)
  vectors[live] = rng.permuted(vectors[live], axis=0)
  return {"vectors_NxD": vectors}


def _best_score(found: themes.ThemeClustering) -> float | None:
  return max(found.scores.values()) if found.reason is None and found.scores else None


def themes_of_sae(w_dec_NxD: np.ndarray, w_enc_NxD: np.ndarray, codes_BxN: np.ndarray, live_N: np.ndarray,
                  planted: dict[str, np.ndarray], kinds: tuple[str, ...], method: str, k_range: tuple[int, int],
                  criterion: str, seed: int, shuffle_seed: Any = None) -> dict[str, Any]:
  """Clusters the live atoms from each input kind; ARI against every planted theme kind (latent labels).

  Each kind also gets the same clustering of its shuffled input (`shuffled_cluster_inputs`, rng seeded by
  `shuffle_seed`, default `seed`): "score" is the criterion's best value over the k tried, "null_score"
  the shuffled input's, and "score_excess" their difference, which says whether there are themes at all.
  """
  rng = np.random.default_rng(seed if shuffle_seed is None else shuffle_seed)
  out = {}
  for kind in kinds:
    inputs = cluster_inputs(kind, w_dec_NxD, w_enc_NxD, codes_BxN)
    common = dict(method=method, k_range=range(k_range[0], k_range[1] + 1), live_N=live_N, criterion=criterion,
                  seed=seed)
    found = themes.cluster_atoms(**inputs, **common)
    entry: dict[str, Any] = {"num_themes": int(found.num_themes), "theme_sizes": found.theme_sizes,
                             "criterion": found.criterion,
                             "scores": {str(k): float(v) for k, v in found.scores.items()},
                             "_labels": found.labels_N}
    if found.reason is not None:
      entry["reason"] = found.reason
    score = _best_score(found)
    null = (_best_score(themes.cluster_atoms(**shuffled_cluster_inputs(kind, inputs, codes_BxN, live_N, rng),
                                             **common)) if score is not None else None)
    entry.update(score=score, null_score=null,
                 score_excess=score - null if score is not None and null is not None else None)
    if score is not None and null is None:
      entry["null_reason"] = (f"the {found.criterion} criterion gives no score on the shuffled input"
                              if method != "hdbscan" else "hdbscan gives no score to compare")
    entry["adjusted_rand"] = {name: (float(themes.adjusted_rand(found.labels_N, labels))
                                     if found.reason is None and np.sum(labels >= 0) >= 2 else None)
                              for name, labels in planted.items()}
    out[kind] = entry
  return out


@functools.partial(jax.jit, static_argnames=("num_neurons", "num_themes", "num_permutations"))
def _share_theme_pass(key, assignment_N, theme_N, *, num_neurons, num_themes, num_permutations):
  """Observed same-theme fraction of roommate pairs and its null with the theme labels permuted among the
  live themed atoms (as `themes.roommates_share_theme`, compiled once per shape)."""
  observed, pairs = themes.same_theme_fraction(assignment_N, theme_N, num_neurons, num_themes)
  null_R = jax.vmap(lambda k: themes.same_theme_fraction(
      assignment_N, tt.permuted_assignment(k, theme_N), num_neurons, num_themes)[0])(
          jax.random.split(key, num_permutations))
  return observed, null_R, pairs


def share_theme(key: jax.Array, assignment_N: Any, theme_N: np.ndarray, num_neurons: int, num_permutations: int
                ) -> dict[str, Any]:
  """Roommates in one theme: observed fraction, its permutation null and the effect (observed - null)."""
  assignment_N = np.asarray(assignment_N, np.int32)
  theme_N = np.where(assignment_N >= 0, np.asarray(theme_N), -1).astype(np.int32)
  if not np.any(theme_N >= 0):
    return {"reason": "no live atom has a theme"}
  observed, null_R, pairs = jax.device_get(_share_theme_pass(
      key, assignment_N, theme_N, num_neurons=num_neurons, num_themes=padded_size(int(theme_N.max()) + 1, 1 << 30),
      num_permutations=num_permutations))
  if int(pairs) == 0:
    return {"reason": "no two themed live atoms share a neuron", "num_pairs": 0}
  null_R = np.asarray(null_R, np.float64)
  return {"observed": float(observed), "null_mean": float(null_R.mean()), "null_sd": float(null_R.std()),
          "effect": float(observed) - float(null_R.mean()), "num_pairs": int(pairs)}
