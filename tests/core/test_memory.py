"""Memory-sized knobs are checked against the device's memory before anything compiles."""

import re

import pytest

from mpcodec.core import memory
from mpcodec.core.errors import ConfigError


def test_estimate_is_rows_times_width_times_bytes_times_the_factor():
  assert memory.estimate_bytes(100, 10) == 100 * 10 * 4 * memory.BUFFER_FACTOR
  assert memory.estimate_bytes(3, 5, itemsize=2, factor=1) == 30


def test_device_memory_is_known_here():
  limit, where = memory.device_memory()
  assert limit is not None and limit > 0 and where


def test_a_buffer_larger_than_the_memory_is_refused_naming_the_key():
  nbytes = memory.estimate_bytes(100_000_000, 512)   # the codec's SAE batch of 10^8 rows
  with pytest.raises(ConfigError) as e:
    memory.check_fits("sae_loop.batch_size", nbytes, "a batch of 100000000 rows x 512 latents x 2 runs",
                      available=(16 * 10 ** 9, "the host's available RAM"))
  assert str(e.value) == ("config.sae_loop.batch_size: a batch of 100000000 rows x 512 latents x 2 runs needs "
                          "about 819.2 GB, more than the 16.0 GB of the host's available RAM; lower it")
  memory.check_fits("sae_loop.batch_size", 10 ** 6, "a small batch", available=(16 * 10 ** 9, "RAM"))
  memory.check_fits("sae_loop.batch_size", nbytes, "unknown memory", available=(None, "nowhere"))
  with pytest.raises(ConfigError, match=r"^config\.k: .* more than the .* of "):
    memory.check_fits("k", 10 ** 18, "an exabyte")   # against this machine's real memory


@pytest.mark.slow
def test_codec_launch_refuses_a_batch_larger_than_the_memory_in_one_line(tmp_path):
  from tests.launch.test_faults import assert_error, launch  # pylint: disable=g-import-not-at-top
  out = launch("launch.codec", "--config=configs/codec.py:smoke", "--config.sae_loop.batch_size=100000000",
               f"--workdir={tmp_path / 'run'}", timeout=120)
  assert_error(out, re.compile(
      r"error: config\.sae_loop\.batch_size: a step of 2 runs on 100000000 rows x \d+ units needs about "
      r"[\d.]+ GB, more than the [\d.]+ GB of .*; lower it"))
  assert not (tmp_path / "run" / "checkpoints" / "sae").exists()
