"""Multi-process runs on JAX's own runtime: when a process starts jax.distributed, and two processes of 4
fake CPU devices each training one run (one global 8-device seed mesh, one Orbax checkpoint written
together) that a 1-process run resumes and finishes like an uninterrupted one.

Bitwise equality is not expected across device counts: on 8 devices XLA compiles a per-device program
for one seed, on 1 device one program for 8 vmapped seeds, and the CPU backend vectorises and orders
their dot products and reductions differently (a few ulp per step, ~1e-8 after the tiny run). Equal
device counts and shardings give equal bits (tests/studies/mono_poly/test_experiment.py); here the
resumed 1-process run is compared with the uninterrupted one at float32 training tolerance, and what
must be exact (the restored checkpoint, the history before the resume step, both processes' copies) is
compared bit for bit.
"""

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import pytest

from mpcodec.core import peers, sharding
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import ConfigError, MpcodecError
from mpcodec.studies.mono_poly import experiment as mono_poly
from tests import support
from tests.studies.mono_poly.test_experiment import tiny_config

REPO_ROOT = str(support.REPO_ROOT)
PROCESS_TIMEOUT_S = 120


# ------------------------------------------------------------------------------------------------
# When to start jax.distributed: a pure function of the environment.


@pytest.mark.parametrize("environ", [
    {},
    {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"},
    # A SLURM array task: independent single-process runs, whatever the array's size.
    {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"},
    {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_JOB_ID": "17"},
    # python started straight in a batch script of 4 tasks: srun's step count (1) wins.
    {"SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"},
    {"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"},
    {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"},
    {"JAX_NUM_PROCESSES": "1"},
], ids=["empty", "slurm-1-task", "slurm-array-task", "slurm-array-no-ntasks", "slurm-batch-step",
        "ompi-1", "coordinator-1-process", "jax-1-process"])
def test_single_process_launches_ask_for_nothing(environ):
  assert sharding.distributed_request(environ) is None
  assert sharding.maybe_initialize_distributed(environ) is False


@pytest.mark.parametrize("environ, expected", [
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"},
     {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}),
    # The explicit coordinator wins over the launcher's variables.
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1", "SLURM_NTASKS": "8",
      "SLURM_PROCID": "5"}, {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}),
    ({"SLURM_NTASKS": "4", "SLURM_PROCID": "2"},
     {"num_processes": 4, "process_id": 2, "cluster_detection_method": "slurm"}),
    ({"SLURM_NPROCS": "2", "SLURM_PROCID": "1"},
     {"num_processes": 2, "process_id": 1, "cluster_detection_method": "slurm"}),
    ({"SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"},
     {"num_processes": 2, "process_id": 1, "cluster_detection_method": "slurm"}),
    # An array task of several tasks is a multi-process run of its own.
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"},
     {"num_processes": 2, "process_id": 0, "cluster_detection_method": "slurm"}),
    # mpirun inside a SLURM allocation: Open MPI started the processes.
    ({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "2", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"},
     {"num_processes": 3, "process_id": 2, "cluster_detection_method": "ompi"}),
], ids=["coordinator", "coordinator-over-slurm", "slurm", "slurm-nprocs", "slurm-step", "slurm-array-2-tasks",
        "ompi"])
def test_multi_process_launches_ask_for_initialize(environ, expected):
  assert sharding.distributed_request(environ) == expected


@pytest.mark.parametrize("environ, message", [
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, "JAX_PROCESS_ID is not set"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     "JAX_PROCESS_ID=2 is not a process index of 2 processes"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     "JAX_NUM_PROCESSES='two' is not an integer"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_COORDINATOR_ADDRESS=h:1 is set without JAX_NUM_PROCESSES"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES=2 needs JAX_COORDINATOR_ADDRESS"),
    ({"SLURM_NTASKS": "4"}, "SLURM_PROCID is not set"),
    ({"SLURM_NTASKS": "4(x2)", "SLURM_PROCID": "0"}, "SLURM_NTASKS='4(x2)' is not an integer"),
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "-1"},
     "OMPI_COMM_WORLD_RANK=-1 is not a process index"),
])
def test_malformed_launch_variables_are_named(environ, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    sharding.distributed_request(environ)


def test_failed_initialize_raises_naming_the_variables():
  """A multi-process request that cannot start (here: JAX already in use) is an error, never one process."""
  jax.devices()  # The backend of this test process is up: jax.distributed can no longer start.
  environ = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_ID": "7"}
  with pytest.raises(MpcodecError, match=r"asks for 2 processes \(SLURM_NTASKS=2, SLURM_PROCID=1\) but "
                                         r"jax.distributed.initialize failed \(RuntimeError: .*before"):
    sharding.maybe_initialize_distributed(environ)
  assert not jax.distributed.is_initialized() and jax.process_count() == 1


# ------------------------------------------------------------------------------------------------
# Two processes on 127.0.0.1, 4 fake CPU devices each.

PRELUDE = """
    import json, os, sys
    import faulthandler
    faulthandler.dump_traceback_later({timeout}, exit=True)  # a hung collective prints where it hangs
    import jax
    jax.config.update("jax_num_cpu_devices", 4)
    import numpy as np
    from mpcodec.core import sharding
"""

MONO_POLY_WORKER = textwrap.dedent(PRELUDE + """
    from mpcodec.core.checkpoint import CheckpointStore
    from mpcodec.studies.mono_poly import experiment as mono_poly
    from tests.studies.mono_poly.test_experiment import tiny_config
    # As in launch.mono_poly: everything imported, then jax.distributed from the environment.
    assert sharding.maybe_initialize_distributed(), "no multi-process request in the environment"
    cfg = mono_poly.parse_config(tiny_config(num_seeds=8))
    outcome = mono_poly.train(cfg, sys.argv[1])
    leaf = jax.tree.leaves(outcome.state["params"])[0]
    params = sharding.to_host(outcome.state["params"])
    np.savez(os.path.join(sys.argv[2], f"params_{jax.process_index()}.npz"), *jax.tree.leaves(params))
    info = {"process": jax.process_index(), "processes": jax.process_count(),
            "devices": jax.device_count(), "mesh": sharding.seed_mesh(cfg.num_seeds).devices.size,
            "leaf_devices": len(leaf.sharding.device_set), "local_shards": len(leaf.addressable_shards),
            "spec": list(leaf.sharding.spec), "steps_trained": outcome.steps_trained,
            # A host array comes back as it is (not one copy per process).
            "local_to_host": list(sharding.to_host({"a": np.arange(3)})["a"].shape)}
    if jax.process_index() == 0:
      # A reader on process 0 alone, as launch.mono_poly's analysis: its stores wait for no other process.
      store = CheckpointStore(mono_poly.checkpoint_dir(sys.argv[1], "phase2"))
      step = store.latest_step()
      read = mono_poly.restore_state(cfg, store, step, "phase2")["params"]
      info["read_alone"] = [step, len(jax.tree.leaves(read)[0].sharding.device_set)]
    print(json.dumps(info))
""")

DYNAMICS_WORKER = textwrap.dedent(PRELUDE + """
    from configs import dynamics as dynamics_config
    from mpcodec.core import configuration
    from mpcodec.core import io
    from mpcodec.studies.dynamics import series as results
    from mpcodec.studies.dynamics.report import training as report
    from mpcodec.studies.dynamics.train import sweep as dynamics_sweep
    assert sharding.maybe_initialize_distributed(), "no multi-process request in the environment"
    writes = []  # the result-file writers this process called

    def counted(module, name):
      def wrapper(*args, **kwargs):
        writes.append(name)
        return original(*args, **kwargs)
      original = getattr(module, name)
      setattr(module, name, wrapper)

    for module, name in ((results, "write_series"), (results, "mark_finished"), (report, "plot_run"),
                         (io, "write_json"), (io, "write_text")):
      counted(module, name)
    cfg = dynamics_config.get_config("smoke,arch=mlp_128_64,dataset=mnist")
    cfg.plots = False
    sweep = configuration.parse(dynamics_sweep.SweepConfig, cfg)
    records = dynamics_sweep.run_sweep(sweep, sys.argv[1], sys.argv[2])
    print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                      "mesh": sharding.seed_mesh(sweep.base.num_seeds).devices.size,
                      "record": records["mlp_128_64@mnist"], "writes": sorted(set(writes))}))
""")


TIME_POLICY_WORKER = textwrap.dedent(PRELUDE + """
    from mpcodec.core import checkpoint_policy
    from mpcodec.core.checkpoint import CheckpointStore
    from mpcodec.studies.mono_poly import experiment as mono_poly
    from tests.studies.mono_poly.test_experiment import tiny_config
    assert sharding.maybe_initialize_distributed(), "no multi-process request in the environment"
    # Clocks that disagree: process 0 would save every chunk end by time, process 1 never.
    os.environ[checkpoint_policy.INTERVAL_VAR] = "0.001" if jax.process_index() == 0 else "100000"
    saved, save = [], CheckpointStore.save
    def recording(store, step, *args, **kwargs):
      saved.append([os.path.basename(store.directory), int(step)])
      return save(store, step, *args, **kwargs)
    CheckpointStore.save = recording
    cfg = tiny_config(num_seeds=8)
    cfg.chunk_steps = 2
    cfg.phase1.checkpoint_every = cfg.phase2.checkpoint_every = 10
    outcome = mono_poly.train(mono_poly.parse_config(cfg), sys.argv[1])
    print(json.dumps({"saved": saved, "steps_trained": outcome.steps_trained}))
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_processes(script: str, args: list[str], num_processes: int = 2) -> list[dict]:
  """Runs `script` as processes 0..n-1 of one jax.distributed run on 127.0.0.1; the last JSON line each
  printed. Fails (after killing the others) when one exits non-zero or all run past the timeout."""
  script = script.replace("{timeout}", str(PROCESS_TIMEOUT_S - 10))
  # No launcher variables of the environment the tests run in (a SLURM job, say) reach the processes.
  base = {k: v for k, v in os.environ.items()
          if not k.startswith(("SLURM_", "OMPI_", "PMI")) and k not in sharding.COORDINATOR_VARS}
  base.update(PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
              JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES=str(num_processes),
              JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO_ROOT, text=True,
                            env=dict(base, JAX_PROCESS_ID=str(i)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for i in range(num_processes)]
  deadline = time.monotonic() + PROCESS_TIMEOUT_S
  failed = None
  while time.monotonic() < deadline and failed is None and any(p.poll() is None for p in procs):
    failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)
    time.sleep(0.2)
  timed_out = any(p.poll() is None for p in procs) and failed is None
  for p in procs:
    if p.poll() is None:
      p.kill()  # SIGKILL: jax.distributed catches SIGTERM (preemption notice) and carries on.
  outputs = [p.communicate() for p in procs]
  if timed_out or failed is not None or any(p.returncode for p in procs):
    report = "\n".join(f"--- process {i} (exit {p.returncode}):\n{err[-3000:]}"
                       for i, (p, (_, err)) in enumerate(zip(procs, outputs)))
    pytest.fail(("timed out after %d s" % PROCESS_TIMEOUT_S if timed_out else "a process failed") + "\n" + report)
  return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_processes_write_one_checkpoint_that_one_process_resumes(tmp_path):
  cfg = mono_poly.parse_config(tiny_config(num_seeds=8))
  two_dir, out_dir = tmp_path / "two", tmp_path / "out"
  out_dir.mkdir()
  infos = _run_processes(MONO_POLY_WORKER, [str(two_dir), str(out_dir)])
  assert infos[0].pop("read_alone") == [10, 1]
  for index, info in enumerate(infos):
    assert info == {"process": index, "processes": 2, "devices": 8, "mesh": 8, "leaf_devices": 8,
                    "local_shards": 4, "spec": ["seed"], "steps_trained": 20, "local_to_host": [3]}

  # One checkpoint tree, written by both processes together (no unfinished temporary folders).
  for phase in mono_poly.PHASES:
    assert CheckpointStore(two_dir / "checkpoints" / phase).all_steps() == [0, 5, 10]
  assert not glob.glob(str(two_dir / "checkpoints" / "*" / "*tmp*"))

  # Both processes gathered the same whole arrays, which are what the checkpoint holds (fingerprints
  # verified by the restore, on this process's single device).
  assert jax.device_count() == 1
  store = CheckpointStore(two_dir / "checkpoints" / "phase2")
  restored = store.restore(10, mono_poly.abstract_carry(cfg, "phase2"))
  gathered = [np.load(out_dir / f"params_{i}.npz") for i in range(2)]
  for i, leaf in enumerate(jax.tree.leaves(restored["state"]["params"])):
    np.testing.assert_array_equal(gathered[0][f"arr_{i}"], gathered[1][f"arr_{i}"])
    np.testing.assert_array_equal(np.asarray(leaf), gathered[0][f"arr_{i}"])

  # One process resumes the 2-process run mid-phase 2 and ends where an uninterrupted 1-process run does.
  reference = mono_poly.train(cfg, str(tmp_path / "one"))
  resumed_dir = tmp_path / "resumed"
  shutil.copytree(two_dir, resumed_dir)
  CheckpointStore(resumed_dir / "checkpoints" / "phase2").delete_after(5)
  resumed = mono_poly.train(cfg, str(resumed_dir))
  assert resumed.resumed_from == ("phase2", 5) and resumed.steps_trained == 5
  for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(reference.state)):
    assert len(a.sharding.device_set) == 1
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)  # seen: 8e-8 abs
  loss = {name: np.asarray(history["phase2"]["loss"]) for name, history in
          (("resumed", resumed.history), ("reference", reference.history), ("two", restored["history"]))}
  np.testing.assert_array_equal(loss["resumed"][:, :5], loss["two"][:, :5])  # from the checkpoint
  np.testing.assert_allclose(loss["resumed"], loss["reference"], rtol=1e-5, atol=1e-7)
  # The comparison sees a wrong run: seeds differ by far more than the tolerance.
  assert np.abs(loss["reference"][0] - loss["reference"][1]).max() > 1e-3


def test_two_processes_follow_process_0s_clock_for_time_rule_checkpoints(tmp_path):
  """A save is collective: with the time rule, every process saves where process 0's clock says, so
  processes whose clocks disagree neither hang nor diverge."""
  infos = _run_processes(TIME_POLICY_WORKER, [str(tmp_path / "run")])
  every_chunk_end = [[phase, step] for phase in mono_poly.PHASES for step in range(0, 11, 2)]
  assert infos[0] == infos[1] == {"saved": every_chunk_end, "steps_trained": 20}
  for phase in mono_poly.PHASES:   # the time rule's checkpoints were resume points: the plan is kept
    assert CheckpointStore(tmp_path / "run" / "checkpoints" / phase).all_steps() == [0, 10]


def test_two_process_dynamics_run_matches_one_process(tmp_path):
  """A dynamics smoke run over 2 processes: only process 0 writes the result files, and its series match
  a 1-process run of the same configuration."""
  from configs import dynamics as dynamics_config  # pylint: disable=g-import-not-at-top
  from mpcodec.core import configuration  # pylint: disable=g-import-not-at-top
  from mpcodec.studies.dynamics import series as dynamics_results  # pylint: disable=g-import-not-at-top
  from mpcodec.studies.dynamics.train import sweep as dynamics_sweep  # pylint: disable=g-import-not-at-top
  data_dir = str(support.require_data("mnist"))
  run = "mlp_128_64@mnist"
  infos = _run_processes(DYNAMICS_WORKER, [str(tmp_path / "two"), data_dir])
  assert [(i["process"], i["devices"], i["mesh"]) for i in infos] == [(0, 8, 2), (1, 8, 2)]
  npz_path, json_path = dynamics_results.result_paths(str(tmp_path / "two"), run)
  assert sorted(os.listdir(os.path.dirname(npz_path))) == sorted(
      [os.path.basename(npz_path), os.path.basename(json_path), "checkpoints"])
  with open(json_path, encoding="utf-8") as f:
    on_disk = json.load(f)
  # Process 0 alone wrote the result files; both return the record on disk.
  assert infos[0]["writes"] == ["mark_finished", "write_json", "write_series", "write_text"]
  assert infos[1]["writes"] == []
  assert infos[0]["record"] == infos[1]["record"] == on_disk
  assert on_disk["status"] == "finished"

  cfg = dynamics_config.get_config("smoke,arch=mlp_128_64,dataset=mnist")
  cfg.plots = False
  sweep = configuration.parse(dynamics_sweep.SweepConfig, cfg)
  local = dynamics_sweep.run_sweep(sweep, str(tmp_path / "one"), data_dir)[run]
  np.testing.assert_allclose(on_disk["final_test_accuracy"], local["final_test_accuracy"], atol=0.011)
  two = dynamics_results.load_series(npz_path)
  one = dynamics_results.load_series(dynamics_results.result_paths(str(tmp_path / "one"), run)[0])
  assert sorted(two) == sorted(one)
  for key in one:
    assert two[key].shape == one[key].shape, key
    if np.issubdtype(one[key].dtype, np.floating):
      np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)  # seen: 1e-6 rel
    else:
      np.testing.assert_array_equal(two[key], one[key], err_msg=key)


# ------------------------------------------------------------------------------------------------
# A process of the run that never starts: the others end with one line naming it, within the timeout.


def test_startup_timeout_comes_from_the_environment_and_is_checked():
  assert sharding.startup_timeout({}) == sharding.STARTUP_TIMEOUT_S
  assert sharding.startup_timeout({sharding.STARTUP_TIMEOUT_VAR: "20"}) == 20
  with pytest.raises(ConfigError, match=r"MPCODEC_STARTUP_TIMEOUT_S=0 must be >= 1"):
    sharding.startup_timeout({sharding.STARTUP_TIMEOUT_VAR: "0"})
  environ = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "0"}
  message = sharding.startup_timeout_message(sharding.distributed_request(environ), environ, 20)
  assert message.startswith("at least one of processes 1..3 of 4 did not connect to this process (0, the "
                            "coordinator) within 20 s (JAX_COORDINATOR_ADDRESS=h:1, JAX_NUM_PROCESSES=4, ")


@pytest.mark.slow
@pytest.mark.parametrize("process_id,expected", [
    (0, r"error: process 1 of 2 did not connect to this process \(0, the coordinator\) within 5 s \(.*"),
    (1, r"error: process 0 of 2 \(the coordinator, 127\.0\.0\.1:\d+\) did not answer process 1 within 5 s \(.*"),
])
def test_a_launch_whose_other_process_never_starts_ends_naming_it(tmp_path, process_id, expected):
  from tests.launch.test_faults import assert_error  # pylint: disable=g-import-not-at-top
  base = {k: v for k, v in os.environ.items()
          if not k.startswith(("SLURM_", "OMPI_", "PMI")) and k not in sharding.COORDINATOR_VARS}
  env = dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES="2",
             JAX_PROCESS_ID=str(process_id), JAX_PLATFORMS="cpu", **{sharding.STARTUP_TIMEOUT_VAR: "5"})
  start = time.monotonic()
  out = subprocess.run([sys.executable, "-m", "launch.mono_poly", "--config=configs/mono_poly.py:smoke",
                        f"--workdir={tmp_path / 'run'}"], cwd=REPO_ROOT, env=env, capture_output=True,
                       text=True, timeout=PROCESS_TIMEOUT_S)
  assert_error(out, re.compile(expected))
  assert time.monotonic() - start < 60


# ------------------------------------------------------------------------------------------------
# A process that dies mid-run: the survivor ends with one line naming it, within the peer timeout.


class FakeStore:
  """jax.distributed's key-value store as the watchdog uses it; `down` makes every call fail."""

  def __init__(self):
    self.values, self.down = {}, False

  def key_value_set(self, key, value, allow_overwrite=False):
    if self.down:
      raise RuntimeError("UNAVAILABLE: failed to connect to all addresses")
    assert allow_overwrite
    self.values[key] = value

  def key_value_try_get(self, key):
    if self.down:
      raise RuntimeError("UNAVAILABLE: failed to connect to all addresses")
    if key not in self.values:
      raise RuntimeError(f"NOT_FOUND: Config key {key} not found")
    return self.values[key]


def test_the_watchdog_names_a_process_whose_heartbeat_stops():
  store, now = FakeStore(), [0.0]
  clock = lambda: now[0]
  watchdogs = [peers.PeerWatchdog(store, i, 3, 10, "h:1", clock=clock) for i in range(3)]
  for t in (0, 4, 8, 12, 16):   # all three beat: nobody is lost, however long it runs
    now[0] = t
    assert [w.check() for w in watchdogs] == [None, None, None]
  watchdogs[2].stop()            # process 2 ends normally: not lost
  for t in (20, 24, 28):         # process 1 stops beating at 16
    now[0] = t
    assert watchdogs[0].check() is None
  now[0] = 30   # 10 s after process 0 last saw a change of process 1's heartbeat (its read at 20)
  assert watchdogs[0].check() == (
      "process 1 of 3 sent no heartbeat to process 0 for 10 s; it ended or its host failed: start every process "
      "of the run again with the same command (the last checkpoint is kept), or raise MPCODEC_PEER_TIMEOUT_S")
  # The store (in process 0) goes away: process 1 names the coordinator once it has failed for 10 s.
  now[0] = 40
  survivor = peers.PeerWatchdog(store, 1, 3, 10, "h:1", clock=clock)
  assert survivor.check() is None
  store.down = True
  for t in (44, 48):
    now[0] = t
    assert survivor.check() is None
  now[0] = 50
  assert survivor.check().startswith("process 0 of 3 (the coordinator, h:1) stopped answering process 1 "
                                         "for 10 s (UNAVAILABLE: failed to connect to all addresses)")


def test_peer_timeout_comes_from_the_environment_and_is_checked():
  assert peers.peer_timeout({}) == peers.PEER_TIMEOUT_S
  assert peers.peer_timeout({peers.PEER_TIMEOUT_VAR: "7"}) == 7
  with pytest.raises(ConfigError, match=r"^environment: MPCODEC_PEER_TIMEOUT_S=1 must be >= 2 \(seconds\)$"):
    peers.peer_timeout({peers.PEER_TIMEOUT_VAR: "1"})
  with pytest.raises(ConfigError, match=r"^environment: MPCODEC_PEER_TIMEOUT_S='soon' is not an integer$"):
    peers.peer_timeout({peers.PEER_TIMEOUT_VAR: "soon"})


PEER_TIMEOUT_S = 5


@pytest.mark.slow
def test_a_launch_whose_other_process_dies_mid_run_ends_naming_it(tmp_path):
  # Process 1 dies; process 0 (the coordinator) survives. (When process 0 dies, JAX ends the others itself.)
  killed, expected = 1, r"error: process 1 of 2 sent no heartbeat to process 0 for 5 s; it ended or its host failed: .*"
  from tests.launch.test_faults import assert_error  # pylint: disable=g-import-not-at-top
  base = {k: v for k, v in os.environ.items()
          if not k.startswith(("SLURM_", "OMPI_", "PMI")) and k not in sharding.COORDINATOR_VARS}
  env = dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES="2", JAX_PLATFORMS="cpu",
             **{peers.PEER_TIMEOUT_VAR: str(PEER_TIMEOUT_S)})
  workdir = tmp_path / "run"
  command = [sys.executable, "-m", "launch.mono_poly", "--config=configs/mono_poly.py:smoke", f"--workdir={workdir}",
             "--config.phase1.steps=100000", "--noanalyze"]
  logs = [(open(tmp_path / f"{i}.out", "w+"), open(tmp_path / f"{i}.err", "w+")) for i in range(2)]
  procs = [subprocess.Popen(command, cwd=REPO_ROOT, env=dict(env, JAX_PROCESS_ID=str(i)), stdout=out, stderr=err,
                            text=True) for i, (out, err) in enumerate(logs)]
  try:
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    phase1 = workdir / "checkpoints" / "phase1"
    while not (phase1.is_dir() and any(name.isdigit() and int(name) > 0 for name in os.listdir(phase1))):
      assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the run did not start training"
      time.sleep(0.1)
    procs[killed].kill()   # SIGKILL mid-run: no goodbye
    start = time.monotonic()
    survivor = procs[1 - killed]
    status = survivor.wait(timeout=PEER_TIMEOUT_S + 60)
    elapsed = time.monotonic() - start
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
  out, err = logs[1 - killed]
  out.seek(0)
  err.seek(0)
  result = subprocess.CompletedProcess(command, status, out.read(), err.read())
  assert_error(result, re.compile(expected))
  assert elapsed < PEER_TIMEOUT_S + 30, elapsed   # before: JAX's abort (exit 134, no line) ~85 s later


def test_only_a_lost_connection_waits_for_the_watchdog(monkeypatch):
  """After a failed collective, a launch waits for the watchdog's verdict only when the error is a lost
  connection and a watchdog runs; any other error goes on to its own handling at once."""
  monkeypatch.setattr(peers, "_running", None)
  assert peers.end_after_lost_connection(ValueError("UNKNOWN: Gloo AllGather failed: Connection reset by peer")) is None

  class Running:
    timeout = 0.1
    _stopped = threading.Event()
  monkeypatch.setattr(peers, "_running", Running())
  assert peers.end_after_lost_connection(ValueError("shapes (3,) and (4,) do not match")) is None
  ended = []
  monkeypatch.setattr(peers.os, "_exit", ended.append)
  peers.end_after_lost_connection(ValueError("UNKNOWN: Gloo AllGather failed: Connection reset by peer"))
  assert ended == [1]
