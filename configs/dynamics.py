"""Training dynamics: per-layer effective dimensionality measured all through training, 55 configurations.

Run the whole default grid (finished configurations are skipped when run again):
  python -m launch.dynamics --config=configs/dynamics.py --workdir=runs/dynamics --data_dir=../shared/data
A subset by config argument (comma-separated key=value; several names joined with '+'):
  python -m launch.dynamics --config=configs/dynamics.py:arch=mlp_128_64,dataset=mnist --workdir=runs/dyn \
      --data_dir=../shared/data
  python -m launch.dynamics --config=configs/dynamics.py:arch=cnn_32_64+cnn_32_64_128 --workdir=runs/dyn \
      --data_dir=../shared/data
Seconds-long smoke grid (MNIST and AG News, few steps), alone or with a filter:
  python -m launch.dynamics --config=configs/dynamics.py:smoke --workdir=runs/dynamics_smoke --data_dir=../shared/data
Other keys of the argument: seeds=N, steps=N (overrides). Data come from --data_dir, else $MPCODEC_DATA_DIR.

The default grid (the original study's 55 configurations):
- 8 MLPs x {mnist, fashion_mnist, kmnist, ag_news} = 32 (on text an MLP reads the mean token embedding);
- 3 CNNs x {mnist, fashion_mnist, kmnist} = 9;
- Transformers, 14 runs: (128,4,2), (128,4,4), (128,4,6), (256,8,4) on {mnist, fashion_mnist, ag_news}
  = 12, and (64,4,4) on {mnist, fashion_mnist} = 2. "All five on images and text except (64,4,4) on two
  image sets only" gives 14 only with two image sets per transformer: MNIST and Fashion-MNIST, the two
  sets with their full official training split here (KMNIST has 8,000 training images here).
"""

from mpcodec.core import configuration
from mpcodec.core.errors import ConfigError
from mpcodec.studies.dynamics import grid
from mpcodec.studies.dynamics.config import SweepConfig

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


# What differs from SweepConfig's defaults (mpcodec/studies/dynamics/config.py), and why. Everything
# else, every DynamicsConfig knob of `base` included, is the dataclasses' default.
OVERRIDES = {
    # The default grid is the original study's 55 configurations (see the docstring), built from the
    # lists above; SweepConfig's own default is a single run.
    "runs": default_runs(),
    # Batch and probe sizes per family (FamilySettings' defaults, batch 64 and probes of 512 and 256
    # examples, are the MLPs'): the forward passes of a measurement cost about
    # (probe + train_probe) / (3 * measure_every * batch) of training (one forward of both probes against
    # forward + backward of the batches), on top of the spectra; the batch is what the 90-minute CPU
    # budget affords per family. CNNs and Transformers: a 256-example train probe was 4/5 of a
    # measurement's time (its forward pass, not the spectra), so it is cut to the held-out probe's 64.
    "cnn.batch_size": 16, "cnn.probe_size": 64, "cnn.train_probe_size": 64,
    "transformer.batch_size": 16, "transformer.probe_size": 64, "transformer.train_probe_size": 64,
    # Chunks (measurements per host call, i.e. progress updates) are shorter for the slow families than
    # the base's 100: 500 steps of transformer_d256_h8_l4 on AG News take about 10 minutes on 2 CPU
    # cores, 100 about 2.
    "cnn.measurements_per_chunk": 50, "transformer.measurements_per_chunk": 20,
    # Transformers take half the MLPs' and CNNs' Adam step, reached after a linear warm-up, as is usual
    # for attention models.
    "transformer.learning_rate": 5e-4, "transformer.warmup_steps": 100,
}

FAMILIES = grid.FAMILIES

PRESETS = {
    # Seconds-long: two runs (MNIST and AG News), 2 seeds of 20 steps, small probes and vocabulary.
    "smoke": {
        "runs": smoke_runs(),
        "base.num_seeds": 2, "base.num_steps": 20, "base.twonn_samples": 32,
        "base.measurements_per_chunk": 2, "base.vocab_size": 2000, "base.max_length": 32,
        **{f"{family}.{key}": value for family in FAMILIES for key, value in dict(
            batch_size=16, probe_size=48, train_probe_size=32, final_eval_size=200, warmup_steps=0,
            measurements_per_chunk=0).items()},
    },
}


def _select(key):
  """The option `key`=a+b (key arch or dataset): keeps the runs whose arch (dataset) is a or b, chosen by
  the same `grid.select_runs` as the launch's --arch and --dataset flags."""
  position = 0 if key == "arch" else 1

  def select(cfg, text):
    cfg.runs = list(grid.select_runs(tuple(cfg.runs), **{"archs" if key == "arch" else "datasets": text}))
    if not cfg.runs:
      raise ConfigError(f"config argument {key}={text}: selects no run of the grid; valid "
                        f"{key} names in it: {sorted({r.split('@')[position] for r in default_runs()})}")
  return select


# Valued presets (short keys of the argument), applied after the others (so `smoke,arch=...` filters the
# smoke grid).
PRESETS.update({
    "seeds=": lambda cfg, text: configuration.override(cfg, {"base.num_seeds": configuration.literal(text)}),
    "steps=": lambda cfg, text: configuration.override(cfg, {"base.num_steps": configuration.literal(text)}),
    "arch=": _select("arch"),
    "dataset=": _select("dataset"),
})

get_config = configuration.config_file(SweepConfig, OVERRIDES, PRESETS)
