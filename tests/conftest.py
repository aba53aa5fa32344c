"""Test-wide settings, applied before any test module imports numpy or JAX."""

import os

# scipy's OpenBLAS threads compete with XLA's for the same cores; one thread keeps both fast.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
