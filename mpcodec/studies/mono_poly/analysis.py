"""Analysis of a mono->poly run from its checkpoints: metric tables, plots, hypothesis report.

Reads `workdir/checkpoints/{phase1,phase2,control}/<step>/` (never in-memory state), regenerates the
datasets from the saved config, and writes under the workdir:
  metrics/crs_<phase>.csv            seed, layer, neuron, CRS per concept set, label (phase1, phase2, control)
  metrics/training_history.csv       one row per seed, phase and checkpoint step
  plots/phase{1,2}_samples.png, plots/phase{1,2}_weights.png, plots/metrics_*.png
  report.md, report.json             H1-H3 per arm and XOR minus control: intervals, k of n, verdicts
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import numpy as np
from absl import logging

from mpcodec.core.checkpoint import CheckpointError, CheckpointStore
from mpcodec.core.errors import IncompleteRunError
from mpcodec.data.bars import COLOUR_NAMES, ORIENTATION_NAMES
from mpcodec.metrics import selectivity, weights
from mpcodec.studies.mono_poly import selectivity as mono_poly_selectivity
from mpcodec.core import configuration, stats
from mpcodec.core import io as report_io
from mpcodec.studies.mono_poly import config as mono_poly_config
from mpcodec.studies.mono_poly import curriculum, plots, program
from mpcodec.studies.mono_poly import hypotheses as mono_poly_hypotheses
from mpcodec.studies.mono_poly import report as mono_poly_report

HISTORY_COLUMNS = ("seed", "phase", "step", "loss", "train_accuracy", "test_accuracy", "mean_entropy",
                   "mean_l2", "mean_angle", "num_polysemantic", "num_monosemantic", "num_dead")
CRS_COLUMNS = ("seed", "layer", "neuron", "crs_orientation", "crs_colour", "crs_conjunction", "label")
# A seed's final test accuracy within this many binomial standard errors of chance counts as at chance.
CHANCE_STANDARD_ERRORS = 3.0
CURVE_METRICS = ("loss", "train_accuracy", "test_accuracy", "mean_entropy", "mean_l2", "mean_angle",
                 "num_polysemantic")


def _incoming_weights(params: Any, layer: str) -> jax.Array:
  return params[layer]["kernel"]


@functools.lru_cache(maxsize=8)
def _seed_metrics_fn(cfg: mono_poly_config.MonoPolyConfig, phase: str):
  """jit(vmap) of every per-seed metric of one checkpoint (first hidden layer drives the summary)."""
  model = program.make_model(cfg)
  steps = program.phase_steps(cfg, phase)
  layers = program.layer_names(cfg)
  threshold = cfg.analysis.poly_threshold

  def one_seed(params, train, test):
    loss, train_acc = steps.evaluate(params, train["x"], train[f"y_{phase}"])
    _, test_acc = steps.evaluate(params, test["x"], test[f"y_{phase}"])
    _, acts = model.apply({"params": params}, test["x"])
    per_layer = {}
    for layer in layers:
      crs = mono_poly_selectivity.mono_poly_selectivity(acts[layer], test["orientation"], test["colour"])
      labels = selectivity.label_neurons(crs["crs_orientation"], crs["crs_colour"], crs["alive"], threshold)
      w = _incoming_weights(params, layer)
      per_layer[layer] = dict(
          crs_orientation=crs["crs_orientation"], crs_colour=crs["crs_colour"],
          crs_conjunction=crs["crs_conjunction"], labels=labels,
          entropy=weights.weight_entropy(w), l2=weights.weight_l2_norm(w),
          mean_angle=weights.mean_pairwise_angle_degrees(w))
    return dict(loss=loss, train_accuracy=train_acc, test_accuracy=test_acc, layers=per_layer)

  axis = program.data_axis(cfg)
  return jax.jit(jax.vmap(one_seed, in_axes=(0, axis, axis)))


# Keys added to the config after runs were saved without them, with the value those runs used; and
# analysis keys since removed (the bootstrap settings: verdicts now read a t test).
_ADDED_KEYS = {"data_per_seed": False, "control_arm": False}
_REMOVED_ANALYSIS_KEYS = ("bootstrap_resamples", "bootstrap_seed")


def saved_config(metadata: dict, analysis: mono_poly_config.AnalysisConfig | None = None) -> mono_poly_config.MonoPolyConfig:
  """The run's config from a checkpoint's metadata, with `analysis` settings in place of the saved ones."""
  saved = dict(metadata.get("full_config", metadata["config"]))
  saved = {**{k: v for k, v in _ADDED_KEYS.items() if k not in saved}, **saved}
  if isinstance(saved.get("analysis"), dict):
    saved["analysis"] = {k: v for k, v in saved["analysis"].items() if k not in _REMOVED_ANALYSIS_KEYS}
  cfg = mono_poly_config.parse_config(saved)
  return cfg if analysis is None else dataclasses.replace(cfg, analysis=analysis)


def analyze_checkpoints(workdir: str, analysis: mono_poly_config.AnalysisConfig | None = None,
                        allow_incomplete: bool = False) -> dict[str, Any]:
  """Computes every metric at every checkpoint of every phase; returns host-side results.

  A run that has not reached its configured steps stops with IncompleteRunError naming the phase and
  step, unless `allow_incomplete` (the results then say which phases are incomplete; a control phase
  that never started is left out).
  """
  results = {"phases": {}, "incomplete": {}}
  cfg = None
  phases = list(mono_poly_config.PHASES)
  while phases:
    phase = phases.pop(0)
    store = CheckpointStore(program.checkpoint_dir(workdir, phase))
    steps = store.all_steps()
    if not steps and phase == mono_poly_config.CONTROL and allow_incomplete:
      results["incomplete"][phase] = {"reached_step": None, "configured_steps": cfg.phase(phase).steps}
      continue
    if not steps:
      raise CheckpointError(f"no {phase} checkpoints in {store.directory}; run launch.mono_poly first")
    phase_cfg = saved_config(store.restore_metadata(steps[-1]), analysis)
    if cfg is None:
      cfg = phase_cfg
      phases = [p for p in mono_poly_config.phase_names(cfg) if p != phase]
      train_set, test_set = program.run_datasets(cfg)
    elif mono_poly_config.training_config(phase_cfg) != mono_poly_config.training_config(cfg):
      raise CheckpointError(f"{store.directory}: config differs from phase1's; the workdir mixes two runs")
    if steps[-1] != cfg.phase(phase).steps:
      if not allow_incomplete:
        raise IncompleteRunError(
            f"{workdir}: {phase} reached step {steps[-1]} of {cfg.phase(phase).steps}; finish training (run "
            f"the same launch.mono_poly command again) or pass --allow_incomplete to label the report incomplete")
      results["incomplete"][phase] = {"reached_step": steps[-1], "configured_steps": cfg.phase(phase).steps}
    template = program.abstract_carry(cfg, phase)
    metrics_fn = _seed_metrics_fn(cfg, phase)
    per_step = {}
    for step in steps:
      params = program.restore_state(cfg, store, step, phase, template)["params"]
      per_step[step] = jax.tree.map(np.asarray, metrics_fn(params, train_set, test_set))
      if step == steps[-1]:
        final_params = jax.tree.map(np.asarray, params)
    results["phases"][phase] = {"steps": steps, "metrics": per_step, "final_params": final_params,
                                "chance_accuracy": chance_accuracy(test_set[f"y_{phase}"], cfg.num_seeds)}
  results["config"] = cfg
  # The sample images are the first seed's with per-seed data.
  first = (lambda x: x[0]) if cfg.data_per_seed else (lambda x: x)
  count = min(cfg.analysis.num_sample_images, cfg.data.num_train)
  size = cfg.data.image_size
  results["train_set"] = {k: np.asarray(first(train_set[k])[:count]) for k in ("x", "orientation", "colour")}
  results["train_set"]["images"] = results["train_set"].pop("x").reshape(count, size, size, 3)
  return results


def history_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
  cfg = results["config"]
  first_layer = program.layer_names(cfg)[0]
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


def chance_accuracy(labels, num_seeds: int) -> np.ndarray:
  """(S,) accuracy of always answering a seed's majority class on its test labels ((S, N) or shared (N,))."""
  labels_SxN = np.broadcast_to(np.atleast_2d(np.asarray(labels)), (num_seeds, np.shape(labels)[-1]))
  positive_S = labels_SxN.mean(axis=1)
  return np.maximum(positive_S, 1.0 - positive_S)


def chance_warnings(results: dict[str, Any]) -> list[str]:
  """One line per phase whose final test accuracy is at chance on some seed: within
  CHANCE_STANDARD_ERRORS binomial standard errors (sqrt(c (1 - c) / N_test)) of the majority-class rate c.

  A network at chance did not learn its task: its neurons' labels and the hypotheses built on them
  describe an untrained-like network.
  """
  cfg = results["config"]
  num_test = cfg.data.num_test
  lines = []
  for phase, data in results["phases"].items():
    accuracy_S = np.asarray(data["metrics"][data["steps"][-1]]["test_accuracy"], np.float64)
    chance_S = np.asarray(data["chance_accuracy"], np.float64)
    bound_S = chance_S + CHANCE_STANDARD_ERRORS * np.sqrt(chance_S * (1.0 - chance_S) / num_test)
    at_chance_S = accuracy_S <= bound_S
    if at_chance_S.any():
      lines.append(
          f"{phase} ({cfg.phase(phase).task}) ends at chance on {int(at_chance_S.sum())} of {len(accuracy_S)} seeds: "
          f"final test accuracy {accuracy_S.mean():.3f} (mean over seeds), chance {chance_S.mean():.3f} (the majority "
          f"class), at chance meaning at most {bound_S.mean():.3f} ({CHANCE_STANDARD_ERRORS:g} binomial standard "
          f"errors above it on {num_test} test images); those networks did not learn the task")
  return lines


def _end_of(results: dict[str, Any], phase: str) -> dict[str, Any]:
  cfg = results["config"]
  data = results["phases"][phase]
  return data["metrics"][data["steps"][-1]]["layers"][program.layer_names(cfg)[0]]


def no_verdict_reason(cfg: mono_poly_config.MonoPolyConfig) -> str | None:
  """Why the whole run gives no verdict (the smoke preset, too few seeds), or None."""
  if cfg.smoke:
    return (f"smoke run (the :smoke preset: {cfg.num_seeds} seeds, {cfg.phase1.steps} + {cfg.phase2.steps} "
            "steps)")
  if cfg.num_seeds < stats.MIN_SEEDS:
    return f"{cfg.num_seeds} seeds, at least {stats.MIN_SEEDS} needed"
  return None


def design(results: dict[str, Any]) -> dict[str, Any]:
  """What the report says about how the run was designed: data, control arm, verdict rules."""
  cfg = results["config"]
  has_control = mono_poly_config.CONTROL in results["phases"]
  if has_control:
    control = (f"control arm: after phase 1, the same seeds train {cfg.phase2.steps} more steps on the phase-1 "
               f"task ({cfg.phase1.task}) with phase 2's optimizer and minibatches, from the same end-of-phase-1 "
               "network; each hypothesis is tested on XOR minus control per seed")
  elif cfg.control_arm:
    control = "control arm configured but not trained (incomplete run): effects are the XOR arm's alone"
  else:
    control = "no control arm (control_arm=False): effects are the XOR arm's alone, not compared with a control"
  reason = no_verdict_reason(cfg)
  return {"num_seeds": cfg.num_seeds, "data": program.data_description(cfg), "data_per_seed": cfg.data_per_seed,
          "shared_data_order": cfg.shared_data_order, "control": control, "control_arm": has_control,
          "smoke": reason is not None, "no_verdict_reason": reason}


def hypotheses(results: dict[str, Any]) -> dict[str, Any]:
  """H1-H3 from the end of phase 2 and, when trained, the end of the control phase (one Holm family)."""
  cfg = results["config"]
  xor, start = _end_of(results, "phase2"), _end_of(results, "phase1")
  per_seed = dict(entropy=xor["entropy"], l2=xor["l2"], labels=xor["labels"],
                  mean_angle_phase1_end=start["mean_angle"], mean_angle_phase2_end=xor["mean_angle"])
  control = None
  if mono_poly_config.CONTROL in results["phases"]:
    end = _end_of(results, mono_poly_config.CONTROL)
    control = dict(entropy=end["entropy"], l2=end["l2"], labels=end["labels"], mean_angle_end=end["mean_angle"])
  return mono_poly_hypotheses.test_hypotheses(per_seed, control, smoke=no_verdict_reason(cfg) is not None)


def summary(results: dict[str, Any]) -> dict[str, Any]:
  cfg = results["config"]
  first_layer = program.layer_names(cfg)[0]
  out = {"seeds": cfg.num_seeds, "label_counts": {}}
  for phase, where in results.get("incomplete", {}).items():
    reached = "no checkpoint" if where["reached_step"] is None else where["reached_step"]
    out[f"INCOMPLETE: {phase} reached step"] = f"{reached} of {where['configured_steps']}"
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
  first_layer = program.layer_names(cfg)[0]
  n = min(cfg.analysis.num_sample_images, len(results["train_set"]["images"]))
  images = results["train_set"]["images"][:n]
  for phase in mono_poly_config.PHASES:
    task = cfg.phase(phase).task
    labels = np.asarray(curriculum.task_labels(
        task, results["train_set"]["orientation"][:n], results["train_set"]["colour"][:n]))
    titles = [f"{ORIENTATION_NAMES[o]} {COLOUR_NAMES[c]}\n{task} class {l}" for o, c, l in zip(
        results["train_set"]["orientation"][:n], results["train_set"]["colour"][:n], labels)]
    plots.plot_samples(np.clip(images, 0, 1), titles, os.path.join(plot_dir, f"{phase}_samples.png"))
    w = results["phases"][phase]["final_params"][first_layer]["kernel"]
    image_shape = (cfg.data.image_size, cfg.data.image_size, 3)
    final = results["phases"][phase]["metrics"][results["phases"][phase]["steps"][-1]]
    plots.plot_weight_images(w, os.path.join(plot_dir, f"{phase}_weights.png"), image_shape=image_shape,
                                        labels=final["layers"][first_layer]["labels"])
  # Phase 2's step 0 stays (the end-of-phase-1 network measured on the XOR task): the task switch shows.
  offsets = {"phase1": 0, "phase2": cfg.phase1.steps, mono_poly_config.CONTROL: cfg.phase1.steps}
  rows = history_rows(results)
  steps_T, curves = plots.curves_from_history(
      [r for r in rows if r["phase"] != mono_poly_config.CONTROL], CURVE_METRICS, offsets)
  control = None
  if mono_poly_config.CONTROL in results["phases"]:
    control = plots.curves_from_history(
        [r for r in rows if r["phase"] == mono_poly_config.CONTROL], CURVE_METRICS, offsets)
  plots.plot_metric_curves(steps_T, curves, cfg.phase1.steps, plot_dir, control=control)


def analyze(workdir: str, analysis: mono_poly_config.AnalysisConfig | None = None,
            allow_incomplete: bool = False) -> dict[str, Any]:
  """Runs the whole analysis of `workdir`; returns the report dict that report.json holds.

  `analysis` replaces the saved analysis settings (they never decide which checkpoints belong to a run).
  """
  results = analyze_checkpoints(workdir, analysis, allow_incomplete)
  metrics_dir = os.path.join(workdir, "metrics")
  report_io.write_csv(os.path.join(metrics_dir, "training_history.csv"), history_rows(results), HISTORY_COLUMNS)
  for phase in results["phases"]:
    report_io.write_csv(os.path.join(metrics_dir, f"crs_{phase}.csv"), crs_rows(results, phase), CRS_COLUMNS)
  write_plots(results, workdir)
  tests = hypotheses(results)
  run_design = {**design(results), "warnings": chance_warnings(results)}
  for line in run_design["warnings"]:
    logging.warning("mono->poly: %s", line)
  run_summary = summary(results)
  report_io.write_text(os.path.join(workdir, "report.md"),
                       mono_poly_report.render_report_markdown(tests, run_summary, run_design))
  report = {"smoke": run_design["smoke"], "warnings": run_design["warnings"], "design": run_design,
            "summary": run_summary,
            "analysis": configuration.to_dict(results["config"].analysis), **tests}
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
  if report.get("smoke"):
    lines.append(f"NO VERDICTS: {report['design']['no_verdict_reason']}")
  lines += [f"WARNING: {line}" for line in report.get("warnings", [])]
  for name, result in report["hypotheses"].items():
    lines.append(f"{name}: {result['verdict_text']} ({result['statement']})")
  return "\n".join(lines)
