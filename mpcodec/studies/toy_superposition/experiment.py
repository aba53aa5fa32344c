"""The names of the toy-superposition study's former training module, re-exported from the five files.

Import from `config` (the typed config) and `program` (make_program, make_train, make_cell_train)
instead. Here `make_train` is still the one-cell trainer `program.make_cell_train` it used to be.
"""

from mpcodec.studies.toy_superposition.config import (PhaseDiagramConfig, PrivilegedBasisConfig,
                                                      ToySuperpositionConfig, ToyTrainConfig)
from mpcodec.studies.toy_superposition.program import importance_weighted_mse, seed_keys
from mpcodec.studies.toy_superposition.program import make_cell_train as make_train

__all__ = ["PhaseDiagramConfig", "PrivilegedBasisConfig", "ToySuperpositionConfig", "ToyTrainConfig",
           "importance_weighted_mse", "make_train", "seed_keys"]
