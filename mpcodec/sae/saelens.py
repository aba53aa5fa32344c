"""SAELens interchange: save a trained SAE as a SAELens directory, and load such a directory back.

A SAELens (version 6) SAE directory holds
  cfg.json:                 d_in, d_sae, dtype, device, apply_b_dec_to_input, normalize_activations,
                            reshape_activations, architecture ("topk" with k, "jumprelu", "standard"),
                            metadata (sae_lens_version, hook_name, model_name, ...);
  sae_weights.safetensors:  W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in],
                            and for "jumprelu" threshold [d_sae].
Inference, with x' = x - b_dec when apply_b_dec_to_input (SAELens' default, and this project's SAE):
  pre = x' W_enc + b_enc
  topk:     a = ReLU(TopK_k(pre))            jumprelu: a = ReLU(pre)·[pre > θ]      standard: a = ReLU(pre)
  x̂ = a W_dec + b_dec.
This project stores encoder and decoder rows per latent (`w_enc_NxD`, `w_dec_NxD`), so W_enc is
`w_enc_NxD`ᵀ and W_dec is `w_dec_NxD`. A Top-K SAE is saved as "topk" with its k. A BatchTopK SAE has
no per-token k at inference: it is saved as "jumprelu" with its learned threshold broadcast to every
latent (the conversion SAELens itself applies to its BatchTopK SAEs); its pre > θ rule equals ours for
θ ≥ 0. The input scale of training is folded into the weights first (`fold_input_scale`), so the saved
SAE acts on raw activations (normalize_activations "none").
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpcodec.core import io
from mpcodec.core.errors import ActivationError, CheckpointError
from mpcodec.sae import autoencoder, selection

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
# The cfg.json layout written here is SAELens 6's; loaders older than 6.0 read another layout.
SAE_LENS_FORMAT_VERSION = "6.0.0"
ARCHITECTURES = ("topk", "jumprelu", "standard")
_SUPPORTED_DTYPES = ("float32", "float16", "bfloat16", "float64")


class SAELensFormatError(CheckpointError, ValueError):
  """A SAELens directory is missing files, fields or shapes, holds NaN weights, or uses a feature this
  loader lacks."""


def _safetensors():
  """safetensors.numpy, or an ImportError that says how to install it (the optional [lm] extra)."""
  try:
    from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("SAELens files need the safetensors package: pip install 'mpcodec[lm]' (or "
                      "pip install safetensors)") from None
  return safetensors_numpy


@dataclasses.dataclass(frozen=True, eq=False)
class SAELensSAE:
  """An SAE read from (or about to be written as) a SAELens directory, in this project's layout.

  `params` uses the names of `mpcodec.sae.autoencoder` (w_enc_NxD, b_enc_N, w_dec_NxD, b_dec_D);
  `threshold_N` is set for "jumprelu"; `k` for "topk".
  """

  params: dict[str, jax.Array]
  architecture: str
  k: int | None
  threshold_N: jax.Array | None
  apply_b_dec_to_input: bool
  metadata: dict[str, Any]
  cfg: dict[str, Any]

  @property
  def d_in(self) -> int:
    return int(self.params["w_dec_NxD"].shape[1])

  @property
  def d_sae(self) -> int:
    return int(self.params["w_dec_NxD"].shape[0])

  def check_input_width(self, width: int, layer: str) -> None:
    """Raises ActivationError when the layer's width is not the SAE's d_in."""
    if width != self.d_in:
      hook = self.metadata.get("hook_name")
      trained_on = f" (trained on {hook})" if hook else ""
      raise ActivationError(f"the SAE has d_in {self.d_in}{trained_on} but layer {layer!r} has width {width}")

  def pre_activations(self, x_BxD: jax.Array) -> jax.Array:
    """pre = (x - b_dec) W_enc + b_enc (or x W_enc + b_enc without apply_b_dec_to_input)."""
    shift_D = self.params["b_dec_D"] if self.apply_b_dec_to_input else 0.0
    return (x_BxD - shift_D) @ self.params["w_enc_NxD"].T + self.params["b_enc_N"]

  def encode(self, x_BxD: jax.Array) -> jax.Array:
    """Dense latent activations (B, d_sae) under the saved architecture (see the module docstring)."""
    pre_BxN = self.pre_activations(jnp.asarray(x_BxD, jnp.float32))
    if self.architecture == "topk":
      codes = selection.topk_select(pre_BxN, self.k, self.k)
      return selection.dense_codes(codes, pre_BxN.shape[0], self.d_sae)
    if self.architecture == "jumprelu":
      return jnp.where(pre_BxN > self.threshold_N, jax.nn.relu(pre_BxN), 0.0)
    return jax.nn.relu(pre_BxN)

  def decode(self, acts_BxN: jax.Array) -> jax.Array:
    """x̂ = a W_dec + b_dec."""
    return acts_BxN @ self.params["w_dec_NxD"] + self.params["b_dec_D"]


def from_state(state: Mapping[str, Any], cfg: autoencoder.SAEConfig, hook_name: str, model_name: str = "",
               extra_metadata: Mapping[str, Any] | None = None) -> SAELensSAE:
  """The SAELens form of one trained SAE state (params, k, input_scale, threshold as in the codec).

  The input scale is folded into the weights (a state already folded has scale 1). A "topk" SAE needs
  a concrete k; a BatchTopK one, its threshold.
  """
  params = {name: jnp.asarray(value, jnp.float32) for name, value in state["params"].items()}
  scale = jnp.asarray(state.get("input_scale", 1.0), jnp.float32)
  threshold = state.get("threshold")
  params, threshold = autoencoder.fold_input_scale(params, scale, None if threshold is None
                                                   else jnp.asarray(threshold, jnp.float32))
  metadata = {"sae_lens_version": SAE_LENS_FORMAT_VERSION, "sae_lens_training_version": None,
              "hook_name": hook_name, "hook_head_index": None, "model_name": model_name,
              "trained_with": "mpcodec", "trained_activation": cfg.activation,
              "trained_k": int(np.asarray(state["k"])), "num_latents": cfg.num_latents}
  metadata.update(extra_metadata or {})
  num_latents = params["w_dec_NxD"].shape[0]
  if cfg.activation == "batchtopk":
    if threshold is None:
      raise CheckpointError("a BatchTopK SAE needs its learned threshold to be saved for inference")
    threshold_N = jnp.full((num_latents,), threshold, jnp.float32)
    return SAELensSAE(params, "jumprelu", None, threshold_N, True, metadata, {})
  return SAELensSAE(params, "topk", int(np.asarray(state["k"])), None, True, metadata, {})


def to_cfg_dict(sae: SAELensSAE) -> dict[str, Any]:
  """cfg.json of the SAE in SAELens 6's layout."""
  cfg = {"d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
         "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": "none",
         "reshape_activations": "none", "metadata": dict(sae.metadata), "architecture": sae.architecture}
  if sae.architecture == "topk":
    cfg.update(k=int(sae.k), rescale_acts_by_decoder_norm=False)
  return cfg


def weight_tensors(sae: SAELensSAE) -> dict[str, np.ndarray]:
  """The tensors of sae_weights.safetensors (float32, SAELens' names and orientation)."""
  tensors = {
      "W_enc": np.ascontiguousarray(np.asarray(sae.params["w_enc_NxD"], np.float32).T),
      "b_enc": np.asarray(sae.params["b_enc_N"], np.float32),
      "W_dec": np.ascontiguousarray(np.asarray(sae.params["w_dec_NxD"], np.float32)),
      "b_dec": np.asarray(sae.params["b_dec_D"], np.float32),
  }
  if sae.architecture == "jumprelu":
    tensors["threshold"] = np.asarray(sae.threshold_N, np.float32)
  return tensors


def save(directory: str | os.PathLike, sae: SAELensSAE) -> str:
  """Writes cfg.json and sae_weights.safetensors (each atomically) into `directory`; returns it."""
  save_file = _safetensors().save_file
  directory = os.fspath(directory)
  os.makedirs(directory, exist_ok=True)
  with io.atomic_path(os.path.join(directory, WEIGHTS_FILENAME)) as tmp:
    save_file(weight_tensors(sae), tmp)
  io.write_json(os.path.join(directory, CFG_FILENAME), to_cfg_dict(sae))
  return directory


def save_state(directory: str | os.PathLike, state: Mapping[str, Any], cfg: autoencoder.SAEConfig,
               hook_name: str, model_name: str = "", extra_metadata: Mapping[str, Any] | None = None) -> str:
  """`save(directory, from_state(...))`: one trained SAE state as a SAELens directory."""
  return save(directory, from_state(state, cfg, hook_name, model_name, extra_metadata))


def save_runs(directory: str | os.PathLike, states: Mapping[str, Any], cfg: autoencoder.SAEConfig,
              names: Sequence[str], hook_name: str, model_name: str = "",
              run_metadata: Sequence[Mapping[str, Any]] | None = None) -> dict[str, str]:
  """Every run of run-stacked SAE states (leading axis: run r is named names[r]) as a SAELens directory
  `<directory>/<name>/`; returns {name: its directory}. `run_metadata[r]` is added to run r's metadata."""
  num_runs = int(np.shape(states["k"])[0])
  if len(names) != num_runs or len(set(names)) != num_runs:
    raise ValueError(f"names: expected {num_runs} distinct names (one per run), got {list(names)}")
  host = jax.tree.map(np.asarray, dict(states))
  out = {}
  for r, name in enumerate(names):
    state = jax.tree.map(lambda a, r=r: a[r], host)
    extra = dict(run_metadata[r]) if run_metadata is not None else {}
    out[name] = save_state(os.path.join(os.fspath(directory), name), state, cfg, hook_name, model_name, extra)
  return out


def _expected_shapes(d_in: int, d_sae: int, architecture: str) -> dict[str, tuple[int, ...]]:
  shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
  if architecture == "jumprelu":
    shapes["threshold"] = (d_sae,)
  return shapes


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _cfg_problems(cfg: Mapping[str, Any]) -> list[str]:
  """What is wrong with the fields of a cfg.json, each as "field 'name' ..." (empty if nothing)."""
  problems = [f"field {key!r} is missing" for key in ("d_in", "d_sae", "architecture") if key not in cfg]
  for key in ("d_in", "d_sae"):
    if key in cfg and not (_is_int(cfg[key]) and cfg[key] >= 1):
      problems.append(f"field {key!r} must be a positive integer, got {cfg[key]!r}")
  architecture = cfg.get("architecture")
  if "architecture" in cfg and architecture not in ARCHITECTURES:
    problems.append(f"field 'architecture' {architecture!r} is not one of {list(ARCHITECTURES)}")
  if cfg.get("normalize_activations", "none") != "none":
    problems.append(f"field 'normalize_activations' {cfg['normalize_activations']!r} is not implemented "
                    f"(only 'none')")
  if cfg.get("reshape_activations", "none") != "none":
    problems.append(f"field 'reshape_activations' {cfg['reshape_activations']!r} is not implemented "
                    f"(only 'none')")
  if cfg.get("rescale_acts_by_decoder_norm", False) is not False:
    problems.append(f"field 'rescale_acts_by_decoder_norm' {cfg['rescale_acts_by_decoder_norm']!r}: only "
                    f"false is implemented")
  if not isinstance(cfg.get("apply_b_dec_to_input", True), bool):
    problems.append(f"field 'apply_b_dec_to_input' must be true or false, got {cfg['apply_b_dec_to_input']!r}")
  if cfg.get("dtype", "float32") not in _SUPPORTED_DTYPES:
    problems.append(f"field 'dtype' {cfg.get('dtype')!r} is not one of {list(_SUPPORTED_DTYPES)}")
  if not isinstance(cfg.get("metadata", {}), Mapping):
    problems.append(f"field 'metadata' must be an object, got {type(cfg['metadata']).__name__}")
  if architecture == "topk":
    k, d_sae = cfg.get("k"), cfg.get("d_sae")
    if not (_is_int(k) and k >= 1 and (not _is_int(d_sae) or k <= d_sae)):
      problems.append(f"field 'k': topk needs an integer k in [1, d_sae={d_sae}], got {k!r}")
  return problems


def _first_bad(array: np.ndarray) -> str:
  index = np.unravel_index(int(np.argmax(~np.isfinite(array))), array.shape)
  return f"{array[index]} at index {tuple(int(i) for i in index)}"


def load(directory: str | os.PathLike) -> SAELensSAE:
  """Reads a SAELens directory (cfg.json, sae_weights.safetensors), checking every field, shape and weight.

  Raises SAELensFormatError (a ValueError), one line naming each problem with its file and field: a
  missing file or field, a d_in or d_sae that is not a positive integer, an unknown architecture, a
  normalisation this loader does not implement, a missing or mis-shaped tensor, NaN/Inf weights.
  """
  load_file = _safetensors().load_file
  directory = os.fspath(directory)
  cfg_path, weights_path = os.path.join(directory, CFG_FILENAME), os.path.join(directory, WEIGHTS_FILENAME)
  missing = [p for p in (cfg_path, weights_path) if not os.path.isfile(p)]
  if missing:
    raise SAELensFormatError(f"{directory} is not a SAELens SAE directory: no {', '.join(missing)}")
  try:
    with open(cfg_path, encoding="utf-8") as f:
      cfg = json.load(f)
  except ValueError as e:
    raise SAELensFormatError(f"{cfg_path}: not valid JSON: {e}") from None
  if not isinstance(cfg, dict):
    raise SAELensFormatError(f"{cfg_path}: expected a JSON object, got {type(cfg).__name__}")
  problems = _cfg_problems(cfg)
  if any(p.startswith(("field 'd_in'", "field 'd_sae'", "field 'architecture'")) for p in problems):
    raise SAELensFormatError(f"{cfg_path}: " + "; ".join(problems))  # The tensors cannot be checked.
  architecture, d_in, d_sae = cfg["architecture"], cfg["d_in"], cfg["d_sae"]
  try:
    tensors = load_file(weights_path)
  except Exception as e:  # The format's own errors have no common base class.
    raise SAELensFormatError(f"{weights_path}: not a readable safetensors file: {e}") from None
  weight_problems = []
  for name, shape in _expected_shapes(d_in, d_sae, architecture).items():
    if name not in tensors:
      weight_problems.append(f"has no tensor {name} {shape}")
    elif tuple(tensors[name].shape) != shape:
      weight_problems.append(f"tensor {name} has shape {tuple(tensors[name].shape)}, expected {shape} "
                             f"(d_in={d_in}, d_sae={d_sae})")
    elif not np.all(np.isfinite(tensors[name])):
      weight_problems.append(f"tensor {name} holds NaN/Inf ({_first_bad(tensors[name])})")
  messages = ([f"{cfg_path}: " + "; ".join(problems)] if problems else []) + (
      [f"{weights_path}: " + "; ".join(weight_problems)] if weight_problems else [])
  if messages:
    raise SAELensFormatError("; ".join(messages))
  params = {"w_enc_NxD": jnp.asarray(tensors["W_enc"].T, jnp.float32),
            "b_enc_N": jnp.asarray(tensors["b_enc"], jnp.float32),
            "w_dec_NxD": jnp.asarray(tensors["W_dec"], jnp.float32),
            "b_dec_D": jnp.asarray(tensors["b_dec"], jnp.float32)}
  threshold_N = jnp.asarray(tensors["threshold"], jnp.float32) if architecture == "jumprelu" else None
  k = cfg.get("k") if architecture == "topk" else None
  return SAELensSAE(params, architecture, k, threshold_N, cfg.get("apply_b_dec_to_input", True),
                    dict(cfg.get("metadata", {})), cfg)
