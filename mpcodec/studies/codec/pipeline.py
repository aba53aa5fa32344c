"""The codec run as one flow: the source, the SAE stage, the Squeezer stages, their evaluation, the analyses
and the outputs, in order. What each step computes lives in config.py (the typed config and fingerprints),
program.py (the training programs), evaluation.py (window metrics) and analysis.py (the compression
rules); each stage checkpoints through the one run loop and resumes from its latest checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

import numpy as np
from absl import logging

from mpcodec.core import configuration, loop
from mpcodec.core import progress as progress_lib
from mpcodec.data.toy_features import ThemeConfig
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import saelens
from mpcodec.sae.training import run_name
from mpcodec.studies.codec import analysis, dead_latents, text_stages
from mpcodec.studies.codec import atlas as atlas_lib
from mpcodec.studies.codec import report as codec_report
from mpcodec.studies.codec.config import (CodecConfig, LoopConfig, check_against_width, checkpoint_root,
                                          parse_codec_config, sae_training_config, squeezer_config,
                                          squeezer_training_config, tax_widths, training_only)
from mpcodec.studies.codec.evaluation import evaluate_sae, evaluate_squeezer, ground_truth_recovery
from mpcodec.studies.codec.program import (State, folded_sae_states, history_by_step, load_sae, make_program,
                                           run_names, sae_keys, sae_program, shuffled_over_tokens, squeezer_keys,
                                           squeezer_program, tile_runs, train_sae, train_squeezer,
                                           untrained_squeezer_states)
from mpcodec.studies.codec.result import CodecResult
from mpcodec.studies.codec.sources import (ActivationSource, GroundTruthConfig, GroundTruthSource, check_width,
                                           make_source)


# The codec's entry points for notebooks and tests, importable from here.
__all__ = ["CodecConfig", "CodecResult", "LoopConfig", "parse_codec_config", "squeezer_config", "run_codec",
           "train_codec", "training_steps", "make_program", "train_sae", "train_squeezer", "evaluate_sae",
           "evaluate_squeezer", "ground_truth_recovery", "folded_sae_states", "load_sae", "make_source",
           "shuffled_over_tokens", "squeezer_keys", "squeezer_program", "untrained_squeezer_states",
           "train_dead_latent_setting"]


def write_saelens(workdir: str, sae_states: State, sae_cfg: sae.SAEConfig, run_labels: list[dict],
                  hook_name: str, model_name: str = "", source_description: str = "") -> dict[str, str]:
  """Every SAE run as a SAELens folder <workdir>/saelens/k<k>_seed<i>/ (cfg.json, sae_weights.safetensors);
  returns {name: folder}. Without the safetensors package (the [lm] extra) it writes nothing and warns."""
  names = [run_name(label["k"], label["seed_index"]) for label in run_labels]
  metadata = [{"seed_index": label["seed_index"], "source": source_description} for label in run_labels]
  try:
    return saelens.save_runs(os.path.join(workdir, "saelens"), sae_states, sae_cfg, names, hook_name, model_name,
                             metadata)
  except ImportError as e:
    logging.warning("%s; the SAEs are not written in SAELens' format", e)
    return {}



def train_squeezer_stages(cfg: CodecConfig, source: ActivationSource, sae_states: State, sae_cfg: sae.SAEConfig,
                          run_labels: list[dict], num_seeds: int, root: str, progress: Any, overwrite: bool
                          ) -> tuple[list, dict[int, str]]:
  """The main Squeezer (the configured width, first) and one per tax-sweep width: (trained stages, {width:
  why a stage was skipped}). The main stage carries its nulls: `untrained_states`
  (`analysis.untrained_squeezers` random inits per run) and, with `shuffled_latent_squeezer`, `shuffled`
  (the shuffled-latent Squeezer, trained after it)."""
  main_width = cfg.squeezer.resolved_num_neurons(source.width)
  stages, skipped = [], {}
  for num_neurons in [main_width] + tax_widths(cfg, source.width):
    stage = train_squeezer_stage(cfg, source, sae_states, sae_cfg, run_labels, num_seeds, num_neurons,
                                 num_neurons == main_width and not stages, root, progress, overwrite)
    if isinstance(stage, str):
      skipped[num_neurons] = stage
    else:
      stages.append(stage)
      if len(stages) == 1:
        stage.untrained_states = untrained_squeezer_states(stage.cfg, sae_states, sae_cfg, cfg.squeezer_loop, source,
                                                           cfg.seed, num_seeds, cfg.analysis.untrained_squeezers)
        if cfg.shuffled_latent_squeezer:
          stage.shuffled = train_squeezer_stage(cfg, source, sae_states, sae_cfg, run_labels, num_seeds,
                                                num_neurons, True, root, progress, overwrite, shuffle_latents=True)
  return stages, skipped


def train_squeezer_stage(cfg: CodecConfig, source: ActivationSource, sae_states: State, sae_cfg: sae.SAEConfig,
                         sae_labels: list[dict], num_seeds: int, num_neurons: int, main: bool, root: str,
                         progress: Any = None, overwrite: bool = False, shuffle_latents: bool = False
                         ) -> analysis.SqueezerStage | str:
  """Trains (or resumes, or loads) one Squeezer stage of `num_neurons` neurons over every SAE run.

  The main stage is "squeezer"; a tax-sweep stage is "squeezer_m<M>" and trains the grid's K values
  that fit in M; `shuffle_latents` (with `main`) trains the main stage's shuffled-latent null,
  "squeezer_shuffled". Returns the stage, or the reason it was not trained (no K fits).
  """
  full = squeezer_config(cfg, source.width, num_neurons)
  k_values = tuple(k for k in full.k_values if k <= num_neurons)
  if not k_values:
    return f"no Squeezer K of {list(full.k_values)} fits in M={num_neurons} neurons"
  squeezer_cfg = dataclasses.replace(full, k=k_values[0], k_grid=k_values if len(k_values) > 1 else ())
  sae_runs = int(sae_states["k"].shape[0])
  labels = [dict(sae_labels[q % sae_runs], squeezer_k=int(k)) for q, k in
            enumerate(np.repeat(np.asarray(k_values), sae_runs))]
  name = ("squeezer_shuffled" if shuffle_latents else "squeezer") if main else f"squeezer_m{num_neurons}"
  program = squeezer_program(squeezer_cfg, sae_states, sae_cfg, cfg.squeezer_loop, source, name=name,
                             shuffle_latents=shuffle_latents)
  config = squeezer_training_config(cfg, None if main else num_neurons, source.identity)
  outcome = loop.run(program, squeezer_keys(cfg.seed, num_seeds, len(labels), shuffle=shuffle_latents), root,
                     seed_labels=[f"k={r['k']} K={r['squeezer_k']} seed {r['seed_index']}" for r in labels],
                     config=dict(config, shuffled_latents=True) if shuffle_latents else config,
                     metadata={"squeezer": configuration.to_dict(squeezer_cfg), "num_runs": len(labels),
                               "runs": labels, "source": source.description},
                     progress=progress, overwrite=overwrite, outputs=derived_outputs(os.path.dirname(root)))
  return analysis.SqueezerStage(
      name=name, num_neurons=num_neurons, cfg=squeezer_cfg, states=outcome.state["squeezer"],
      sae_run=np.arange(len(labels)) % sae_runs, labels=labels,
      history=history_by_step(outcome.history[name]))


def train_dead_latent_setting(cfg: CodecConfig, root: str, progress: Any = None, overwrite: bool = False
                              ) -> dict[str, Any]:
  """Trains the earlier study's dead-latent setting (one SAE program per AuxK value) and summarizes it."""
  setting = cfg.dead_latents
  source = GroundTruthSource(GroundTruthConfig(
      num_atoms=setting.num_concepts, dim=setting.dim, k_true=setting.concepts_per_token,
      noise_std=setting.noise_std, seed=cfg.source.ground_truth.seed, themes=ThemeConfig()))
  loop_cfg = dataclasses.replace(cfg.sae_loop, steps=setting.steps, batch_size=setting.batch_size,
                                 eval_batches=setting.eval_batches)
  counts, num_tokens = {}, 0
  for aux_k in setting.aux_k_values:
    sae_cfg = dataclasses.replace(cfg.sae, num_latents=setting.num_latents, k=setting.k, k_grid=(), aux_k=aux_k)
    keys = sae_keys(sae_cfg, cfg.seed, setting.num_seeds)
    name = f"dead_latents_aux{aux_k}"
    outcome = loop.run(sae_program(sae_cfg, loop_cfg, source, name=name), keys, root,
                       seed_labels=[f"aux_k={aux_k} seed {s}" for s in range(setting.num_seeds)],
                       config={"dead_latents": configuration.to_dict(setting), "sae": configuration.to_dict(sae_cfg),
                               "sae_loop": training_only(configuration.to_dict(loop_cfg)), "seed": cfg.seed},
                       metadata={"source": source.description}, progress=progress, overwrite=overwrite,
                       outputs=derived_outputs(os.path.dirname(root)))
    found = evaluate_sae(folded_sae_states(outcome.state), sae_cfg, source, loop_cfg, cfg.dense_above)
    counts[aux_k] = found["firing_counts"]
    num_tokens = int(found["num_tokens"])
  return dict(dead_latents.summarize(setting, counts, num_tokens, smoke=cfg.smoke), source=source.description)


# What a run writes beside its checkpoints: removed with them when `overwrite` discards another config's run
# (the activation cache is keyed by what it holds and is kept). The SAELens export is the SAE stage's alone.
OUTPUTS = ("report.md", "report.json", "metrics", "plots", "atlas.json", atlas_lib.INPUTS_FILE)
SAE_OUTPUTS = OUTPUTS + ("saelens",)


def derived_outputs(workdir: str, names: tuple[str, ...] = OUTPUTS) -> list[str]:
  """The paths of a stage's derived outputs under `workdir` (for `loop.run(outputs=...)`)."""
  return [os.path.join(workdir, name) for name in names]


def training_steps(cfg: CodecConfig, width: int) -> int:
  """Steps the codec's stages train, for the progress bar: the SAE (unless loaded), the main Squeezer, its
  shuffled-latent null (`shuffled_latent_squeezer`) and each tax-sweep width in which a Squeezer K fits."""
  tax = [m for m in tax_widths(cfg, width) if any(k <= m for k in squeezer_config(cfg, width, m).k_values)]
  squeezers = 1 + int(cfg.shuffled_latent_squeezer) + len(tax)
  return (0 if cfg.sae_checkpoint else cfg.sae_loop.steps) + squeezers * cfg.squeezer_loop.steps


def run_codec(cfg: CodecConfig, workdir: str, progress: Any = None, overwrite: bool = False) -> CodecResult:
  """The codec run in `workdir`, in order: the source; the SAE (trained, resumed or loaded); the Squeezers;
  their evaluation; the analyses; the downstream text stages (`cfg.stages`); metrics, plots and the report.

  Each stage checkpoints as it trains and resumes from its latest checkpoint; a finished stage is not
  trained again, and a finished analysis of the same inputs is read back. `overwrite` removes checkpoints
  of another config (and the outputs derived from them) instead of refusing them. Without `progress`, one
  bar counts every training step (opened once the source's width is known).
  """
  source = make_source(cfg.source, workdir)
  check_against_width(cfg, source.width)
  with contextlib.ExitStack() as stack:
    if progress is None:
      progress = stack.enter_context(progress_lib.bar(training_steps(cfg, source.width),
                                                      "codec (SAE, then Squeezers)"))
    result = train_codec(cfg, source, workdir, progress, overwrite)
  result.analysis = analysis.analyze(workdir, result)
  result.text = text_stages.run(workdir, result) if cfg.stages else None
  result.outputs = codec_report.write_codec_outputs(workdir, result, result.text)
  logging.info("outputs in %s", workdir)
  return result


def train_codec(cfg: CodecConfig, source: ActivationSource, workdir: str, progress: Any = None,
                overwrite: bool = False) -> CodecResult:
  """The codec's training stages and their evaluation on `source` (see `run_codec`)."""
  root = checkpoint_root(workdir)
  sae_cfg, sae_history = cfg.sae, None
  if cfg.sae_checkpoint:
    sae_final, sae_cfg, sae_meta = load_sae(cfg.sae_checkpoint)
    check_width(source.width, int(sae_meta["input_width"]), f"the SAE saved in {cfg.sae_checkpoint}")
    num_seeds = int(sae_meta["num_seeds"])
  else:
    num_seeds = cfg.num_seeds
    keys = sae_keys(sae_cfg, cfg.seed, num_seeds)
    metadata = {"sae": configuration.to_dict(sae_cfg), "full_config": configuration.to_dict(cfg),
                "input_width": source.width, "num_runs": int(keys["k"].shape[0]), "num_seeds": num_seeds,
                "runs": [{"k": int(k), "seed_index": r % num_seeds} for r, k in enumerate(np.asarray(keys["k"]))],
                "source": source.description, "source_identity": source.identity, "sae_steps": cfg.sae_loop.steps}
    outcome = loop.run(sae_program(sae_cfg, cfg.sae_loop, source), keys, root,
                       seed_labels=run_names(keys["k"], num_seeds),
                       config=sae_training_config(cfg, source.identity), metadata=metadata, progress=progress,
                       overwrite=overwrite, outputs=derived_outputs(workdir, SAE_OUTPUTS))
    sae_final = folded_sae_states(outcome.state)
    sae_history = history_by_step(outcome.history["sae"])
  run_labels = [{"k": int(k), "seed_index": r % num_seeds} for r, k in enumerate(np.asarray(sae_final["k"]))]
  write_saelens(workdir, sae_final, sae_cfg, run_labels, hook_name=source.hook_name, model_name=source.model_name,
                source_description=source.description)

  sae_metrics = evaluate_sae(sae_final, sae_cfg, source, cfg.sae_loop, cfg.dense_above)
  if isinstance(source, GroundTruthSource):
    sae_metrics.update(ground_truth_recovery(sae_final, sae_cfg, source, cfg.sae_loop.batch_size))

  stages, skipped = train_squeezer_stages(cfg, source, sae_final, sae_cfg, run_labels, num_seeds, root,
                                          progress, overwrite)
  main = stages[0]
  live_latents = sae_metrics["firing_counts"] > 0
  sq_metrics = evaluate_squeezer(main.states, tile_runs(sae_final, len(main.cfg.k_values)), sae_cfg, main.cfg,
                                 source, cfg.squeezer_loop, np.tile(live_latents, (len(main.cfg.k_values), 1)))
  dead_payload = (train_dead_latent_setting(cfg, root, progress, overwrite) if cfg.dead_latents.enabled
                  else None)
  inputs_config = dict(squeezer_training_config(cfg, identity=source.identity),
                       tax_width_factors=list(cfg.tax_width_factors),
                       dead_latents=configuration.to_dict(cfg.dead_latents))
  return CodecResult(cfg=cfg, source=source, sae_states=sae_final, sae_cfg=sae_cfg, run_labels=run_labels,
                     num_seeds=num_seeds, sae_metrics=sae_metrics, sae_history=sae_history, stages=stages,
                     skipped_widths=skipped, squeezer_metrics=sq_metrics, dead_latents=dead_payload,
                     inputs_config=inputs_config)
