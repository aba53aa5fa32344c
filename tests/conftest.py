"""Test-wide settings, applied before any test module imports numpy or JAX; the fast subset's list."""

import gc
import os

import pytest

# scipy's OpenBLAS threads compete with XLA's for the same cores; one thread keeps both fast.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# The README's test command sets MPCODEC_DATA_DIR=../shared/data, relative to where pytest starts. Tests
# that change directory, start launches elsewhere or symlink the data into a temporary folder would
# resolve it against another folder, so it is made absolute once, here, before any test reads it.
if os.environ.get("MPCODEC_DATA_DIR"):
  os.environ["MPCODEC_DATA_DIR"] = os.path.abspath(os.path.expanduser(os.environ["MPCODEC_DATA_DIR"]))

# `pytest -m "not slow"` is the fast subset (a few minutes on 2 cores); CI runs every test. Slow are the
# modules that train whole runs (smoke launches, multi-process and multi-device runs, golden runs) and the
# single tests that took over ~8 s on a loaded 2-core machine. A test file may also mark its own tests
# with @pytest.mark.slow.
SLOW_MODULES = (
    "tests/launch/test_faults.py", "tests/launch/test_grid_faults.py", "tests/launch/test_mono_poly.py",
    "tests/launch/test_preemption.py", "tests/launch/test_resume.py",
    "tests/studies/codec/test_analysis.py", "tests/studies/codec/test_minilm_study.py",
    "tests/studies/codec/test_pipeline.py", "tests/studies/codec/test_sources.py",
    "tests/studies/codec/test_text_source.py",
    "tests/studies/dynamics/test_analysis.py", "tests/studies/dynamics/test_program.py",
    "tests/studies/dynamics/test_run.py",
    "tests/studies/mono_poly/test_experiment.py", "tests/studies/mono_poly/test_report.py",
    "tests/studies/toy_superposition/test_run.py", "tests/studies/toy_superposition/test_program.py",
    "tests/studies/dynamics/test_parallel.py", "tests/studies/codec/test_smollm2_codec.py",
    "tests/studies/codec/test_smollm2_splice.py", "tests/models/test_smollm2.py", "tests/benchmarks/test_suite.py",
    "tests/core/test_distributed.py", "tests/core/test_sharding.py",
    "tests/test_golden.py", "tests/test_checkpoints.py",
)
SLOW_TESTS = (   # "file::test name" (every parametrisation of it)
    "tests/sae/test_autoencoder.py::test_topk_sae_recovers_known_dictionary_on_every_seed",
    "tests/sae/test_autoencoder.py::test_folded_weights_reproduce_trained_sae_on_raw_inputs",
    "tests/sae/test_autoencoder.py::test_sparse_decoder_gradients_equal_dense_reference",
    "tests/sae/test_squeezer.py::test_squeezer_metrics_match_numpy",
    "tests/sae/test_trainer.py::test_a_resumed_run_equals_an_uninterrupted_one",
    "tests/sae/test_trainer.py::test_result_shapes_labels_and_metrics",
    "tests/sae/test_trainer.py::test_the_planted_dictionary_is_recovered",
    "tests/sae/test_trainer.py::test_vmapped_seeds_and_ks_equal_single_runs",
    "tests/metrics/test_changepoints.py::test_harness_false_positives_meet_the_bar_on_every_null",
    "tests/metrics/test_changepoints.py::test_vmap_and_jit_over_seeds_equal_one_series_at_a_time",
    "tests/metrics/test_changepoints.py::test_short_series_are_handled",
    "tests/metrics/test_changepoints.py::test_detected_jump_has_its_size_sign_position_and_a_zero_duration",
    "tests/metrics/test_changepoints.py::test_constant_and_zero_series_give_no_jump_and_no_nan",
    "tests/metrics/test_changepoints.py::test_fit_levels_recovers_a_step_on_a_trend_exactly",
    "tests/metrics/test_coactivation.py::test_coactivation_effect_reads_both_directions",
    "tests/metrics/test_coactivation.py::test_pair_statistics_lift_and_correlation_match_numpy",
    "tests/metrics/test_critical_periods.py::test_noise_alone_is_critical_at_the_calibrated_family_wise_rate",
    "tests/metrics/test_critical_periods.py::test_coordination_and_its_null_match_numpy",
    "tests/metrics/test_truth_tables.py::test_random_neurons_give_or_prevalence_near_the_null",
    "tests/metrics/test_sparse_truth_tables.py::test_accumulating_chunks_equals_one_pass",
    "tests/metrics/test_sparse_truth_tables.py::test_layer_tables_and_pair_statistics_match_dense",
    "tests/metrics/test_sparse_truth_tables.py::test_sparse_tables_match_numpy_and_dense",
    "tests/metrics/test_themes.py::test_decoder_rows_recover_geometric_themes_only",
    "tests/metrics/test_dimensionality.py::test_jit_vmap_over_seeds_matches_per_seed",
    "tests/models/test_toy_superposition.py::test_sparse_uniform_features_form_a_pentagon_on_every_seed",
    "tests/models/test_toy_superposition.py::test_one_step_equals_manual_adam_step",
    "tests/models/test_checkpointed.py::test_activations_of_the_loaded_model_match_a_numpy_forward_pass",
    "tests/core/test_loop.py::test_chunked_run_and_resumes_equal_one_pure_call",
    "tests/core/test_loop.py::test_sigint_stops_after_the_chunk_with_a_checkpoint",
    "tests/core/test_loop.py::test_time_policy_saves_planned_steps_and_chunk_ends_an_interval_after_the_last_save",
    "tests/core/test_loop.py::test_a_run_that_dies_after_a_time_save_resumes_from_it_bit_for_bit",
    "tests/core/test_probe.py::test_row_weights_leave_rows_out_and_batched_fits_equal_single_ones",
    "tests/core/test_probe.py::test_probe_equals_sklearn_logistic_regression_on_standardised_features",
    "tests/core/test_probe.py::test_margin_direction_is_the_gradient_of_the_target_margin",
    "tests/data/test_bars.py::test_noise_is_gaussian_with_configured_std",
    "tests/data/test_toy_features.py::test_cofiring_themes_keep_k_and_raise_within_theme_cofiring",
    "tests/test_api_docs.py::test_api_reference_builds_without_warnings",
    "tests/results/test_dynamics_series.py::test_the_published_analysis_reproduces_from_the_committed_series",
)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: a long test (whole runs, large programs); `pytest -m 'not slow'` leaves them out "
      "for the fast subset, CI runs every test")


def pytest_collection_modifyitems(config, items):
  import pytest  # pylint: disable=g-import-not-at-top
  slow_modules, slow_tests = set(SLOW_MODULES), set(SLOW_TESTS)
  for item in items:
    path = item.nodeid.split("::")[0]
    name = item.nodeid.split("[")[0]
    if path in slow_modules or name in slow_tests:
      item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops JAX's compiled programs when each test module ends: one pytest process runs ~1,500 tests (real
  models among them), and JAX's caches would otherwise hold every executable to the end of the session."""
  yield
  import jax  # pylint: disable=g-import-not-at-top
  jax.clear_caches()
  gc.collect()
