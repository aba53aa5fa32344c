"""Downloads real datasets into a data directory, checked against pinned checksums.

  python -m launch.fetch_data --datasets=mnist,fashion_mnist,kmnist,ag_news,qmnist --data_dir=../shared/data

`--data_dir` (the destination) defaults to $MPCODEC_DATA_DIR. `--base_url=http://host:port` fetches from a server laid out
like a data directory instead of the official hosts. Files already present with the right checksum are
skipped; a mismatch stops with the file name and the expected and actual digests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import app, flags, logging
import tqdm

from launch import common
from mpcodec.data import fetch, registry
from mpcodec.data.dataset import DataError

_DATASETS = flags.DEFINE_list("datasets", ["mnist"],
                              f"Datasets to fetch, from {sorted(fetch.REMOTE_FILES)}.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, f"Destination; defaults to ${registry.DATA_DIR_ENV}.")
_BASE_URL = flags.DEFINE_string("base_url", None, "Server laid out like a data directory, replacing the "
                                "official hosts (e.g. http://127.0.0.1:8000).")
_ALLOW_UNPINNED = flags.DEFINE_bool("allow_unpinned", False,
                                    "Download files that have no pinned checksum.")
_TIMEOUT = flags.DEFINE_float("timeout_s", 60.0, "Socket timeout per request, seconds.")


class _Progress:
  """One tqdm bar per file, fed by fetch's progress callback."""

  def __init__(self):
    self._bar, self._path, self._done = None, None, 0

  def __call__(self, remote: fetch.RemoteFile, done: int, total: int | None) -> None:
    if remote.path != self._path:
      self.close()
      self._bar = tqdm.tqdm(total=total, desc=remote.path, unit="B", unit_scale=True, leave=False)
      self._path, self._done = remote.path, 0
    self._bar.update(done - self._done)
    self._done = done

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    self._bar, self._path = None, None


def _destination() -> str:
  """The destination folder and the dataset names, checked; UsageError naming the flag otherwise."""
  # The destination may not exist yet, so it is not checked the way a loader checks its data_dir.
  data_dir = _DATA_DIR.value or os.environ.get(registry.DATA_DIR_ENV)
  if not data_dir:
    raise app.UsageError(f"no data directory given: pass --data_dir=DIR or set {registry.DATA_DIR_ENV}=DIR")
  unknown = sorted(set(_DATASETS.value) - set(fetch.REMOTE_FILES))
  if unknown:
    raise app.UsageError(f"--datasets: unknown {unknown}; valid names are {sorted(fetch.REMOTE_FILES)}")
  return data_dir


def check():
  data_dir = _destination()
  return {"datasets": "+".join(_DATASETS.value), "data": common.check_workdir(data_dir, "--data_dir"),
          "source": _BASE_URL.value or "the official hosts (not contacted by --check_only)"}


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  data_dir = _destination()
  for name in _DATASETS.value:
    for remote in fetch.REMOTE_FILES[name]:
      if not remote.pinned:
        action = "downloaded unverified" if _ALLOW_UNPINNED.value else "refused without --allow_unpinned"
        logging.warning("%s has no pinned checksum; it is %s.", remote.path, action)
      elif not (remote.payload_sha256 or remote.file_sha256):
        logging.warning("%s is checked against its published MD5 only (no sha256 is published).",
                        remote.path)
  progress = _Progress()
  failures = []
  for name in _DATASETS.value:
    for remote in fetch.REMOTE_FILES[name]:
      # One unavailable file should not stop the others; every failure is listed at the end.
      try:
        status = fetch.fetch_file(remote, data_dir, _BASE_URL.value,
                                  allow_unpinned=_ALLOW_UNPINNED.value, progress=progress,
                                  timeout_s=_TIMEOUT.value)
      except DataError as e:
        failures.append(str(e))
        logging.error("%s", e)
        continue
      finally:
        progress.close()
      logging.info("%-45s %s", remote.path, status)
  if failures:
    raise SystemExit(f"fetch_data: {len(failures)} file(s) failed:\n" + "\n".join(failures))
  logging.info("all files of %s in %s verified.", ",".join(_DATASETS.value), data_dir)


if __name__ == "__main__":
  common.run(main, check)
