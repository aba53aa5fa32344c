"""Outputs of a codec run: metrics/sae.json, metrics/squeezer.json, training histories, plots, report.md and
report.json.

Every number in report.md is read from the metric arrays passed in; nothing is typed in. A run whose
latents (or synthetic neurons) all died is flagged in the JSON (`all_latents_dead`) and in the report. A
smoke run, or one of fewer than `stats.MIN_SEEDS` seeds, opens report.md with a banner and says so in
report.json (`smoke`, `no_verdict_reason`); its verdicts all read "cannot be tested".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import configuration, io, stats
from mpcodec.studies.codec import plots as plots_lib, replication, verdicts

_PER_RUN_SAE = ("fvu", "l0", "dead_fraction", "dense_fraction", "mean_max_cosine_similarity",
                "matched_cosine_similarity", "matched_pair_correlation")
_PER_RUN_SQUEEZER = ("latent_fvu", "activation_fvu_through_squeezer", "activation_fvu_sae_alone",
                     "faithfulness_ratio", "dead_neuron_fraction")


def _runs_table(metrics: Mapping[str, np.ndarray], keys: Sequence[str], run_labels: Sequence[dict]
                ) -> list[dict[str, Any]]:
  rows = []
  for r, label in enumerate(run_labels):
    row = dict(label)
    row.update({key: float(np.asarray(metrics[key])[r]) for key in keys if key in metrics})
    rows.append(row)
  return rows


def sae_summary(metrics: Mapping[str, np.ndarray], run_labels: Sequence[dict]) -> dict[str, Any]:
  """JSON payload of the SAE metrics: one row per run, density histograms, dead-run flags."""
  rows = _runs_table(metrics, _PER_RUN_SAE, run_labels)
  for r, row in enumerate(rows):
    row["all_latents_dead"] = bool(np.asarray(metrics["dead_fraction"])[r] >= 1.0)
  return {
      "runs": rows,
      "num_eval_tokens": int(metrics["num_tokens"]),
      "all_latents_dead_in_every_run": all(row["all_latents_dead"] for row in rows),
      "latent_density": {"log10_frequency_bin_edges": np.asarray(metrics["density_edges"]),
                         "live_latents_per_bin": np.asarray(metrics["density_histogram"])},
  }


def squeezer_summary(metrics: Mapping[str, np.ndarray], run_labels: Sequence[dict]) -> dict[str, Any]:
  """JSON payload of the Squeezer metrics: one row per run plus features-per-neuron statistics."""
  rows = _runs_table(metrics, _PER_RUN_SQUEEZER, run_labels)
  per_neuron = np.asarray(metrics["features_per_neuron"])
  for r, row in enumerate(rows):
    row["all_neurons_dead"] = bool(np.asarray(metrics["dead_neuron_fraction"])[r] >= 1.0)
    row["features_per_neuron_mean"] = float(per_neuron[r].mean())
    row["features_per_neuron_max"] = int(per_neuron[r].max())
    row["neurons_with_no_feature_fraction"] = float((per_neuron[r] == 0).mean())
  return {
      "runs": rows,
      "num_eval_tokens": int(metrics["num_tokens"]),
      "features_per_neuron_definition": (
          "number of live SAE latents whose largest Squeezer encoder weight goes to the neuron"),
      "features_per_neuron": per_neuron,
  }


# A training stage has converged when, in every run, its training FVU over the last CONVERGENCE_WINDOW of the
# steps differs from the window before by at most FVU_TOLERANCE (relative) and its dead fraction moved by at
# most DEAD_TOLERANCE over the last window.
CONVERGENCE_WINDOW = 0.2
FVU_TOLERANCE = 0.02
DEAD_TOLERANCE = 0.02


def convergence(history: Mapping[str, np.ndarray] | None, run_labels: Sequence[dict]) -> dict[str, Any] | None:
  """Whether a stage's training had settled, per run, from its (steps, runs) history of `fvu` and
  `dead_fraction` (None without a history or with fewer than 10 steps)."""
  if history is None or "fvu" not in history or np.asarray(history["fvu"]).shape[0] < 10:
    return None
  fvu_TxR = np.asarray(history["fvu"], np.float64)
  dead_TxR = np.asarray(history.get("dead_fraction", np.zeros_like(fvu_TxR)), np.float64)
  steps = fvu_TxR.shape[0]
  width = max(1, int(round(CONVERGENCE_WINDOW * steps)))
  last, before = fvu_TxR[-width:].mean(axis=0), fvu_TxR[-2 * width:-width].mean(axis=0)
  fvu_change = (last - before) / np.where(before > 0, before, 1.0)
  dead_change = dead_TxR[-1] - dead_TxR[-width - 1]
  rows = []
  for r, label in enumerate(run_labels):
    settled = bool(abs(fvu_change[r]) <= FVU_TOLERANCE and abs(dead_change[r]) <= DEAD_TOLERANCE)
    rows.append({**label, "fvu_last_window": float(last[r]), "fvu_relative_change": float(fvu_change[r]),
                 "dead_fraction_change": float(dead_change[r]), "converged": settled})
  return {"rule": (f"training FVU over the last {CONVERGENCE_WINDOW:.0%} of {steps} steps within "
                   f"{FVU_TOLERANCE:.0%} (relative) of the {CONVERGENCE_WINDOW:.0%} before, and the dead "
                   f"fraction moved by at most {DEAD_TOLERANCE} over the last {CONVERGENCE_WINDOW:.0%}"),
          "runs": rows, "converged_in_every_run": all(row["converged"] for row in rows)}


def _convergence_line(stage: str, payload: Mapping[str, Any] | None) -> list[str]:
  if payload is None:
    return []
  unsettled = [row for row in payload["runs"] if not row["converged"]]
  if not unsettled:
    return [f"Training had converged in every run ({payload['rule']}).", ""]
  worst = max(unsettled, key=lambda row: abs(row["fvu_relative_change"]))
  return [f"**{stage} training had not converged in {len(unsettled)} of {len(payload['runs'])} runs** "
          f"({payload['rule']}); e.g. {plots_lib.run_name(worst)}: FVU changed by "
          f"{worst['fvu_relative_change']:+.1%}, dead fraction by {worst['dead_fraction_change']:+.3f}.", ""]


def _markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
  columns = list(rows[0].keys())
  def cell(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return str(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
  return "\n".join(lines)


def _history_rows(history: Mapping[str, np.ndarray], run_labels: Sequence[dict]) -> list[dict[str, Any]]:
  rows = []
  steps = np.asarray(next(iter(history.values()))).shape[0]
  for r, label in enumerate(run_labels):
    for step in range(steps):
      row = {"step": step + 1, **label}
      row.update({name: float(np.asarray(values)[step, r]) for name, values in history.items()})
      rows.append(row)
  return rows


def write_codec_outputs(workdir: str, result: Any, text_part: Any = None) -> dict[str, Any]:
  """Writes metrics/, plots/, report.md and report.json of a `result.CodecResult` under `workdir`; returns the
  JSON payloads.

  The analysis payload's findings and replication table go into report.md; `text_part` (the downstream
  text stages' `text_stages.TextReport`) adds its sections to report.md, and report.json becomes its
  report with the codec's own under "codec". Each file is written once.
  """
  cfg, main = result.cfg, result.squeezer
  run_labels, source_description = result.run_labels, result.source.description
  sae_metrics, sae_history, analysis_payload = result.sae_metrics, result.sae_history, result.analysis
  squeezer_metrics, squeezer_history, squeezer_labels = result.squeezer_metrics, main.history, list(main.labels)
  sae_payload = dict(sae_summary(sae_metrics, run_labels), source=source_description,
                     config=configuration.to_dict(cfg), convergence=convergence(sae_history, run_labels))
  squeezer_payload = dict(squeezer_summary(squeezer_metrics, squeezer_labels), source=source_description,
                          num_neurons=main.num_neurons,
                          convergence=convergence(squeezer_history, squeezer_labels))
  io.write_json(os.path.join(workdir, "metrics", "sae.json"), sae_payload)
  io.write_json(os.path.join(workdir, "metrics", "squeezer.json"), squeezer_payload)
  plots = os.path.join(workdir, "plots")
  if sae_history is not None:
    io.write_csv(os.path.join(workdir, "metrics", "sae_history.csv"), _history_rows(sae_history, run_labels))
    plots_lib.training_curves(sae_history, run_labels, "SAE", os.path.join(plots, "sae_training.png"))
  io.write_csv(os.path.join(workdir, "metrics", "squeezer_history.csv"),
               _history_rows(squeezer_history, squeezer_labels))
  plots_lib.training_curves(squeezer_history, squeezer_labels, "Squeezer",
                            os.path.join(plots, "squeezer_training.png"))
  plots_lib.latent_density(sae_metrics, run_labels, os.path.join(plots, "latent_density.png"))
  plots_lib.features_per_neuron(squeezer_metrics, squeezer_labels, os.path.join(plots, "features_per_neuron.png"))
  num_seeds = len({label["seed_index"] for label in run_labels})
  no_verdict = verdicts.no_verdict_reason(num_seeds, bool(cfg.smoke))
  text = report_markdown(sae_payload, squeezer_payload, source_description, sae_history is None)
  if no_verdict:
    text = stats.smoke_banner(no_verdict) + "\n\n" + text
  if analysis_payload is not None:
    text += "\n" + replication.analysis_markdown(analysis_payload)
  report = report_json(analysis_payload, num_seeds, bool(cfg.smoke), no_verdict)
  report["training_converged"] = {stage: (None if payload["convergence"] is None
                                          else payload["convergence"]["converged_in_every_run"])
                                  for stage, payload in (("sae", sae_payload), ("squeezer", squeezer_payload))}
  if text_part is not None:
    text = with_banner(text + "\n" + text_part.markdown, text_part.no_verdict)
    report = dict(text_part.report, codec=report)
  io.write_text(os.path.join(workdir, "report.md"), text)
  io.write_json(os.path.join(workdir, "report.json"), report)
  return {"sae": sae_payload, "squeezer": squeezer_payload, "analysis": analysis_payload, "report": report}


def with_banner(text: str, no_verdict: str | None) -> str:
  """`text` with one no-verdict banner at its top (`stats.smoke_banner`), replacing one already there."""
  body = text
  if body.startswith("> **No verdicts"):
    body = body.split("\n", 1)[1].lstrip("\n") if "\n" in body else ""
  return stats.smoke_banner(no_verdict) + "\n\n" + body if no_verdict else text


def report_json(analysis_payload: Mapping[str, Any] | None, num_seeds: int, smoke: bool,
                no_verdict: str | None) -> dict[str, Any]:
  """report.json: whether verdicts are given, each section's verdict, the replication table, the atlas."""
  out: dict[str, Any] = {"smoke": smoke, "num_seeds": num_seeds, "min_seeds": stats.MIN_SEEDS,
                         "no_verdict_reason": no_verdict}
  if analysis_payload is None:
    out["analysis"] = "disabled (config.analysis.enabled = False)"
    return out
  out["hypotheses"] = {name: {key: analysis_payload[name].get(key) for key in
                              ("hypothesis", "effect", "ci", "p_value", "p_adjusted", "verdict", "reason", "test")}
                       for name in verdicts.FAMILY}
  out["themes_found"] = analysis_payload["themes"].get("themes_found")
  out["replication"] = analysis_payload["replication"]
  out["atlas"] = analysis_payload.get("atlas_claim")
  return out


def report_markdown(sae_payload: Mapping[str, Any], squeezer_payload: Mapping[str, Any],
                    source_description: str, sae_loaded: bool) -> str:
  """report.md text built from the metric payloads."""
  lines = ["# Neural codec run", "", f"Source: {source_description}.", ""]
  dead_runs = [row for row in sae_payload["runs"] if row["all_latents_dead"]]
  if dead_runs:
    lines += [f"**Warning: every SAE latent died in {len(dead_runs)} of {len(sae_payload['runs'])} runs** "
              f"({', '.join(plots_lib.run_name(r) for r in dead_runs)}); their other "
              "numbers describe a constant reconstruction.", ""]
  lines += ["## Sparse autoencoder", "",
            ("The SAE was loaded from a saved checkpoint (no training curves)." if sae_loaded else
             "Training curves: `plots/sae_training.png`; latent density: `plots/latent_density.png`."),
            f"Evaluated on {sae_payload['num_eval_tokens']} held-out tokens.", "",
            _markdown_table(sae_payload["runs"]), "", *_convergence_line("SAE", sae_payload.get("convergence"))]
  dead_neuron_runs = [row for row in squeezer_payload["runs"] if row["all_neurons_dead"]]
  lines += ["## Squeezer", "",
            f"{squeezer_payload['num_neurons']} synthetic neurons. Faithfulness ratio = sum squared error "
            "through SAE + Squeezer / sum squared error of the SAE alone (vs the original activations). "
            f"Features per neuron: {squeezer_payload['features_per_neuron_definition']} "
            "(`plots/features_per_neuron.png`).", ""]
  if dead_neuron_runs:
    lines += [f"**Warning: every synthetic neuron died in {len(dead_neuron_runs)} runs.**", ""]
  lines += [_markdown_table(squeezer_payload["runs"]), "",
            *_convergence_line("Squeezer", squeezer_payload.get("convergence"))]
  return "\n".join(lines)
