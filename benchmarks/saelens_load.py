"""An SAE exported by the codec, loaded by SAELens itself: the one-off check that the export is what a
SAELens user gets (`SAE.load_from_disk`), with the same codes and reconstructions as this project's.

SAELens and JAX rarely share an environment, so the check runs in two steps:

  # 1. here (mpcodec's environment): the inputs and this project's outputs for one exported SAE
  python benchmarks/saelens_load.py reference --sae_dir=RUN/saelens/k32_seed0 --out=/tmp/sae_check.npz \
      --activations=RUN/activation_cache/KEY/activations.npy --rows=512   # --activations may be left out
  # 2. in an environment with sae-lens installed (pip install sae-lens), without mpcodec's dependencies:
  python benchmarks/saelens_load.py check --sae_dir=RUN/saelens/k32_seed0 --reference=/tmp/sae_check.npz

Step 1 takes real activation rows (evenly spaced through the cache) when given, else Gaussian rows at the
decoder's scale. Step 2 prints the cfg SAELens read (architecture, k, model_name, hook_name), the largest
differences of the pre-activations, codes and reconstructions, and the share of tokens whose active latents
agree; it exits 1 when they do not agree (codes within 1e-4 relative of their scale, every token's active
set identical).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def reference(sae_dir: str, out: str, activations: str | None, rows: int) -> None:
  from mpcodec.sae import saelens  # pylint: disable=g-import-not-at-top

  sae = saelens.load(sae_dir)
  if activations:
    cache = np.load(activations, mmap_mode="r")
    picks = np.linspace(0, cache.shape[0] - 1, rows).astype(np.int64)
    x = np.asarray(cache[picks], np.float32)
  else:
    scale = float(np.linalg.norm(np.asarray(sae.params["w_dec_NxD"]), axis=-1).mean())
    x = np.random.default_rng(0).standard_normal((rows, sae.d_in)).astype(np.float32) * scale
  pre = np.asarray(sae.pre_activations(x)) if hasattr(sae, "pre_activations") else None
  codes = np.asarray(sae.encode(x))
  recon = np.asarray(sae.decode(codes))
  np.savez(out, x=x, codes=codes, recon=recon, **({"pre": pre} if pre is not None else {}))
  print(f"{out}: {rows} rows, {sae.d_in} -> {sae.d_sae} ({sae.architecture}, k={sae.k}); "
        f"{int((codes != 0).sum(1).mean())} active latents per row on average")


def check(sae_dir: str, reference_path: str) -> int:
  import torch  # pylint: disable=g-import-not-at-top
  from sae_lens import SAE  # pylint: disable=g-import-not-at-top
  import sae_lens  # pylint: disable=g-import-not-at-top

  sae = SAE.load_from_disk(sae_dir, device="cpu")
  ref = np.load(reference_path)
  cfg = sae.cfg
  meta = getattr(cfg, "metadata", None)
  print(f"sae_lens {sae_lens.__version__}: {type(sae).__name__}, d_in {cfg.d_in}, d_sae {cfg.d_sae}, "
        f"architecture {cfg.architecture()}, k {getattr(cfg, 'k', None)}, "
        f"model_name {getattr(meta, 'model_name', None)!r}, hook_name {getattr(meta, 'hook_name', None)!r}")
  with torch.no_grad():
    x = torch.from_numpy(ref["x"])
    codes = sae.encode(x).numpy()
    recon = sae.decode(torch.from_numpy(codes)).numpy()
    full = sae(x).numpy()
  scale = float(np.abs(ref["codes"]).max())
  code_diff = float(np.abs(codes - ref["codes"]).max())
  recon_diff = float(np.abs(recon - ref["recon"]).max())
  forward_diff = float(np.abs(full - ref["recon"]).max())
  same_set = float(np.mean(np.all((codes != 0) == (ref["codes"] != 0), axis=1)))
  print(json.dumps({"rows": int(x.shape[0]), "max_code": scale, "max_code_difference": code_diff,
                    "max_reconstruction_difference": recon_diff, "max_forward_difference": forward_diff,
                    "share_of_rows_with_the_same_active_latents": same_set}, indent=1))
  ok = code_diff <= 1e-4 * max(scale, 1.0) and same_set == 1.0
  print("agree" if ok else "DISAGREE")
  return 0 if ok else 1


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("mode", choices=("reference", "check"))
  parser.add_argument("--sae_dir", required=True)
  parser.add_argument("--out", default="sae_check.npz")
  parser.add_argument("--reference", default="sae_check.npz")
  parser.add_argument("--activations", default=None)
  parser.add_argument("--rows", type=int, default=512)
  args = parser.parse_args(argv)
  if not os.path.isdir(args.sae_dir):
    print(f"error: --sae_dir {args.sae_dir} is not a folder", file=sys.stderr)
    return 1
  if args.mode == "reference":
    reference(args.sae_dir, args.out, args.activations, args.rows)
    return 0
  return check(args.sae_dir, args.reference)


if __name__ == "__main__":
  sys.exit(main())
