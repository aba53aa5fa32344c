"""One registry for every classification dataset: `get_dataset(name, data_dir, seed=..., **options)`.

File-backed sets are read from a data directory laid out like this (what `launch.fetch_data` writes):

  mnist/          {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
  fashion-mnist/  same names
  kmnist/         same names (the train pair is optional)
  qmnist/         qmnist-{train,test}-labels-idx2-int[.gz]
  ag_news/        test.csv, train.csv (optional)

The directory comes from the `--data_dir` flag, else the `MPCODEC_DATA_DIR` environment variable
(`resolve_data_dir`). A set whose train file is absent (KMNIST, AG News in the shared data) gets a
seeded, stratified split of its test file; a present train file means the official split is used.
Either way the split is described in `metadata["split"]`. Synthetic bars need no files.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from mpcodec.core import configuration
from mpcodec.data import idx, splits, text
from mpcodec.data.dataset import DataError, Dataset

DATA_DIR_ENV = "MPCODEC_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the registry knows about a dataset before loading it."""

  kind: str
  folder: str | None          # sub-folder of the data directory; None when generated
  num_classes: int
  class_names: tuple[str, ...]
  official_test_only: bool    # only the test split is required; train is split off it when absent
  example_shape: tuple[int, ...] | None = None   # one image (H, W, C); None for text (set by max_length)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("image", "mnist", 10, tuple(str(d) for d in range(10)), False, (28, 28, 1)),
    "fashion_mnist": DatasetInfo("image", "fashion-mnist", 10, (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot"), False, (28, 28, 1)),
    "kmnist": DatasetInfo("image", "kmnist", 10,
                          ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), True, (28, 28, 1)),
    "ag_news": DatasetInfo("text", "ag_news", 4, text.AG_NEWS_CLASS_NAMES, True),
    # Bars images are BarsConfig.image_size (default 32) square; the module is not imported here.
    "bars": DatasetInfo("image", None, 2, ("vertical", "horizontal"), False, (32, 32, 3)),
}

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclasses.dataclass(frozen=True)
class ImageOptions:
  """Options of the IDX image sets (MNIST, Fashion-MNIST, KMNIST)."""

  test_fraction: float = 0.2   # used only when the train split has to be made from the test file

  def checks(self):
    yield ("test_fraction", 0.0 < self.test_fraction < 1.0,
           f"must lie strictly between 0 and 1, got {self.test_fraction}")


@dataclasses.dataclass(frozen=True)
class TextOptions:
  """Options of AG News.

  max_length 64: title + description is 38 words at the median, 53 at the 95th and 70 at the 99th
  percentile of the AG News test file, so 64 leaves about 98% of texts untruncated at half the cost
  of 128.
  """

  vocab_size: int = 20000      # ids in all, padding and OOV included (the embedding table size)
  max_length: int = 64
  lowercase: bool = True
  test_fraction: float = 0.2   # used only when train.csv is absent

  def checks(self):
    yield ("vocab_size", self.vocab_size >= 3,
           f"must be >= 3 (padding, OOV, a word), got {self.vocab_size}")
    yield "max_length", self.max_length >= 1, f"must be >= 1, got {self.max_length}"
    yield ("test_fraction", 0.0 < self.test_fraction < 1.0,
           f"must lie strictly between 0 and 1, got {self.test_fraction}")


def _fetch_hint(name: str, data_dir: str) -> str:
  return (f"fetch it with `python -m launch.fetch_data --datasets={name} --data_dir={data_dir}`, "
          f"or point --data_dir / {DATA_DIR_ENV} at a folder that holds it")


def resolve_data_dir(flag_value: str | None) -> str:
  """The data directory: `flag_value` if given, else $MPCODEC_DATA_DIR, else a DataError saying how."""
  data_dir = flag_value or os.environ.get(DATA_DIR_ENV)
  if not data_dir:
    raise DataError(f"no data directory given: pass --data_dir=DIR (data_dir=...) or set the "
                    f"environment variable {DATA_DIR_ENV}=DIR; DIR holds mnist/, fashion-mnist/, "
                    f"kmnist/, ag_news/, qmnist/ as written by `python -m launch.fetch_data`")
  if not os.path.isdir(data_dir):
    raise DataError(f"data directory {data_dir} does not exist (from "
                    f"{'--data_dir' if flag_value else DATA_DIR_ENV}); expected a folder holding mnist/, "
                    f"fashion-mnist/, kmnist/, ag_news/, qmnist/")
  return data_dir


def _candidates(stem: str) -> tuple[str, ...]:
  """File names accepted for an IDX stem: gzip first, then raw (the content decides, not the name)."""
  return (f"{stem}.gz", stem)


def _find_file(data_dir: str, folder: str, names: tuple[str, ...]) -> str | None:
  """Path of the first of `names` present in data_dir/folder, or None."""
  for file_name in names:
    path = os.path.join(data_dir, folder, file_name)
    if os.path.isfile(path):
      return path
  return None


def _require_file(name: str, data_dir: str, folder: str, names: tuple[str, ...]) -> str:
  """Like _find_file, but a missing file raises a DataError naming it and how to fetch it."""
  path = _find_file(data_dir, folder, names)
  if path is None:
    also = f" (nor {', '.join(names[1:])})" if len(names) > 1 else ""
    raise DataError(f"{os.path.join(data_dir, folder, names[0])}: file not found{also} for dataset "
                    f"{name!r}; {_fetch_hint(name, data_dir)}")
  return path


def _read_idx_pair(name: str, images_path: str, labels_path: str,
                   num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """Images as float32 (N, H, W, 1) in [0, 1] and int32 labels, with counts and label range checked."""
  images = idx.read_idx(images_path, expected_magic=idx.IMAGES_MAGIC)
  labels = idx.read_idx(labels_path, expected_magic=idx.LABELS_MAGIC).astype(np.int32)
  if images.shape[0] != labels.shape[0]:
    raise DataError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                    f"{labels.shape[0]} labels (expected equal counts)")
  if labels.size and labels.max() >= num_classes:
    raise DataError(f"{labels_path}: label {labels.max()} found, expected classes 0..{num_classes - 1} "
                    f"for dataset {name!r}")
  pixels = images.astype(np.float32)
  np.divide(pixels, 255.0, out=pixels)
  return pixels[..., None], labels


def _load_idx_images(name: str, data_dir: str | None, seed: int, options: ImageOptions) -> Dataset:
  info = DATASETS[name]
  data_dir = resolve_data_dir(data_dir)
  test_images_path, test_labels_path = (
      _require_file(name, data_dir, info.folder, _candidates(stem)) for stem in _IDX_STEMS["test"])
  train_paths = [_find_file(data_dir, info.folder, _candidates(stem)) for stem in _IDX_STEMS["train"]]
  # One train file without the other is an incomplete download, not a test-only set.
  official_split = any(train_paths) or not info.official_test_only
  if official_split:
    train_paths = [_require_file(name, data_dir, info.folder, _candidates(stem))
                   for stem in _IDX_STEMS["train"]]
  test_x, test_y = _read_idx_pair(name, test_images_path, test_labels_path, info.num_classes)
  if official_split:
    train_x, train_y = _read_idx_pair(name, *train_paths, info.num_classes)
    split = {"kind": "official", "train_size": int(train_y.size), "test_size": int(test_y.size)}
    files = train_paths + [test_images_path, test_labels_path]
  else:
    train_idx, test_idx = splits.stratified_split(test_y, options.test_fraction, seed)
    split = splits.split_metadata(test_y, train_idx, test_idx, options.test_fraction, seed,
                                  info.num_classes, source="official test files")
    train_x, train_y = test_x[train_idx], test_y[train_idx]
    test_x, test_y = test_x[test_idx], test_y[test_idx]
    files = [test_images_path, test_labels_path]
  return Dataset(name=name, kind="image", train_x=train_x, train_y=train_y, test_x=test_x,
                 test_y=test_y, num_classes=info.num_classes,
                 metadata={"split": split, "files": files, "class_names": list(info.class_names)})


def load_ag_news(data_dir: str | None = None, seed: int = 0,
                 options: TextOptions = TextOptions()) -> tuple[Dataset, text.Vocabulary]:
  """AG News as token ids, and the vocabulary built from its training split only."""
  name, info = "ag_news", DATASETS["ag_news"]
  data_dir = resolve_data_dir(data_dir)
  test_path = _require_file(name, data_dir, info.folder, ("test.csv",))
  test_set = text.read_ag_news_csv(test_path, info.num_classes)
  train_path = os.path.join(data_dir, info.folder, "train.csv")
  if os.path.isfile(train_path):
    train_set = text.read_ag_news_csv(train_path, info.num_classes)
    train_texts, train_y = train_set.texts, train_set.labels
    test_texts, test_y = test_set.texts, test_set.labels
    split = {"kind": "official", "train_size": int(train_y.size), "test_size": int(test_y.size)}
    files = [train_path, test_path]
  else:
    train_idx, test_idx = splits.stratified_split(test_set.labels, options.test_fraction, seed)
    split = splits.split_metadata(test_set.labels, train_idx, test_idx, options.test_fraction, seed,
                                  info.num_classes, source="official test.csv")
    train_texts = [test_set.texts[i] for i in train_idx]
    test_texts = [test_set.texts[i] for i in test_idx]
    train_y, test_y = test_set.labels[train_idx], test_set.labels[test_idx]
    files = [test_path]
  train_tokens = [text.tokenize(t, options.lowercase) for t in train_texts]
  test_tokens = [text.tokenize(t, options.lowercase) for t in test_texts]
  vocabulary = text.build_vocabulary(train_tokens, options.vocab_size)
  train_x = text.encode(train_tokens, vocabulary, options.max_length)
  test_x = text.encode(test_tokens, vocabulary, options.max_length)
  metadata = {
      "split": split,
      "files": files,
      "class_names": list(info.class_names),
      "vocab_size": vocabulary.size,
      "vocab_size_requested": options.vocab_size,
      "max_length": options.max_length,
      "lowercase": options.lowercase,
      "pad_id": text.PAD_ID,
      "oov_id": text.OOV_ID,
      "vocabulary_head": list(vocabulary.words[:20]),
      "test_oov_rate": float(np.mean(test_x[test_x != text.PAD_ID] == text.OOV_ID)),
      "train_truncated_fraction": float(np.mean([len(t) > options.max_length
                                                 for t in train_tokens])),
  }
  dataset = Dataset(name=name, kind="text", train_x=train_x, train_y=train_y, test_x=test_x,
                    test_y=test_y, num_classes=info.num_classes, metadata=metadata)
  return dataset, vocabulary


def _load_bars(seed: int, options: dict[str, Any]) -> Dataset:
  from mpcodec.data import bars  # Imported here so file-backed sets load without initialising JAX.
  cfg = configuration.parse(bars.BarsConfig, options, path="dataset options for 'bars'")
  train, test = bars.make_bars_splits(cfg, seed)
  train = {k: np.asarray(v) for k, v in train.items()}
  test = {k: np.asarray(v) for k, v in test.items()}
  metadata = {
      "split": {"kind": "generated", "seed": int(seed), "train_size": cfg.num_train,
                "test_size": cfg.num_test},
      "class_names": list(bars.ORIENTATION_NAMES),
      "label": "orientation",
      "bars_config": configuration.to_dict(cfg),
      # The second concept, for tasks that mix orientation and colour.
      "train_colour": train["colour"].astype(np.int32),
      "test_colour": test["colour"].astype(np.int32),
  }
  return Dataset(name="bars", kind="image", train_x=train["images"].astype(np.float32),
                 train_y=train["orientation"].astype(np.int32), test_x=test["images"].astype(np.float32),
                 test_y=test["orientation"].astype(np.int32), num_classes=2, metadata=metadata)


def get_dataset(name: str, data_dir: str | None = None, *, seed: int = 0, **options: Any) -> Dataset:
  """Loads dataset `name` (one of DATASETS); `seed` drives generated data and made-up splits.

  Options: image sets take `test_fraction`; ag_news takes `vocab_size`, `max_length`, `lowercase`,
  `test_fraction`; bars takes the fields of `BarsConfig`. Unknown names and options raise ValueError.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; valid names are {sorted(DATASETS)}")
  path = f"dataset options for {name!r}"
  if name == "bars":
    return _load_bars(seed, options)
  if name == "ag_news":
    return load_ag_news(data_dir, seed, configuration.parse(TextOptions, options, path=path))[0]
  return _load_idx_images(name, data_dir, seed, configuration.parse(ImageOptions, options, path=path))


def qmnist_labels(data_dir: str | None, split: str) -> np.ndarray:
  """QMNIST extended labels, int32 (N, 8): class, NIST HSF series, writer id, digit index, ...

  Columns per facebookresearch/qmnist: 0 digit class, 1 NIST HSF series, 2 NIST writer id, 3 digit
  index for this writer, 4 NIST class code, 5 global NIST digit index, 6 duplicate flag, 7 unused.
  """
  if split not in ("train", "test"):
    raise ValueError(f"unknown QMNIST split {split!r}; valid splits are ['test', 'train']")
  data_dir = resolve_data_dir(data_dir)
  labels_path = _require_file("qmnist", data_dir, "qmnist",
                              _candidates(f"qmnist-{split}-labels-idx2-int"))
  labels = idx.read_idx(labels_path, expected_magic=idx.QMNIST_LABELS_MAGIC)
  if labels.shape[1] != 8:
    raise DataError(f"{labels_path}: shape {labels.shape}, expected (N, 8) QMNIST label columns")
  return labels.astype(np.int32, copy=False)
