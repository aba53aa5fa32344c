"""GGUF reading: the Q4_1 / Q8_0 de-quantisers against planted blocks (built here from the block formats)
and against the gguf package's own, and the refusals (other architecture, unsupported type, truncated
file). `write_gguf` and `tiny_llama_tensors` build small planted files for the SmolLM2 tests too."""

import gguf
import numpy as np
import pytest

from mpcodec.models import gguf_weights
from mpcodec.models.gguf_weights import GGUFError


def quantize_q8_0(q_RxC: np.ndarray, d_RxN: np.ndarray) -> np.ndarray:
  """Bytes of Q8_0 blocks: per block the float16 scale, then 32 int8 values."""
  rows, cols = q_RxC.shape
  d = d_RxN.astype(np.float16).reshape(rows, cols // 32, 1).view(np.uint8)
  q = q_RxC.astype(np.int8).reshape(rows, cols // 32, 32).view(np.uint8)
  return np.concatenate([d, q], axis=2).reshape(rows, -1)


def quantize_q4_1(q_RxC: np.ndarray, d_RxN: np.ndarray, m_RxN: np.ndarray) -> np.ndarray:
  """Bytes of Q4_1 blocks: d, m (float16), then byte j = q_j | q_{j+16} << 4."""
  rows, cols = q_RxC.shape
  q = q_RxC.astype(np.uint8).reshape(rows, cols // 32, 32)
  packed = q[..., :16] | (q[..., 16:] << 4)
  d = d_RxN.astype(np.float16).reshape(rows, cols // 32, 1).view(np.uint8)
  m = m_RxN.astype(np.float16).reshape(rows, cols // 32, 1).view(np.uint8)
  return np.concatenate([d, m, packed], axis=2).reshape(rows, -1)


def planted_q4_1(rng, rows, cols):
  """(bytes, the values they encode) of random Q4_1 blocks."""
  q = rng.integers(0, 16, (rows, cols))
  d = rng.uniform(0.001, 0.05, (rows, cols // 32)).astype(np.float16)
  m = rng.uniform(-0.2, 0.0, (rows, cols // 32)).astype(np.float16)
  values = (np.repeat(d.astype(np.float32), 32, axis=1) * q + np.repeat(m.astype(np.float32), 32, axis=1))
  return quantize_q4_1(q, d, m), values.astype(np.float32)


def planted_q8_0(rng, rows, cols):
  q = rng.integers(-127, 128, (rows, cols))
  d = rng.uniform(0.001, 0.02, (rows, cols // 32)).astype(np.float16)
  return quantize_q8_0(q, d), (np.repeat(d.astype(np.float32), 32, axis=1) * q).astype(np.float32)


def write_gguf(path, tensors, arch="llama", metadata=None):
  """A GGUF file of `tensors` (name -> float32 array, or (bytes, type) for raw quantised blocks)."""
  writer = gguf.GGUFWriter(str(path), arch)
  for key, value in (metadata or {}).items():
    if isinstance(value, bool):
      writer.add_bool(key, value)
    elif isinstance(value, int):
      writer.add_uint32(key, value)
    elif isinstance(value, float):
      writer.add_float32(key, value)
    elif isinstance(value, str):
      writer.add_string(key, value)
    else:
      writer.add_array(key, list(value))
  for name, value in tensors.items():
    if isinstance(value, tuple):
      writer.add_tensor(name, value[0], raw_shape=value[0].shape, raw_dtype=value[1])
    else:
      writer.add_tensor(name, value)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return str(path)


def test_q4_1_dequantises_planted_blocks_and_agrees_with_the_gguf_package():
  raw, values = planted_q4_1(np.random.default_rng(0), 6, 96)
  got = gguf_weights.dequantize_q4_1(raw)
  np.testing.assert_array_equal(got, values)
  np.testing.assert_array_equal(got, gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_1))


def test_q4_1_nibble_order_low_half_first():
  q = np.arange(32)[None] % 16     # values 0..15, 0..15: low nibbles hold the first 16
  raw = quantize_q4_1(q, np.ones((1, 1)), np.zeros((1, 1)))
  assert raw[0, 4] == 0x00 and raw[0, 5] == 0x11 and raw[0, 19] == 0xFF
  np.testing.assert_array_equal(gguf_weights.dequantize_q4_1(raw)[0], q[0].astype(np.float32))


def test_q8_0_dequantises_planted_blocks_and_agrees_with_the_gguf_package():
  raw, values = planted_q8_0(np.random.default_rng(1), 5, 64)
  got = gguf_weights.dequantize_q8_0(raw)
  np.testing.assert_array_equal(got, values)
  np.testing.assert_array_equal(got, gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0))


def test_a_file_reads_back_in_numpy_order(tmp_path):
  rng = np.random.default_rng(2)
  q4, q4_values = planted_q4_1(rng, 3, 64)
  q8, q8_values = planted_q8_0(rng, 4, 32)
  f32 = rng.standard_normal((2, 5)).astype(np.float32)
  path = write_gguf(tmp_path / "m.gguf", {"a": (q4, gguf.GGMLQuantizationType.Q4_1),
                                          "b": (q8, gguf.GGMLQuantizationType.Q8_0), "c": f32,
                                          "d": f32.astype(np.float16)})
  f = gguf_weights.open_gguf(path, "llama")
  assert f.tensors["a"].shape == (3, 64) and f.tensors["a"].type_name == "Q4_1"
  np.testing.assert_array_equal(f.read("a"), q4_values)
  np.testing.assert_array_equal(f.read("b"), q8_values)
  np.testing.assert_array_equal(f.read("c"), f32)
  np.testing.assert_array_equal(f.read("d"), f32.astype(np.float16).astype(np.float32))
  assert f.get("general.architecture") == "llama"


def test_another_architecture_is_refused(tmp_path):
  path = write_gguf(tmp_path / "g.gguf", {"x": np.zeros((2, 32), np.float32)}, arch="gpt2")
  with pytest.raises(GGUFError, match=r"general.architecture is 'gpt2'; this loader reads 'llama'") as e:
    gguf_weights.open_gguf(path, "llama")
  assert "\n" not in str(e.value)


def test_an_unsupported_type_is_refused_naming_the_tensor(tmp_path):
  q5_0 = np.zeros((2, 22), np.uint8)    # one Q5_0 block (22 bytes) per row of 32
  path = write_gguf(tmp_path / "q.gguf", {"ok": np.zeros((2, 32), np.float32),
                                          "blk.0.ffn_up.weight": (q5_0, gguf.GGMLQuantizationType.Q5_0)})
  f = gguf_weights.open_gguf(path, "llama")
  with pytest.raises(GGUFError, match=r"unsupported tensor type in blk.0.ffn_up.weight \(Q5_0\)") as e:
    f.check_types()
  assert "\n" not in str(e.value)
  with pytest.raises(GGUFError, match="blk.0.ffn_up.weight has unsupported type Q5_0"):
    f.read("blk.0.ffn_up.weight")


@pytest.mark.parametrize("keep", [0.6, 0.05])
def test_a_truncated_file_is_refused(tmp_path, keep):
  rng = np.random.default_rng(3)
  path = write_gguf(tmp_path / "t.gguf", {"w": (planted_q4_1(rng, 64, 64)[0], gguf.GGMLQuantizationType.Q4_1)})
  data = open(path, "rb").read()
  cut = tmp_path / "cut.gguf"
  cut.write_bytes(data[:int(len(data) * keep)])
  with pytest.raises(GGUFError, match="truncated") as e:
    gguf_weights.open_gguf(cut, "llama")
  assert "\n" not in str(e.value)


def test_a_missing_file_is_refused(tmp_path):
  with pytest.raises(GGUFError, match="GGUF file not found"):
    gguf_weights.open_gguf(tmp_path / "none.gguf")
