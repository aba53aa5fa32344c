"""Detecting a class from a score: AUROC, the ROC curve and the detection rate at a false-positive budget.

A detector flags item i when its score s_i is high. With P positives and Q negatives:
  - AUROC = P(s₊ > s₋) + ½·P(s₊ = s₋), the Mann-Whitney U statistic over P·Q (Hanley & McNeil 1982);
  - the ROC curve has one vertex per distinct score t: (FPR, TPR) of the rule s ≥ t;
  - TPR at a false-positive rate f: the largest TPR of a vertex whose FPR is at most f;
  - a threshold fixed on calibration data, τ = the (⌊f·Q⌋ + 1)-th largest negative score, with the rule
    s > τ, flags at most a fraction f of those negatives; applied to held-out data it measures the
    detection rate an operator would get.

Pure and jittable; `is_positive_N` is a boolean mask, so vmapping over seeds or splits keeps shapes fixed.
AUROC is undefined (NaN) when either class is empty; callers check that both are present.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mpcodec.metrics.shapes import check_axis, check_rank


def _check_scores(func: str, scores_N, is_positive_N) -> None:
  num_items = check_rank(func, "scores_N", scores_N, 1, "items")[0]
  check_rank(func, "is_positive_N", is_positive_N, 1, "items")
  check_axis(func, "is_positive_N", is_positive_N, 0, num_items, "N (the items of scores_N)")


def auroc(scores_N: jax.Array, is_positive_N: jax.Array) -> jax.Array:
  """Area under the ROC curve, ties counted one half:
  Σ_{i ∈ P} (#{j ∈ Q: s_j < s_i} + ½·#{j ∈ Q: s_j = s_i}) / (P·Q)."""
  _check_scores("auroc", scores_N, is_positive_N)
  scores_N = jnp.asarray(scores_N, jnp.float32)
  positive_N = jnp.asarray(is_positive_N, bool)
  negatives_sorted = jnp.sort(jnp.where(positive_N, jnp.inf, scores_N))
  below = jnp.searchsorted(negatives_sorted, scores_N, side="left")
  at_or_below = jnp.searchsorted(negatives_sorted, scores_N, side="right")
  # +inf stands in for the positives in the sorted negatives; a finite score never counts it.
  wins_N = below + 0.5 * (at_or_below - below)
  num_pos = jnp.sum(positive_N)
  num_neg = positive_N.shape[-1] - num_pos
  return jnp.sum(jnp.where(positive_N, wins_N, 0.0)) / (num_pos * num_neg)


def roc_curve(scores_N: jax.Array, is_positive_N: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array,
                                                                       jax.Array]:
  """(fpr, tpr, thresholds, is_vertex), each of length N + 1, of the rules s ≥ threshold.

  Entry 0 is (0, 0) at threshold +inf; entry j ≥ 1 counts the j highest scores as flagged. Only entries
  that end a run of tied scores are vertices of the curve (is_vertex); the others lie inside a tie.
  """
  _check_scores("roc_curve", scores_N, is_positive_N)
  scores_N = jnp.asarray(scores_N, jnp.float32)
  order = jnp.argsort(-scores_N, stable=True)
  sorted_scores = scores_N[order]
  positive = jnp.asarray(is_positive_N, bool)[order].astype(jnp.float32)
  num_pos = jnp.sum(positive)
  num_neg = positive.shape[-1] - num_pos
  tpr = jnp.concatenate([jnp.zeros(1), jnp.cumsum(positive) / num_pos])
  fpr = jnp.concatenate([jnp.zeros(1), jnp.cumsum(1.0 - positive) / num_neg])
  ends_tie = jnp.concatenate([sorted_scores[1:] != sorted_scores[:-1], jnp.ones(1, bool)])
  is_vertex = jnp.concatenate([jnp.ones(1, bool), ends_tie])
  thresholds = jnp.concatenate([jnp.full(1, jnp.inf), sorted_scores])
  return fpr, tpr, thresholds, is_vertex


def tpr_at_fpr(scores_N: jax.Array, is_positive_N: jax.Array, max_fpr: float = 0.01) -> jax.Array:
  """Detection rate at a false-positive budget: max TPR over ROC vertices with FPR ≤ max_fpr."""
  _check_scores("tpr_at_fpr", scores_N, is_positive_N)
  fpr, tpr, _, is_vertex = roc_curve(scores_N, is_positive_N)
  return jnp.max(jnp.where(is_vertex & (fpr <= max_fpr), tpr, 0.0))


def threshold_at_fpr(scores_N: jax.Array, is_positive_N: jax.Array, max_fpr: float = 0.01) -> jax.Array:
  """τ such that the rule s > τ flags at most ⌊max_fpr·Q⌋ of the Q negatives: their (⌊max_fpr·Q⌋+1)-th
  largest score (−inf when the budget allows every negative)."""
  _check_scores("threshold_at_fpr", scores_N, is_positive_N)
  positive_N = jnp.asarray(is_positive_N, bool)
  descending = -jnp.sort(-jnp.where(positive_N, -jnp.inf, jnp.asarray(scores_N, jnp.float32)))
  num_neg = positive_N.shape[-1] - jnp.sum(positive_N)
  allowed = jnp.floor(max_fpr * num_neg).astype(jnp.int32)
  return jnp.where(allowed < num_neg, descending[jnp.minimum(allowed, positive_N.shape[-1] - 1)], -jnp.inf)


def rates_above_threshold(scores_N: jax.Array, is_positive_N: jax.Array, threshold: jax.Array | float
                          ) -> tuple[jax.Array, jax.Array]:
  """(TPR, FPR) of the rule s > threshold: the fractions of positives and of negatives flagged."""
  _check_scores("rates_above_threshold", scores_N, is_positive_N)
  flagged = jnp.asarray(scores_N, jnp.float32) > threshold
  positive_N = jnp.asarray(is_positive_N, bool)
  num_pos = jnp.sum(positive_N)
  return (jnp.sum(flagged & positive_N) / num_pos,
          jnp.sum(flagged & ~positive_N) / (positive_N.shape[-1] - num_pos))
