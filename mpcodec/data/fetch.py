"""Downloads the real datasets into a data directory, verified against pinned checksums.

Each file is streamed into a temporary file beside its target, checked, and only then renamed onto the
target (`os.replace`), so an interrupted or corrupt download never leaves a file a loader would read. A
file already present with the right checksum is skipped; one with a wrong checksum is downloaded again.

What is pinned, and why:
  * gzip files: the sha256 of the *decompressed* payload (`payload_sha256`). Mirrors and distributions
    recompress these files (the shared MNIST and Fashion-MNIST copies are recompressed; their content is
    byte-identical to the official files), so a pin on the compressed bytes would reject good copies.
  * files whose payload digest we could not compute (KMNIST train, no copy at hand) carry the published
    sha256 of the downloaded file (`file_sha256`, as listed by torchvision-ruby for the official files).
  * AG News train.csv has only a published MD5 (torchtext's list); it is checked with that (`file_md5`).
  * A file with no pin at all is downloaded only with `allow_unpinned=True`, and is reported as unpinned.

The layout matches the loaders in `mpcodec.data.registry`: mnist/, fashion-mnist/, kmnist/, qmnist/,
ag_news/. A `base_url` replaces the official hosts with one server laid out like a data directory
(`{base_url}/mnist/train-images-idx3-ubyte.gz`), e.g. another machine's copy served over HTTP.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from typing import Literal

from mpcodec.data.dataset import DataError

_CHUNK_BYTES = 1 << 20


class ChecksumError(DataError):
  """A downloaded or present file does not match its pinned digest."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
  """One file of a dataset: where it goes in the data directory, where it comes from, its pins."""

  path: str                                    # relative to the data directory
  urls: tuple[str, ...]                        # official source first, then mirrors
  payload_sha256: str | None = None            # sha256 of the decompressed content (gzip files)
  file_sha256: str | None = None               # sha256 of the bytes as downloaded
  file_md5: str | None = None                  # published MD5 of the downloaded bytes, when that is all

  @property
  def pinned(self) -> bool:
    return any((self.payload_sha256, self.file_sha256, self.file_md5))


def _files(folder: str, hosts: Sequence[str], pins: dict[str, dict[str, str]]) -> tuple[RemoteFile, ...]:
  return tuple(RemoteFile(path=f"{folder}/{name}", urls=tuple(f"{host}{name}" for host in hosts), **pin)
               for name, pin in pins.items())


_MNIST_HOSTS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_HOSTS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_KMNIST_HOSTS = ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
_QMNIST_HOSTS = ("https://raw.githubusercontent.com/facebookresearch/qmnist/master/",)
_AG_NEWS_HOSTS = ("https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/",)

REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _files("mnist", _MNIST_HOSTS, {
        "train-images-idx3-ubyte.gz": {
            "payload_sha256": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"},
        "train-labels-idx1-ubyte.gz": {
            "payload_sha256": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"},
        "t10k-images-idx3-ubyte.gz": {
            "payload_sha256": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"},
        "t10k-labels-idx1-ubyte.gz": {
            "payload_sha256": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
    }),
    "fashion_mnist": _files("fashion-mnist", _FASHION_HOSTS, {
        "train-images-idx3-ubyte.gz": {
            "payload_sha256": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"},
        "train-labels-idx1-ubyte.gz": {
            "payload_sha256": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"},
        "t10k-images-idx3-ubyte.gz": {
            "payload_sha256": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"},
        "t10k-labels-idx1-ubyte.gz": {
            "payload_sha256": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
    }),
    "kmnist": _files("kmnist", _KMNIST_HOSTS, {
        "train-images-idx3-ubyte.gz": {
            "file_sha256": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"},
        "train-labels-idx1-ubyte.gz": {
            "file_sha256": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"},
        "t10k-images-idx3-ubyte.gz": {
            "payload_sha256": "76fbd229ce87db80dd281af5e6670de4ad0e42fb30a7bd643972994c47c1f42e"},
        "t10k-labels-idx1-ubyte.gz": {
            "payload_sha256": "a11dc742be8e781a40a92f53d6a4957e7b7d36df2faa097659131ebfd8fd60c6"},
    }),
    "qmnist": _files("qmnist", _QMNIST_HOSTS, {
        "qmnist-train-labels-idx2-int.gz": {
            "payload_sha256": "bb1b6e1ec7b04fd5696f1ed50b5f58f8ef195118edd5c93c81783df9740b8ac5"},
        "qmnist-test-labels-idx2-int.gz": {
            "payload_sha256": "92d0ccb8c25f9c6534270fb4be7e1d24a1c6d315edfc8a638bfbd31c70f362dd"},
    }),
    "ag_news": _files("ag_news", _AG_NEWS_HOSTS, {
        "train.csv": {"file_md5": "b1a00f826fdfbd249f79597b59e1dc12"},
        "test.csv": {"file_sha256": "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699"},
    }),
}

FetchStatus = Literal["present", "downloaded"]
ProgressFn = Callable[[RemoteFile, int, int | None], None]   # (file, bytes so far, total or None)


def _payload_sha256(path: str) -> str:
  """sha256 of a file's content after gunzip (of the bytes themselves if it is not gzip)."""
  with open(path, "rb") as f:
    is_gzip = f.read(2) == b"\x1f\x8b"
  digest = hashlib.sha256()
  try:
    with (gzip.open(path, "rb") if is_gzip else open(path, "rb")) as f:
      while chunk := f.read(_CHUNK_BYTES):
        digest.update(chunk)
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise ChecksumError(f"{path}: cannot decompress to check payload sha256 (truncated or corrupt "
                        f"gzip): {e}") from None
  return digest.hexdigest()


def _file_digests(path: str) -> dict[str, str]:
  sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
  with open(path, "rb") as f:
    while chunk := f.read(_CHUNK_BYTES):
      sha256.update(chunk)
      md5.update(chunk)
  return {"file_sha256": sha256.hexdigest(), "file_md5": md5.hexdigest()}


def checksum_problems(path: str, remote: RemoteFile) -> list[str]:
  """Every pinned digest of `remote` that the file at `path` fails, as 'kind: expected E, actual A'."""
  actual = _file_digests(path) if (remote.file_sha256 or remote.file_md5) else {}
  if remote.payload_sha256:
    actual["payload_sha256"] = _payload_sha256(path)
  problems = []
  for kind in ("payload_sha256", "file_sha256", "file_md5"):
    expected = getattr(remote, kind)
    if expected and actual[kind] != expected:
      problems.append(f"{kind}: expected {expected}, actual {actual[kind]}")
  return problems


def verify_file(path: str, remote: RemoteFile) -> None:
  """Raises ChecksumError naming the file, expected and actual digests when a pin does not match."""
  problems = checksum_problems(path, remote)
  if problems:
    raise ChecksumError(f"{path}: checksum mismatch for {remote.path}: {'; '.join(problems)}")


def _download(url: str, destination: str, remote: RemoteFile, progress: ProgressFn | None,
              timeout_s: float) -> None:
  with urllib.request.urlopen(url, timeout=timeout_s) as response, open(destination, "wb") as out:
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    done = 0
    while chunk := response.read(_CHUNK_BYTES):
      out.write(chunk)
      done += len(chunk)
      if progress is not None:
        progress(remote, done, total)
  if total is not None and done != total:
    raise DataError(f"{url}: download ended after {done} of {total} bytes")


def fetch_file(remote: RemoteFile, data_dir: str, base_url: str | None = None, *,
               allow_unpinned: bool = False, progress: ProgressFn | None = None,
               timeout_s: float = 60.0) -> FetchStatus:
  """Makes data_dir/remote.path a verified copy; returns 'present' (kept) or 'downloaded'."""
  target = os.path.join(data_dir, remote.path)
  if not remote.pinned and not allow_unpinned:
    raise DataError(f"{target}: no checksum is pinned for {remote.path}; pass allow_unpinned=True "
                    f"(--allow_unpinned) to download it unverified")
  if os.path.isfile(target) and (not remote.pinned or not checksum_problems(target, remote)):
    return "present"
  os.makedirs(os.path.dirname(target), exist_ok=True)
  urls = (f"{base_url.rstrip('/')}/{remote.path}",) if base_url else remote.urls
  failures = []
  for url in urls:
    fd, temp_path = tempfile.mkstemp(dir=os.path.dirname(target),
                                     prefix=f".{os.path.basename(target)}.", suffix=".part")
    os.close(fd)
    try:
      try:
        _download(url, temp_path, remote, progress, timeout_s)
      except (urllib.error.URLError, OSError, DataError) as e:
        failures.append(f"{url}: {e}")
        continue
      problems = checksum_problems(temp_path, remote)
      if problems:
        raise ChecksumError(f"{target}: checksum mismatch for the copy downloaded from {url} "
                            f"(deleted): {'; '.join(problems)}")
      os.replace(temp_path, target)
      return "downloaded"
    finally:
      if os.path.exists(temp_path):
        os.remove(temp_path)
  raise DataError(f"{target}: could not download {remote.path}; tried {'; '.join(failures)}")


def fetch_datasets(names: Sequence[str], data_dir: str, base_url: str | None = None, *,
                   allow_unpinned: bool = False, progress: ProgressFn | None = None,
                   timeout_s: float = 60.0) -> dict[str, FetchStatus]:
  """Fetches every file of the named datasets; returns {relative path: status}."""
  unknown = [name for name in names if name not in REMOTE_FILES]
  if unknown:
    raise ValueError(f"unknown dataset(s) {unknown} to fetch; valid names are {sorted(REMOTE_FILES)}")
  statuses = {}
  for name in names:
    for remote in REMOTE_FILES[name]:
      statuses[remote.path] = fetch_file(remote, data_dir, base_url, allow_unpinned=allow_unpinned,
                                         progress=progress, timeout_s=timeout_s)
  return statuses
