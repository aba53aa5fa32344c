"""Reports of the dynamics sweep: per-configuration plots and the final test-accuracy table.

Plots (under <workdir>/dynamics/plots/, one set per configuration):
- `<arch>__<dataset>_dimensionality.png`: one heatmap per measure, layers x training step (a symlog axis,
  linear over the first measurements and log beyond, so the early steps stay visible; linear for a short
  run), mean over seeds, each colourbar labelled with its measure;
- `<arch>__<dataset>_curves.png`: loss and accuracy against the training step, mean over seeds with a
  min..max band.
The table (`accuracy_table.csv` / `.md`) lists every configuration's final held-out accuracy (mean and
min..max over seeds) beside the chance level, with a status that shows failing seeds instead of hiding them,
and each run's wall time (compile + train, all seeds) with their total over the table's runs.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from absl import logging  # pylint: disable=wrong-import-position

from mpcodec.core import io  # pylint: disable=wrong-import-position
from mpcodec.studies.dynamics import series as results  # pylint: disable=wrong-import-position
from mpcodec.studies.dynamics.grid import family_of  # pylint: disable=wrong-import-position

TABLE_COLUMNS = ("arch", "dataset", "family", "status", "num_seeds", "mean_accuracy", "min_accuracy",
                 "max_accuracy", "chance_accuracy", "failed_seeds", "eval_size", "minutes", "note")


# What each measure is, in words and units, for axis and colour-bar labels.
MEASURE_LABELS = {
    "participation_ratio": "participation ratio (dimensions)",
    "effective_rank": "effective rank (dimensions)",
    "stable_rank": "stable rank (dimensions)",
    "num_components_90": "components for 90% of the variance (count)",
    "twonn_dimension": "TwoNN intrinsic dimension (dimensions)",
}


def measure_label(name: str) -> str:
  """A measure's axis label: its name in words with its unit (the name itself if unknown)."""
  return MEASURE_LABELS.get(name, name.replace("_", " "))


def _stem(run: str) -> str:
  arch, _, dataset = run.partition("@")
  return f"{arch}__{dataset}"


def load_run(workdir: str, run: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(series arrays, JSON record) of a finished run."""
  stem = os.path.join(workdir, "dynamics", _stem(run))
  with np.load(stem + ".npz", allow_pickle=False) as data:
    series = {k: data[k] for k in data.files}
  with open(stem + ".json", encoding="utf-8") as f:
    record = json.load(f)
  return series, record


# The step axis of the heatmaps is linear over the first HEATMAP_LINEAR_MEASUREMENTS measurement intervals
# and logarithmic after them: most of the change in dimensionality happens early, and a linear axis over
# thousands of steps squeezes it into a sliver.
HEATMAP_LINEAR_MEASUREMENTS = 10


def step_cell_edges(steps: np.ndarray) -> np.ndarray:
  """Edges of the heatmap cells: each measured step owns the span halfway to its neighbours."""
  steps = np.asarray(steps, np.float64)
  if steps.size == 1:
    return np.array([steps[0] - 0.5, steps[0] + 0.5])
  middles = (steps[:-1] + steps[1:]) / 2
  return np.concatenate([[steps[0]], middles, [steps[-1]]])


def step_axis_label(linear_span: float | None) -> str:
  """The heatmaps' step-axis label: says "log" only when the axis is symlog (linear up to linear_span)."""
  if linear_span is None:
    return "training step"
  return f"training step (linear to {linear_span:g}, log beyond)"


def dimensionality_figure(series: Mapping[str, np.ndarray], measure_names: Sequence[str], title: str):
  """One heatmap per measure: rows = layers (input side at the top), columns = measured steps.

  Each measured step is one cell. A run longer than HEATMAP_LINEAR_MEASUREMENTS measurement intervals
  gets a symlog step axis (linear over those first intervals, logarithmic beyond), a shorter one a linear
  axis; the axis label says which. Each colourbar is labelled with its measure and the seed count.
  """
  steps = series["steps"]
  layers = [str(n) for n in series["layer_names"]]
  edges = step_cell_edges(steps)
  linear_span = HEATMAP_LINEAR_MEASUREMENTS * (float(steps[1] - steps[0]) if len(steps) > 1 else 1.0)
  symlog = edges[-1] > linear_span
  num_seeds = series[measure_names[0]].shape[0]
  fig, axes = plt.subplots(len(measure_names), 1, figsize=(9, 1.2 + 0.28 * len(layers) * len(measure_names)
                                                                + 0.6 * len(measure_names)),
                           squeeze=False, layout="constrained")
  for ax, name in zip(axes[:, 0], measure_names):
    mean_LxM = np.mean(series[name], axis=0).T
    image = ax.pcolormesh(edges, np.arange(len(layers) + 1) - 0.5, mean_LxM, cmap="viridis",
                          shading="flat")
    ax.set_ylim(len(layers) - 0.5, -0.5)
    if symlog:
      ax.set_xscale("symlog", linthresh=linear_span)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    ax.set_ylabel("layer", fontsize=8)
    ax.set_xlabel(step_axis_label(linear_span if symlog else None), fontsize=8)
    ax.set_title(name.replace("_", " "), fontsize=9)
    colorbar = fig.colorbar(image, ax=ax, pad=0.01)
    colorbar.set_label(f"{measure_label(name)}\n(mean of {num_seeds} seeds)", fontsize=7)
  fig.suptitle(f"{title}: mean over {num_seeds} seeds", fontsize=10)
  return fig


def _band(ax, steps, values_SxM, label):
  mean = values_SxM.mean(axis=0)
  line, = ax.plot(steps, mean, label=label, lw=1.2)
  ax.fill_between(steps, values_SxM.min(axis=0), values_SxM.max(axis=0), color=line.get_color(),
                  alpha=0.25, lw=0)


def curves_figure(series: Mapping[str, np.ndarray], title: str):
  """Loss and accuracy against the training step: mean over seeds, band = min..max over seeds."""
  fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
  steps = series["steps"]
  num_seeds = np.asarray(series["train_loss"]).shape[0]
  _band(loss_ax, steps, series["train_loss"], "train probe")
  _band(loss_ax, steps, series["test_loss"], "held-out probe")
  losses = np.concatenate([np.ravel(series["train_loss"]), np.ravel(series["test_loss"])])
  if np.all(losses[np.isfinite(losses)] > 0):
    loss_ax.set_yscale("log")
  loss_ax.set_ylabel("cross-entropy loss (nats)")
  loss_ax.set_title("loss", fontsize=9)
  _band(acc_ax, steps, series["train_accuracy"], "train probe")
  _band(acc_ax, steps, series["test_accuracy"], "held-out probe")
  acc_ax.set_ylabel("accuracy (fraction correct)")
  acc_ax.set_title("accuracy", fontsize=9)
  for ax in (loss_ax, acc_ax):
    ax.set_xlabel("training step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  fig.suptitle(f"{title}: mean of {num_seeds} seeds, band = min..max over seeds", fontsize=10)
  return fig


def plot_paths(workdir: str, run: str, record: Mapping[str, Any]) -> list[str]:
  """The plot files a finished run has under workdir/dynamics/plots/."""
  folder = os.path.join(workdir, "dynamics", "plots")
  paths = []
  if record.get("measure_names") and record.get("layer_names"):
    paths.append(os.path.join(folder, f"{_stem(run)}_dimensionality.png"))
  if record.get("num_update_steps") and record.get("measure_names"):
    paths.append(os.path.join(folder, f"{_stem(run)}_curves.png"))
  return paths


def derived_outputs(workdir: str, run: str) -> list[str]:
  """Every file derived from one run's checkpoints (its series, record and plots) and the grid's accuracy
  table that lists it: what --overwrite removes before retraining the run (the table is rewritten after)."""
  folder = os.path.join(workdir, "dynamics")
  return [os.path.join(folder, _stem(run) + ".npz"), os.path.join(folder, _stem(run) + ".json"),
          *(os.path.join(folder, "plots", f"{_stem(run)}_{kind}.png") for kind in ("dimensionality", "curves")),
          os.path.join(folder, "accuracy_table.csv"), os.path.join(folder, "accuracy_table.md")]


def plot_run(workdir: str, run: str, record: Mapping[str, Any] | None = None) -> list[str]:
  """Writes the run's heatmaps and curves under workdir/dynamics/plots/; returns the paths.

  `record` is the run's JSON record when it is not on disk yet (plots are written before it).
  """
  if record is None:
    series, record = load_run(workdir, run)
  else:
    with np.load(os.path.join(workdir, "dynamics", _stem(run) + ".npz"), allow_pickle=False) as data:
      series = {k: data[k] for k in data.files}
  folder = os.path.join(workdir, "dynamics", "plots")
  title = f"{record['arch']} on {record['dataset']}"
  paths = []
  if record["measure_names"] and len(series["layer_names"]):
    path = os.path.join(folder, f"{_stem(run)}_dimensionality.png")
    io.save_figure(dimensionality_figure(series, record["measure_names"], title), path)
    paths.append(path)
  if "train_loss" in series:
    path = os.path.join(folder, f"{_stem(run)}_curves.png")
    io.save_figure(curves_figure(series, title), path)
    paths.append(path)
  return paths


def accuracy_row(run: str, record: Mapping[str, Any] | None, family: str, fail_margin: float,
                 text_target: float) -> dict[str, Any]:
  """One table row; status is 'ok', 'some seeds failed', 'mean at chance', 'diverged' or 'not run'."""
  arch, _, dataset = run.partition("@")
  row: dict[str, Any] = {"arch": arch, "dataset": dataset, "family": family, "note": ""}
  if record is None or record.get("status") != "finished":
    row["status"] = "not run" if record is None else str(record.get("status"))
    row["note"] = "" if record is None else str(record.get("message", ""))
    row["chance_accuracy"] = None if record is None else record.get("chance_accuracy")
    return row
  accuracy = np.asarray(record["final_test_accuracy"], np.float64)
  chance = float(record["chance_accuracy"])
  failed = np.flatnonzero(accuracy < chance + fail_margin)
  if accuracy.mean() < chance + fail_margin:
    status = "mean at chance"
  elif failed.size:
    status = "some seeds failed"
  else:
    status = "ok"
  notes = []
  if record.get("dataset_metadata", {}).get("vocab_size") is not None and accuracy.mean() < text_target:
    notes.append(f"below the {text_target:.0%} text target")
  if record.get("rank_capped_layers"):
    notes.append("rank-capped: " + " ".join(record["rank_capped_layers"]))
  row.update(status=status, num_seeds=int(accuracy.size), mean_accuracy=float(accuracy.mean()),
             min_accuracy=float(accuracy.min()), max_accuracy=float(accuracy.max()),
             chance_accuracy=chance, failed_seeds=" ".join(str(s) for s in failed),
             eval_size=record.get("final_eval_size"), minutes=run_minutes(record), note="; ".join(notes))
  return row


def run_minutes(record: Mapping[str, Any]) -> float | None:
  """A finished run's wall time in minutes (compile + train of all its seeds), None if not recorded."""
  seconds = [record.get(k) for k in ("compile_seconds", "run_seconds")]
  if any(s is None for s in seconds):
    return None
  return sum(seconds) / 60


def _records_on_disk(workdir: str) -> dict[str, dict]:
  """The finished and diverged runs' records under workdir/dynamics/ (other shards' runs included)."""
  records = {}
  for path in sorted(glob.glob(os.path.join(workdir, "dynamics", "*__*.json"))):
    record = results.read_record(path)
    if record is None or not {"arch", "dataset"} <= set(record):
      # A shard's record cut short: that run shows as not run (its own shard retrains it when started).
      logging.warning("%s does not parse as a run record (truncated or corrupt); left out of the table", path)
      continue
    if record.get("status") in ("finished", "diverged"):
      records[f"{record['arch']}@{record['dataset']}"] = record
  return records


def _pct(value: Any) -> str:
  return "" if value is None else f"{100 * value:.1f}"


def _minutes(value: float | None) -> str:
  return "" if value is None else f"{value:.1f}"


def time_summary(rows: Sequence[Mapping[str, Any]]) -> str:
  """'K of N runs finished; the wall times of J of them ... add up to X min ...' over the table's rows.

  A run's time is its recorded compile and training time (data loading, writing and plots left out; the
  compile time is near 0 where a compiled program was reused); summed over shards it is machine time,
  not the elapsed time of the whole grid.
  """
  finished = [r for r in rows if r.get("mean_accuracy") is not None]
  timed = [r["minutes"] for r in finished if r.get("minutes") is not None]
  text = f"{len(finished)} of {len(rows)} runs finished"
  if timed:
    text += (f"; the wall times of {len(timed)} of them (compile + train, all seeds) add up to "
             f"{sum(timed):.1f} min, on the machine(s) and under the load they ran with")
  return text + "."


def accuracy_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
  """The table as markdown: accuracy in percent, mean and min..max over seeds."""
  lines = ["| architecture | dataset | status | seeds | test acc. % mean | min..max | chance % | "
           "failed seeds | minutes | note |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    span = (f"{_pct(r.get('min_accuracy'))}..{_pct(r.get('max_accuracy'))}"
            if r.get("mean_accuracy") is not None else "")
    lines.append(f"| {r['arch']} | {r['dataset']} | {r['status']} | {r.get('num_seeds') or ''} | "
                 f"{_pct(r.get('mean_accuracy'))} | {span} | {_pct(r.get('chance_accuracy'))} | "
                 f"{r.get('failed_seeds') or ''} | {_minutes(r.get('minutes'))} | {r.get('note') or ''} |")
  return "\n".join(lines) + "\n"


def write_accuracy_table(workdir: str, records: Mapping[str, Mapping[str, Any]], sweep) -> str:
  """Writes dynamics/accuracy_table.{csv,md} for this sweep's runs and any other finished run found in
  the workdir; returns the markdown."""
  on_disk = _records_on_disk(workdir)
  # The sweep's runs in its order, then any other run found in the workdir.
  merged: dict[str, Mapping[str, Any] | None] = {
      run: records.get(run) or on_disk.get(run) for run in sweep.runs}
  merged.update({run: record for run, record in on_disk.items() if run not in merged})
  rows = [accuracy_row(run, merged[run], family_of(run.partition("@")[0]), sweep.fail_margin,
                       sweep.text_accuracy_target) for run in merged]
  folder = os.path.join(workdir, "dynamics")
  io.write_csv(os.path.join(folder, "accuracy_table.csv"), rows, TABLE_COLUMNS)
  markdown = ("# Final held-out accuracy per configuration\n\n"
              f"Mean and range over seeds. A seed fails when it ends below chance + {sweep.fail_margin:.0%} "
              "(chance = always predicting the most frequent held-out class). "
              f"{time_summary(rows)}\n\n" + accuracy_markdown(rows))
  io.write_text(os.path.join(folder, "accuracy_table.md"), markdown)
  return markdown
