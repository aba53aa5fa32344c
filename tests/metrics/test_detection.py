"""Detection metrics against scikit-learn and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import metrics as sk_metrics

from mpcodec.metrics import detection


def _case(seed, n=200, ties=False):
  rng = np.random.default_rng(seed)
  labels = rng.random(n) < 0.3
  scores = rng.normal(size=n) + 1.2 * labels
  if ties:
    scores = np.round(scores * 2) / 2
  return scores.astype(np.float32), labels


def test_auroc_matches_sklearn_with_and_without_ties():
  for seed in range(4):
    for ties in (False, True):
      scores, labels = _case(seed, ties=ties)
      np.testing.assert_allclose(detection.auroc(scores, labels), sk_metrics.roc_auc_score(labels, scores),
                                 rtol=1e-6)


def test_auroc_closed_forms():
  labels = np.array([0, 0, 0, 1, 1], bool)
  np.testing.assert_allclose(detection.auroc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), labels), 1.0)
  np.testing.assert_allclose(detection.auroc(np.array([0.9, 0.8, 0.7, 0.1, 0.2]), labels), 0.0)
  np.testing.assert_allclose(detection.auroc(np.full(5, 0.4), labels), 0.5)


def test_auroc_vmaps_over_splits():
  scores, labels = _case(7)
  masks = np.stack([labels, ~labels, np.roll(labels, 3)])
  batched = jax.vmap(detection.auroc, in_axes=(None, 0))(jnp.asarray(scores), jnp.asarray(masks))
  np.testing.assert_allclose(batched, [sk_metrics.roc_auc_score(m, scores) for m in masks], rtol=1e-6)


def test_roc_curve_vertices_match_sklearn():
  for ties in (False, True):
    scores, labels = _case(1, ties=ties)
    fpr, tpr, thresholds, is_vertex = (np.asarray(a) for a in detection.roc_curve(scores, labels))
    sk_fpr, sk_tpr, sk_thresholds = sk_metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr[is_vertex], sk_fpr, rtol=1e-6)
    np.testing.assert_allclose(tpr[is_vertex], sk_tpr, rtol=1e-6)
    np.testing.assert_allclose(thresholds[is_vertex][1:], sk_thresholds[1:], rtol=1e-6)


def test_tpr_at_fpr_matches_sklearn_operating_points():
  for seed in range(3):
    for ties in (False, True):
      scores, labels = _case(seed, n=1000, ties=ties)
      sk_fpr, sk_tpr, _ = sk_metrics.roc_curve(labels, scores, drop_intermediate=False)
      for max_fpr in (0.0, 0.01, 0.05):
        expected = sk_tpr[sk_fpr <= max_fpr].max()
        np.testing.assert_allclose(detection.tpr_at_fpr(scores, labels, max_fpr), expected, rtol=1e-6)


def test_tpr_at_one_percent_fpr_on_a_planted_case():
  """100 negatives scored 0..99, 50 positives: 40 above every negative, 10 among the low negatives.

  At FPR ≤ 1% one negative (score 99) may be flagged; positives above 98 are then the 40 high ones.
  """
  negatives = np.arange(100, dtype=np.float32)
  positives = np.concatenate([100 + np.arange(40), np.arange(10) + 0.5]).astype(np.float32)
  scores = np.concatenate([negatives, positives])
  labels = np.concatenate([np.zeros(100, bool), np.ones(50, bool)])
  np.testing.assert_allclose(detection.tpr_at_fpr(scores, labels, 0.01), 40 / 50)
  threshold = detection.threshold_at_fpr(scores, labels, 0.01)
  np.testing.assert_allclose(threshold, 98.0)
  tpr, fpr = detection.rates_above_threshold(scores, labels, threshold)
  np.testing.assert_allclose([tpr, fpr], [40 / 50, 1 / 100])
  # A budget of every negative lets the rule flag everything.
  assert float(detection.threshold_at_fpr(scores, labels, 1.0)) == -np.inf


def test_held_out_threshold_keeps_the_false_positive_budget_on_calibration_data():
  for seed in range(3):
    scores, labels = _case(seed, n=3000)
    for max_fpr in (0.01, 0.1):
      threshold = detection.threshold_at_fpr(scores, labels, max_fpr)
      tpr, fpr = (float(v) for v in detection.rates_above_threshold(scores, labels, threshold))
      num_neg = int((~labels).sum())
      assert fpr <= max_fpr and fpr >= (np.floor(max_fpr * num_neg) - 1) / num_neg
      # With distinct scores the calibrated rule is the best ROC operating point within the budget.
      np.testing.assert_allclose(tpr, detection.tpr_at_fpr(scores, labels, max_fpr), rtol=1e-6)
