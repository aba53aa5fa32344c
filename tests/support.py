"""Paths shared by the tests: the repository root and the real-data folder, and the gate on real data.

A test that reads real data calls `require_data(...)` first, naming the folders it reads. When
the data are missing it is skipped, with a reason naming where it looked and how to fetch them; with
MPCODEC_REQUIRE_DATA=1 (CI sets it) it fails instead, so a CI run can never pass by skipping them.
"""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR_ENV = "MPCODEC_DATA_DIR"
REQUIRE_DATA_ENV = "MPCODEC_REQUIRE_DATA"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def data_dir() -> Path:
  """The shared real-data folder: $MPCODEC_DATA_DIR, else ../shared/data beside the repository."""
  return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


# As resolved when the tests start; `require_data` reads the environment again at each call.
DATA_DIR = data_dir()


def data_required() -> bool:
  """Whether $MPCODEC_REQUIRE_DATA asks for missing real data to fail the tests instead of skipping."""
  value = os.environ.get(REQUIRE_DATA_ENV, "").strip().lower()
  if value in ("", "0", "false", "no"):
    return False
  if value in ("1", "true", "yes"):
    return True
  pytest.fail(f"{REQUIRE_DATA_ENV}={os.environ[REQUIRE_DATA_ENV]!r}: expected 1 (missing real data fails "
              f"the tests) or 0 / unset (they are skipped)", pytrace=False)


def _fetch_names(paths: tuple[str, ...]) -> list[str]:
  """The launch.fetch_data dataset names whose folders hold `paths` (all of them when none does)."""
  from mpcodec.data import fetch  # pylint: disable=g-import-not-at-top
  by_folder = {}
  for name, remotes in fetch.REMOTE_FILES.items():
    for remote in remotes:
      by_folder.setdefault(remote.path.split("/")[0], name)
  names = sorted({by_folder[p.split("/")[0]] for p in paths if p.split("/")[0] in by_folder})
  return names or sorted(fetch.REMOTE_FILES)


def require_data(*paths: str) -> Path:
  """The real-data folder, once it and each of `paths` (relative to it, e.g. "mnist") exist.

  Otherwise the calling test is skipped (pytest.skip) or, with MPCODEC_REQUIRE_DATA=1, failed
  (pytest.fail); the message names the folder it looked in, where that folder came from, what is missing
  and the command that fetches it.
  """
  root = data_dir()
  source = (f"from ${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV)
            else f"${DATA_DIR_ENV} unset: the default ../shared/data beside the repository")
  if not root.is_dir():
    missing = paths
    problem = f"real data folder {root} ({source}) does not exist"
  else:
    missing = tuple(p for p in paths if not (root / p).exists())
    if not missing:
      return root
    problem = f"real data folder {root} ({source}) has no {', '.join(missing)}"
  fetch_hint = f"python -m launch.fetch_data --datasets={','.join(_fetch_names(missing))} --data_dir={root}"
  message = f"{problem}; fetch it with `{fetch_hint}`, or point {DATA_DIR_ENV} at a folder that holds it"
  if data_required():
    pytest.fail(f"{message}; failing, not skipping, because {REQUIRE_DATA_ENV}={os.environ[REQUIRE_DATA_ENV]}", pytrace=False)
  pytest.skip(f"{message}; set {REQUIRE_DATA_ENV}=1 to make this a failure")


def assert_trees_equal(a, b) -> None:
  """Two pytrees have the same structure and bit-equal leaves."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def toy_images(num_train=96, num_test=40, seed=0):
  """A learnable 3-class image set (28 x 28 x 1): the class sets which third of the image is bright."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mpcodec.data.dataset import Dataset  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)

  def split(n):
    labels = rng.integers(0, 3, n).astype(np.int32)
    images = rng.uniform(0, 0.3, (n, 28, 28, 1)).astype(np.float32)
    for i, label in enumerate(labels):
      images[i, :, 9 * label:9 * label + 9] += 0.6
    return images, labels

  train_x, train_y = split(num_train)
  test_x, test_y = split(num_test)
  return Dataset("toy", "image", train_x, train_y, test_x, test_y, num_classes=3)
