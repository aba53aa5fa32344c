"""The downstream stages on text: they read a `result.CodecResult` of a text source and run after the
codec (`config.stages`), on the source's model and labelled corpus.

Stages (outputs under the workdir):
  1. atlas contexts: the text of every atom's top-activating tokens, added to atlas.json;
  2. reconstruction quality (FVU, L0, dead fraction; the SAE's reconstruction spliced into the model:
     cosine of the spliced to the clean sentence embedding, AG News probe accuracy clean, spliced and
     mean-ablated): metrics/reconstruction.json;
  3. themes on real text (clusters of decoder rows, their top tokens and contexts, mean activation per
     class): metrics/themes_text.json;
  4. thematic steering against random directions of the same norm (steering_study): metrics/steering.json,
     plots/steering.png, plots/snr.png;
  5. detection of an AG News class (detection_study): metrics/detection.json, plots/roc.png;
  6. the replication table (equivalence within declared margins, Holm over the table, the codec's
     Validation Hypothesis and OR prevalence rows included) and the hypotheses (Holm) for report.md and
     report.json (`TextReport`, written with the codec's report); a smoke run or one of fewer than 5 seeds
     gives no verdict and says so in a banner.

The SAE learns from every document (its training uses no labels); the linear probes, the choice of the
target theme and DiffMean use the training documents (`data.train_fraction` of each class), and the
steering and splicing measurements use the held-out ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from mpcodec.core import io, stats
from mpcodec.core.errors import ConfigError
from mpcodec.core import probe as probe_lib
from mpcodec.data import corpora
from mpcodec.metrics import steering
from mpcodec.metrics import themes as themes_lib
from mpcodec.studies.codec import (detection_study, generation_report, generation_stage, minilm_passes, splice_stage,
                                   steering_study, streams, text_claims, text_models, text_plots, text_report)
from mpcodec.studies.codec.config import TextThemeConfig


@dataclasses.dataclass(frozen=True)
class TextReport:
  """The text stages' part of the run's report: report.md's sections (`markdown`), report.json's fields
  (the codec's own report goes under "codec"), why no verdict is given (None when verdicts are) and the
  stages' payloads (reconstruction, themes, steering, detection, claims, hypotheses)."""

  markdown: str
  report: dict[str, Any]
  no_verdict: str | None
  payloads: dict[str, Any]


def chosen_k(cfg: Any) -> int:
  k_values = sorted(cfg.sae.k_values)
  return cfg.data.chosen_k or k_values[(len(k_values) - 1) // 2]


def train_split(labels_D: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Boolean training mask: round(fraction · size) documents of each class, drawn with (seed, 'train')."""
  return detection_study.stratified_parts(labels_D, 1, (fraction,), seed + 7_777)[0] == 1


def _themes(cfg: TextThemeConfig, states: Any, live_RxN: np.ndarray, seed: int
            ) -> list[themes_lib.ThemeClustering]:
  rows = np.asarray(states["params"]["w_dec_NxD" if cfg.vectors == "decoder" else "w_enc_NxD"])
  return [themes_lib.cluster_atoms(vectors_NxD=rows[r], method=cfg.method, k_range=cfg.k_range,
                                   live_N=live_RxN[r], seed=seed) for r in range(rows.shape[0])]


def _membership(clusterings: list[themes_lib.ThemeClustering]) -> np.ndarray:
  num_themes = max(max(c.num_themes for c in clusterings), 1)
  members = np.zeros((len(clusterings), clusterings[0].labels_N.shape[0], num_themes), np.float32)
  for r, c in enumerate(clusterings):
    atoms = np.flatnonzero(c.labels_N >= 0)
    members[r, atoms, c.labels_N[atoms]] = 1.0
  return members


def _context(source: Any, row: int, width: int) -> dict[str, Any]:
  """The token at cache row `row` with `width` tokens of its document on each side."""
  doc = int(source.rows.doc_index_N[row])
  rows = source.document_rows(doc)
  lo, hi = max(rows.start, row - width), min(rows.stop, row + width + 1)
  tokens = source.token_strings(source.rows.token_id_N[lo:hi])
  at = row - lo
  return {"document": doc, "position": int(source.rows.position_N[row]), "token": tokens[at],
          "context": " ".join(tokens[:at] + ["[[" + tokens[at] + "]]"] + tokens[at + 1:])}


def add_atlas_contexts(workdir: str, source: Any, analysis_cfg: Any, context_tokens: int) -> None:
  """Adds to every atom of atlas.json the text of its top-activating tokens (`top_contexts`).

  The atlas names a top input by its index t in the analysis window (batch t // B of the window, row
  t % B); the text source maps that batch row to a cached token row, hence a document, position and
  context.
  """
  path = os.path.join(workdir, "atlas.json")
  if not os.path.isfile(path):
    return
  with open(path, encoding="utf-8") as f:
    atlas = json.load(f)
  batch, rows_of_step = analysis_cfg.batch_size, {}
  for atom in atlas.get("atoms", []):
    contexts = []
    for top in atom.get("top_inputs", []):
      step = streams.ANALYSIS_START + top["token"] // batch
      if step not in rows_of_step:
        rows_of_step[step] = source.indices(step, batch)
      row = int(rows_of_step[step][top["token"] % batch])
      contexts.append(dict(_context(source, row, context_tokens), code=top["code"]))
    atom["top_contexts"] = contexts
  atlas["context_definition"] = ("top_contexts[j]: the text of top_inputs[j]: its document (AG News row), "
                                 "position, WordPiece token and the tokens around it, the token in [[ ]]")
  io.write_json(path, atlas)


def themes_payload(cfg: Any, source: Any, clustering: themes_lib.ThemeClustering,
                   doc_stats: minilm_passes.DocumentStatistics, labels_D: np.ndarray, train_D: np.ndarray,
                   class_names: tuple[str, ...], k: int) -> dict[str, Any]:
  """metrics/themes_text.json: every theme of seed 0 with its tokens, contexts and class profile."""
  target = cfg.data.target_class
  selectivity = steering_study.selectivity(doc_stats.theme_max_RxDxT[0][train_D], (labels_D == target)[train_D])
  entries = []
  for theme in range(clustering.num_themes):
    rows = [int(r) for r in doc_stats.top_rows_RxTxK[0, theme] if r >= 0]
    contexts = [dict(_context(source, r, cfg.themes.context_tokens), activation=float(v))
                for r, v in zip(rows, doc_stats.top_values_RxTxK[0, theme])]
    tokens, counts = np.unique([c["token"] for c in contexts], return_counts=True) if contexts else ([], [])
    order = np.argsort(-np.asarray(counts), kind="stable")
    entries.append({
        "theme": theme, "size": int(np.sum(clustering.labels_N == theme)),
        "target_selectivity": float(selectivity[theme]),
        "top_tokens": [str(tokens[i]) for i in order], "contexts": contexts,
        "mean_max_by_class": [float(doc_stats.theme_max_RxDxT[0][labels_D == c, theme].mean())
                              for c in range(len(class_names))],
        "mean_by_class": [float(doc_stats.theme_mean_RxDxT[0][labels_D == c, theme].mean())
                          for c in range(len(class_names))]})
  entries.sort(key=lambda e: -e["target_selectivity"])
  return {"k": k, "method": cfg.themes.method, "vectors": cfg.themes.vectors,
          "num_themes": clustering.num_themes,
          "criterion": clustering.criterion, "scores": clustering.scores, "reason": clustering.reason,
          "class_names": list(class_names), "target_class": class_names[target], "themes": entries}


def reconstruction_payload(model: Any, cfg: Any, result: Any, probe: probe_lib.Probe,
                           texts: list[str], labels_N: np.ndarray) -> dict[str, Any]:
  """metrics/reconstruction.json: per SAE run FVU / L0 / dead, and the splice into the model."""
  batches = minilm_passes.token_batches(model, texts, cfg.source.text.max_length, cfg.steering.batch_size)
  clean, spliced, ablated = minilm_passes.spliced_embeddings(model, cfg.source.text.layer, batches, result.sae_states,
                                                             cfg.sae, len(texts))
  acc = lambda e: float(probe_lib.accuracy(probe, e, labels_N))  # noqa: E731
  acc_clean, acc_ablated = acc(clean), acc(ablated)
  runs = []
  for r, label in enumerate(result.run_labels):
    cosine = 1.0 - np.asarray(steering.cosine_drift(clean, spliced[r]))
    acc_spliced = acc(spliced[r])
    gap = acc_clean - acc_ablated
    runs.append(dict(label, fvu=float(result.sae_metrics["fvu"][r]), l0=float(result.sae_metrics["l0"][r]),
                     dead_fraction=float(result.sae_metrics["dead_fraction"][r]),
                     spliced_cosine=float(cosine.mean()),
                     accuracy_clean=acc_clean, accuracy_spliced=acc_spliced, accuracy_ablated=acc_ablated,
                     accuracy_recovered=(acc_spliced - acc_ablated) / gap if gap > 0 else None,
                     ablated_cosine=float(1.0 - np.asarray(steering.cosine_drift(clean, ablated)).mean())))
  return {"num_documents": len(texts), "runs": runs,
          "definition": "FVU, L0, dead: the codec's evaluation window; splice: held-out documents"}


@contextlib.contextmanager
def _stage(name: str):
  started = time.perf_counter()
  yield
  logging.info("text stage %s took %.1f s", name, time.perf_counter() - started)


def run(workdir: str, result: Any) -> TextReport:
  """Every text stage in order (see the module docstring) on `result`; writes their metrics and plots and
  returns their part of the report. A bad model directory, layer or corpus has stopped the run before any
  training (the source is built first)."""
  cfg, source = result.cfg, result.source
  model, corpus = source.model.model, source.corpus
  smoke = cfg.smoke
  layer, max_length = cfg.source.text.layer, cfg.source.text.max_length
  with _stage("atlas contexts"):
    add_atlas_contexts(workdir, source, cfg.analysis, cfg.themes.context_tokens)
  neutral = corpora.shakespeare_lines(cfg.source.text.data_dir or None, cfg.data.shakespeare_lines)
  labels_D, target = corpus.labels, cfg.data.target_class
  train_D = train_split(labels_D, cfg.data.train_fraction, cfg.seed)
  held_out = np.flatnonzero(~train_D)
  batch_size = cfg.steering.batch_size
  want = set(cfg.stages)
  reconstruction = themes_text = steering_payload = detection_payload = detection_result = None
  if want & {"reconstruction", "steering"}:   # both read the probe on sentence embeddings
    with _stage("sentence embeddings and probe"):
      all_batches = minilm_passes.token_batches(model, corpus.texts, max_length, batch_size)
      embeddings = minilm_passes.embeddings(model, layer, all_batches, len(corpus))
      probe = probe_lib.fit(embeddings[train_D], labels_D[train_D], len(corpus.class_names), cfg.data.probe)
  if "reconstruction" in want:
    with _stage("reconstruction and splicing"):
      splice_rows = _spread(held_out, cfg.data.splice_items)
      reconstruction = reconstruction_payload(model, cfg, result, probe, [corpus.texts[i] for i in splice_rows],
                                              labels_D[splice_rows])
      reconstruction["probe_accuracy_held_out"] = float(probe_lib.accuracy(probe, embeddings[~train_D],
                                                                           labels_D[~train_D]))
      reconstruction["num_truncated"] = source.num_truncated
      _write_metrics(workdir, "reconstruction.json", reconstruction)

  k = chosen_k(cfg)
  chosen = [r for r, label in enumerate(result.run_labels) if label["k"] == k]
  states = jax.tree.map(lambda a: a[np.asarray(chosen)], result.sae_states)
  seed_indices = [result.run_labels[r]["seed_index"] for r in chosen]
  is_target = labels_D == target
  if "themes_text" in want:   # steering and detection read its themes (the config makes them need it)
    with _stage("themes on text"):
      clusterings = _themes(cfg.themes, states, result.sae_metrics["firing_counts"][chosen] > 0, cfg.seed)
      empty = [c.reason for c in clusterings if c.num_themes == 0]
      if empty:
        raise ConfigError(f"config.themes: no themes could be formed for SAE k={k}: {empty}")
      doc_stats = minilm_passes.document_statistics(source, states, cfg.sae, _membership(clusterings),
                                                    ~train_D, top_k=cfg.themes.top_contexts)
      themes_text = themes_payload(cfg, source, clusterings[0], doc_stats, labels_D, train_D,
                                   corpus.class_names, k)
      _write_metrics(workdir, "themes_text.json", themes_text)

  if "steering" in want:
    with _stage("steering"):
      decoders = np.asarray(states["params"]["w_dec_NxD"])
      choices = [dict(steering_study.choose_vectors(decoders[r], clusterings[r].labels_N,
                                                    doc_stats.theme_max_RxDxT[r], doc_stats.atom_max_RxDxN[r],
                                                    is_target, train_D, cfg.steering.snr_atoms),
                      random_vectors=steering_study.random_control(cfg.seed, seed_indices[r],
                                                                   cfg.steering.random_directions,
                                                                   decoders.shape[-1]))
                 for r in range(len(chosen))]
      diffmean = np.asarray(steering.difference_of_means(doc_stats.pooled_mean_DxF[train_D],
                                                         is_target[train_D]))
      steer_rows = _spread(held_out[~is_target[held_out]], cfg.steering.steering_items)
      steered = steering_study.run_steering(
          model, layer, max_length, cfg.steering, probe, target, [corpus.texts[i] for i in steer_rows],
          list(neutral.texts[:cfg.steering.neutral_items]), choices, diffmean)
      public = [dict({key: value for key, value in c.items() if "vector" not in key}, k=k,
                     seed_index=seed_indices[r]) for r, c in enumerate(choices)]
      steering_payload = dict(text_claims.steering_summary(steered, cfg.steering.reference_strength, public),
                              target_class=corpus.class_names[target])
  if "detection" in want:
    with _stage("detection"):
      detection_result = detection_study.run_detection(cfg.detection, labels_D, target,
                                                       doc_stats.pooled_mean_DxF, doc_stats.theme_max_RxDxT,
                                                       cfg.seed)
      detection_payload = dict(text_claims.detection_summary(detection_result),
                               target_class=corpus.class_names[target])

  splice_payload = generation_payload = None
  if "splice" in want:
    with _stage("splice"):
      splice_payload = splice_stage.run(
          model, layer, max_length, batch_size, {"ag_news_held_out": [corpus.texts[i] for i in _spread(
              held_out, cfg.data.splice_items)], "shakespeare": list(neutral.texts[:cfg.steering.neutral_items])},
          states, cfg.sae, seed_indices)
      _write_metrics(workdir, "splice.json", splice_payload)
  if "generation" in want:
    with _stage("generation"):
      generation_payload = generation_stage.run(cfg, source, states, clusterings, doc_stats, labels_D, train_D,
                                                held_out, neutral.texts, seed_indices)
  steered_claims = steering_payload or generation_payload   # a causal LM's steering claims come from generation
  num_seeds = len(set(seed_indices))
  no_verdict = text_claims.no_verdict_reason(num_seeds, smoke)
  steering_keys = ("doubling", "stability", "snr")
  tests = (text_claims.analysis_claims(result.analysis, smoke)
           + (text_claims.steering_tests(steered_claims, smoke) if steered_claims
              else text_claims.not_run(steering_keys, "steering"))
           + (text_claims.detection_tests(detection_payload, smoke) if detection_payload
              else text_claims.not_run(("detection",), "detection")))
  claims = text_claims.replication_table(tests)
  by_key = {row["key"]: row for row in claims}
  found = text_claims.hypotheses(steered_claims, detection_payload, smoke)
  plots = os.path.join(workdir, "plots")
  if steering_payload is not None:
    steering_payload["claims"] = {key: by_key[key] for key in steering_keys}
    steering_payload["hypotheses"] = {key: found[key] for key in ("theme_above_random", "atom_above_random")}
    _write_metrics(workdir, "steering.json", steering_payload)
    text_plots.plot_steering(steering_payload, os.path.join(plots, "steering.png"))
    text_plots.plot_snr(steering_payload, os.path.join(plots, "snr.png"))
  if generation_payload is not None:
    generation_payload["claims"] = {key: by_key[key] for key in steering_keys}
    generation_payload["hypotheses"] = {key: found[key] for key in ("theme_above_random", "atom_above_random")}
    _write_metrics(workdir, "generation.json", generation_payload)
    generation_report.plot(generation_payload, os.path.join(plots, "generation.png"))
  if detection_payload is not None:
    detection_payload["claims"] = {"detection": by_key["detection"]}
    detection_payload["hypotheses"] = {"theme_detector_above_probe": found["theme_detector_above_probe"]}
    _write_metrics(workdir, "detection.json", detection_payload)
    text_plots.plot_roc(detection_result["roc"], cfg.detection.max_fpr, os.path.join(plots, "roc.png"))
  text = text_report.report_markdown(
      source=source.description, reconstruction=reconstruction, themes=themes_text, steering=steering_payload,
      detection=detection_payload, claims=claims, hypotheses=found,
      analysis_note=text_claims.analysis_note(result.analysis),
      analysis_themes=(result.analysis or {}).get("themes"), no_verdict=no_verdict,
      model_title=text_models.adapter_class(cfg.source.text.model).report_title)
  if want & {"splice", "generation"}:
    text += "\n" + "\n".join((splice_stage.markdown(splice_payload) if "splice" in want else [])
                              + (generation_report.markdown(generation_payload) if "generation" in want else []))
  report = {"smoke": bool(smoke), "num_seeds": num_seeds, "min_seeds": stats.MIN_SEEDS,
            "no_verdict_reason": no_verdict, "replication": list(claims), "hypotheses": dict(found)}
  payloads = {"reconstruction": reconstruction, "themes": themes_text, "steering": steering_payload,
              "splice": splice_payload, "generation": generation_payload,
              "detection": detection_payload, "claims": claims, "hypotheses": found}
  return TextReport(markdown=text, report=report, no_verdict=no_verdict, payloads=payloads)


def _write_metrics(workdir: str, name: str, payload: Any) -> None:
  io.write_json(os.path.join(workdir, "metrics", name), payload)


def _spread(rows: np.ndarray, count: int) -> np.ndarray:
  """At most `count` of `rows`, evenly spaced (so a subset spans the classes and the file)."""
  return rows[np.linspace(0, rows.size - 1, min(count, rows.size)).round().astype(int)] if rows.size else rows

