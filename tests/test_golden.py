"""Golden values: a few numbers of each study after a few steps of its smoke config, on CPU in float32.

They were computed once by running this code; they pin the formulas, the seed scheme and the defaults
together. A failure here means a result of the study changed. If that is intended (a new default, a
fixed formula), recompute the values, update the pins and say so in the commit; if not, it is a bug.
"""

import jax
import jax.numpy as jnp
import numpy as np

from configs import codec as codec_config
from configs import mono_poly as mono_config
from configs import toy_superposition as toy_config
from mpcodec.core import configuration, seeds
from mpcodec.studies.codec import pipeline as codec_pipeline
from mpcodec.studies.codec.sources import make_source
from mpcodec.studies.dynamics import program as dynamics
from mpcodec.studies.dynamics.train import sweep as dynamics_sweep
from mpcodec.studies.mono_poly import config as mono_poly_config, program as mono_poly, selectivity
from mpcodec.studies.toy_superposition import config as toy_config_lib, program as toy
from tests.support import toy_images

# float32 on CPU is deterministic on one machine; the tolerance leaves room for another CPU's
# vectorisation, not for a changed computation (which moves these numbers by far more after a few steps).
RTOL, ATOL = 1e-5, 1e-7

WHY = ("a changed formula, seed scheme or default changes these; if intended, update the pins and say "
       "so in the commit")


def assert_pinned(actual, expected, what: str, atol: float = ATOL) -> None:
  np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=RTOL,
                             atol=atol, err_msg=f"{what}: {WHY}")


def test_seed_scheme_is_pinned():
  """The raw key bits of `seeds` (every study's random numbers start here)."""
  key = seeds.seed_key(0, 3, "init")
  assert key.dtype == jnp.uint32 and np.asarray(key).tolist() == [3900042405, 1648462964], (
      f"seed_key(0, 3, 'init') = {np.asarray(key).tolist()}: {WHY}")
  assert seeds.purpose_id("init") == 1182065780, f"purpose_id('init') (CRC-32, 31 bits): {WHY}"
  assert np.asarray(seeds.shared_key(0, "data_order/phase1")).tolist() == [504481445, 1761925648], (
      f"shared_key(0, 'data_order/phase1'): {WHY}")
  # seed_keys is seed_key per index (adding seeds changes no existing one).
  np.testing.assert_array_equal(seeds.seed_keys(0, 5, "init")[3], key)


def test_mono_poly_golden():
  """Smoke config, 2 seeds, 20 steps a phase, through the pure `make_train` (what the loop cuts into
  chunks), in the design these pins were first taken with (one shared dataset and minibatch order, no
  control arm): each phase's last loss per seed, a weight sum, and the mean orientation CRS of hidden_0."""
  raw = configuration.override(mono_config.get_config("smoke"),
                               {"num_seeds": 2, "phase1.steps": 20, "phase2.steps": 20, "data_per_seed": False,
                                "shared_data_order": True, "control_arm": False})
  cfg = mono_poly_config.parse_config(raw)
  state, history = jax.jit(jax.vmap(mono_poly.make_train(cfg)))(mono_poly.seed_keys(cfg))
  assert history["phase1"]["loss"].shape == (2, 20) and history["phase2"]["loss"].shape == (2, 20)
  assert_pinned(history["phase1"]["loss"][:, -1], [0.5757315754890442, 0.5359888076782227],
                "mono->poly phase1 loss at step 19, seeds 0 and 1")
  assert_pinned(history["phase2"]["loss"][:, -1], [0.4323909282684326, 0.4285733997821808],
                "mono->poly phase2 loss at step 19, seeds 0 and 1")
  kernel = np.asarray(state["params"]["hidden_0"]["kernel"][0], np.float64)
  assert kernel.shape == (3072, 10)
  # A sum of 30,720 weights of both signs: its absolute tolerance is the float32 rounding of that many.
  assert_pinned(kernel.sum(), -16.032383964904966, "mono->poly seed 0 hidden_0 kernel sum", atol=1e-4)
  _, test = mono_poly.make_datasets(cfg)
  params = jax.tree.map(lambda x: x[0], state["params"])
  acts = mono_poly.hidden_activations(cfg, params, test["x"])
  crs = selectivity.mono_poly_selectivity(acts["hidden_0"], test["orientation"], test["colour"])
  assert_pinned(np.mean(np.asarray(crs["crs_orientation"], np.float64)), 0.503946627676487,
                "mono->poly seed 0 mean orientation CRS of hidden_0 after phase 2")


def test_mono_poly_default_design_golden():
  """The default design on the same smoke settings: each seed its own dataset and minibatch order, and
  the control arm after phase 2. Each phase's last loss per seed, and seed 1's first training image."""
  raw = configuration.override(mono_config.get_config("smoke"),
                               {"num_seeds": 2, "phase1.steps": 20, "phase2.steps": 20})
  cfg = mono_poly_config.parse_config(raw)
  assert cfg.data_per_seed and not cfg.shared_data_order and cfg.control_arm
  _, history = jax.jit(jax.vmap(mono_poly.make_train(cfg)))(mono_poly.train_keys(cfg))
  assert {phase: history[phase]["loss"].shape for phase in history} == {p: (2, 20) for p in
                                                                        ("phase1", "phase2", "control")}
  assert_pinned(history["phase1"]["loss"][:, -1], [0.5130127668380737, 0.5639396905899048],
                "mono->poly phase1 loss at step 19, seeds 0 and 1")
  assert_pinned(history["phase2"]["loss"][:, -1], [0.5145403146743774, 0.4990331828594208],
                "mono->poly phase2 loss at step 19, seeds 0 and 1")
  assert_pinned(history["control"]["loss"][:, -1], [0.42065054178237915, 0.38779035210609436],
                "mono->poly control loss at step 19, seeds 0 and 1")
  train, _ = mono_poly.run_datasets(cfg)
  # A sum of 3,072 noisy pixels: its absolute tolerance is the float32 rounding of that many.
  assert_pinned(np.asarray(train["x"][1, 0], np.float64).sum(), 84.15437614198163,
                "mono->poly seed 1's first training image, summed", atol=1e-4)


def test_dynamics_golden():
  """mlp_128_64 (the smoke grid's architecture) for 10 steps on the synthetic 3-class image set, 2 seeds,
  through `run_seeds` (the one loop): the last step's batch loss and hidden_0's participation ratio at
  step 0 (the initialisation), per seed."""
  cfg = dynamics.DynamicsConfig(arch="mlp_128_64", dataset="mnist", num_seeds=2, num_steps=10, batch_size=8,
                                measure_every=5, probe_size=24, train_probe_size=16, twonn_samples=12,
                                measurements_per_chunk=1)
  configuration.check_values(cfg)
  result = dynamics_sweep.run_seeds(cfg, toy_images())
  assert result.probe.layer_names == ("hidden_0", "hidden_1")
  assert result.series["batch_loss"].shape == (2, 10)
  assert result.series["participation_ratio"].shape == (2, 3, 2)
  assert_pinned(result.series["batch_loss"][:, -1], [0.13873541355133057, 0.03134605288505554],
                "dynamics batch loss at step 9, seeds 0 and 1 (the toy images of tests/support.py::toy_images; a "
                "change there changes it too)")
  assert_pinned(result.series["participation_ratio"][:, 0, 0], [2.2762060165405273, 2.402661085128784],
                "dynamics participation ratio of hidden_0 at step 0, seeds 0 and 1")


def test_toy_superposition_golden():
  """The smoke config's pentagon cell (n = 5, m = 2, sparsity 0.9, unit importance), 2 seeds, cut to 100
  steps (the cosine schedule follows), through the pure `make_train` (what the loop cuts into chunks; the
  other sweeps cut to 10 steps): the kept run's last 10-step mean loss and every restart's."""
  short = {"num_steps": 10, "history_every": 10}
  raw = configuration.override(toy_config.get_config("smoke"), {
      "train.num_steps": 100, "train.history_every": 10,
      **{f"{sweep}.train.{key}": value for sweep in ("phase_diagram", "privileged_basis") for key, value in short.items()}})
  cfg = configuration.parse(toy_config_lib.ToySuperpositionConfig, raw)
  state, history = jax.jit(jax.vmap(toy.make_train(cfg)))(toy.seed_keys(cfg.seed, 2))
  pentagon = toy.sweep_results(cfg, state, history)["pentagon"]
  params, history = pentagon["params"], pentagon["history"]
  assert params["W"].shape == (2, 2, 5) and history["loss"].shape == (2, 10)
  assert np.asarray(history["kept_restart"]).tolist() == [1, 1], f"kept restart per seed: {WHY}"
  assert_pinned(history["loss"][:, -1], [0.037204865366220474, 0.03520755469799042],
                "toy superposition loss of the kept restart over steps 90-99, seeds 0 and 1")
  assert_pinned(history["restart_final_loss"],
                [[0.04277439042925835, 0.037204865366220474, 0.03855835273861885, 0.0450822189450264],
                 [0.04417767375707626, 0.03520755469799042, 0.058261048048734665, 0.03901150822639465]],
                "toy superposition final loss of every restart, seeds 0 and 1")


def test_codec_golden():
  """The smoke codec (64 known atoms in 16 dims; SAE of 64 latents, k = 3, 2 seeds), cut to 20 SAE and 10
  Squeezer steps, as the same programs `run_codec` trains: last-step losses and one decoder sum."""
  raw = codec_config.get_config("smoke")
  raw.sae_loop.steps, raw.squeezer_loop.steps = 20, 10
  cfg = codec_pipeline.parse_codec_config(raw)
  source = make_source(cfg.source)
  state, history = codec_pipeline.train_sae(cfg.sae, cfg.sae_loop, source, cfg.seed, cfg.num_seeds)
  assert history["loss"].shape == (20, 2)
  assert_pinned(history["loss"][-1], [0.46112561225891113, 0.4681359827518463], "codec SAE loss at step 19")
  folded = codec_pipeline.folded_sae_states(state)
  assert_pinned(np.asarray(folded["params"]["w_dec_NxD"])[0].sum(), 7.809619903564453,
                "codec SAE decoder sum, run 0", atol=1e-4)
  squeezer_cfg = cfg.squeezer.as_sae_config(source.width)
  _, squeezer_history = codec_pipeline.train_squeezer(squeezer_cfg, folded, cfg.sae, cfg.squeezer_loop, source,
                                                      cfg.seed, cfg.num_seeds)
  assert_pinned(squeezer_history["loss"][-1], [0.9055272340774536, 0.8850321769714355],
                "codec Squeezer loss at step 9")
