"""Sparse autoencoders on anyone's activations: Top-K / BatchTopK SAEs, SAELens files, the Squeezer.

Train an SAE on your own activations in one call, check it, export it for SAELens:

    import numpy as np
    from mpcodec import sae

    acts_TxD = np.load("acts.npy", mmap_mode="r")            # T tokens by D features; a memmap is fine
    config = sae.SAETrainingConfig(sae=sae.SAEConfig(num_latents=4096), steps=5000, batch_size=1024)
    result = sae.train_sae(acts_TxD, config, seeds=3, ks=(16, 32, 64), workdir="runs/my_sae")
    print(result.summary())                                   # FVU, L0, dead fraction per (k, seed)
    sae.save_saelens(result, "saelens/", hook_name="blocks.6.hook_resid_post", model_name="gpt2")
    loaded = sae.load_saelens("saelens/k32_seed0")            # loaded.encode(x), loaded.decode(codes)

The model (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"):
  pre = (x - b_dec) W_encᵀ + b_enc,  a = ReLU(TopK_k(pre)),  x̂ = a W_dec + b_dec,
with unit-norm decoder rows (dictionary atoms) and the AuxK loss for dead latents; BatchTopK (Bussmann et
al. 2024) keeps the k·B largest pre-activations of a batch while training and a learned threshold at
inference. Weights are stored one row per latent: `w_enc_NxD`, `w_dec_NxD` (N latents, D features).

`train_sae` validates everything before it compiles (one ValueError naming the config key or argument),
refuses NaN/Inf rows (naming the first), trains every (k, seed) in one vmapped program through the
project's run loop (progress bar, NaN check, checkpoints and resume with a workdir), and evaluates FVU,
L0 and the dead fraction on held-out rows. `save_saelens` writes one SAELens folder per (k, seed)
(cfg.json and sae_weights.safetensors, SAELens 6's layout; needs the `safetensors` package, in the
`[lm]` extra) and `load_saelens` reads one back, refusing malformed fields and NaN weights.

Step by step, for a loop of your own: `init_state` and `train_step` (one Adam step on a raw batch, pure
and vmappable over seeds), `apply` (reconstruction and codes of a state).

The Squeezer re-compresses an SAE's N latents into M synthetic neurons with a Top-K bottleneck:
`SqueezerConfig.as_sae_config(width)` gives its SAEConfig; `init_squeezer_state`, `squeezer_train_step`
and `squeezer_reconstructions` take a frozen SAE state (`SAEResult.state(k, seed)` gives one).

Every function here checks the rank and shape of its array arguments and names the argument, the shape
expected and the shape it got in one ValueError.
"""

from mpcodec.core.optim import OptimConfig
from mpcodec.sae.autoencoder import SAEConfig, apply, init_state, train_step
from mpcodec.sae.saelens import SAELensFormatError, SAELensSAE
from mpcodec.sae.squeezer import SqueezerConfig
from mpcodec.sae.squeezer import init_state as init_squeezer_state
from mpcodec.sae.squeezer import reconstructions as squeezer_reconstructions
from mpcodec.sae.squeezer import train_step as squeezer_train_step
from mpcodec.sae.training import SAEResult, SAETrainingConfig, load_saelens, save_saelens, train_sae

__all__ = [
    # Train on your activations, export for SAELens.
    "train_sae", "SAETrainingConfig", "SAEConfig", "OptimConfig", "SAEResult",
    "save_saelens", "load_saelens", "SAELensSAE", "SAELensFormatError",
    # Step by step.
    "init_state", "train_step", "apply",
    # The Squeezer.
    "SqueezerConfig", "init_squeezer_state", "squeezer_train_step", "squeezer_reconstructions",
]
