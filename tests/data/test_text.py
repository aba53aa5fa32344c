"""Tests for AG News CSV parsing, cleaning, tokenization, the vocabulary and fixed-length encoding."""

from __future__ import annotations

import numpy as np
import pytest

from mpcodec.data import text
from mpcodec.data.dataset import DataError
from tests import support


# Rows in the style of the AG News files: quoted fields, commas and doubled quotes inside them, lone and
# doubled backslashes for line breaks, HTML entities whose ampersand became a space.
_CSV = (
    '"3","Stocks, bonds fall","Wall St. said ""no"" to\\\\rates\\today."\n'
    '"1","It #39;s over","A  quot;big quot; win for Smith  amp; Co. &lt;b&gt;now&lt;/b&gt;  #36;5"\n'
    '"4","Tech","x"\n'
)


def test_parse_quotes_commas_backslashes_entities_and_labels():
  examples = text.parse_ag_news_csv(_CSV, "rows.csv")
  np.testing.assert_array_equal(examples.labels, [2, 0, 3])
  assert examples.labels.dtype == np.int32
  assert examples.texts[0] == 'Stocks, bonds fall Wall St. said "no" to rates today.'
  assert examples.texts[1] == 'It\'s over A "big" win for Smith & Co. now $5'
  assert examples.texts[2] == "Tech x"


def test_tokenize_lowercase_and_apostrophes():
  assert text.tokenize("It's A Test, 2004-05 ok_go") == ["it's", "a", "test", "2004", "05", "ok", "go"]
  assert text.tokenize("It's A", lowercase=False) == ["It's", "A"]


@pytest.mark.parametrize("row, problem", [
    ('"5","t","d"\n', "outside the expected range 1..4"),
    ('"0","t","d"\n', "outside the expected range 1..4"),
    ('"x","t","d"\n', "not an integer"),
    ('"1","t"\n', "expected 3 fields"),
])
def test_bad_rows_name_file_and_line(row, problem):
  with pytest.raises(DataError) as error:
    text.parse_ag_news_csv('"1","a","b"\n' + row, "news.csv")
  assert "news.csv: line 2" in str(error.value) and problem in str(error.value)


def test_unterminated_quote_is_a_data_error():
  with pytest.raises(DataError, match="news.csv"):
    text.parse_ag_news_csv('"1","a","b\n', "news.csv")


def test_missing_csv_names_file(tmp_path):
  with pytest.raises(DataError, match="train.csv: file not found"):
    text.read_ag_news_csv(tmp_path / "train.csv")


def test_vocabulary_frequency_order_with_alphabetical_ties_and_size_cap():
  tokens = [["b", "a", "c", "c"], ["a", "d", "b", "e"], ["c"]]
  # Counts: c 3, a 2, b 2, d 1, e 1; ties (a, b) and (d, e) go alphabetically.
  vocab = text.build_vocabulary(tokens, vocab_size=2 + 4)
  assert vocab.words == ("c", "a", "b", "d") and vocab.counts == (3, 2, 2, 1)
  assert vocab.size == 6
  assert vocab.index == {"c": 2, "a": 3, "b": 4, "d": 5}
  # The order of documents must not change the result.
  assert text.build_vocabulary(tokens[::-1], vocab_size=6) == vocab
  with pytest.raises(ValueError, match="vocab_size"):
    text.build_vocabulary(tokens, vocab_size=2)


def test_encode_truncates_pads_and_marks_oov():
  vocab = text.Vocabulary(words=("the", "cat"), counts=(5, 3))
  ids = text.encode([["the", "cat", "sat", "the"], ["cat"], []], vocab, max_length=3)
  expected = np.array([[2, 3, text.OOV_ID], [3, text.PAD_ID, text.PAD_ID], [0, 0, 0]], dtype=np.int32)
  np.testing.assert_array_equal(ids, expected)
  assert ids.dtype == np.int32


def test_real_ag_news_test_file():
  examples = text.read_ag_news_csv(support.require_data("ag_news/test.csv") / "ag_news" / "test.csv")
  assert len(examples.texts) == 7600
  np.testing.assert_array_equal(np.bincount(examples.labels), [1900] * 4)
  assert examples.labels[0] == 2 and examples.texts[0].startswith("Fears for T N pension after talks")
  # Cleaning leaves no backslash and no ampersand-less apostrophe entity behind.
  assert not any("\\" in t or "#39;" in t for t in examples.texts)
