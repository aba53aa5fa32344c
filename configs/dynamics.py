"""Training dynamics: per-layer effective dimensionality measured all through training, 55 configurations.

Run the whole default grid (finished configurations are skipped when run again):
  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics
A subset by config argument (comma-separated key=value; several names joined with '+'):
  python -m launch.dynamics --config=configs/dynamics.py:arch=mlp_128_64,dataset=mnist --workdir=runs/dyn
  python -m launch.dynamics --config=configs/dynamics.py:arch=cnn_32_64+cnn_32_64_128 --workdir=runs/dyn
Seconds-long smoke grid (MNIST and AG News, few steps), alone or with a filter:
  python -m launch.dynamics --config=configs/dynamics.py:smoke --workdir=/tmp/dynamics_smoke
Other keys of the argument: seeds=N, steps=N (overrides). Data come from --data_dir or MPCODEC_DATA_DIR.

The default grid (the original study's 55 configurations):
- 8 MLPs x {mnist, fashion_mnist, kmnist, ag_news} = 32 (on text an MLP reads the mean token embedding);
- 3 CNNs x {mnist, fashion_mnist, kmnist} = 9;
- Transformers, 14 runs: (128,4,2), (128,4,4), (128,4,6), (256,8,4) on {mnist, fashion_mnist, ag_news}
  = 12, and (64,4,4) on {mnist, fashion_mnist} = 2. "All five on images and text except (64,4,4) on two
  image sets only" gives 14 only with two image sets per transformer: MNIST and Fashion-MNIST, the two
  sets with their full official training split here (KMNIST has 8,000 training images here).
"""

import ml_collections

MLPS = ("mlp_128_64", "mlp_64x4_32", "mlp_32x10", "mlp_24x15", "mlp_32x4", "mlp_128x2_64x2",
        "mlp_256x2_128x2", "mlp_512x2_256x2")
CNNS = ("cnn_32_64", "cnn_32_64_128", "cnn_32_64_128_256")
TRANSFORMERS = ("transformer_d128_h4_l2", "transformer_d128_h4_l4", "transformer_d128_h4_l6",
                "transformer_d256_h8_l4")
SMALL_TRANSFORMER = "transformer_d64_h4_l4"
IMAGE_SETS = ("mnist", "fashion_mnist", "kmnist")
TEXT_SET = "ag_news"


def default_runs():
  """The 55 `arch@dataset` runs of the default grid (see the module docstring)."""
  runs = [f"{a}@{d}" for a in MLPS for d in IMAGE_SETS + (TEXT_SET,)]
  runs += [f"{a}@{d}" for a in CNNS for d in IMAGE_SETS]
  runs += [f"{a}@{d}" for a in TRANSFORMERS for d in ("mnist", "fashion_mnist", TEXT_SET)]
  runs += [f"{SMALL_TRANSFORMER}@{d}" for d in ("mnist", "fashion_mnist")]
  return runs


def smoke_runs():
  return ["mlp_128_64@mnist", "mlp_128_64@ag_news"]


def _family(batch_size, probe_size, learning_rate, warmup_steps=0, train_probe_size=256,
            final_eval_size=2000, measurements_per_chunk=0):
  return ml_collections.ConfigDict(dict(
      batch_size=batch_size, probe_size=probe_size, train_probe_size=train_probe_size,
      learning_rate=learning_rate, warmup_steps=warmup_steps, final_eval_size=final_eval_size,
      measurements_per_chunk=measurements_per_chunk))


def _parse_arg(arg):
  """'smoke,arch=a+b,dataset=c,seeds=2' -> (smoke?, {key: value})."""
  smoke, values = False, {}
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    if part == "smoke":
      smoke = True
      continue
    key, sep, value = part.partition("=")
    if not sep or key not in ("arch", "dataset", "seeds", "steps"):
      raise ValueError(f"config argument {part!r}: expected 'smoke' or key=value with key in "
                       f"['arch', 'dataset', 'seeds', 'steps']")
    values[key] = value
  return smoke, values


def get_config(arg=None):
  smoke, values = _parse_arg(arg)
  cfg = ml_collections.ConfigDict()
  cfg.runs = default_runs()
  cfg.base = ml_collections.ConfigDict(dict(
      num_seeds=5, seed=0, data_seed=0, num_steps=2000, shared_data_order=True, measure=True,
      measure_every=5, twonn_samples=256, max_matrix_rows=4096, conv_mode="flatten",
      measurements_per_chunk=100, eval_batch_size=500, embed_dim=64, vocab_size=20000,
      max_length=48,
      optim=ml_collections.ConfigDict(dict(
          name="adam", learning_rate=1e-3, warmup_steps=0, schedule="constant", weight_decay=0.0,
          momentum=0.0, grad_clip_norm=0.0))))
  # Batch and probe sizes per family: the forward passes of a measurement cost about
  # (probe + train_probe) / (3 * measure_every * batch) of training (one forward of both probes against
  # forward + backward of the batches), on top of the spectra; the batch is what the 90-minute CPU
  # budget affords per family. CNNs and Transformers: a 256-example train probe was 4/5 of a
  # measurement's time (its forward pass, not the spectra), so it is cut to the held-out probe's 64.
  cfg.mlp = _family(batch_size=64, probe_size=512, learning_rate=1e-3)
  # Chunks (measurements per host call, i.e. progress updates) are shorter for the slow families: 500
  # steps of transformer_d256_h8_l4 on AG News take about 10 minutes on 2 CPU cores, 100 about 2.
  cfg.cnn = _family(batch_size=16, probe_size=64, learning_rate=1e-3, train_probe_size=64,
                    measurements_per_chunk=50)
  cfg.transformer = _family(batch_size=16, probe_size=64, learning_rate=5e-4, warmup_steps=100,
                            train_probe_size=64, measurements_per_chunk=20)
  cfg.fail_margin = 0.1
  cfg.text_accuracy_target = 0.75
  cfg.plots = True

  if smoke:
    cfg.runs = smoke_runs()
    cfg.base.num_seeds = 2
    cfg.base.num_steps = 20
    cfg.base.twonn_samples = 32
    cfg.base.measurements_per_chunk = 2
    cfg.base.vocab_size = 2000
    cfg.base.max_length = 32
    for family in (cfg.mlp, cfg.cnn, cfg.transformer):
      family.batch_size = 16
      family.probe_size = 48
      family.train_probe_size = 32
      family.final_eval_size = 200
      family.warmup_steps = 0
      family.measurements_per_chunk = 0
  if "seeds" in values:
    cfg.base.num_seeds = int(values["seeds"])
  if "steps" in values:
    cfg.base.num_steps = int(values["steps"])
  for key in ("arch", "dataset"):
    if key in values:
      wanted = set(values[key].split("+"))
      position = 0 if key == "arch" else 1
      cfg.runs = [r for r in cfg.runs if r.split("@")[position] in wanted]
      if not cfg.runs:
        raise ValueError(f"config argument {key}={values[key]}: selects no run of the grid; valid "
                         f"{key} names in it: {sorted({r.split('@')[position] for r in default_runs()})}")
  return cfg
