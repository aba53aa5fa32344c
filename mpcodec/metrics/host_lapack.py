"""The decompositions of many float32 matrices at once, over the host's cores (for CPU backends).

XLA's CPU backend runs the LAPACK call of each matrix in a batch one after another on one thread, so the
decompositions of one dynamics measurement (every layer) leave every other core idle. `decompose` hands
all of them to one host callback that runs them over a pool of threads, one matrix per task, largest
first: values-only SVDs (LAPACK's sgesdd) and symmetric eigendecompositions with vectors (ssyevd, for the
Gram route of tall matrices). Each task calls the routine through the function pointer scipy exports to
Cython, the routine and library jaxlib's CPU kernels call, with the matrix in column-major order as jaxlib
passes it: the results are bit-identical to `jnp.linalg.svd(x, compute_uv=False)` and `jnp.linalg.eigh` on
the same machine (tests check it), so switching between the two paths never changes a measured series.
ctypes releases the GIL for each call, which scipy's own Python wrappers do not.

The callback path is taken only on a CPU backend with more than one usable core (`enabled`); set
MPCODEC_HOST_LAPACK=0 to keep XLA's own kernels everywhere. A matrix with a non-finite entry, or one that
LAPACK fails to converge on, gets NaN results, as the XLA kernels give.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

ENV_SWITCH = "MPCODEC_HOST_LAPACK"

# Callers send a matrix to the host only when its decomposition is at least this wide (min(M, N) for an SVD,
# D for a D x D eigendecomposition). Measured on a 2-core AMD EPYC (python -m benchmarks.dynamics_profile):
# 4 layers of 512 x 512 and 512 x 256, 177 ms with XLA's kernels and 104 ms on the host for 5 seeds; 3-4
# layers of width 32-128, 10-19 ms with XLA's kernels and 17-21 ms on the host (the callback's round trip).
MIN_SIZE = 256


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
def _lapack(name: str, num_args: int):
  """ctypes function of scipy's Cython-level LAPACK routine `name` (pointer arguments, C calling convention)."""
  from scipy.linalg import cython_lapack  # pylint: disable=g-import-not-at-top
  capsule = cython_lapack.__pyx_capi__[name]
  get_name = ctypes.pythonapi.PyCapsule_GetName
  get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
  get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
  get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
  address = get_pointer(capsule, get_name(capsule))
  return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * num_args))(address)


def _call_sgesdd(a_fortran: np.ndarray, sigma: np.ndarray, work: np.ndarray, lwork: int,
                 iwork: np.ndarray) -> int:
  m, n = a_fortran.shape
  ints = [ctypes.c_int(v) for v in (m, n, max(1, m), 1, 1, lwork, 0)]
  m_, n_, lda, ldu, ldvt, lwork_, info = ints
  jobz = ctypes.c_char(b"N")
  dummy = np.zeros(1, np.float32)
  ref = ctypes.addressof
  _lapack("sgesdd", 14)(ref(jobz), ref(m_), ref(n_), a_fortran.ctypes.data, ref(lda), sigma.ctypes.data,
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


def _call_ssyevd(a_fortran: np.ndarray, w: np.ndarray, work: np.ndarray, lwork: int, iwork: np.ndarray,
                 liwork: int) -> int:
  n = a_fortran.shape[0]
  n_, lda, lwork_, liwork_, info = (ctypes.c_int(v) for v in (n, max(1, n), lwork, liwork, 0))
  jobz, uplo = ctypes.c_char(b"V"), ctypes.c_char(b"L")
  ref = ctypes.addressof
  _lapack("ssyevd", 11)(ref(jobz), ref(uplo), ref(n_), a_fortran.ctypes.data, ref(lda), w.ctypes.data,
                        work.ctypes.data, ref(lwork_), iwork.ctypes.data, ref(liwork_), ref(info))
  return info.value


def eigh_vectors(symmetric_DxD: np.ndarray) -> np.ndarray:
  """Eigenvectors (columns, eigenvalues ascending; float32) of a symmetric matrix by ssyevd from its lower
  triangle, as `jnp.linalg.eigh` gives them on CPU; NaN where LAPACK cannot give them."""
  a = np.array(symmetric_DxD, dtype=np.float32, order="F")   # overwritten by the eigenvectors
  n = a.shape[0]
  if n == 0:
    return a
  if not np.all(np.isfinite(a)):
    return np.full(a.shape, np.nan, np.float32)
  w = np.zeros(n, np.float32)
  work, iwork = np.zeros(1, np.float32), np.zeros(1, np.int32)
  if _call_ssyevd(a, w, work, -1, iwork, -1) != 0:
    return np.full(a.shape, np.nan, np.float32)
  lwork, liwork = int(np.nextafter(work[0], np.float32(np.inf))), int(iwork[0])
  work, iwork = np.zeros(max(lwork, 1), np.float32), np.zeros(max(liwork, 1), np.int32)
  if _call_ssyevd(a, w, work, lwork, iwork, liwork) != 0:
    return np.full(a.shape, np.nan, np.float32)
  return np.ascontiguousarray(a)


@functools.cache
def _pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
  return concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mpcodec-lapack")


def _run_many(jobs: Sequence[tuple[Callable, np.ndarray, Callable]], threads: int | None = None
              ) -> list[np.ndarray]:
  """Each job (func, array (..., M, N), out_shape) applies `func` to every matrix of its array (leading axes
  are a batch) into a float32 output of shape array.shape[:-2] + out_shape((M, N)); all matrices of all jobs
  run over `threads` threads (default: the usable cores), the largest first."""
  arrays = [np.asarray(array) for _, array, _ in jobs]
  outputs = [np.zeros(a.shape[:-2] + out_shape(a.shape[-2:]), np.float32) for a, (_, _, out_shape) in zip(arrays, jobs)]
  tasks = [(i, index) for i, a in enumerate(arrays) for index in np.ndindex(a.shape[:-2])]
  tasks.sort(key=lambda task: -np.prod(arrays[task[0]].shape[-2:]) * min(arrays[task[0]].shape[-2:]))

  def run(task):
    i, index = task
    outputs[i][index] = jobs[i][0](arrays[i][index])

  threads = threads or usable_cores()
  if threads <= 1 or len(tasks) <= 1:
    for task in tasks:
      run(task)
  else:
    for future in [_pool(threads).submit(run, task) for task in tasks]:
      future.result()
  return outputs


def _sigma_shape(shape):
  return (min(shape),)


def svd_values_many(matrices: Sequence[np.ndarray], threads: int | None = None) -> list[np.ndarray]:
  """`svd_values` of every matrix (each (..., M, N); leading axes are a batch), over `threads` threads."""
  return _run_many([(svd_values, m, _sigma_shape) for m in matrices], threads)


def decompose(svd_inputs: Sequence[jax.Array], eigh_inputs: Sequence[jax.Array] = ()
              ) -> tuple[list[jax.Array], list[jax.Array]]:
  """Values-only SVDs of `svd_inputs` (each (..., M, N)) and eigenvectors of the symmetric `eigh_inputs`
  (each (..., D, D)), all in one host callback over the cores; jit- and vmap-safe.

  Bit-identical to `jnp.linalg.svd(x, compute_uv=False)` and to the eigenvectors of `jnp.linalg.eigh` of the
  symmetrised matrix (x + x^T) / 2 on a CPU backend (see the module docstring).
  """
  svd_inputs = [jnp.asarray(m, jnp.float32) for m in svd_inputs]
  eigh_inputs = [jnp.asarray(m, jnp.float32) for m in eigh_inputs]
  eigh_inputs = [(m + jnp.swapaxes(m, -1, -2)) / 2 for m in eigh_inputs]
  shapes = ([jax.ShapeDtypeStruct(m.shape[:-2] + _sigma_shape(m.shape[-2:]), jnp.float32) for m in svd_inputs]
            + [jax.ShapeDtypeStruct(m.shape, jnp.float32) for m in eigh_inputs])
  num_svd = len(svd_inputs)

  def host(*arrays):
    # One pool for both kinds, so a large SVD and small eigendecompositions share the cores.
    return tuple(_run_many([(svd_values, a, _sigma_shape) for a in arrays[:num_svd]]
                           + [(eigh_vectors, a, tuple) for a in arrays[num_svd:]]))

  out = jax.pure_callback(host, tuple(shapes), *svd_inputs, *eigh_inputs, vmap_method="broadcast_all")
  return list(out[:num_svd]), list(out[num_svd:])

