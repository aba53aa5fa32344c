"""Tests for the pinned, atomic downloader against a local HTTP server (never the internet)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpcodec.data import fetch
from mpcodec.data.dataset import DataError
from tests import support

REPO_ROOT = support.REPO_ROOT
# The shared data folder serves as the "remote" in most tests here: its files are what the pins describe.
SHARED_FOLDERS = ("mnist", "fashion-mnist", "kmnist", "qmnist", "ag_news")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  requested: list[str]

  def log_message(self, *args):
    pass

  def do_GET(self):
    self.requested.append(self.path)
    super().do_GET()


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[tuple[str, list[str]]]:
  """Serves `directory` on 127.0.0.1 (ephemeral port) in a thread; yields (base URL, request log)."""
  requested: list[str] = []
  handler = type("Handler", (_QuietHandler,), {"requested": requested})
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                           functools.partial(handler, directory=str(directory)))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}", requested
  finally:
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
  # A proxy set in the environment must not intercept requests to the local server.
  monkeypatch.setenv("no_proxy", "*")
  monkeypatch.setenv("NO_PROXY", "*")


def sha256_of(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def test_fetch_mnist_verifies_then_skips_present_files(tmp_path):
  shared = support.require_data("mnist")
  destination = tmp_path / "data"
  with serve(shared) as (base_url, requested):
    statuses = fetch.fetch_datasets(["mnist"], str(destination), base_url)
    assert statuses == {remote.path: "downloaded" for remote in fetch.REMOTE_FILES["mnist"]}
    assert len(requested) == 4
    for remote in fetch.REMOTE_FILES["mnist"]:
      fetched = (destination / remote.path).read_bytes()
      assert fetched == (shared / remote.path).read_bytes()
      # The pin is on the decompressed payload; check it independently of fetch's own code.
      assert sha256_of(gzip.decompress(fetched)) == remote.payload_sha256
    assert sorted(os.listdir(destination / "mnist")) == sorted(
        os.path.basename(remote.path) for remote in fetch.REMOTE_FILES["mnist"])
    again = fetch.fetch_datasets(["mnist"], str(destination), base_url)
    assert set(again.values()) == {"present"} and len(requested) == 4


def test_checksum_mismatch_deletes_download_and_names_digests(tmp_path):
  served = tmp_path / "served" / "mnist"
  served.mkdir(parents=True)
  shared = support.require_data("mnist/t10k-labels-idx1-ubyte.gz")
  labels = gzip.decompress((shared / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
  corrupted = bytearray(labels)
  corrupted[100] = (corrupted[100] + 1) % 10  # One wrong label: still a valid IDX file.
  (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(corrupted)))
  remote = next(r for r in fetch.REMOTE_FILES["mnist"] if r.path.endswith("t10k-labels-idx1-ubyte.gz"))
  destination = tmp_path / "data"
  with serve(tmp_path / "served") as (base_url, _):
    with pytest.raises(fetch.ChecksumError) as error:
      fetch.fetch_file(remote, str(destination), base_url)
  message = str(error.value)
  assert "t10k-labels-idx1-ubyte.gz" in message
  assert remote.payload_sha256 in message and sha256_of(bytes(corrupted)) in message
  # Neither the target nor a temporary file is left behind.
  assert os.listdir(destination / "mnist") == []


def test_present_file_with_wrong_checksum_is_downloaded_again(tmp_path):
  remote = next(r for r in fetch.REMOTE_FILES["mnist"] if r.path.endswith("t10k-labels-idx1-ubyte.gz"))
  target = tmp_path / remote.path
  target.parent.mkdir(parents=True)
  target.write_bytes(b"stale")
  with serve(support.require_data(remote.path)) as (base_url, requested):
    assert fetch.fetch_file(remote, str(tmp_path), base_url) == "downloaded"
  assert requested == ["/mnist/t10k-labels-idx1-ubyte.gz"]
  fetch.verify_file(str(target), remote)


def test_pins_match_every_shared_file():
  shared = support.require_data(*SHARED_FOLDERS)
  checked = 0
  for remotes in fetch.REMOTE_FILES.values():
    for remote in remotes:
      path = shared / remote.path
      if path.exists():
        fetch.verify_file(str(path), remote)
        checked += 1
  assert checked >= 13  # The 13 shared MNIST, Fashion-MNIST, KMNIST, QMNIST and AG News files.


def test_unpinned_file_needs_allow_unpinned(tmp_path):
  remote = fetch.RemoteFile(path="qmnist/LICENSE", urls=())
  shared = support.require_data(remote.path)
  with serve(shared) as (base_url, requested):
    with pytest.raises(DataError, match="allow_unpinned"):
      fetch.fetch_file(remote, str(tmp_path), base_url)
    assert requested == []
    assert fetch.fetch_file(remote, str(tmp_path), base_url, allow_unpinned=True) == "downloaded"
  fetched = (tmp_path / "qmnist" / "LICENSE").read_bytes()
  assert fetched == (shared / "qmnist" / "LICENSE").read_bytes()


def test_unreachable_source_and_unknown_name(tmp_path):
  remote = fetch.REMOTE_FILES["qmnist"][0]
  (tmp_path / "empty").mkdir()
  with serve(tmp_path / "empty") as (base_url, _):
    with pytest.raises(DataError, match="could not download qmnist/qmnist-train-labels-idx2-int.gz"):
      fetch.fetch_file(remote, str(tmp_path / "data"), base_url)
  with pytest.raises(ValueError, match="valid names are"):
    fetch.fetch_datasets(["cifar10"], str(tmp_path))


def test_command_line_fetch(tmp_path):
  shared = support.require_data("qmnist", "ag_news/test.csv")
  destination = tmp_path / "data"
  env = dict(os.environ, no_proxy="*", NO_PROXY="*")
  with serve(shared) as (base_url, _):
    result = subprocess.run(
        [sys.executable, "-m", "launch.fetch_data", "--datasets=qmnist,ag_news",
         f"--data_dir={destination}", f"--base_url={base_url}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
  # ag_news/train.csv is not in the shared data, so the command must fail naming it.
  assert result.returncode != 0
  assert "ag_news/train.csv" in result.stderr and "1 file(s) failed" in result.stderr
  assert (destination / "ag_news" / "test.csv").exists()
  for name in ("qmnist-train-labels-idx2-int.gz", "qmnist-test-labels-idx2-int.gz"):
    fetched = (destination / "qmnist" / name).read_bytes()
    assert fetched == (shared / "qmnist" / name).read_bytes()
  shutil.rmtree(destination / "qmnist")
  with serve(shared) as (base_url, _):
    result = subprocess.run(
        [sys.executable, "-m", "launch.fetch_data", "--datasets=qmnist",
         f"--data_dir={destination}", f"--base_url={base_url}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "all files of qmnist" in result.stderr and "Traceback" not in result.stderr
