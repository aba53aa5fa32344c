"""The seed axis over a 1-D device mesh, and multi-host start-up.

A sweep's state carries a leading seed axis. When more than one device is visible the seed axis is
sharded over a mesh with one axis named "seed"; the training code is unchanged, because jit follows the
input shardings (every per-seed computation is independent, so no collectives are needed).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mpcodec.core import peers
from mpcodec.core.errors import ConfigError, MpcodecError

SEED_AXIS = "seed"


# The launchers that start several processes of one run, and the variables that tell a process so.
COORDINATOR_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
SLURM_COUNT_VARS = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS")  # srun's step count wins
OMPI_VARS = ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK")


def _int_var(environ: Mapping[str, str], name: str) -> int:
  try:
    return int(environ[name])
  except KeyError:
    raise ConfigError(f"environment: {name} is not set (needed with {_launch_vars(environ)})") from None
  except ValueError:
    raise ConfigError(f"environment: {name}={environ[name]!r} is not an integer") from None


def _launch_vars(environ: Mapping[str, str]) -> str:
  names = COORDINATOR_VARS + SLURM_COUNT_VARS + ("SLURM_PROCID", "SLURM_ARRAY_TASK_ID") + OMPI_VARS
  return ", ".join(f"{n}={environ[n]}" for n in names if environ.get(n)) or "no launcher variables"


def _process_id(environ: Mapping[str, str], name: str, count: int) -> int:
  index = _int_var(environ, name)
  if not 0 <= index < count:
    raise ConfigError(f"environment: {name}={index} is not a process index of {count} processes (0..{count - 1})")
  return index


def distributed_request(environ: Mapping[str, str]) -> dict | None:
  """The `jax.distributed.initialize` arguments a process started with `environ` must call; None when it
  is the only process of its run.

  Several processes of one run are asked for by, first match wins:
  - an explicit coordinator: JAX_COORDINATOR_ADDRESS (host:port of process 0) with JAX_NUM_PROCESSES > 1
    and JAX_PROCESS_ID (passed to initialize as they are);
  - Open MPI (mpirun): OMPI_COMM_WORLD_SIZE > 1, with OMPI_COMM_WORLD_RANK;
  - SLURM (srun): the step's task count SLURM_STEP_NUM_TASKS, else SLURM_NTASKS, else SLURM_NPROCS, > 1,
    with SLURM_PROCID. A SLURM array task with one task (SLURM_ARRAY_TASK_ID set, SLURM_NTASKS <= 1) is
    an independent single-process run.
  The coordinator of Open MPI and SLURM launches is found by JAX (its own cluster detection, or
  JAX_COORDINATOR_ADDRESS when set). A variable that is malformed, or a coordinator address without a
  process count, raises ConfigError naming it.
  """
  if environ.get("JAX_COORDINATOR_ADDRESS") and environ.get("JAX_NUM_PROCESSES"):
    count = _int_var(environ, "JAX_NUM_PROCESSES")
    if count < 1:
      raise ConfigError(f"environment: JAX_NUM_PROCESSES={count} must be >= 1")
    if count == 1:
      return None
    return {"coordinator_address": environ["JAX_COORDINATOR_ADDRESS"], "num_processes": count,
            "process_id": _process_id(environ, "JAX_PROCESS_ID", count)}
  if environ.get("JAX_NUM_PROCESSES") and _int_var(environ, "JAX_NUM_PROCESSES") > 1:
    raise ConfigError(f"environment: JAX_NUM_PROCESSES={environ['JAX_NUM_PROCESSES']} needs "
                      f"JAX_COORDINATOR_ADDRESS (host:port of process 0) and JAX_PROCESS_ID")
  if environ.get("OMPI_COMM_WORLD_SIZE"):
    count = _int_var(environ, "OMPI_COMM_WORLD_SIZE")
    if count > 1:
      return {"num_processes": count, "process_id": _process_id(environ, "OMPI_COMM_WORLD_RANK", count),
              "cluster_detection_method": "ompi"}
  slurm = next((name for name in SLURM_COUNT_VARS if environ.get(name)), None)
  if slurm is not None:
    count = _int_var(environ, slurm)
    if count > 1:
      return {"num_processes": count, "process_id": _process_id(environ, "SLURM_PROCID", count),
              "cluster_detection_method": "slurm"}
    return None
  if environ.get("JAX_COORDINATOR_ADDRESS"):
    raise ConfigError(f"environment: JAX_COORDINATOR_ADDRESS={environ['JAX_COORDINATOR_ADDRESS']} is set "
                      f"without JAX_NUM_PROCESSES and JAX_PROCESS_ID (and no SLURM or Open MPI launch of "
                      f"several tasks): set both, or unset it for a single-process run")
  return None


def maybe_initialize_distributed(environ: Mapping[str, str] | None = None) -> bool:
  """Starts jax.distributed when the environment launched this process as one of several (see
  `distributed_request`); returns whether the run has several processes.

  Must run before anything uses JAX's devices. Once started, a watchdog (`peers.PeerWatchdog`) ends this
  process with one line naming another that stops sending heartbeats. A failed start raises MpcodecError
  naming the variables that asked for it (never a silent fall-back to one process, which would train the
  whole run on every process and race on its checkpoints).
  """
  environ = os.environ if environ is None else environ
  request = distributed_request(environ)
  if request is None:
    return False
  if not jax.distributed.is_initialized():
    timeout = startup_timeout(environ)
    # JAX aborts the process (SIGABRT, no Python exception) when the other processes do not connect in
    # its initialization_timeout; a watchdog ends it first, with one line naming the missing processes.
    watchdog = threading.Timer(timeout, _startup_timed_out, (request, environ, timeout))
    watchdog.daemon = True
    watchdog.start()
    lost_after = peers.peer_timeout(environ)
    try:
      # JAX's own check of the processes' heartbeats aborts them; the watchdog below names the lost one first.
      jax.distributed.initialize(**request, initialization_timeout=timeout + STARTUP_MARGIN_S,
                                 heartbeat_timeout_seconds=lost_after + STARTUP_MARGIN_S)
    except Exception as e:  # JAX raises RuntimeError, ValueError, TypeError, XlaRuntimeError here.
      text = str(e).strip().splitlines()
      raise MpcodecError(
          f"the environment asks for {request['num_processes']} processes ({_launch_vars(environ)}) but "
          f"jax.distributed.initialize failed ({type(e).__name__}: {text[0][:300] if text else ''}); start "
          f"every process with the same variables (SLURM: srun; Open MPI: mpirun; else "
          f"JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), before JAX is used") from e
    finally:
      watchdog.cancel()
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
    peers.PeerWatchdog(jax_distributed.global_state.client, request["process_id"], request["num_processes"],
                       lost_after, request.get("coordinator_address", "")).start()
  if jax.process_count() != request["num_processes"]:
    raise MpcodecError(f"the environment asks for {request['num_processes']} processes "
                       f"({_launch_vars(environ)}) but jax.distributed runs {jax.process_count()}")
  return True


STARTUP_TIMEOUT_VAR = "MPCODEC_STARTUP_TIMEOUT_S"
STARTUP_TIMEOUT_S = 300        # JAX's own default initialization_timeout
STARTUP_MARGIN_S = 30          # JAX's deadline is this much later than the watchdog's


def startup_timeout(environ: Mapping[str, str]) -> int:
  """Seconds a process waits for the others to connect (MPCODEC_STARTUP_TIMEOUT_S, default 300)."""
  if not environ.get(STARTUP_TIMEOUT_VAR):
    return STARTUP_TIMEOUT_S
  seconds = _int_var(environ, STARTUP_TIMEOUT_VAR)
  if seconds < 1:
    raise ConfigError(f"environment: {STARTUP_TIMEOUT_VAR}={seconds} must be >= 1")
  return seconds


def startup_timeout_message(request: Mapping[str, Any], environ: Mapping[str, str], timeout: int) -> str:
  """The one line of a start-up that timed out, naming the processes this one waited for."""
  count, me = request["num_processes"], request["process_id"]
  others = [i for i in range(count) if i != me]
  if me == 0:
    missing = (f"process {others[0]}" if len(others) == 1 else
               f"at least one of processes {others[0]}..{others[-1]}")
    waited = f"{missing} of {count} did not connect to this process (0, the coordinator)"
  else:
    address = request.get("coordinator_address") or "the address the cluster gives"
    waited = f"process 0 of {count} (the coordinator, {address}) did not answer process {me}"
  return (f"{waited} within {timeout} s ({_launch_vars(environ)}); start every process of the run "
          f"(or raise {STARTUP_TIMEOUT_VAR})")


def _startup_timed_out(request, environ, timeout) -> None:
  # Runs on the watchdog thread while the main thread is blocked inside JAX: print and end the process.
  print(f"error: {startup_timeout_message(request, environ, timeout)}", file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access


def barrier(name: str) -> None:
  """Waits until every process of the run reaches the barrier `name`; nothing with one process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def seed_mesh(num_seeds: int) -> Mesh | None:
  """1-D mesh over the largest number of devices that divides `num_seeds`; None for one device.

  With several processes every process gives the mesh the same number of its local devices (a process
  without a shard could not take part in the run), so `num_seeds` must be a multiple of the process
  count (ConfigError otherwise).
  """
  processes = jax.process_count()
  if processes == 1:
    devices = jax.devices()
    count = len(devices)
    while count > 1 and num_seeds % count:
      count -= 1
    if count <= 1:
      return None
    return Mesh(np.asarray(devices[:count]), (SEED_AXIS,))
  if num_seeds % processes:
    raise ConfigError(f"num_seeds = {num_seeds} cannot be split over the {processes} processes of this run: "
                      f"use a multiple of {processes} seeds, or fewer processes")
  by_process: dict[int, list] = {}
  for device in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
    by_process.setdefault(device.process_index, []).append(device)
  per_process = min(len(d) for d in by_process.values())
  while num_seeds % (per_process * processes):
    per_process -= 1
  devices = [d for index in sorted(by_process) for d in by_process[index][:per_process]]
  return Mesh(np.asarray(devices), (SEED_AXIS,))


def seed_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def _put(tree, mesh: Mesh | None, spec: PartitionSpec):
  """Places every leaf with `spec` on the mesh; works with several processes (each holds the whole host
  array, or the leaf is already a global array)."""
  if tree is None:
    return None
  if mesh is None:
    return jax.tree.map(jax.numpy.asarray, tree)
  target = NamedSharding(mesh, spec)

  def leaf(x):
    if isinstance(x, jax.Array) and (jax.process_count() == 1 or not x.is_fully_addressable):
      return jax.device_put(x, target)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, target, lambda index: host[index])

  return jax.tree.map(leaf, tree)


def put_seed_axis(tree, mesh: Mesh | None):
  """Every leaf's leading (seed) axis split over the mesh (any number of processes)."""
  return _put(tree, mesh, PartitionSpec(SEED_AXIS))


def put_replicated(tree, mesh: Mesh | None):
  """Every leaf whole on every device of the mesh (any number of processes)."""
  return _put(tree, mesh, PartitionSpec())


def to_host(tree):
  """Every leaf as a whole numpy array on the host, also when its shards live in several processes.

  With several processes every process must call it with the same tree (gathering is collective).
  """

  def leaf(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    # Host arrays and arrays of this process's devices: as they are (process_allgather would stack
    # every process's copy).
    return np.asarray(jax.device_get(x))

  return jax.tree.map(leaf, tree)
