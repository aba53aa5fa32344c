"""Host-side report of the mono -> poly experiment: hypothesis tests over seeds, report.md, plots.

Hypotheses (tested on the end-of-phase-2 neurons, one replicate per seed):
  H1  polysemantic neurons have higher weight entropy than monosemantic ones;
  H2  polysemantic neurons have a larger incoming-weight L2 norm than monosemantic ones;
  H3  the mean angle between neurons' weight vectors falls from the end of phase 1 to the end of phase 2.
Each gets a per-seed difference, its mean over seeds with a percentile-bootstrap CI over seeds, and a
verdict read off the CI (`mpcodec.core.stats.verdict`). Every number in the report comes from inputs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import cm, colors, patches  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from mpcodec.metrics.selectivity import DEAD, LABEL_NAMES, MONOSEMANTIC, POLYSEMANTIC  # pylint: disable=wrong-import-position
from mpcodec.core import io as report_io  # pylint: disable=wrong-import-position
from mpcodec.core import stats  # pylint: disable=wrong-import-position

_GROUP_HYPOTHESES = (
    # (name, per-seed array key, claimed difference, quantity, unit)
    ("H1", "entropy", "higher", "weight entropy", "nats"),
    ("H2", "l2", "larger", "incoming-weight L2 norm", ""),
)


def format_number(value: float | None) -> str:
  """The one way a number is printed in reports (4 significant digits; n/a for NaN or None)."""
  if value is None or not math.isfinite(float(value)):
    return "n/a"
  return f"{float(value):.4g}"


def label_counts(labels_SxH) -> dict[str, int]:
  """Number of neurons with each label over all seeds: {"monosemantic": n, "polysemantic": n, "dead": n}."""
  labels = np.asarray(labels_SxH).ravel()
  return {name: int(np.sum(labels == code)) for code, name in enumerate(LABEL_NAMES)}


def _check_inputs(per_seed: Mapping[str, Any]) -> dict[str, np.ndarray]:
  keys_2d = ("entropy", "l2", "labels")
  keys_1d = ("mean_angle_phase1_end", "mean_angle_phase2_end")
  missing = [k for k in keys_2d + keys_1d if k not in per_seed]
  if missing:
    raise ValueError(f"per_seed: missing key(s) {missing}; needs {list(keys_2d + keys_1d)}")
  arrays = {k: np.asarray(per_seed[k]) for k in keys_2d + keys_1d}
  shape = arrays["entropy"].shape
  if len(shape) != 2 or shape[0] < 1:
    raise ValueError(f"per_seed['entropy']: expected shape (seeds, neurons), got {shape}")
  for key in keys_2d:
    if arrays[key].shape != shape:
      raise ValueError(f"per_seed[{key!r}]: shape {arrays[key].shape} differs from entropy's {shape}")
  for key in keys_1d:
    if arrays[key].shape != (shape[0],):
      raise ValueError(f"per_seed[{key!r}]: expected shape ({shape[0]},), got {arrays[key].shape}")
  return arrays


def _direction(value: float, expected_sign: int) -> str:
  if not math.isfinite(value):
    return "could not be estimated"
  return "in the predicted direction" if value * expected_sign > 0 else "against the predicted direction"


def _interval_text(result: Mapping[str, Any]) -> str:
  return (f"{round(100 * result['confidence'])}% CI [{format_number(result['ci_low'])}, "
          f"{format_number(result['ci_high'])}]")


def _group_hypothesis(name: str, key: str, comparison: str, quantity: str, unit: str, values_SxH: np.ndarray,
                      labels_SxH: np.ndarray, bootstrap: Mapping[str, Any]) -> dict[str, Any]:
  """Per seed mean(poly) - mean(mono) of `values`; seeds lacking a group are excluded and counted."""
  differences, poly_values, mono_values = [], [], []
  for values_H, labels_H in zip(values_SxH, labels_SxH):
    poly_H = values_H[labels_H == POLYSEMANTIC]
    mono_H = values_H[labels_H == MONOSEMANTIC]
    if poly_H.size and mono_H.size:
      differences.append(poly_H.mean() - mono_H.mean())
      poly_values.append(poly_H)
      mono_values.append(mono_H)
  num_used = len(differences)
  result = _summarize(name, differences, expected_sign=1, bootstrap=bootstrap)
  result.update(
      claim=f"polysemantic neurons have a {comparison} {quantity} than monosemantic ones",
      quantity=key, unit=unit,
      num_seeds_total=int(values_SxH.shape[0]), num_seeds_used=num_used,
      num_seeds_excluded=int(values_SxH.shape[0]) - num_used,
      mean_polysemantic=float(np.mean(np.concatenate(poly_values))) if num_used else math.nan,
      mean_monosemantic=float(np.mean(np.concatenate(mono_values))) if num_used else math.nan,
      standardized_effect_kind=("mean per-seed difference / pooled SD of polysemantic and "
                                "monosemantic neurons of the seeds used"))
  spread = (stats.pooled_sd(np.concatenate(poly_values), np.concatenate(mono_values))
            if num_used else math.nan)
  result["standardized_effect"] = result["estimate"] / spread if spread > 0 else math.nan
  unit_text = f" {unit}" if unit else ""
  if num_used:
    result["statement"] = (
        f"In {num_used} of {result['num_seeds_total']} seeds with both groups, polysemantic neurons' "
        f"{quantity} minus monosemantic neurons' averaged {format_number(result['estimate'])}{unit_text} "
        f"({_interval_text(result)}; d = {format_number(result['standardized_effect'])}), "
        f"{_direction(result['estimate'], 1)}: {name} is {result['verdict']}.")
  else:
    result["statement"] = (f"No seed had both monosemantic and polysemantic neurons at the end of "
                           f"phase 2, so {name} could not be tested: {name} is {result['verdict']}.")
  return result


def _summarize(name: str, differences_S: Sequence[float], expected_sign: int,
               bootstrap: Mapping[str, Any]) -> dict[str, Any]:
  differences_S = np.asarray(differences_S, dtype=np.float64)
  if differences_S.size:
    estimate, low, high = stats.bootstrap_ci(differences_S, **bootstrap)
    dz = stats.cohens_dz(differences_S)
  else:
    estimate, low, high, dz = math.nan, math.nan, math.nan, math.nan
  return {
      "name": name,
      "expected_sign": expected_sign,
      "per_seed_difference": differences_S.tolist(),
      "estimate": estimate,
      "ci_low": low,
      "ci_high": high,
      "confidence": bootstrap["confidence"],
      "cohens_dz": dz,
      "verdict": stats.verdict(low, high, expected_sign),
  }


def test_hypotheses(per_seed: Mapping[str, Any], rng_seed: int = 0, num_resamples: int = 10000,
                    confidence: float = 0.95) -> dict[str, Any]:
  """Tests H1, H2, H3 across seeds; returns a JSON-able dict {"hypotheses": {...}, "bootstrap": {...}}.

  per_seed: "entropy", "l2", "labels" of shape (S, H) at the end of phase 2 (labels use the codes of
  mpcodec.metrics.selectivity) and "mean_angle_phase1_end", "mean_angle_phase2_end" of shape (S,).
  H1 / H2 effect per seed = mean(poly) - mean(mono); H3 effect = angle_phase1_end - angle_phase2_end.
  Effects are predicted positive. Reported: estimate (mean over seeds), bootstrap CI over seeds,
  Cohen's d_z of the per-seed differences, and for H1 / H2 also the between-group Cohen's d on neurons.
  """
  arrays = _check_inputs(per_seed)
  bootstrap = {"rng_seed": rng_seed, "num_resamples": num_resamples, "confidence": confidence}
  hypotheses = {}
  for name, key, comparison, quantity, unit in _GROUP_HYPOTHESES:
    hypotheses[name] = _group_hypothesis(name, key, comparison, quantity, unit, arrays[key].astype(np.float64),
                                         arrays["labels"], bootstrap)
  angle1_S = arrays["mean_angle_phase1_end"].astype(np.float64)
  angle2_S = arrays["mean_angle_phase2_end"].astype(np.float64)
  finite_S = np.isfinite(angle1_S) & np.isfinite(angle2_S)
  h3 = _summarize("H3", (angle1_S - angle2_S)[finite_S], expected_sign=1, bootstrap=bootstrap)
  num_used = int(finite_S.sum())
  h3.update(
      claim="the mean angle between neurons' weight vectors falls from the end of phase 1 to the end "
            "of phase 2",
      quantity="mean_pairwise_angle", unit="degrees",
      num_seeds_total=int(angle1_S.size), num_seeds_used=num_used,
      num_seeds_excluded=int(angle1_S.size) - num_used,
      mean_angle_phase1_end=float(angle1_S[finite_S].mean()) if num_used else math.nan,
      mean_angle_phase2_end=float(angle2_S[finite_S].mean()) if num_used else math.nan,
      standardized_effect=h3["cohens_dz"], standardized_effect_kind="Cohen's d_z of per-seed differences")
  h3["statement"] = (
      f"Over {num_used} seeds the mean pairwise angle went from {format_number(h3['mean_angle_phase1_end'])} "
      f"to {format_number(h3['mean_angle_phase2_end'])} degrees; phase-1 minus phase-2 angle averaged "
      f"{format_number(h3['estimate'])} degrees ({_interval_text(h3)}; d_z = "
      f"{format_number(h3['cohens_dz'])}), {_direction(h3['estimate'], 1)}: H3 is {h3['verdict']}.")
  hypotheses["H3"] = h3
  return report_io.jsonable({"hypotheses": hypotheses, "bootstrap": bootstrap})


# pytest would otherwise collect this library function as a test wherever it is imported by name.
test_hypotheses.__test__ = False


def render_report_markdown(hypotheses: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
  """report.md text from `test_hypotheses` output and a run summary; no number is typed in.

  summary: "label_counts": {phase: {label name: count}} (e.g. from `label_counts`), and optionally
  any other scalar entries (seeds, accuracies, ...), listed in a "Run" table in key order.
  """
  results = hypotheses.get("hypotheses", hypotheses)
  lines = ["# mono -> poly: hypothesis tests across seeds", ""]
  scalars = {k: v for k, v in summary.items() if k != "label_counts" and not isinstance(v, (Mapping, list))}
  if scalars:
    lines += ["## Run", "", "| quantity | value |", "|---|---|"]
    for key, value in scalars.items():
      shown = format_number(value) if isinstance(value, float) else str(value)
      lines.append(f"| {key} | {shown} |")
    lines.append("")
  counts = summary.get("label_counts", {})
  if counts:
    lines += ["## Neuron labels (all seeds)", "",
              "| phase | " + " | ".join(LABEL_NAMES) + " | total |",
              "|---" * (len(LABEL_NAMES) + 2) + "|"]
    for phase, phase_counts in counts.items():
      row = [int(phase_counts.get(name, 0)) for name in LABEL_NAMES]
      lines.append(f"| {phase} | " + " | ".join(str(n) for n in row) + f" | {sum(row)} |")
    lines.append("")
  lines += ["## Hypotheses", ""]
  for name, result in results.items():
    unit = f", {result['unit']}" if result.get("unit") else ""
    pct = round(100 * result["confidence"])
    lines += [
        f"### {name}: {result['claim']}", "",
        "| seeds used | seeds excluded | effect (mean per-seed difference" + unit + ")"
        + f" | {pct}% CI low | {pct}% CI high | standardized effect | Cohen's d_z | verdict |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result['num_seeds_used']} | {result['num_seeds_excluded']} | "
        f"{format_number(result['estimate'])} | {format_number(result['ci_low'])} | "
        f"{format_number(result['ci_high'])} | {format_number(result['standardized_effect'])} | "
        f"{format_number(result['cohens_dz'])} | **{result['verdict']}** |", "",
        f"Standardized effect: {result['standardized_effect_kind']}.", "",
        result["statement"], ""]
  settings = hypotheses.get("bootstrap")
  if settings:
    lines += [f"Percentile bootstrap over seeds: {settings['num_resamples']} resamples, "
              f"rng seed {settings['rng_seed']}. A hypothesis is supported when the CI excludes 0 on "
              "the predicted side, contradicted when it excludes 0 on the other side, inconclusive "
              "otherwise.", ""]
  return "\n".join(lines)


def plot_samples(images_NxHxWx3, titles: Sequence[str], path, num_columns: int = 8) -> None:
  """Draws example images in a grid with their titles (pixel values clipped to [0, 1] for display)."""
  images = np.asarray(images_NxHxWx3, dtype=np.float32)
  if images.ndim != 4 or len(titles) != images.shape[0]:
    raise ValueError(f"plot_samples: need (N,H,W,3) images and N titles, got {images.shape} and "
                     f"{len(titles)} titles")
  num_columns = max(1, min(num_columns, images.shape[0]))
  num_rows = math.ceil(images.shape[0] / num_columns)
  fig, axes = plt.subplots(num_rows, num_columns, figsize=(1.6 * num_columns, 1.8 * num_rows),
                           squeeze=False)
  for i, ax in enumerate(axes.ravel()):
    ax.axis("off")
    if i < images.shape[0]:
      ax.imshow(np.clip(images[i], 0.0, 1.0), interpolation="nearest")
      ax.set_title(titles[i], fontsize=7)
  report_io.save_figure(fig, path)


# How the weight images mark each neuron's label (the codes of mpcodec.metrics.selectivity).
LABEL_COLOURS = {MONOSEMANTIC: "tab:blue", POLYSEMANTIC: "tab:red", DEAD: "0.15"}
LABEL_LINESTYLES = {MONOSEMANTIC: "-", POLYSEMANTIC: "-", DEAD: (0, (2, 1))}   # dead: dashed frame
LABEL_SHORT_NAMES = {MONOSEMANTIC: "mono", POLYSEMANTIC: "poly", DEAD: "dead"}
WEIGHT_COLOURBAR_LABEL = "weight / the neuron's max |weight|\n(symmetric scale, each of R, G, B)"


def weight_images_figure(w_in, labels=None, image_shape: Sequence[int] = (32, 32, 3), max_seeds: int = 4):
  """The figure of `plot_weight_images` (not saved): one panel per neuron, one row per seed.

  w_in: (D, H) for one seed or (S, D, H). labels: None, or the neurons' selectivity labels (MONOSEMANTIC,
  POLYSEMANTIC, DEAD) of shape (H,) or (S, H) like w_in; each panel then gets a frame in its label's
  colour and the label in its title. Each neuron uses its own symmetric scale,
  pixel = 0.5 + w / (2 max|w|), so 0 is mid-grey and the sign of a weight stays visible; the panel title
  gives that max|w| and the colourbar the scale.
  """
  w_in_SxDxH = np.asarray(w_in, dtype=np.float32)
  if w_in_SxDxH.ndim == 2:
    w_in_SxDxH = w_in_SxDxH[None]
  if w_in_SxDxH.ndim != 3 or w_in_SxDxH.shape[1] != int(np.prod(image_shape)):
    raise ValueError(f"plot_weight_images: w_in of shape {np.asarray(w_in).shape} does not hold "
                     f"(seeds,) D x H kernels with D = prod{tuple(image_shape)}")
  labels_SxH = None
  if labels is not None:
    labels_SxH = np.asarray(labels)
    if labels_SxH.ndim == 1:
      labels_SxH = labels_SxH[None]
    expected = (w_in_SxDxH.shape[0], w_in_SxDxH.shape[2])
    if labels_SxH.shape != expected:
      raise ValueError(f"plot_weight_images: labels of shape {np.asarray(labels).shape} do not match "
                       f"w_in's (seeds, neurons) = {expected}")
    unknown = sorted(set(np.unique(labels_SxH).tolist()) - set(LABEL_COLOURS))
    if unknown:
      raise ValueError(f"plot_weight_images: unknown label codes {unknown}; expected "
                       f"{dict(zip(LABEL_NAMES, range(len(LABEL_NAMES))))}")
    labels_SxH = labels_SxH[:max_seeds]
  w_in_SxDxH = w_in_SxDxH[:max_seeds]
  num_seeds, _, num_neurons = w_in_SxDxH.shape
  fig, axes = plt.subplots(num_seeds, num_neurons, figsize=(1.2 * num_neurons + 1.0, 1.5 * num_seeds + 0.5),
                           squeeze=False, layout="constrained")
  for s in range(num_seeds):
    for h in range(num_neurons):
      ax = axes[s, h]
      w_D = w_in_SxDxH[s, :, h]
      scale = float(np.max(np.abs(w_D)))
      image = 0.5 + w_D / (2.0 * scale) if scale > 0 else np.full_like(w_D, 0.5)
      ax.imshow(image.reshape(tuple(image_shape)), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      title, colour = f"n{h}", "black"
      if labels_SxH is not None:
        code = int(labels_SxH[s, h])
        title, colour = f"n{h} {LABEL_SHORT_NAMES[code]}", LABEL_COLOURS[code]
        for spine in ax.spines.values():
          spine.set_edgecolor(colour)
          spine.set_linewidth(2.5)
          spine.set_linestyle(LABEL_LINESTYLES[code])
      ax.set_title(f"{title}\nmax|w| {scale:.2g}", fontsize=6.5, color=colour)
    axes[s, 0].set_ylabel(f"seed {s}", fontsize=7)
  colourbar = fig.colorbar(cm.ScalarMappable(colors.Normalize(-1.0, 1.0), "gray"),
                           ax=axes.ravel().tolist(), shrink=min(1.0, 0.9 / max(1, num_seeds) + 0.5),
                           ticks=[-1.0, 0.0, 1.0])
  colourbar.ax.set_yticklabels(["-max", "0", "+max"], fontsize=7)
  colourbar.set_label(WEIGHT_COLOURBAR_LABEL, fontsize=7)
  if labels_SxH is not None:
    handles = [patches.Patch(facecolor="none", edgecolor=LABEL_COLOURS[code], linewidth=2.5,
                             linestyle=LABEL_LINESTYLES[code], label=LABEL_NAMES[code])
               for code in sorted(LABEL_COLOURS)]
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=7, frameon=False)
  return fig


def plot_weight_images(w_in, path, image_shape: Sequence[int] = (32, 32, 3), max_seeds: int = 4,
                       labels=None) -> None:
  """Draws each neuron's incoming weights as an RGB image (one row per seed, first `max_seeds`) to
  `path`, each neuron marked with its label when `labels` are given; see `weight_images_figure`."""
  report_io.save_figure(weight_images_figure(w_in, labels, image_shape, max_seeds), path)


def curves_from_history(rows: Sequence[Mapping[str, Any]], metric_names: Sequence[str],
                        step_offsets: Mapping[Any, int] | None = None):
  """Turns history rows (seed, phase, step, metrics...) into (steps_T, {metric: (S, T) array}).

  The plotted step is row["step"] + step_offsets[row["phase"]] (offset 0 when not given), so phase 2
  can be placed after phase 1. Every seed must have the same steps, each plotted step once.
  """
  step_offsets = step_offsets or {}
  seeds = sorted({row["seed"] for row in rows})
  steps = sorted({int(row["step"]) + int(step_offsets.get(row["phase"], 0)) for row in rows})
  seed_index = {seed: i for i, seed in enumerate(seeds)}
  step_index = {step: t for t, step in enumerate(steps)}
  curves = {name: np.full((len(seeds), len(steps)), np.nan) for name in metric_names}
  filled = set()
  for row in rows:
    t = step_index[int(row["step"]) + int(step_offsets.get(row["phase"], 0))]
    if (row["seed"], t) in filled:
      raise ValueError(f"history: seed {row['seed']} has two rows at plotted step {steps[t]}; give "
                       "step_offsets that place each phase after the previous one")
    filled.add((row["seed"], t))
    for name in metric_names:
      curves[name][seed_index[row["seed"]], t] = float(row[name])
  for name, curve_SxT in curves.items():
    if np.isnan(curve_SxT).any():
      raise ValueError(f"history: metric {name!r} is missing for some (seed, step); every seed needs "
                       "the same steps")
  return np.asarray(steps), curves


# Each history metric's panel: (title, y-label with the unit, (lowest, highest) value it can take).
CURVE_LABELS = {
    "loss": ("training loss", "cross-entropy loss (nats)", (0.0, None)),
    "train_accuracy": ("train accuracy", "accuracy (fraction correct)", (0.0, 1.0)),
    "test_accuracy": ("held-out accuracy", "accuracy (fraction correct)", (0.0, 1.0)),
    "mean_entropy": ("weight entropy", "weight entropy (nats,\nmean over neurons)", (0.0, None)),
    "mean_l2": ("incoming-weight L2 norm", "L2 norm of incoming weights\n(mean over neurons)", (0.0, None)),
    "mean_angle": ("angle between neurons' weights", "mean pairwise angle (degrees)", (0.0, 180.0)),
    "num_polysemantic": ("polysemantic neurons", "polysemantic neurons (count)", (0.0, None)),
    "num_monosemantic": ("monosemantic neurons", "monosemantic neurons (count)", (0.0, None)),
    "num_dead": ("dead neurons", "dead neurons (count)", (0.0, None)),
}


def curve_labels(name: str, values) -> tuple[str, str, tuple[float | None, float | None]]:
  """(title, y-label, bounds) of a metric's curve; an unknown metric is named in words, bounded below by 0
  when none of its values is negative."""
  if name in CURVE_LABELS:
    return CURVE_LABELS[name]
  words = name.replace("_", " ")
  return words, words, (0.0 if np.nanmin(values) >= 0 else None, None)


def plot_metric_curves(steps_T, curves: Mapping[str, Any], phase_boundary_step: float, plot_dir,
                       band: str = "sd") -> list[str]:
  """Writes plot_dir/metrics_<name>.png per metric: mean over seeds with a band, phase boundary line.

  curves: {name: (S, T) array} over steps_T spanning phase 1 then phase 2. band "sd": mean +- 1 SD
  over seeds (ddof 0), clipped to the values the metric can take (a count never below 0, an accuracy
  never above 1); band "minmax": min to max over seeds.
  """
  if band not in ("sd", "minmax"):
    raise ValueError(f"band must be 'sd' or 'minmax', got {band!r}")
  steps_T = np.asarray(steps_T)
  paths = []
  for name, curve in curves.items():
    curve_SxT = np.atleast_2d(np.asarray(curve, dtype=np.float64))
    if curve_SxT.shape[1] != steps_T.size:
      raise ValueError(f"metric {name!r}: {curve_SxT.shape[1]} points but {steps_T.size} steps")
    title, ylabel, (lowest, highest) = curve_labels(name, curve_SxT)
    mean_T = curve_SxT.mean(axis=0)
    if band == "sd":
      spread_T = curve_SxT.std(axis=0)
      low_T, high_T, band_text = mean_T - spread_T, mean_T + spread_T, "band ±1 SD"
      clipped = ((lowest is not None and np.any(low_T < lowest))
                 or (highest is not None and np.any(high_T > highest)))
      low_T = low_T if lowest is None else np.maximum(low_T, lowest)
      high_T = high_T if highest is None else np.minimum(high_T, highest)
      if clipped:
        band_text += " (clipped to the possible range)"
    else:
      low_T, high_T, band_text = curve_SxT.min(axis=0), curve_SxT.max(axis=0), "band min–max"
    fig, ax = plt.subplots(figsize=(5.8, 3.6), layout="constrained")
    ax.plot(steps_T, mean_T, color="C0", lw=1.5, label=f"mean over {curve_SxT.shape[0]} seeds")
    ax.fill_between(steps_T, low_T, high_T, color="C0", alpha=0.25, lw=0, label=band_text)
    ax.axvline(phase_boundary_step, color="k", ls="--", lw=1, label="phase 1 | phase 2")
    ax.set_xlabel("training step (phase 1, then phase 2)")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    safe_name = re.sub(r"[^A-Za-z0-9_]+", "_", name)
    path = os.path.join(plot_dir, f"metrics_{safe_name}.png")
    report_io.save_figure(fig, path)
    paths.append(path)
  return paths
