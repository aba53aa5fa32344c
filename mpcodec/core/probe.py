"""A linear probe: L2-regularised multinomial logistic regression, trained full-batch with L-BFGS.

The objective is strictly convex, so the fit is deterministic and does not depend on the start point:
  L(W, b) = mean_i CE(softmax(x̃_i W + b), y_i) + ½·λ·‖W‖²_F,   x̃ = (x − μ) / σ,
with μ, σ the per-feature mean and standard deviation of the training rows (σ floored, so a constant
feature is harmless). It is the model of scikit-learn's LogisticRegression(C = 1 / (N·λ)) on x̃.
The probe is linear in x, so it also reads steered inputs and gives a logit direction to steer along.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from mpcodec.core.errors import DataError

Probe = dict[str, jax.Array]   # w_DxC, b_C, mean_D, scale_D


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """Knobs of a linear probe: L2 strength λ, L-BFGS iterations, and whether to standardise features."""

  l2: float = 1e-3
  steps: int = 100
  standardize: bool = True

  def checks(self):
    yield "l2", self.l2 > 0, f"must be > 0 (it makes the optimum unique), got {self.l2}"
    yield "steps", self.steps >= 1, f"must be >= 1, got {self.steps}"


def logits(probe: Probe, x_NxD: jax.Array) -> jax.Array:
  """Class logits (x − μ)/σ · W + b, shape (N, C)."""
  return ((x_NxD - probe["mean_D"]) / probe["scale_D"]) @ probe["w_DxC"] + probe["b_C"]


def margin_direction(probe: Probe, target: int) -> jax.Array:
  """The input direction that raises the target's logit against the mean of the others:
  ∂(z_t − mean_{c≠t} z_c)/∂x = (W[:, t] − mean_{c≠t} W[:, c]) / σ."""
  w_DxC = probe["w_DxC"]
  others = (jnp.sum(w_DxC, axis=1) - w_DxC[:, target]) / (w_DxC.shape[1] - 1)
  return (w_DxC[:, target] - others) / probe["scale_D"]


def accuracy(probe: Probe, x_NxD: jax.Array, y_N: jax.Array) -> jax.Array:
  """Fraction of rows whose largest logit is their label."""
  return jnp.mean(jnp.argmax(logits(probe, x_NxD), axis=-1) == y_N)


def _objective(params: dict[str, jax.Array], x_NxD: jax.Array, onehot_NxC: jax.Array, l2: float
               ) -> jax.Array:
  z_NxC = x_NxD @ params["w_DxC"] + params["b_C"]
  cross_entropy = -jnp.mean(jnp.sum(onehot_NxC * jax.nn.log_softmax(z_NxC), axis=-1))
  return cross_entropy + 0.5 * l2 * jnp.sum(jnp.square(params["w_DxC"]))


@functools.partial(jax.jit, static_argnames=("num_classes", "cfg"))
def _fit(x_NxD: jax.Array, y_N: jax.Array, weights_N: jax.Array, num_classes: int, cfg: ProbeConfig
         ) -> tuple[Probe, jax.Array]:
  weights_N = weights_N / jnp.sum(weights_N)
  if cfg.standardize:
    mean_D = weights_N @ x_NxD
    scale_D = jnp.maximum(jnp.sqrt(weights_N @ jnp.square(x_NxD - mean_D)), 1e-6)
  else:
    mean_D, scale_D = jnp.zeros(x_NxD.shape[1]), jnp.ones(x_NxD.shape[1])
  x_std = (x_NxD - mean_D) / scale_D
  # Rows carry weights (a row of weight 0 is left out), so several splits of one matrix vmap as one fit.
  onehot_NxC = jax.nn.one_hot(y_N, num_classes) * weights_N[:, None] * x_NxD.shape[0]
  loss = functools.partial(_objective, x_NxD=x_std, onehot_NxC=onehot_NxC, l2=cfg.l2)
  params = {"w_DxC": jnp.zeros((x_NxD.shape[1], num_classes)), "b_C": jnp.zeros(num_classes)}
  optimizer = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = optimizer.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(params, updates), state), value

  (params, _), values = jax.lax.scan(step, (params, optimizer.init(params)), None, length=cfg.steps)
  return dict(params, mean_D=mean_D, scale_D=scale_D), values


def fit(x_NxD: Any, y_N: Any, num_classes: int, cfg: ProbeConfig = ProbeConfig(),
        weights_N: Any | None = None) -> Probe:
  """Trains the probe on rows x with integer labels y in [0, num_classes); optional per-row weights
  (0 leaves a row out). Raises DataError for empty data, labels out of range or a missing class."""
  x_NxD = jnp.asarray(x_NxD, jnp.float32)
  y_N = jnp.asarray(y_N, jnp.int32)
  if x_NxD.ndim != 2 or y_N.shape != (x_NxD.shape[0],) or x_NxD.shape[0] == 0:
    raise DataError(f"probe: expected rows (N, D) and N labels, got {x_NxD.shape} and {y_N.shape}")
  weights_N = jnp.ones(y_N.shape, jnp.float32) if weights_N is None else jnp.asarray(weights_N, jnp.float32)
  if int(jnp.min(y_N)) < 0 or int(jnp.max(y_N)) >= num_classes:
    raise DataError(f"probe: labels must lie in [0, {num_classes}), got "
                    f"{int(jnp.min(y_N))}..{int(jnp.max(y_N))}")
  present = jnp.zeros(num_classes).at[y_N].add(weights_N) > 0
  if not bool(jnp.all(present)):
    missing = [int(c) for c in jnp.flatnonzero(~present)]
    raise DataError(f"probe: class(es) {missing} have no training rows")
  probe, _ = _fit(x_NxD, y_N, weights_N, num_classes, cfg)
  return probe


def fit_batched(x_NxD: Any, y_N: Any, weights_SxN: Any, num_classes: int, cfg: ProbeConfig = ProbeConfig()
                ) -> Probe:
  """One probe per row of `weights_SxN` (a split or seed axis), vmapped as one program; no checks."""
  return jax.vmap(lambda w: _fit(jnp.asarray(x_NxD, jnp.float32), jnp.asarray(y_N, jnp.int32), w,
                                 num_classes, cfg)[0])(jnp.asarray(weights_SxN, jnp.float32))
