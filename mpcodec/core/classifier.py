"""Pure training steps of a classifier on an in-memory dataset, written for one seed.

Every function here trains ONE seed; `jax.vmap` over a leading seed axis gives a sweep. The minibatch of
step t is drawn from `fold_in(order_key, t)`: when the order key is shared by all seeds (not vmapped)
the gather and the first matmul's input are computed once for the whole sweep and the first layer runs
as one wide matmul; with one order key per seed (vmapped) every seed sees its own data order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mpcodec.core import losses

State = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ClassifierSteps:
  """The pure functions of one classifier run (single seed).

  init(key, example_x) -> state; fresh_optimizer(params) -> state;
  run_steps(state, order_key, start_step, x_NxD, y_N, num_steps) -> (state, loss per step);
  evaluate(params, x_NxD, y_N) -> (loss, accuracy).
  """

  model: nn.Module
  optimizer: optax.GradientTransformation
  batch_size: int

  def init(self, key: jax.Array, example_x: jax.Array) -> State:
    params = self.model.init(key, example_x[:1])["params"]
    return self.fresh_optimizer(params)

  def fresh_optimizer(self, params: Any) -> State:
    return {"params": params, "opt_state": self.optimizer.init(params)}

  def loss_fn(self, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    logits, _ = self.model.apply({"params": params}, x)
    return losses.cross_entropy(logits, y)

  def train_step(self, state: State, x: jax.Array, y: jax.Array) -> tuple[State, jax.Array]:
    loss, grads = jax.value_and_grad(self.loss_fn)(state["params"], x, y)
    updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state}, loss

  def batch_indices(self, order_key: jax.Array, step: jax.Array, num_examples: int) -> jax.Array:
    """Indices of step `step`'s minibatch, drawn uniformly with replacement."""
    return jax.random.randint(jax.random.fold_in(order_key, step), (self.batch_size,), 0, num_examples)

  def run_steps(self, state: State, order_key: jax.Array, start_step: jax.Array, x_NxD: jax.Array,
                y_N: jax.Array, num_steps: int) -> tuple[State, jax.Array]:
    """Runs steps start_step .. start_step + num_steps - 1 under lax.scan; returns the loss of each."""

    def body(carry, step):
      idx = self.batch_indices(order_key, step, x_NxD.shape[0])
      return self.train_step(carry, x_NxD[idx], y_N[idx])

    steps = start_step + jnp.arange(num_steps)
    return jax.lax.scan(body, state, steps)

  def evaluate(self, params: Any, x_NxD: jax.Array, y_N: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits, _ = self.model.apply({"params": params}, x_NxD)
    return losses.cross_entropy(logits, y_N), losses.accuracy(logits, y_N)


def vmapped(fn: Callable, shared: tuple[bool, ...]) -> Callable:
  """`jax.vmap(fn)` over the leading seed axis of every argument not marked shared."""
  return jax.vmap(fn, in_axes=tuple(None if s else 0 for s in shared))
