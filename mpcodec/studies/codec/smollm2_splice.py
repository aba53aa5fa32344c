"""The splicing cost of an SAE in a causal LM, as SAELens reports it: cross-entropy loss recovered.

On held-out texts, the next-token cross-entropy (mean over every predicted token: position t predicts
token t + 1 of the same text) is measured three times: clean; spliced, the layer's activation replaced by
the SAE's reconstruction at every real token; and zero-ablated, the layer's activation replaced by zeros.
The loss recovered is (zero − spliced) / (zero − clean): 1 when the reconstruction is as good as the
activation, 0 when it is no better than removing the layer's output. Works on any `smollm2.SmolLM2` (the
tiny planted one of the tests too) and any per-token layer it taps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core.errors import ActivationError
from mpcodec.sae import autoencoder as sae

PAD_TO_MULTIPLE = 16
Reconstruct = Callable[[np.ndarray], np.ndarray]   # (N, D) activations -> (N, D) reconstructions


def loss_recovered(clean: float, spliced: float, zero: float) -> float | None:
  """(zero − spliced) / (zero − clean); None when zero-ablation costs nothing (the ratio is undefined)."""
  gap = zero - clean
  return float((zero - spliced) / gap) if gap > 0 else None


def _token_losses(logits_BxTxV: jax.Array, ids_BxT: np.ndarray, mask_BxT: np.ndarray) -> tuple[float, int]:
  """(sum of next-token cross-entropies over the batch's predicted tokens, how many)."""
  logp = jax.nn.log_softmax(jnp.asarray(logits_BxTxV, jnp.float32)[:, :-1], axis=-1)
  target = jnp.asarray(ids_BxT[:, 1:])
  nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
  # A prediction counts when both the predicting and the predicted token are real (left padding).
  counted = np.asarray(mask_BxT[:, :-1] * mask_BxT[:, 1:], bool)
  return float(jnp.sum(jnp.where(counted, nll, 0.0))), int(counted.sum())


def splice_losses(model: Any, texts: Sequence[str], layer: str, reconstructions: Sequence[Reconstruct],
                  max_length: int, batch_size: int = 8, params: Any = None) -> dict[str, Any]:
  """Mean next-token cross-entropy of `texts` clean, zero-ablated at `layer`, and spliced with each
  reconstruction; the loss recovered of each (see the module docstring)."""
  params = model.params if params is None else params
  id_lists, num_truncated = model.token_ids(texts, max_length)
  if not any(len(ids) > 1 for ids in id_lists):
    raise ActivationError("splice: no text has two tokens, so no next-token loss can be measured")
  sums = np.zeros(2 + len(reconstructions))   # clean, zero, then each reconstruction
  count = 0
  for start in range(0, len(id_lists), batch_size):
    tokens = model.pad(id_lists[start:start + batch_size], pad_to_multiple=PAD_TO_MULTIPLE)
    ids, mask = np.asarray(tokens.input_ids_BxT), np.asarray(tokens.attention_mask_BxT)
    logits, acts = model.apply(params, ids, mask, capture=[layer])
    clean_BxTxD = np.asarray(acts[layer], np.float32)
    real = mask.astype(bool)[..., None]
    total, n = _token_losses(logits, ids, mask)
    sums[0] += total
    count += n
    variants = [np.where(real, 0.0, clean_BxTxD)]
    for reconstruct in reconstructions:
      flat = np.asarray(reconstruct(clean_BxTxD.reshape(-1, clean_BxTxD.shape[-1])), np.float32)
      variants.append(np.where(real, flat.reshape(clean_BxTxD.shape), clean_BxTxD))
    for v, replaced in enumerate(variants):
      logits_v, _ = model.apply(params, ids, mask, replace={layer: jnp.asarray(replaced, jnp.float32)})
      sums[1 + v] += _token_losses(logits_v, ids, mask)[0]
  clean, zero, *spliced = (sums / count).tolist()
  return {"layer": layer, "num_texts": len(id_lists), "num_predicted_tokens": count,
          "num_truncated": num_truncated, "ce_clean": clean, "ce_zero_ablated": zero,
          "runs": [{"ce_spliced": s, "ce_loss_recovered": loss_recovered(clean, s, zero)} for s in spliced],
          "definition": "mean next-token cross-entropy (nats); recovered = (zero - spliced) / (zero - clean)"}


def sae_reconstructions(sae_states: Any, sae_cfg: sae.SAEConfig) -> list[Reconstruct]:
  """One reconstruction function per run of run-stacked SAE states."""
  apply = jax.jit(lambda state, x: sae.apply(state, x, sae_cfg)[0])
  runs = int(np.shape(sae_states["k"])[0])
  return [lambda x, r=r: np.asarray(apply(jax.tree.map(lambda a, r=r: a[r], sae_states), jnp.asarray(x)))
          for r in range(runs)]
