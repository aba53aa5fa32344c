"""Steering metrics against closed forms, plain numpy and a planted linear model."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import scipy.stats

from mpcodec.metrics import steering


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_norm_matched_delta_has_exactly_the_requested_norm_and_direction():
  acts = _rng().normal(size=(3, 5, 16)).astype(np.float32) * _rng(1).uniform(0.1, 10, size=(3, 5, 1))
  direction = _rng(2).normal(size=16).astype(np.float32) * 37.0
  mask = np.ones((3, 5), np.float32)
  mask[1, 3:] = 0.0
  for strength in (0.5, 2.0, 5.0):
    delta = np.asarray(steering.norm_matched_delta(direction, acts, strength, mask))
    expected_norm = strength * np.linalg.norm(acts, axis=-1) * mask
    np.testing.assert_allclose(np.linalg.norm(delta, axis=-1), expected_norm, rtol=1e-5)
    real = mask > 0
    cos = (delta @ direction)[real] / (np.linalg.norm(delta, axis=-1)[real] * np.linalg.norm(direction))
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)
  np.testing.assert_array_equal(steering.norm_matched_delta(np.zeros(16), acts, 3.0), 0.0)


def test_theme_vector_and_difference_of_means_match_numpy():
  decoder = _rng().normal(size=(10, 6))
  members = np.zeros(10, bool)
  members[[1, 4, 7]] = True
  np.testing.assert_allclose(steering.theme_vector(decoder, members), decoder[[1, 4, 7]].sum(0), rtol=1e-6)
  acts = _rng(1).normal(size=(40, 6))
  target = _rng(2).random(40) < 0.3
  np.testing.assert_allclose(steering.difference_of_means(acts, target),
                             acts[target].mean(0) - acts[~target].mean(0), rtol=1e-5, atol=1e-6)


def test_kl_divergence_matches_scipy_and_is_zero_for_identical_distributions():
  p_logits = _rng().normal(size=(7, 4)) * 3
  q_logits = _rng(1).normal(size=(7, 4)) * 3
  p, q = scipy.special.softmax(p_logits, 1), scipy.special.softmax(q_logits, 1)
  expected = scipy.stats.entropy(p, q, axis=1)
  np.testing.assert_allclose(steering.kl_divergence(p_logits, q_logits), expected, rtol=1e-5)
  np.testing.assert_allclose(steering.kl_divergence(p_logits, p_logits), 0.0, atol=1e-6)
  # A shift of every logit by the same amount leaves the distribution, so the KL stays 0.
  np.testing.assert_allclose(steering.kl_divergence(p_logits, p_logits + 5.0), 0.0, atol=1e-5)
  np.testing.assert_allclose(steering.mean_class_probability(q_logits, 2), q[:, 2].mean(), rtol=1e-6)


def test_cosine_drift_closed_forms():
  e = _rng().normal(size=(5, 8))
  np.testing.assert_allclose(steering.cosine_drift(e, 3.0 * e), 0.0, atol=1e-6)
  np.testing.assert_allclose(steering.cosine_drift(e, -e), 2.0, atol=1e-6)
  other = _rng(1).normal(size=(5, 8))
  expected = 1 - np.sum(e * other, 1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(other, axis=1))
  np.testing.assert_allclose(steering.cosine_drift(e, other), expected, rtol=1e-5)


def test_population_snr_closed_form_and_square_root_law():
  u = np.zeros(6)
  u[0] = 1.0
  w = np.zeros(6)
  w[3] = 1.0
  delta = np.stack([2.0 * u + 0.5 * w, 4.0 * u - 1.5 * w])
  np.testing.assert_allclose(steering.population_snr(delta, 10 * u), 6.0 / 2.0, rtol=1e-6)
  # Planted atoms d_i = s·u + n_i with independent off-target parts: the sum of N has SNR ≈ √N·s/σ.
  dim, s, sigma = 2000, 0.3, 1.0
  rng = _rng(3)
  target = np.zeros(dim)
  target[0] = 1.0
  atoms = s * target + sigma * rng.normal(size=(64, dim)) / np.sqrt(dim)
  atoms[:, 0] = s
  counts = np.array([1, 2, 4, 8, 16, 32, 64])
  snr = np.array([float(steering.population_snr(atoms[:n].sum(0)[None], target)) for n in counts])
  np.testing.assert_allclose(snr, np.sqrt(counts) * s / sigma, rtol=0.1)
  np.testing.assert_allclose(steering.log_log_slope(counts.astype(float), snr), 0.5, atol=0.03)
  # Norm matching rescales a vector and leaves its SNR as it was.
  np.testing.assert_allclose(steering.population_snr(7.0 * delta, u), steering.population_snr(delta, u),
                             rtol=1e-6)


def test_log_log_slope_matches_numpy_polyfit():
  x = np.array([1.0, 2.0, 5.0, 9.0])
  y = np.array([2.0, 2.5, 6.0, 7.0])
  np.testing.assert_allclose(steering.log_log_slope(x, y), np.polyfit(np.log(x), np.log(y), 1)[0], rtol=1e-5)
  np.testing.assert_allclose(steering.log_log_slope(x, 3 * x ** 1.7), 1.7, rtol=1e-5)


def test_adding_a_class_direction_to_a_planted_linear_model_raises_that_class_probability():
  """Model: logits = M x with orthonormal rows; steering along M[t] adds α‖x‖ to logit t only."""
  dim, num_classes, target = 12, 4, 2
  q, _ = np.linalg.qr(_rng().normal(size=(dim, num_classes)))
  m_CxD = q.T.astype(np.float32)
  x_BxD = _rng(1).normal(size=(20, dim)).astype(np.float32)
  clean = x_BxD @ m_CxD.T
  strengths = jnp.asarray([0.0, 0.5, 1.0, 2.0, 5.0])

  def steered_logits(strength):
    return (x_BxD + steering.norm_matched_delta(m_CxD[target], x_BxD, strength)) @ m_CxD.T

  logits = jax.vmap(steered_logits)(strengths)
  p_target = np.asarray(jax.vmap(lambda z: steering.mean_class_probability(z, target))(logits))
  assert np.all(np.diff(p_target) > 0)
  bump = np.zeros((len(strengths), 20, num_classes))
  bump[..., target] = np.asarray(strengths)[:, None] * np.linalg.norm(x_BxD, axis=1)
  expected = scipy.special.softmax(clean + bump, -1)[..., target].mean(-1)
  np.testing.assert_allclose(p_target, expected, rtol=1e-5)
  kl = np.asarray(jax.vmap(lambda z: jnp.mean(steering.kl_divergence(clean, z)))(logits))
  assert kl[0] < 1e-6 and np.all(np.diff(kl) > 0)
  # Steering along a direction the model does not read changes nothing.
  null_direction = np.linalg.svd(m_CxD)[2][-1]
  untouched = (x_BxD + steering.norm_matched_delta(null_direction, x_BxD, 5.0)) @ m_CxD.T
  np.testing.assert_allclose(untouched, clean, atol=1e-4)


def test_random_directions_of_the_same_norm_barely_steer_a_planted_model_where_its_theme_does():
  """Planted probe: logits = g·W x with orthonormal rows W (4 classes in 1,024 dims), ‖x‖ ≈ 1. A theme
  vector near W[t] adds about g·α to logit t; a random unit direction v adds g·α·(W[t]·v) with
  W[t]·v ~ N(0, 1/D), so its effect averages out over directions. Norm matching gives both the same
  delta norm at every token."""
  dim, gain, target, strength = 1024, 8.0, 1, 1.0
  rng = _rng(4)
  w_CxD = np.linalg.qr(rng.normal(size=(dim, 4)))[0].T
  x_BxD = rng.normal(size=(64, dim)) / np.sqrt(dim)
  theme = w_CxD[target] + 0.3 * rng.normal(size=dim) / np.sqrt(dim)
  randoms = rng.normal(size=(32, dim))
  clean_p = float(steering.mean_class_probability(gain * x_BxD @ w_CxD.T, target))

  def log_ratio(direction):
    delta = np.asarray(steering.norm_matched_delta(direction, x_BxD, strength))
    np.testing.assert_allclose(np.linalg.norm(delta, axis=1), strength * np.linalg.norm(x_BxD, axis=1), rtol=1e-5)
    return np.log(float(steering.mean_class_probability(gain * (x_BxD + delta) @ w_CxD.T, target)) / clean_p)

  random_effects = np.asarray([log_ratio(v) for v in randoms])
  theme_effect = log_ratio(theme)
  assert abs(random_effects.mean()) < 3 * random_effects.std(ddof=1) / np.sqrt(len(randoms)) + 0.02
  assert abs(random_effects.mean()) < 0.1 and theme_effect > 1.0
  assert theme_effect > random_effects.max()
