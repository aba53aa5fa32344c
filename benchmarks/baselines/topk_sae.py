"""The baseline of benchmarks.codec: a straightforward Top-K sparse autoencoder trained in PyTorch.

What a researcher would write without mpcodec (Gao et al. 2024's Top-K SAE): encoder pre-activations
(x - b_dec) W_enc + b_enc, `torch.topk` keeps k per row, the k values (ReLU) scattered into a dense code,
reconstruction code W_dec + b_dec, mean squared error, Adam; one step per batch, float32 on the CPU.
torch comes from the `bench` extra and is imported by the functions here, never by the library.
"""

from __future__ import annotations

import time

import numpy as np


def require_torch():
  """Imports torch, or stops with a message saying how to get it."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit("the PyTorch Top-K SAE needs torch: pip install -e '.[bench]'") from e
  return torch


def tokens_per_second(batches_SxBxD: np.ndarray, num_latents: int, k: int, repeats: int = 3,
                      threads: int = 0, learning_rate: float = 1e-4) -> tuple[float, float]:
  """(tokens/s, process CPU seconds per timed pass) of Top-K SAE training over `batches` (best of
  `repeats` passes after one untimed warm-up step); `threads` > 0 sets torch's intra-op threads."""
  torch = require_torch()
  if threads > 0:
    torch.set_num_threads(threads)
  torch.manual_seed(0)
  batches = torch.from_numpy(np.array(batches_SxBxD, np.float32))   # a writable copy
  _, _, dim = batches.shape
  w_enc = torch.nn.Parameter(torch.randn(dim, num_latents) / dim ** 0.5)
  w_dec = torch.nn.Parameter(w_enc.detach().t().clone())
  b_enc = torch.nn.Parameter(torch.zeros(num_latents))
  b_dec = torch.nn.Parameter(batches[0].mean(0).clone())
  params = [w_enc, w_dec, b_enc, b_dec]
  optimizer = torch.optim.Adam(params, lr=learning_rate)

  def step(x):
    pre = (x - b_dec) @ w_enc + b_enc
    values, indices = torch.topk(pre, k, dim=-1)
    code = torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
    loss = ((code @ w_dec + b_dec - x) ** 2).sum(-1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss

  step(batches[0])
  best_wall, best_cpu = float("inf"), float("inf")
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    for x in batches:
      step(x)
    best_wall, best_cpu = min(best_wall, time.perf_counter() - wall), min(best_cpu, time.process_time() - cpu)
  return batches.shape[0] * batches.shape[1] / best_wall, best_cpu
