"""Dead latents in the earlier study's setting: a wide SAE on ground truth with few concepts, AuxK on/off.

The earlier study reported "3,758 dead features" of 4,096 SAE latents on 768-wide synthetic data with 100
concepts. `DeadLatentsConfig` describes that setting; the pipeline trains it (one program per AuxK
value, seeds vmapped) when `config.dead_latents.enabled`, and `summarize` turns each run's firing
counts on held-out tokens into dead and ultra-rare fractions with a Student t interval over seeds, and
the effect of AuxK (dead fraction without it minus with it, paired by seed) with a verdict of the
statistics layer (`stats.test_hypothesis`; "cannot be tested" for a smoke run or below 5 seeds).

  dead        = the latent fired on none of the held-out tokens,
  ultra-rare  = it fired, on fewer than `ultra_rare_below` of them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mpcodec.core import stats


@dataclasses.dataclass(frozen=True)
class DeadLatentsConfig:
  """The earlier setting: `num_latents` latents, top-`k`, on `num_concepts` atoms in `dim` dims.

  Attributes:
    enabled: train the setting within the codec run (expensive at the full size; off by default).
    num_concepts, dim, concepts_per_token, noise_std: the ground-truth source (its seed is the codec
      source's); the earlier study states 100 concepts and 768 dims, not how many are active per token.
    num_latents, k: the SAE (the earlier study: 4,096 latents, k = 32).
    aux_k_values: AuxK settings compared (0 = AuxK off); every other SAE knob is the codec run's.
    num_seeds, steps, batch_size, eval_batches: the training and the held-out window.
    ultra_rare_below: a live latent firing on fewer than this fraction of held-out tokens is ultra-rare
      (also used for the codec run's own SAE).
  """

  enabled: bool = False
  num_concepts: int = 100
  dim: int = 768
  concepts_per_token: int = 5
  noise_std: float = 0.01
  num_latents: int = 4096
  k: int = 32
  aux_k_values: tuple[int, ...] = (0, 256)
  num_seeds: int = 5
  steps: int = 1000
  batch_size: int = 512
  eval_batches: int = 32
  ultra_rare_below: float = 1e-3

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    yield "num_concepts", self.num_concepts >= 1, f"must be >= 1, got {self.num_concepts}"
    yield "dim", self.dim >= 1, f"must be >= 1, got {self.dim}"
    yield "concepts_per_token", 1 <= self.concepts_per_token <= self.num_concepts, (
        f"must lie in [1, num_concepts={self.num_concepts}], got {self.concepts_per_token}")
    yield "noise_std", self.noise_std >= 0, f"must be >= 0, got {self.noise_std}"
    yield "k", 1 <= self.k <= self.num_latents, f"k={self.k} must lie in [1, num_latents={self.num_latents}]"
    yield "aux_k_values", len(self.aux_k_values) >= 1, "needs at least one AuxK setting (0 = off)"
    for i, aux_k in enumerate(self.aux_k_values):
      yield f"aux_k_values[{i}]", 0 <= aux_k <= self.num_latents, (
          f"aux_k={aux_k} must lie in [0, num_latents={self.num_latents}]")
    yield "num_seeds", self.num_seeds >= 1, f"must be >= 1, got {self.num_seeds}"
    yield "steps", self.steps >= 1, f"must be >= 1, got {self.steps}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "eval_batches", self.eval_batches >= 1, f"must be >= 1, got {self.eval_batches}"
    yield "ultra_rare_below", 0.0 < self.ultra_rare_below < 1.0, (
        f"must lie in (0, 1), got {self.ultra_rare_below}")


def _finite(value: float) -> float | None:
  return float(value) if math.isfinite(value) else None


def ci_summary(values_S: Sequence[float]) -> dict[str, Any]:
  """{"mean", "ci_low", "ci_high", "per_seed"}: the 95% Student t interval over seeds (`stats.t_interval`;
  bounds null with one seed)."""
  values = np.asarray(values_S, np.float64)
  interval = stats.t_interval(values)
  return {"mean": _finite(interval.estimate), "ci_low": _finite(interval.low), "ci_high": _finite(interval.high),
          "per_seed": [float(v) for v in values]}


def fractions(counts_SxN: np.ndarray, num_tokens: int, ultra_rare_below: float) -> dict[str, np.ndarray]:
  """Per-seed dead and ultra-rare fractions (and counts) from (seeds, latents) firing counts."""
  counts = np.asarray(counts_SxN)
  dead = counts == 0
  ultra_rare = (counts > 0) & (counts < ultra_rare_below * num_tokens)
  return {"dead_fraction": dead.mean(-1), "dead_count": dead.sum(-1),
          "ultra_rare_fraction": ultra_rare.mean(-1), "ultra_rare_count": ultra_rare.sum(-1)}


def summarize(cfg: DeadLatentsConfig, counts_by_aux_k: Mapping[int, np.ndarray], num_tokens: int,
              smoke: bool = False) -> dict[str, Any]:
  """The `dead_latents` payload of the earlier setting: per AuxK value, fractions with CIs; AuxK's effect.

  counts_by_aux_k: aux_k -> (seeds, num_latents) firing counts on `num_tokens` held-out tokens.
  Effect = dead fraction with AuxK off minus with the largest AuxK (paired by seed); verdict: does
  AuxK reduce dead latents (expected sign +1; `stats.test_hypothesis`, no verdict for a `smoke` run)?
  """
  settings = []
  per_seed = {}
  for aux_k in sorted(counts_by_aux_k):
    found = fractions(counts_by_aux_k[aux_k], num_tokens, cfg.ultra_rare_below)
    per_seed[aux_k] = found
    settings.append({
        "aux_k": int(aux_k), "auxk": "off" if aux_k == 0 else "on",
        "dead_fraction": ci_summary(found["dead_fraction"]),
        "dead_count": ci_summary(found["dead_count"]),
        "ultra_rare_fraction": ci_summary(found["ultra_rare_fraction"]),
        "ultra_rare_count": ci_summary(found["ultra_rare_count"]),
    })
  payload: dict[str, Any] = {
      "setting": {"num_concepts": cfg.num_concepts, "dim": cfg.dim, "concepts_per_token": cfg.concepts_per_token,
                  "num_latents": cfg.num_latents, "k": cfg.k, "num_seeds": cfg.num_seeds, "steps": cfg.steps,
                  "batch_size": cfg.batch_size, "num_eval_tokens": int(num_tokens),
                  "ultra_rare_below": cfg.ultra_rare_below},
      "definition": ("dead: fired on none of the held-out tokens; ultra-rare: fired on fewer than "
                     "ultra_rare_below of them (but at least once)"),
      "by_aux_k": settings,
  }
  on = [a for a in per_seed if a > 0]
  if 0 in per_seed and on:
    difference = per_seed[0]["dead_fraction"] - per_seed[max(on)]["dead_fraction"]
    result = stats.test_hypothesis(difference, +1, name="auxk_effect", smoke=smoke)
    payload["auxk_effect"] = {
        "effect": "dead fraction without AuxK minus with AuxK (aux_k = %d), paired by seed" % max(on),
        **ci_summary(difference), "null": 0.0, "expected_sign": 1, "p_value": _finite(result.p_value),
        "verdict": result.verdict, ("reason" if result.verdict == "cannot be tested" else "test"): result.reason,
        "hypothesis": "AuxK reduces the fraction of dead latents"}
  else:
    payload["auxk_effect"] = {"verdict": "cannot be tested",
                              "reason": "needs aux_k_values with 0 (off) and a value > 0 (on)"}
  return payload
