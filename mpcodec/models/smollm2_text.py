"""SmolLM2 as a source of text activations: load the model, name its layers, tap one layer over texts.

`tap` returns every real token's activation at one layer, items in the order given and tokens in text
order, with the token ids and each token's item index; texts longer than the context are cut to their
first `max_length` tokens and counted. Texts are batched in order of decreasing length (little padding),
left-padded to a multiple of 16 tokens so that few shapes compile; the forward pass stops after the block
the layer belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from mpcodec.core.errors import ConfigError
from mpcodec.models import llama, smollm2


class Tapped(NamedTuple):
  """One layer's activations over texts: (T, width) float32, the (T,) token ids, the (T,) item index of
  each token, and how many texts were cut at the context."""

  acts_TxD: np.ndarray
  token_ids_T: np.ndarray
  item_T: np.ndarray
  num_truncated: int


def load(model_dir: str | None = None, data_dir: str | None = None, max_length: int | None = None
         ) -> tuple[smollm2.SmolLM2, Any, Any]:
  """(model, params, tokenizer) of the GGUF in `model_dir` (resolved as `smollm2.resolve_model_dir`)."""
  model = smollm2.load(model_dir, data_dir=data_dir, max_length=max_length)
  return model, model.params, model.tokenizer


def layer_names(model: smollm2.SmolLM2 | None = None) -> tuple[str, ...]:
  """Every tap name ("embeddings", "block_{i}/attention|ffn_hidden|residual", "final_norm")."""
  return model.layer_names if model is not None else llama.layer_names(llama.LlamaConfig())


def tap(model: smollm2.SmolLM2, texts: Sequence[str], layer: str, batch_size: int = 16,
        max_length: int | None = None, params: Any = None) -> Tapped:
  """The activations of `layer` at every real token of `texts` (see the module docstring)."""
  llama.check_layer_names(model.config, [layer], "layer")
  if batch_size < 1:
    raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
  params = model.params if params is None else params
  id_lists, num_truncated = model.token_ids(texts, max_length)
  order = np.argsort(-np.asarray([len(ids) for ids in id_lists], np.int64), kind="stable")
  per_item: list[np.ndarray | None] = [None] * len(id_lists)
  for start in range(0, len(order), batch_size):
    rows = order[start:start + batch_size]
    tokens = model.pad([id_lists[i] for i in rows], pad_to_multiple=smollm2.PAD_TO_MULTIPLE)
    acts_BxTxD = np.asarray(model.activations(params, tokens.input_ids_BxT, tokens.attention_mask_BxT,
                                              [layer])[layer], np.float32)
    for b, item in enumerate(rows):
      per_item[item] = acts_BxTxD[b, acts_BxTxD.shape[1] - len(id_lists[item]):]
  width = model.config.intermediate_size if layer.endswith("ffn_hidden") else model.config.hidden_size
  acts = [a for a in per_item if a is not None]
  return Tapped(acts_TxD=np.concatenate(acts, axis=0) if acts else np.zeros((0, width), np.float32),
                token_ids_T=np.asarray([t for ids in id_lists for t in ids], np.int32),
                item_T=np.repeat(np.arange(len(id_lists), dtype=np.int32), [len(ids) for ids in id_lists]),
                num_truncated=num_truncated)
