"""mpcodec.checkpoints against each study's own restore: params, step, config and activations, on smoke runs."""

import dataclasses
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mpcodec import checkpoints
from mpcodec.core import configuration
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import CheckpointError
from mpcodec.data.dataset import Dataset
from mpcodec.sae import autoencoder as sae_lib
from mpcodec.sae import squeezer as squeezer_lib
from mpcodec.studies.codec import pipeline as codec_pipeline
from mpcodec.studies.codec.sources import make_source
from mpcodec.studies.dynamics import program as dynamics, series as dynamics_results
from mpcodec.studies.dynamics.train import sweep as dynamics_sweep
from mpcodec.studies.mono_poly import analysis as mono_poly_analysis, experiment as mono_poly
from tests import support
from tests.studies.codec.test_pipeline import tiny_config as codec_tiny_config
from tests.studies.dynamics.test_program import _toy_config
from tests.studies.mono_poly.test_experiment import tiny_config as mono_poly_tiny_config


def one_line_error(excinfo, *parts):
  message = str(excinfo.value)
  assert "\n" not in message, message
  for part in parts:
    assert str(part) in message, (part, message)


@pytest.fixture(scope="module")
def mono_poly_run(tmp_path_factory):
  """Both phases of a tiny mono->poly run (10 steps each, checkpoints every 5) through the study's `train`."""
  cfg = mono_poly.parse_config(mono_poly_tiny_config())
  workdir = str(tmp_path_factory.mktemp("mono_poly"))
  mono_poly.train(cfg, workdir)
  return cfg, workdir


@pytest.fixture(scope="module")
def codec_run(tmp_path_factory):
  """The codec smoke run's SAE and main Squeezer stages through the study's `run_codec`; its analysis,
  report and dictionary recovery (not what is loaded here) are skipped to keep the test short."""
  cfg = codec_tiny_config(tax_width_factors=())
  workdir = str(tmp_path_factory.mktemp("codec"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(codec_pipeline.analysis, "analyze", lambda *args, **kwargs: {})
    patch.setattr(codec_pipeline.codec_report, "write_codec_outputs", lambda *args, **kwargs: {})
    patch.setattr(codec_pipeline, "ground_truth_recovery", lambda *args, **kwargs: {})
    codec_pipeline.run_codec(cfg, workdir)
  return cfg, workdir


@pytest.fixture(scope="module")
def dynamics_run(tmp_path_factory):
  """A tiny dynamics run (mlp_32x4, 10 steps, checkpoints every 5) on toy images, through `run_seeds`
  into the folder a sweep gives the run."""
  cfg = _toy_config(checkpoint_every=5)
  dataset = support.toy_images()
  workdir = str(tmp_path_factory.mktemp("dynamics"))
  result = dynamics_sweep.run_seeds(cfg, dataset, dynamics_results.checkpoint_dir(workdir, "mlp_32x4@mnist"))
  return cfg, dataset, workdir, result


# ------------------------------------------------------------------------------------------------ mono->poly


def test_mono_poly_params_step_and_config_equal_the_studys_restore(mono_poly_run):
  cfg, workdir = mono_poly_run
  found = checkpoints.stages(workdir)
  assert {"phase1", "phase2"} <= set(found)   # and the control arm's stage where the config has one
  assert found == {name: mono_poly.checkpoint_dir(os.path.abspath(workdir), name)
                   for name in os.listdir(mono_poly.checkpoint_root(workdir))}
  for stage, step in (("phase2", None), ("phase1", 5)):
    run = checkpoints.load(workdir, stage=stage, step=step)
    store = CheckpointStore(mono_poly.checkpoint_dir(workdir, stage))
    expected_step = store.latest_step() if step is None else step
    saved_cfg = mono_poly_analysis.saved_config(store.restore_metadata(expected_step))
    study_params = mono_poly.restore_state(saved_cfg, store, expected_step, stage)["params"]
    store.close()
    assert (run.stage, run.step, run.kind, run.steps) == (stage, expected_step, "mono_poly", (0, 5, 10))
    assert saved_cfg == cfg and run.config == configuration.to_dict(cfg)
    assert run.seeds == tuple(cfg.seeds) and run.num_runs == cfg.num_seeds
    support.assert_trees_equal(run.params, study_params)
    assert run.history["loss"].shape == (cfg.num_seeds, 10)
  # Without a stage: the last phase, at its latest step.
  default = checkpoints.load(workdir)
  assert (default.stage, default.step) == ("phase2", 10)


def test_mono_poly_activations_equal_the_studys_hidden_activations(mono_poly_run):
  cfg, workdir = mono_poly_run
  run = checkpoints.load(workdir)
  _, test_set = mono_poly.make_datasets(cfg)
  np.testing.assert_array_equal(np.asarray(checkpoints.run_inputs(run)), np.asarray(test_set["x"]))
  assert checkpoints.layer_names(run) == mono_poly.layer_names(cfg)
  acts_SxNxH = checkpoints.activations(run, layer="hidden_0")
  assert acts_SxNxH.shape == (cfg.num_seeds, cfg.data.num_test, cfg.model.hidden_widths[0])
  hidden_activations = jax.jit(mono_poly.hidden_activations, static_argnums=0)
  for i in range(cfg.num_seeds):
    params = jax.tree.map(lambda x, i=i: x[i], run.params)
    expected = hidden_activations(cfg, params, test_set["x"])["hidden_0"]
    np.testing.assert_allclose(np.asarray(acts_SxNxH[i]), np.asarray(expected), rtol=1e-6, atol=1e-6)
  # Given inputs: the first five test images.
  five = checkpoints.activations(run, "hidden_0", inputs=test_set["x"][:5])
  np.testing.assert_allclose(np.asarray(five), np.asarray(acts_SxNxH[:, :5]), rtol=1e-6, atol=1e-6)


def test_the_plain_orbax_route_of_the_docstring_reads_the_same_params(mono_poly_run):
  """The module docstring's CheckpointManager / StandardRestore snippet, as written there."""
  _, workdir = mono_poly_run
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints", "phase2"), item_names=("state", "metadata"))
  step = manager.latest_step()
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(), metadata=ocp.args.JsonRestore()))
  manager.close()
  run = checkpoints.load(workdir)
  assert step == run.step and restored["metadata"]["full_config"] == run.config
  support.assert_trees_equal(restored["state"]["state"]["params"], run.params)
  assert "ocp.args.StandardRestore()" in checkpoints.__doc__


# ------------------------------------------------------------------------------------------------ codec


def test_codec_sae_stage_equals_the_studys_load_sae(codec_run):
  cfg, workdir = codec_run
  run = checkpoints.load(workdir, stage="sae")
  states, sae_cfg, metadata = codec_pipeline.load_sae(os.path.join(workdir, "checkpoints", "sae"))
  assert (run.kind, run.step, run.steps) == ("sae", cfg.sae_loop.steps, (0, 10, 20, 30, 40))
  assert run.step == metadata["step"] and run.config == metadata["full_config"] == configuration.to_dict(cfg)
  assert run.seeds == ("k=3 seed 0", "k=3 seed 1")
  support.assert_trees_equal(codec_pipeline.folded_sae_states(run.state), states)
  assert run.params["w_dec_NxD"].shape == (2, cfg.sae.num_latents, 16)
  x_BxD, _ = make_source(cfg.source).sample(123, 64)
  latents = checkpoints.activations(run, "latents", inputs=x_BxD)
  reconstruction = checkpoints.activations(run, "reconstruction", inputs=x_BxD)
  apply = jax.jit(sae_lib.apply, static_argnums=2)
  for r in range(run.num_runs):
    x_hat_BxD, codes = apply(jax.tree.map(lambda a, r=r: a[r], states), x_BxD, sae_cfg)
    np.testing.assert_allclose(np.asarray(latents[r]), np.asarray(sae_lib.dense_codes(codes, 64, sae_cfg.num_latents)),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(reconstruction[r]), np.asarray(x_hat_BxD), rtol=1e-6, atol=1e-6)


def test_codec_squeezer_stage_equals_the_saved_state_and_the_studys_config(codec_run):
  cfg, workdir = codec_run
  run = checkpoints.load(workdir, stage="squeezer")
  store = CheckpointStore(os.path.join(workdir, "checkpoints", "squeezer"))
  saved = store.restore_as_saved(store.latest_step())["state"]
  store.close()
  assert (run.kind, run.step, run.num_runs) == ("squeezer", cfg.squeezer_loop.steps, 4)
  support.assert_trees_equal(run.params, saved["squeezer"]["params"])
  # The Squeezer config as the study builds it for its main stage (every K of the grid fits in M = 16).
  full = codec_pipeline.squeezer_config(cfg, 16)
  squeezer_cfg = dataclasses.replace(full, k=full.k_values[0], k_grid=full.k_values)
  x_BxD, _ = make_source(cfg.source).sample(7, 32)
  neurons = checkpoints.activations(run, "neurons", inputs=x_BxD)
  assert neurons.shape == (4, 32, 16)
  reconstructions = jax.jit(squeezer_lib.reconstructions, static_argnums=(3, 4))
  for q in range(run.num_runs):
    one = jax.tree.map(lambda a, q=q: a[q], saved)
    expected = reconstructions(one["squeezer"], one["sae"], x_BxD, cfg.sae, squeezer_cfg)["neurons"]
    np.testing.assert_allclose(np.asarray(neurons[q]), np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_codec_stages_need_inputs_and_known_layers(codec_run):
  _, workdir = codec_run
  with pytest.raises(CheckpointError) as excinfo:
    checkpoints.load(workdir)
  one_line_error(excinfo, os.path.abspath(workdir), "several stages", "'sae'", "'squeezer'")
  run = checkpoints.load(workdir, stage="sae")
  with pytest.raises(CheckpointError) as excinfo:
    checkpoints.activations(run, "latents")
  one_line_error(excinfo, run.workdir, "stage sae", "step 40", "pass inputs=")
  with pytest.raises(ValueError, match=r"layer: 'hidden_0' is not a layer of a sae stage; valid names: "
                                       r"\['latents', 'reconstruction'\]"):
    checkpoints.activations(run, "hidden_0", inputs=np.zeros((3, 16), np.float32))
  with pytest.raises(ValueError) as excinfo:
    checkpoints.activations(run, "latents", inputs=np.zeros((3, 15), np.float32))
  one_line_error(excinfo, "inputs: expected activations of shape (N, 16), got (3, 15)", "stage sae")
  with pytest.raises(CheckpointError, match="cannot be rebuilt from library code"):
    checkpoints.run_inputs(run)
  with pytest.raises(CheckpointError, match="is not a Flax model"):
    checkpoints.model(run)


# ------------------------------------------------------------------------------------------------ dynamics


def test_dynamics_params_and_activations_equal_the_studys(dynamics_run):
  cfg, dataset, workdir, result = dynamics_run
  directory = os.path.join(dynamics_results.checkpoint_dir(os.path.abspath(workdir), "mlp_32x4@mnist"), "train")
  assert checkpoints.stages(workdir) == {"mlp_32x4@mnist": directory}
  run = checkpoints.load(workdir)
  assert (run.stage, run.kind, run.step, run.steps) == ("mlp_32x4@mnist", "dynamics", 10, (0, 5, 10))
  assert run.config == dynamics_results.result_defining(configuration.to_dict(cfg))
  # What the study's mechanism re-runs restore, and the final params `run_seeds` returned.
  store = CheckpointStore(directory)
  study_variables = store.restore_as_saved(10)["state"]["params"]
  store.close()
  support.assert_trees_equal(run.params, study_variables["params"])
  support.assert_trees_equal(run.params, result.params["params"])
  assert checkpoints.layer_names(run) == ("hidden_0", "hidden_1", "hidden_2", "hidden_3")
  model = dynamics.build_model(cfg, dataset)
  acts = checkpoints.activations(run, "hidden_2", inputs=dataset.test_x)
  assert acts.shape == (cfg.num_seeds, dataset.num_test, 32)
  for i in range(cfg.num_seeds):
    variables = jax.tree.map(lambda x, i=i: x[i], study_variables)
    expected = model.apply(variables, dataset.test_x)[1]["hidden_2"]
    np.testing.assert_allclose(np.asarray(acts[i]), np.asarray(expected), rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError) as excinfo:
    checkpoints.activations(run, "hidden_9", inputs=dataset.test_x)
  one_line_error(excinfo, "layer: 'hidden_9'", "stage mlp_32x4@mnist step 10", "['hidden_0', 'hidden_1'")
  with pytest.raises(ValueError, match=r"inputs: expected examples of shape \(N, 28, 28, 1\), got \(4, 28, 28\)"):
    checkpoints.activations(run, "hidden_0", inputs=dataset.test_x[:4, ..., 0])


def test_dynamics_text_model_is_rebuilt_from_its_embedding_and_head(tmp_path):
  """A token-mean MLP on toy text (50 ids, 2 classes; the registry's AG News has 4): the vocabulary and
  the class count come from the saved embedding table and head."""
  rng = np.random.default_rng(0)
  tokens = np.where(np.arange(8) < rng.integers(1, 9, (30, 1)), rng.integers(2, 50, (30, 8)), 0).astype(np.int32)
  labels = rng.integers(0, 2, 30).astype(np.int32)
  dataset = Dataset("text", "text", tokens, labels, tokens, labels, 2, metadata={"vocab_size": 50})
  cfg = _toy_config(dataset="ag_news", max_length=8, probe_size=30, num_steps=5, checkpoint_every=5)
  result = dynamics_sweep.run_seeds(cfg, dataset, dynamics_results.checkpoint_dir(str(tmp_path), "mlp_32x4@ag_news"))
  run = checkpoints.load(tmp_path)
  assert (run.stage, run.step) == ("mlp_32x4@ag_news", 5)
  acts = checkpoints.activations(run, "hidden_3", inputs=tokens)
  model = dynamics.build_model(cfg, dataset)
  for i in range(cfg.num_seeds):
    expected = model.apply(jax.tree.map(lambda x, i=i: x[i], result.params), tokens)[1]["hidden_3"]
    np.testing.assert_allclose(np.asarray(acts[i]), np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_dynamics_run_inputs_are_the_studys_dataset(dynamics_run):
  data_dir = support.require_data("mnist")
  cfg, _, workdir, _ = dynamics_run
  run = checkpoints.load(workdir, step=5)
  expected = dynamics.load_dataset(cfg, str(data_dir)).test_x
  np.testing.assert_array_equal(np.asarray(checkpoints.run_inputs(run, data_dir=str(data_dir))), expected)


# ------------------------------------------------------------------------------------------------ errors


def test_errors_are_one_line_naming_workdir_stage_and_step(mono_poly_run, tmp_path):
  _, workdir = mono_poly_run
  workdir = os.path.abspath(workdir)
  missing = str(tmp_path / "nowhere")
  with pytest.raises(CheckpointError) as excinfo:
    checkpoints.load(missing)
  one_line_error(excinfo, missing, "no such directory")
  (tmp_path / "empty" / "checkpoints" / "phase1").mkdir(parents=True)
  with pytest.raises(CheckpointError) as excinfo:
    checkpoints.load(tmp_path / "empty")
  one_line_error(excinfo, str(tmp_path / "empty"), "no checkpoints")
  assert not (tmp_path / "nowhere").exists()   # reading creates nothing
  with pytest.raises(CheckpointError) as excinfo:
    checkpoints.load(workdir, stage="sae")
  one_line_error(excinfo, workdir, "no stage 'sae'", str(sorted(checkpoints.stages(workdir))))
  with pytest.raises(CheckpointError) as excinfo:
    checkpoints.load(workdir, stage="phase1", step=7)
  one_line_error(excinfo, workdir, "stage phase1 step 7", "saved steps: [0, 5, 10]")
  with pytest.raises(ValueError, match=r"split: expected 'train' or 'test', got 'val'"):
    checkpoints.run_inputs(checkpoints.load(workdir), split="val")


def test_public_api():
  assert sorted(checkpoints.__all__) == ["Run", "activations", "layer_names", "load", "model", "run_inputs",
                                         "stages"]
  for name in checkpoints.__all__:
    assert getattr(checkpoints, name).__doc__, name
