"""Activation sources for the codec: streams of (B, D) float32 batches, never the whole matrix.

A source has a `width` (D) and yields batch number `step` on demand:
  - `GroundTruthSource`: x = f·D + noise for a known dictionary (mpcodec.data.toy_features). Its
    `batch_fn` is a jittable function of the step (keys are fold_in(key, step)), so training generates
    data on the device inside the compiled loop.
  - `CheckpointSource`: the activations of one layer of a model checkpoint written by this project,
    computed batch by batch over the model's dataset (host iterator; `batch_fn` is None).
  - `text_source.TextActivationSource`: a pretrained text model's layer over a corpus (`source.text.model`
    names the model), from an on-disk activation cache.
  - `array_source.ArraySource`: a user's `.npy` file of activations, with optional token metadata.

Every source has an `identity` (None, or what decides its activations beyond the config: the resolved
checkpoint step, the model's and corpus' hashes, the file's hash) that enters every stage's checkpoint
fingerprint, and `hook_name` / `model_name` for the SAELens export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import io
from mpcodec.core.errors import ActivationError
from mpcodec.studies.codec.array_source import ArraySourceConfig
from mpcodec.studies.codec.text_source import TextSourceConfig
from mpcodec.data.toy_features import (ThemeConfig, make_dictionary, sample_dictionary_activations,
                                       theme_labels, themed_dictionary)


class ActivationSource(Protocol):
  """What the codec trainers need from a source."""

  width: int
  description: str
  identity: dict[str, Any] | None
  hook_name: str
  model_name: str

  def batch_fn(self, batch_size: int) -> Callable[[jax.Array], jax.Array] | None:
    """A jittable step -> (B, D) generator, or None when batches come from the host."""

  def batches(self, batch_size: int, start_step: int = 0) -> Iterator[np.ndarray]:
    """Host iterator over batches start_step, start_step + 1, ... (endless)."""


@dataclasses.dataclass(frozen=True)
class GroundTruthConfig:
  """Synthetic activations with a known dictionary: n atoms in d dims, k_true active per token.

  `themes` plants themes in the atoms both ways (mpcodec.data.toy_features.ThemeConfig): co-firing (a
  sample's theme promotes its members into the k_true active atoms) and geometric (a theme's atoms lie
  near a shared direction), so the codec's theme analyses have a known answer of each kind. With
  `independent_theme_kinds`, the geometric themes group a fixed shuffle of the co-firing themes' atoms
  (same sizes, another partition), so a clustering that recovers one kind can be told from one that
  recovers the other.
  """

  num_atoms: int = 512
  dim: int = 128
  k_true: int = 8
  noise_std: float = 0.01
  seed: int = 0
  themes: ThemeConfig = ThemeConfig(num_themes=8, theme_probability=0.5, member_probability=0.15,
                                    direction_cosine=0.5)
  independent_theme_kinds: bool = True

  def checks(self):
    yield "num_atoms", self.num_atoms >= 1, f"must be >= 1, got {self.num_atoms}"
    yield "dim", self.dim >= 1, f"must be >= 1, got {self.dim}"
    yield "k_true", 1 <= self.k_true <= self.num_atoms, (
        f"k_true={self.k_true} must lie in [1, num_atoms={self.num_atoms}]")
    yield "noise_std", self.noise_std >= 0, f"must be >= 0, got {self.noise_std}"
    themed = self.themes.themed_atoms or self.num_atoms
    yield "themes.num_themes", self.themes.num_themes <= themed <= self.num_atoms, (
        f"num_themes={self.themes.num_themes} must be <= themed atoms ({themed}) <= num_atoms={self.num_atoms}")
    yield from ((f"themes.{key}", ok, msg) for key, ok, msg in self.themes.checks())


@dataclasses.dataclass(frozen=True)
class SourceConfig:
  """Which activations the codec learns from.

  Attributes:
    kind: "ground_truth" (synthetic, known dictionary), "checkpoint" (a layer of a model checkpoint
      written by this project, e.g. the mono->poly MLP), "text" (a pretrained text model's layer over a
      corpus) or "array" (a user's .npy file). The keys of the other kinds must keep their defaults: a
      key the chosen kind does not read is refused, not ignored.
    workdir, phase, step, layer, seed_index, split: the checkpoint source: run directory, training phase,
      step (-1 = latest), layer name, which seed of the stacked checkpoint, dataset split.
    ground_truth: the synthetic source.
    text: the text source (model, layer, corpus, cache).
    array: the array source (file, token metadata).
  """

  kind: Literal["ground_truth", "checkpoint", "text", "array"] = "ground_truth"
  workdir: str = ""
  phase: str = "phase2"
  step: int = -1
  layer: str = "hidden_0"
  seed_index: int = 0
  split: Literal["train", "test"] = "train"
  ground_truth: GroundTruthConfig = GroundTruthConfig()
  text: TextSourceConfig = TextSourceConfig()
  array: ArraySourceConfig = ArraySourceConfig()

  def checks(self):
    default = SourceConfig()
    for kind, keys in KIND_KEYS.items():
      if kind != self.kind:
        for key in keys:
          for leaf in changed_keys(getattr(self, key), getattr(default, key), key):
            yield leaf, False, f"is a key of source.kind='{kind}', not read by source.kind='{self.kind}'; remove it"
    if self.kind == "checkpoint":
      yield "workdir", bool(self.workdir), "must name the run directory of the model checkpoint"
    if self.kind == "array":
      yield "array.path", bool(self.array.path), "must name the .npy file of activations"
    yield "step", self.step >= -1, f"must be a step >= 0 or -1 (latest), got {self.step}"
    yield "seed_index", self.seed_index >= 0, f"must be >= 0, got {self.seed_index}"


def changed_keys(value: Any, default: Any, key: str) -> list[str]:
  """The dotted keys under `key` where a config value differs from its default (the leaves, not sections)."""
  if dataclasses.is_dataclass(value) and value != default:
    return [leaf for field in dataclasses.fields(value)
            for leaf in changed_keys(getattr(value, field.name), getattr(default, field.name), f"{key}.{field.name}")]
  return [] if value == default else [key]


# The keys each kind reads (besides `kind`); the others must keep their defaults.
KIND_KEYS = {"ground_truth": ("ground_truth",),
             "checkpoint": ("workdir", "phase", "step", "layer", "seed_index", "split"),
             "text": ("text",), "array": ("array",)}


class GroundTruthSource:
  """x = f·D + noise_std·ε with exactly k_true atoms of the dictionary D active per token.

  `cofiring_theme_N` / `geometric_theme_N`: each true atom's planted theme of that kind (-1 = none, or
  None when that kind is not planted).
  """

  def __init__(self, cfg: GroundTruthConfig):
    self.cfg = cfg
    root = jax.random.PRNGKey(cfg.seed)
    labels_N = theme_labels(cfg.num_atoms, cfg.themes)
    self.cofiring_theme_N = labels_N if cfg.themes.cofiring else None
    self.geometric_theme_N = None
    dictionary_key = jax.random.fold_in(root, 0)
    if cfg.themes.geometric:
      if cfg.independent_theme_kinds:
        labels_N = labels_N[np.random.default_rng([cfg.seed, 2]).permutation(cfg.num_atoms)]
      self.geometric_theme_N = labels_N
      self.dictionary_NxD = themed_dictionary(dictionary_key, labels_N, cfg.dim, cfg.themes.direction_cosine)
    else:
      self.dictionary_NxD = make_dictionary(dictionary_key, cfg.num_atoms, cfg.dim)
    self._data_key = jax.random.fold_in(root, 1)
    self.width = cfg.dim
    self.identity = None   # the config's ground_truth section decides every batch
    self.hook_name, self.model_name = "ground_truth", ""
    # One compiled sampler per batch size: `batches` is called once per host batch in some loops.
    self._compiled_samplers: dict[int, Callable[[jax.Array], jax.Array]] = {}
    self._compiled_pairs: dict[int, Callable[[jax.Array], tuple[jax.Array, jax.Array]]] = {}
    planted = [kind for kind, on in (("co-firing", cfg.themes.cofiring), ("geometric", cfg.themes.geometric)) if on]
    self.description = (f"ground truth: {cfg.num_atoms} unit atoms in {cfg.dim} dims, "
                        f"{cfg.k_true} active per token, noise std {cfg.noise_std:g}"
                        + (f", {cfg.themes.num_themes} planted themes ({' and '.join(planted)})" if planted else ""))

  def _sample(self, step: jax.Array | int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    key = jax.random.fold_in(self._data_key, step)
    return sample_dictionary_activations(key, batch_size, self.dictionary_NxD, self.cfg.k_true,
                                         self.cfg.noise_std, self.cfg.themes)

  def sample(self, step: jax.Array | int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """(x_BxD, f_BxN) of batch `step`; pure in `step` (one compiled sampler per batch size)."""
    if batch_size not in self._compiled_pairs:
      self._compiled_pairs[batch_size] = jax.jit(lambda step: self._sample(step, batch_size))
    return self._compiled_pairs[batch_size](step)

  def batch_fn(self, batch_size: int) -> Callable[[jax.Array], jax.Array]:
    return lambda step: self.sample(step, batch_size)[0]

  def batches(self, batch_size: int, start_step: int = 0) -> Iterator[np.ndarray]:
    if batch_size not in self._compiled_samplers:
      self._compiled_samplers[batch_size] = jax.jit(self.batch_fn(batch_size))
    sample = self._compiled_samplers[batch_size]
    step = start_step
    while True:
      yield np.asarray(sample(step))
      step += 1


def check_finite(batch_BxD: Any, batch_index: int, what: str = "batch index") -> None:
  """Raises ActivationError naming the batch (`what` and its index) if it holds NaN or Inf."""
  batch = np.asarray(batch_BxD)
  if not np.all(np.isfinite(batch)):
    bad_rows = np.flatnonzero(~np.all(np.isfinite(batch), axis=-1))
    raise ActivationError(
        f"activations contain NaN/Inf in {what} {batch_index} (rows {bad_rows[:5].tolist()}"
        f"{' ...' if bad_rows.size > 5 else ''} of {batch.shape[0]})")


def check_width(source_width: int, expected_width: int, what: str) -> None:
  """Raises ActivationError when a source's width differs from what a saved model expects."""
  if source_width != expected_width:
    raise ActivationError(
        f"activation width {source_width} does not match {what} (input width {expected_width})")


class CheckpointSource:
  """Activations of one layer of a model checkpoint, over the model's own dataset.

  The checkpoint is `<workdir>/checkpoints/<phase>`; its model and dataset are rebuilt from the
  "activation_source" block of its metadata (mpcodec.models.checkpointed), so any study that writes
  that block can feed the codec.

  Batch `step` holds the examples at positions step·B ... step·B + B - 1 of an endless stream that
  visits the dataset split in a fresh permutation every epoch (numpy Generator seeded by the epoch), so
  a batch is a pure function of its step. Only one batch of activations exists at a time.
  """

  def __init__(self, cfg: SourceConfig):
    # Imported here so the ground-truth path does not load the model-training stack.
    from mpcodec.models import checkpointed  # pylint: disable=g-import-not-at-top
    self.cfg = cfg
    checkpoint_dir = os.path.join(cfg.workdir, "checkpoints", cfg.phase)
    model, params, metadata, step = checkpointed.load_checkpointed_model(
        checkpoint_dir, None if cfg.step < 0 else cfg.step)
    splits = checkpointed.checkpoint_inputs(checkpoint_dir, metadata, step)
    self._inputs = np.asarray(splits[cfg.split], np.float32)
    example_x = jax.ShapeDtypeStruct((1,) + self._inputs.shape[1:], jnp.float32)
    names = checkpointed.layer_names(model, jax.tree.map(lambda a: a[0], params), example_x)
    if cfg.layer not in names:
      raise ActivationError(
          f"layer {cfg.layer!r} is not in the model of {cfg.workdir} ({cfg.phase} step {step}); "
          f"valid layer names: {list(names)}")
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    if not 0 <= cfg.seed_index < num_seeds:
      raise ActivationError(
          f"seed_index {cfg.seed_index} is out of range: the checkpoint {cfg.workdir} ({cfg.phase} step "
          f"{step}) holds {num_seeds} seeds")
    seed_params = jax.tree.map(lambda a: a[cfg.seed_index], params)
    self._activations = jax.jit(lambda x: checkpointed.layer_activations(model, seed_params, x, cfg.layer))
    self.step = step
    self.width = int(jax.eval_shape(self._activations, example_x).shape[-1])
    # The latest step (step -1) resolved, and the checkpoint's own metadata (its model and data).
    self.identity = {"step": step, "metadata": hashlib.sha256(json.dumps(
        io.jsonable(metadata), sort_keys=True, default=str).encode()).hexdigest()[:16]}
    self.hook_name, self.model_name = cfg.layer, ""
    self.description = (f"checkpoint {os.path.basename(os.path.normpath(cfg.workdir))}: {cfg.phase} step "
                        f"{step}, layer {cfg.layer}, seed index {cfg.seed_index}, {cfg.split} split "
                        f"({self._inputs.shape[0]} examples)")

  def batch_fn(self, batch_size: int) -> None:
    del batch_size
    return None

  def _indices(self, step: int, batch_size: int) -> np.ndarray:
    num_examples = self._inputs.shape[0]
    positions = step * batch_size + np.arange(batch_size)
    epochs, offsets = np.divmod(positions, num_examples)
    out = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
      permutation = np.random.default_rng([self.cfg.seed_index, int(epoch)]).permutation(num_examples)
      out[epochs == epoch] = permutation[offsets[epochs == epoch]]
    return out

  def batches(self, batch_size: int, start_step: int = 0) -> Iterator[np.ndarray]:
    step = start_step
    while True:
      yield np.asarray(self._activations(jnp.asarray(self._inputs[self._indices(step, batch_size)])))
      step += 1

  def batch_examples(self, batch_size: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(dataset indices (B,), model inputs (B, ...)) of batch `step`: what its activations came from."""
    indices = self._indices(step, batch_size)
    return indices, self._inputs[indices]


def make_source(cfg: SourceConfig, workdir: str = "") -> ActivationSource:
  """The source named by `cfg.kind`; a text source keeps its activation cache in `source.text.cache_dir`,
  else `<workdir>/activation_cache` (in memory without either)."""
  if cfg.kind == "checkpoint":
    return CheckpointSource(cfg)
  if cfg.kind == "text":
    from mpcodec.studies.codec import text_source  # pylint: disable=g-import-not-at-top
    text_cfg = cfg.text
    if not text_cfg.cache_dir and workdir:
      text_cfg = dataclasses.replace(text_cfg, cache_dir=os.path.join(workdir, "activation_cache"))
    return text_source.TextActivationSource(text_cfg)
  if cfg.kind == "array":
    from mpcodec.studies.codec import array_source  # pylint: disable=g-import-not-at-top
    return array_source.ArraySource(cfg.array)
  return GroundTruthSource(cfg.ground_truth)
