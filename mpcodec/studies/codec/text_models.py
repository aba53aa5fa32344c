"""The pretrained text models the codec's `text` source can read, by name (`source.text.model`).

An adapter gives the text source what it needs of one model, whatever its architecture: load the model
and its tokenizer, list the per-token layers the codec can learn from, tokenize texts, tap a layer's
activations of a padded batch (one vector per token, with the attention mask saying which are real),
turn token ids back into strings, and fingerprint the model's files. `stages` names the codec's
downstream text stages the model supports (`config.stages`); a stage the model lacks is refused
before any work. Adding a model is one adapter class and one entry of `TEXT_MODELS`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mpcodec.core.errors import ActivationError
from mpcodec.studies.codec.smollm2_adapter import SmolLM2Adapter
from mpcodec.studies.codec.text_adapter import TextModelAdapter

# The downstream text stages of every model (pipeline order; an encoder such as MiniLM runs them all), the
# ones that need a next-token loss (a causal LM), and all of them; which ones a model supports is its `stages`.
TEXT_STAGES = ("reconstruction", "themes_text", "steering", "detection")
CAUSAL_LM_STAGES = ("splice", "generation")
ALL_STAGES = TEXT_STAGES + CAUSAL_LM_STAGES


class MiniLMAdapter(TextModelAdapter):
  """all-MiniLM-L6-v2 (a BERT encoder; mpcodec.models.minilm): per-token layers are the embeddings, every
  block's FFN hidden (1,536 neurons) and residual stream (384). Reconstruction and steering are measured
  through its pooled sentence embedding (a probe), so every text stage is supported."""

  name = "minilm"
  display_name = "all-MiniLM-L6-v2"
  report_title = "MiniLM (all-MiniLM-L6-v2)"
  stages = TEXT_STAGES
  UNREAD_TAP_NOTE = " (attention probabilities are (heads, T, T) per text, not one vector per token)"
  _fingerprints: dict[tuple[str, int, int], str] = {}

  def __init__(self, model: Any):
    self.model = model
    self.model_dir = model.model_dir

  @classmethod
  def load(cls, model_dir: str | None = None) -> "MiniLMAdapter":
    from mpcodec.models import minilm  # pylint: disable=g-import-not-at-top
    return cls(minilm.load(model_dir or None))

  def token_layers(self) -> list[str]:
    return [name for name in self.model.layer_names
            if name == "embeddings" or name.split("/")[-1] in self.TOKEN_LAYER_KINDS]


  def activations(self, id_lists: Sequence[Sequence[int]], layer: str) -> np.ndarray:
    """(B, T, D) activations of `layer` for a batch of token id lists (padded; rows past a text's length
    are padding)."""
    tokens = self.model.pad(list(id_lists))
    return np.asarray(self.model.activations(self.model.params, tokens.input_ids_BxT,
                                             tokens.attention_mask_BxT, [layer])[layer])

  def token_strings(self, token_ids: np.ndarray) -> list[str]:
    return [self.model.tokenizer.id_to_token(int(t)) or "[UNK]" for t in np.asarray(token_ids).ravel()]

  @classmethod
  def fingerprint_of(cls, model_dir: str) -> str:
    """sha256 of the model's config, tokenizer and weights in `model_dir` (memoised per file size and mtime)."""
    from mpcodec.models import minilm  # pylint: disable=g-import-not-at-top
    return files_fingerprint(model_dir, minilm.REQUIRED_FILES, cls._fingerprints)


def file_digest(path: str, memo: dict[tuple[str, int, int], str]) -> str:
  """sha256 of a file's contents (memoised per real path, size and mtime)."""
  stat = os.stat(path)
  key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
  if key not in memo:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 22), b""):
        digest.update(chunk)
    memo[key] = digest.hexdigest()
  return memo[key]


def files_fingerprint(directory: str, names: Sequence[str], memo: dict[tuple[str, int, int], str]) -> str:
  """sha256 over "name:sha256 of its contents" of each named file of `directory`."""
  parts = [f"{name}:{file_digest(os.path.join(directory, name), memo)}" for name in names]
  return hashlib.sha256("\n".join(parts).encode()).hexdigest()


TEXT_MODELS = {"minilm": MiniLMAdapter, "smollm2": SmolLM2Adapter}


def adapter_class(name: str) -> type:
  """The adapter class of model `name`; ActivationError naming the known ones otherwise."""
  if name not in TEXT_MODELS:
    raise ActivationError(f"unknown text model {name!r}; known: {sorted(TEXT_MODELS)}")
  return TEXT_MODELS[name]


def load(name: str, model_dir: str | None = None, model: Any = None) -> Any:
  """The adapter of model `name`, around `model` when one is already loaded, else loaded from `model_dir`."""
  cls = adapter_class(name)
  if model is None:
    return cls.load(model_dir)
  return model if isinstance(model, cls) else cls(model)
