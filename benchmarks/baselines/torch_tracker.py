"""The baseline of benchmarks.dynamics: an ndt-style PyTorch dimensionality tracker.

What a researcher would write without mpcodec: the same architecture in PyTorch, trained with Adam on
the same batch size and schedule, one seed after another; every `measure_every` steps the model runs on
the probe inputs with forward hooks on every measured layer, and each layer's centred (rows, units)
matrix goes through `torch.linalg.svdvals`, from which the four spectral measures are read; TwoNN on a
fixed subsample of rows, and the probe's and the train probe's loss and accuracy. Rows, probes and
subsample sizes are mpcodec's (`mpcodec.studies.dynamics.program.ProbeSets`), so both do the same work.

PyTorch is optional (the "bench" extra of setup.py): it is imported by `require_torch`, never by the
library.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from mpcodec.models import zoo
from mpcodec.models.transformer import MLP_RATIO, PATCH_GRID


def require_torch():
  """Imports torch, or stops with a message saying how to get it."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit("the PyTorch baseline needs torch: pip install -e '.[bench]' (or pip install "
                     "torch), or run with --torch_baseline=false") from e
  return torch


def build_model(arch: str, input_shape: tuple[int, ...], num_classes: int):
  """The zoo architecture `arch` (images only) as a torch module, and its measured layers by name.

  The measured layer modules are the ones whose outputs mpcodec records: each MLP hidden layer's ReLU,
  each CNN stage's max-pool, each Transformer block.
  """
  torch = require_torch()
  nn = torch.nn
  spec = zoo.ARCHITECTURES[arch]
  height, width, channels = input_shape

  if isinstance(spec, zoo.MLPSpec):
    layers, measured, fan_in = [nn.Flatten()], {}, height * width * channels
    for i, units in enumerate(spec.hidden_widths):
      relu = nn.ReLU()
      layers += [nn.Linear(fan_in, units), relu]
      measured[f"hidden_{i}"] = relu
      fan_in = units
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers), measured

  if isinstance(spec, zoo.CNNSpec):
    layers, measured, fan_in = [], {}, channels
    for i, units in enumerate(spec.channels):
      pool = nn.MaxPool2d(2)
      layers += [nn.Conv2d(fan_in, units, 3, padding=1), nn.ReLU(), pool]
      measured[f"conv_{i}"] = pool
      fan_in = units
      height, width = height // 2, width // 2
    layers += [nn.Flatten(), nn.Linear(fan_in * height * width, num_classes)]
    return nn.Sequential(*layers), measured

  d_model, heads = spec.d_model, spec.num_heads
  functional = torch.nn.functional

  class Block(nn.Module):
    """Pre-LN block as mpcodec's: x + Attention(LN(x)), then x + MLP(LN(x)) with tanh-GELU."""

    def __init__(self):
      super().__init__()
      self.ln_attention, self.ln_mlp = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
      self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
      self.mlp_in, self.mlp_out = nn.Linear(d_model, MLP_RATIO * d_model), nn.Linear(MLP_RATIO * d_model, d_model)

    def forward(self, x):
      n, t, _ = x.shape
      q, k, v = self.qkv(self.ln_attention(x)).reshape(n, t, 3, heads, d_model // heads).permute(2, 0, 3, 1, 4)
      attended = functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d_model)
      x = x + self.out(attended)
      return x + self.mlp_out(functional.gelu(self.mlp_in(self.ln_mlp(x)), approximate="tanh"))

  class Transformer(nn.Module):
    """Patch embedding (16 patches) plus learned positions, blocks, final LN, mean pool, head."""

    def __init__(self):
      super().__init__()
      patch = (height // PATCH_GRID) * (width // PATCH_GRID) * channels
      self.patch_projection = nn.Linear(patch, d_model)
      self.positions = nn.Parameter(0.02 * torch.randn(PATCH_GRID * PATCH_GRID, d_model))
      self.blocks = nn.ModuleList(Block() for _ in range(spec.num_layers))
      self.ln_final, self.logits = nn.LayerNorm(d_model), nn.Linear(d_model, num_classes)

    def forward(self, images):   # (N, H, W, C), patches in row-major order as mpcodec's
      n = images.shape[0]
      x = images.reshape(n, PATCH_GRID, height // PATCH_GRID, PATCH_GRID, width // PATCH_GRID, channels)
      x = x.permute(0, 1, 3, 2, 4, 5).reshape(n, PATCH_GRID * PATCH_GRID, -1)
      x = self.patch_projection(x) + self.positions
      for block in self.blocks:
        x = block(x)
      return self.logits(self.ln_final(x).mean(dim=1))

  model = Transformer()
  return model, {f"block_{i}": block for i, block in enumerate(model.blocks)}


def layer_matrix(acts):
  """(rows, units) matrix of a hooked output, rows in mpcodec's order (NHWC for convolutions)."""
  if acts.ndim == 4:   # (N, C, H, W) -> (N*H*W, C)
    return acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])
  return acts.reshape(-1, acts.shape[-1])


def spectral_measures(matrix):
  """The four spectral measures from `torch.linalg.svdvals` of the centred matrix (float32)."""
  torch = require_torch()
  centred = matrix - matrix.mean(dim=0, keepdim=True)
  sigma = torch.linalg.svdvals(centred)
  if not torch.any(sigma > 0):
    return [torch.zeros(()) for _ in range(4)]
  eigvals = sigma.square()
  total = eigvals.sum()
  participation_ratio = total.square() / eigvals.square().sum()
  p = sigma / sigma.sum()
  p = p[p > 0]
  effective_rank = torch.exp(-(p * p.log()).sum())
  stable_rank = total / eigvals.max()
  num_components = (torch.cumsum(eigvals, 0) < 0.9 * total).sum() + 1
  return [participation_ratio, effective_rank, stable_rank, num_components.float()]


def twonn(points, num_candidates=8):
  """TwoNN d = (n - 1) / sum log(r2 / r1) as mpcodec computes it: neighbours ranked by torch.cdist's
  matmul distances, exact distances to the `num_candidates` nearest, duplicates collapsed (each set of
  copies measured once, r2 the smallest distance above r1)."""
  torch = require_torch()
  points = points - points.mean(dim=0, keepdim=True)
  distances = torch.cdist(points, points)
  distances.fill_diagonal_(math.inf)
  candidates = torch.topk(distances, min(num_candidates, points.shape[0] - 1), dim=1, largest=False).indices
  exact = torch.linalg.vector_norm(points[candidates] - points[:, None, :], dim=-1)
  index = torch.arange(points.shape[0])
  later_copy = ((exact == 0) & (candidates < index[:, None])).any(dim=1)
  positive = torch.where(exact > 0, exact, math.inf)
  r1 = positive.min(dim=1).values
  r2 = torch.where(positive > r1[:, None], positive, math.inf).min(dim=1).values
  usable = ~later_copy & torch.isfinite(r2)
  return (usable.sum() - 1) / torch.log(r2[usable] / r1[usable]).sum()


@dataclasses.dataclass(frozen=True)
class TrackerRun:
  """The tracker's schedule and probe data (numpy arrays), taken from an mpcodec config and ProbeSets."""

  arch: str
  num_seeds: int
  num_steps: int
  batch_size: int
  measure_every: int
  learning_rate: float
  warmup_steps: int
  twonn_samples: int
  num_classes: int
  arrays: dict[str, Any]          # train_x/y, probe_x/y, train_probe_x/y, rows
  layer_names: tuple[str, ...]


class Tracker:
  """Trains `run.num_seeds` seeds one after another with hooks and SVD measurements; `run()` times it."""

  def __init__(self, run: TrackerRun):
    torch = require_torch()
    self.torch, self.run_cfg = torch, run
    channels_first = isinstance(zoo.ARCHITECTURES[run.arch], zoo.CNNSpec)

    def tensor(x):
      x = torch.from_numpy(np.ascontiguousarray(x))
      return x.permute(0, 3, 1, 2).contiguous() if channels_first and x.ndim == 4 else x

    a = run.arrays
    self.train_x, self.train_y = tensor(a["train_x"]), torch.from_numpy(a["train_y"]).long()
    self.probe_x, self.probe_y = tensor(a["probe_x"]), torch.from_numpy(a["probe_y"]).long()
    self.train_probe_x = tensor(a["train_probe_x"])
    self.train_probe_y = torch.from_numpy(a["train_probe_y"]).long()
    self.input_shape = tuple(a["probe_x"].shape[1:])
    self.rows = {name: torch.from_numpy(np.asarray(rows, np.int64)) for name, rows in a["rows"].items()}
    self.twonn_rows = {}

  def _twonn_rows(self, name, num_rows):
    if name not in self.twonn_rows:
      rng = np.random.default_rng(len(self.twonn_rows))
      count = min(self.run_cfg.twonn_samples, num_rows)
      self.twonn_rows[name] = self.torch.from_numpy(np.sort(rng.choice(num_rows, count, replace=False)))
    return self.twonn_rows[name]

  def measure(self, model, captured):
    """Loss, accuracy and the five measures of every hooked layer on the probe, then the train probe."""
    torch, functional = self.torch, self.torch.nn.functional
    model.eval()
    with torch.no_grad():
      logits = model(self.probe_x)
      values = [functional.cross_entropy(logits, self.probe_y), (logits.argmax(1) == self.probe_y).float().mean()]
      for name in self.run_cfg.layer_names:
        matrix = layer_matrix(captured[name])
        if name in self.rows:
          matrix = matrix[self.rows[name]]
        values += spectral_measures(matrix)
        values.append(twonn(matrix[self._twonn_rows(name, matrix.shape[0])]))
      train_logits = model(self.train_probe_x)
      values += [functional.cross_entropy(train_logits, self.train_probe_y),
                 (train_logits.argmax(1) == self.train_probe_y).float().mean()]
    model.train()
    return torch.stack(values)

  def train_seed(self, seed):
    """One seed's run: (measurements (M, values), batch losses (steps,), gradient norms (steps,))."""
    torch, run = self.torch, self.run_cfg
    torch.manual_seed(seed)
    model, measured = build_model(run.arch, self.input_shape, run.num_classes)
    captured = {}
    for name, module in measured.items():
      module.register_forward_hook(lambda _m, _in, out, name=name: captured.__setitem__(name, out))
    optimizer = torch.optim.Adam(model.parameters(), lr=run.learning_rate)
    warmup = run.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, step / warmup) if warmup else 1.0)
    generator = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    measurements, losses, grad_norms = [], [], []
    for step in range(run.num_steps):
      if step % run.measure_every == 0:
        measurements.append(self.measure(model, captured))
      index = torch.randint(0, self.train_x.shape[0], (run.batch_size,), generator=generator)
      loss = torch.nn.functional.cross_entropy(model(self.train_x[index]), self.train_y[index])
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      grad_norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
      losses.append(loss.detach())
      optimizer.step()
      scheduler.step()
    return torch.stack(measurements).numpy(), torch.stack(losses).numpy(), torch.stack(grad_norms).numpy()

  def run(self):
    """Every seed one after another; returns the wall seconds and the last seed's outputs."""
    start = time.perf_counter()
    for seed in range(self.run_cfg.num_seeds):
      outputs = self.train_seed(seed)
    return time.perf_counter() - start, outputs
