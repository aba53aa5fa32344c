"""The codec's two stages through the one run loop: resume equals one pure call, skip, NaN, overwrite."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import codec as codec_config
from mpcodec.core import configuration
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import NonFiniteError, WorkdirError
from mpcodec.sae import saelens
from mpcodec.studies.codec import pipeline
from mpcodec.studies.codec.sources import make_source


def tiny_config(**overrides):
  """The smoke config with 10-step chunks and 10-step checkpoints (stages of 40 and 20 steps), without the
  analyses (tests/studies/codec/test_analysis.py runs them): these tests are about the stages."""
  cfg = codec_config.get_config("smoke")
  cfg.sae_loop.chunk_steps = 10
  cfg.sae_loop.checkpoint_every = 10
  cfg.squeezer_loop.chunk_steps = 10
  cfg.squeezer_loop.checkpoint_every = 10
  cfg.analysis.enabled = False
  return pipeline.parse_codec_config(configuration.override(cfg, overrides))


def saved_state(workdir, stage):
  store = CheckpointStore(os.path.join(workdir, "checkpoints", stage))
  state = store.restore_as_saved(store.latest_step())["state"]
  store.close()
  return state


def assert_trees_equal(a, b):
  """Equal leaves in order (a state restored as saved has Orbax's dicts for the optimizer's tuples)."""
  assert len(jax.tree.leaves(a)) == len(jax.tree.leaves(b))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def read_metrics(workdir):
  out = {}
  for name in ("sae.json", "squeezer.json"):
    with open(os.path.join(workdir, "metrics", name)) as f:
      out[name] = json.load(f)
  return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  cfg = tiny_config()
  workdir = str(tmp_path_factory.mktemp("codec_full"))
  pipeline.run_codec(cfg, workdir)
  return cfg, workdir


def test_sae_stage_equals_one_pure_call_bit_for_bit(finished):
  cfg, workdir = finished
  pure_state, _ = pipeline.train_sae(cfg.sae, cfg.sae_loop, make_source(cfg.source), cfg.seed, cfg.num_seeds)
  assert_trees_equal(saved_state(workdir, "sae"), pure_state)


def test_every_trained_sae_is_written_for_saelens(finished):
  """<workdir>/saelens/k<k>_seed<i>/ per SAE run: the folded weights of its final checkpoint, its k."""
  cfg, workdir = finished
  states = pipeline.folded_sae_states(jax.tree.map(jnp.asarray, saved_state(workdir, "sae")))
  names = [f"k{k}_seed{s}" for k in cfg.sae.k_values for s in range(cfg.num_seeds)]   # runs are k-major
  assert sorted(os.listdir(os.path.join(workdir, "saelens"))) == sorted(names)
  for r, name in enumerate(names):
    folder = os.path.join(workdir, "saelens", name)
    assert sorted(os.listdir(folder)) == ["cfg.json", "sae_weights.safetensors"]
    loaded = saelens.load(folder)
    assert loaded.architecture == "topk" and loaded.k == int(states["k"][r])
    assert loaded.metadata["hook_name"] == "ground_truth" and loaded.metadata["seed_index"] == r % cfg.num_seeds
    for key, value in loaded.params.items():
      np.testing.assert_array_equal(np.asarray(value), np.asarray(states["params"][key][r]), err_msg=key)


def test_interrupted_runs_resume_to_the_same_states_and_outputs(finished, tmp_path):
  """Each stage, the shuffled-latent null's included (its shuffles are drawn from the step)."""
  cfg, full_dir = finished
  stages = ("sae", "squeezer", "squeezer_shuffled")
  for stage, keep in (("sae", 20), ("squeezer", 10), ("squeezer_shuffled", 10)):
    workdir = str(tmp_path / stage)
    shutil.copytree(full_dir, workdir)
    shutil.rmtree(os.path.join(workdir, "metrics"))
    for later in stages[stages.index(stage) + 1:]:
      shutil.rmtree(os.path.join(workdir, "checkpoints", later))
    store = CheckpointStore(os.path.join(workdir, "checkpoints", stage))
    store.delete_after(keep)
    assert store.latest_step() == keep
    store.close()
    pipeline.run_codec(cfg, workdir)
    for name in stages:
      assert_trees_equal(saved_state(workdir, name), saved_state(full_dir, name))
    assert read_metrics(workdir) == read_metrics(full_dir)


def test_a_finished_run_trains_nothing_again(finished):
  cfg, workdir = finished
  stores = [os.path.join(workdir, "checkpoints", s) for s in ("sae", "squeezer", "squeezer_shuffled")]
  before = {d: sorted(os.listdir(d)) for d in stores}
  mtimes = {d: os.path.getmtime(os.path.join(d, before[d][-1])) for d in stores}
  pipeline.run_codec(cfg, workdir)
  assert {d: sorted(os.listdir(d)) for d in stores} == before
  assert {d: os.path.getmtime(os.path.join(d, before[d][-1])) for d in stores} == mtimes


def test_nan_loss_names_stage_step_and_run(tmp_path):
  cfg = tiny_config(**{"sae.optim.name": "sgd", "sae.optim.learning_rate": 1e30})
  with pytest.raises(NonFiniteError, match=r"codec sae: loss is .* at step \d+ for seed k=3 seed \d") as err:
    pipeline.run_codec(cfg, str(tmp_path))
  assert "last good checkpoint is sae step" in str(err.value)


def test_another_config_is_refused_unless_overwrite(finished, tmp_path):
  cfg, full_dir = finished
  workdir = str(tmp_path / "copy")
  shutil.copytree(full_dir, workdir)
  other = tiny_config(**{"sae.k": 4})
  # Outputs derived from the discarded checkpoints (this run writes no atlas: its analyses are off).
  stale = [os.path.join(workdir, name) for name in ("atlas.json", "metrics/analysis.json", "plots/stale.png")]
  for path in stale:
    with open(path, "w") as f:
      f.write("{}")
  with pytest.raises(WorkdirError, match=r"config\.sae\.k.*--overwrite"):
    pipeline.run_codec(other, workdir)
  assert all(os.path.exists(path) for path in stale)   # a refused run removes nothing
  pipeline.run_codec(other, workdir, overwrite=True)
  assert read_metrics(workdir)["sae.json"]["runs"][0]["k"] == 4
  assert not [path for path in stale if os.path.exists(path)]
  # Changing only the Squeezer keeps the SAE stage's checkpoints.
  sae_steps = sorted(os.listdir(os.path.join(workdir, "checkpoints", "sae")))
  squeezed = tiny_config(**{"sae.k": 4, "squeezer.k": 3})
  pipeline.run_codec(squeezed, workdir, overwrite=True)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "sae"))) == sae_steps
