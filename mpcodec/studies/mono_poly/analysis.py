"""Analysis of a mono->poly run from its checkpoints: metric tables, plots, hypothesis report.

Reads `workdir/checkpoints/phase{1,2}/<step>/` (never in-memory state), regenerates the dataset from the
saved config, and writes under the workdir:
  metrics/crs_phase1.csv, metrics/crs_phase2.csv   seed, layer, neuron, CRS per concept set, label
  metrics/training_history.csv                     one row per seed, phase and checkpoint step
  plots/phase{1,2}_samples.png, plots/phase{1,2}_weights.png, plots/metrics_*.png
  report.md, report.json                           H1-H3 with effect sizes, bootstrap CIs, verdicts
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import numpy as np

from mpcodec.core.checkpoint import CheckpointError, CheckpointStore
from mpcodec.core.errors import IncompleteRunError
from mpcodec.data.bars import COLOUR_NAMES, ORIENTATION_NAMES
from mpcodec.metrics import selectivity, weights
from mpcodec.core import io as report_io
from mpcodec.studies.mono_poly import report as mono_poly_report
from mpcodec.studies.mono_poly import curriculum, experiment as mono_poly

HISTORY_COLUMNS = ("seed", "phase", "step", "loss", "train_accuracy", "test_accuracy", "mean_entropy",
                   "mean_l2", "mean_angle", "num_polysemantic", "num_monosemantic", "num_dead")
CRS_COLUMNS = ("seed", "layer", "neuron", "crs_orientation", "crs_colour", "crs_conjunction", "label")
CURVE_METRICS = ("loss", "train_accuracy", "test_accuracy", "mean_entropy", "mean_l2", "mean_angle",
                 "num_polysemantic")


def _incoming_weights(params: Any, layer: str) -> jax.Array:
  return params[layer]["kernel"]


@functools.lru_cache(maxsize=8)
def _seed_metrics_fn(cfg: mono_poly.MonoPolyConfig, phase: str):
  """jit(vmap) of every per-seed metric of one checkpoint (first hidden layer drives the summary)."""
  model = mono_poly.make_model(cfg)
  steps = mono_poly.phase_steps(cfg, phase)
  layers = mono_poly.layer_names(cfg)
  threshold = cfg.analysis.poly_threshold

  def one_seed(params, train, test):
    loss, train_acc = steps.evaluate(params, train["x"], train[f"y_{phase}"])
    _, test_acc = steps.evaluate(params, test["x"], test[f"y_{phase}"])
    _, acts = model.apply({"params": params}, test["x"])
    per_layer = {}
    for layer in layers:
      crs = selectivity.mono_poly_selectivity(acts[layer], test["orientation"], test["colour"])
      labels = selectivity.label_neurons(crs["crs_orientation"], crs["crs_colour"], crs["alive"], threshold)
      w = _incoming_weights(params, layer)
      per_layer[layer] = dict(
          crs_orientation=crs["crs_orientation"], crs_colour=crs["crs_colour"],
          crs_conjunction=crs["crs_conjunction"], labels=labels,
          entropy=weights.weight_entropy(w), l2=weights.weight_l2_norm(w),
          mean_angle=weights.mean_pairwise_angle_degrees(w))
    return dict(loss=loss, train_accuracy=train_acc, test_accuracy=test_acc, layers=per_layer)

  return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None)))


def saved_config(metadata: dict, analysis: mono_poly.AnalysisConfig | None = None) -> mono_poly.MonoPolyConfig:
  """The run's config from a checkpoint's metadata, with `analysis` settings in place of the saved ones."""
  cfg = mono_poly.parse_config(metadata.get("full_config", metadata["config"]))
  return cfg if analysis is None else dataclasses.replace(cfg, analysis=analysis)


def analyze_checkpoints(workdir: str, analysis: mono_poly.AnalysisConfig | None = None,
                        allow_incomplete: bool = False) -> dict[str, Any]:
  """Computes every metric at every checkpoint of both phases; returns host-side results.

  A run that has not reached its configured steps stops with IncompleteRunError naming the phase and
  step, unless `allow_incomplete` (the results then say which phases are incomplete).
  """
  results = {"phases": {}, "incomplete": {}}
  cfg = None
  for phase in mono_poly.PHASES:
    store = CheckpointStore(mono_poly.checkpoint_dir(workdir, phase))
    steps = store.all_steps()
    if not steps:
      raise CheckpointError(f"no {phase} checkpoints in {store.directory}; run launch.mono_poly first")
    phase_cfg = saved_config(store.restore_metadata(steps[-1]), analysis)
    if cfg is None:
      cfg = phase_cfg
      train_set, test_set = mono_poly.make_datasets(cfg)
    elif mono_poly.training_config(phase_cfg) != mono_poly.training_config(cfg):
      raise CheckpointError(f"{store.directory}: config differs from phase1's; the workdir mixes two runs")
    if steps[-1] != cfg.phase(phase).steps:
      if not allow_incomplete:
        raise IncompleteRunError(
            f"{workdir}: {phase} reached step {steps[-1]} of {cfg.phase(phase).steps}; finish training (run "
            f"the same launch.mono_poly command again) or pass --allow_incomplete to label the report incomplete")
      results["incomplete"][phase] = {"reached_step": steps[-1], "configured_steps": cfg.phase(phase).steps}
    template = mono_poly.abstract_carry(cfg, phase)
    metrics_fn = _seed_metrics_fn(cfg, phase)
    per_step = {}
    for step in steps:
      params = mono_poly.restore_state(cfg, store, step, phase, template)["params"]
      per_step[step] = jax.tree.map(np.asarray, metrics_fn(params, train_set, test_set))
      if step == steps[-1]:
        final_params = jax.tree.map(np.asarray, params)
    results["phases"][phase] = {"steps": steps, "metrics": per_step, "final_params": final_params}
  results["config"] = cfg
  results["test_set"] = jax.tree.map(np.asarray, test_set)
  results["train_set"] = {k: np.asarray(train_set[k]) for k in ("images", "orientation", "colour")}
  return results


def history_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
  cfg = results["config"]
  first_layer = mono_poly.layer_names(cfg)[0]
  rows = []
  for phase, data in results["phases"].items():
    for step, m in data["metrics"].items():
      layer = m["layers"][first_layer]
      for i, seed in enumerate(cfg.seeds):
        labels = layer["labels"][i]
        rows.append(dict(
            seed=seed, phase=phase, step=step, loss=m["loss"][i], train_accuracy=m["train_accuracy"][i],
            test_accuracy=m["test_accuracy"][i], mean_entropy=layer["entropy"][i].mean(),
            mean_l2=layer["l2"][i].mean(), mean_angle=layer["mean_angle"][i],
            num_polysemantic=int((labels == selectivity.POLYSEMANTIC).sum()),
            num_monosemantic=int((labels == selectivity.MONOSEMANTIC).sum()),
            num_dead=int((labels == selectivity.DEAD).sum())))
  return rows


def crs_rows(results: dict[str, Any], phase: str) -> list[dict[str, Any]]:
  cfg = results["config"]
  data = results["phases"][phase]
  final = data["metrics"][data["steps"][-1]]
  rows = []
  for layer, m in final["layers"].items():
    for i, seed in enumerate(cfg.seeds):
      for neuron in range(m["labels"].shape[1]):
        rows.append(dict(
            seed=seed, layer=layer, neuron=neuron, crs_orientation=m["crs_orientation"][i, neuron],
            crs_colour=m["crs_colour"][i, neuron], crs_conjunction=m["crs_conjunction"][i, neuron],
            label=selectivity.LABEL_NAMES[int(m["labels"][i, neuron])]))
  return rows


def hypotheses(results: dict[str, Any]) -> dict[str, Any]:
  cfg = results["config"]
  first_layer = mono_poly.layer_names(cfg)[0]
  end = {phase: d["metrics"][d["steps"][-1]]["layers"][first_layer] for phase, d in results["phases"].items()}
  per_seed = dict(entropy=end["phase2"]["entropy"], l2=end["phase2"]["l2"], labels=end["phase2"]["labels"],
                  mean_angle_phase1_end=end["phase1"]["mean_angle"],
                  mean_angle_phase2_end=end["phase2"]["mean_angle"])
  return mono_poly_report.test_hypotheses(
      per_seed, rng_seed=cfg.analysis.bootstrap_seed, num_resamples=cfg.analysis.bootstrap_resamples)


def summary(results: dict[str, Any]) -> dict[str, Any]:
  cfg = results["config"]
  first_layer = mono_poly.layer_names(cfg)[0]
  out = {"seeds": cfg.num_seeds, "label_counts": {}}
  for phase, where in results.get("incomplete", {}).items():
    out[f"INCOMPLETE: {phase} reached step"] = f"{where['reached_step']} of {where['configured_steps']}"
  for phase, d in results["phases"].items():
    final = d["metrics"][d["steps"][-1]]
    task = cfg.phase(phase).task
    out[f"{phase} ({task}) final step"] = d["steps"][-1]
    out[f"{phase} test accuracy, mean over seeds"] = float(final["test_accuracy"].mean())
    out[f"{phase} test accuracy, lowest seed"] = float(final["test_accuracy"].min())
    out["label_counts"][phase] = mono_poly_report.label_counts(final["layers"][first_layer]["labels"])
  return out


def write_plots(results: dict[str, Any], workdir: str) -> None:
  cfg = results["config"]
  plot_dir = os.path.join(workdir, "plots")
  first_layer = mono_poly.layer_names(cfg)[0]
  n = min(cfg.analysis.num_sample_images, len(results["train_set"]["images"]))
  images = results["train_set"]["images"][:n]
  for phase in mono_poly.PHASES:
    task = cfg.phase(phase).task
    labels = np.asarray(curriculum.task_labels(
        task, results["train_set"]["orientation"][:n], results["train_set"]["colour"][:n]))
    titles = [f"{ORIENTATION_NAMES[o]} {COLOUR_NAMES[c]}\n{task} class {l}" for o, c, l in zip(
        results["train_set"]["orientation"][:n], results["train_set"]["colour"][:n], labels)]
    mono_poly_report.plot_samples(np.clip(images, 0, 1), titles, os.path.join(plot_dir, f"{phase}_samples.png"))
    w = results["phases"][phase]["final_params"][first_layer]["kernel"]
    image_shape = (cfg.data.image_size, cfg.data.image_size, 3)
    final = results["phases"][phase]["metrics"][results["phases"][phase]["steps"][-1]]
    mono_poly_report.plot_weight_images(w, os.path.join(plot_dir, f"{phase}_weights.png"), image_shape=image_shape,
                                        labels=final["layers"][first_layer]["labels"])
  offsets = {"phase1": 0, "phase2": cfg.phase1.steps}
  steps_T, curves = mono_poly_report.curves_from_history(
      [r for r in history_rows(results) if not (r["phase"] == "phase2" and r["step"] == 0)],
      CURVE_METRICS, offsets)
  mono_poly_report.plot_metric_curves(steps_T, curves, cfg.phase1.steps, plot_dir)


def analyze(workdir: str, analysis: mono_poly.AnalysisConfig | None = None,
            allow_incomplete: bool = False) -> dict[str, Any]:
  """Runs the whole analysis of `workdir`; returns the report dict that report.json holds.

  `analysis` replaces the saved analysis settings (they never decide which checkpoints belong to a run).
  """
  results = analyze_checkpoints(workdir, analysis, allow_incomplete)
  metrics_dir = os.path.join(workdir, "metrics")
  report_io.write_csv(os.path.join(metrics_dir, "training_history.csv"), history_rows(results), HISTORY_COLUMNS)
  for phase in mono_poly.PHASES:
    report_io.write_csv(os.path.join(metrics_dir, f"crs_{phase}.csv"), crs_rows(results, phase), CRS_COLUMNS)
  write_plots(results, workdir)
  tests = hypotheses(results)
  run_summary = summary(results)
  report_io.write_text(os.path.join(workdir, "report.md"),
                       mono_poly_report.render_report_markdown(tests, run_summary))
  report = {"summary": run_summary, **tests}
  report_io.write_json(os.path.join(workdir, "report.json"), report)
  return report


def summary_text(report: dict[str, Any]) -> str:
  """A few lines for the terminal: accuracies, neuron counts and each hypothesis' verdict."""
  lines = []
  for key, value in report["summary"].items():
    if key == "label_counts":
      for phase, counts in value.items():
        lines.append(f"{phase} neurons: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    else:
      lines.append(f"{key}: {mono_poly_report.format_number(value) if isinstance(value, float) else value}")
  for name, result in report["hypotheses"].items():
    lines.append(f"{name}: {result.get('verdict')} ({result.get('statement', '')})")
  return "\n".join(lines)
