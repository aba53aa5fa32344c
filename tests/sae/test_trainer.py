"""The one-call SAE trainer on arrays: validation, NaN rows, seeds and k in one program, planted recovery,
resume, SAELens round trip and the loader's refusals."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from mpcodec import sae
from mpcodec.core.checkpoint import CheckpointStore
from mpcodec.core.errors import ActivationError, ConfigError, WorkdirError
from mpcodec.sae import activation_rows, training

D, ATOMS, K_TRUE = 16, 48, 3


def planted(num_rows=6000, seed=0, noise=0.01, dim=D, num_atoms=ATOMS):
  """(rows, atoms): each row sums K_TRUE of the unit atoms with weights in [0.5, 1.5], plus noise."""
  rng = np.random.default_rng(seed)
  atoms_AxD = rng.standard_normal((num_atoms, dim))
  atoms_AxD /= np.linalg.norm(atoms_AxD, axis=1, keepdims=True)
  chosen_TxK = np.argsort(rng.random((num_rows, num_atoms)), axis=1)[:, :K_TRUE]
  codes_TxA = np.zeros((num_rows, num_atoms))
  np.put_along_axis(codes_TxA, chosen_TxK, rng.uniform(0.5, 1.5, (num_rows, K_TRUE)), axis=1)
  acts_TxD = codes_TxA @ atoms_AxD + noise * rng.standard_normal((num_rows, dim))
  return acts_TxD.astype(np.float32), atoms_AxD


def small_config(sae_changes=None, **changes):
  """48 latents, 40 steps in 10-step chunks and checkpoints, Adam at 1e-2."""
  base = sae.SAETrainingConfig(
      sae=sae.SAEConfig(num_latents=ATOMS, k=K_TRUE, aux_k=8, dead_tokens_threshold=2000,
                        optim=sae.OptimConfig(learning_rate=1e-2, warmup_steps=5, schedule="cosine")),
      steps=40, batch_size=64, init_tokens=512, chunk_steps=10, checkpoint_every=10)
  raw = training.configuration.to_dict(base)
  raw["sae"].update(sae_changes or {})
  return training.validated_config({**raw, **changes})


@pytest.fixture(scope="module")
def acts():
  return planted()[0]


@pytest.fixture(scope="module")
def sweep(acts):
  """3 seeds x k in (2, 4), one program, no workdir."""
  return sae.train_sae(acts, small_config(), seeds=3, ks=(2, 4), progress=False)


# ----------------------------------------------------------------------------- validation


def _not_compiled(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError("the program was built before the inputs were checked")
  monkeypatch.setattr(training, "sae_program", fail)


@pytest.mark.parametrize("config, kwargs, key", [
    ({"sae": {"num_latents": 128, "k": 500}}, {}, "config.sae.k"),
    ({"sae": {"num_latents": 128, "k": 0}}, {}, "config.sae.k"),
    ({"sae": {"num_latents": 128}}, {"ks": (8, 500)}, "ks[1]"),
    ({"sae": {"num_latents": 128}}, {"ks": (0,)}, "ks[0]"),
    ({"sae": {"num_latents": 128}}, {"ks": (8, 8)}, "ks"),
    ({"steps": 0}, {}, "config.steps"),
    ({"steps": 2.5}, {}, "config.steps"),
    ({"stepz": 3}, {}, "config.stepz"),
    ({"batch_size": 1000}, {}, "config.batch_size"),      # 900 training rows of 1000 (100 held out)
    ({"eval_fraction": 1.0}, {}, "config.eval_fraction"),
    ({"sae": {"aux_k": -1}}, {}, "config.sae.aux_k"),
    ({"sae": {"optim": {"learning_rate": -1.0}}}, {}, "config.sae.optim.learning_rate"),
    ({}, {"seeds": 0}, "seeds"),
    ({}, {"seeds": (1, 1)}, "seeds"),
    ({}, {"seeds": (0, -2)}, "seeds[1]"),
])
def test_impossible_values_stop_before_compiling_naming_the_key(monkeypatch, config, kwargs, key):
  _not_compiled(monkeypatch)
  acts_TxD = np.zeros((1000, 4), np.float32)
  with pytest.raises(ValueError) as info:
    sae.train_sae(acts_TxD, config, progress=False, **kwargs)
  message = str(info.value)
  assert message.startswith(key + ":"), message
  assert "\n" not in message


def test_config_errors_are_config_errors_and_the_sae_config_alone_is_accepted(monkeypatch):
  _not_compiled(monkeypatch)
  with pytest.raises(ConfigError, match=r"^config\.sae\.k: k=500 must lie in \[1, num_latents=128\]"):
    sae.train_sae(np.zeros((100, 4), np.float32), sae.SAEConfig(num_latents=128, k=500), progress=False)
  assert training.validated_config(sae.SAEConfig(num_latents=128, k=3)).sae.k_values == (3,)
  assert training.validated_config(sae.SAEConfig(num_latents=128), ks=(2, 5)).sae.k_values == (2, 5)


def test_wrong_rank_and_dtype_name_the_array(monkeypatch):
  _not_compiled(monkeypatch)
  with pytest.raises(ValueError, match=r"^acts_TxD: expected a rank-2 array of shape \(T, D\), got shape "
                                       r"\(10,\)"):
    sae.train_sae(np.zeros(10, np.float32), progress=False)
  with pytest.raises(ValueError, match=r"^acts_TxD: expected real numbers"):
    sae.train_sae(np.zeros((10, 3), np.complex64), progress=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_value_names_its_row_even_deep_in_a_memmap(monkeypatch, tmp_path, bad):
  _not_compiled(monkeypatch)
  monkeypatch.setattr(activation_rows, "SCAN_ELEMENTS", 64)   # 16 rows per chunk: the bad row is in chunk 77
  path = tmp_path / "acts.npy"
  acts_TxD = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(2000, 4))
  acts_TxD[:] = 1.0
  acts_TxD[1234, 2] = bad
  acts_TxD.flush()
  with pytest.raises(ActivationError, match=rf"^acts_TxD: row 1234 holds {bad} \(column 2\)"):
    sae.train_sae(np.load(path, mmap_mode="r"), small_config(), progress=False)


# ----------------------------------------------------------------------------- training


def test_result_shapes_labels_and_metrics(sweep, acts):
  assert sweep.ks == (2, 4) and sweep.seeds == (0, 1, 2)
  assert sweep.config.sae.k_grid == (2, 4)
  for k in sweep.ks:
    assert sweep.params[k]["w_dec_NxD"].shape == (3, ATOMS, D)
    assert sweep.params[k]["b_dec_D"].shape == (3, D)
    assert sweep.threshold[k].shape == (3,)
    for name in ("fvu", "l0", "dead_fraction"):
      assert sweep.metrics[k][name].shape == (3,) and np.all(np.isfinite(sweep.metrics[k][name]))
    assert sweep.history[k]["loss"].shape == (3, 40)
    np.testing.assert_allclose(sweep.metrics[k]["l0"], k, atol=0.05)
  assert sweep.eval_rows == (5400, 6000) and sweep.eval_held_out
  assert "k=4 seed 2: FVU" in sweep.summary()
  # The seeds differ: each has its own initial weights.
  assert not np.allclose(sweep.params[2]["w_dec_NxD"][0], sweep.params[2]["w_dec_NxD"][1])


def test_metrics_equal_a_numpy_reference_on_the_held_out_rows(sweep, acts):
  x = acts[5400:].astype(np.float64)
  for k in sweep.ks:
    for j in range(3):
      p = {name: value[j].astype(np.float64) for name, value in sweep.params[k].items()}
      pre = (x - p["b_dec_D"]) @ p["w_enc_NxD"].T + p["b_enc_N"]
      top = np.argsort(-pre, axis=1, kind="stable")[:, :k]
      codes = np.zeros_like(pre)
      np.put_along_axis(codes, top, np.maximum(np.take_along_axis(pre, top, 1), 0), 1)
      x_hat = codes @ p["w_dec_NxD"] + p["b_dec_D"]
      fvu = np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2)
      np.testing.assert_allclose(sweep.metrics[k]["fvu"][j], fvu, rtol=1e-4)
      np.testing.assert_allclose(sweep.metrics[k]["l0"][j], np.mean(np.sum(codes > 0, axis=1)), rtol=1e-6)
      np.testing.assert_allclose(sweep.metrics[k]["dead_fraction"][j], np.mean(~np.any(codes > 0, axis=0)))


def test_vmapped_seeds_and_ks_equal_single_runs(sweep, acts):
  """Seed 1 at k=4 trained alone equals its run in the 3-seed x 2-k program (its key and batches are its own)."""
  single = sae.train_sae(acts, small_config(), seeds=(1,), ks=(4,), progress=False)
  for name, value in single.params[4].items():
    np.testing.assert_allclose(sweep.params[4][name][1], value[0], rtol=1e-5, atol=1e-6, err_msg=name)
  np.testing.assert_allclose(sweep.history[4]["loss"][1], single.history[4]["loss"][0], rtol=1e-5)
  np.testing.assert_allclose(sweep.metrics[4]["fvu"][1], single.metrics[4]["fvu"][0], rtol=1e-4)


def test_the_planted_dictionary_is_recovered():
  """128 atoms in 64 dims, 3 per row; an SAE of 128 latents at k=3 finds every atom (mean max cosine) and
  reconstructs held-out rows to FVU < 0.05. (The planted atoms themselves, on the support that their top-3
  dot products choose, with least-squares weights, give FVU 0.034 on these rows: the bar sits just above
  what the true dictionary achieves through a Top-K selection.)"""
  acts_TxD, atoms_AxD = planted(num_rows=20_000, seed=1, dim=64, num_atoms=128)
  config = small_config({"num_latents": 128}, steps=600, batch_size=256, chunk_steps=300, checkpoint_every=0)
  result = sae.train_sae(acts_TxD, config, seeds=2, progress=False)
  for j in range(2):
    w_dec_NxD = result.params[K_TRUE]["w_dec_NxD"][j]
    mean_max_cosine = np.mean(np.max(atoms_AxD @ w_dec_NxD.T, axis=1))
    assert mean_max_cosine > 0.98, mean_max_cosine
    assert result.metrics[K_TRUE]["fvu"][j] < 0.05, result.summary()
    assert result.metrics[K_TRUE]["dead_fraction"][j] < 0.05, result.summary()


def test_a_resumed_run_equals_an_uninterrupted_one(acts, tmp_path):
  full = sae.train_sae(acts, small_config(), seeds=2, workdir=str(tmp_path / "full"), progress=False)
  nowhere = sae.train_sae(acts, small_config(), seeds=2, progress=False)
  shutil.copytree(tmp_path / "full", tmp_path / "cut")
  store = CheckpointStore(str(tmp_path / "cut" / "checkpoints" / "sae"))
  store.delete_after(20)
  assert store.latest_step() == 20
  store.close()
  resumed = sae.train_sae(acts, small_config(), seeds=2, workdir=str(tmp_path / "cut"), progress=False)
  for other in (resumed, nowhere):
    jax.tree.map(np.testing.assert_array_equal, other.params, full.params)
    jax.tree.map(np.testing.assert_array_equal, other.history, full.history)
    jax.tree.map(np.testing.assert_array_equal, other.metrics, full.metrics)
  # A finished run trains nothing again; another array in the same workdir is refused.
  again = sae.train_sae(acts, small_config(), seeds=2, workdir=str(tmp_path / "full"), progress=False)
  jax.tree.map(np.testing.assert_array_equal, again.params, full.params)
  with pytest.raises(WorkdirError, match=r"config\.data\.fingerprint"):
    sae.train_sae(acts * 2, small_config(), seeds=2, workdir=str(tmp_path / "full"), progress=False)


# ----------------------------------------------------------------------------- SAELens


def test_saelens_round_trip_of_every_run(sweep, acts, tmp_path):
  written = sae.save_saelens(sweep, tmp_path, hook_name="blocks.0.hook_resid_post", model_name="toy")
  assert sorted(written) == sorted(f"k{k}_seed{s}" for k in (2, 4) for s in range(3))
  x = acts[:32]
  for k in sweep.ks:
    for j, seed in enumerate(sweep.seeds):
      loaded = sae.load_saelens(written[f"k{k}_seed{seed}"])
      assert loaded.architecture == "topk" and loaded.k == k
      assert (loaded.d_in, loaded.d_sae) == (D, ATOMS)
      for name, value in loaded.params.items():
        np.testing.assert_array_equal(np.asarray(value), sweep.params[k][name][j])
      assert loaded.metadata["hook_name"] == "blocks.0.hook_resid_post"
      assert loaded.metadata["seed_index"] == seed
      assert loaded.metadata["fvu"] == pytest.approx(float(sweep.metrics[k]["fvu"][j]))
      in_memory = sweep.sae(k, seed)
      np.testing.assert_allclose(np.asarray(loaded.decode(loaded.encode(x))),
                                 np.asarray(in_memory.decode(in_memory.encode(x))), rtol=1e-6, atol=1e-6)


def test_batchtopk_results_export_their_threshold(acts, tmp_path):
  config = small_config({"activation": "batchtopk"})
  result = sae.train_sae(acts, config, progress=False)
  loaded = sae.load_saelens(sae.save_saelens(result, tmp_path)[f"k{K_TRUE}_seed0"])
  assert loaded.architecture == "jumprelu"
  np.testing.assert_allclose(np.asarray(loaded.threshold_N), result.threshold[K_TRUE][0], rtol=1e-6)
  assert 0 < result.metrics[K_TRUE]["l0"][0] < 4 * K_TRUE


def _edit(folder, cfg_changes=None, tensor_changes=None):
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  if cfg_changes:
    path = os.path.join(folder, "cfg.json")
    with open(path) as f:
      cfg = json.load(f)
    cfg.update(cfg_changes)
    with open(path, "w") as f:
      f.write(json.dumps(cfg))
  if tensor_changes:
    path = os.path.join(folder, "sae_weights.safetensors")
    tensors = load_file(path)
    for name, change in tensor_changes.items():
      tensors[name] = change(tensors[name])
    save_file(tensors, path)


def _with_nan(array):
  array = array.copy()
  array[3, 1] = np.nan
  return array


@pytest.mark.parametrize("cfg_changes, tensor_changes, file, field", [
    ({"d_in": 12.5}, None, "cfg.json", "field 'd_in' must be a positive integer, got 12.5"),
    ({"d_in": "16"}, None, "cfg.json", "field 'd_in' must be a positive integer, got '16'"),
    ({"d_sae": 0}, None, "cfg.json", "field 'd_sae' must be a positive integer, got 0"),
    ({"architecture": "gated"}, None, "cfg.json", "field 'architecture' 'gated' is not one of"),
    ({"k": 2.0}, None, "cfg.json", "field 'k': topk needs an integer k"),
    ({"apply_b_dec_to_input": "yes"}, None, "cfg.json", "field 'apply_b_dec_to_input' must be true or false"),
    ({"metadata": [1]}, None, "cfg.json", "field 'metadata' must be an object, got list"),
    (None, {"W_enc": _with_nan}, "sae_weights.safetensors", "tensor W_enc holds NaN/Inf (nan at index (3, 1))"),
    (None, {"b_dec": lambda a: np.full_like(a, np.inf)}, "sae_weights.safetensors",
     "tensor b_dec holds NaN/Inf"),
])
def test_the_loader_refuses_a_malformed_folder_naming_file_and_field(sweep, tmp_path, cfg_changes,
                                                                      tensor_changes, file, field):
  folder = sae.save_saelens(sweep, tmp_path)["k2_seed0"]
  _edit(folder, cfg_changes, tensor_changes)
  with pytest.raises(ValueError) as info:
    sae.load_saelens(folder)
  message = str(info.value)
  assert isinstance(info.value, sae.SAELensFormatError)
  assert os.path.join(folder, file) + ": " in message and field in message, message
  assert "\n" not in message


def test_result_accessors_name_a_missing_k_or_seed(sweep):
  with pytest.raises(ValueError, match=r"^k: 3 was not trained; ks are \[2, 4\]"):
    sweep.sae(3, 0)
  with pytest.raises(ValueError, match=r"^seed: 7 was not trained; seeds are \[0, 1, 2\]"):
    sweep.state(2, 7)
