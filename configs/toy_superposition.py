"""Toy Models of Superposition: pentagon, dense features, n = 2, m = 1 phase diagram, privileged basis.

python -m launch.toy_superposition --config=configs/toy_superposition.py --workdir=DIR
python -m launch.toy_superposition --config=configs/toy_superposition.py:smoke --workdir=DIR
"""

from __future__ import annotations

import ml_collections


def _train(num_features: int, hidden_dim: int, num_steps: int, batch_size: int, learning_rate: float,
           num_restarts: int, schedule: str = "constant", variant: str = "relu_output"
           ) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      num_features=num_features, hidden_dim=hidden_dim, variant=variant, num_steps=num_steps,
      batch_size=batch_size, optim=dict(name="adam", learning_rate=learning_rate, schedule=schedule),
      history_every=num_steps // 10,
      num_restarts=num_restarts))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Full run by default; "smoke" shrinks every sweep to seconds."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_seeds = 4
  # Batch 1024 and Adam as in the paper; a cosine decay settles the geometry exactly, and restarts
  # escape the local minima that nearly collinear initial embeddings fall into.
  config.train = _train(5, 2, num_steps=5_000, batch_size=1024, learning_rate=1e-2, num_restarts=4,
                        schedule="cosine")
  config.pentagon_sparsity = 0.9
  config.dense_importance_decay = 0.7
  config.phase_diagram = ml_collections.ConfigDict()
  config.phase_diagram.relative_importances = (0.1, 0.18, 0.32, 0.56, 1.0, 1.8, 3.2, 5.6, 10.0)
  config.phase_diagram.feature_densities = (1.0, 0.56, 0.32, 0.18, 0.1, 0.056, 0.032, 0.018, 0.01)
  config.phase_diagram.train = _train(2, 1, num_steps=3_000, batch_size=512, learning_rate=1e-2,
                                      num_restarts=4, schedule="cosine")
  # Privileged basis: the ReLU-hidden model, n = 10 features on m = 5 neurons. Dense features settle
  # on one neuron each only slowly (a rotated embedding clips rarely, so its gradient is small), hence
  # the long run.
  config.privileged_basis = ml_collections.ConfigDict()
  config.privileged_basis.sparsities = (0.0, 0.7, 0.9, 0.97, 0.99)
  config.privileged_basis.importance_decay = 0.9
  config.privileged_basis.train = _train(10, 5, num_steps=10_000, batch_size=512, learning_rate=1e-2,
                                         num_restarts=4, schedule="cosine", variant="relu_hidden")
  if arg == "smoke":
    # Still reaches the pentagon and the dense result on every seed (the tests rely on it).
    config.num_seeds = 3
    config.train = _train(5, 2, num_steps=1_500, batch_size=256, learning_rate=1e-2, num_restarts=4,
                          schedule="cosine")
    config.phase_diagram.relative_importances = (0.3, 3.0)
    config.phase_diagram.feature_densities = (1.0, 0.05)
    config.phase_diagram.train = _train(2, 1, num_steps=300, batch_size=128, learning_rate=1e-2,
                                        num_restarts=2, schedule="cosine")
    # A larger learning rate aligns the dense cell with the neurons in 3,000 steps; the restarts catch
    # the seeds whose neurons it kills.
    config.privileged_basis.sparsities = (0.0, 0.9)
    config.privileged_basis.train = _train(10, 5, num_steps=3_000, batch_size=128, learning_rate=5e-2,
                                           num_restarts=2, schedule="cosine", variant="relu_hidden")
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}; expected none or 'smoke'")
  return config
