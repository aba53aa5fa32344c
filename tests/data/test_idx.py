"""Tests for the IDX reader: round trips, gzip detection by content, and every kind of bad file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mpcodec.data import idx
from mpcodec.data.dataset import DataError
from tests import support


def idx_bytes(array: np.ndarray, type_code: int) -> bytes:
  """Reference IDX writer: big-endian magic 0x0000TTNN, int32 sizes, big-endian elements."""
  dtype = {0x08: ">u1", 0x0C: ">i4"}[type_code]
  header = bytes([0, 0, type_code, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.astype(dtype).tobytes()


def write(path: Path, data: bytes) -> str:
  path.write_bytes(data)
  return str(path)


@pytest.fixture
def images():
  return np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)


def test_round_trip_raw_and_gzip_detected_by_content_not_name(tmp_path, images):
  raw = idx_bytes(images, 0x08)
  # Names lie on purpose: the reader must look at the gzip magic bytes.
  raw_named_gz = write(tmp_path / "raw.gz", raw)
  gzip_named_raw = write(tmp_path / "compressed.idx", gzip.compress(raw))
  for path in (raw_named_gz, gzip_named_raw):
    out = idx.read_idx(path, expected_magic=idx.IMAGES_MAGIC)
    assert out.dtype == np.uint8 and out.shape == (7, 5, 3)
    np.testing.assert_array_equal(out, images)


def test_qmnist_int32_big_endian_values(tmp_path):
  table = np.array([[1, -2, 70000, 2**31 - 1, -(2**31), 0, 5, 9]] * 3, dtype=np.int64)
  table[1] *= -1
  table[1, 3] = 123
  path = write(tmp_path / "q.gz", gzip.compress(idx_bytes(table, 0x0C)))
  out = idx.read_idx(path, expected_magic=idx.QMNIST_LABELS_MAGIC)
  assert out.dtype == np.int32 and out.dtype.isnative and out.shape == (3, 8)
  np.testing.assert_array_equal(out, table.astype(np.int32))


def test_truncated_raw_file_names_file_and_byte_counts(tmp_path, images):
  raw = idx_bytes(images, 0x08)
  path = write(tmp_path / "images-idx3-ubyte", raw[:-10])
  with pytest.raises(DataError) as error:
    idx.read_idx(path)
  message = str(error.value)
  assert path in message and "truncated" in message
  assert str(7 * 5 * 3) in message and str(7 * 5 * 3 - 10) in message


def test_trailing_bytes_rejected(tmp_path, images):
  path = write(tmp_path / "x", idx_bytes(images, 0x08) + b"\x00")
  with pytest.raises(DataError, match="trailing bytes"):
    idx.read_idx(path)


def test_truncated_gzip_stream_names_file(tmp_path, images):
  compressed = gzip.compress(idx_bytes(images, 0x08))
  path = write(tmp_path / "cut.gz", compressed[: len(compressed) // 2])
  with pytest.raises(DataError) as error:
    idx.read_idx(path)
  assert path in str(error.value) and "gzip" in str(error.value)


def test_corrupt_gzip_stream_names_file(tmp_path, images):
  compressed = bytearray(gzip.compress(idx_bytes(images, 0x08)))
  compressed[12:20] = b"\xff" * 8
  path = write(tmp_path / "bad.gz", bytes(compressed))
  with pytest.raises(DataError) as error:
    idx.read_idx(path)
  assert path in str(error.value)


def test_wrong_magic_number(tmp_path, images):
  labels_path = write(tmp_path / "labels", idx_bytes(np.arange(4, dtype=np.uint8), 0x08))
  with pytest.raises(DataError) as error:
    idx.read_idx(labels_path, expected_magic=idx.IMAGES_MAGIC)
  message = str(error.value)
  assert labels_path in message and "0x00000801" in message and "0x00000803" in message
  garbage_path = write(tmp_path / "garbage", b"PK\x03\x04" + bytes(40))
  with pytest.raises(DataError, match="not an IDX file"):
    idx.read_idx(garbage_path)


def test_too_short_for_header(tmp_path):
  path = write(tmp_path / "short", bytes([0, 0, 8, 3, 0, 0]))
  with pytest.raises(DataError, match="truncated IDX header"):
    idx.read_idx(path)


def test_missing_file_is_a_data_error(tmp_path):
  with pytest.raises(DataError, match="not found"):
    idx.read_idx(tmp_path / "absent.gz")


def test_real_mnist_files_parse_with_known_class_counts():
  mnist = support.require_data("mnist") / "mnist"
  train_images = idx.read_idx(mnist / "train-images-idx3-ubyte.gz", idx.IMAGES_MAGIC)
  train_labels = idx.read_idx(mnist / "train-labels-idx1-ubyte.gz", idx.LABELS_MAGIC)
  test_labels = idx.read_idx(mnist / "t10k-labels-idx1-ubyte.gz", idx.LABELS_MAGIC)
  assert train_images.shape == (60000, 28, 28) and train_images.dtype == np.uint8
  # Published MNIST class frequencies.
  np.testing.assert_array_equal(np.bincount(train_labels),
                                [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
  np.testing.assert_array_equal(np.bincount(test_labels),
                                [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
  # The widely used MNIST normalisation constants: pixel mean 0.1307, std 0.3081 on the train split.
  pixels = train_images.astype(np.float64) / 255.0
  assert abs(pixels.mean() - 0.1307) < 1e-4 and abs(pixels.std() - 0.3081) < 1e-4
