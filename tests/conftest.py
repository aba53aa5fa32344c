"""Test-wide settings, applied before any test module imports numpy or JAX."""

import os

# scipy's OpenBLAS threads compete with XLA's for the same cores; one thread keeps both fast.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# The README's test command sets MPCODEC_DATA_DIR=../shared/data, relative to where pytest starts. Tests
# that change directory, start launches elsewhere or symlink the data into a temporary folder would
# resolve it against another folder, so it is made absolute once, here, before any test reads it.
if os.environ.get("MPCODEC_DATA_DIR"):
  os.environ["MPCODEC_DATA_DIR"] = os.path.abspath(os.path.expanduser(os.environ["MPCODEC_DATA_DIR"]))


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: a long test (full launches, large programs); `pytest -m 'not slow'` skips them "
      "for the fast subset, CI runs every test")
