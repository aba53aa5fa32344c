"""The codec stages of the MiniLM study: the SAE k sweep, the Squeezer(s) and the part-2 analyses, on the
text activation source, through the codec pipeline's programs, run loop, checkpoints and analyses.

`train_codec` takes the same steps as `pipeline.run_codec` (which builds its source from the codec
config's `source` section), on a source built by the study, and returns the trained states beside the
payloads, which the study's later stages read. The stages checkpoint and resume as in the codec run; the
training config that guards the checkpoints holds the text source's identity (model, layer, corpus).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from mpcodec.core import configuration, io, loop
from mpcodec.studies.codec import analysis, pipeline, replication, report as codec_report
from mpcodec.studies.codec.pipeline import CodecConfig

_VALIDATION_CLAIM = ("the Validation Hypothesis: if the synthetic neurons' interference patterns match the "
                     "original model's neurons, the SAE atoms are the model's true atoms")
_VALIDATION_DEFINITION = ("null distance − observed distance of the Hungarian-matched truth tables of "
                          "MiniLM's FFN neurons and the synthetic neurons (> 0: they agree better "
                          "than under a permuted Squeezer)")
_VALIDATION_VERDICTS = {"supported": "replicates", "contradicted": "does not replicate",
                        "inconclusive": "does not replicate", "cannot be tested": "cannot be tested"}


@dataclasses.dataclass
class CodecResult:
  """What the study's later stages read: folded SAE states (runs first), their labels and metrics, the main
  Squeezer stage, the analysis payload (None when disabled) and the codec's report text."""

  sae_states: dict[str, Any]
  run_labels: list[dict]
  sae_metrics: dict[str, np.ndarray]
  squeezer: analysis.SqueezerStage
  squeezer_metrics: dict[str, np.ndarray]
  analysis_payload: dict[str, Any] | None
  report_text: str


def train_codec(cfg: CodecConfig, source: Any, workdir: str, progress: Any = None, overwrite: bool = False,
                source_identity: Mapping[str, Any] | None = None) -> CodecResult:
  """Trains (or resumes, or skips the finished) SAE and Squeezer stages on `source`, then analyses them."""
  pipeline.check_against_width(cfg, source.width)
  root = pipeline.checkpoint_root(workdir)
  cfg = with_text_source(cfg, source_identity or {"description": source.description})
  keys = pipeline.sae_keys(cfg.sae, cfg.seed, cfg.num_seeds)
  run_labels = [{"k": int(k), "seed_index": r % cfg.num_seeds} for r, k in enumerate(np.asarray(keys["k"]))]
  metadata = {"sae": configuration.to_dict(cfg.sae), "full_config": configuration.to_dict(cfg),
              "input_width": source.width, "num_runs": len(run_labels), "num_seeds": cfg.num_seeds,
              "runs": run_labels, "source": source.description, "sae_steps": cfg.sae_loop.steps}
  outcome = loop.run(pipeline.sae_program(cfg.sae, cfg.sae_loop, source), keys, root,
                     seed_labels=pipeline.run_names(keys["k"], cfg.num_seeds),
                     config=pipeline.sae_training_config(cfg), metadata=metadata,
                     progress=progress, overwrite=overwrite)
  sae_final = pipeline.folded_sae_states(outcome.state)
  sae_history = pipeline.history_by_step(outcome.history["sae"])
  pipeline.write_saelens(workdir, sae_final, cfg.sae, run_labels, (source_identity or {}).get("layer", ""),
                         model_name="all-MiniLM-L6-v2", source_description=source.description)
  sae_metrics = pipeline.evaluate_sae(sae_final, cfg.sae, source, cfg.sae_loop, cfg.dense_above)

  stages, skipped = pipeline.train_squeezer_stages(cfg, source, sae_final, cfg.sae, run_labels, cfg.num_seeds,
                                                   root, progress, overwrite)
  main = stages[0]
  live_latents = sae_metrics["firing_counts"] > 0
  num_k = len(main.cfg.k_values)
  sq_metrics = pipeline.evaluate_squeezer(main.states, pipeline.tile_runs(sae_final, num_k), cfg.sae,
                                          main.cfg, source, cfg.squeezer_loop,
                                          np.tile(live_latents, (num_k, 1)))
  analysis_payload = analysis.analyze(
      workdir, cfg.analysis, source=source, sae_states=sae_final, sae_cfg=cfg.sae, sae_labels=run_labels,
      stages=stages, skipped_widths=skipped, sae_metrics=sae_metrics, squeezer_metrics=sq_metrics,
      dead_latents_payload=None, primary_squeezer_k=cfg.squeezer.k,
      inputs_config=dict(pipeline.squeezer_training_config(cfg),
                         tax_width_factors=list(cfg.tax_width_factors)))
  codec_report.write_codec_outputs(
      workdir, cfg=configuration.to_dict(cfg), source_description=source.description, run_labels=run_labels,
      sae_metrics=sae_metrics, sae_history=sae_history, squeezer_metrics=sq_metrics,
      squeezer_history=main.history, num_neurons=main.num_neurons, squeezer_labels=main.labels,
      analysis_payload=analysis_payload)
  with open(os.path.join(workdir, "report.md"), encoding="utf-8") as f:
    report_text = f.read()
  return CodecResult(sae_final, run_labels, sae_metrics, main, sq_metrics, analysis_payload, report_text)


def with_text_source(cfg: CodecConfig, identity: Mapping[str, Any]) -> CodecConfig:
  """`cfg` with the text source's identity written into its (otherwise unused) `source.workdir`.

  The codec pipeline guards every stage's checkpoints with the training config it derives from the codec
  config, source section included; carrying the identity there makes checkpoints of another model,
  layer or corpus another run's, for the SAE and every Squeezer stage alike.
  """
  text = "text source " + json.dumps(io.jsonable(dict(identity)), sort_keys=True)
  return dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, workdir=text))


def analysis_claims(payload: Mapping[str, Any] | None, tolerance: float) -> list[dict[str, Any]]:
  """Replication-table rows of the part-2 findings the issue asks of MiniLM: the Validation Hypothesis on its
  FFN neurons (the analysis' validation section: null distance − observed distance, CI over seeds) and OR
  prevalence (the codec's own replication row)."""
  if payload is None:
    return [{"claim": claim, "claimed": "-", "ours": None, "definition": "the part-2 analyses are disabled",
             "verdict": "cannot be tested"} for claim in (_VALIDATION_CLAIM, "OR-gate prevalence 21.8%")]
  validation = payload["validation"]
  ci = validation.get("ci") or [None, None]
  definition = _VALIDATION_DEFINITION
  if validation.get("reason"):
    definition += f"; {validation['reason']}"
  rows = [{"claim": _VALIDATION_CLAIM, "claimed": "match",
           "ours": {"mean": validation.get("effect"), "low": ci[0], "high": ci[1]},
           "definition": definition,
           "verdict": _VALIDATION_VERDICTS[validation["verdict"]]}]
  gates = replication.replication_rows(payload, tolerance)[0]
  rows.append({"claim": gates["claim"], "claimed": "21.8%", "ours": gates["ours"],
               "definition": gates["reason"], "verdict": gates["verdict"]})
  return rows


def analysis_note(payload: Mapping[str, Any] | None) -> str:
  if payload is None:
    return "The part-2 analyses are disabled (`config.codec.analysis.enabled`)."
  return ("The part-2 analyses (truth tables, OR prevalence, validation on MiniLM's FFN neurons, "
          "co-activation, tax, themes, atlas) are in `metrics/analysis.json` and `atlas.json`, the codec's "
          "section above.")
