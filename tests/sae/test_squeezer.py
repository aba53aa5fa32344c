"""The Squeezer on a small case: its metrics against numpy recomputations from its reconstructions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core import configuration
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import squeezer
from mpcodec.studies.codec import pipeline as train
from mpcodec.studies.codec.sources import GroundTruthConfig, GroundTruthSource
from mpcodec.core.optim import OptimConfig


@pytest.fixture(scope="module")
def squeezed():
  source = GroundTruthSource(GroundTruthConfig(num_atoms=48, dim=12, k_true=3, noise_std=0.01))
  sae_cfg = sae.SAEConfig(num_latents=48, k=3, aux_k=8, dead_tokens_threshold=2000,
                          optim=OptimConfig(learning_rate=1e-2, warmup_steps=10, schedule="cosine"))
  loop = train.LoopConfig(steps=200, batch_size=128, chunk_steps=200, init_batches=1, eval_batches=2)
  states, _ = train.train_sae(sae_cfg, loop, source, seed=0, num_seeds=2)
  sae_final = train.folded_sae_states(states)
  sae_metrics = train.evaluate_sae(sae_final, sae_cfg, source, loop, 0.1)
  sq_cfg = configuration.parse(squeezer.SqueezerConfig, {"k": 4, "aux_k": 4}).as_sae_config(source.width)
  sq_loop = train.LoopConfig(steps=100, batch_size=128, chunk_steps=100, init_batches=1, eval_batches=2)
  sq_states, history = train.train_squeezer(sq_cfg, sae_final, sae_cfg, sq_loop, source, 0, 2)
  live = sae_metrics["firing_counts"] > 0
  metrics = train.evaluate_squeezer(sq_states, sae_final, sae_cfg, sq_cfg, source, sq_loop, live)
  return source, sae_cfg, sae_final, sq_cfg, sq_states, metrics, history, live


def test_num_neurons_defaults_to_layer_width_and_k_is_checked():
  assert squeezer.SqueezerConfig().as_sae_config(768).num_latents == 768
  with pytest.raises(configuration.ConfigError, match=r"config\.k: k=64 must be <= num_neurons=32"):
    configuration.parse(squeezer.SqueezerConfig, {"num_neurons": 32, "k": 64})


def test_squeezer_metrics_match_numpy(squeezed):
  source, sae_cfg, sae_final, sq_cfg, sq_states, metrics, history, live = squeezed
  assert history["loss"][-1].max() < history["loss"][0].min()  # it learns something
  errors = {"latent": 0.0, "squeezed": 0.0, "sae": 0.0}
  xs, zs, neuron_counts = [], [], 0
  reconstructions = jax.jit(jax.vmap(lambda s, a, x: squeezer.reconstructions(s, a, x, sae_cfg, sq_cfg),
                                     in_axes=(0, 0, None)))
  for i in range(2):
    x = jnp.asarray(next(source.batches(128, 2 * 10 ** 8 + i)))
    out = reconstructions(sq_states, sae_final, x)
    out = jax.tree.map(lambda a: np.asarray(a, np.float64), out)
    xn = np.asarray(x, np.float64)
    errors["latent"] += ((out["latents"] - out["latents_hat"]) ** 2).sum(axis=(1, 2))
    errors["squeezed"] += ((xn - out["x_hat_squeezed"]) ** 2).sum(axis=(1, 2))
    errors["sae"] += ((xn - out["x_hat_sae"]) ** 2).sum(axis=(1, 2))
    xs.append(xn)
    zs.append(out["latents"])
    neuron_counts = neuron_counts + (out["neurons"] != 0).sum(axis=1)
  x_all, z_all = np.concatenate(xs), np.concatenate(zs, axis=1)
  x_var = ((x_all - x_all.mean(0)) ** 2).sum()
  z_var = ((z_all - z_all.mean(1, keepdims=True)) ** 2).sum(axis=(1, 2))
  np.testing.assert_allclose(metrics["latent_fvu"], errors["latent"] / z_var, rtol=1e-4)
  np.testing.assert_allclose(metrics["activation_fvu_through_squeezer"], errors["squeezed"] / x_var, rtol=1e-4)
  np.testing.assert_allclose(metrics["faithfulness_ratio"], errors["squeezed"] / errors["sae"], rtol=1e-4)
  np.testing.assert_allclose(metrics["dead_neuron_fraction"], (neuron_counts == 0).mean(-1))
  # Every live SAE latent is assigned to exactly one synthetic neuron.
  np.testing.assert_array_equal(metrics["features_per_neuron"].sum(-1), live.sum(-1))
  assert np.all(np.isfinite(metrics["faithfulness_ratio"])) and np.all(metrics["faithfulness_ratio"] > 0)


def test_squeezer_latents_are_the_sae_codes(squeezed):
  source, sae_cfg, sae_final, _, _, _, _, _ = squeezed
  x = source.batch_fn(16)(7)
  state = jax.tree.map(lambda a: a[0], sae_final)
  z, x_hat = jax.jit(lambda state, x: (squeezer.latent_vector(state, x, sae_cfg),
                                        sae.apply(state, x, sae_cfg)[0]))(state, x)
  z = np.asarray(z)
  assert np.all(np.count_nonzero(z, axis=1) <= 3) and np.all(z >= 0)
  np.testing.assert_allclose(z @ np.asarray(state["params"]["w_dec_NxD"]) + np.asarray(state["params"]["b_dec_D"]),
                             x_hat, rtol=1e-4, atol=1e-5)
