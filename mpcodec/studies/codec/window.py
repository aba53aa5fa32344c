"""The analyses' held-out window of the source and the codes of the SAE and the Squeezer on it, computed in
chunks of rows (one compiled program per chunk shape)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.sae import autoencoder as sae
from mpcodec.sae import squeezer
from mpcodec.studies.codec import streams
from mpcodec.studies.codec.sources import check_finite


@dataclasses.dataclass
class Window:
  """The held-out activations x (B, D) and, per token, where it came from (step, row)."""

  x_BxD: np.ndarray
  step_B: np.ndarray
  row_B: np.ndarray
  batch_size: int


def held_out_window(source: Any, cfg: Any) -> Window:
  """`num_tokens` held-out activations (whole batches), each batch checked for NaN/Inf."""
  num_batches = -(-cfg.num_tokens // cfg.batch_size)
  stream = source.batches(cfg.batch_size, streams.ANALYSIS_START)
  batches = []
  for i in range(num_batches):
    batch = np.asarray(next(stream), np.float32)
    check_finite(batch, i, "the analysis window, batch")
    batches.append(batch)
  step_B = np.repeat(streams.ANALYSIS_START + np.arange(num_batches), cfg.batch_size)
  row_B = np.tile(np.arange(cfg.batch_size), num_batches)
  return Window(np.concatenate(batches), step_B, row_B, cfg.batch_size)


def _in_chunks(fn, arrays: Sequence[np.ndarray], chunk: int) -> list[np.ndarray]:
  """fn over row chunks of the arrays, outputs concatenated on the host (bounded device memory)."""
  outs = None
  for start in range(0, arrays[0].shape[0], chunk):
    got = jax.device_get(fn(*(jnp.asarray(a[start:start + chunk]) for a in arrays)))
    outs = [[g] for g in got] if outs is None else [o + [g] for o, g in zip(outs, got)]
  return [np.concatenate(o) for o in outs]


@functools.partial(jax.jit, static_argnames="sae_cfg")
def _sae_chunk(sae_state, x_BxD, sae_cfg):
  x_hat_BxD, codes = sae.apply(sae_state, x_BxD, sae_cfg)
  # (B, k_max) values and latents: the dense (B, N) codes are rebuilt on the host, once per run.
  chunks = x_BxD.shape[0]
  return (codes.values_T.reshape(-1, chunks).T, codes.cols_T.reshape(-1, chunks).T, codes.rows_T.reshape(-1, chunks).T,
          x_hat_BxD)


@functools.partial(jax.jit, static_argnames=("sae_cfg", "squeezer_cfg"))
def _squeezer_chunk(state, sae_state, x_BxD, sae_cfg, squeezer_cfg):
  out = squeezer.reconstructions(state, sae_state, x_BxD, sae_cfg, squeezer_cfg)
  return out["neurons"], out["x_hat_squeezed"]


@dataclasses.dataclass
class SparseCodes:
  """An SAE run's codes on the window as (token, latent, value) triples, and x̂ of the SAE alone."""

  rows: np.ndarray
  cols: np.ndarray
  values: np.ndarray
  num_latents: int
  x_hat_BxD: np.ndarray

  @property
  def live_N(self) -> np.ndarray:
    return np.bincount(self.cols[self.values > 0], minlength=self.num_latents) > 0

  def dense(self) -> np.ndarray:
    codes_BxN = np.zeros((self.x_hat_BxD.shape[0], self.num_latents), np.float32)
    np.add.at(codes_BxN, (self.rows, self.cols), self.values)
    return codes_BxN


def sae_outputs(sae_state: dict, sae_cfg: sae.SAEConfig, x_BxD: np.ndarray, chunk: int) -> SparseCodes:
  """The codes and x̂ of a folded SAE state on raw activations, in row chunks."""
  values, cols, rows, x_hat_BxD = _in_chunks(lambda x: _sae_chunk(sae_state, x, sae_cfg), [x_BxD], chunk)
  # Rows are chunk-local: offset each chunk's rows by its first token.
  offsets = (np.arange(values.shape[0]) // chunk) * chunk
  return SparseCodes((rows + offsets[:, None]).ravel(), cols.ravel(), values.ravel(), sae_cfg.num_latents,
                     x_hat_BxD)


def squeezer_outputs(state: dict, sae_state: dict, sae_cfg: sae.SAEConfig, squeezer_cfg: sae.SAEConfig,
                     x_BxD: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
  """(neuron activations (B, M), x̂ through the Squeezer (B, D)) of one Squeezer run."""
  return tuple(_in_chunks(lambda x: _squeezer_chunk(state, sae_state, x, sae_cfg, squeezer_cfg), [x_BxD], chunk))


def take(tree: Any, index: int) -> Any:
  return jax.tree.map(lambda a: a[index], tree)
