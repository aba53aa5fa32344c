"""Train a Top-K SAE on your own activations, check it, and export it for SAELens (about 30 s on a laptop CPU).

Here the activations are planted: each of 20,000 rows sums 3 of 128 random unit atoms in 64 dimensions,
so we can check that the SAE finds the atoms. Replace `acts_TxD` by your own (T tokens x D features)
array, or an np.memmap of one. Run: python examples/sae_on_your_activations.py
"""

import tempfile

import numpy as np

from mpcodec import sae

rng = np.random.default_rng(0)
atoms_AxD = rng.standard_normal((128, 64))
atoms_AxD /= np.linalg.norm(atoms_AxD, axis=1, keepdims=True)
codes_TxA = np.zeros((20_000, 128))
chosen_TxK = np.argsort(rng.random(codes_TxA.shape), axis=1)[:, :3]
np.put_along_axis(codes_TxA, chosen_TxK, rng.uniform(0.5, 1.5, chosen_TxK.shape), axis=1)
acts_TxD = (codes_TxA @ atoms_AxD + 0.01 * rng.standard_normal((20_000, 64))).astype(np.float32)

config = sae.SAETrainingConfig(
    sae=sae.SAEConfig(num_latents=128, aux_k=16, dead_tokens_threshold=5_000,
                      optim=sae.OptimConfig(learning_rate=1e-2, warmup_steps=20, schedule="cosine")),
    steps=600, batch_size=256)
result = sae.train_sae(acts_TxD, config, seeds=2, ks=(3, 6))   # 2 seeds x 2 k values: one compiled program
print(result.summary())                                         # FVU, L0, dead fraction on held-out rows
found = np.max(atoms_AxD @ result.params[3]["w_dec_NxD"][0].T, axis=1)
print(f"k=3 seed 0: mean max cosine to the planted atoms {found.mean():.3f}")

with tempfile.TemporaryDirectory() as folder:
  written = sae.save_saelens(result, folder, hook_name="blocks.0.hook_resid_post")
  loaded = sae.load_saelens(written["k3_seed0"])   # SAELens reads it too: SAE.load_from_disk(folder)
  x_hat = np.asarray(loaded.decode(loaded.encode(acts_TxD[-1000:])))
  fvu = np.sum((acts_TxD[-1000:] - x_hat) ** 2) / np.sum((acts_TxD[-1000:] - acts_TxD[-1000:].mean(0)) ** 2)
  print(f"wrote {sorted(written)}; reloaded k3_seed0: d_in {loaded.d_in}, d_sae {loaded.d_sae}, FVU {fvu:.4f}")
