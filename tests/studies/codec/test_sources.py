"""Activation sources, bad input (NaN, wrong width, unknown layer) and the codec launch end to end."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core import configuration, loop
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import WorkdirError
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import saelens
from mpcodec.studies.codec import pipeline as train
from mpcodec.studies.codec import program, streams
from mpcodec.studies.codec.sources import (ActivationError, CheckpointSource, GroundTruthConfig, GroundTruthSource,
                                   SourceConfig)
from tests import support

REPO_ROOT = str(support.REPO_ROOT)
EXPECTED_FILES = ["metrics/sae.json", "metrics/squeezer.json", "metrics/sae_history.csv",
                  "metrics/squeezer_history.csv", "plots/sae_training.png", "plots/squeezer_training.png",
                  "plots/latent_density.png", "plots/features_per_neuron.png", "report.md"]


def test_ground_truth_batches_are_a_function_of_the_step():
  source = GroundTruthSource(GroundTruthConfig(num_atoms=20, dim=6, k_true=2, noise_std=0.0))
  stream = source.batches(8, start_step=5)
  first, second = next(stream), next(stream)
  np.testing.assert_array_equal(first, source.batch_fn(8)(5))
  np.testing.assert_array_equal(second, next(source.batches(8, start_step=6)))
  x, f = source.sample(5, 8)
  np.testing.assert_allclose(x, f @ source.dictionary_NxD, rtol=1e-5, atol=1e-6)
  assert np.all(np.count_nonzero(np.asarray(f), axis=1) == 2) and first.shape == (8, 6)


class _HostSource:
  """A host stream of ones with NaN in one batch."""

  width = 4
  description = "test stream"

  def __init__(self, nan_step):
    self.nan_step = nan_step

  def batch_fn(self, batch_size):
    del batch_size
    return None

  def batches(self, batch_size, start_step=0):
    step = start_step
    while True:
      batch = np.random.default_rng(step).normal(size=(batch_size, self.width)).astype(np.float32)
      if step == self.nan_step:
        batch[1, 2] = np.nan
      yield batch
      step += 1


class _DeviceSource(_HostSource):
  def batch_fn(self, batch_size):
    def fn(step):
      x = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(0), step), (batch_size, self.width))
      return jnp.where(step == self.nan_step, jnp.nan, x)
    return fn


@pytest.mark.parametrize("source_cls", [_HostSource, _DeviceSource])
def test_nan_activations_stop_training_naming_the_batch_index(source_cls, tmp_path):
  cfg = sae.SAEConfig(num_latents=8, k=2, aux_k=2)
  loop_cfg = train.LoopConfig(steps=6, batch_size=4, chunk_steps=3, init_batches=1)
  source = source_cls(nan_step=4)
  keys = train.sae_keys(cfg, seed=0, num_seeds=1)
  with pytest.raises(ActivationError, match="NaN/Inf in batch index 4"):
    loop.run(train.sae_program(cfg, loop_cfg, source), keys, str(tmp_path),
             seed_labels=train.run_names(keys["k"], 1), config={})
  # The init sample is named as such, not by its internal stream offset.
  with pytest.raises(ActivationError, match=r"NaN/Inf in the init sample, batch 0 "):
    program.init_batch(source_cls(nan_step=streams.INIT_SAMPLE_START), loop_cfg)


def test_squeezer_k_above_its_neurons_is_a_config_error_naming_the_key():
  cfg = train.parse_codec_config({"squeezer": {"k": 20}})
  with pytest.raises(configuration.ConfigError, match=r"config\.squeezer\.k: k=20 must lie in \[1, num_latents=16\]"):
    train.check_against_width(cfg, 16)
  with pytest.raises(configuration.ConfigError, match=r"config\.sae\.k: k=600"):
    train.parse_codec_config({"sae": {"k": 600}})


def _run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=600)


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("codec_smoke"))
  out = _run("launch.codec", "--config=configs/codec.py:smoke", f"--workdir={workdir}")
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir


def test_smoke_launch_writes_every_output(smoke_workdir):
  for name in EXPECTED_FILES:
    assert os.path.getsize(os.path.join(smoke_workdir, name)) > 0, name
  for store in ("sae", "squeezer"):
    assert os.listdir(os.path.join(smoke_workdir, "checkpoints", store)), store
  with open(os.path.join(smoke_workdir, "metrics", "sae.json")) as f:
    metrics = json.load(f)
  assert len(metrics["runs"]) == 2 and not metrics["all_latents_dead_in_every_run"]
  for row in metrics["runs"]:
    assert 0.0 <= row["fvu"] and 0.0 < row["mean_max_cosine_similarity"] <= 1.0
  report = open(os.path.join(smoke_workdir, "report.md")).read()
  assert f"{metrics['runs'][0]['fvu']:.4g}" in report


def test_saved_sae_works_on_raw_activations(smoke_workdir):
  states, cfg, metadata = train.load_sae(os.path.join(smoke_workdir, "checkpoints", "sae"))
  source = GroundTruthSource(configuration.parse(GroundTruthConfig,
                                                 metadata["config"]["source"]["ground_truth"]))
  x = source.batch_fn(256)(12345)
  state = jax.tree.map(lambda a: a[0], states)
  x_hat = jax.jit(lambda state, x: sae.apply(state, x, cfg)[0])(state, x)
  fvu = float(jnp.sum((x - x_hat) ** 2) / jnp.sum((x - x.mean(0)) ** 2))
  with open(os.path.join(smoke_workdir, "metrics", "sae.json")) as f:
    expected = json.load(f)["runs"][0]["fvu"]
  assert float(state["input_scale"]) == 1.0
  assert fvu < 0.9 and abs(fvu - expected) < 0.1


@pytest.fixture(scope="module")
def mono_poly_workdir(tmp_path_factory):
  """A tiny mono->poly run (2 seeds, 4 steps per phase) with checkpoints."""
  sys.path.insert(0, REPO_ROOT)
  from configs import mono_poly as mono_poly_config  # pylint: disable=g-import-not-at-top
  from mpcodec.studies.mono_poly import experiment as mono_poly  # pylint: disable=g-import-not-at-top
  raw = mono_poly_config.get_config("smoke")
  raw.num_seeds, raw.batch_size, raw.log_every = 2, 16, 2
  raw.data.num_train, raw.data.num_test = 64, 32
  for phase in (raw.phase1, raw.phase2):
    phase.steps, phase.checkpoint_every = 4, 4
  workdir = str(tmp_path_factory.mktemp("mono_poly"))
  mono_poly.run_experiment(mono_poly.parse_config(raw), workdir)
  return workdir


def test_checkpoint_source_streams_the_layer_of_the_saved_model(mono_poly_workdir):
  from mpcodec.studies.mono_poly import experiment as mono_poly  # pylint: disable=g-import-not-at-top
  source = CheckpointSource(SourceConfig(kind="checkpoint", workdir=mono_poly_workdir, phase="phase2",
                                         layer="hidden_0", seed_index=1))
  store = CheckpointStore(mono_poly.checkpoint_dir(mono_poly_workdir, "phase2"))
  step = store.latest_step()
  model_cfg = mono_poly.parse_config(store.restore_metadata(step)["config"])
  params = mono_poly.restore_state(model_cfg, store, step, "phase2")["params"]
  assert source.step == step == 4 and source.width == model_cfg.model.hidden_widths[0]
  batch = next(source.batches(8, start_step=9))
  seed_params = jax.tree.map(lambda a: a[1], params)
  inputs = mono_poly.make_datasets(model_cfg)[0]["x"][source._indices(9, 8)]  # pylint: disable=protected-access
  expected = mono_poly.hidden_activations(model_cfg, seed_params, jnp.asarray(inputs))["hidden_0"]
  np.testing.assert_allclose(batch, expected, rtol=1e-5, atol=1e-6)
  # One epoch of 64 examples in batches of 16 visits every example once.
  seen = np.concatenate([source._indices(s, 16) for s in range(4)])  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.sort(seen), np.arange(64))


def test_unknown_layer_lists_the_valid_names(mono_poly_workdir):
  with pytest.raises(ActivationError, match=r"layer 'hidden_7' is not in the model.*\['hidden_0'\]"):
    CheckpointSource(SourceConfig(kind="checkpoint", workdir=mono_poly_workdir, layer="hidden_7"))


def test_saved_sae_on_a_source_of_another_width_is_refused(mono_poly_workdir, smoke_workdir, tmp_path):
  raw = {"source": {"kind": "checkpoint", "workdir": mono_poly_workdir},
         "sae_checkpoint": os.path.join(smoke_workdir, "checkpoints", "sae"), "squeezer": {"k": 3}}
  with pytest.raises(ActivationError, match=r"activation width 10 does not match the SAE saved in .*\(input width 16\)"):
    train.run_codec(train.parse_codec_config(raw), str(tmp_path))


def test_codec_runs_on_a_mono_poly_hidden_layer(mono_poly_workdir, tmp_path):
  sys.path.insert(0, REPO_ROOT)
  from configs import codec as codec_config  # pylint: disable=g-import-not-at-top
  raw = codec_config.get_config("smoke,source=mono_poly")
  raw.source.workdir = mono_poly_workdir
  payload = train.run_codec(train.parse_codec_config(raw), str(tmp_path)).outputs
  assert payload["squeezer"]["num_neurons"] == 10
  assert "layer hidden_0" in payload["sae"]["source"]
  for name in EXPECTED_FILES:
    assert os.path.getsize(os.path.join(tmp_path, name)) > 0, name
  # The real neurons exist here: the validation section is computed, not "cannot be tested on ground truth".
  with open(os.path.join(tmp_path, "metrics", "analysis.json")) as f:
    validation = json.load(f)["validation"]
  assert "no real neuron layer" not in (validation.get("reason") or "")
  records = [r["validation"] for r in payload["analysis"]["runs"]["squeezer"] if "validation" in r]
  assert records and all("matched_similarity" in r or "no roommate pairs" in r["reason"] for r in records)
  assert any(r.get("matched_similarity") is not None for r in records)
  with open(os.path.join(tmp_path, "atlas.json")) as f:
    assert any("top_input_images" in atom for atom in json.load(f)["atoms"])


def test_codec_runs_on_a_users_array_and_its_contents_define_the_run(tmp_path):
  """The one flow on an (N, D) .npy (here ground-truth activations written to a file): the SAEs carry the
  declared layer name; a file with other contents at the same path is another run's (refused before
  training), a copy of the same contents elsewhere is the same run."""
  sys.path.insert(0, REPO_ROOT)
  from configs import codec as codec_config  # pylint: disable=g-import-not-at-top
  truth = GroundTruthSource(GroundTruthConfig(num_atoms=64, dim=16, k_true=3))
  acts = np.concatenate([np.asarray(truth.sample(s, 256)[0]) for s in range(8)])
  np.save(tmp_path / "acts.npy", acts)
  raw = configuration.override(codec_config.get_config("source=array,smoke"), {
      "source.array.path": str(tmp_path / "acts.npy"), "source.array.layer": "blocks.0.hook_mlp_out",
      "sae.num_latents": 64, "sae.k": 3, "sae.aux_k": 8, "squeezer.k": 4, "squeezer.aux_k": 4,
      "squeezer_k_grid": (2, 4), "analysis.enabled": False, "tax_width_factors": ()})
  cfg = train.parse_codec_config(raw)
  workdir = str(tmp_path / "run")
  result = train.run_codec(cfg, workdir)
  assert result.source.width == 16 and "array acts.npy: 2048 rows x 16 units" in result.outputs["sae"]["source"]
  assert saelens.load(os.path.join(workdir, "saelens", "k3_seed0")).metadata["hook_name"] == "blocks.0.hook_mlp_out"
  np.save(tmp_path / "moved.npy", acts)
  moved = train.parse_codec_config(configuration.override(raw, {"source.array.path": str(tmp_path / "moved.npy")}))
  assert train.sae_training_config(moved, train.make_source(moved.source).identity) == train.sae_training_config(
      cfg, result.source.identity)
  np.save(tmp_path / "acts.npy", acts[::-1].copy())
  with pytest.raises(WorkdirError, match="source_identity"):
    train.run_codec(cfg, workdir)
