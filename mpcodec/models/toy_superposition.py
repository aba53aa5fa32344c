"""Toy Models of Superposition (Elhage et al. 2022): tied-weight ReLU autoencoders of sparse features.

Two variants of an n-feature, m-dimension model with one weight matrix W (m x n) whose column W_i is
feature i's embedding, and an output bias b (n,):

- "relu_output": x' = ReLU(WᵀW x + b)             (the hidden space has no privileged basis);
- "relu_hidden": h = ReLU(W x), x' = ReLU(Wᵀh + b)  (a ReLU on the hidden layer privileges its basis,
  so it makes sense to ask how many features each hidden neuron carries).

Plain functions on a parameter dict {"W": (m, n), "b": (n,)}, so a training run is a pure function that
vmaps over seeds and hyperparameters. Initialisation follows the paper's code: W Xavier-normal
(std = sqrt(2 / (m + n))), b = 0.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Variant = Literal["relu_output", "relu_hidden"]
VARIANTS: tuple[str, ...] = ("relu_output", "relu_hidden")


def init_params(key: jax.Array, num_features: int, hidden_dim: int) -> dict[str, jax.Array]:
  """Returns {"W": (m, n) Xavier-normal with std sqrt(2 / (m + n)), "b": (n,) zeros}."""
  std = (2.0 / (num_features + hidden_dim)) ** 0.5
  weights_MxN = std * jax.random.normal(key, (hidden_dim, num_features), dtype=jnp.float32)
  return {"W": weights_MxN, "b": jnp.zeros((num_features,), jnp.float32)}


def apply(params: dict[str, jax.Array], x_BxN: jax.Array, variant: Variant = "relu_output"
          ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Reconstructs features: returns (x'_BxN, {"hidden": h_BxM}).

  relu_output: h = W x, x' = ReLU(Wᵀh + b); relu_hidden: h = ReLU(W x), x' = ReLU(Wᵀh + b).
  """
  weights_MxN, bias_N = params["W"], params["b"]
  hidden_BxM = x_BxN @ weights_MxN.T
  if variant == "relu_hidden":
    hidden_BxM = jax.nn.relu(hidden_BxM)
  elif variant != "relu_output":
    raise ValueError(f"unknown toy-model variant {variant!r}; expected one of {VARIANTS}")
  return jax.nn.relu(hidden_BxM @ weights_MxN + bias_N), {"hidden": hidden_BxM}
