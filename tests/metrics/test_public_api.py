"""The public API of mpcodec.metrics: what `__all__` exports, its docstrings, and its input checks.

CASES holds valid example inputs of every exported function (a new export without an entry fails
`test_every_exported_function_has_a_case`). Each valid call must run: under `jax.jit` with its array
arguments traced, unless the case is marked host-side (numpy, SciPy, scikit-learn). Then each array
argument in turn is replaced by one rank fewer (its first entry) and one rank more (a leading axis of 1),
and the call must raise one ValueError that names that argument. Arguments that take extra leading axes
by design (listed in `leading`) are only given one rank fewer, those that take a scalar too (`fewer_ok`)
only one rank more; elementwise ones (`any_rank`) keep their rank; PRNG keys are left alone.
"""

import dataclasses
import inspect
import subprocess
import sys

import jax
import numpy as np
import pytest

import mpcodec.metrics as metrics
from mpcodec.core.errors import DataError
from mpcodec.metrics import changepoints, coactivation, validation
from mpcodec.metrics import truth_tables as tt


@dataclasses.dataclass(frozen=True)
class Case:
  args: tuple
  kwargs: dict = dataclasses.field(default_factory=dict)
  leading: tuple[str, ...] = ()
  fewer_ok: tuple[str, ...] = ()
  any_rank: tuple[str, ...] = ()
  host: bool = False


_rng = np.random.default_rng(0)


def _normal(*shape) -> np.ndarray:
  return _rng.normal(size=shape).astype(np.float32)


KEY = jax.random.PRNGKey(0)
KEYS_2 = jax.random.split(KEY, 2)

# Samples B = 8, atoms N = 5, neurons M = 3, features D = 4.
X_BxD = _normal(8, 4)
X_HAT_BxD = _normal(8, 4)
CODES_BxN = np.maximum(_normal(8, 5), 0.0)
ACTS_BxM = _normal(8, 3)
COUNTS_N = np.array([0, 3, 8, 1, 5], np.int32)
W_ENC_MxN = _normal(3, 5)
LIVE_N = np.array([True, True, True, False, True])
ASSIGNMENT_N = np.array([0, 0, 1, -1, 1], np.int32)
THEME_N = np.array([0, 1, 1, 0, -1], np.int32)
PAIRS_Px2 = np.array([[0, 1], [2, 4], [1, 4]], np.int32)
NEURON_P = np.array([0, 1, 2], np.int32)
VALID_P = np.array([True, True, False])
COLUMNS_BxK = np.argsort(-CODES_BxN, axis=1)[:, :2].astype(np.int32)
VALUES_BxK = np.take_along_axis(CODES_BxN, COLUMNS_BxK, axis=1)
MEANS_Px4 = _normal(3, 4)
LAYER_MEANS_PxHx4 = _normal(3, 3, 4)
DECODER_NxD = _normal(5, 4)
PROBS_NxHxTxT = np.asarray(jax.nn.softmax(_normal(2, 2, 3, 3), axis=-1))
SCORES_N = np.array([0.1, 0.9, 0.4, 0.8, 0.3, 0.7], np.float32)
POSITIVE_N = np.array([False, True, False, True, False, True])
SERIES_SxMxL = np.cumsum(_normal(3, 12, 2), axis=1)
STEPS_M = np.arange(10, dtype=np.float32) * 5
CRITICAL_LxW = np.array([[0, 1, 1, 0, 0, 0, 1, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 1]], bool)
JUMP_SERIES_NxM = _normal(3, 20) + np.repeat([0.0, 5.0], 10)
DETECTOR = changepoints.DetectorConfig(calibration_surrogates=100, calibration_max_changes=1, max_forward_steps=2)
GRID_G = np.asarray(DETECTOR.ar_grid, np.float32)
TABLE = changepoints.PenaltyTable(GRID_G, np.full_like(GRID_G, 10.0), np.full_like(GRID_G, 10.0), 20)
NOISE = changepoints.NoiseModel(np.zeros((3, 20), np.float32), np.ones(3, np.float32), np.zeros(3, np.float32),
                                np.ones(3, np.float32))
IS_JUMP_NxM = np.zeros((3, 20), bool)
IS_JUMP_NxM[:, 10] = True
SYNTHETIC = tt.TruthTables(MEANS_Px4, np.full((3, 4), 2, np.int32), _normal(3), np.ones(3, np.float32),
                           np.ones(3, bool), np.array([0, 2, 3], np.int32))
LAYER = validation.LayerTruthTables(LAYER_MEANS_PxHx4, np.full((3, 4), 2, np.int32), np.ones(3, np.float32),
                                    np.ones(3, bool))
STATS = coactivation.PairStatistics(np.array([3, 4, 2]), np.array([5, 1, 2]), np.array([1, 0, 2]),
                                    np.zeros(3, np.float32), 8)

CASES = {
    # selectivity
    "concept_responses": Case((ACTS_BxM, np.array([0, 1, 2, 0, 1, 2, 0, 1]), 3)),
    "concept_response_selectivity": Case((np.abs(_normal(3, 3)),)),
    "label_neurons": Case((np.array([0.9, 0.1, 0.2]), np.array([0.1, 0.1, 0.9]), np.array([True, True, False]),
                           0.5)),
    # weights
    "weight_entropy": Case((_normal(4, 3),)),
    "weight_l2_norm": Case((_normal(4, 3),)),
    "pairwise_angles_degrees": Case((_normal(4, 3),)),
    "mean_pairwise_angle_degrees": Case((_normal(4, 3),)),
    # dimensionality
    "singular_values": Case((_normal(10, 4),), {"row_mask": np.arange(10) < 8}),
    "participation_ratio": Case((_normal(10, 4),), {"row_mask": np.arange(10) < 8}),
    "effective_rank": Case((_normal(10, 4),), {"row_mask": np.arange(10) < 8}),
    "stable_rank": Case((_normal(10, 4),), {"row_mask": np.arange(10) < 8}),
    "num_components_for_variance": Case((_normal(10, 4), 0.9), {"row_mask": np.arange(10) < 8}),
    "twonn_dimension": Case((_normal(10, 4), KEY), {"row_mask": np.arange(10) < 8}),
    "layer_matrix": Case((_normal(4, 3, 2), "tokens"), {"token_mask": np.arange(3) < np.array([[1], [2], [3], [3]])}),
    "all_measures": Case((_normal(10, 4), KEY, None), {"row_mask": np.arange(10) < 8}),
    "singular_values_many": Case(([_normal(10, 4), _normal(12, 3)],), {"row_masks": [np.arange(10) < 8, None]}),
    "all_measures_many": Case(([_normal(10, 4), _normal(12, 3)], [KEY, KEY], None)),
    # mechanisms
    "attention_entropy": Case((PROBS_NxHxTxT, np.array([[True, True, False], [True, True, True]]))),
    "head_specialisation": Case((np.array([0.5, 1.0, 0.2], np.float32),)),
    "filter_cosine_similarity": Case((_normal(4, 3),), leading=("kernel_KhxKwxCinxCout",)),
    "activation_sparsity": Case((np.maximum(_normal(5), 0.0),), leading=("acts",)),
    "hoyer_sparsity": Case((_normal(5),), leading=("acts",)),
    "class_selectivity": Case((np.abs(ACTS_BxM), np.array([0, 1, 2, 0, 1, 2, 0, 1]), 3)),
    "class_means": Case((ACTS_BxM, np.array([0, 1, 2, 0, 1, 2, 0, 1]), 3)),
    # convergence
    "final_level": Case((SERIES_SxMxL[0, :, 0],), leading=("series_NxM",)),
    "stabilisation_band": Case((SERIES_SxMxL,)),
    "stabilisation_index": Case((SERIES_SxMxL[0, :, 0], np.array(0.5, np.float32)), leading=("series_NxM",)),
    "is_constant_series": Case((SERIES_SxMxL[0, :, 0],), leading=("series_NxM",)),
    "stabilisation": Case((SERIES_SxMxL,)),
    "depth_order_correlation": Case((np.array([[3.0, 5.0], [4.0, 4.0], [1.0, 9.0]]), np.array([0.0, 1.0]))),
    "convergence_order": Case((np.array([0.3, 0.5, 0.2, 0.4, 0.6]),), {"num_resamples": 200}, host=True),
    # critical periods
    "velocity": Case((SERIES_SxMxL[0, :10, 0], STEPS_M), leading=("series_M",)),
    "phase_randomised": Case((_normal(9), KEY)),
    "surrogate_threshold": Case((_normal(9), KEY, 19)),
    "critical_periods": Case((SERIES_SxMxL[0, :10, 0], STEPS_M, KEY, 19)),
    "layer_critical_periods": Case((SERIES_SxMxL[0, :10], STEPS_M, KEY, 19)),
    "seed_critical_periods": Case((SERIES_SxMxL[:2, :10], STEPS_M, KEYS_2, 19)),
    "window_starts": Case((CRITICAL_LxW[0],), leading=("critical_W",)),
    "num_windows": Case((CRITICAL_LxW[0],), leading=("critical_W",)),
    "coordination": Case((CRITICAL_LxW,)),
    "coordination_null": Case((CRITICAL_LxW, KEY, 10)),
    "falling_base_rate": Case((SERIES_SxMxL[0, :10, 0],)),
    "loss_correlation": Case((CRITICAL_LxW, SERIES_SxMxL[0, :10, 0])),
    "effect_over_seeds": Case((np.array([0.5, 0.6, 0.4, 0.7]), np.array([0.1, 0.2, 0.1, 0.3])),
                              {"valid_S": np.array([True, True, True, False]), "num_resamples": 200}, host=True),
    # change points
    "fit_noise": Case((JUMP_SERIES_NxM, DETECTOR, IS_JUMP_NxM)),
    "calibrate": Case((20, DETECTOR, KEY), host=True),
    "penalty_for": Case((TABLE, np.array([0.0, 0.3, 0.9], np.float32))),
    "minimum_jump_size": Case((JUMP_SERIES_NxM,)),
    "durations": Case((JUMP_SERIES_NxM, np.repeat([[0.0, 5.0]], 3, axis=0).repeat(10, axis=1), IS_JUMP_NxM, NOISE,
                       DETECTOR)),
    "detect": Case((JUMP_SERIES_NxM, TABLE, DETECTOR, np.full(3, 0.5, np.float32)), fewer_ok=("min_size_N",)),
    # codec
    "fraction_of_variance_unexplained": Case((X_BxD, X_HAT_BxD)),
    "sum_squared_error": Case((X_BxD, X_HAT_BxD)),
    "l0": Case((CODES_BxN,)),
    "firing_counts": Case((CODES_BxN,)),
    "dead_fraction": Case((COUNTS_N,)),
    "dense_fraction": Case((COUNTS_N, 8)),
    "log10_firing_frequency": Case((COUNTS_N, 8)),
    "latent_density_histogram": Case((COUNTS_N, 8, 5)),
    "cosine_similarity_matrix": Case((_normal(3, 4), DECODER_NxD)),
    "mean_max_cosine_similarity": Case((_normal(3, 4), DECODER_NxD)),
    "pearson_correlation_matrix": Case((ACTS_BxM, CODES_BxN)),
    "matched_pair_correlation": Case((ACTS_BxM, CODES_BxN), host=True),
    "matched_cosine_similarity": Case((_normal(3, 4), DECODER_NxD), host=True),
    "faithfulness_ratio": Case((X_BxD, X_HAT_BxD, X_HAT_BxD + 0.1)),
    "latents_per_neuron": Case((W_ENC_MxN, LIVE_N)),
    # superposition
    "dimensions_per_feature_total": Case((_normal(2, 5),), leading=("weights_MxN",)),
    "feature_dimensionality": Case((_normal(2, 5),), leading=("weights_MxN",)),
    "represented_features": Case((_normal(2, 5),), leading=("weights_MxN",)),
    "num_represented_features": Case((_normal(2, 5),), leading=("weights_MxN",)),
    "feature_participation_per_neuron": Case((_normal(2, 5),), leading=("weights_MxN",)),
    "classify_two_feature_solution": Case((np.array([[1.0, -0.9]], np.float32),), leading=("weights_1x2",)),
    "embedding_angle_gaps": Case((_normal(2, 5),), leading=("weights_2xN",)),
    # truth tables
    "hard_assignment": Case((W_ENC_MxN, LIVE_N)),
    "soft_assignment": Case((W_ENC_MxN, LIVE_N)),
    "count_roommate_pairs": Case((ASSIGNMENT_N, 3)),
    "roommate_pairs": Case((ASSIGNMENT_N, 3, 4)),
    "random_nonroommate_pairs": Case((KEY, ASSIGNMENT_N, 4)),
    "permuted_assignment": Case((KEY, ASSIGNMENT_N)),
    "classify": Case((MEANS_Px4, np.ones(3, np.float32), 0.5)),
    "truth_tables": Case((ACTS_BxM, CODES_BxN, PAIRS_Px2, NEURON_P, 1), {"valid_P": VALID_P}),
    "prevalence": Case((np.array([0, 2, 4], np.int32), VALID_P)),
    "row_lists_from_dense": Case((CODES_BxN, 2)),
    "sparse_truth_tables": Case((ACTS_BxM, VALUES_BxK, COLUMNS_BxK, PAIRS_Px2, NEURON_P, 1, 5),
                                {"valid_P": VALID_P}),
    "sparse_layer_truth_tables": Case((ACTS_BxM, VALUES_BxK, COLUMNS_BxK, PAIRS_Px2, 1, 5), {"valid_P": VALID_P}),
    "sparse_pair_statistics": Case((VALUES_BxK, COLUMNS_BxK, PAIRS_Px2, 5), {"valid_P": VALID_P}),
    # co-activation
    "pair_statistics": Case((CODES_BxN, PAIRS_Px2), {"codes_b_BxN": CODES_BxN[::-1]}),
    "lift_from_counts": Case((STATS,)),
    "lift": Case((CODES_BxN, PAIRS_Px2)),
    "code_correlation": Case((CODES_BxN, PAIRS_Px2)),
    "frequency_matched_pairs": Case((KEY, np.array([0.1, 0.2, 0.15, 0.0, 0.3], np.float32), PAIRS_Px2, VALID_P, 0.5,
                                     ASSIGNMENT_N)),
    "permutation_null": Case((KEY, CODES_BxN, PAIRS_Px2, VALID_P, 3)),
    "coactivation_effect": Case((CODES_BxN, PAIRS_Px2, VALID_P, PAIRS_Px2[::-1], VALID_P)),
    # validation
    "select_pairs": Case((PAIRS_Px2, NEURON_P, VALID_P, 2), host=True),
    "layer_truth_tables": Case((ACTS_BxM, CODES_BxN, PAIRS_Px2, 1), {"valid_P": VALID_P}),
    "truth_table_similarity": Case((MEANS_Px4, NEURON_P, LAYER_MEANS_PxHx4, VALID_P, 3)),
    "validation_distance": Case((SYNTHETIC, NEURON_P, LAYER, 3, 0.5), host=True),
    # superposition tax
    "atom_scores": Case((CODES_BxN, DECODER_NxD, X_BxD, "explained")),
    "atom_ranks": Case((np.array([0.3, 0.1, 0.5, 0.1, 0.2], np.float32),)),
    "monosemantic_baseline": Case((CODES_BxN, DECODER_NxD, np.zeros(4, np.float32), X_BxD, 2)),
    "monosemantic_fvu_sweep": Case((X_BxD, CODES_BxN, DECODER_NxD, np.zeros(4, np.float32), np.array([1, 3]), 2)),
    "tax_from_fvu": Case((np.array(0.5, np.float32), np.array(0.25, np.float32)),
                         any_rank=("fvu_compressed", "fvu_baseline")),
    "superposition_tax": Case((X_BxD, X_HAT_BxD, X_HAT_BxD + 0.1)),
    # themes
    "cosine_affinity": Case((DECODER_NxD,), host=True),
    "coactivation_affinity": Case((CODES_BxN,), host=True),
    "cluster_atoms": Case((), {"vectors_NxD": _normal(6, 4), "k_range": range(2, 3),
                               "live_N": np.array([True] * 5 + [False])}, host=True),
    "adjusted_rand": Case((np.array([0, 0, 1, 1, -1]), np.array([1, 1, 0, 0, 0])), host=True),
    "same_theme_fraction": Case((ASSIGNMENT_N, THEME_N, 3, 2)),
    "roommates_share_theme": Case((ASSIGNMENT_N, THEME_N, KEY, 5, 3, 2), host=True),
    # steering
    "unit_direction": Case((_normal(4),), leading=("vector_D",)),
    "norm_matched_delta": Case((_normal(4), _normal(3, 4), 0.5, np.array([True, True, False])),
                               leading=("acts_TxD",)),
    "theme_vector": Case((DECODER_NxD, LIVE_N), leading=("members_N",)),
    "difference_of_means": Case((X_BxD, np.arange(8) < 3), leading=("acts_NxD",)),
    "class_probabilities": Case((_normal(3),), leading=("logits_BxC",)),
    "mean_class_probability": Case((_normal(4, 3), 1), leading=("logits_BxC",)),
    "kl_divergence": Case((_normal(3), _normal(3)), leading=("reference_logits_BxC", "steered_logits_BxC")),
    "cosine_drift": Case((_normal(4), _normal(4)), leading=("reference_BxE", "steered_BxE")),
    "population_snr": Case((_normal(3, 4), _normal(4)), leading=("delta_BxE",)),
    "log_log_slope": Case((np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.5, 2.1])), leading=("x_K", "y_K")),
    # detection
    "auroc": Case((SCORES_N, POSITIVE_N)),
    "roc_curve": Case((SCORES_N, POSITIVE_N)),
    "tpr_at_fpr": Case((SCORES_N, POSITIVE_N, 0.5)),
    "threshold_at_fpr": Case((SCORES_N, POSITIVE_N, 0.5)),
    "rates_above_threshold": Case((SCORES_N, POSITIVE_N, 0.5)),
}


def _exported_functions() -> list[str]:
  return [name for name in metrics.__all__ if not inspect.isclass(getattr(metrics, name))]


def _bound(name: str, case: Case) -> inspect.BoundArguments:
  return inspect.signature(getattr(metrics, name)).bind(*case.args, **case.kwargs)


def _is_array(value) -> bool:
  return isinstance(value, (np.ndarray, jax.Array))


def _wrong_ranks() -> list[tuple[str, str, int]]:
  """(function, argument, rank change) of every array argument that must be rejected."""
  found = []
  for name, case in CASES.items():
    for argument, value in _bound(name, case).arguments.items():
      if not _is_array(value) or "key" in argument or argument in case.any_rank:
        continue
      if value.ndim > 0 and argument not in case.fewer_ok:
        found.append((name, argument, -1))
      if argument not in case.leading:
        found.append((name, argument, +1))
  return found


def test_every_exported_function_has_a_case():
  assert sorted(_exported_functions()) == sorted(CASES)


def test_every_export_has_a_docstring():
  for name in metrics.__all__:
    value = getattr(metrics, name)
    assert inspect.getdoc(value), name
    # A callable module (truth_tables, ...) documents its function too.
    assert inspect.getdoc(inspect.unwrap(value)), name


def test_the_package_names_only_what_it_exports_and_its_modules():
  assert len(set(metrics.__all__)) == len(metrics.__all__)
  assert not any(name.startswith("_") for name in metrics.__all__)
  with pytest.raises(AttributeError):
    getattr(metrics, "_hungarian_mean")
  # A former name loads its function with a warning, and is not exported.
  with pytest.warns(DeprecationWarning, match="features_per_neuron is deprecated: use latents_per_neuron"):
    assert metrics.features_per_neuron is metrics.latents_per_neuron
  assert "features_per_neuron" not in metrics.__all__


def test_import_from_the_package_in_a_fresh_interpreter_leaves_scikit_learn_out():
  code = ("import sys\n"
          "from mpcodec.metrics import weight_entropy, participation_ratio, truth_tables, prevalence\n"
          "from mpcodec.metrics import truth_tables as tt\n"
          "assert callable(truth_tables) and tt.CLASS_NAMES[0] == 'OR'\n"
          "assert 'sklearn' not in sys.modules and 'scipy.optimize' not in sys.modules, 'heavy import'\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_valid_inputs_run(name):
  function, case = getattr(metrics, name), CASES[name]
  if case.host:
    jax.block_until_ready(function(*case.args, **case.kwargs))
    return
  arguments = _bound(name, case).arguments
  arrays = {argument: value for argument, value in arguments.items() if _is_array(value)}
  static = {argument: value for argument, value in arguments.items() if argument not in arrays}
  jax.block_until_ready(jax.jit(lambda traced: function(**traced, **static))(arrays))


def _change_rank(value, change: int):
  return value[0] if change < 0 else value[None]


@pytest.mark.parametrize("name, argument, change", _wrong_ranks())
def test_a_wrong_rank_raises_one_value_error_naming_the_argument(name, argument, change):
  arguments = dict(_bound(name, CASES[name]).arguments)
  arguments[argument] = _change_rank(arguments[argument], change)
  with pytest.raises(ValueError) as error:
    getattr(metrics, name)(**arguments)
  assert argument in str(error.value) and name in str(error.value), str(error.value)


def test_the_message_names_the_argument_the_expected_and_the_given_shape():
  with pytest.raises(DataError) as error:
    metrics.weight_entropy(np.ones(5))
  assert str(error.value) == "weight_entropy: w_in_DxH must be 2-D (inputs, neurons), got shape (5,)"
  with pytest.raises(ValueError, match=r"codes_BxN needs B \(the samples of neuron_acts_BxM\) = 8 on axis 0"):
    metrics.truth_tables(ACTS_BxM, CODES_BxN[:7], PAIRS_Px2, NEURON_P, 1)
  with pytest.raises(ValueError, match="x_hat_BxD needs the size of x_BxD = 4 on axis 1"):
    metrics.fraction_of_variance_unexplained(X_BxD, X_HAT_BxD[:, :3])


def test_checks_see_the_per_seed_shape_under_vmap_and_jit():
  # seed_critical_periods (in CASES) runs these checks inside its own vmaps over seeds and layers.
  w_SxDxH = _normal(2, 4, 3)
  by_seed = jax.jit(jax.vmap(metrics.weight_entropy))(w_SxDxH)
  np.testing.assert_allclose(by_seed[1], metrics.weight_entropy(w_SxDxH[1]), rtol=1e-6)
  with pytest.raises(ValueError, match="w_in_DxH must be 2-D"):
    metrics.weight_entropy(w_SxDxH)
  with pytest.raises(ValueError, match="w_in_DxH must be 2-D"):
    jax.vmap(metrics.weight_entropy)(w_SxDxH[:, 0])


def test_concrete_indices_out_of_range_raise_and_traced_ones_are_not_read():
  with pytest.raises(ValueError, match=r"pairs_Px2 must index atoms \(columns of codes_BxN\) in \[0, 5\), got"):
    metrics.truth_tables(ACTS_BxM, CODES_BxN, PAIRS_Px2 + 3, NEURON_P, 1)
  with pytest.raises(ValueError, match=r"neuron_P must index neurons .* in \[0, 3\)"):
    metrics.truth_tables(ACTS_BxM, CODES_BxN, PAIRS_Px2, NEURON_P + 1, 1)
  with pytest.raises(ValueError, match="assignment_N must index neurons"):
    metrics.roommate_pairs(ASSIGNMENT_N, 1, 4)
  with pytest.raises(ValueError, match="class_P must index the classes"):
    metrics.prevalence(np.array([0, 5, 1]), VALID_P)
  traced = jax.jit(lambda pairs: metrics.truth_tables(ACTS_BxM, CODES_BxN, pairs, NEURON_P, 1).class_P)
  assert traced(PAIRS_Px2).shape == (3,)
