"""Passes of the MiniLM codec study over text: per-document SAE statistics from the activation cache,
and forward passes of the encoder that splice a reconstruction in or add a steering vector.

`document_statistics` reads the cached token rows once, in document order, and for every SAE run asked
for computes the codes of each token; it keeps per-document pooled values (the mean raw activation, each
atom's and each theme's maximum and mean over the document's tokens), the top-activating token rows of
each theme, and the reconstruction quality on the held-out documents' tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.metrics import codec as codec_metrics
from mpcodec.metrics import steering
from mpcodec.sae import autoencoder as sae


@dataclasses.dataclass(frozen=True, eq=False)
class DocumentStatistics:
  """Per-document values (documents in corpus order) of R SAE runs with Θ themes each.

  pooled_mean_DxF: mean raw activation of each document's tokens; atom_max_RxDxN: each atom's largest
  code over the document; theme_max_RxDxT / theme_mean_RxDxT: the theme activation (sum of its atoms'
  codes) per token, max and mean over the document; top_rows_RxTxK / top_values_RxTxK: the K token rows
  where each theme is most active; held_out: fvu_R, l0_R, dead_fraction_R, num_tokens on held-out rows.
  """

  pooled_mean_DxF: np.ndarray
  atom_max_RxDxN: np.ndarray
  theme_max_RxDxT: np.ndarray
  theme_mean_RxDxT: np.ndarray
  top_rows_RxTxK: np.ndarray
  top_values_RxTxK: np.ndarray
  fvu_R: np.ndarray
  l0_R: np.ndarray
  dead_fraction_R: np.ndarray
  num_held_out_tokens: int


def _segments(doc_index_R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(start of each run of equal document ids, the id of each run) of rows sorted by document."""
  starts = np.flatnonzero(np.concatenate([[True], doc_index_R[1:] != doc_index_R[:-1]]))
  return starts, doc_index_R[starts]


def document_statistics(source: Any, sae_states: Any, sae_cfg: sae.SAEConfig, members_RxNxT: np.ndarray,
                        held_out_docs_D: np.ndarray, top_k: int = 8, batch_rows: int = 2048
                        ) -> DocumentStatistics:
  """One pass over `source`'s rows (a TextActivationSource) with the stacked folded SAE runs.

  members_RxNxT: 0/1 membership of atom n in theme t for each run.
  """
  num_docs = int(source.rows.doc_offsets.shape[0] - 1)
  runs, num_atoms, num_themes = members_RxNxT.shape
  members = jnp.asarray(members_RxNxT, jnp.float32)

  @jax.jit
  def codes_and_errors(states, x_BxD, held_B):
    def one(state, members_NxT):
      x_hat_BxD, codes = sae.apply(state, x_BxD, sae_cfg)
      acts_BxN = sae.dense_codes(codes, x_BxD.shape[0], sae_cfg.num_latents)
      error = jnp.sum(jnp.where(held_B[:, None], jnp.square(x_BxD - x_hat_BxD), 0.0))
      counts_N = codec_metrics.firing_counts(jnp.where(held_B[:, None], acts_BxN, 0.0))
      return acts_BxN, acts_BxN @ members_NxT, error, counts_N
    return jax.vmap(one)(states, members)

  width = source.width
  pooled_sum = np.zeros((num_docs, width), np.float64)
  atom_max = np.zeros((runs, num_docs, num_atoms), np.float32)
  theme_max = np.zeros((runs, num_docs, num_themes), np.float32)
  theme_sum = np.zeros((runs, num_docs, num_themes), np.float64)
  top_values = np.full((runs, num_themes, top_k), -np.inf, np.float32)
  top_rows = np.full((runs, num_themes, top_k), -1, np.int64)
  errors, counts = np.zeros(runs), np.zeros((runs, num_atoms), np.int64)
  held_sum, held_sq, held_tokens = np.zeros(width), 0.0, 0
  for start, x_BxD in source.ordered_batches(batch_rows):
    docs_B = np.asarray(source.rows.doc_index_N[start:start + x_BxD.shape[0]])
    held_B = held_out_docs_D[docs_B]
    acts, theme_acts, error_R, counts_RxN = (np.asarray(a) for a in codes_and_errors(
        sae_states, jnp.asarray(x_BxD), jnp.asarray(held_B)))
    errors += error_R
    counts += counts_RxN
    held_x = x_BxD[held_B].astype(np.float64)
    held_sum += held_x.sum(0)
    held_sq += float(np.square(held_x).sum())
    held_tokens += int(held_B.sum())
    starts, seg_docs = _segments(docs_B)
    pooled_sum[seg_docs] += np.add.reduceat(x_BxD.astype(np.float64), starts, axis=0)
    # Activations are >= 0 (ReLU codes), so the zero-initialised running maxima are exact.
    atom_max[:, seg_docs] = np.maximum(atom_max[:, seg_docs], np.maximum.reduceat(acts, starts, axis=1))
    theme_max[:, seg_docs] = np.maximum(theme_max[:, seg_docs],
                                        np.maximum.reduceat(theme_acts, starts, axis=1))
    theme_sum[:, seg_docs] += np.add.reduceat(theme_acts.astype(np.float64), starts, axis=1)
    k = min(top_k, x_BxD.shape[0])
    best = np.argpartition(-theme_acts, k - 1, axis=1)[:, :k]          # (R, k, T)
    values = np.take_along_axis(theme_acts, best, axis=1)
    merged_values = np.concatenate([top_values, np.swapaxes(values, 1, 2)], axis=2)
    merged_rows = np.concatenate([top_rows, np.swapaxes(best, 1, 2) + start], axis=2)
    order = np.argsort(-merged_values, axis=2, kind="stable")[:, :, :top_k]
    top_values = np.take_along_axis(merged_values, order, axis=2)
    top_rows = np.take_along_axis(merged_rows, order, axis=2)
  tokens_D = np.diff(source.rows.doc_offsets).astype(np.float64)
  variance = held_sq - np.square(held_sum).sum() / max(held_tokens, 1)
  return DocumentStatistics(
      pooled_mean_DxF=(pooled_sum / np.maximum(tokens_D, 1)[:, None]).astype(np.float32),
      atom_max_RxDxN=atom_max, theme_max_RxDxT=theme_max,
      theme_mean_RxDxT=(theme_sum / np.maximum(tokens_D, 1)[None, :, None]).astype(np.float32),
      top_rows_RxTxK=top_rows, top_values_RxTxK=top_values,
      fvu_R=errors / max(variance, 1e-30), l0_R=counts.sum(-1) / max(held_tokens, 1),
      dead_fraction_R=(counts == 0).mean(-1), num_held_out_tokens=held_tokens)


# ----------------------------------------------------------------------------- forward passes

# Batches are padded to a multiple of this many tokens: few shapes, so few compiled forward passes.
PAD_TO_MULTIPLE = 32


def token_batches(model: Any, texts: Sequence[str], max_length: int, batch_size: int
                  ) -> list[tuple[np.ndarray, Any]]:
  """(rows, Tokens) batches of `texts` in order of decreasing length (little padding per batch)."""
  id_lists, _ = model.token_ids(texts, max_length)
  order = np.argsort(-np.asarray([len(ids) for ids in id_lists], np.int64), kind="stable")
  chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
  return [(rows, model.pad([id_lists[j] for j in rows], PAD_TO_MULTIPLE)) for rows in chunks]


def forward(model: Any, layer: str, tokens: Any, delta_BxTxD: jax.Array | None = None
            ) -> tuple[jax.Array, jax.Array]:
  """(sentence embeddings, the layer's activation x + delta) with `delta` added at the layer (None: 0).

  Every pass of the study (clean, spliced, ablated, steered) is this one program: a splice is the delta
  x̂ − x, an ablation m − x; so only the batch shape decides what compiles. The clean pass (delta 0)
  gives the clean activations the other deltas are built from.
  """
  ids, mask = tokens.input_ids_BxT, tokens.attention_mask_BxT
  width = model.config.intermediate_size if layer.endswith("ffn_hidden") else model.config.hidden_size
  if delta_BxTxD is None:
    delta_BxTxD = jnp.zeros(ids.shape + (width,), jnp.float32)
  emb, acts = model.apply(model.params, ids, mask, capture=(layer,), add={layer: delta_BxTxD})
  return emb, acts[layer]


def embeddings(model: Any, layer: str, batches: list, num_items: int) -> np.ndarray:
  """Clean sentence embeddings (N, E) through the study's one forward program (`forward`)."""
  out = np.zeros((num_items, model.config.hidden_size), np.float32)
  for rows, tokens in batches:
    out[rows] = np.asarray(forward(model, layer, tokens)[0])
  return out


def spliced_embeddings(model: Any, layer: str, batches: list, sae_states: Any, sae_cfg: sae.SAEConfig,
                       num_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(clean (N, E), spliced (R, N, E), mean-ablated (N, E)) sentence embeddings.

  Spliced: the layer's activation replaced by each SAE run's reconstruction at every real token;
  mean-ablated: replaced by the mean activation of the batch's real tokens (the floor a splice is
  measured against, as the zero or mean ablation of CE-loss-recovered).
  """
  runs = int(sae_states["k"].shape[0])
  reconstruct = jax.jit(jax.vmap(lambda state, x: sae.apply(state, x, sae_cfg)[0], in_axes=(0, None)))
  clean = np.zeros((num_items, model.config.hidden_size), np.float32)
  spliced = np.zeros((runs, num_items, model.config.hidden_size), np.float32)
  ablated = np.zeros_like(clean)
  for rows, tokens in batches:
    emb, acts_BxTxD = forward(model, layer, tokens)
    clean[rows] = np.asarray(emb)
    real = jnp.asarray(tokens.attention_mask_BxT, bool)[..., None]
    x_hat = reconstruct(sae_states, acts_BxTxD.reshape(-1, acts_BxTxD.shape[-1])).reshape(
        (runs,) + acts_BxTxD.shape)
    for r in range(runs):
      splice_BxTxD = jnp.where(real, x_hat[r] - acts_BxTxD, 0.0)
      spliced[r, rows] = np.asarray(forward(model, layer, tokens, splice_BxTxD)[0])
    mean_D = jnp.sum(jnp.where(real, acts_BxTxD, 0.0), axis=(0, 1)) / jnp.maximum(jnp.sum(real), 1)
    ablated[rows] = np.asarray(forward(model, layer, tokens, jnp.where(real, mean_D - acts_BxTxD, 0.0))[0])
  return clean, spliced, ablated


def steered_embeddings(model: Any, layer: str, batches: list, vectors_VxD: np.ndarray,
                       strengths_A: Sequence[float], num_items: int) -> tuple[np.ndarray, np.ndarray]:
  """(clean (N, E), steered (V, A, N, E)) embeddings: vector v added at every real token of `layer`,
  norm-matched to strength α of the token's own activation norm (steering.norm_matched_delta)."""
  clean = np.zeros((num_items, model.config.hidden_size), np.float32)
  steered = np.zeros((len(vectors_VxD), len(strengths_A), num_items, model.config.hidden_size), np.float32)
  for rows, tokens in batches:
    emb, acts_BxTxD = forward(model, layer, tokens)
    clean[rows] = np.asarray(emb)
    mask = jnp.asarray(tokens.attention_mask_BxT)
    for v, vector_D in enumerate(vectors_VxD):
      for a, strength in enumerate(strengths_A):
        delta = steering.norm_matched_delta(jnp.asarray(vector_D), acts_BxTxD, strength, mask)
        steered[v, a, rows] = np.asarray(forward(model, layer, tokens, delta)[0])
  return clean, steered
