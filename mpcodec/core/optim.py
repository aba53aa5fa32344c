"""Optimizers from config: optax transforms with warm-up, decay and clipping."""

from __future__ import annotations

import dataclasses
from typing import Literal

import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Optimizer knobs; `learning_rate` is the peak rate after warm-up."""

  name: Literal["adam", "adamw", "sgd"] = "adam"
  learning_rate: float = 1e-3
  warmup_steps: int = 0
  schedule: Literal["constant", "cosine"] = "constant"
  weight_decay: float = 0.0
  momentum: float = 0.0
  grad_clip_norm: float = 0.0

  def checks(self):
    yield "learning_rate", self.learning_rate > 0, f"must be > 0, got {self.learning_rate}"
    yield "warmup_steps", self.warmup_steps >= 0, f"must be >= 0, got {self.warmup_steps}"
    yield "weight_decay", self.weight_decay >= 0, f"must be >= 0, got {self.weight_decay}"
    yield "momentum", 0 <= self.momentum < 1, f"must be in [0, 1), got {self.momentum}"
    yield "grad_clip_norm", self.grad_clip_norm >= 0, f"must be >= 0 (0 = off), got {self.grad_clip_norm}"


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
  """Linear warm-up to the peak rate, then constant or cosine decay to zero at `total_steps`."""
  warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
  if cfg.schedule == "cosine":
    if warmup == 0:
      return optax.cosine_decay_schedule(cfg.learning_rate, max(total_steps, 1))
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.learning_rate, warmup_steps=warmup, decay_steps=max(total_steps, warmup + 1))
  if warmup == 0:
    return optax.constant_schedule(cfg.learning_rate)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.learning_rate, warmup), optax.constant_schedule(cfg.learning_rate)],
      [warmup])


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
  """The optax transform described by `cfg` over a run of `total_steps` steps."""
  lr = learning_rate_schedule(cfg, total_steps)
  if cfg.name == "adam":
    opt = optax.adam(lr)
  elif cfg.name == "adamw":
    opt = optax.adamw(lr, weight_decay=cfg.weight_decay)
  else:
    opt = optax.sgd(lr, momentum=cfg.momentum or None)
  if cfg.grad_clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), opt)
  return opt
