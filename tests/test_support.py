"""Tests of the real-data gate in tests/support.py: skip without the data, fail when CI requires them."""

import os

import pytest

from tests import support

SKIP, FAIL = pytest.skip.Exception, pytest.fail.Exception


def outcome(*paths: str) -> tuple[type[BaseException] | None, str]:
  """(the pytest outcome require_data raised, its message), caught here so a skip cannot hide a failure
  of these tests; (None, "") when it returned."""
  try:
    support.require_data(*paths)
  except (SKIP, FAIL) as e:
    return type(e), str(e)
  return None, ""


@pytest.fixture
def missing_dir(tmp_path, monkeypatch):
  """$MPCODEC_DATA_DIR pointing at a folder that does not exist, $MPCODEC_REQUIRE_DATA unset."""
  folder = tmp_path / "no_data_here"
  monkeypatch.setenv(support.DATA_DIR_ENV, str(folder))
  monkeypatch.delenv(support.REQUIRE_DATA_ENV, raising=False)
  return folder


def test_missing_data_dir_skips_naming_the_folder_and_the_fetch_command(missing_dir):
  kind, message = outcome("mnist")
  assert kind is SKIP, f"expected a skip, got {kind}: {message}"
  assert f"real data folder {missing_dir} (from $MPCODEC_DATA_DIR) does not exist" in message
  assert f"python -m launch.fetch_data --datasets=mnist --data_dir={missing_dir}" in message
  assert "MPCODEC_REQUIRE_DATA=1" in message


@pytest.mark.parametrize("value", ["1", "true"])
def test_missing_data_dir_fails_when_data_are_required(missing_dir, monkeypatch, value):
  monkeypatch.setenv(support.REQUIRE_DATA_ENV, value)
  kind, message = outcome("mnist")
  assert kind is FAIL, f"expected a failure, got {kind}: {message}"
  assert f"real data folder {missing_dir} (from $MPCODEC_DATA_DIR) does not exist" in message
  assert f"python -m launch.fetch_data --datasets=mnist --data_dir={missing_dir}" in message
  assert f"failing, not skipping, because MPCODEC_REQUIRE_DATA={value}" in message


def test_required_is_off_for_zero_and_refuses_unknown_values(missing_dir, monkeypatch):
  monkeypatch.setenv(support.REQUIRE_DATA_ENV, "0")
  assert outcome()[0] is SKIP
  monkeypatch.setenv(support.REQUIRE_DATA_ENV, "sometimes")
  kind, message = outcome()
  assert kind is FAIL and "MPCODEC_REQUIRE_DATA='sometimes': expected 1" in message, (kind, message)


def test_present_data_are_returned_and_missing_folders_named(tmp_path, monkeypatch):
  monkeypatch.setenv(support.DATA_DIR_ENV, str(tmp_path))
  monkeypatch.setenv(support.REQUIRE_DATA_ENV, "1")   # present data never skip or fail
  (tmp_path / "mnist").mkdir()
  (tmp_path / "ag_news").mkdir()
  (tmp_path / "ag_news" / "test.csv").write_text("")
  assert support.require_data() == tmp_path
  assert support.require_data("mnist", "ag_news/test.csv") == tmp_path
  monkeypatch.delenv(support.REQUIRE_DATA_ENV)
  # The folder exists but lacks some data: the reason names what is missing and only the datasets to
  # fetch (fashion-mnist/ is the folder of the dataset launch.fetch_data calls fashion_mnist).
  kind, message = outcome("mnist", "fashion-mnist", "kmnist/t10k-images-idx3-ubyte.gz")
  assert kind is SKIP, f"expected a skip, got {kind}: {message}"
  assert f"real data folder {tmp_path} (from $MPCODEC_DATA_DIR) has no fashion-mnist, kmnist/" in message
  assert f"--datasets=fashion_mnist,kmnist --data_dir={tmp_path}" in message


def test_unset_variable_names_the_default_folder(tmp_path, monkeypatch):
  monkeypatch.delenv(support.DATA_DIR_ENV, raising=False)
  monkeypatch.delenv(support.REQUIRE_DATA_ENV, raising=False)
  monkeypatch.setattr(support, "DEFAULT_DATA_DIR", tmp_path / "shared" / "data")
  kind, message = outcome()
  assert kind is SKIP, f"expected a skip, got {kind}: {message}"
  assert f"real data folder {tmp_path / 'shared' / 'data'} ($MPCODEC_DATA_DIR unset" in message
  monkeypatch.setenv(support.DATA_DIR_ENV, "")   # empty counts as unset: the default folder again
  kind, message = outcome()
  assert kind is SKIP and "MPCODEC_DATA_DIR unset" in message, (kind, message)


def test_relative_data_dir_from_the_readme_is_made_absolute(tmp_path):
  """The README passes MPCODEC_DATA_DIR=../shared/data; conftest turns it into an absolute path that
  still names the same folder after a test changes directory (a subprocess sees the same)."""
  import subprocess
  import sys
  (tmp_path / "repo").mkdir()
  (tmp_path / "shared" / "data").mkdir(parents=True)
  probe = ("import os, tests.conftest; os.chdir('/'); "
           "print(os.environ['MPCODEC_DATA_DIR'])")
  env = {**os.environ, "MPCODEC_DATA_DIR": "../shared/data", "PYTHONPATH": str(support.REPO_ROOT)}
  result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "repo", env=env,
                          capture_output=True, text=True, check=True)
  assert result.stdout.strip() == str(tmp_path / "shared" / "data")


def test_slow_lists_name_collected_tests():
  """Every module and test the fast subset leaves out exists (a renamed test cannot slip back in)."""
  from tests import conftest  # pylint: disable=g-import-not-at-top
  for module in conftest.SLOW_MODULES:
    assert (support.REPO_ROOT / module).is_file(), module
  for test in conftest.SLOW_TESTS:
    module, name = test.split("::")
    assert f"def {name}(" in (support.REPO_ROOT / module).read_text(), test
