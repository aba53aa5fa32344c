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

from mpcodec.core import configuration, io, loop, stats
from mpcodec.studies.codec import analysis, minilm_report, pipeline, replication, report as codec_report
from mpcodec.studies.codec.pipeline import CodecConfig

# The statistic is the analysis' validation effect per seed; the report reads its definition from
# metrics/analysis.json where it is given there (this text is the fallback).
_VALIDATION = minilm_report.ClaimSpec(
    "validation", "the Validation Hypothesis: if the synthetic neurons' interference patterns match the "
    "original model's neurons, the SAE atoms are the model's true atoms",
    "per seed: the analysis' validation effect on MiniLM's FFN neurons and the synthetic neurons (> 0: their "
    "Hungarian-matched truth tables agree better than under the strongest null)", "match", expected_sign=+1)


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
                         tax_width_factors=list(cfg.tax_width_factors)), smoke=cfg.smoke)
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


def _or_prevalence_spec() -> minilm_report.ClaimSpec:
  """The codec table's OR-prevalence claim (its margin and reason declared once, in replication.CLAIMS)."""
  claim = next(c for c in replication.CLAIMS if c.key == "or_prevalence")
  return minilm_report.ClaimSpec(claim.key, claim.claim, claim.statistic, claim.shown, claim.claimed, "fraction",
                                 claim.margin)


def analysis_claims(payload: Mapping[str, Any] | None, smoke: bool) -> list[minilm_report.ClaimTest]:
  """The replication tests (before Holm) of the part-2 findings the study reports on MiniLM: the Validation
  Hypothesis on its FFN neurons (the analysis' validation section's per-seed effect, a direction) and OR
  prevalence (per-seed prevalence at the primary (SAE k, Squeezer K), equivalence within the codec table's
  margin)."""
  or_spec = _or_prevalence_spec()
  if payload is None:
    return [minilm_report.ClaimTest(spec, stats.ReplicationResult.untestable(
        spec.key, "the part-2 analyses are disabled", spec.claimed, spec.margin)) for spec in (_VALIDATION, or_spec)]
  validation = payload["validation"]
  gates = payload["or_gates"]
  primary = (gates.get("primary_sae_k"), gates.get("primary_squeezer_k"))
  entry = next((e for e in gates.get("by_squeezer_k", []) if (e.get("sae_k"), e.get("squeezer_k")) == primary),
               None)
  prevalence = ((entry or {}).get("or_prevalence") or {}).get("per_seed") or []
  validation_spec = (dataclasses.replace(_VALIDATION, statistic=f"per seed: {validation['definition']}")
                     if validation.get("definition") else _VALIDATION)
  return [minilm_report.test_claim(validation_spec, validation.get("per_seed") or [], smoke,
                                   why_missing=validation.get("reason") or "no seed could be analysed"),
          minilm_report.test_claim(or_spec, prevalence, smoke,
                                   why_missing=gates.get("reason") or "no OR prevalence at the primary K")]


def analysis_note(payload: Mapping[str, Any] | None) -> str:
  if payload is None:
    return "The part-2 analyses are disabled (`config.codec.analysis.enabled`)."
  return ("The part-2 analyses (truth tables, OR prevalence, validation on MiniLM's FFN neurons, "
          "co-activation, tax, themes, atlas) are in `metrics/analysis.json` and `atlas.json`, the codec's "
          "section above.")
