"""The neural codec: a Top-K SAE, then the Squeezer, on ground-truth activations (default).

  python -m launch.codec --config=configs/codec.py --workdir=runs/codec
Seconds-long smoke run:
  python -m launch.codec --config=configs/codec.py:smoke --workdir=/tmp/codec_smoke
On the hidden layer of a mono->poly run (written by launch.mono_poly):
  python -m launch.codec --config=configs/codec.py:source=mono_poly --config.source.workdir=runs/mono_poly \
      --workdir=runs/codec_mono_poly
Arguments combine with commas (`:smoke,source=mono_poly`); any knob can be overridden, e.g.
--config.sae.k_grid=4,8,16 --config.num_seeds=4.
"""

import ml_collections


def _optim(learning_rate, warmup_steps):
  return ml_collections.ConfigDict(dict(
      name="adam", learning_rate=learning_rate, warmup_steps=warmup_steps, schedule="cosine",
      weight_decay=0.0, momentum=0.0, grad_clip_norm=0.0))


def _loop(steps, batch_size, chunk_steps, init_batches=4, eval_batches=8):
  return ml_collections.ConfigDict(dict(
      steps=steps, batch_size=batch_size, chunk_steps=chunk_steps, init_batches=init_batches,
      eval_batches=eval_batches))


def get_config(arg=None):
  """Default: 512 known atoms in 128 dims (8 active per token); SAE 512 latents, k in {8}, 2 seeds."""
  args = dict(a.split("=", 1) if "=" in a else (a, "") for a in (arg or "").split(",") if a)
  unknown = set(args) - {"smoke", "source"}
  if unknown:
    raise ValueError(f"unknown config argument(s) {sorted(unknown)}; use 'smoke' and/or 'source=mono_poly'")

  cfg = ml_collections.ConfigDict()
  cfg.seed = 0
  cfg.num_seeds = 2
  cfg.dense_above = 0.1
  cfg.sae_checkpoint = ""
  cfg.source = ml_collections.ConfigDict(dict(
      kind="ground_truth", workdir="", phase="phase2", step=-1, layer="hidden_0", seed_index=0,
      split="train",
      ground_truth=ml_collections.ConfigDict(dict(num_atoms=512, dim=128, k_true=8, noise_std=0.01,
                                                  seed=0))))
  cfg.sae = ml_collections.ConfigDict(dict(
      num_latents=512, k=8, k_grid=(), activation="topk", decoder="sparse",
      b_dec_init="geometric_median", geometric_median_iters=30, input_norm="dim",
      # AuxK (Gao et al. 2024): a latent silent for 20k tokens (~40 steps) is dead.
      aux_k=32, aux_coef=1.0 / 32.0, dead_tokens_threshold=20_000, threshold_decay=0.99,
      optim=_optim(1e-2, 50)))
  cfg.sae_loop = _loop(steps=2000, batch_size=512, chunk_steps=250)
  cfg.squeezer = ml_collections.ConfigDict(dict(
      num_neurons=0, k=16, decoder="dense", b_dec_init="mean", input_norm="dim", aux_k=32,
      aux_coef=1.0 / 32.0, dead_tokens_threshold=20_000, optim=_optim(3e-3, 50)))
  cfg.squeezer_loop = _loop(steps=1000, batch_size=512, chunk_steps=250)

  source = args.get("source", "ground_truth")
  if source == "mono_poly":
    # The mono->poly MLP has a 10-wide hidden layer: a 64-latent SAE, squeezed back into 10 neurons.
    cfg.source.kind = "checkpoint"
    cfg.sae.num_latents = 64
    cfg.sae.k = 4
    cfg.sae.aux_k = 16
    cfg.sae.optim.learning_rate = 3e-3
    cfg.sae_loop = _loop(steps=2000, batch_size=256, chunk_steps=250)
    cfg.squeezer.k = 3
    cfg.squeezer.aux_k = 4
    cfg.squeezer_loop = _loop(steps=1000, batch_size=256, chunk_steps=250)
  elif source != "ground_truth":
    raise ValueError(f"unknown source {source!r}; use 'ground_truth' or 'mono_poly'")

  if "smoke" in args:
    cfg.sae_loop = _loop(steps=40, batch_size=128, chunk_steps=20, init_batches=1, eval_batches=2)
    cfg.squeezer_loop = _loop(steps=20, batch_size=128, chunk_steps=20, init_batches=1, eval_batches=2)
    if source == "ground_truth":
      cfg.source.ground_truth.num_atoms = 64
      cfg.source.ground_truth.dim = 16
      cfg.source.ground_truth.k_true = 3
      cfg.sae.num_latents = 64
      cfg.sae.k = 3
      cfg.sae.aux_k = 8
      cfg.squeezer.k = 4
      cfg.squeezer.aux_k = 4
  return cfg
