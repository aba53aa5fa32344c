"""The mono->poly experiment: orientation first, then orientation XOR colour, 16 seeds at once.

Run (training, then analysis from the checkpoints):
  python -m launch.mono_poly --config=configs/mono_poly.py --workdir=runs/mono_poly
Seconds-long smoke run:
  python -m launch.mono_poly --config=configs/mono_poly.py:smoke --workdir=/tmp/mono_poly_smoke
Override any knob from the command line, e.g. --config.num_seeds=64 --config.phase2.steps=6000.
"""

import ml_collections


def _optimizer(learning_rate=1e-3):
  return ml_collections.ConfigDict(dict(
      name="adam", learning_rate=learning_rate, warmup_steps=0, schedule="constant",
      weight_decay=0.0, momentum=0.0, grad_clip_norm=0.0))


def get_config(arg=None):
  cfg = ml_collections.ConfigDict()
  cfg.num_seeds = 16
  cfg.first_seed = 0
  cfg.data_seed = 0
  cfg.batch_size = 32
  # One minibatch order for all seeds: one gather and one wide matmul per step for the whole sweep.
  cfg.shared_data_order = True
  cfg.log_every = 50

  cfg.data = ml_collections.ConfigDict(dict(
      num_train=5000, num_test=1000, image_size=32, min_thickness=2, max_thickness=5,
      min_length_fraction=0.5, intensity=1.0, noise_std=0.1))
  cfg.model = ml_collections.ConfigDict(dict(hidden_widths=(10,)))

  cfg.phase1 = ml_collections.ConfigDict(dict(
      task="orientation", steps=1500, checkpoint_every=100, optimizer=_optimizer()))
  cfg.phase2 = ml_collections.ConfigDict(dict(
      task="xor", steps=4000, checkpoint_every=200, optimizer=_optimizer()))

  cfg.analysis = ml_collections.ConfigDict(dict(
      poly_threshold=0.3, bootstrap_resamples=10000, bootstrap_seed=0, num_sample_images=16))

  if arg == "smoke":
    cfg.num_seeds = 4
    cfg.data.num_train = 512
    cfg.data.num_test = 256
    cfg.log_every = 20
    cfg.phase1.steps = 60
    cfg.phase1.checkpoint_every = 20
    cfg.phase2.steps = 60
    cfg.phase2.checkpoint_every = 20
    cfg.analysis.bootstrap_resamples = 500
    cfg.analysis.num_sample_images = 8
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use nothing or 'smoke'")
  return cfg
