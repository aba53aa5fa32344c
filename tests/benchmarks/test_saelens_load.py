"""benchmarks/saelens_load.py's first step (this project's side): the inputs and outputs it writes for an
exported SAE are SAELens' formulas on the exported files (the second step needs sae-lens itself)."""

import numpy as np

from benchmarks import saelens_load
from mpcodec.sae import saelens
from tests.sae.test_saelens import _read_files, _saelens_numpy, _state


def test_the_reference_step_writes_saelens_codes_of_real_rows(tmp_path):
  state, cfg = _state("topk")
  saelens.save_state(tmp_path / "sae", state, cfg, hook_name="blocks.1.mlp.hook_post", model_name="m")
  rows = np.random.default_rng(3).standard_normal((50, 12)).astype(np.float32) * 3
  np.save(tmp_path / "activations.npy", rows)
  assert saelens_load.main(["reference", f"--sae_dir={tmp_path / 'sae'}", f"--out={tmp_path / 'ref.npz'}",
                            f"--activations={tmp_path / 'activations.npy'}", "--rows=10"]) == 0
  ref = np.load(tmp_path / "ref.npz")
  picks = np.linspace(0, 49, 10).astype(np.int64)
  np.testing.assert_array_equal(ref["x"], rows[picks])
  file_cfg, tensors = _read_files(tmp_path / "sae")
  codes, recon = _saelens_numpy(tensors, file_cfg, rows[picks])
  np.testing.assert_allclose(ref["codes"], codes, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ref["recon"], recon, rtol=1e-5, atol=1e-4)
  assert saelens_load.main(["check", f"--sae_dir={tmp_path / 'missing'}"]) == 1
