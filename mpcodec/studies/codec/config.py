"""The codec's typed config: the source, the SAE and the Squeezer, their loops, the analyses after them,
and which keys decide a stage's trained states (its checkpoint fingerprint)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

from absl import logging

from mpcodec.core import configuration, memory
from mpcodec.core import probe as probe_lib
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import squeezer
from mpcodec.studies.codec import analysis, dead_latents, detection_study, steering_study, text_models
from mpcodec.studies.codec.sources import SourceConfig, changed_keys

@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Length and batching of one training loop."""

  steps: int = 2000
  batch_size: int = 512
  chunk_steps: int = 250
  checkpoint_every: int = 500   # steps between mid-run checkpoints (0: only at the end)
  init_batches: int = 4
  eval_batches: int = 8

  def checks(self):
    yield "steps", self.steps >= 1, f"must be >= 1, got {self.steps}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "chunk_steps", self.chunk_steps >= 1, f"must be >= 1, got {self.chunk_steps}"
    yield "checkpoint_every", self.checkpoint_every >= 0, f"must be >= 0, got {self.checkpoint_every}"
    yield "init_batches", self.init_batches >= 1, f"must be >= 1, got {self.init_batches}"
    yield "eval_batches", self.eval_batches >= 1, f"must be >= 1, got {self.eval_batches}"



@dataclasses.dataclass(frozen=True)
class TextDataConfig:
  """The documents' roles.

  Attributes:
    train_fraction: share of each AG News class the probes, the target theme and DiffMean are fit on.
    target_class: the class steered towards and detected (0 World, 1 Sports, 2 Business, 3 Sci/Tech).
    shakespeare_lines: neutral lines (evenly spaced through the corpus) for steering.
    splice_items: held-out documents run through the spliced model.
    chosen_k: the SAE k whose seeds feed themes, steering and detection (0: the middle of the k grid).
    encode_batch_size: texts per forward pass of the sentence encoder.
    probe: the linear probe on the final sentence embedding (4 classes).
  """

  train_fraction: float = 0.5
  target_class: int = 0
  shakespeare_lines: int = 512
  splice_items: int = 512
  chosen_k: int = 0
  encode_batch_size: int = 64
  probe: probe_lib.ProbeConfig = probe_lib.ProbeConfig()

  def checks(self):
    yield "train_fraction", 0.0 < self.train_fraction < 1.0, f"must lie in (0, 1), got {self.train_fraction}"
    yield "target_class", 0 <= self.target_class < 4, (
        f"must be an AG News class 0..3, got {self.target_class}")
    yield "shakespeare_lines", self.shakespeare_lines >= 1, f"must be >= 1, got {self.shakespeare_lines}"
    yield "splice_items", self.splice_items >= 1, f"must be >= 1, got {self.splice_items}"
    yield "encode_batch_size", self.encode_batch_size >= 1, f"must be >= 1, got {self.encode_batch_size}"


@dataclasses.dataclass(frozen=True)
class TextThemeConfig:
  """Themes on real text: clustering of the SAE's decoder (or encoder) rows (metrics.themes).

  k_range: numbers of themes tried (silhouette criterion); top_contexts: top-activating tokens kept per
  theme; context_tokens: tokens shown on each side of one.
  """

  method: Literal["spectral", "kmeans", "hdbscan"] = "spectral"
  vectors: Literal["decoder", "encoder"] = "decoder"
  k_range: tuple[int, ...] = (16, 24, 32, 48, 64)
  top_contexts: int = 16
  context_tokens: int = 6

  def checks(self):
    yield "k_range", len(self.k_range) >= 1 and all(k >= 2 for k in self.k_range), (
        f"must hold numbers of themes >= 2, got {self.k_range}")
    yield "top_contexts", self.top_contexts >= 1, f"must be >= 1, got {self.top_contexts}"
    yield "context_tokens", self.context_tokens >= 0, f"must be >= 0, got {self.context_tokens}"


@dataclasses.dataclass(frozen=True)
class CodecConfig:
  """Every knob of a codec run: source, SAE, Squeezer, their loops, and the analyses after them.

  Attributes:
    seed: base seed; seed i's keys are `seeds.seed_keys(seed, i, purpose)` ("sae_init", "squeezer_init",
      "squeezer_shuffle", "squeezer_untrained"): they depend only on (seed, i, purpose), never on k, K or
      the number of seeds.
    num_seeds: seeds trained side by side (times the number of k values in sae.k_grid).
    dense_above: a latent firing on more than this fraction of tokens counts as dense.
    sae_checkpoint: directory of a saved SAE store (workdir/checkpoints/sae of an earlier run) to reuse
      instead of training one; its input width must match the source.
    squeezer_k_grid: Squeezer K values trained side by side in one program (empty: `squeezer.k` alone);
      every analysis is reported per K.
    tax_width_factors: widths M = factor × layer width of the extra Squeezers trained for the
      superposition-tax sweep (one program each, the K values of the grid that fit); the main
      Squeezer's width is always in the sweep.
    shuffled_latent_squeezer: also train the shuffled-latent null, the main Squeezer stage again on SAE
      latents whose columns are permuted over tokens independently (stage "squeezer_shuffled", the same
      init keys); the analyses test every truth-table and co-activation finding against it.
    smoke: a smoke run (the `:smoke` preset): its report says so at the top and gives no verdict.
    analysis: the compression-rule analyses after the Squeezer (`analysis.AnalysisConfig`).
    dead_latents: the earlier study's dead-latent setting, trained when `dead_latents.enabled` (a
      ground-truth experiment of its own, so refused with a text source).
    stages: the downstream stages on text that read the codec's result, in `text_models.ALL_STAGES`
      (reconstruction, themes_text, steering, detection; splice and generation on a causal LM); only a
      text source whose model supports them runs them; steering, detection and generation need themes_text
      (they read its themes); the sections (data,
      themes, steering, detection) must keep their defaults when no stage reads them.
    data, themes, steering, detection: the documents' roles and the downstream stages' knobs.
  """

  seed: int = 0
  num_seeds: int = 2
  dense_above: float = 0.1
  sae_checkpoint: str = ""
  squeezer_k_grid: tuple[int, ...] = ()
  tax_width_factors: tuple[float, ...] = (0.25, 0.5, 2.0)
  shuffled_latent_squeezer: bool = True
  smoke: bool = False
  source: SourceConfig = SourceConfig()
  sae: sae.SAEConfig = sae.SAEConfig()
  sae_loop: LoopConfig = LoopConfig()
  squeezer: squeezer.SqueezerConfig = squeezer.SqueezerConfig()
  squeezer_loop: LoopConfig = LoopConfig(steps=1000)
  analysis: analysis.AnalysisConfig = analysis.AnalysisConfig()
  dead_latents: dead_latents.DeadLatentsConfig = dead_latents.DeadLatentsConfig()
  stages: tuple[str, ...] = ()
  data: TextDataConfig = TextDataConfig()
  themes: TextThemeConfig = TextThemeConfig()
  steering: steering_study.SteeringConfig = steering_study.SteeringConfig()
  detection: detection_study.DetectionConfig = detection_study.DetectionConfig()

  def checks(self):
    yield from _source_checks(self)
    yield "num_seeds", self.num_seeds >= 1, f"must be >= 1, got {self.num_seeds}"
    yield "dense_above", 0.0 < self.dense_above <= 1.0, f"must lie in (0, 1], got {self.dense_above}"
    for i, k in enumerate(self.squeezer_k_grid):
      yield f"squeezer_k_grid[{i}]", k >= 1, f"must be >= 1, got {k}"
    yield "squeezer_k_grid", len(set(self.squeezer_k_grid)) == len(self.squeezer_k_grid), (
        f"repeats a value: {self.squeezer_k_grid}")
    for i, factor in enumerate(self.tax_width_factors):
      yield f"tax_width_factors[{i}]", factor > 0, f"must be > 0, got {factor}"


def parse_codec_config(cfg: Any) -> CodecConfig:
  """Validates a ConfigDict into a CodecConfig; raises ConfigError naming the key."""
  return configuration.parse(CodecConfig, cfg)


def squeezer_config(cfg: CodecConfig, width: int, num_neurons: int | None = None) -> sae.SAEConfig:
  """The Squeezer as an SAEConfig of `num_neurons` neurons (default: its M), K grid included."""
  base = cfg.squeezer.as_sae_config(width)
  if num_neurons is not None:
    base = dataclasses.replace(base, num_latents=num_neurons, aux_k=min(base.aux_k, num_neurons))
  return dataclasses.replace(base, k_grid=tuple(cfg.squeezer_k_grid))


def check_against_width(cfg: CodecConfig, width: int) -> None:
  """Rules that need the source width (the Squeezer's default M); raises ConfigError naming the key."""
  configuration.check_values(cfg.squeezer.as_sae_config(width), "config.squeezer")
  num_neurons = cfg.squeezer.resolved_num_neurons(width)
  for i, k in enumerate(cfg.squeezer_k_grid):
    if k > num_neurons:
      raise configuration.ConfigError(
          f"config.squeezer_k_grid[{i}]: K={k} must be <= the Squeezer's num_neurons={num_neurons}")
  wide = [m for m in [num_neurons] + tax_widths(cfg, width) if m >= cfg.sae.num_latents]
  if wide:
    # A warning, not a refusal: such a Squeezer can give every SAE latent a neuron of its own, so it
    # compresses nothing and its rules say nothing about superposition; the run is still valid (a tax
    # sweep may reach past the SAE to show where the tax vanishes).
    logging.warning("config.squeezer.num_neurons / tax_width_factors: Squeezer width(s) M=%s >= the SAE's "
                    "%d latents (config.sae.num_latents): such a Squeezer compresses nothing", wide,
                    cfg.sae.num_latents)
  # Every run of a stage is vmapped into one step: its batch x (inputs + latents) per run, before compiling.
  sae_runs = cfg.num_seeds * max(1, len(cfg.sae.k_grid))
  for key, loop_cfg, runs, units in (
      ("sae_loop.batch_size", cfg.sae_loop, sae_runs, width + cfg.sae.num_latents),
      ("squeezer_loop.batch_size", cfg.squeezer_loop, sae_runs * max(1, len(cfg.squeezer_k_grid)),
       cfg.sae.num_latents + num_neurons)):
    memory.check_fits(key, memory.estimate_bytes(runs, loop_cfg.batch_size, units),
                      f"a step of {runs} runs on {loop_cfg.batch_size} rows x {units} units")


def _stage_checks(cfg: CodecConfig):
  """The downstream text stages: known, supported by the source and its model, and their sections unused
  (at their defaults) where no stage reads them."""
  for i, stage in enumerate(cfg.stages):
    yield f"stages[{i}]", stage in text_models.ALL_STAGES, (
        f"unknown stage {stage!r}; the stages are {list(text_models.ALL_STAGES)}")
  yield "stages", len(set(cfg.stages)) == len(cfg.stages), f"repeats a stage: {list(cfg.stages)}"
  if cfg.stages and cfg.source.kind != "text":
    yield "stages", False, (f"{list(cfg.stages)} run on a text source (a model to run, labelled documents); "
                            f"source.kind='{cfg.source.kind}' has none: set stages=()")
  if cfg.stages and cfg.source.kind == "text":
    supported = text_models.adapter_class(cfg.source.text.model).stages
    missing = [stage for stage in cfg.stages if stage not in supported]
    yield "stages", not missing, f"{missing} not supported by text model {cfg.source.text.model!r}"
    for stage in ("steering", "detection", "generation"):
      yield "stages", stage not in cfg.stages or "themes_text" in cfg.stages, (
          f"{stage!r} reads the themes of 'themes_text': add it, got {list(cfg.stages)}")
    yield "source.text.corpus", cfg.source.text.corpus == "ag_news", (
        f"must be 'ag_news' (the text stages need its class labels), got {cfg.source.text.corpus!r}")
  for section, readers in (("data", text_models.ALL_STAGES), ("themes", ("themes_text",)),
                           ("steering", ("steering", "reconstruction", "generation", "splice")),
                           ("detection", ("detection",))):
    if not set(readers) & set(cfg.stages):
      for leaf in changed_keys(getattr(cfg, section), getattr(CodecConfig(), section), section):
        yield leaf, False, (f"no stage reads it (config.stages={list(cfg.stages)}): remove it or add "
                            f"{list(readers)[0]!r} to config.stages")
  k_values = cfg.sae.k_values
  yield "data.chosen_k", cfg.data.chosen_k == 0 or cfg.data.chosen_k in k_values, (
      f"{cfg.data.chosen_k} is not one of the SAE's k values {list(k_values)}")


def _source_checks(cfg: CodecConfig):
  """Keys the chosen source does not read are refused (not ignored)."""
  if cfg.source.kind == "text":
    yield "sae_checkpoint", not cfg.sae_checkpoint, (
        "not read with source.kind='text': the text stages read the SAE runs trained on this source's "
        "activation cache; remove it")
    yield "dead_latents.enabled", not cfg.dead_latents.enabled, (
        "the dead-latent setting is a ground-truth experiment of its own (configs/codec.py:dead_latents), not "
        "run with source.kind='text'; remove it")
  yield from _stage_checks(cfg)



def tax_widths(cfg: CodecConfig, width: int) -> list[int]:
  """The extra Squeezer widths of the tax sweep: round(factor × width), without the main one, ascending."""
  main = cfg.squeezer.resolved_num_neurons(width)
  return sorted({max(1, round(f * width)) for f in cfg.tax_width_factors} - {main})


def checkpoint_root(workdir: str) -> str:
  """The stages' checkpoints: <workdir>/checkpoints/sae/<step> and <workdir>/checkpoints/squeezer/<step>."""
  return os.path.join(workdir, "checkpoints")


# Knobs that change how a stage executes or what is computed after it, not its trained states.
_NOT_TRAINING = ("dense_above", "chunk_steps", "checkpoint_every", "eval_batches", "analysis", "smoke",
                 "shuffled_latent_squeezer")


def training_only(config: Any) -> Any:
  if isinstance(config, dict):
    return {k: training_only(v) for k, v in config.items() if k not in _NOT_TRAINING}
  return config


# Where the text and array sources' files are and how fast they are read: their contents enter through the
# source's identity instead, so a moved model, data folder or cache keeps its checkpoints.
_SOURCE_LOCATIONS = {"text": ("model_dir", "data_dir", "cache_dir", "batch_size"), "array": ("path", "tokens")}
# The stages after the codec: they read its result and train nothing it depends on.
_DOWNSTREAM = ("tax_width_factors", "dead_latents", "stages", "data", "themes", "steering", "detection")


def _with_source(config: dict, identity: dict | None) -> dict:
  source = dict(config["source"])
  for section, keys in _SOURCE_LOCATIONS.items():
    source[section] = {k: v for k, v in source[section].items() if k not in keys}
  config = dict(config, source=source)
  return config if identity is None else dict(config, source_identity=identity)


def sae_training_config(cfg: CodecConfig, identity: dict | None = None) -> dict:
  """What decides the SAE stage's trained states (checkpoints of another value are another run's):
  its knobs, the source's config and the source's `identity` (what its files hold)."""
  config = training_only(configuration.to_dict(cfg))
  return _with_source({k: config[k] for k in ("seed", "num_seeds", "source", "sae", "sae_loop")}, identity)


def squeezer_training_config(cfg: CodecConfig, num_neurons: int | None = None, identity: dict | None = None
                             ) -> dict:
  """What decides a Squeezer stage's trained states: its own knobs and everything the SAE depends on
  (a tax-sweep stage adds its width; the other stages' knobs are not part of it)."""
  config = training_only(configuration.to_dict(cfg))
  config = _with_source({k: v for k, v in config.items() if k not in _DOWNSTREAM}, identity)
  return config if num_neurons is None else dict(config, tax_num_neurons=num_neurons)


