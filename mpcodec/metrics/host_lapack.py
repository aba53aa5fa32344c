"""Values-only SVDs of many float32 matrices at once, over the host's cores (for CPU backends).

XLA's CPU backend runs the LAPACK call of each matrix in a batch one after another on one thread, so the
decompositions of one dynamics measurement (seeds x layers) leave every other core idle. `singular_values`
hands all of them to one host callback that runs them over a pool of threads, one matrix per task, largest
first. Each task calls LAPACK's sgesdd (values only) through the function pointer scipy exports to Cython,
the routine and library jaxlib's CPU kernels call, with the matrix in column-major order as jaxlib passes
it: the values are bit-identical to `jnp.linalg.svd(x, compute_uv=False)` on the same machine (a test
checks it), so switching between the two paths never changes a measured series. ctypes releases the GIL
for each call, which scipy's own Python wrapper does not.

The callback path is taken only on a CPU backend with more than one usable core (`enabled`); set
MPCODEC_HOST_LAPACK=0 to keep XLA's own kernels everywhere. A matrix with a non-finite entry, or one that
LAPACK fails to converge on, gets NaN values, as `jnp.linalg.svd` gives.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

ENV_SWITCH = "MPCODEC_HOST_LAPACK"


def usable_cores() -> int:
  """Cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def enabled() -> bool:
  """True when the host path helps and is allowed: a CPU default backend, >= 2 cores, not switched off."""
  if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
    return False
  return jax.default_backend() == "cpu" and usable_cores() > 1


@functools.cache
def _sgesdd():
  """ctypes function of scipy's Cython-level sgesdd (14 pointer arguments, C calling convention)."""
  from scipy.linalg import cython_lapack  # pylint: disable=g-import-not-at-top
  capsule = cython_lapack.__pyx_capi__["sgesdd"]
  get_name = ctypes.pythonapi.PyCapsule_GetName
  get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
  get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
  get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
  address = get_pointer(capsule, get_name(capsule))
  return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 14))(address)


def _call_sgesdd(a_fortran: np.ndarray, sigma: np.ndarray, work: np.ndarray, lwork: int,
                 iwork: np.ndarray) -> int:
  m, n = a_fortran.shape
  ints = [ctypes.c_int(v) for v in (m, n, max(1, m), 1, 1, lwork, 0)]
  m_, n_, lda, ldu, ldvt, lwork_, info = ints
  jobz = ctypes.c_char(b"N")
  dummy = np.zeros(1, np.float32)
  ref = ctypes.addressof
  _sgesdd()(ref(jobz), ref(m_), ref(n_), a_fortran.ctypes.data, ref(lda), sigma.ctypes.data,
            dummy.ctypes.data, ref(ldu), dummy.ctypes.data, ref(ldvt), work.ctypes.data, ref(lwork_),
            iwork.ctypes.data, ref(info))
  return info.value


def svd_values(matrix_MxN: np.ndarray) -> np.ndarray:
  """Singular values (descending, float32) of one matrix by sgesdd; NaN where LAPACK cannot give them."""
  a = np.array(matrix_MxN, dtype=np.float32, order="F")   # a copy: sgesdd overwrites it
  count = min(a.shape)
  sigma = np.zeros(count, np.float32)
  if count == 0:
    return sigma
  if not np.all(np.isfinite(a)):
    return np.full(count, np.nan, np.float32)
  iwork = np.zeros(8 * count, np.int32)
  query = np.zeros(1, np.float32)
  if _call_sgesdd(a, sigma, query, -1, iwork) != 0:
    return np.full(count, np.nan, np.float32)
  # The workspace size comes back as a float32; step above it so rounding never leaves it short.
  lwork = int(np.nextafter(query[0], np.float32(np.inf)))
  work = np.zeros(max(lwork, 1), np.float32)
  if _call_sgesdd(a, sigma, work, lwork, iwork) != 0:
    return np.full(count, np.nan, np.float32)
  return sigma


@functools.cache
def _pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
  return concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mpcodec-lapack")


def svd_values_many(matrices: Sequence[np.ndarray], threads: int | None = None) -> list[np.ndarray]:
  """Singular values of every matrix of `matrices` (each (..., M, N); leading axes are a batch), computed
  over `threads` threads (default: the usable cores), largest matrices first."""
  arrays = [np.asarray(m) for m in matrices]
  outputs = [np.zeros(a.shape[:-2] + (min(a.shape[-2:]),), np.float32) for a in arrays]
  tasks = [(i, index) for i, a in enumerate(arrays) for index in np.ndindex(a.shape[:-2])]
  tasks.sort(key=lambda task: -np.prod(arrays[task[0]].shape[-2:]) * min(arrays[task[0]].shape[-2:]))

  def run(task):
    i, index = task
    outputs[i][index] = svd_values(arrays[i][index])

  threads = threads or usable_cores()
  if threads <= 1 or len(tasks) <= 1:
    for task in tasks:
      run(task)
  else:
    for future in [_pool(threads).submit(run, task) for task in tasks]:
      future.result()
  return outputs


def singular_values(matrices: Sequence[jax.Array]) -> list[jax.Array]:
  """Values-only SVDs of float32 matrices (each (..., M, N)) in one host callback; jit- and vmap-safe.

  Bit-identical to `jnp.linalg.svd(x, compute_uv=False)` on a CPU backend (see the module docstring).
  """
  matrices = [jnp.asarray(m, jnp.float32) for m in matrices]
  shapes = [jax.ShapeDtypeStruct(m.shape[:-2] + (min(m.shape[-2:]),), jnp.float32) for m in matrices]

  def host(*arrays):
    return tuple(svd_values_many(arrays))

  return list(jax.pure_callback(host, tuple(shapes), *matrices, vmap_method="broadcast_all"))
