"""Tests of the toy superposition models, their training, and the known results (pentagon, dense)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import toy_superposition as toy_config
from mpcodec.core.configuration import ConfigError, parse
from mpcodec.models import toy_superposition as toy_model
from mpcodec.studies.toy_superposition import config as toy_study_config
from mpcodec.studies.toy_superposition import run as toy_run
from mpcodec.studies.toy_superposition import experiment as toy_train
from mpcodec.core import seeds

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_apply_matches_numpy_for_both_variants():
  params = toy_model.init_params(jax.random.key(0), 6, 3)
  params["b"] = jnp.linspace(-0.3, 0.2, 6)
  x = np.asarray(jax.random.uniform(jax.random.key(1), (8, 6)))
  weights, bias = np.asarray(params["W"]), np.asarray(params["b"])
  out, acts = toy_model.apply(params, x, "relu_output")
  np.testing.assert_allclose(out, np.maximum(x @ weights.T @ weights + bias, 0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(acts["hidden"], x @ weights.T, rtol=1e-5, atol=1e-6)
  out, acts = toy_model.apply(params, x, "relu_hidden")
  hidden = np.maximum(x @ weights.T, 0)
  np.testing.assert_allclose(out, np.maximum(hidden @ weights + bias, 0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(acts["hidden"], hidden, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="variant"):
    toy_model.apply(params, x, "relu_everywhere")


def test_init_is_xavier_normal():
  params = toy_model.init_params(jax.random.key(2), 300, 100)
  assert params["W"].shape == (100, 300) and params["b"].shape == (300,)
  assert abs(float(params["W"].std()) - np.sqrt(2 / 400)) < 0.002
  assert float(jnp.abs(params["b"]).max()) == 0.0


def test_importance_weighted_mse_matches_numpy():
  x = np.asarray(jax.random.uniform(jax.random.key(3), (16, 4)))
  x_hat = np.asarray(jax.random.uniform(jax.random.key(4), (16, 4)))
  importance = np.array([1.0, 0.5, 0.25, 2.0])
  expected = np.mean(np.sum(importance * (x - x_hat) ** 2, axis=1))
  np.testing.assert_allclose(toy_train.importance_weighted_mse(x_hat, x, importance), expected, rtol=1e-6)


def test_one_step_equals_manual_adam_step():
  cfg = parse(toy_train.ToyTrainConfig, dict(num_features=4, hidden_dim=2, num_steps=1, batch_size=32,
                                              history_every=1, num_restarts=1,
                                              optim=dict(learning_rate=0.1)))
  key = jax.random.key(5)
  params, history = jax.jit(toy_train.make_train(cfg))(key, jnp.float32(0.5), jnp.ones(4))
  # Reproduce the first (and only) restart by hand: Adam's first step moves each entry by -lr * sign(g).
  restart = jax.random.fold_in(key, 0)
  key_init = jax.random.fold_in(restart, seeds.purpose_id("init"))
  key_data = jax.random.fold_in(restart, seeds.purpose_id("data_order"))
  start = toy_model.init_params(key_init, 4, 2)
  from mpcodec.data.toy_features import sample_sparse_features
  x = sample_sparse_features(jax.random.fold_in(key_data, 0), 32, 4, 0.5)
  loss_fn = lambda p: toy_train.importance_weighted_mse(toy_model.apply(p, x)[0], x, jnp.ones(4))
  loss, grads = jax.value_and_grad(loss_fn)(start)
  np.testing.assert_allclose(history["loss"], [loss], rtol=1e-6)
  nonzero = np.abs(np.asarray(grads["W"])) > 1e-6
  np.testing.assert_allclose(np.asarray(params["W"])[nonzero],
                             (np.asarray(start["W"]) - 0.1 * np.sign(grads["W"]))[nonzero], rtol=1e-4)


def test_config_rejects_impossible_values_before_training():
  with pytest.raises(ConfigError, match=r"config\.train\.history_every"):
    parse(toy_train.ToySuperpositionConfig, dict(train=dict(num_steps=100, history_every=30)))
  with pytest.raises(ConfigError, match=r"config\.phase_diagram\.train\.num_features"):
    parse(toy_train.ToySuperpositionConfig, dict(phase_diagram=dict(train=dict(num_features=3))))
  with pytest.raises(ConfigError, match=r"config\.train\.optim\.learning_rate"):
    parse(toy_train.ToySuperpositionConfig, dict(train=dict(optim=dict(learning_rate=-1.0))))
  with pytest.raises(ConfigError, match=r"config\.privileged_basis\.train\.variant"):
    parse(toy_train.ToySuperpositionConfig,
          dict(privileged_basis=dict(train=dict(num_features=10, hidden_dim=5, variant="relu_output"))))
  with pytest.raises(ConfigError, match=r"config\.privileged_basis\.sparsities"):
    parse(toy_train.ToySuperpositionConfig, dict(privileged_basis=dict(sparsities=(0.9, 0.9))))
  with pytest.raises(ConfigError, match=r"config\.privileged_basis\.sparsities"):
    parse(toy_train.ToySuperpositionConfig, dict(privileged_basis=dict(sparsities=(0.0, 1.0))))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """The smoke config run end to end through the library call the launcher makes."""
  workdir = tmp_path_factory.mktemp("toy_superposition")
  cfg = parse(toy_train.ToySuperpositionConfig, toy_config.get_config("smoke"))
  results = toy_run.run_experiment(cfg, str(workdir))
  return cfg, results, workdir


def test_sparse_uniform_features_form_a_pentagon_on_every_seed(smoke_run):
  cfg, results, _ = smoke_run
  pentagon = results["pentagon"]
  dims = np.array(pentagon["feature_dimensionality"])
  gaps = np.array(pentagon["angle_gaps_degrees"])
  assert dims.shape == (cfg.num_seeds, 5)
  np.testing.assert_array_less(np.abs(dims - 0.4), 0.05)
  np.testing.assert_array_less(np.abs(gaps - 72.0), 5.0)
  # Every feature is represented with (nearly) equal norm.
  norms = np.array(pentagon["feature_norms"])
  np.testing.assert_array_less(0.5, norms)
  assert pentagon["num_seeds_regular_polygon"] == cfg.num_seeds


def test_dense_features_represent_only_the_m_most_important(smoke_run):
  cfg, results, _ = smoke_run
  norms = np.array(results["dense"]["feature_norms"])
  represented = norms > 0.5
  np.testing.assert_array_equal(represented.sum(1), 2)
  np.testing.assert_array_equal(represented, np.tile([True, True, False, False, False], (cfg.num_seeds, 1)))


def test_smoke_run_writes_its_outputs(smoke_run):
  cfg, results, workdir = smoke_run
  for name in ("metrics/toy_superposition.json", "metrics/phase_diagram.csv", "plots/phase_diagram.png",
               "metrics/privileged_basis.csv", "plots/features_per_neuron.png", "report.md"):
    assert (workdir / name).stat().st_size > 0, name
  saved = json.loads((workdir / "metrics/toy_superposition.json").read_text())
  cells = len(cfg.phase_diagram.feature_densities) * len(cfg.phase_diagram.relative_importances)
  assert len(saved["phase_diagram"]["rows"]) == cells
  rows = (workdir / "metrics/phase_diagram.csv").read_text().strip().splitlines()
  assert len(rows) == cells + 1 and rows[0].startswith("feature_density,")
  # The dense, unimportant feature 2 is dropped; the dense, important one takes the dimension.
  by_cell = {(r["feature_density"], r["relative_importance"]): r["majority_class"]
             for r in saved["phase_diagram"]["rows"]}
  assert by_cell[(1.0, 0.3)] == "not represented"
  assert by_cell[(1.0, 3.0)] == "dedicated dimension"
  report = (workdir / "report.md").read_text()
  assert f"{cfg.num_seeds} of {cfg.num_seeds}" in report
  sparsities = cfg.privileged_basis.sparsities
  assert [row["sparsity"] for row in saved["privileged_basis"]["rows"]] == list(sparsities)
  rows = (workdir / "metrics/privileged_basis.csv").read_text().strip().splitlines()
  assert len(rows) == len(sparsities) + 1 and rows[0].startswith("sparsity,feature_density,")
  assert "## Privileged basis" in report


def test_privileged_basis_dense_cell_matches_the_closed_form(smoke_run):
  """Dense features on m ReLU neurons: the m most important features, one neuron each.

  With S = 0 every feature fires, uniform on [0, 1] (variance 1/12). Keeping m features exactly and
  predicting each dropped one by its mean through the bias costs Σ_{i >= m} I_i / 12, and dropping the
  least important ones is cheapest. Reconstructing m nonnegative features exactly through m ReLU
  neurons (no hidden bias) needs W restricted to them to be orthogonal with nonnegative entries, i.e. a
  permutation: every neuron carries exactly one feature (features per neuron = 1).
  """
  cfg, results, _ = smoke_run
  settings = cfg.privileged_basis
  n, m = settings.train.num_features, settings.train.hidden_dim
  privileged = results["privileged_basis"]
  dense = int(np.argmin(settings.sparsities))
  importance = settings.importance_decay ** np.arange(n)
  expected_loss = importance[m:].sum() / 12.0
  # The logged loss is a mean over the last history block (300 steps x 128 samples): its standard error
  # is ~0.2% of the loss here, so 1% is about five standard errors.
  np.testing.assert_allclose(privileged["final_loss"][dense], expected_loss, rtol=0.01)
  np.testing.assert_array_equal(np.array(privileged["represented"][dense]),
                                np.tile(np.arange(n) < m, (cfg.num_seeds, 1)))
  per_neuron = np.array(privileged["features_per_neuron_by_neuron"][dense])
  assert per_neuron.shape == (cfg.num_seeds, m)
  np.testing.assert_allclose(per_neuron, 1.0, atol=toy_study_config.MONOSEMANTIC_TOLERANCE)
  assert privileged["num_seeds_densest_monosemantic_top_m"] == cfg.num_seeds


def test_privileged_basis_sparse_features_share_neurons(smoke_run):
  """Sparse features: more features than neurons are represented, so neurons turn polysemantic."""
  cfg, results, _ = smoke_run
  settings = cfg.privileged_basis
  privileged = results["privileged_basis"]
  dense, sparse = int(np.argmin(settings.sparsities)), int(np.argmax(settings.sparsities))
  np.testing.assert_array_less(settings.train.hidden_dim, privileged["represented_features"][sparse])
  features_per_neuron = np.array(privileged["features_per_neuron"])
  np.testing.assert_array_less(features_per_neuron[dense], features_per_neuron[sparse])
  trend = privileged["features_per_neuron_trend"]
  assert trend["num_seeds_higher_when_sparsest"] == cfg.num_seeds


def test_launch_stops_on_bad_config_naming_the_key(tmp_path):
  command = [sys.executable, "-m", "launch.toy_superposition",
             "--config=configs/toy_superposition.py:smoke", f"--workdir={tmp_path}",
             "--config.train.num_restarts=0"]
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode != 0
  assert "config.train.num_restarts" in result.stderr
  assert not (tmp_path / "metrics").exists()
