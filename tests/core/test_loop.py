"""The one run loop on a toy program: chunk boundaries, history offsets, NaN/Inf and bad-input stops,
checkpoints at extra steps, resume and interruption equal to one pure call."""

import dataclasses
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core import checkpoint_policy, loop, resume, seeds
from mpcodec.core.checkpoint import CheckpointError, CheckpointStore
from mpcodec.core.errors import ActivationError, ConfigError, InterruptedRun, NonFiniteError
from tests import support

NUM_SEEDS = 3


def toy_program(nan_at: int | None = None, bad_input_at: int | None = None, extra=(), every=4):
  """An integer random walk per seed (x += floor(scale * noise of step t)) in two phases, the second
  starting from 10 x.

  Metrics: "loss" per step (the walk's value; NaN from step `nan_at` of phase "a" on seed 1) and
  "every_other" per 2 steps (a coarser series, like dynamics' measurements; chunks end at even steps).
  Integer values keep the arithmetic exact, so this tests the loop's bookkeeping, not XLA's rounding
  (the studies' own tests hold the bit-for-bit equality of real programs).
  """

  def single(state, key, data, inputs, start_step, num_steps):
    del inputs

    def step(x, t):
      x = x + jnp.floor(data["scale"] * jax.random.normal(jax.random.fold_in(key["noise"], t)))
      bad = (t >= nan_at) & (key["index"] == 1) if nan_at is not None else False
      return x, (jnp.where(bad, jnp.nan, x), jnp.asarray(bad_input_at is not None) & (t == (bad_input_at or 0)))

    x, (loss, bad_input) = jax.lax.scan(step, state["x"], start_step + jnp.arange(num_steps))
    metrics = {"loss": loss, "every_other": loss[1::2], "bad_input": bad_input}
    return {"x": x, "steps": state["steps"] + num_steps}, metrics

  def init(keys):
    return {"x": jnp.zeros(keys["index"].shape), "steps": jnp.zeros(keys["index"].shape, jnp.int32)}

  chunk = loop.vmap_chunk(single)
  phases = (loop.Phase("a", 10, chunk, chunk_every=2, checkpoint_every=every, extra_checkpoints=tuple(extra),
                       bad_input_metric="bad_input"),
            loop.Phase("b", 6, chunk, start=lambda s: {**s, "x": 10 * s["x"]}, chunk_every=4, checkpoint_every=every))
  return loop.Program(study="toy", init=init, phases=phases, data={"scale": jnp.float32(4.0)})


def toy_keys():
  return {"noise": seeds.seed_keys(7, NUM_SEEDS, "noise"), "index": jnp.arange(NUM_SEEDS)}


def run(program, workdir, **kwargs):
  return loop.run(program, toy_keys(), str(workdir), seed_labels=[f"s{i}" for i in range(NUM_SEEDS)],
                  config={"toy": 1}, **kwargs)


def test_chunk_boundaries_depend_on_the_absolute_step_only():
  phase = dataclasses.replace(toy_program(extra=(7,)).phases[0], chunk_every=3)
  assert phase.boundaries() == [(0, 3), (3, 4), (4, 6), (6, 7), (7, 8), (8, 9), (9, 10)]
  # A run resumed from any boundary executes the same chunks as the rest of an uninterrupted one.
  for start, _ in phase.boundaries():
    assert phase.boundaries(start) == [b for b in phase.boundaries() if b[0] >= start]
  assert [s for s in range(11) if phase.is_checkpoint_step(s)] == [0, 4, 7, 8, 10]


def test_history_matches_a_plain_numpy_walk():
  state, history = jax.jit(loop.pure_sweep(toy_program()))(toy_keys())
  keys = toy_keys()
  for seed in range(NUM_SEEDS):
    noise = [float(jax.random.normal(jax.random.fold_in(keys["noise"][seed], t))) for t in range(10)]
    walk_a = np.cumsum(np.floor(4 * np.asarray(noise, np.float32)))
    np.testing.assert_array_equal(history["a"]["loss"][seed], walk_a)
    np.testing.assert_array_equal(history["a"]["every_other"][seed], walk_a[1::2])
    noise_b = [float(jax.random.normal(jax.random.fold_in(keys["noise"][seed], t))) for t in range(6)]
    walk_b = 10 * walk_a[-1] + np.cumsum(np.floor(4 * np.asarray(noise_b, np.float32)))
    np.testing.assert_array_equal(history["b"]["loss"][seed], walk_b)
  np.testing.assert_array_equal(state["steps"], [16] * NUM_SEEDS)


def test_chunked_run_and_resumes_equal_one_pure_call(tmp_path):
  program = toy_program(extra=(6,))
  pure_state, pure_history = jax.jit(loop.pure_sweep(program))(toy_keys())
  full = run(program, tmp_path / "full")
  support.assert_trees_equal(full.state, pure_state)
  support.assert_trees_equal(full.history, pure_history)
  assert CheckpointStore(tmp_path / "full" / "a").all_steps() == [0, 4, 6, 8, 10]
  assert CheckpointStore(tmp_path / "full" / "b").all_steps() == [0, 4, 6]
  for phase, keep in (("a", 6), ("a", 0), ("b", 4)):
    workdir = tmp_path / f"{phase}{keep}"
    run(program, workdir)
    if phase == "a":
      CheckpointStore(workdir / "b").delete_after(-1)
    CheckpointStore(workdir / phase).delete_after(keep)
    resumed = run(program, workdir)
    assert resumed.resumed_from == ((phase, keep) if (phase, keep) != ("a", 0) else None)
    support.assert_trees_equal(resumed.state, pure_state)
    support.assert_trees_equal(resumed.history, pure_history)


def test_non_finite_loss_names_phase_step_and_seed_and_saves_nothing_after_it(tmp_path):
  with pytest.raises(NonFiniteError, match=r"toy a: loss is nan at step 5 for seed s1 \(index 1\); the last "
                                           r"good checkpoint is a step 4"):
    run(toy_program(nan_at=5), tmp_path)
  assert CheckpointStore(tmp_path / "a").all_steps() == [0, 4]


def test_bad_input_flag_names_the_step(tmp_path):
  with pytest.raises(ActivationError, match=r"toy a: activations contain NaN/Inf in batch index 7"):
    run(toy_program(bad_input_at=7), tmp_path)


def test_sigint_stops_after_the_chunk_with_a_checkpoint(tmp_path):
  program = toy_program(every=100)
  progress_steps = []

  class Progress:
    """Sends SIGINT to this process once the first chunk has been counted."""

    def update(self, n):
      if n:
        progress_steps.append(n)
      if len(progress_steps) == 1 and n:
        os.kill(os.getpid(), signal.SIGINT)

    def set_postfix_str(self, text):
      del text

  with pytest.raises(InterruptedRun, match=r"toy: interrupted at a step \d+; checkpoint saved"):
    run(program, tmp_path, progress=Progress())
  stopped = CheckpointStore(tmp_path / "a").latest_step()
  assert 0 < stopped < 10 and stopped in [end for _, end in program.phases[0].boundaries()]
  resumed = run(program, tmp_path)
  assert resumed.resumed_from == ("a", stopped)
  support.assert_trees_equal(resumed.state, jax.jit(loop.pure_sweep(program))(toy_keys())[0])


def test_a_missing_checkpoint_resumes_from_the_one_before_and_writes_the_later_ones_again(tmp_path):
  program = toy_program(extra=(6,))
  pure_state, pure_history = jax.jit(loop.pure_sweep(program))(toy_keys())
  for phase, deleted, resumed_from, trained in (("a", 8, ("a", 6), 10), ("a", 4, None, 16), ("b", 0, ("a", 10), 6)):
    workdir = tmp_path / f"{phase}{deleted}"
    run(program, workdir)
    # What the corruption error advises for one step (an intermediate one: the later ones stay).
    CheckpointStore(workdir / phase)._manager.delete(deleted)  # pylint: disable=protected-access
    resumed = run(program, workdir)
    assert (resumed.resumed_from, resumed.steps_trained) == (resumed_from, trained), (phase, deleted)
    support.assert_trees_equal(resumed.state, pure_state)
    support.assert_trees_equal(resumed.history, pure_history)
    assert CheckpointStore(workdir / "a").all_steps() == [0, 4, 6, 8, 10]
    assert CheckpointStore(workdir / "b").all_steps() == [0, 4, 6]
    assert run(program, workdir).steps_trained == 0   # now finished


def test_edited_or_unreadable_metadata_is_corruption_naming_the_previous_step(tmp_path):
  run(toy_program(), tmp_path)
  path = tmp_path / "b" / "6" / "metadata" / "metadata"
  metadata = json.loads(path.read_text())
  path.write_text(json.dumps({**metadata, "config": {"toy": 2}}))
  with pytest.raises(CheckpointError, match=(
      r"metadata of the checkpoint at step 6 in .*b is corrupt: it differs from the digest saved with it; the "
      r"previous checkpoint is step 4")):
    run(toy_program(), tmp_path)
  path.write_text("{not json")
  with pytest.raises(CheckpointError, match=r"step 6 .* could not be read, it may be corrupt .*previous "
                                            r"checkpoint is step 4"):
    run(toy_program(), tmp_path)


def test_overwrite_removes_the_derived_outputs_before_the_checkpoints(tmp_path, monkeypatch):
  run(toy_program(), tmp_path / "checkpoints")
  report, metrics = tmp_path / "report.json", tmp_path / "metrics"
  report.write_text("{}")
  metrics.mkdir()
  (metrics / "history.csv").write_text("step\n")
  removed = []
  rmtree = resume.shutil.rmtree

  def recording(path, *args, **kwargs):
    removed.append((os.path.basename(path), report.exists()))
    return rmtree(path, *args, **kwargs)

  monkeypatch.setattr(resume.shutil, "rmtree", recording)
  loop.run(toy_program(), toy_keys(), str(tmp_path / "checkpoints"), seed_labels=[f"s{i}" for i in range(NUM_SEEDS)],
           config={"toy": 2}, overwrite=True, outputs=[str(report), str(metrics)])
  assert removed[:3] == [("metrics", False), ("a", False), ("b", False)]   # outputs first, then checkpoints
  assert not report.exists() and not metrics.exists()


# ------------------------------------------------------------------------------------------------
# Checkpoint policy by time: a planted clock decides which chunk ends save.


def recording_saves(monkeypatch) -> list:
  """(phase, step) of every save the loop asks for, in order."""
  saved, save = [], CheckpointStore.save

  def recording(self, step, *args, **kwargs):
    saved.append((os.path.basename(self.directory), int(step)))
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(CheckpointStore, "save", recording)
  return saved


def planted_clock(times):
  """A clock reading `times` in turn; fails the test if the loop reads it more often than planted."""
  readings = iter(times)
  return lambda: next(readings)


def test_time_policy_saves_planned_steps_and_chunk_ends_an_interval_after_the_last_save(tmp_path, monkeypatch):
  # Phase a: chunk ends 2, 4, 6, 8, 10; phase b: 4, 6. The plan (every=100): each phase's 0 and end.
  # The clock is read once when the run starts and once per chunk end; with a 30 s interval, the unplanned
  # ends at 4 (35 s after the start) and 8 (35 s after the save at 4) save, 2 (10 s) and 6 (5 s) do not;
  # b4 comes 1 s after the save at a10.
  program = toy_program(every=100)
  saved = recording_saves(monkeypatch)
  clock = planted_clock([0.0, 10.0, 35.0, 40.0, 70.0, 71.0, 72.0, 200.0])
  outcome = run(program, tmp_path / "timed", checkpoint_policy=loop.CheckpointPolicy(30, clock=clock))
  assert saved == [("a", 0), ("a", 4), ("a", 8), ("a", 10), ("b", 0), ("b", 6)]
  # The time rule's checkpoints served as resume points: a finished phase keeps its planned steps.
  assert CheckpointStore(tmp_path / "timed" / "a").all_steps() == [0, 10]
  pure_state, pure_history = jax.jit(loop.pure_sweep(program))(toy_keys())
  support.assert_trees_equal(outcome.state, pure_state)
  support.assert_trees_equal(outcome.history, pure_history)

  # Without a policy (and MPCODEC_CHECKPOINT_INTERVAL_S unset), the plan alone, as before.
  monkeypatch.delenv(checkpoint_policy.INTERVAL_VAR, raising=False)
  saved.clear()
  run(program, tmp_path / "plan")
  assert saved == [("a", 0), ("a", 10), ("b", 0), ("b", 6)]


def test_a_run_that_dies_after_a_time_save_resumes_from_it_bit_for_bit(tmp_path, monkeypatch):
  program = toy_program(every=100)
  pure_state, pure_history = jax.jit(loop.pure_sweep(program))(toy_keys())

  class DiesAtStep10:
    """Progress that ends the run (like a kill) when the chunk ending at a10 is checked, before its save."""

    def __init__(self):
      self.steps = 0

    def update(self, n):
      self.steps += n
      if self.steps == 10:
        raise SystemExit("killed")

    def set_postfix_str(self, text):
      del text

  clock = planted_clock([0.0, 10.0, 35.0, 40.0, 70.0, 71.0])
  with pytest.raises(SystemExit):
    run(program, tmp_path, progress=DiesAtStep10(), checkpoint_policy=loop.CheckpointPolicy(30, clock=clock))
  assert CheckpointStore(tmp_path / "a").all_steps() == [0, 4, 8]   # the time rule's saves, not yet removed
  resumed = run(program, tmp_path)
  assert resumed.resumed_from == ("a", 8) and resumed.steps_trained == 8
  support.assert_trees_equal(resumed.state, pure_state)
  support.assert_trees_equal(resumed.history, pure_history)
  assert CheckpointStore(tmp_path / "a").all_steps() == [0, 10]


@pytest.mark.parametrize("value", [0, -5, float("nan"), float("inf"), "30", True])
def test_a_bad_interval_is_one_config_error(value):
  with pytest.raises(ConfigError, match=r"^min_interval_s: a minimum interval between checkpoints must be a "
                                        r"number of seconds > 0, got"):
    loop.CheckpointPolicy(value)


def test_the_interval_from_the_environment():
  var = checkpoint_policy.INTERVAL_VAR
  assert loop.CheckpointPolicy.from_environment({}).min_interval_s is None
  assert loop.CheckpointPolicy.from_environment({var: " "}).min_interval_s is None
  assert loop.CheckpointPolicy.from_environment({var: "30"}).min_interval_s == 30.0
  with pytest.raises(ConfigError, match=rf"^environment: {var}='soon' is not a number of seconds$"):
    loop.CheckpointPolicy.from_environment({var: "soon"})
  with pytest.raises(ConfigError, match=rf"^environment: {var}: a minimum interval .* got -1.0"):
    loop.CheckpointPolicy.from_environment({var: "-1"})
