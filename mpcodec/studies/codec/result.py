"""What a codec run hands to the stages after it: `CodecResult`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class CodecResult:
  """The trained codec of one run and what was measured on it, read by the analyses, the downstream text
  stages and the report.

  Attributes:
    cfg: the run's CodecConfig.
    source: the activation source (its `description`, `identity`, batches).
    sae_states / sae_cfg: the folded SAE states of every (k, seed) run, stacked k-major, and their config.
    run_labels: {"k", "seed_index"} of each SAE run; num_seeds: the seeds per k.
    sae_metrics / sae_history: the evaluation window's metrics per run; the training history (None when
      the SAE was loaded from `sae_checkpoint`).
    stages: the trained Squeezer stages, the main one first (`analysis.SqueezerStage`); skipped_widths:
      {width: why a tax-sweep width trained nothing}.
    squeezer_metrics: the main Squeezer's evaluation window metrics.
    dead_latents: the dead-latent setting's summary (None when not enabled).
    inputs_config: what decides the Squeezers' trained states (the analyses' fingerprint).
    analysis: metrics/analysis.json's payload (None until analysed, or when disabled).
    text: the downstream text stages' `text_stages.TextReport` (None when `stages` is empty).
    outputs: the JSON payloads the report wrote (sae, squeezer, analysis, report).
  """

  cfg: Any
  source: Any
  sae_states: dict[str, Any]
  sae_cfg: Any
  run_labels: list[dict]
  num_seeds: int
  sae_metrics: dict[str, np.ndarray]
  sae_history: dict[str, np.ndarray] | None
  stages: list[Any]
  skipped_widths: dict[int, str]
  squeezer_metrics: dict[str, np.ndarray]
  dead_latents: dict[str, Any] | None
  inputs_config: dict[str, Any]
  analysis: dict[str, Any] | None = None
  text: Any = None
  outputs: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def squeezer(self) -> Any:
    """The main Squeezer stage (the configured width)."""
    return self.stages[0]
