"""SAELens interchange: round trip, the files as SAELens reads them, and the formulas SAELens applies."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpcodec.core.errors import ActivationError
from mpcodec.sae import autoencoder as sae
from mpcodec.sae import saelens

D_IN, N = 12, 40


def _state(activation, seed=0, k=5):
  """A train state as the codec keeps it: weights in scaled units, input scale, k, BatchTopK threshold."""
  rng = np.random.default_rng(seed)
  cfg = sae.SAEConfig(num_latents=N, k=k, activation=activation, decoder="dense")
  w_dec_NxD = rng.standard_normal((N, D_IN)).astype(np.float32)
  w_dec_NxD /= np.linalg.norm(w_dec_NxD, axis=1, keepdims=True)
  params = {"w_enc_NxD": w_dec_NxD + 0.3 * rng.standard_normal((N, D_IN)).astype(np.float32),
            "b_enc_N": (0.1 * rng.standard_normal(N)).astype(np.float32), "w_dec_NxD": w_dec_NxD,
            "b_dec_D": rng.standard_normal(D_IN).astype(np.float32)}
  state = {"params": params, "k": np.int32(k), "input_scale": np.float32(0.37), "threshold": np.float32(0.21)}
  return state, cfg


def _batch(seed=1, rows=16):
  return jnp.asarray(np.random.default_rng(seed).standard_normal((rows, D_IN)) * 3, jnp.float32)


def _saelens_numpy(tensors, cfg, x):
  """SAELens' inference formulas on its own tensors: pre = (x - b_dec) W_enc + b_enc, activation, decode."""
  x = np.asarray(x, np.float64)
  pre = (x - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"]
  if cfg["architecture"] == "topk":
    acts = np.zeros_like(pre)
    top = np.argsort(-pre, axis=1, kind="stable")[:, :cfg["k"]]
    np.put_along_axis(acts, top, np.maximum(np.take_along_axis(pre, top, 1), 0), 1)
  else:
    acts = np.maximum(pre, 0) * (pre > tensors["threshold"])
  return acts, acts @ tensors["W_dec"] + tensors["b_dec"]


def _read_files(directory):
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  with open(os.path.join(directory, "cfg.json"), encoding="utf-8") as f:
    cfg = json.load(f)
  return cfg, load_file(os.path.join(directory, "sae_weights.safetensors"))


def test_topk_round_trip_encodes_and_decodes_like_the_trained_sae(tmp_path):
  state, cfg = _state("topk")
  saelens.save_state(tmp_path / "sae", state, cfg, hook_name="block_2/ffn_hidden",
                     model_name="all-MiniLM-L6-v2")
  loaded = saelens.load(tmp_path / "sae")
  x = _batch()
  x_hat_ref, codes = jax.jit(sae.apply, static_argnums=2)(state, x, cfg)
  acts_ref = sae.dense_codes(codes, x.shape[0], N) / state["input_scale"]   # codes are in scaled units
  acts = jax.jit(loaded.encode)(x)
  np.testing.assert_allclose(np.asarray(acts), np.asarray(acts_ref), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(loaded.decode(acts)), np.asarray(x_hat_ref), rtol=1e-5, atol=1e-5)
  assert loaded.architecture == "topk" and loaded.k == 5 and loaded.d_in == D_IN and loaded.d_sae == N
  # A second save of the loaded SAE writes the same tensors.
  saelens.save(tmp_path / "again", loaded)
  first, second = _read_files(tmp_path / "sae")[1], _read_files(tmp_path / "again")[1]
  assert first.keys() == second.keys()
  for name in first:
    np.testing.assert_array_equal(first[name], second[name])


def test_batchtopk_is_saved_as_jumprelu_with_its_threshold_broadcast(tmp_path):
  state, cfg = _state("batchtopk")
  saelens.save_state(tmp_path / "sae", state, cfg, hook_name="block_2/ffn_hidden")
  cfg_json, tensors = _read_files(tmp_path / "sae")
  assert cfg_json["architecture"] == "jumprelu" and "k" not in cfg_json
  np.testing.assert_allclose(tensors["threshold"], np.full(N, 0.21 / 0.37, np.float32), rtol=1e-6)
  loaded = saelens.load(tmp_path / "sae")
  x = _batch()
  # This project's inference rule for BatchTopK on raw inputs (scale folded in) gives the same codes.
  folded, threshold = sae.fold_input_scale(state["params"], state["input_scale"], state["threshold"])
  acts_ref = sae.encode_with_threshold(folded, x, threshold)
  np.testing.assert_allclose(np.asarray(loaded.encode(x)), np.asarray(acts_ref), rtol=1e-5, atol=1e-6)
  assert int(np.sum(np.asarray(acts_ref) > 0)) > 0


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_files_are_in_the_format_saelens_reads(tmp_path, activation):
  state, cfg = _state(activation)
  saelens.save_state(tmp_path / "sae", state, cfg, hook_name="block_2/ffn_hidden",
                     model_name="all-MiniLM-L6-v2")
  assert sorted(os.listdir(tmp_path / "sae")) == ["cfg.json", "sae_weights.safetensors"]
  cfg_json, tensors = _read_files(tmp_path / "sae")
  expected_arch = "topk" if activation == "topk" else "jumprelu"
  assert cfg_json["architecture"] == expected_arch
  assert (cfg_json["d_in"], cfg_json["d_sae"], cfg_json["dtype"]) == (D_IN, N, "float32")
  assert cfg_json["apply_b_dec_to_input"] is True and cfg_json["normalize_activations"] == "none"
  metadata = cfg_json["metadata"]
  assert metadata["hook_name"] == "block_2/ffn_hidden" and metadata["model_name"] == "all-MiniLM-L6-v2"
  # SAELens reads configs of versions below 6.0 through a legacy converter.
  assert tuple(int(p) for p in metadata["sae_lens_version"].split(".")[:2]) >= (6, 0)
  shapes = {"W_enc": (D_IN, N), "b_enc": (N,), "W_dec": (N, D_IN), "b_dec": (D_IN,)}
  if activation == "batchtopk":
    shapes["threshold"] = (N,)
  else:
    assert cfg_json["k"] == 5 and cfg_json["rescale_acts_by_decoder_norm"] is False
  assert {name: tuple(t.shape) for name, t in tensors.items()} == shapes
  assert {t.dtype for t in tensors.values()} == {np.dtype(np.float32)}
  # SAELens' own formulas on the files reproduce this project's SAE on raw activations.
  x = _batch()
  _, x_hat = _saelens_numpy(tensors, cfg_json, x)
  if activation == "topk":
    x_hat_ref = jax.jit(sae.apply, static_argnums=2)(state, x, cfg)[0]
  else:
    folded, threshold = sae.fold_input_scale(state["params"], state["input_scale"], state["threshold"])
    x_hat_ref = sae.encode_with_threshold(folded, x, threshold) @ folded["w_dec_NxD"] + folded["b_dec_D"]
  np.testing.assert_allclose(x_hat, np.asarray(x_hat_ref), rtol=1e-4, atol=1e-4)


def test_an_sae_of_the_wrong_width_for_the_layer_is_refused(tmp_path):
  state, cfg = _state("topk")
  saelens.save_state(tmp_path / "sae", state, cfg, hook_name="block_2/ffn_hidden")
  loaded = saelens.load(tmp_path / "sae")
  loaded.check_input_width(D_IN, "block_2/ffn_hidden")
  with pytest.raises(ActivationError, match=r"d_in 12 \(trained on block_2/ffn_hidden\) but layer "
                                            r"'block_3/residual' has width 384"):
    loaded.check_input_width(384, "block_3/residual")


def test_bad_directories_name_each_problem(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  with pytest.raises(saelens.SAELensFormatError, match="not a SAELens SAE directory: no .*cfg.json"):
    saelens.load(tmp_path)
  state, cfg = _state("topk")
  saelens.save_state(tmp_path / "sae", state, cfg, hook_name="h")
  cfg_json, tensors = _read_files(tmp_path / "sae")
  tensors["W_dec"] = tensors["W_dec"][:, :5]
  del tensors["b_enc"]
  save_file(tensors, str(tmp_path / "sae" / "sae_weights.safetensors"))
  cfg_json.update(normalize_activations="layer_norm", k=0)
  (tmp_path / "sae" / "cfg.json").write_text(json.dumps(cfg_json))
  with pytest.raises(saelens.SAELensFormatError) as info:
    saelens.load(tmp_path / "sae")
  message = str(info.value)
  for part in ("cfg.json: field 'normalize_activations' 'layer_norm' is not implemented",
               "field 'k': topk needs an integer k in [1, d_sae=40]",
               "sae_weights.safetensors: has no tensor b_enc (40,)",
               "tensor W_dec has shape (40, 5), expected (40, 12)"):
    assert part in message
  assert isinstance(info.value, ValueError) and "\n" not in message
