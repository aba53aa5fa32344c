"""The downstream text stages' figures: steering against strength, the SNR against the number of atoms,
and the detectors' ROC curves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mpcodec.core import io
from mpcodec.studies.codec.plots import _pyplot, no_data


METHOD_ORDER = ("theme", "atom", "diffmean", "random")   # one colour per steering vector in every panel
STEERING_PANELS = (
    ("steering", "p_target_steered", "steering set: target probability",
     "p(target class) under the probe\n(held-out documents of other classes)"),
    ("neutral", "kl", "neutral set: distribution shift", "KL(clean ‖ steered) of the probe (nats)"),
    ("neutral", "drift", "neutral set: embedding drift", "cosine drift 1 − cos(clean, steered)"),
)


def plot_steering(summary: Mapping[str, Any], path: str) -> None:
  """Target probability, KL and drift against the strength α: mean over SAE seeds with its 95% t interval;
  the reference strength (where the claims are read, fixed in the config) marked."""
  plt = _pyplot()
  strengths = summary["strengths"]
  fig, axes = plt.subplots(1, len(STEERING_PANELS), figsize=(4.4 * len(STEERING_PANELS), 3.8),
                           layout="constrained")
  for ax, (set_name, metric, title, ylabel) in zip(axes, STEERING_PANELS):
    methods = summary["sets"][set_name]
    for method in sorted(methods, key=lambda m: (m not in METHOD_ORDER, METHOD_ORDER.index(m)
                                                 if m in METHOD_ORDER else 0, m)):
      table = methods[method]
      means = np.asarray([c["mean"] if c["mean"] is not None else np.nan for c in table[metric]], float)
      low = [c["low"] if c["low"] is not None else m for c, m in zip(table[metric], means)]
      high = [c["high"] if c["high"] is not None else m for c, m in zip(table[metric], means)]
      line, = ax.plot(strengths, means, marker="o", label=method)
      ax.fill_between(strengths, np.asarray(low, float), np.asarray(high, float), color=line.get_color(),
                      alpha=0.2, lw=0)
    if metric == "p_target_steered":
      clean = summary["sets"][set_name]["theme"]["p_target_clean"][0]["mean"]
      if clean is not None:
        ax.axhline(clean, color="grey", linestyle=":", label="clean (no steering)")
    if summary.get("reference_strength") is not None:
      ax.axvline(summary["reference_strength"], color="black", linewidth=0.8, alpha=0.4,
                 label=f"reference α = {summary['reference_strength']:g} (claims)")
    ax.set_xlabel("strength α (fraction of the activation norm)")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
  target = summary.get("target_class")
  fig.suptitle(f"Steering{f' towards {target}' if target else ''}: mean over SAE seeds, band = 95% t "
               "interval (DiffMean: one vector, no band; random: same-norm random directions)", fontsize=10)
  io.save_figure(fig, path)


def plot_snr(summary: Mapping[str, Any], path: str) -> None:
  """Population-steering SNR against the number N of atoms summed, on log axes, one line per SAE seed.

  Only positive SNRs have a logarithm: the others are left out of the lines and counted in a note; the
  √N reference starts at the first drawn point."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.0, 3.8), layout="constrained")
  dropped, drawn = 0, []
  for row in summary["snr"]:
    atoms, snr = np.asarray(row["atoms"], float), np.asarray(row["snr"], float)
    if not snr.size:
      continue
    positive = np.isfinite(snr) & (snr > 0)
    dropped += int(np.sum(~positive))
    if positive.any():
      ax.loglog(atoms[positive], snr[positive], marker="o", label=f"seed {row['seed_index']}")
      drawn += list(zip(atoms[positive].tolist(), snr[positive].tolist()))
  anchor = min(drawn, key=lambda point: point[0]) if drawn else None   # the drawn point of fewest atoms
  atoms = sorted({n for row in summary["snr"] for n in row["atoms"]})
  ax.set_xlabel("atoms summed N")
  ax.set_ylabel("SNR of the embedding change\nalong the target margin")
  ax.set_title("population steering: SNR against N" + (
      f"\n({dropped} non-positive SNR value(s) not drawn: no logarithm)" if dropped else ""), fontsize=9)
  if anchor is None:
    no_data(ax, "no positive SNR to draw on a log axis" if dropped else "no SNR measured")
  else:
    reference = [n for n in atoms if n >= anchor[0]]
    ax.loglog(reference, [anchor[1] * math.sqrt(n / anchor[0]) for n in reference], "k:",
              label="√N from the point of fewest atoms")
    ax.legend(fontsize=8)
  io.save_figure(fig, path)


def _auroc_of_curve(curve: Mapping[str, np.ndarray]) -> float:
  fpr, tpr = np.asarray(curve["fpr"], float), np.asarray(curve["tpr"], float)
  return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) if fpr.size > 1 else float("nan")


def plot_roc(roc: Mapping[str, Mapping[str, np.ndarray]], max_fpr: float, path: str) -> None:
  """ROC of every detector on the test part of one split, each labelled with its AUROC."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.6, 4.2), layout="constrained")
  aurocs = {}
  for name, curve in roc.items():
    aurocs[name] = float(curve["auroc"]) if curve.get("auroc") is not None else _auroc_of_curve(curve)
    ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUROC {aurocs[name]:.3f})")
  ax.axvline(max_fpr, color="grey", linestyle=":", label=f"false-positive budget {max_fpr:.0%}")
  ax.plot([0, 1], [0, 1], color="lightgrey", linewidth=0.8, label="chance (AUROC 0.5)")
  ax.set_xlabel("false-positive rate")
  ax.set_ylabel("detection rate (true-positive rate)")
  best = max(aurocs, key=lambda name: aurocs[name]) if aurocs else None
  ax.set_title("ROC, SAE seed 0, split 0" + (f": best AUROC {aurocs[best]:.3f} ({best})" if best else ""),
               fontsize=9)
  if roc:
    ax.legend(fontsize=7, loc="lower right")
  else:
    no_data(ax, "no detector was evaluated")
  io.save_figure(fig, path)

