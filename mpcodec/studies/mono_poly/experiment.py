"""The names of the mono->poly study's former single module, re-exported from the five files.

Import from `config` (the typed config), `program` (make_program, make_train, data and keys) and `run`
(train, main) instead; this module stays for code written against it.
"""

from mpcodec.studies.mono_poly.config import (CONTROL, PHASES, AnalysisConfig, ModelConfig, MonoPolyConfig,
                                              PhaseConfig, parse_config, phase_names, training_config)
from mpcodec.studies.mono_poly.program import (PHASE1_PARAMS, _draw_seed_sets, _seed_draws, abstract_carry,
                                               checkpoint_dir, checkpoint_root, data_axis, data_description,
                                               data_keys, hidden_activations, layer_names, make_datasets,
                                               make_model, make_program, make_train, order_key, phase_steps,
                                               restore_state, run_datasets, seed_datasets, seed_keys,
                                               train_keys, training_data)
from mpcodec.studies.mono_poly.run import activation_source, run_experiment, train

__all__ = ["CONTROL", "PHASES", "PHASE1_PARAMS", "AnalysisConfig", "ModelConfig", "MonoPolyConfig", "PhaseConfig",
           "_draw_seed_sets", "_seed_draws", "abstract_carry", "activation_source", "checkpoint_dir",
           "checkpoint_root", "data_axis", "data_description", "data_keys", "hidden_activations", "layer_names",
           "make_datasets", "make_model", "make_program", "make_train", "order_key", "parse_config",
           "phase_names", "phase_steps", "restore_state", "run_datasets", "run_experiment", "seed_datasets",
           "seed_keys", "train", "train_keys", "training_config", "training_data"]
