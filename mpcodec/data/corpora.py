"""Raw text corpora for pretrained encoders: AG News items with labels, and lines of Shakespeare.

Unlike `mpcodec.data.registry.load_ag_news` (word ids for the models trained here), these keep the text
itself, for a tokenizer that comes with a pretrained model.

- AG News: the cleaned `title + " " + description` of each row of `ag_news/test.csv` (the parser of
  `mpcodec.data.text`), labels 0..3 (World, Sports, Business, Sci/Tech). `limit` keeps a class-balanced
  subset (`balanced_subset`): the first ⌊limit / 4⌋ items of each class (one more for the first
  limit mod 4 classes), in file order.
- Shakespeare: the spoken lines of `shakespeare/shakespeare.txt.gz`, one text per physical line, without
  speaker headings (`HELENA.`), titles and act or scene headings (lines in capitals), stage directions
  (`[Exeunt.]`) and lines of fewer than `min_words` words. `limit` keeps that many lines evenly spaced
  through the whole file, so a small sample spans the works.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re

import numpy as np

from mpcodec.data import registry, text
from mpcodec.data.dataset import DataError

SHAKESPEARE_FILE = os.path.join("shakespeare", "shakespeare.txt.gz")
AG_NEWS_FILE = os.path.join("ag_news", "test.csv")
_WORD = re.compile(r"[A-Za-z]+")


@dataclasses.dataclass(frozen=True, eq=False)
class TextCorpus:
  """Texts of one corpus; `labels` (int32, 0-based) and `class_names` where the corpus has classes."""

  name: str
  texts: tuple[str, ...]
  labels: np.ndarray | None
  class_names: tuple[str, ...]
  path: str

  def __len__(self) -> int:
    return len(self.texts)


def _check_limit(limit: int | None) -> None:
  if limit is not None and limit < 1:
    raise DataError(f"limit must be >= 1 (or None for the whole corpus), got {limit}")


def balanced_subset(labels: np.ndarray, limit: int, num_classes: int) -> np.ndarray:
  """Indices, in file order, of the first n_c items of each class c: n_c = ⌊limit / C⌋, plus one for the
  first limit mod C classes."""
  keep = np.zeros(labels.shape[0], bool)
  for label in range(num_classes):
    count = limit // num_classes + (label < limit % num_classes)
    keep[np.flatnonzero(labels == label)[:count]] = True
  return np.flatnonzero(keep)


def ag_news(data_dir: str | None = None, limit: int | None = None) -> TextCorpus:
  """AG News test items as cleaned raw text with 0-based labels (see the module docstring)."""
  _check_limit(limit)
  path = os.path.join(registry.resolve_data_dir(data_dir), AG_NEWS_FILE)
  examples = text.read_ag_news_csv(path, len(text.AG_NEWS_CLASS_NAMES))
  texts, labels = examples.texts, examples.labels
  if limit is not None:
    rows = balanced_subset(labels, limit, len(text.AG_NEWS_CLASS_NAMES))
    texts, labels = tuple(texts[i] for i in rows), labels[rows]
  return TextCorpus("ag_news", tuple(texts), np.asarray(labels, np.int32), text.AG_NEWS_CLASS_NAMES, path)


def is_spoken_line(line: str, min_words: int = 3) -> bool:
  """Whether a stripped line of the corpus is spoken text (not a heading, stage direction or short)."""
  if not line or line.startswith("[") or line.endswith("]"):
    return False
  letters = [c for c in line if c.isalpha()]
  if letters and all(c.isupper() for c in letters):
    return False
  return len(_WORD.findall(line)) >= min_words


def shakespeare_lines(data_dir: str | None = None, limit: int | None = None, min_words: int = 3
                      ) -> TextCorpus:
  """Spoken lines of the Shakespeare corpus, in file order (see the module docstring)."""
  _check_limit(limit)
  path = os.path.join(registry.resolve_data_dir(data_dir), SHAKESPEARE_FILE)
  try:
    with gzip.open(path, "rt", encoding="utf-8") as f:
      lines = [line.strip() for line in f]
  except FileNotFoundError:
    raise DataError(f"{path}: file not found (expected the gzip Shakespeare corpus)") from None
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: not a gzip UTF-8 text file: {e}") from None
  spoken = [line for line in lines if is_spoken_line(line, min_words)]
  if not spoken:
    raise DataError(f"{path}: no spoken lines of at least {min_words} words found")
  if limit is not None and limit < len(spoken):
    spoken = [spoken[i] for i in np.linspace(0, len(spoken) - 1, limit).round().astype(np.int64)]
  return TextCorpus("shakespeare", tuple(spoken), None, (), path)


CORPORA = {"ag_news": ag_news, "shakespeare": shakespeare_lines}


def load_corpus(name: str, data_dir: str | None = None, limit: int | None = None) -> TextCorpus:
  """The corpus called `name` ("ag_news" or "shakespeare")."""
  if name not in CORPORA:
    raise DataError(f"unknown corpus {name!r}; known corpora: {sorted(CORPORA)}")
  return CORPORA[name](data_dir, limit)
