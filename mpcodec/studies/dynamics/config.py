"""The dynamics study's typed configs: one run (`DynamicsConfig`), the grid (`SweepConfig`) and each
family's settings, and `run_config`, the full config of one `arch@dataset` run of a grid."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from mpcodec.core import configuration
from mpcodec.core.optim import OptimConfig
from mpcodec.models import zoo
from mpcodec.studies.dynamics.grid import FAMILIES, family_of


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
  """One configuration of the dynamics study: architecture, dataset, seeds, schedule, measurement."""

  arch: str = "mlp_128_64"
  dataset: str = "mnist"
  num_seeds: int = 5
  seed: int = 0                  # base seed; seed i trains from fold_in(PRNGKey(seed), i)
  data_seed: int = 0             # made-up splits, probe sets, row subsets, TwoNN subsamples
  num_steps: int = 2000
  batch_size: int = 64
  shared_data_order: bool = True   # one minibatch order for all seeds (one gather), else one per seed
  measure: bool = True           # False: train only (the benchmark's baseline)
  measure_every: int = 5
  probe_size: int = 512
  train_probe_size: int = 256
  twonn_samples: int = 256
  max_matrix_rows: int = 4096
  conv_mode: Literal["flatten", "spatial_mean"] = "flatten"
  checkpoint_every: int = 500       # steps between mid-run checkpoints (0: only at the end)
  extra_checkpoints: tuple[int, ...] = ()   # more steps to checkpoint at (multiples of measure_every)
  measurements_per_chunk: int = 100   # outer-scan length of one host call (rounded to divide the run)
  final_eval_size: int = 0       # held-out examples for the final accuracy; 0 = the whole split
  eval_batch_size: int = 500
  embed_dim: int = 64            # token embedding width of text MLPs
  vocab_size: int = 20000        # text only: ids in all (padding and OOV included)
  max_length: int = 48           # text only: tokens per example
  optim: OptimConfig = OptimConfig()

  def checks(self):
    yield "arch", self.arch in zoo.ARCHITECTURES, (
        f"unknown architecture {self.arch!r}; valid names are {sorted(zoo.ARCHITECTURES)}")
    from mpcodec.data import registry  # pylint: disable=g-import-not-at-top
    yield "dataset", self.dataset in registry.DATASETS, (
        f"unknown dataset {self.dataset!r}; valid names are {sorted(registry.DATASETS)}")
    yield "num_seeds", self.num_seeds >= 1, f"must be >= 1, got {self.num_seeds}"
    yield "num_steps", self.num_steps >= 1, f"must be >= 1, got {self.num_steps}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "measure_every", self.measure_every >= 1, f"must be >= 1, got {self.measure_every}"
    yield "measure_every", self.num_steps % self.measure_every == 0, (
        f"must divide num_steps={self.num_steps}, got {self.measure_every}")
    yield "probe_size", self.probe_size >= 3, f"must be >= 3, got {self.probe_size}"
    yield "train_probe_size", self.train_probe_size >= 1, f"must be >= 1, got {self.train_probe_size}"
    yield "twonn_samples", self.twonn_samples >= 3, f"must be >= 3, got {self.twonn_samples}"
    yield "max_matrix_rows", self.max_matrix_rows >= 3, f"must be >= 3, got {self.max_matrix_rows}"
    yield "checkpoint_every", self.checkpoint_every >= 0, f"must be >= 0, got {self.checkpoint_every}"
    yield ("checkpoint_every", self.checkpoint_every % self.measure_every == 0,
           f"must be a multiple of measure_every={self.measure_every}, got {self.checkpoint_every}")
    for index, step in enumerate(self.extra_checkpoints):
      yield (f"extra_checkpoints[{index}]", 0 < step < self.num_steps and step % self.measure_every == 0,
             f"must lie in (0, num_steps={self.num_steps}) and be a multiple of measure_every="
             f"{self.measure_every}, got {step}")
    yield ("measurements_per_chunk", self.measurements_per_chunk >= 1,
           f"must be >= 1, got {self.measurements_per_chunk}")
    yield "final_eval_size", self.final_eval_size >= 0, f"must be >= 0, got {self.final_eval_size}"
    yield "eval_batch_size", self.eval_batch_size >= 1, f"must be >= 1, got {self.eval_batch_size}"
    yield "embed_dim", self.embed_dim >= 1, f"must be >= 1, got {self.embed_dim}"
    yield "vocab_size", self.vocab_size >= 3, f"must be >= 3, got {self.vocab_size}"
    yield "max_length", self.max_length >= 1, f"must be >= 1, got {self.max_length}"

  @property
  def num_measurements(self) -> int:
    """Measurement points including step 0 and the last step."""
    return self.num_steps // self.measure_every + 1 if self.measure else 0

  @property
  def measured_steps(self) -> np.ndarray:
    """True training steps of the measurements: 0, measure_every, ..., num_steps."""
    if not self.measure:
      return np.zeros((0,), np.int32)
    return np.arange(0, self.num_steps + 1, self.measure_every, dtype=np.int32)

  @property
  def chunk_blocks(self) -> int:
    """Blocks of `measure_every` steps per host call: the largest divisor of the run <= the request."""
    blocks = self.num_steps // self.measure_every
    chunk = min(self.measurements_per_chunk, blocks)
    while blocks % chunk:
      chunk -= 1
    return chunk


# Knobs that change how a run is executed but not what it computes: how often the host looks and where
# checkpoints are written.
EXECUTION_ONLY_FIELDS = ("measurements_per_chunk", "checkpoint_every", "extra_checkpoints")


@dataclasses.dataclass(frozen=True)
class FamilySettings:
  """Per-family knobs of the grid (model cost differs by orders of magnitude between families)."""

  batch_size: int = 64
  probe_size: int = 512
  train_probe_size: int = 256
  learning_rate: float = 1e-3
  warmup_steps: int = 0
  final_eval_size: int = 2000
  measurements_per_chunk: int = 0   # measurements per host call; 0 = the base config's

  def checks(self):
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "probe_size", self.probe_size >= 3, f"must be >= 3, got {self.probe_size}"
    yield "train_probe_size", self.train_probe_size >= 1, f"must be >= 1, got {self.train_probe_size}"
    yield "learning_rate", self.learning_rate > 0, f"must be > 0, got {self.learning_rate}"
    yield "warmup_steps", self.warmup_steps >= 0, f"must be >= 0, got {self.warmup_steps}"
    yield "final_eval_size", self.final_eval_size >= 0, f"must be >= 0, got {self.final_eval_size}"
    yield ("measurements_per_chunk", self.measurements_per_chunk >= 0,
           f"must be >= 0 (0 = the base config's), got {self.measurements_per_chunk}")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """A grid of `arch@dataset` runs sharing `base` (whose arch and dataset are replaced per run)."""

  runs: tuple[str, ...] = ("mlp_128_64@mnist",)
  base: DynamicsConfig = DynamicsConfig()
  mlp: FamilySettings = FamilySettings()
  cnn: FamilySettings = FamilySettings()
  transformer: FamilySettings = FamilySettings()
  fail_margin: float = 0.1          # a seed below chance + margin counts as failed
  text_accuracy_target: float = 0.75   # held-out accuracy asked of every text run (flagged if missed)
  plots: bool = True
  # Train the configurations side by side, one per local device (each with all its seeds), instead of
  # one after another with the seeds split over the devices; the results are the same either way.
  spread_runs: bool = False

  def checks(self):
    yield "runs", len(self.runs) >= 1, "must name at least one arch@dataset run"
    yield "runs", len(set(self.runs)) == len(self.runs), f"has duplicates: {list(self.runs)}"
    for index, run in enumerate(self.runs):
      arch, _, dataset = run.partition("@")
      yield f"runs[{index}]", bool(arch) and bool(dataset), f"must read 'arch@dataset', got {run!r}"
      yield f"runs[{index}]", family_of(arch) in FAMILIES, (
          f"architecture {arch!r} belongs to no family of {FAMILIES}")
      # Names are checked against the zoo and the registry through the run's own config.
      try:
        configuration.check_values(dataclasses.replace(self.base, arch=arch, dataset=dataset))
      except configuration.ConfigError as e:
        yield f"runs[{index}]", False, str(e).split(": ", 1)[-1]
    yield "fail_margin", 0 <= self.fail_margin < 1, f"must lie in [0, 1), got {self.fail_margin}"
    yield ("text_accuracy_target", 0 <= self.text_accuracy_target <= 1,
           f"must lie in [0, 1], got {self.text_accuracy_target}")


def run_config(sweep: SweepConfig, run: str) -> DynamicsConfig:
  """The full config of one `arch@dataset` run: base + its family's settings."""
  arch, _, dataset = run.partition("@")
  family: FamilySettings = getattr(sweep, family_of(arch))
  optim = dataclasses.replace(sweep.base.optim, learning_rate=family.learning_rate,
                              warmup_steps=family.warmup_steps)
  cfg = dataclasses.replace(sweep.base, arch=arch, dataset=dataset, batch_size=family.batch_size,
                            probe_size=family.probe_size, train_probe_size=family.train_probe_size,
                            final_eval_size=family.final_eval_size, optim=optim)
  if family.measurements_per_chunk:
    cfg = dataclasses.replace(cfg, measurements_per_chunk=family.measurements_per_chunk)
  configuration.check_values(cfg, f"config for {run}")
  return cfg
