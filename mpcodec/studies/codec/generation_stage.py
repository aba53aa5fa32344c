"""The `generation` stage: generative steering of a causal LM at the SAE's layer, in the earlier study's
terms (`mpcodec.metrics.generative_steering`).

For each SAE seed and each AG News topic, the theme most selective for the topic (Cohen's d of its max
activation on the training documents; `steering_study.choose_vectors`, which also gives the topic's most
selective member atom and the SNR atom sets) is labelled by its top tokens and mean activation per topic.
Its target tokens are fixed from held-out documents before any steering: the `steering.target_tokens`
tokens most raised by the topic (smoothed log ratio of their frequency in the topic's held-out documents to
that in the other topics', seen at least twice in the topic). Methods, each a direction at the same norm:
theme (sum of the theme's decoder rows), atom, DiffMean (topic mean minus the other topics' mean of the
layer, training documents; seed 0 only, it does not depend on the SAE) and random (same-norm random
directions per seed, `steering_study.random_control`; their mean).

On neutral Shakespeare lines (`steering.neutral_items`), at every strength α of `steering.strengths` the
delta α·‖x_t‖·v̂ is added at every real token (norm-matched): target mass steered vs unsteered and KL of
the next-token distributions, means over every real position. Generation: greedy continuations (`steering.generation_tokens` new
tokens) of `steering.generation_prompts` neutral prompts (cut to `steering.prompt_tokens`) with the vector added at every position at α times the prompts' mean
activation norm (`generate` adds one vector), scored by the unsteered model (continuation perplexity):
every method and strength for the target topic (`data.target_class`); for the other topics, the theme's
samples at three strengths (the smallest, the reference, the largest), to keep the stage's cost down.
SNR vs N: the N most topic-selective atoms summed, at `steering.snr_strength`, effect δ = change of the
next-token log-probabilities, target direction = the indicator of the target tokens minus its mean
(`metrics.steering.population_snr`'s formula pooled over batches), exponent by `snr_exponent`.
The claims read the target topic (`data.target_class`) through `text_claims.steering_summary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.metrics import generative_steering as gs
from mpcodec.metrics import steering
from mpcodec.studies.codec import steering_study, text_claims

METHODS = ("theme", "atom", "diffmean", "random")


def sample_strengths(strengths: Sequence[float], reference: float) -> list[int]:
  """Indices of the strengths samples are shown at: the smallest, the reference and the largest."""
  return sorted({0, list(strengths).index(reference), len(strengths) - 1})


def target_tokens(id_lists: Sequence[Sequence[int]], is_topic_D: np.ndarray, vocab: int, count: int) -> list[int]:
  """The `count` tokens most raised by a topic: log((c_in + 1) / (n_in + V)) − log((c_out + 1) / (n_out + V)),
  among tokens seen at least twice in the topic's texts; ties broken by token id."""
  c_in, c_out = np.zeros(vocab), np.zeros(vocab)
  for ids, inside in zip(id_lists, is_topic_D):
    np.add.at(c_in if inside else c_out, np.asarray(ids, np.int64), 1.0)
  score = np.log((c_in + 1) / (c_in.sum() + vocab)) - np.log((c_out + 1) / (c_out.sum() + vocab))
  score = np.where(c_in >= 2, score, -np.inf)
  order = np.lexsort((np.arange(vocab), -score))
  return [int(t) for t in order[:count] if np.isfinite(score[t])]


def _batches(model: Any, texts: Sequence[str], max_length: int, batch_size: int) -> list[tuple[np.ndarray, ...]]:
  ids, _ = model.token_ids(list(texts), max_length)
  out = []
  for start in range(0, len(ids), batch_size):
    tokens = model.pad(ids[start:start + batch_size], pad_to_multiple=16)
    out.append((np.asarray(tokens.input_ids_BxT), np.asarray(tokens.attention_mask_BxT)))
  return out


def _block_of(layer: str) -> int:
  """The block a `block_<i>/<kind>` layer lies in (steered passes start there)."""
  return int(layer.split("/")[0][len("block_"):]) if layer.startswith("block_") else 0


def measure(model: Any, layer: str, batches: list, vectors_VxD: np.ndarray, strengths: Sequence[float],
            target_ids: Sequence[int], snr: bool = False) -> dict[str, np.ndarray]:
  """Per vector and strength (V, A): mean target mass clean / steered and mean KL over every real position
  of the neutral batches; with `snr`, the pooled SNR of the log-probability change along the targets.
  A steered pass starts at the layer's block from the clean pass's residual stream entering it."""
  vectors_VxD = np.asarray(vectors_VxD, np.float32)
  shape = (vectors_VxD.shape[0], len(strengths))
  sums = {k: np.zeros(shape) for k in ("p_target_clean", "p_target_steered", "kl", "along", "off")}
  targets = jnp.asarray(sorted(set(target_ids)) or [0], jnp.int32)
  block = _block_of(layer)
  entering = [f"block_{block - 1}/residual"] if block > 0 else []
  count = 0
  for ids, mask in batches:
    logits, acts = model.apply(model.params, ids, mask, capture=[layer, *entering])
    start = (block, acts[entering[0]]) if entering else None
    real = mask.astype(bool)
    count += int(real.sum())
    logp_clean = jax.nn.log_softmax(logits[real], axis=-1)
    mass_clean = float(jnp.sum(gs.target_mass(logits[real], targets))) if target_ids else 0.0
    unit_V = (jnp.zeros(logits.shape[-1]).at[targets].set(1.0) - len(set(target_ids)) / logits.shape[-1])
    unit_V = unit_V / jnp.maximum(jnp.linalg.norm(unit_V), 1e-12)
    for v, vector in enumerate(vectors_VxD):
      for a, alpha in enumerate(strengths):
        delta = steering.norm_matched_delta(jnp.asarray(vector), acts[layer], float(alpha), jnp.asarray(mask))
        steered = model.apply(model.params, ids, mask, add={layer: delta}, start=start)[0][real]
        sums["p_target_clean"][v, a] += mass_clean
        sums["p_target_steered"][v, a] += float(jnp.sum(gs.target_mass(steered, targets))) if target_ids else 0.0
        sums["kl"][v, a] += float(jnp.sum(gs.next_token_kl(logits[real], steered)))
        if snr:
          change = jax.nn.log_softmax(steered, axis=-1) - logp_clean
          along = change @ unit_V
          sums["along"][v, a] += float(jnp.sum(along))
          sums["off"][v, a] += float(jnp.sum(jnp.linalg.norm(change - along[:, None] * unit_V, axis=-1)))
  out = {k: sums[k] / max(count, 1) for k in ("p_target_clean", "p_target_steered", "kl")}
  if snr:
    out["snr"] = sums["along"] / np.maximum(sums["off"], 1e-12)
  return out


def continuations(model: Any, layer: str, prompt_ids: list, vectors_VxD: np.ndarray, strengths: Sequence[float],
                  new_tokens: int) -> tuple[np.ndarray, list]:
  """Greedy continuations of the prompts with each vector at each strength (α × the prompts' mean activation
  norm at `layer`) and their perplexity under the unsteered model: ((V, A) mean perplexity, new ids [v][a]).
  Every vector, strength and prompt is one row of a single batched generation (one steering per row)."""
  tokens = model.pad(prompt_ids)
  acts = model.activations(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT, [layer])[layer]
  mask = np.asarray(tokens.attention_mask_BxT, bool)
  scale = float(np.linalg.norm(np.asarray(acts)[mask], axis=-1).mean())
  units = np.stack([np.asarray(steering.unit_direction(jnp.asarray(v))) for v in np.asarray(vectors_VxD, np.float32)])
  num_v, num_a, num_p = len(units), len(strengths), len(prompt_ids)
  rows_RxF = np.repeat((np.asarray(strengths, np.float32)[None, :, None] * scale * units[:, None, :]
                        ).reshape(num_v * num_a, -1), num_p, axis=0)   # row order: vector, strength, prompt
  rows = [list(p) for _ in range(num_v * num_a) for p in prompt_ids]
  batch = model.pad(rows)
  new, _ = model.generate(model.params, batch, new_tokens, add={layer: rows_RxF})
  full = [p + [int(t) for t in n] for p, n in zip(rows, new)]
  padded = model.pad(full)
  scored = np.zeros(padded.input_ids_BxT.shape, np.float32)
  scored[:, -new_tokens:] = 1.0
  logits = model.apply(model.params, padded.input_ids_BxT, padded.attention_mask_BxT)[0]
  per_row = np.asarray(gs.continuation_perplexity(logits, padded.input_ids_BxT, scored))
  ppl = per_row.reshape(num_v, num_a, num_p).mean(-1)
  new = np.asarray(new).reshape(num_v, num_a, num_p, -1)
  return ppl, [[new[v, a] for a in range(num_a)] for v in range(num_v)]


def run(cfg: Any, source: Any, states: Any, clusterings: list, doc_stats: Any, labels_D: np.ndarray,
        train_D: np.ndarray, held_out: np.ndarray, neutral_texts: Sequence[str], seed_indices: Sequence[int]
        ) -> dict[str, Any]:
  """metrics/generation.json (see the module docstring); the claims' part is `text_claims.steering_summary`
  of the target topic."""
  model, corpus, steer = source.model.model, source.corpus, cfg.steering
  layer, max_length, strengths = cfg.source.text.layer, cfg.source.text.max_length, list(steer.strengths)
  vocab = int(model.config.vocab_size)
  held_ids, _ = model.token_ids([corpus.texts[i] for i in held_out], max_length)
  neutral = list(neutral_texts[:steer.neutral_items])
  batches = _batches(model, neutral, max_length, steer.batch_size)
  prompts = model.token_ids(neutral[:steer.generation_prompts], steer.prompt_tokens)[0]
  base_new, _ = model.generate(model.params, model.pad(prompts), steer.generation_tokens)
  decoders = np.asarray(states["params"]["w_dec_NxD"])
  topics, target_result = [], None
  for c, name in enumerate(corpus.class_names):
    is_topic = labels_D == c
    targets = target_tokens(held_ids, is_topic[held_out], vocab, steer.target_tokens)
    diffmean = np.asarray(steering.difference_of_means(doc_stats.pooled_mean_DxF[train_D], is_topic[train_D]))
    rows = {m: [] for m in METHODS}
    ppl_rows = {m: [] for m in METHODS}
    snr_rows, themes, samples = [], [], {}
    for r, seed_index in enumerate(seed_indices):
      choice = steering_study.choose_vectors(decoders[r], clusterings[r].labels_N, doc_stats.theme_max_RxDxT[r],
                                             doc_stats.atom_max_RxDxN[r], is_topic, train_D, steer.snr_atoms)
      randoms = steering_study.random_control(cfg.seed, seed_index, steer.random_directions, decoders.shape[-1])
      methods = ["theme", "atom"] + (["diffmean"] if r == 0 else [])
      vectors = np.concatenate([np.stack([choice["theme_vector"], choice["atom_vector"], diffmean][:len(methods)]),
                                randoms])
      found = measure(model, layer, batches, vectors, strengths, targets)
      for m, method in enumerate(methods):
        rows[method].append({k: v[m] for k, v in found.items()})
      rows["random"].append({k: v[len(methods):].mean(0) for k, v in found.items()})
      if c == cfg.data.target_class:   # every method and strength (the first random direction)
        ppl, new_ids = continuations(model, layer, prompts, vectors[:len(methods) + 1], strengths,
                                     steer.generation_tokens)
        for m, method in enumerate(methods + ["random"]):
          ppl_rows[method].append(ppl[m])
        if r == 0:
          samples = {a: [model.decode(row) for row in new_ids[0][a]] for a in range(len(strengths))}
      elif r == 0:   # the other topics: the theme's samples at the three sample strengths
        picks = sample_strengths(strengths, steer.reference_strength)
        _, new_ids = continuations(model, layer, prompts, vectors[:1], [strengths[a] for a in picks],
                                   steer.generation_tokens)
        samples = {a: [model.decode(row) for row in new_ids[0][i]] for i, a in enumerate(picks)}
      if c == cfg.data.target_class:
        counts = choice["snr_counts"]
        if len(counts) >= 2:
          snr = measure(model, layer, batches, choice["snr_vectors"], [steer.snr_strength], targets, snr=True)
          values = snr["snr"][:, 0]
          ok = bool(np.all(values > 0))
          snr_rows.append({"seed_index": int(seed_index), "atoms": counts, "snr": values.tolist(),
                           "exponent": float(gs.snr_exponent(jnp.asarray(counts), jnp.asarray(values))) if ok
                           else float("nan"), "reason": None if ok else "a non-positive SNR has no logarithm"})
        else:
          snr_rows.append({"seed_index": int(seed_index), "atoms": counts, "snr": [], "exponent": float("nan"),
                           "reason": "fewer than two atom counts fit in the dictionary"})
      theme = choice["theme"]
      top = [int(i) for i in doc_stats.top_rows_RxTxK[r, theme] if i >= 0]
      themes.append({"seed_index": int(seed_index), "theme": theme, "size": choice["theme_size"],
                     "selectivity": choice["theme_selectivity"], "atom": choice["atom"],
                     "top_tokens": source.token_strings(source.rows.token_id_N[top]) if top else [],
                     "mean_by_topic": [float(doc_stats.theme_mean_RxDxT[r][labels_D == k, theme].mean())
                                       for k in range(len(corpus.class_names))]})
    stacked = {m: {k: np.stack([row[k] for row in rs]) for k in rs[0]} for m, rs in rows.items()}
    table = {m: {k: [text_claims.interval(v[:, a]) for a in range(len(strengths))] for k, v in metrics.items()}
             for m, metrics in stacked.items()}
    for m, values in ppl_rows.items():
      table[m]["continuation_perplexity"] = [text_claims.interval(np.asarray(values)[:, a] if values else [])
                                             for a in range(len(strengths))]
    topics.append({"topic": name, "target_tokens": [model.decode([t]) for t in targets], "target_ids": targets,
                   "themes": themes, "table": table, "samples": samples})
    if c == cfg.data.target_class:
      target_result = {"strengths": strengths, "sets": {"steering": stacked, "neutral": stacked}, "snr": snr_rows,
                       "snr_strength": steer.snr_strength, "random_directions": steer.random_directions}
  public = [{key: t[key] for key in ("seed_index", "theme", "atom")} for t in topics[cfg.data.target_class]["themes"]]
  summary = text_claims.steering_summary(target_result, steer.reference_strength, public)
  summary["definitions"] = {
      "doubling": "per SAE seed: log(mean target mass steered / unsteered), theme vector at the reference "
                  "strength, next-token distributions on neutral lines, target tokens of the target topic",
      "stability": "per SAE seed: log(KL(single atom) / KL(theme)) of the next-token distributions on neutral "
                   "lines at the reference strength",
      "snr": "per SAE seed: exponent beta of SNR ∝ N^beta over the N most topic-selective atoms summed; SNR of "
             "the next-token log-probability change along the target tokens"}
  prompt_texts = [model.decode(p) for p in prompts]
  return dict(summary, layer=layer, target_class=corpus.class_names[cfg.data.target_class], topics=topics,
              prompts=prompt_texts, unsteered_continuations=[model.decode(row) for row in base_new],
              num_neutral_texts=len(neutral), gen_tokens=steer.generation_tokens)
