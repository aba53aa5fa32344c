"""Top-K / BatchTopK SAE: dictionary recovery, sparse = dense gradients, selection, folding, config errors."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from mpcodec.core import configuration
from mpcodec.sae import autoencoder as sae
from mpcodec.studies.codec import pipeline as train
from mpcodec.studies.codec.sources import GroundTruthConfig, GroundTruthSource
from mpcodec.core.optim import OptimConfig

RECOVERY_SEEDS = 3


@pytest.fixture(scope="module")
def recovery_run():
  """512 atoms in 128 dims, 8 active per token, noise 0.01; SAE 512 latents, k=8, 3 seeds vmapped."""
  source = GroundTruthSource(GroundTruthConfig(num_atoms=512, dim=128, k_true=8, noise_std=0.01, seed=0))
  cfg = sae.SAEConfig(num_latents=512, k=8, aux_k=32, dead_tokens_threshold=20_000,
                      optim=OptimConfig(learning_rate=1e-2, warmup_steps=50, schedule="cosine"))
  loop = train.LoopConfig(steps=600, batch_size=512, chunk_steps=300, init_batches=2)
  states, history = train.train_sae(cfg, loop, source, seed=0, num_seeds=RECOVERY_SEEDS)
  return source, cfg, states, history


def test_topk_sae_recovers_known_dictionary_on_every_seed(recovery_run):
  source, _, states, _ = recovery_run
  true_NxD = np.asarray(source.dictionary_NxD)
  for seed in range(RECOVERY_SEEDS):
    learned = np.asarray(states["params"]["w_dec_NxD"][seed])
    learned = learned / np.linalg.norm(learned, axis=1, keepdims=True)
    mmcs = float(np.mean(np.max(true_NxD @ learned.T, axis=1)))
    assert mmcs >= 0.95, f"seed {seed}: mean max cosine similarity {mmcs:.4f} < 0.95"


def test_decoder_rows_stay_unit_norm(recovery_run):
  _, _, states, history = recovery_run
  norms = np.linalg.norm(np.asarray(states["params"]["w_dec_NxD"]), axis=-1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-5)
  assert np.all(np.isfinite(history["loss"]))
  assert history["loss"].shape == (600, RECOVERY_SEEDS)
  np.testing.assert_allclose(history["l0"][-1], 8.0, atol=0.05)  # k active (ReLU zeros are rare).


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_sparse_decoder_gradients_equal_dense_reference(activation):
  cfg = sae.SAEConfig(num_latents=64, k=4, aux_k=8, activation=activation)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(16, 12)), jnp.float32)
  params = jax.jit(lambda key: sae.init_params(key, 12, cfg, jnp.mean(x, 0)))(jax.random.PRNGKey(1))
  params["b_enc_N"] = jnp.asarray(0.1 * rng.normal(size=64), jnp.float32)
  dead = jnp.arange(64) % 3 == 0
  value_and_grad = lambda c: jax.jit(jax.value_and_grad(lambda p: sae.loss_fn(p, x, 4, dead, c)[0]))(params)
  sparse_loss, sparse_grads = value_and_grad(cfg)
  dense_loss, dense_grads = value_and_grad(dataclasses.replace(cfg, decoder="dense"))
  np.testing.assert_allclose(sparse_loss, dense_loss, rtol=1e-5)
  for name in params:
    np.testing.assert_allclose(sparse_grads[name], dense_grads[name], atol=1e-5, err_msg=name)
    assert np.any(np.asarray(sparse_grads[name]) != 0), name


def _straightforward_loss(params, x, k, dead, aux_k, aux_coef):
  """The plain formulation, written here: dense pre-activations, top-k mask, dense decoder, AuxK."""
  pre = (x - params["b_dec_D"]) @ params["w_enc_NxD"].T + params["b_enc_N"]
  ranks = jnp.argsort(jnp.argsort(-jax.lax.stop_gradient(pre), axis=-1, stable=True), axis=-1, stable=True)
  acts = jnp.where(ranks < k, jax.nn.relu(pre), 0.0)
  x_hat = acts @ params["w_dec_NxD"] + params["b_dec_D"]
  fvu = lambda t, p: jnp.sum((t - p) ** 2) / jnp.sum((t - t.mean(0)) ** 2)
  residual = jax.lax.stop_gradient(x - x_hat)
  dead_pre = jnp.where(dead, jax.lax.stop_gradient(pre), -jnp.inf)
  dead_ranks = jnp.argsort(jnp.argsort(-dead_pre, axis=-1, stable=True), axis=-1, stable=True)
  aux_acts = jnp.where((dead_ranks < aux_k) & dead, jax.nn.relu(pre), 0.0)
  return fvu(x, x_hat) + aux_coef * fvu(residual, aux_acts @ params["w_dec_NxD"])


def test_optimised_gradient_equals_autodiff_of_the_straightforward_loss():
  """Sparse path (custom backward passes, vmapped over a k grid and seeds) = plain autodiff."""
  n, d, k_max = 48, 10, 5
  cfg = sae.SAEConfig(num_latents=n, k_grid=(3, k_max), aux_k=6)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(24, d)), jnp.float32)
  w_dec = rng.normal(size=(4, n, d))
  params = {"w_dec_NxD": w_dec / np.linalg.norm(w_dec, axis=-1, keepdims=True),
            "w_enc_NxD": w_dec + 0.1 * rng.normal(size=(4, n, d)),
            "b_enc_N": 0.1 * rng.normal(size=(4, n)), "b_dec_D": 0.1 * rng.normal(size=(4, d))}
  params = {name: jnp.asarray(value, jnp.float32) for name, value in params.items()}
  ks = jnp.asarray([3, 3, k_max, k_max])
  dead = jnp.arange(n) % 4 == 1
  optimised = jax.jit(jax.vmap(jax.grad(lambda p, k: sae.loss_fn(p, x, k, dead, cfg)[0])))(params, ks)
  reference = jax.jit(jax.vmap(jax.grad(lambda p, k: _straightforward_loss(p, x, k, dead, 6, cfg.aux_coef))))(
      params, ks)
  for name in params:
    np.testing.assert_allclose(optimised[name], reference[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert np.all(np.any(np.asarray(optimised[name]).reshape(4, -1) != 0, axis=-1)), name


def _stable_top(values, count):
  """Indices of the `count` largest values, ties broken toward the lower index (numpy reference)."""
  return np.argsort(-values, kind="stable")[:count]


def test_batch_topk_keeps_exactly_k_times_batch_with_ties():
  batch, n, k = 8, 32, 3
  # Positive values on a coarse grid: many ties straddle the cut.
  pre = jnp.asarray(np.random.default_rng(0).integers(1, 5, size=(batch, n)).astype(np.float32))
  codes = sae.batch_topk_select(pre, k, k)
  dense = np.asarray(sae.dense_codes(codes, batch, n))
  assert np.count_nonzero(dense) == k * batch
  expected = np.zeros(batch * n, bool)
  expected[_stable_top(np.asarray(pre).reshape(-1), k * batch)] = True
  np.testing.assert_array_equal(dense.reshape(-1) != 0, expected)
  again = np.asarray(sae.dense_codes(sae.batch_topk_select(pre, k, k), batch, n))
  np.testing.assert_array_equal(dense, again)


def test_topk_with_traced_k_below_k_max_and_ties():
  pre = jnp.asarray(np.random.default_rng(1).integers(1, 4, size=(5, 20)).astype(np.float32))
  select = jax.jit(lambda p, k: sae.dense_codes(sae.topk_select(p, k, 6), 5, 20))
  for k in (2, 6):
    dense = np.asarray(select(pre, k))
    assert np.all(np.count_nonzero(dense, axis=1) == k)
    for row in range(5):
      np.testing.assert_array_equal(np.flatnonzero(dense[row]), np.sort(_stable_top(np.asarray(pre[row]), k)))


def test_folded_weights_reproduce_trained_sae_on_raw_inputs():
  cfg = sae.SAEConfig(num_latents=32, k=3, aux_k=4, input_norm="dim")
  raw = jnp.asarray(7.0 * np.random.default_rng(0).normal(size=(64, 10)) + 3.0, jnp.float32)
  state = jax.jit(lambda key: sae.init_state(key, raw, 3, cfg, 10))(jax.random.PRNGKey(1))
  state, _ = jax.jit(lambda s: sae.train_step(s, raw, cfg, 10))(state)
  scale = state["input_scale"]
  np.testing.assert_allclose(np.mean(np.sum(np.square(np.asarray(raw * scale)), -1)), 10.0, rtol=1e-5)
  reconstruct = jax.jit(lambda p, x: sae.reconstruct(p, x, 3, cfg)[0])
  x_hat_scaled = reconstruct(state["params"], raw * scale)
  folded, _ = sae.fold_input_scale(state["params"], scale)
  x_hat_raw = reconstruct(folded, raw)
  np.testing.assert_allclose(x_hat_raw, x_hat_scaled / scale, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(folded["w_dec_NxD"]), axis=-1), 1.0, atol=1e-5)


def test_tied_init_and_mean_bias():
  cfg = sae.SAEConfig(num_latents=16, k=2, aux_k=4, b_dec_init="mean", input_norm="none")
  x = jnp.asarray(np.random.default_rng(0).normal(size=(50, 6)) + 2.0, jnp.float32)
  state = jax.jit(lambda key: sae.init_state(key, x, 2, cfg, 10))(jax.random.PRNGKey(1))
  np.testing.assert_array_equal(state["params"]["w_enc_NxD"], state["params"]["w_dec_NxD"])
  np.testing.assert_allclose(state["params"]["b_dec_D"], np.mean(np.asarray(x), 0), rtol=1e-5)


def test_geometric_median_matches_scipy_minimum():
  points = np.random.default_rng(2).normal(size=(40, 3)).astype(np.float32) ** 3
  median = np.asarray(sae.geometric_median(jnp.asarray(points), 200))
  reference = scipy.optimize.minimize(lambda m: np.linalg.norm(points - m, axis=1).sum(),
                                      points.mean(0), method="Nelder-Mead",
                                      options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20000}).x
  np.testing.assert_allclose(median, reference, atol=1e-3)


def test_aux_loss_is_zero_without_dead_latents_and_trains_dead_ones():
  cfg = sae.SAEConfig(num_latents=32, k=2, aux_k=4)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(20, 8)), jnp.float32)
  params = jax.jit(lambda key: sae.init_params(key, 8, cfg, jnp.zeros(8)))(jax.random.PRNGKey(1))
  aux_loss = jax.jit(lambda p, dead: sae.loss_fn(p, x, 2, dead, cfg)[1]["aux_loss"])
  assert float(aux_loss(params, jnp.zeros(32, bool))) == 0.0
  dead = jnp.arange(32) >= 16
  assert float(aux_loss(params, dead)) > 0.0
  grads = jax.jit(jax.grad(aux_loss))(params, dead)
  row_grad = np.linalg.norm(np.asarray(grads["w_dec_NxD"]), axis=-1)
  assert np.all(row_grad[:16] == 0) and np.any(row_grad[16:] > 0)


@pytest.mark.parametrize("key, values", [("k", dict(k=600)), ("k_grid[1]", dict(k_grid=(8, 513))),
                                          ("aux_k", dict(aux_k=1000))])
def test_config_errors_name_the_key(key, values):
  raw = configuration.to_dict(sae.SAEConfig(num_latents=512))
  raw.update(values)
  with pytest.raises(configuration.ConfigError, match=re.escape(f"config.{key}") + ".*num_latents=512"):
    configuration.parse(sae.SAEConfig, raw)


def test_batch_topk_inference_threshold_tracks_smallest_kept_activation():
  """The threshold is the EMA (first value taken as is) of the smallest kept activation per batch, read
  off an independent numpy selection; thresholded inference and its folding to raw units match numpy."""
  cfg = sae.SAEConfig(num_latents=48, k=3, aux_k=0, activation="batchtopk", threshold_decay=0.7,
                      b_dec_init="mean", optim=OptimConfig(learning_rate=1e-2, warmup_steps=0))
  rng = np.random.default_rng(3)
  batches = rng.normal(size=(4, 20, 10)).astype(np.float32) * 2.0 + 0.5
  state = jax.jit(lambda key: sae.init_state(key, jnp.asarray(batches[0]), cfg.k, cfg, 4))(
      jax.random.PRNGKey(2))
  step = jax.jit(lambda s, x: sae.train_step(s, x, cfg, 4))
  expected = None
  for batch in batches:
    p = {name: np.asarray(v, np.float64) for name, v in state["params"].items()}
    x = batch.astype(np.float64) * float(state["input_scale"])
    pre = (x - p["b_dec_D"]) @ p["w_enc_NxD"].T + p["b_enc_N"]
    kept = np.sort(pre.reshape(-1))[::-1][:cfg.k * batch.shape[0]]
    smallest = kept[kept > 0].min()
    expected = smallest if expected is None else 0.7 * expected + 0.3 * smallest
    state, _ = step(state, jnp.asarray(batch))
    np.testing.assert_allclose(float(state["threshold"]), expected, rtol=2e-4)

  threshold, scale = state["threshold"], state["input_scale"]
  raw = jnp.asarray(batches[0])
  dense = np.asarray(sae.encode_with_threshold(state["params"], raw * scale, threshold))
  pre = np.asarray(sae.pre_activations(state["params"], raw * scale))
  np.testing.assert_allclose(dense, np.where(pre > float(threshold), pre, 0.0), rtol=1e-6)
  assert 0 < np.count_nonzero(dense) < dense.size
  folded, folded_threshold = sae.fold_input_scale(state["params"], scale, threshold)
  np.testing.assert_allclose(np.asarray(sae.encode_with_threshold(folded, raw, folded_threshold)),
                             dense / float(scale), rtol=1e-4, atol=1e-6)
