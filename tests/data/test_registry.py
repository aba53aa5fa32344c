"""Tests for the dataset registry on the real shared data: shapes, splits, vocabulary, bad input."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from mpcodec.core import configuration
from mpcodec.data import idx, registry, splits, text
from mpcodec.data.dataset import DataError, Dataset
from tests import support


def data(*paths: str) -> str:
  """The real-data folder as a string, once it holds `paths`; else the test is skipped (or failed)."""
  return str(support.require_data(*paths))


def row_keys(images: np.ndarray) -> list[bytes]:
  """One hashable key per image, to compare sets of images independently of order."""
  return sorted(image.tobytes() for image in images)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
  return registry.get_dataset("mnist", data("mnist"))


def test_mnist_shapes_scaling_and_labels(mnist):
  assert (mnist.kind, mnist.num_classes, mnist.input_shape) == ("image", 10, (28, 28, 1))
  assert (mnist.num_train, mnist.num_test) == (60000, 10000)
  assert mnist.train_x.dtype == np.float32 and mnist.train_y.dtype == np.int32
  raw = idx.read_idx(support.require_data("mnist") / "mnist" / "t10k-images-idx3-ubyte.gz")
  np.testing.assert_array_equal(mnist.test_x[..., 0], raw.astype(np.float32) / np.float32(255))
  assert mnist.train_x.min() == 0.0 and mnist.train_x.max() == 1.0
  np.testing.assert_array_equal(mnist.class_counts("test"),
                                [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
  assert mnist.metadata["split"]["kind"] == "official"


def test_qmnist_column_zero_equals_mnist_train_labels(mnist):
  qmnist_dir = data("qmnist")
  train = registry.qmnist_labels(qmnist_dir, "train")
  assert train.shape == (60000, 8) and train.dtype == np.int32
  np.testing.assert_array_equal(train[:, 0], mnist.train_y)
  test = registry.qmnist_labels(qmnist_dir, "test")
  # QMNIST's test file extends MNIST's 10k test digits to 60k; its first 10k rows are MNIST's test set.
  assert test.shape == (60000, 8)
  np.testing.assert_array_equal(test[:10000, 0], mnist.test_y)
  with pytest.raises(ValueError, match="valid splits"):
    registry.qmnist_labels(qmnist_dir, "validation")


def test_fashion_mnist_official_split():
  fashion = registry.get_dataset("fashion_mnist", data("fashion-mnist"))
  assert (fashion.num_train, fashion.num_test, fashion.input_shape) == (60000, 10000, (28, 28, 1))
  np.testing.assert_array_equal(fashion.class_counts("train"), [6000] * 10)
  np.testing.assert_array_equal(fashion.class_counts("test"), [1000] * 10)
  assert fashion.class_names[9] == "Ankle boot"


def test_kmnist_seeded_stratified_split_recorded_in_metadata():
  kmnist_dir = data("kmnist")
  first = registry.get_dataset("kmnist", kmnist_dir, seed=3)
  again = registry.get_dataset("kmnist", kmnist_dir, seed=3)
  other = registry.get_dataset("kmnist", kmnist_dir, seed=4, test_fraction=0.3)
  split = first.metadata["split"]
  assert split["kind"] == "stratified" and split["seed"] == 3 and split["test_fraction"] == 0.2
  assert (split["train_size"], split["test_size"]) == (8000, 2000) == (first.num_train, first.num_test)
  assert split["train_class_counts"] == [800] * 10 and split["test_class_counts"] == [200] * 10
  np.testing.assert_array_equal(first.class_counts("test"), [200] * 10)
  np.testing.assert_array_equal(first.test_x, again.test_x)
  np.testing.assert_array_equal(first.train_y, again.train_y)
  assert other.metadata["split"]["test_class_counts"] == [300] * 10
  # The two parts are disjoint and together give back the whole official test file.
  raw = idx.read_idx(Path(kmnist_dir) / "kmnist" / "t10k-images-idx3-ubyte.gz")
  whole = raw.astype(np.float32)[..., None] / np.float32(255)
  assert row_keys(np.concatenate([first.train_x, first.test_x])) == row_keys(whole)
  assert not set(row_keys(first.test_x[:200])) & set(row_keys(first.train_x))
  assert not np.array_equal(first.test_x[:50], other.test_x[:50])


def test_kmnist_uses_official_split_when_train_files_exist(tmp_path):
  folder = tmp_path / "kmnist"
  folder.mkdir()
  source = support.require_data("kmnist") / "kmnist"
  for split_prefix in ("train", "t10k"):
    for kind in ("images-idx3", "labels-idx1"):
      (folder / f"{split_prefix}-{kind}-ubyte.gz").symlink_to(source / f"t10k-{kind}-ubyte.gz")
  kmnist = registry.get_dataset("kmnist", str(tmp_path))
  assert kmnist.metadata["split"] == {"kind": "official", "train_size": 10000, "test_size": 10000}
  (folder / "train-labels-idx1-ubyte.gz").unlink()
  with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: file not found"):
    registry.get_dataset("kmnist", str(tmp_path))


@pytest.fixture(scope="module")
def ag_news() -> tuple[Dataset, text.Vocabulary]:
  return registry.load_ag_news(data("ag_news/test.csv"), seed=0, options=registry.TextOptions(vocab_size=5000))


def test_ag_news_split_ids_and_metadata(ag_news):
  dataset, vocabulary = ag_news
  assert (dataset.kind, dataset.input_shape, dataset.num_classes) == ("text", (64,), 4)
  assert (dataset.num_train, dataset.num_test) == (6080, 1520)
  np.testing.assert_array_equal(dataset.class_counts("test"), [380] * 4)
  assert dataset.metadata["split"]["train_class_counts"] == [1520] * 4
  assert dataset.train_x.dtype == np.int32 and dataset.vocab_size == vocabulary.size == 5000
  assert dataset.train_x.min() >= 0 and dataset.train_x.max() < 5000
  # Padding only at the end of a row: once a row hits PAD it stays PAD.
  is_pad = dataset.train_x == text.PAD_ID
  assert np.all(is_pad[:, 1:] >= is_pad[:, :-1])
  assert dataset.class_names == ("World", "Sports", "Business", "Sci/Tech")


def test_ag_news_vocabulary_comes_from_the_training_split_only(ag_news):
  dataset, vocabulary = ag_news
  examples = text.read_ag_news_csv(support.require_data("ag_news/test.csv") / "ag_news" / "test.csv")
  split = splits.stratified_split(examples.labels, 0.2, seed=0)
  train_words = {w for i in split[0] for w in text.tokenize(examples.texts[i])}
  held_out_only = {w for i in split[1] for w in text.tokenize(examples.texts[i])} - train_words
  assert held_out_only and set(vocabulary.words) <= train_words
  assert not held_out_only & set(vocabulary.words)
  # Decoding the first training row gives back its first words (in vocabulary or OOV).
  first_tokens = text.tokenize(examples.texts[split[0][0]])[:64]
  words = ("<pad>", "<oov>") + vocabulary.words
  expected = [t if t in vocabulary.index else "<oov>" for t in first_tokens]
  assert [words[i] for i in dataset.train_x[0] if i != text.PAD_ID] == expected


def test_ag_news_options_through_get_dataset():
  small = registry.get_dataset("ag_news", data("ag_news/test.csv"), seed=1, vocab_size=50, max_length=8, test_fraction=0.5)
  assert small.input_shape == (8,) and small.train_x.max() < 50 and small.vocab_size == 50
  assert (small.num_train, small.num_test) == (3800, 3800)
  assert small.metadata["split"]["seed"] == 1


def test_bars_wraps_the_synthetic_generator():
  bars = registry.get_dataset("bars", seed=0, num_train=8, num_test=8, image_size=8, max_thickness=3)
  assert (bars.kind, bars.input_shape, bars.num_classes) == ("image", (8, 8, 3), 2)
  assert (bars.num_train, bars.num_test) == (8, 8)
  assert bars.metadata["label"] == "orientation"
  np.testing.assert_array_equal(np.bincount(bars.train_y), [4, 4])
  # Conjunctions are balanced: each orientation comes in both colours.
  pairs = set(zip(bars.train_y.tolist(), bars.metadata["train_colour"].tolist()))
  assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}
  with pytest.raises(configuration.ConfigError, match="num_trains"):
    registry.get_dataset("bars", num_trains=8)


def test_registry_example_shapes_match_the_loaded_images(mnist):
  """The shape the registry states before loading (used to estimate costs) is what loading gives."""
  assert registry.DATASETS["mnist"].example_shape == mnist.input_shape
  data_dir = data("fashion-mnist", "kmnist")
  for name in ("fashion_mnist", "kmnist"):
    assert registry.DATASETS[name].example_shape == registry.get_dataset(name, data_dir).input_shape
  bars = registry.get_dataset("bars", seed=0, num_train=8, num_test=8)   # default image size
  assert registry.DATASETS["bars"].example_shape == bars.input_shape
  assert registry.DATASETS["ag_news"].example_shape is None   # text: set by max_length


def test_unknown_dataset_lists_valid_names(tmp_path):
  with pytest.raises(ValueError) as error:
    registry.get_dataset("cifar10", str(tmp_path))   # refused by name: no data needed
  for name in ("mnist", "fashion_mnist", "kmnist", "ag_news", "bars"):
    assert name in str(error.value)


def test_unknown_or_impossible_options_name_the_key(tmp_path):
  # The options are checked before any file is read: an empty folder is enough.
  with pytest.raises(configuration.ConfigError, match="vocab_sise"):
    registry.get_dataset("ag_news", str(tmp_path), vocab_sise=10)
  with pytest.raises(configuration.ConfigError, match="test_fraction"):
    registry.get_dataset("kmnist", str(tmp_path), test_fraction=1.5)


def test_data_dir_from_flag_then_env_then_error(monkeypatch, tmp_path):
  from_env = tmp_path / "from_env"
  from_env.mkdir()
  monkeypatch.setenv(registry.DATA_DIR_ENV, str(from_env))
  assert registry.resolve_data_dir(str(tmp_path)) == str(tmp_path)
  assert registry.resolve_data_dir(None) == str(from_env)
  monkeypatch.delenv(registry.DATA_DIR_ENV)
  with pytest.raises(DataError) as error:
    registry.get_dataset("mnist")
  assert "--data_dir" in str(error.value) and registry.DATA_DIR_ENV in str(error.value)
  with pytest.raises(DataError, match="does not exist"):
    registry.resolve_data_dir(str(tmp_path / "nowhere"))


def test_missing_file_names_it_and_how_to_fetch(tmp_path):
  (tmp_path / "mnist").mkdir()
  with pytest.raises(DataError) as error:
    registry.get_dataset("mnist", str(tmp_path))
  message = str(error.value)
  assert str(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz") in message
  assert "python -m launch.fetch_data --datasets=mnist" in message
  with pytest.raises(DataError, match="test.csv: file not found"):
    registry.get_dataset("ag_news", str(tmp_path))


def test_truncated_or_mislabelled_files_stop_with_the_file_name(tmp_path):
  folder = tmp_path / "kmnist"
  folder.mkdir()
  source = support.require_data("kmnist") / "kmnist"
  images = folder / "t10k-images-idx3-ubyte.gz"
  labels = folder / "t10k-labels-idx1-ubyte.gz"
  shutil.copy(source / "t10k-labels-idx1-ubyte.gz", labels)
  # A raw (uncompressed) copy cut short by 100 bytes, under the .gz name.
  images.write_bytes(gzip.decompress((source / images.name).read_bytes())[:-100])
  with pytest.raises(DataError) as error:
    registry.get_dataset("kmnist", str(tmp_path))
  assert str(images) in str(error.value) and "7840000" in str(error.value)
  # The labels file where the images file should be: wrong magic number.
  images.unlink()
  shutil.copy(source / "t10k-labels-idx1-ubyte.gz", images)
  with pytest.raises(DataError, match="wrong IDX magic number 0x00000801"):
    registry.get_dataset("kmnist", str(tmp_path))
