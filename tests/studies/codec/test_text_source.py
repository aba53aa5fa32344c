"""MiniLM activation source: token rows against the model, the on-disk cache, batch order, bad input;
and the raw-text corpora it reads."""

import dataclasses
import logging
import os

import numpy as np
import pytest

from mpcodec.core.errors import ActivationError, DataError
from mpcodec.data import corpora
from mpcodec.studies.codec import text_source
# One loaded model for the session (its cache is shared with the model tests).
from tests.models.test_minilm import _load
from tests.support import require_data

LAYER = "block_1/ffn_hidden"


@pytest.fixture(scope="module")
def data_dir():
  return str(require_data("minilm", "ag_news", "shakespeare"))


@pytest.fixture(scope="module")
def model(data_dir):
  return _load(os.path.join(data_dir, "minilm"))


@pytest.fixture(scope="module")
def corpus(data_dir):
  return corpora.ag_news(data_dir, limit=6)


def _config(tmp_path, **overrides):
  return text_source.TextSourceConfig(layer=LAYER, corpus="ag_news", limit=6, batch_size=4,
                                      cache_dir=str(tmp_path / "cache"), **overrides)


@pytest.fixture(scope="module")
def cached(model, corpus, tmp_path_factory):
  cfg = _config(tmp_path_factory.mktemp("source"))
  return cfg, text_source.TextActivationSource(cfg, model=model, corpus=corpus)


def test_rows_are_the_layer_activations_of_every_real_token(model, corpus, cached):
  _, source = cached
  # Independently: all texts in one padded batch, in file order (the source batches by length).
  tokens = model.tokenize(corpus.texts)
  acts_BxTxF = np.asarray(model.activations(model.params, tokens.input_ids_BxT, tokens.attention_mask_BxT,
                                            [LAYER])[LAYER])
  lengths = tokens.attention_mask_BxT.sum(1)
  assert source.num_tokens == lengths.sum() and source.width == model.config.intermediate_size
  rows = source.rows
  np.testing.assert_array_equal(np.diff(rows.doc_offsets), lengths)
  np.testing.assert_array_equal(rows.token_id_N, tokens.input_ids_BxT[rows.doc_index_N, rows.position_N])
  np.testing.assert_allclose(np.asarray(source.acts_NxD), acts_BxTxF[rows.doc_index_N, rows.position_N],
                             atol=2e-5, rtol=1e-5)
  doc = 3
  np.testing.assert_array_equal(rows.position_N[source.document_rows(doc)], np.arange(lengths[doc]))
  assert source.token_strings(rows.token_id_N[:1]) == ["[CLS]"]
  assert source.manifest["num_tokens"] == source.num_tokens
  assert source.manifest["size_bytes"] > source.num_tokens * source.width * 4
  assert source.manifest["build_seconds"] > 0 and not source.reused
  assert "block_1/ffn_hidden over ag_news (6 texts" in source.description


def test_cache_is_reused_for_the_same_settings_and_keyed_by_them(model, corpus, cached):
  cfg, source = cached
  again = text_source.TextActivationSource(cfg, model=model, corpus=corpus)
  assert again.reused and again.cache_path == source.cache_path
  np.testing.assert_array_equal(np.asarray(again.acts_NxD), np.asarray(source.acts_NxD))
  assert isinstance(again.acts_NxD, np.memmap)
  other_layer = text_source.cache_key(text_source.cache_identity(
      dataclasses.replace(cfg, layer="block_2/residual"), model.model_dir, corpus.texts))
  other_texts = text_source.cache_key(text_source.cache_identity(cfg, model.model_dir, corpus.texts[:5]))
  assert len({os.path.basename(source.cache_path), other_layer, other_texts}) == 3
  # Only the finished cache is left in the folder: no temporary build directories.
  assert os.listdir(cfg.cache_dir) == [os.path.basename(source.cache_path)]
  assert sorted(os.listdir(source.cache_path)) == ["activations.npy", "manifest.json", "tokens.npz"]


def test_batches_are_pure_in_the_step_and_visit_every_row_each_epoch(cached):
  _, source = cached
  batch_size = 7
  steps = -(-source.num_tokens // batch_size) + 2
  stream = source.batches(batch_size)
  batches = [next(stream) for _ in range(steps)]
  np.testing.assert_array_equal(next(source.batches(batch_size, start_step=3)), batches[3])
  assert all(b.shape == (batch_size, source.width) and b.dtype == np.float32 for b in batches)
  first_epoch = np.concatenate([source.indices(s, batch_size) for s in range(steps)])[:source.num_tokens]
  np.testing.assert_array_equal(np.sort(first_epoch), np.arange(source.num_tokens))
  np.testing.assert_array_equal(batches[0], np.asarray(source.acts_NxD)[source.indices(0, batch_size)])
  ordered = np.concatenate([b for _, b in source.ordered_batches(10)])
  np.testing.assert_array_equal(ordered, np.asarray(source.acts_NxD))


def test_special_tokens_can_be_left_out_and_long_texts_are_counted(model, tmp_path):
  long_text = "markets " * 600
  corpus = corpora.TextCorpus("ag_news", ("Stocks rally.", long_text), np.zeros(2, np.int32), (), "<test>")
  cfg = dataclasses.replace(_config(tmp_path), include_special_tokens=False, cache_dir="", limit=2,
                            layer="block_0/residual")
  source = text_source.TextActivationSource(cfg, model=model, corpus=corpus)
  assert source.num_truncated == 1 and source.manifest["num_truncated"] == 1
  short_length = len(model.token_ids(["Stocks rally."])[0][0])
  assert np.diff(source.rows.doc_offsets).tolist() == [short_length - 2, 510]
  assert source.rows.position_N.min() == 1
  cls_sep = {model.tokenizer.token_to_id("[CLS]"), model.tokenizer.token_to_id("[SEP]")}
  assert not cls_sep & set(source.rows.token_id_N.tolist())


def test_layers_that_cannot_feed_the_codec_are_refused_with_the_valid_names(model, corpus, tmp_path):
  for layer, hint in (("block_1/attention", "attention probabilities"), ("block_7/residual", "")):
    with pytest.raises(ActivationError,
                       match=rf"{hint}.*valid layer names: \['embeddings', 'block_0/ffn_hidden'"):
      text_source.TextActivationSource(text_source.TextSourceConfig(layer=layer, cache_dir=str(tmp_path)),
                                       model=model, corpus=corpus)
  assert not os.listdir(tmp_path)   # refused before any work


def test_ag_news_corpus_is_raw_text_with_balanced_labels(data_dir, corpus):
  assert len(corpus) == 6 and corpus.class_names[0] == "World"
  assert np.bincount(corpus.labels, minlength=4).tolist() == [2, 2, 1, 1]
  full = corpora.ag_news(data_dir)
  assert len(full) == 7600 and np.bincount(full.labels).tolist() == [1900] * 4
  assert corpus.texts[0] in full.texts
  with pytest.raises(DataError, match="limit must be >= 1"):
    corpora.ag_news(data_dir, limit=0)


def test_shakespeare_lines_leave_out_headings_and_stage_directions(data_dir):
  lines = corpora.shakespeare_lines(data_dir, limit=200)
  assert len(lines) == 200 and lines.labels is None
  for line in lines.texts:
    assert corpora.is_spoken_line(line) and not line.startswith("[")
  assert not corpora.is_spoken_line("HELENA.") and not corpora.is_spoken_line("[Exeunt.]")
  assert not corpora.is_spoken_line("ACT I. SCENE 1.") and corpora.is_spoken_line("What's his will else?")
  with pytest.raises(DataError, match="unknown corpus 'poems'"):
    corpora.load_corpus("poems", data_dir)


@pytest.mark.parametrize("damage", ["truncated_rows", "truncated_manifest", "truncated_tokens"])
def test_a_damaged_cache_is_rebuilt_naming_it(model, corpus, tmp_path, caplog, damage):
  cfg = _config(tmp_path)
  source = text_source.TextActivationSource(cfg, model=model, corpus=corpus)
  expected = np.asarray(source.acts_NxD).copy()
  name = {"truncated_rows": "activations.npy", "truncated_manifest": "manifest.json",
          "truncated_tokens": "tokens.npz"}[damage]
  path = os.path.join(source.cache_path, name)
  with open(path, "r+b") as f:   # A copy cut off mid-file (a full disk, an interrupted rsync).
    f.truncate(os.path.getsize(path) // 2)
  del source
  assert text_source.cache_problem(os.path.dirname(path)) is not None or damage == "truncated_tokens"
  with caplog.at_level(logging.WARNING):
    again = text_source.TextActivationSource(cfg, model=model, corpus=corpus)
  lines = [r.getMessage() for r in caplog.records if again.cache_path in r.getMessage()]
  assert len(lines) == 1 and lines[0].startswith(f"activation cache {again.cache_path} fails its check (")
  assert lines[0].endswith("; rebuilding it")
  assert not again.reused
  np.testing.assert_array_equal(np.asarray(again.acts_NxD), expected)
  assert text_source.cache_problem(again.cache_path) is None
