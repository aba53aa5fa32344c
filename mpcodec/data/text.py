"""AG News CSV reading, text cleaning, word tokenization and a fixed-size vocabulary (pure numpy).

AG News rows are `"class","title","description"` with classes 1..4 (World, Sports, Business, Sci/Tech);
fields are double-quoted, an inner quote is doubled (`""`). The files also carry two artefacts of how
they were scraped, which `clean_ag_news_text` undoes: backslashes stand for line breaks (`second\\team`,
`\\\\`; the dataset's readme says `\\n`, but in the files a lone or doubled backslash is what appears), and
HTML entities had their `&` replaced by a space (`Bush #39;s`, ` quot;`, ` #36;10`) or kept it
(`&lt;b&gt;` tags).

Ids: 0 is padding, 1 is out-of-vocabulary (OOV); words take ids 2.. in order of decreasing training
frequency, ties broken alphabetically, so the same training text always gives the same vocabulary.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import html
import io
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from mpcodec.data.dataset import DataError

PAD_ID = 0
OOV_ID = 1
NUM_SPECIAL_IDS = 2

AG_NEWS_CLASS_NAMES = ("World", "Sports", "Business", "Sci/Tech")

_BACKSLASHES = re.compile(r"\\+")
# AG News turned most entity ampersands into one space (`Bush #39;s`, `J amp;J`), so one preceding space
# or ampersand belongs to the entity.
_NUMERIC_ENTITY = re.compile(r"[ &]?#(\d{1,4});")
_NAMED_ENTITY = re.compile(r"[ &]?\b(quot|amp|lt|gt|hellip|nbsp|apos);")
_HTML_TAG = re.compile(r"<[^<>]{0,200}>")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_SPACES = re.compile(r"\s+")


def _numeric_entity(match: re.Match) -> str:
  code = int(match.group(1))
  if 128 <= code < 160:
    # Codes 128..159 in this corpus are Windows-1252 punctuation (#146; is a right quote).
    return bytes([code]).decode("cp1252", errors="replace")
  return chr(code) if code < 0x110000 else " "


def clean_ag_news_text(text: str) -> str:
  """Undoes AG News scraping artefacts: backslash line breaks, ampersand-less entities, HTML tags."""
  text = _BACKSLASHES.sub(" ", text)
  text = _NUMERIC_ENTITY.sub(_numeric_entity, text)
  text = _NAMED_ENTITY.sub(lambda m: html.unescape(f"&{m.group(1)};"), text)
  text = _HTML_TAG.sub(" ", text)
  return _SPACES.sub(" ", text).strip()


def tokenize(text: str, lowercase: bool = True) -> list[str]:
  """Splits text into words: runs of letters/digits, keeping inner apostrophes (`it's`)."""
  return _WORD.findall(text.lower() if lowercase else text)


@dataclasses.dataclass(frozen=True)
class TextExamples:
  """Raw labelled texts read from a CSV file: labels are 0-based int32."""

  texts: tuple[str, ...]
  labels: np.ndarray
  path: str


def parse_ag_news_csv(content: str, path: str = "<string>", num_classes: int = 4) -> TextExamples:
  """Parses AG News CSV text (`class,title,description`, class 1..num_classes) into 0-based labels.

  The text of a row is `title + " " + description`, cleaned with `clean_ag_news_text`.
  """
  texts, labels = [], []
  reader = csv.reader(io.StringIO(content, newline=""), strict=True)
  try:
    for row in reader:
      if not row or (len(row) == 1 and not row[0].strip()):
        continue
      if len(row) != 3:
        raise DataError(f"{path}: line {reader.line_num}: expected 3 fields (class, title, "
                        f"description), found {len(row)}")
      label_text, title, description = row
      try:
        label = int(label_text)
      except ValueError:
        raise DataError(f"{path}: line {reader.line_num}: class {label_text!r} is not an integer "
                        f"(expected 1..{num_classes})") from None
      if not 1 <= label <= num_classes:
        raise DataError(f"{path}: line {reader.line_num}: class {label} outside the expected "
                        f"range 1..{num_classes}")
      labels.append(label - 1)
      texts.append(clean_ag_news_text(f"{title} {description}"))
  except csv.Error as e:
    raise DataError(f"{path}: line {reader.line_num}: malformed CSV (expected quoted fields "
                    f"class,title,description): {e}") from None
  if not texts:
    raise DataError(f"{path}: no rows found (expected CSV rows class,title,description)")
  return TextExamples(tuple(texts), np.asarray(labels, dtype=np.int32), path)


def read_ag_news_csv(path: str | os.PathLike, num_classes: int = 4) -> TextExamples:
  """Reads an AG News CSV file (UTF-8); errors name the file and line."""
  path = os.fspath(path)
  try:
    with open(path, "r", encoding="utf-8", newline="") as f:
      content = f.read()
  except FileNotFoundError:
    raise DataError(f"{path}: file not found") from None
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not UTF-8 text (expected an AG News CSV file): {e}") from None
  return parse_ag_news_csv(content, path, num_classes)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Word -> id map: 0 padding, 1 OOV, then `words[i]` has id i + 2."""

  words: tuple[str, ...]
  counts: tuple[int, ...]

  @property
  def size(self) -> int:
    """Number of ids, special ids included (the embedding table size)."""
    return len(self.words) + NUM_SPECIAL_IDS

  @property
  def index(self) -> dict[str, int]:
    return {word: i + NUM_SPECIAL_IDS for i, word in enumerate(self.words)}


def build_vocabulary(token_lists: Iterable[Sequence[str]], vocab_size: int) -> Vocabulary:
  """Keeps the `vocab_size - 2` most frequent words; equal counts are ordered alphabetically."""
  if vocab_size < NUM_SPECIAL_IDS + 1:
    raise ValueError(f"vocab_size must be at least {NUM_SPECIAL_IDS + 1} (padding, OOV and one "
                     f"word), got {vocab_size}")
  counter = collections.Counter()
  for tokens in token_lists:
    counter.update(tokens)
  ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:vocab_size - NUM_SPECIAL_IDS]
  return Vocabulary(tuple(w for w, _ in ranked), tuple(c for _, c in ranked))


def encode(token_lists: Sequence[Sequence[str]], vocabulary: Vocabulary, max_length: int) -> np.ndarray:
  """Token lists -> int32 (N, max_length) ids: truncated at the end, padded with PAD_ID."""
  if max_length < 1:
    raise ValueError(f"max_length must be positive, got {max_length}")
  index = vocabulary.index
  ids_NxL = np.full((len(token_lists), max_length), PAD_ID, dtype=np.int32)
  for row, tokens in enumerate(token_lists):
    ids = [index.get(token, OOV_ID) for token in tokens[:max_length]]
    ids_NxL[row, :len(ids)] = ids
  return ids_NxL
