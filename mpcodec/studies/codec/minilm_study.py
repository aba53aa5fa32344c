"""The codec on a pretrained transformer: MiniLM's FFN neurons through the SAE and the Squeezer, themes on
real text, thematic steering against a random control and detection of an AG News class, with the replication
table of the earlier claims.

  python -m launch.codec --config=configs/codec_minilm.py --workdir=runs/codec_minilm

Stages (outputs under the workdir):
  1. the activations of `text.layer` (default the FFN hidden of block 2, 1,536 real neurons) over AG News,
     from the activation cache (`<workdir>/activation_cache` unless `text.cache_dir` is set);
  2. the SAE k sweep and the Squeezer back into M = 1,536 neurons (the codec pipeline's programs, run
     loop and checkpoints; resumable), then every part-2 analysis (`analysis.analyze`: truth tables and
     OR prevalence with nulls, the Validation Hypothesis on MiniLM's own FFN neurons with the permuted-
     Squeezer null, co-activation, tax, themes, atlas): metrics/sae.json, squeezer.json, analysis.json,
     atlas.json;
  3. reconstruction quality (FVU, L0, dead fraction; the SAE's reconstruction spliced into the model:
     cosine of the spliced to the clean sentence embedding, AG News probe accuracy clean, spliced and
     mean-ablated): metrics/reconstruction.json;
  4. themes on real text (clusters of decoder rows, their top tokens and contexts, mean activation per
     class): metrics/themes_text.json;
  5. thematic steering against random directions of the same norm (steering_study): metrics/steering.json,
     plots/steering.png, plots/snr.png;
  6. detection of an AG News class (detection_study): metrics/detection.json, plots/roc.png;
  7. report.md and report.json: the replication table (equivalence within declared margins, Holm over the
     table) and the study's hypotheses (Holm), by the statistics layer (minilm_report); a smoke run or one
     of fewer than 5 seeds gives no verdict and says so in a banner.

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
from typing import Any, Literal

import jax
import numpy as np
from absl import logging

from mpcodec.core import configuration, io
from mpcodec.core import probe as probe_lib
from mpcodec.core import progress as progress_lib
from mpcodec.core import workdir as workdir_lib
from mpcodec.core.errors import ConfigError
from mpcodec.core.optim import OptimConfig
from mpcodec.data import corpora
from mpcodec.metrics import steering
from mpcodec.metrics import themes as themes_lib
from mpcodec.models import minilm
from mpcodec.sae import autoencoder as sae
from mpcodec.studies.codec import (analysis, detection_study, minilm_codec, minilm_passes, minilm_report,
                                   pipeline, steering_study, text_source)
from mpcodec.studies.codec.pipeline import CodecConfig


@dataclasses.dataclass(frozen=True)
class TextDataConfig:
  """The documents' roles.

  Attributes:
    train_fraction: share of each AG News class the probes, the target theme and DiffMean are fit on.
    target_class: the class steered towards and detected (0 World, 1 Sports, 2 Business, 3 Sci/Tech).
    shakespeare_lines: neutral lines (evenly spaced through the corpus) for steering.
    splice_items: held-out documents run through the spliced model.
    chosen_k: the SAE k whose seeds feed themes, steering and detection (0: the middle of the k grid).
    encode_batch_size: texts per forward pass of the sentence encoder.
    probe: the linear probe on the final sentence embedding (4 classes).
  """

  train_fraction: float = 0.5
  target_class: int = 0
  shakespeare_lines: int = 512
  splice_items: int = 512
  chosen_k: int = 0
  encode_batch_size: int = 64
  probe: probe_lib.ProbeConfig = probe_lib.ProbeConfig()

  def checks(self):
    yield "train_fraction", 0.0 < self.train_fraction < 1.0, f"must lie in (0, 1), got {self.train_fraction}"
    yield "target_class", 0 <= self.target_class < 4, (
        f"must be an AG News class 0..3, got {self.target_class}")
    yield "shakespeare_lines", self.shakespeare_lines >= 1, f"must be >= 1, got {self.shakespeare_lines}"
    yield "splice_items", self.splice_items >= 1, f"must be >= 1, got {self.splice_items}"
    yield "encode_batch_size", self.encode_batch_size >= 1, f"must be >= 1, got {self.encode_batch_size}"


@dataclasses.dataclass(frozen=True)
class TextThemeConfig:
  """Themes on real text: clustering of the SAE's decoder (or encoder) rows (metrics.themes).

  k_range: numbers of themes tried (silhouette criterion); top_contexts: top-activating tokens kept per
  theme; context_tokens: tokens shown on each side of one.
  """

  method: Literal["spectral", "kmeans", "hdbscan"] = "spectral"
  vectors: Literal["decoder", "encoder"] = "decoder"
  k_range: tuple[int, ...] = (16, 24, 32, 48, 64)
  top_contexts: int = 16
  context_tokens: int = 6

  def checks(self):
    yield "k_range", len(self.k_range) >= 1 and all(k >= 2 for k in self.k_range), (
        f"must hold numbers of themes >= 2, got {self.k_range}")
    yield "top_contexts", self.top_contexts >= 1, f"must be >= 1, got {self.top_contexts}"
    yield "context_tokens", self.context_tokens >= 0, f"must be >= 0, got {self.context_tokens}"


# The codec of the full run: 6,144 latents (4x the layer), k in {16, 32}, 5 seeds (the statistics layer
# gives no verdict below 5: stats.MIN_SEEDS); AuxK over 256 dead latents; Adam at 3e-3. The Squeezer keeps
# the codec's defaults (K = 64 into M = the layer's 1,536); the tax sweep adds M = 384 and 768 (a 2x-wide
# Squeezer of 6,144 latents would cost more than the rest).
_CODEC = CodecConfig(
    num_seeds=5, tax_width_factors=(0.25, 0.5),
    sae=sae.SAEConfig(num_latents=6144, k=32, k_grid=(16, 32), aux_k=256, dead_tokens_threshold=200_000,
                      optim=OptimConfig(learning_rate=3e-3, warmup_steps=100, schedule="cosine",
                                        grad_clip_norm=1.0)),
)


@dataclasses.dataclass(frozen=True)
class MiniLMStudyConfig:
  """Every knob of the MiniLM codec study.

  Attributes:
    study: "minilm" (how `launch.codec` tells this study from the ground-truth codec).
    text: the activation source (model directory, layer, corpus, max_length, cache).
    codec: the SAE, Squeezer, loops and part-2 analyses (its `source` section is not used: the
      activations come from `text`).
    data, themes, steering, detection: the stages after the codec.
    smoke: a smoke run (the `:smoke` preset): report.md opens with a banner, report.json says
      `"smoke": true`, and every verdict, the codec section's included, reads "cannot be tested".
  """

  study: Literal["minilm"] = "minilm"
  smoke: bool = False
  text: text_source.TextSourceConfig = text_source.TextSourceConfig(max_length=128)
  codec: CodecConfig = _CODEC
  data: TextDataConfig = TextDataConfig()
  themes: TextThemeConfig = TextThemeConfig()
  steering: steering_study.SteeringConfig = steering_study.SteeringConfig()
  detection: detection_study.DetectionConfig = detection_study.DetectionConfig()

  def checks(self):
    yield "text.corpus", self.text.corpus == "ag_news", (
        f"must be 'ag_news' (the study needs its class labels), got {self.text.corpus!r}")
    k_values = self.codec.sae.k_values
    yield "data.chosen_k", self.data.chosen_k == 0 or self.data.chosen_k in k_values, (
        f"{self.data.chosen_k} is not one of the SAE's k values {list(k_values)}")


def parse_config(raw: Any) -> MiniLMStudyConfig:
  """Validates a ConfigDict into a MiniLMStudyConfig; raises ConfigError naming the key."""
  return configuration.parse(MiniLMStudyConfig, raw)


def chosen_k(cfg: MiniLMStudyConfig) -> int:
  k_values = sorted(cfg.codec.sae.k_values)
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
      step = analysis.ANALYSIS_START + top["token"] // batch
      if step not in rows_of_step:
        rows_of_step[step] = source.indices(step, batch)
      row = int(rows_of_step[step][top["token"] % batch])
      contexts.append(dict(_context(source, row, context_tokens), code=top["code"]))
    atom["top_contexts"] = contexts
  atlas["context_definition"] = ("top_contexts[j]: the text of top_inputs[j]: its document (AG News row), "
                                 "position, WordPiece token and the tokens around it, the token in [[ ]]")
  io.write_json(path, atlas)


def themes_payload(cfg: MiniLMStudyConfig, source: Any, clustering: themes_lib.ThemeClustering,
                   stats: minilm_passes.DocumentStatistics, labels_D: np.ndarray, train_D: np.ndarray,
                   class_names: tuple[str, ...], k: int) -> dict[str, Any]:
  """metrics/themes_text.json: every theme of seed 0 with its tokens, contexts and class profile."""
  target = cfg.data.target_class
  selectivity = steering_study.selectivity(stats.theme_max_RxDxT[0][train_D], (labels_D == target)[train_D])
  entries = []
  for theme in range(clustering.num_themes):
    rows = [int(r) for r in stats.top_rows_RxTxK[0, theme] if r >= 0]
    contexts = [dict(_context(source, r, cfg.themes.context_tokens), activation=float(v))
                for r, v in zip(rows, stats.top_values_RxTxK[0, theme])]
    tokens, counts = np.unique([c["token"] for c in contexts], return_counts=True) if contexts else ([], [])
    order = np.argsort(-np.asarray(counts), kind="stable")
    entries.append({
        "theme": theme, "size": int(np.sum(clustering.labels_N == theme)),
        "target_selectivity": float(selectivity[theme]),
        "top_tokens": [str(tokens[i]) for i in order], "contexts": contexts,
        "mean_max_by_class": [float(stats.theme_max_RxDxT[0][labels_D == c, theme].mean())
                              for c in range(len(class_names))],
        "mean_by_class": [float(stats.theme_mean_RxDxT[0][labels_D == c, theme].mean())
                          for c in range(len(class_names))]})
  entries.sort(key=lambda e: -e["target_selectivity"])
  return {"k": k, "method": cfg.themes.method, "vectors": cfg.themes.vectors,
          "num_themes": clustering.num_themes,
          "criterion": clustering.criterion, "scores": clustering.scores, "reason": clustering.reason,
          "class_names": list(class_names), "target_class": class_names[target], "themes": entries}


def reconstruction_payload(model: Any, cfg: MiniLMStudyConfig, codec: Any, probe: probe_lib.Probe,
                           texts: list[str], labels_N: np.ndarray) -> dict[str, Any]:
  """metrics/reconstruction.json: per SAE run FVU / L0 / dead, and the splice into the model."""
  batches = minilm_passes.token_batches(model, texts, cfg.text.max_length, cfg.steering.batch_size)
  clean, spliced, ablated = minilm_passes.spliced_embeddings(model, cfg.text.layer, batches, codec.sae_states,
                                                             cfg.codec.sae, len(texts))
  acc = lambda e: float(probe_lib.accuracy(probe, e, labels_N))  # noqa: E731
  acc_clean, acc_ablated = acc(clean), acc(ablated)
  runs = []
  for r, label in enumerate(codec.run_labels):
    cosine = 1.0 - np.asarray(steering.cosine_drift(clean, spliced[r]))
    acc_spliced = acc(spliced[r])
    gap = acc_clean - acc_ablated
    runs.append(dict(label, fvu=float(codec.sae_metrics["fvu"][r]), l0=float(codec.sae_metrics["l0"][r]),
                     dead_fraction=float(codec.sae_metrics["dead_fraction"][r]),
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
  logging.info("MiniLM study: %s took %.1f s", name, time.perf_counter() - started)


def training_steps(cfg: MiniLMStudyConfig, width: int) -> int:
  """Steps the codec stages train, for the progress bar: the SAE, the main Squeezer, its shuffled-latent
  null (`codec.shuffled_latent_squeezer`) and each tax-sweep width in which a Squeezer K fits."""
  codec_cfg = cfg.codec
  tax = [m for m in pipeline.tax_widths(codec_cfg, width)
         if any(k <= m for k in pipeline.squeezer_config(codec_cfg, width, m).k_values)]
  squeezers = 1 + int(codec_cfg.shuffled_latent_squeezer) + len(tax)
  return codec_cfg.sae_loop.steps + squeezers * codec_cfg.squeezer_loop.steps


def run(raw_config: Any, workdir: str, overwrite: bool = False, progress: Any = None) -> dict[str, Any]:
  """Runs every stage of the study in `workdir` (see the module docstring); returns the payloads.

  Without `progress`, one bar covers the codec's training (opened once the layer's width is known)."""
  cfg = parse_config(raw_config)
  with workdir_lib.locked(workdir):
    return run_study(cfg, workdir, overwrite, progress)


def run_study(cfg: MiniLMStudyConfig, workdir: str, overwrite: bool = False, progress: Any = None
              ) -> dict[str, Any]:
  """Every stage in order; a bad model directory, layer or corpus stops before any training."""
  smoke = cfg.smoke or cfg.codec.smoke
  codec_cfg = dataclasses.replace(cfg.codec, smoke=smoke)
  with _stage("activations"):
    model = minilm.load(cfg.text.model_dir or None)
    text_source.check_token_layer(model, cfg.text.layer)
    data_dir = cfg.text.data_dir or None
    corpus = corpora.ag_news(data_dir, cfg.text.limit or None)
    neutral = corpora.shakespeare_lines(data_dir, cfg.data.shakespeare_lines)
    text_cfg = cfg.text if cfg.text.cache_dir else dataclasses.replace(
        cfg.text, cache_dir=os.path.join(workdir, "activation_cache"))
    source = text_source.TextActivationSource(text_cfg, model=model, corpus=corpus)
  with _stage("SAE, Squeezer and part-2 analyses"):
    identity = text_source.cache_identity(text_cfg, model.model_dir, tuple(corpus.texts))
    with contextlib.ExitStack() as stack:
      if progress is None:
        progress = stack.enter_context(progress_lib.bar(training_steps(cfg, source.width),
                                                        "codec on MiniLM (SAE, then Squeezers)"))
      codec = minilm_codec.train_codec(codec_cfg, source, workdir, progress=progress, overwrite=overwrite,
                                       source_identity=identity)
    add_atlas_contexts(workdir, source, cfg.codec.analysis, cfg.themes.context_tokens)
  labels_D, target = corpus.labels, cfg.data.target_class
  train_D = train_split(labels_D, cfg.data.train_fraction, cfg.codec.seed)
  held_out = np.flatnonzero(~train_D)
  layer, batch_size = cfg.text.layer, cfg.steering.batch_size
  with _stage("sentence embeddings and probe"):
    all_batches = minilm_passes.token_batches(model, corpus.texts, cfg.text.max_length, batch_size)
    embeddings = minilm_passes.embeddings(model, layer, all_batches, len(corpus))
    probe = probe_lib.fit(embeddings[train_D], labels_D[train_D], len(corpus.class_names), cfg.data.probe)
  with _stage("reconstruction and splicing"):
    splice_rows = _spread(held_out, cfg.data.splice_items)
    reconstruction = reconstruction_payload(model, cfg, codec, probe, [corpus.texts[i] for i in splice_rows],
                                            labels_D[splice_rows])
    reconstruction["probe_accuracy_held_out"] = float(probe_lib.accuracy(probe, embeddings[~train_D],
                                                                         labels_D[~train_D]))
    reconstruction["num_truncated"] = source.num_truncated
    minilm_report.write_json(workdir, "reconstruction.json", reconstruction)

  k = chosen_k(cfg)
  chosen = [r for r, label in enumerate(codec.run_labels) if label["k"] == k]
  states = jax.tree.map(lambda a: a[np.asarray(chosen)], codec.sae_states)
  with _stage("themes on text"):
    clusterings = _themes(cfg.themes, states, codec.sae_metrics["firing_counts"][chosen] > 0, cfg.codec.seed)
    empty = [c.reason for c in clusterings if c.num_themes == 0]
    if empty:
      raise ConfigError(f"config.themes: no themes could be formed for SAE k={k}: {empty}")
    doc_stats = minilm_passes.document_statistics(source, states, cfg.codec.sae, _membership(clusterings),
                                                  ~train_D, top_k=cfg.themes.top_contexts)
    themes_text = themes_payload(cfg, source, clusterings[0], doc_stats, labels_D, train_D,
                                 corpus.class_names, k)
    minilm_report.write_json(workdir, "themes_text.json", themes_text)

  is_target = labels_D == target
  seed_indices = [codec.run_labels[r]["seed_index"] for r in chosen]
  with _stage("steering"):
    decoders = np.asarray(states["params"]["w_dec_NxD"])
    choices = [dict(steering_study.choose_vectors(decoders[r], clusterings[r].labels_N,
                                                  doc_stats.theme_max_RxDxT[r], doc_stats.atom_max_RxDxN[r],
                                                  is_target, train_D, cfg.steering.snr_atoms),
                    random_vectors=steering_study.random_control(cfg.codec.seed, seed_indices[r],
                                                                 cfg.steering.random_directions,
                                                                 decoders.shape[-1]))
               for r in range(len(chosen))]
    diffmean = np.asarray(steering.difference_of_means(doc_stats.pooled_mean_DxF[train_D],
                                                       is_target[train_D]))
    steer_rows = _spread(held_out[~is_target[held_out]], cfg.steering.steering_items)
    result = steering_study.run_steering(
        model, layer, cfg.text.max_length, cfg.steering, probe, target, [corpus.texts[i] for i in steer_rows],
        list(neutral.texts[:cfg.steering.neutral_items]), choices, diffmean)
    public = [dict({key: value for key, value in c.items() if "vector" not in key}, k=k,
                   seed_index=seed_indices[r]) for r, c in enumerate(choices)]
    steering_payload = dict(minilm_report.steering_summary(result, cfg.steering.reference_strength, public),
                            target_class=corpus.class_names[target])
  with _stage("detection"):
    detection_result = detection_study.run_detection(cfg.detection, labels_D, target,
                                                     doc_stats.pooled_mean_DxF, doc_stats.theme_max_RxDxT,
                                                     cfg.codec.seed)
    detection_payload = dict(minilm_report.detection_summary(detection_result),
                             target_class=corpus.class_names[target])

  num_seeds = len(set(seed_indices))
  no_verdict = minilm_report.no_verdict_reason(num_seeds, smoke)
  tests = (minilm_codec.analysis_claims(codec.analysis_payload, smoke)
           + minilm_report.steering_tests(steering_payload, smoke)
           + minilm_report.detection_tests(detection_payload, smoke))
  claims = minilm_report.replication_table(tests)
  by_key = {row["key"]: row for row in claims}
  found = minilm_report.hypotheses(steering_payload, detection_payload, smoke)
  steering_payload["claims"] = {key: by_key[key] for key in ("doubling", "stability", "snr")}
  steering_payload["hypotheses"] = {key: found[key] for key in ("theme_above_random", "atom_above_random")}
  detection_payload["claims"] = {"detection": by_key["detection"]}
  detection_payload["hypotheses"] = {"theme_detector_above_probe": found["theme_detector_above_probe"]}
  minilm_report.write_json(workdir, "steering.json", steering_payload)
  minilm_report.write_json(workdir, "detection.json", detection_payload)

  plots = os.path.join(workdir, "plots")
  minilm_report.plot_steering(steering_payload, os.path.join(plots, "steering.png"))
  minilm_report.plot_snr(steering_payload, os.path.join(plots, "snr.png"))
  minilm_report.plot_roc(detection_result["roc"], cfg.detection.max_fpr, os.path.join(plots, "roc.png"))
  text = minilm_report.report_markdown(
      source=source.description, reconstruction=reconstruction, themes=themes_text, steering=steering_payload,
      detection=detection_payload, claims=claims, hypotheses=found,
      analysis_note=minilm_codec.analysis_note(codec.analysis_payload),
      analysis_themes=(codec.analysis_payload or {}).get("themes"), no_verdict=no_verdict)
  io.write_text(os.path.join(workdir, "report.md"),
                minilm_report.with_banner(codec.report_text + "\n" + text, no_verdict))
  report = minilm_report.report_json(_read_json(os.path.join(workdir, "report.json")), num_seeds=num_seeds,
                                     smoke=smoke, no_verdict=no_verdict, claims=claims, hypotheses=found)
  io.write_json(os.path.join(workdir, "report.json"), report)
  logging.info("outputs in %s", workdir)
  return {"reconstruction": reconstruction, "themes": themes_text, "steering": steering_payload,
          "detection": detection_payload, "claims": claims, "hypotheses": found, "report": report}


def _read_json(path: str) -> dict[str, Any] | None:
  """The codec part's report.json (None where it wrote none); its "codec" entry when this study wrote it."""
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    found = json.load(f)
  return found.get("codec") if "replication" in found and "codec" in found else found


def _spread(rows: np.ndarray, count: int) -> np.ndarray:
  """At most `count` of `rows`, evenly spaced (so a subset spans the classes and the file)."""
  return rows[np.linspace(0, rows.size - 1, min(count, rows.size)).round().astype(int)] if rows.size else rows
