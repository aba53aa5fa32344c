"""Toy Models of Superposition: pentagon, dense features, n = 2, m = 1 phase diagram, privileged basis.

  python -m launch.toy_superposition --config=configs/toy_superposition.py --workdir=runs/toy
Seconds-long smoke run:
  python -m launch.toy_superposition --config=configs/toy_superposition.py:smoke --workdir=runs/toy_smoke
"""

from mpcodec.core import configuration
from mpcodec.studies.toy_superposition.config import ToySuperpositionConfig

# Every default is ToySuperpositionConfig's (mpcodec/studies/toy_superposition/config.py); this file
# changes none. The reasons for some of them: batch 1024 and Adam as in the paper; a cosine decay
# settles the geometry exactly, and restarts escape the local minima that nearly collinear initial
# embeddings fall into. Privileged basis (the ReLU-hidden model, n = 10 features on m = 5 neurons):
# dense features settle on one neuron each only slowly (a rotated embedding clips rarely, so its
# gradient is small), hence the long run. Every run records its loss ten times (history_every).
PRESETS = {
    # Seconds-long: every sweep shrunk. Still reaches the pentagon and the dense result on every seed
    # (the tests rely on it). A larger learning rate aligns the privileged basis's dense cell with the
    # neurons in 3,000 steps; the restarts catch the seeds whose neurons it kills.
    "smoke": {
        "num_seeds": 3,
        "train.num_steps": 1_500, "train.batch_size": 256, "train.history_every": 150,
        "phase_diagram.relative_importances": (0.3, 3.0), "phase_diagram.feature_densities": (1.0, 0.05),
        "phase_diagram.train.num_steps": 300, "phase_diagram.train.batch_size": 128,
        "phase_diagram.train.history_every": 30, "phase_diagram.train.num_restarts": 2,
        "privileged_basis.sparsities": (0.0, 0.9),
        "privileged_basis.train.num_steps": 6_000, "privileged_basis.train.batch_size": 128,
        "privileged_basis.train.history_every": 300, "privileged_basis.train.num_restarts": 2,
        "privileged_basis.train.optim.learning_rate": 5e-2,
    },
}


get_config = configuration.config_file(ToySuperpositionConfig, presets=PRESETS)
