"""The part every text-model adapter of the codec shares (`text_models.py` lists the adapters)."""

from __future__ import annotations

from collections.abc import Sequence

from mpcodec.core.errors import ActivationError


class TextModelAdapter:
  """What every adapter shares: the layer check, a layer's width and tokenisation, over `self.model` (a
  loaded port with `layer_names`, `config` and `token_ids`) and the adapter's `token_layers()`."""

  TOKEN_LAYER_KINDS = ("ffn_hidden", "residual")
  UNREAD_TAP_NOTE = ""   # why a tap of the model that is not a per-token layer cannot feed the codec

  def check_layer(self, layer: str) -> None:
    """Raises ActivationError unless `layer` is a per-token layer of the model (listing the valid ones)."""
    valid = self.token_layers()
    if layer not in valid:
      extra = self.UNREAD_TAP_NOTE if layer in self.model.layer_names else ""
      raise ActivationError(f"layer {layer!r} cannot feed the codec{extra}; valid layer names: {valid}")

  def layer_width(self, layer: str) -> int:
    """D of a per-token layer: d_ffn for an FFN hidden, d_model otherwise."""
    config = self.model.config
    return config.intermediate_size if layer.endswith("/ffn_hidden") else config.hidden_size

  def token_ids(self, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """(token ids of each text, how many were cut to `max_length`)."""
    return self.model.token_ids(texts, max_length)
