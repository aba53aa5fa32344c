"""Pure, jittable metric functions of neurons, layers and codecs, vmappable over a leading seed axis.

Every function below takes arrays (numpy or JAX) and returns arrays, named tuples or dataclasses. Each
checks the ranks and shapes of its inputs when it is called or traced (so under `jax.jit` and
`jax.vmap` too, where it sees the per-seed shape) and raises one `ValueError` (an
`mpcodec.core.errors.DataError`) naming the argument, the shape it expects and the shape it got; index
arguments (atom pairs, neurons) are range-checked where their values are concrete. Array names carry their
shape: `w_in_DxH` is (inputs D, neurons H). Import what you need from here:

    from mpcodec.metrics import participation_ratio, truth_tables, weight_entropy

Names load on first use, so importing the package does not import scikit-learn or SciPy's optimisers.

**Selectivity of neurons**: `concept_responses`, `concept_response_selectivity`, `label_neurons`
(monosemantic, polysemantic or dead); class selectivity of units: `class_means`, `class_selectivity`.

**Geometry of weights**: `weight_entropy`, `weight_l2_norm`, `pairwise_angles_degrees`,
`mean_pairwise_angle_degrees`, `filter_cosine_similarity`.

**Effective dimensionality of a layer**: `participation_ratio`, `effective_rank`, `stable_rank`,
`num_components_for_variance`, `twonn_dimension`, their shared spectrum `singular_values`, all five at once
`all_measures`, every layer of a network at once `singular_values_many` and `all_measures_many` (on a CPU
backend their decompositions run over the cores, bit-identical to one call per layer), and `layer_matrix`
(dense, conv or token activations as a samples x features matrix).

**Mechanisms at a checkpoint**: `attention_entropy`, `head_specialisation`, `activation_sparsity`,
`hoyer_sparsity`.

**Training dynamics**. When layers settle: `final_level`, `stabilisation_band`, `stabilisation_index`,
`is_constant_series`, `stabilisation`, `depth_order_correlation`, `convergence_order`. Critical periods:
`velocity`, `phase_randomised`, `surrogate_threshold`, `critical_periods`, `layer_critical_periods`,
`seed_critical_periods` (results in `CriticalPeriods`), `window_starts`, `num_windows`, `coordination`,
`coordination_null`, `falling_base_rate`, `loss_correlation` (`LossCorrelation`), `effect_over_seeds`.
Jumps (change points): `DetectorConfig`, `fit_noise` (`NoiseModel`), `calibrate` (`PenaltyTable`),
`penalty_for`, `minimum_jump_size`, `detect` (`Jumps`), `durations`.

**Sparse autoencoders and the codec**: `fraction_of_variance_unexplained`, `sum_squared_error`,
`faithfulness_ratio`, `l0`, `firing_counts`, `dead_fraction`, `dense_fraction`, `log10_firing_frequency`,
`latent_density_histogram`, `cosine_similarity_matrix`, `mean_max_cosine_similarity`,
`pearson_correlation_matrix`, `matched_pair_correlation`, `matched_cosine_similarity`,
`latents_per_neuron` (live latents assigned to each neuron of an encoder of the latents; the former
name `features_per_neuron` still loads it, with a DeprecationWarning, and is not exported).

**Superposition of a toy model's embedding**: `dimensions_per_feature_total`, `feature_dimensionality`,
`represented_features`, `num_represented_features`, `feature_participation_per_neuron`,
`classify_two_feature_solution`, `embedding_angle_gaps`.

**Roommates and truth tables** (atoms that share a neuron, and the logic the neuron computes on them):
`hard_assignment`, `soft_assignment`, `count_roommate_pairs`, `roommate_pairs`,
`random_nonroommate_pairs`, `permuted_assignment`, `truth_tables` (`TruthTables`), `classify`,
`prevalence` (`Prevalence`); from sparse Top-K row lists: `row_lists_from_dense`, `sparse_truth_tables`,
`sparse_layer_truth_tables`, `sparse_pair_statistics`.

**Co-activation of atom pairs**: `pair_statistics` (`PairStatistics`), `lift`, `lift_from_counts`,
`code_correlation`, `frequency_matched_pairs`, `permutation_null`, `coactivation_effect`
(`CoactivationEffect`).

**Validation against a real layer**: `select_pairs`, `layer_truth_tables` (`LayerTruthTables`),
`truth_table_similarity`, `validation_distance` (`Validation`).

**The superposition tax**: `atom_scores`, `atom_ranks`, `monosemantic_baseline`,
`monosemantic_fvu_sweep`, `tax_from_fvu`, `superposition_tax` (`SuperpositionTax`).

**Themes** (clusters of atoms): `cosine_affinity`, `coactivation_affinity`, `cluster_atoms`
(`ThemeClustering`), `adjusted_rand`, `same_theme_fraction`, `roommates_share_theme` (`ShareTheme`).

**Steering**: `unit_direction`, `norm_matched_delta`, `theme_vector`, `difference_of_means`,
`class_probabilities`, `mean_class_probability`, `kl_divergence`, `cosine_drift`, `population_snr`,
`log_log_slope`.

**Detection from a score**: `auroc`, `roc_curve`, `tpr_at_fpr`, `threshold_at_fpr`,
`rates_above_threshold`.

`truth_tables`, `superposition_tax` and `critical_periods` are also the names of their modules: the name
imported from here is that module, callable as the function (`truth_tables(...)`), and it still gives the
module's other names (`truth_tables.CLASS_NAMES`). Constants (class codes and names, defaults) live in the
modules.
"""

import importlib
import warnings

# Each exported name and the module that defines it.
_EXPORTS = {
    "selectivity": ("concept_responses", "concept_response_selectivity", "label_neurons"),
    "weights": ("weight_entropy", "weight_l2_norm", "pairwise_angles_degrees", "mean_pairwise_angle_degrees"),
    "dimensionality": ("singular_values", "participation_ratio", "effective_rank", "stable_rank",
                       "num_components_for_variance", "twonn_dimension", "layer_matrix", "all_measures",
                       "singular_values_many", "all_measures_many"),
    "mechanisms": ("attention_entropy", "head_specialisation", "filter_cosine_similarity", "activation_sparsity",
                   "hoyer_sparsity", "class_selectivity", "class_means"),
    "convergence": ("final_level", "stabilisation_band", "stabilisation_index", "is_constant_series",
                    "stabilisation", "depth_order_correlation", "convergence_order"),
    "critical_periods": ("CriticalPeriods", "LossCorrelation", "velocity", "phase_randomised",
                         "surrogate_threshold", "critical_periods", "layer_critical_periods",
                         "seed_critical_periods", "window_starts", "num_windows", "coordination",
                         "coordination_null", "falling_base_rate", "loss_correlation", "effect_over_seeds"),
    "changepoints": ("DetectorConfig", "NoiseModel", "PenaltyTable", "Jumps", "fit_noise", "calibrate",
                     "penalty_for", "minimum_jump_size", "durations", "detect"),
    "codec": ("fraction_of_variance_unexplained", "sum_squared_error", "l0", "firing_counts", "dead_fraction",
              "dense_fraction", "log10_firing_frequency", "latent_density_histogram", "cosine_similarity_matrix",
              "mean_max_cosine_similarity", "pearson_correlation_matrix", "matched_pair_correlation",
              "matched_cosine_similarity", "faithfulness_ratio", "latents_per_neuron"),
    "superposition": ("dimensions_per_feature_total", "feature_dimensionality", "represented_features",
                      "num_represented_features", "feature_participation_per_neuron",
                      "classify_two_feature_solution", "embedding_angle_gaps"),
    "truth_tables": ("hard_assignment", "soft_assignment", "count_roommate_pairs", "roommate_pairs",
                     "random_nonroommate_pairs", "permuted_assignment", "TruthTables", "classify", "truth_tables",
                     "Prevalence", "prevalence"),
    "sparse_cells": ("row_lists_from_dense", "sparse_truth_tables", "sparse_layer_truth_tables",
                     "sparse_pair_statistics"),
    "coactivation": ("PairStatistics", "pair_statistics", "lift_from_counts", "lift", "code_correlation",
                     "frequency_matched_pairs", "permutation_null", "CoactivationEffect", "coactivation_effect"),
    "validation": ("LayerTruthTables", "select_pairs", "layer_truth_tables", "truth_table_similarity",
                   "Validation", "validation_distance"),
    "superposition_tax": ("atom_scores", "atom_ranks", "monosemantic_baseline", "monosemantic_fvu_sweep",
                          "SuperpositionTax", "tax_from_fvu", "superposition_tax"),
    "themes": ("ThemeClustering", "cosine_affinity", "coactivation_affinity", "cluster_atoms", "adjusted_rand",
               "same_theme_fraction", "ShareTheme", "roommates_share_theme"),
    "steering": ("unit_direction", "norm_matched_delta", "theme_vector", "difference_of_means",
                 "class_probabilities", "mean_class_probability", "kl_divergence", "cosine_drift", "population_snr",
                 "log_log_slope"),
    "detection": ("auroc", "roc_curve", "tpr_at_fpr", "threshold_at_fpr", "rates_above_threshold"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_MODULE_OF)

# Former names still loaded (not exported): {old name: its name now}.
_RENAMED = {"features_per_neuron": "latents_per_neuron"}


def __getattr__(name: str):
  """Loads an exported name from its module on first use (PEP 562)."""
  if name in _RENAMED:
    warnings.warn(f"mpcodec.metrics.{name} is deprecated: use {_RENAMED[name]}", DeprecationWarning, stacklevel=2)
    return __getattr__(_RENAMED[name])
  module_name = _MODULE_OF.get(name)
  if module_name is None:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  module = importlib.import_module(f"{__name__}.{module_name}")
  # A module named like its function is itself the export (callable as the function).
  value = module if name == module_name else getattr(module, name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
