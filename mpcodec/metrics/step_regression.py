"""Forward selection of level steps in a trend-plus-steps regression with AR(1) errors (exact GLS).

Model: y = [1, B] beta + sum_j h_j step(tau_j) + u, u AR(1) with coefficient phi and innovation SD sigma,
B a smooth trend basis (M, K). Under the Prais-Winsten transform W ((Wx)_0 = sqrt(1 - phi^2) x_0,
(Wx)_t = x_t - phi x_{t-1}) the errors are white, so ordinary least squares on W y, W X is the exact
Gaussian likelihood. The whitened step regressor w_tau = W step(tau) is 0 before tau, 1 at tau and
1 - phi after, so for every candidate tau at once, with Q an orthonormal basis of the current design and
e the current residual (both whitened, e orthogonal to Q):
  Q^T w_tau = Q_tau + (1 - phi) sum_{t > tau} Q_t,   e^T w_tau = e_tau + (1 - phi) sum_{t > tau} e_t,
  drop in RSS from adding step(tau) = (e^T w_tau)^2 / (||w_tau||^2 - ||Q^T w_tau||^2),
all from suffix sums in O(M (K + steps)). Each round adds the best step (a Gram-Schmidt column), refitting
the trend and every level jointly, and stops once the best drop (in units of sigma^2) is below the
threshold. It is binary segmentation with a global refit: the trend can never keep part of a found step.
Candidates keep `min_segment` measurements from each other and from both ends.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _whiten(x_NxMxC: jax.Array, phi_N: jax.Array) -> jax.Array:
  """Prais-Winsten transform along the measurement axis (axis 1)."""
  phi = phi_N.reshape((-1,) + (1,) * (x_NxMxC.ndim - 1))
  first = x_NxMxC[:, :1] * jnp.sqrt(1.0 - phi**2)
  return jnp.concatenate([first, x_NxMxC[:, 1:] - phi * x_NxMxC[:, :-1]], axis=1)


def _suffix_after(x_NxM: jax.Array) -> jax.Array:
  """sum_{t > tau} x_t for every tau along axis 1."""
  total = jnp.cumsum(x_NxM[:, ::-1], axis=1)[:, ::-1]
  return total - x_NxM


@functools.partial(jax.jit, static_argnames=("max_steps", "min_segment"))
def forward_steps(series_NxM, basis_MxK, phi_N, sigma_N, threshold_N, max_steps: int,
                  min_segment: int) -> tuple[jax.Array, jax.Array]:
  """Steps chosen by forward selection (see module docstring): (is_step (N, M) bool, scores (N, R)).

  series (N, M); basis (M, K) (a constant column is added); phi, sigma, threshold (N,). is_step is True
  where a new level starts. scores[:, r] is round r's best drop in RSS / sigma^2, recorded whether or
  not it was accepted (with threshold -inf every round accepts, which is how the penalty is calibrated);
  rounds after the first refusal accept nothing.
  """
  series_NxM = jnp.asarray(series_NxM, jnp.float32)
  num_series, num_measurements = series_NxM.shape
  phi_N, sigma_N, threshold_N = (jnp.broadcast_to(jnp.asarray(a, jnp.float32), (num_series,))
                                 for a in (phi_N, sigma_N, threshold_N))
  one_minus_phi = (1.0 - phi_N)[:, None]
  design_MxC = jnp.concatenate([jnp.ones((num_measurements, 1), jnp.float32), basis_MxK], axis=1)
  design = _whiten(jnp.broadcast_to(design_MxC, (num_series,) + design_MxC.shape), phi_N)
  trend_q, _ = jnp.linalg.qr(design)
  columns = jnp.concatenate(
      [trend_q, jnp.zeros((num_series, num_measurements, max_steps), jnp.float32)], axis=2)
  # Centred first (the constant column takes the mean anyway): a large offset would cost float32 digits.
  centred = series_NxM - jnp.mean(series_NxM, axis=1, keepdims=True)
  whitened = _whiten(centred, phi_N) / sigma_N[:, None]
  residual = whitened - jnp.einsum("nmc,nc->nm", trend_q, jnp.einsum("nmc,nm->nc", trend_q, whitened))
  index_M = jnp.arange(num_measurements)
  allowed = (index_M >= min_segment) & (index_M <= num_measurements - min_segment)
  allowed = jnp.broadcast_to(allowed, (num_series, num_measurements))
  step_norm = 1.0 + one_minus_phi**2 * (num_measurements - 1 - index_M)

  def projection(column_NxMxC):
    """Q_tau + (1 - phi) sum_{t > tau} Q_t: each column's inner product with every w_tau."""
    return column_NxMxC + one_minus_phi[..., None] * (
        jnp.cumsum(column_NxMxC[:, ::-1], 1)[:, ::-1] - column_NxMxC)

  # ||w_tau||^2 - ||Q^T w_tau||^2, kept up to date one new column at a time.
  leftover_init = step_norm - jnp.sum(projection(trend_q)**2, axis=2)

  def round_(carry, slot):
    columns, residual, leftover, allowed, active, is_step = carry
    numerator = residual + one_minus_phi * _suffix_after(residual)
    # A candidate almost inside the current design carries no new information (and float32 cancels).
    usable = allowed & (leftover > 1e-4 * step_norm)
    score = jnp.where(usable, numerator**2 / jnp.where(usable, leftover, 1.0), -1.0)
    best = jnp.argmax(score, axis=1)
    best_score = jnp.max(score, axis=1)
    accept = active & (best_score >= threshold_N) & (best_score >= 0)
    step = (index_M[None, :] >= best[:, None]).astype(jnp.float32)
    new = _whiten(step, phi_N)
    for _ in range(2):  # twice: classical Gram-Schmidt loses orthogonality in float32 otherwise
      new = new - jnp.einsum("nmc,nc->nm", columns, jnp.einsum("nmc,nm->nc", columns, new))
    new = new / jnp.sqrt(jnp.maximum(jnp.sum(new**2, axis=1, keepdims=True), 1e-12))
    new = jnp.where(accept[:, None], new, 0.0)
    columns = columns.at[:, :, slot].set(new)
    residual = residual - jnp.sum(residual * new, axis=1, keepdims=True) * new
    leftover = leftover - projection(new[..., None])[..., 0]**2
    near = jnp.abs(index_M[None, :] - best[:, None]) < min_segment
    allowed = allowed & ~(near & accept[:, None])
    is_step = is_step | ((index_M[None, :] == best[:, None]) & accept[:, None])
    return (columns, residual, leftover, allowed, accept, is_step), best_score

  is_step = jnp.zeros((num_series, num_measurements), bool)
  active = jnp.ones((num_series,), bool)
  slots = jnp.arange(trend_q.shape[2], trend_q.shape[2] + max_steps)
  (_, _, _, _, _, is_step), scores_RxN = jax.lax.scan(
      round_, (columns, residual, leftover_init, allowed, active, is_step), slots)
  return is_step, scores_RxN.T
