"""Detection of one AG News class (a news topic; the earlier work's claim was a "safety" detector) at the
SAE's layer: a theme's activation against a linear probe on the raw activations and DiffMean.

Over `num_splits` stratified random splits of the documents into three disjoint parts, fit, calibration
and test:
  - theme: the score of a document is the theme's activation maxed over its tokens; the theme is the
    one with the highest AUROC on the fit part (for each SAE seed);
  - probe: binary logistic regression (mpcodec.core.probe) on the documents' mean raw activations;
  - DiffMean: the projection of the mean raw activation on μ₊ − μ₋ of the fit part.
On the test part: AUROC; the detection rate and the realised false-positive rate of the threshold set
on the calibration part's negatives (at most `max_fpr` of them flagged: the rule an operator would
deploy; the fit part would flatter a probe that separates its own training rows, and the test part
would choose its own threshold); and, as an optimistic reference only, the best rate within the budget
read off the test part's own ROC ("oracle"). Every threshold comes from a part disjoint from the one its
rates are measured on (`calibrated_rates`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import probe as probe_lib
from mpcodec.metrics import detection, steering

DETECTORS = ("theme", "probe", "diffmean")


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
  """Splits, the shares of documents in their test and calibration parts, the false-positive budget, the
  probe."""

  num_splits: int = 5
  test_fraction: float = 0.5
  calibration_fraction: float = 0.25
  max_fpr: float = 0.01
  probe: probe_lib.ProbeConfig = probe_lib.ProbeConfig()

  def checks(self):
    yield "num_splits", self.num_splits >= 1, f"must be >= 1, got {self.num_splits}"
    yield "test_fraction", 0.0 < self.test_fraction < 1.0, f"must lie in (0, 1), got {self.test_fraction}"
    yield "calibration_fraction", 0.0 < self.calibration_fraction < 1.0 - self.test_fraction, (
        f"must lie in (0, 1 - test_fraction = {1.0 - self.test_fraction:g}), got {self.calibration_fraction}")
    yield "max_fpr", 0.0 <= self.max_fpr < 1.0, f"must lie in [0, 1), got {self.max_fpr}"


FIT, CALIBRATION, TEST = 0, 1, 2


def stratified_parts(labels_D: np.ndarray, num_splits: int, fractions: tuple[float, ...], seed: int
                     ) -> np.ndarray:
  """(S, D) part index of each document in each split: within every class, a fresh permutation (seeded by
  (seed, split)) gives the first round(f₁·size) documents part 1, the next round(f₂·size) part 2, ...,
  and the rest part 0."""
  parts = np.zeros((num_splits, labels_D.shape[0]), np.int32)
  for s in range(num_splits):
    rng = np.random.default_rng([seed, s])
    for label in np.unique(labels_D):
      rows = rng.permutation(np.flatnonzero(labels_D == label))
      start = 0
      for part, fraction in enumerate(fractions, start=1):
        count = int(round(fraction * rows.size))
        parts[s, rows[start:start + count]] = part
        start += count
  return parts


@jax.jit
def _rates(test_scores, test_positive, calibration_scores, calibration_positive, max_fpr):
  threshold = detection.threshold_at_fpr(calibration_scores, calibration_positive, max_fpr)
  tpr, fpr = detection.rates_above_threshold(test_scores, test_positive, threshold)
  return {"auroc": detection.auroc(test_scores, test_positive),
          "tpr_at_fpr": detection.tpr_at_fpr(test_scores, test_positive, max_fpr),
          "calibrated_tpr": tpr, "calibrated_fpr": fpr, "threshold": threshold}


_fit_aurocs = jax.jit(jax.vmap(detection.auroc, in_axes=(1, None)))


def calibrated_rates(scores_D: np.ndarray, positive_D: np.ndarray, part_D: np.ndarray, max_fpr: float
                     ) -> dict[str, float]:
  """One detector on one split: the threshold from the CALIBRATION part's negatives (at most max_fpr of
  them flagged), its detection rate and false-positive rate on the TEST part, the test AUROC, and the
  oracle rate read off the test ROC; the two parts are disjoint by construction (one part index per
  document)."""
  test, calibration = part_D == TEST, part_D == CALIBRATION
  if not (test.any() and calibration.any()):
    raise ValueError(f"calibrated_rates: need documents in the calibration part ({int(calibration.sum())}) and "
                     f"the test part ({int(test.sum())})")
  found = _rates(scores_D[test], positive_D[test], scores_D[calibration], positive_D[calibration], max_fpr)
  return {name: float(value) for name, value in found.items()}


def run_detection(cfg: DetectionConfig, labels_D: np.ndarray, target: int, pooled_DxF: np.ndarray,
                  theme_max_RxDxT: np.ndarray, seed: int) -> dict[str, Any]:
  """Every detector on every (seed, split); per-row results and the ROC curves of seed 0, split 0 (each with
  its test AUROC)."""
  positive_D = labels_D == target
  parts_SxD = stratified_parts(labels_D, cfg.num_splits, (cfg.calibration_fraction, cfg.test_fraction), seed)
  probes = probe_lib.fit_batched(pooled_DxF, positive_D.astype(np.int32),
                                 (parts_SxD == FIT).astype(np.float32), 2, cfg.probe)
  rows, curves = [], {}
  for s, part_D in enumerate(parts_SxD):
    fit, test = part_D == FIT, part_D == TEST
    logits = np.asarray(probe_lib.logits(jax.tree.map(lambda a: a[s], probes), jnp.asarray(pooled_DxF)))
    direction = np.asarray(steering.difference_of_means(pooled_DxF[fit], positive_D[fit]))
    raw_scores = {"probe": logits[:, 1] - logits[:, 0], "diffmean": pooled_DxF @ direction}
    for r in range(theme_max_RxDxT.shape[0]):
      theme = int(np.nanargmax(np.asarray(_fit_aurocs(theme_max_RxDxT[r][fit], positive_D[fit]))))
      scores = dict(raw_scores, theme=theme_max_RxDxT[r][:, theme])
      for name in DETECTORS:
        if name != "theme" and r > 0:
          continue   # The raw-activation detectors do not depend on the SAE seed.
        rows.append(dict(detector=name, seed_index=r, split=s, theme=theme if name == "theme" else None,
                         **calibrated_rates(scores[name], positive_D, part_D, cfg.max_fpr)))
        if r == 0 and s == 0:
          fpr, tpr, _, vertex = (np.asarray(a) for a in detection.roc_curve(scores[name][test],
                                                                             positive_D[test]))
          curves[name] = {"fpr": fpr[vertex], "tpr": tpr[vertex], "auroc": rows[-1]["auroc"]}
  counts = {name: int((parts_SxD[0] == part).sum())
            for name, part in (("fit", FIT), ("calibration", CALIBRATION), ("test", TEST))}
  return {"rows": rows, "roc": curves, "num_documents": int(labels_D.shape[0]),
          "num_test_documents": counts["test"], "part_sizes": counts, "max_fpr": cfg.max_fpr}
