"""Top-K and BatchTopK sparse autoencoders (SAE) as pure functions on a plain dict of arrays.

Architecture (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"):
  pre = (x·s - b_dec) W_encᵀ + b_enc,  a = ReLU(TopK(pre)),  x̂·s = a W_dec + b_dec,
where s is a fixed input scale (see `estimate_input_scale`). Weights are stored row-per-latent:
`w_enc_NxD` (encoder rows) and `w_dec_NxD` (decoder rows = dictionary atoms, kept at unit norm).

Speed: only the forward encoder matmul (B×D)·(D×N), which chooses the latents, is dense; it runs once
per step under stop_gradient and AuxK reuses it. The decoder sums the k active rows, and hand-written
backward passes (`mpcodec.sae.sparse_ops`) add both weight gradients into the k active rows per token,
so no dense (B, N) code or gradient is ever formed. `decoder="dense"` keeps the straightforward
implementation (dense masked code times the full decoder, plain autodiff) as the reference.

k may be a traced scalar: selection always takes the static `k_max` largest entries and masks ranks
>= k, so one compiled program trains a grid of k values (and seeds) under vmap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from mpcodec.sae import shapes, sparse_ops
from mpcodec.sae.selection import Codes, batch_topk_select, dense_codes, topk_select
from mpcodec.core.optim import OptimConfig, make_optimizer

Params = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class SAEConfig:
  """Knobs of one SAE (the input width comes from the activation source).

  Attributes:
    num_latents: N, the dictionary size.
    k: active latents per token (TopK) or mean active per token (BatchTopK).
    k_grid: if non-empty, k values trained side by side in one program (overrides `k`).
    activation: "topk" (k per token) or "batchtopk" (k·batch across the whole batch; Bussmann et al. 2024).
    decoder: "sparse" (gather the k active rows) or "dense" (plain matmul; reference and benchmark).
    b_dec_init: decoder bias start: "geometric_median" (Weiszfeld), "mean" or "zeros" of a data sample.
    geometric_median_iters: Weiszfeld iterations.
    input_norm: scale inputs so E||x·s||² = D ("dim") or 1 ("unit"), or leave them ("none"); the scale
      is folded back into the weights by `fold_input_scale` before saving.
    aux_k: dead latents used by the AuxK loss per token (0 = AuxK off).
    aux_coef: weight α of the AuxK loss (Gao et al. 2024 use 1/32).
    dead_tokens_threshold: a latent that has not fired for this many tokens counts as dead.
    threshold_decay: EMA decay of the BatchTopK inference threshold (mean smallest kept activation).
    optim: optimizer (Adam with warm-up and decay by default).
  """

  num_latents: int = 512
  k: int = 8
  k_grid: tuple[int, ...] = ()
  activation: Literal["topk", "batchtopk"] = "topk"
  decoder: Literal["sparse", "dense"] = "sparse"
  b_dec_init: Literal["geometric_median", "mean", "zeros"] = "geometric_median"
  geometric_median_iters: int = 30
  input_norm: Literal["dim", "unit", "none"] = "dim"
  aux_k: int = 64
  aux_coef: float = 1.0 / 32.0
  dead_tokens_threshold: int = 100_000
  threshold_decay: float = 0.99
  optim: OptimConfig = OptimConfig(learning_rate=1e-3, warmup_steps=100, schedule="cosine",
                                   grad_clip_norm=1.0)

  @property
  def k_values(self) -> tuple[int, ...]:
    return self.k_grid or (self.k,)

  @property
  def k_max(self) -> int:
    return max(self.k_values)

  def checks(self) -> Iterator[tuple[str, bool, str]]:
    n = self.num_latents
    yield "num_latents", n >= 1, f"must be >= 1, got {n}"
    yield "k", 1 <= self.k <= n, f"k={self.k} must lie in [1, num_latents={n}]"
    for i, k in enumerate(self.k_grid):
      yield f"k_grid[{i}]", 1 <= k <= n, f"k={k} must lie in [1, num_latents={n}]"
    yield "aux_k", 0 <= self.aux_k <= n, f"aux_k={self.aux_k} must lie in [0, num_latents={n}]"
    yield "aux_coef", self.aux_coef >= 0, f"must be >= 0, got {self.aux_coef}"
    yield "dead_tokens_threshold", self.dead_tokens_threshold >= 1, (
        f"must be >= 1, got {self.dead_tokens_threshold}")
    yield "geometric_median_iters", self.geometric_median_iters >= 0, (
        f"must be >= 0, got {self.geometric_median_iters}")
    yield "threshold_decay", 0.0 <= self.threshold_decay < 1.0, (
        f"must lie in [0, 1), got {self.threshold_decay}")
    yield from ((f"optim.{key}", ok, msg) for key, ok, msg in self.optim.checks())


# ----------------------------------------------------------------------------- initialisation


def estimate_input_scale(sample_BxD: jax.Array, input_norm: str) -> jax.Array:
  """Scale s with mean ||s·x||² = D ("dim"), 1 ("unit") or s = 1 ("none") on a data sample."""
  if input_norm == "none":
    return jnp.ones((), jnp.float32)
  mean_sq_norm = jnp.mean(jnp.sum(jnp.square(sample_BxD.astype(jnp.float32)), axis=-1))
  target = sample_BxD.shape[-1] if input_norm == "dim" else 1.0
  return jnp.sqrt(target / jnp.maximum(mean_sq_norm, 1e-30))


def geometric_median(points_BxD: jax.Array, iters: int, eps: float = 1e-8) -> jax.Array:
  """Weiszfeld iterations for argmin_m Σ_b ||x_b - m||, started at the mean.

  m ← Σ_b w_b x_b / Σ_b w_b with w_b = 1 / max(||x_b - m||, eps). Reference: Weiszfeld 1937.
  """
  points = points_BxD.astype(jnp.float32)

  def step(median_D, _):
    weights_B = 1.0 / jnp.maximum(jnp.linalg.norm(points - median_D, axis=-1), eps)
    return (weights_B @ points) / jnp.sum(weights_B), None

  median_D, _ = jax.lax.scan(step, jnp.mean(points, axis=0), None, length=iters)
  return median_D


def initial_decoder_bias(sample_BxD: jax.Array, cfg: SAEConfig) -> jax.Array:
  """b_dec at init from a (scaled) data sample: geometric median, mean or zeros."""
  if cfg.b_dec_init == "geometric_median":
    return geometric_median(sample_BxD, cfg.geometric_median_iters)
  if cfg.b_dec_init == "mean":
    return jnp.mean(sample_BxD.astype(jnp.float32), axis=0)
  return jnp.zeros(sample_BxD.shape[-1], jnp.float32)


def init_params(key: jax.Array, input_dim: int, cfg: SAEConfig, b_dec_D: jax.Array) -> Params:
  """Tied initialisation: unit-norm Gaussian decoder rows, encoder = decoderᵀ, b_enc = 0."""
  w_dec_NxD = jax.random.normal(key, (cfg.num_latents, input_dim), jnp.float32)
  w_dec_NxD = normalize_rows(w_dec_NxD)
  return {
      "w_enc_NxD": w_dec_NxD,
      "b_enc_N": jnp.zeros(cfg.num_latents, jnp.float32),
      "w_dec_NxD": w_dec_NxD,
      "b_dec_D": jnp.asarray(b_dec_D, jnp.float32),
  }


def normalize_rows(w_NxD: jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm."""
  return w_NxD / jnp.maximum(jnp.linalg.norm(w_NxD, axis=-1, keepdims=True), 1e-12)


def remove_parallel_component(grad_NxD: jax.Array, w_NxD: jax.Array) -> jax.Array:
  """g_i ← g_i - (g_i·w_i) w_i for unit rows w_i: the step cannot change a row's norm to first order."""
  return grad_NxD - jnp.sum(grad_NxD * w_NxD, axis=-1, keepdims=True) * w_NxD


# ----------------------------------------------------------------------------- selection


def select(pre_BxN: jax.Array, k: jax.Array | int, cfg: SAEConfig) -> Codes:
  """Dispatches to Top-K or BatchTopK selection."""
  if cfg.activation == "batchtopk":
    return batch_topk_select(pre_BxN, k, cfg.k_max)
  return topk_select(pre_BxN, k, cfg.k_max)


# ----------------------------------------------------------------------------- forward


def pre_activations(params: Params, x_BxD: jax.Array) -> jax.Array:
  """pre = (x - b_dec) W_encᵀ + b_enc, shape (B, N)."""
  return (x_BxD - params["b_dec_D"]) @ params["w_enc_NxD"].T + params["b_enc_N"]


def _chunked(codes: Codes, batch: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  return tuple(a.reshape(-1, batch) for a in codes)


def codes_with_gradients(params: Params, x_BxD: jax.Array, pre_BxN: jax.Array, codes: Codes,
                         per_row: bool) -> Codes:
  """Codes whose values a_t = ReLU(pre_t) carry gradients to W_enc, b_enc and b_dec (sparse backward).

  `pre_BxN` holds the stopped-gradient pre-activations the codes were selected from; entries whose
  selected value is 0 (masked rank or ReLU) stay 0.
  """
  batch = x_BxD.shape[0]
  values_CxB, rows_CxB, cols_CxB = _chunked(codes, batch)
  pre_CxB = sparse_ops.selected_pre_activations(per_row, params["w_enc_NxD"], params["b_enc_N"],
                                                params["b_dec_D"], x_BxD, pre_BxN, rows_CxB, cols_CxB)
  values_CxB = jnp.where(values_CxB > 0, jax.nn.relu(pre_CxB), 0.0)
  return codes._replace(values_T=values_CxB.reshape(-1))


def encode(params: Params, x_BxD: jax.Array, k: jax.Array | int, cfg: SAEConfig) -> Codes:
  """Sparse codes of x whose values carry gradients to W_enc, b_enc and b_dec (sparse backward)."""
  return _sparse_encode(params, x_BxD, k, cfg)[0]


def _sparse_encode(params: Params, x_BxD: jax.Array, k, cfg: SAEConfig) -> tuple[Codes, jax.Array]:
  """(codes with gradients, stopped-gradient pre-activations); the dense encoder matmul runs once."""
  pre_BxN = jax.lax.stop_gradient(pre_activations(params, x_BxD))
  codes = select(pre_BxN, k, cfg)
  return codes_with_gradients(params, x_BxD, pre_BxN, codes, cfg.activation == "topk"), pre_BxN


def decode(params: Params, codes: Codes, batch: int, cfg: SAEConfig, with_bias: bool = True) -> jax.Array:
  """x̂ = Σ_t a_t W_dec[col_t] (+ b_dec), summed per row from the active decoder rows only."""
  x_hat_BxD = sparse_ops.sparse_decode(cfg.activation == "topk", batch, *_chunked(codes, batch),
                                       params["w_dec_NxD"])
  return x_hat_BxD + params["b_dec_D"] if with_bias else x_hat_BxD


def reconstruct(params: Params, x_BxD: jax.Array, k, cfg: SAEConfig) -> tuple[jax.Array, Codes]:
  """(x̂, codes) through the sparse path."""
  codes = encode(params, x_BxD, k, cfg)
  return decode(params, codes, x_BxD.shape[0], cfg), codes


def encode_with_threshold(params: Params, x_BxD: jax.Array, threshold: jax.Array) -> jax.Array:
  """BatchTopK inference without batch coupling: a = pre·[pre > threshold] (dense (B, N))."""
  pre_BxN = pre_activations(params, x_BxD)
  return jnp.where(pre_BxN > threshold, pre_BxN, 0.0)


def _dense_forward(params: Params, x_BxD: jax.Array, k, cfg: SAEConfig
                   ) -> tuple[jax.Array, Codes, jax.Array]:
  """Straightforward reference: dense masked activations times the full decoder, plain autodiff."""
  pre_BxN = pre_activations(params, x_BxD)
  codes = select(jax.lax.stop_gradient(pre_BxN), k, cfg)
  mask_BxN = dense_codes(codes._replace(values_T=(codes.values_T > 0).astype(pre_BxN.dtype)),
                         *pre_BxN.shape) > 0
  acts_BxN = jnp.where(mask_BxN, jax.nn.relu(pre_BxN), 0.0)
  return acts_BxN @ params["w_dec_NxD"] + params["b_dec_D"], codes, pre_BxN


def _forward(params: Params, x_BxD: jax.Array, k, cfg: SAEConfig) -> tuple[jax.Array, Codes, jax.Array]:
  """(x̂, codes, pre-activations) through the decoder implementation chosen by `cfg.decoder`."""
  if cfg.decoder == "dense":
    return _dense_forward(params, x_BxD, k, cfg)
  codes, pre_BxN = _sparse_encode(params, x_BxD, k, cfg)
  return decode(params, codes, x_BxD.shape[0], cfg), codes, pre_BxN


def forward(params: Params, x_BxD: jax.Array, k, cfg: SAEConfig) -> tuple[jax.Array, Codes]:
  """(x̂, codes) through the decoder implementation chosen by `cfg.decoder`."""
  return _forward(params, x_BxD, k, cfg)[:2]


def apply(state: dict[str, Any], x_BxD: jax.Array, cfg: SAEConfig) -> tuple[jax.Array, Codes]:
  """(x̂ in raw units, codes in scaled units) of a train state on raw inputs; no gradient needed."""
  check_batch("x_BxD", x_BxD, state)
  scale = state["input_scale"]
  x_hat_BxD, codes = forward(state["params"], x_BxD * scale, state["k"], cfg)
  return x_hat_BxD / scale, codes


def check_batch(name: str, x_BxD: Any, state: dict[str, Any]) -> None:
  """ValueError naming `name` unless it is a (B, D) batch of the state's input width D."""
  width = shapes.check_shape("state['params']['w_dec_NxD']", state["params"]["w_dec_NxD"], ("N", "D"))[1]
  shapes.check_shape(name, x_BxD, ("B", "D"), {"D": width}, "the SAE's input width")


def aux_reconstruction(params: Params, x_BxD: jax.Array, pre_BxN: jax.Array, dead_N: jax.Array,
                       cfg: SAEConfig) -> jax.Array:
  """ê = Σ a_j W_dec[j] over the aux_k largest pre-activations among dead latents (no b_dec).

  `pre_BxN` are the pre-activations of the main forward pass (reused: no second encoder matmul).
  """
  dead_pre_BxN = jnp.where(dead_N, jax.lax.stop_gradient(pre_BxN), -jnp.inf)
  values_BxA, cols_BxA = jax.lax.top_k(dead_pre_BxN, cfg.aux_k)
  if cfg.decoder == "dense":
    mask_BxN = jnp.zeros(pre_BxN.shape, bool).at[jnp.arange(x_BxD.shape[0])[:, None], cols_BxA].set(
        jnp.isfinite(values_BxA))
    return jnp.where(mask_BxN, jax.nn.relu(pre_BxN), 0.0) @ params["w_dec_NxD"]
  batch = x_BxD.shape[0]
  rows_AxB = jnp.broadcast_to(jnp.arange(batch), (cfg.aux_k, batch))
  # 1 marks a selected dead latent; -inf entries (fewer dead latents than aux_k) stay inactive.
  selected_AxB = jnp.isfinite(values_BxA.T).astype(pre_BxN.dtype)
  codes = Codes(selected_AxB.reshape(-1), rows_AxB.reshape(-1), cols_BxA.T.reshape(-1))
  codes = codes_with_gradients(params, x_BxD, jax.lax.stop_gradient(pre_BxN), codes, per_row=True)
  return sparse_ops.sparse_decode(True, batch, *_chunked(codes, batch), params["w_dec_NxD"])


# ----------------------------------------------------------------------------- loss


def normalized_mse(target_BxD: jax.Array, prediction_BxD: jax.Array) -> jax.Array:
  """Σ||t - p||² / Σ||t - mean(t)||² over the batch (the FVU of one batch)."""
  error = jnp.sum(jnp.square(target_BxD - prediction_BxD))
  baseline = jnp.sum(jnp.square(target_BxD - jnp.mean(target_BxD, axis=0)))
  return error / jnp.maximum(baseline, 1e-30)


def loss_fn(params: Params, x_BxD: jax.Array, k, dead_N: jax.Array, cfg: SAEConfig
            ) -> tuple[jax.Array, dict[str, Any]]:
  """Normalized MSE of x̂ + aux_coef · normalized MSE of the AuxK reconstruction of the residual.

  Both terms are normalized by the batch variance of their target, as in Gao et al. 2024. The AuxK term
  (Gao et al. 2024, appendix A.2) reconstructs the stopped-gradient residual x - x̂ with the top aux_k
  dead latents; it is 0 while no latent is dead (and then not computed).
  """
  batch = x_BxD.shape[0]
  x_hat_BxD, codes, pre_BxN = _forward(params, x_BxD, k, cfg)
  mse = jnp.sum(jnp.square(x_BxD - x_hat_BxD)) / batch
  reconstruction_loss = normalized_mse(x_BxD, x_hat_BxD)
  aux_loss = jnp.zeros((), jnp.float32)
  if cfg.aux_k > 0 and cfg.aux_coef > 0:
    residual_BxD = jax.lax.stop_gradient(x_BxD - x_hat_BxD)

    def aux_term(params):
      return normalized_mse(residual_BxD, aux_reconstruction(params, x_BxD, pre_BxN, dead_N, cfg))

    aux_loss = jax.lax.cond(jnp.any(dead_N), aux_term, lambda _: jnp.zeros((), jnp.float32), params)
  loss = reconstruction_loss + cfg.aux_coef * aux_loss
  stats = {"mse": mse, "fvu": reconstruction_loss, "aux_loss": aux_loss, "x_hat": x_hat_BxD, "codes": codes}
  return loss, stats


# ----------------------------------------------------------------------------- training step


def make_optimizer_for(cfg: SAEConfig, total_steps: int) -> optax.GradientTransformation:
  """Adam (by default) with linear warm-up and cosine decay, from `cfg.optim`."""
  return make_optimizer(cfg.optim, total_steps)


def init_state(key: jax.Array, sample_BxD: jax.Array, k, cfg: SAEConfig, total_steps: int
               ) -> dict[str, Any]:
  """Train state of one run: params, Adam state, firing clocks, k, input scale, BatchTopK threshold.

  `sample_BxD` is a sample of raw activations; it sets the input scale and the decoder bias.
  """
  shapes.check_key("key", key)
  shapes.check_shape("sample_BxD", sample_BxD, ("B", "D"))
  shapes.check_scalar("k", k)
  scale = estimate_input_scale(sample_BxD, cfg.input_norm)
  b_dec_D = initial_decoder_bias(sample_BxD * scale, cfg)
  params = init_params(key, sample_BxD.shape[-1], cfg, b_dec_D)
  return {
      "params": params,
      "opt_state": make_optimizer_for(cfg, total_steps).init(params),
      "tokens_since_fired_N": jnp.zeros(cfg.num_latents, jnp.int32),
      "k": jnp.asarray(k, jnp.int32),
      "input_scale": jnp.asarray(scale, jnp.float32),
      "threshold": jnp.zeros((), jnp.float32),
      "step": jnp.zeros((), jnp.int32),
  }


def train_step(state: dict[str, Any], x_BxD: jax.Array, cfg: SAEConfig, total_steps: int
               ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
  """One Adam step on a raw batch; decoder rows are renormalised afterwards. Returns (state, metrics)."""
  check_batch("x_BxD", x_BxD, state)
  batch = x_BxD.shape[0]
  x_BxD = x_BxD * state["input_scale"]
  params = state["params"]
  dead_N = state["tokens_since_fired_N"] >= cfg.dead_tokens_threshold
  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x_BxD, state["k"], dead_N, cfg)
  grads = dict(grads, w_dec_NxD=remove_parallel_component(grads["w_dec_NxD"], params["w_dec_NxD"]))
  updates, opt_state = make_optimizer_for(cfg, total_steps).update(grads, state["opt_state"], params)
  params = optax.apply_updates(params, updates)
  params = dict(params, w_dec_NxD=normalize_rows(params["w_dec_NxD"]))

  codes = stats["codes"]
  active_T = codes.values_T > 0
  fired_N = jnp.zeros(cfg.num_latents, jnp.int32).at[codes.cols_T].max(active_T.astype(jnp.int32)) > 0
  tokens_since_fired_N = jnp.where(fired_N, 0, state["tokens_since_fired_N"] + batch)
  smallest_kept = jnp.min(jnp.where(active_T, codes.values_T, jnp.inf))
  smallest_kept = jnp.where(jnp.isfinite(smallest_kept), smallest_kept, state["threshold"])
  threshold = jnp.where(state["step"] == 0, smallest_kept,
                        cfg.threshold_decay * state["threshold"] + (1 - cfg.threshold_decay) * smallest_kept)
  new_state = dict(state, params=params, opt_state=opt_state, tokens_since_fired_N=tokens_since_fired_N,
                   threshold=threshold, step=state["step"] + 1)
  metrics = {
      "loss": loss,
      "mse": stats["mse"],
      "aux_loss": stats["aux_loss"],
      "fvu": stats["fvu"],
      "l0": jnp.sum(active_T) / batch,
      "dead_fraction": jnp.mean(dead_N),
      "batch_has_nan": ~jnp.all(jnp.isfinite(x_BxD)),
  }
  return new_state, metrics


# ----------------------------------------------------------------------------- saving


def fold_input_scale(params: Params, scale: jax.Array, threshold: jax.Array | None = None
                     ) -> tuple[Params, jax.Array | None]:
  """Weights that act on raw activations: with a' = a/s, b_enc/s, b_dec/s; w_enc, w_dec unchanged.

  TopK selection is invariant to the positive factor 1/s, and x̂ = a' W_dec + b_dec/s = (s·x)^/s, so the
  folded SAE reproduces the trained one on raw inputs while its decoder rows stay unit-norm.
  """
  inv = 1.0 / scale
  folded = dict(params, b_enc_N=params["b_enc_N"] * inv, b_dec_D=params["b_dec_D"] * inv)
  return folded, (None if threshold is None else threshold * inv)
