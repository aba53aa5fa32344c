"""The baseline of benchmarks.mono_poly: the mono->poly MLP trained in PyTorch, one seed after another.

What the earlier study ran: for each seed, a fresh MLP (ReLU hidden layers of the config's widths, two
logits), Adam at the config's learning rate, minibatches drawn uniformly with replacement from the same
training set, softmax cross-entropy, one optimizer step per minibatch. torch comes from the `bench` extra
and is imported by the functions here, never by the library.
"""

from __future__ import annotations

import time

import numpy as np


def seed_steps_per_second(x_NxD: np.ndarray, y_N: np.ndarray, hidden_widths: tuple[int, ...], batch_size: int,
                          num_seeds: int, num_steps: int, learning_rate: float = 1e-3,
                          threads: int = 0) -> tuple[float, float]:
  """(seed-steps/s, process CPU seconds) of `num_seeds` runs of `num_steps` steps, one after another
  (a one-step warm-up untimed); `threads` > 0 sets torch's intra-op threads."""
  from benchmarks.baselines.topk_sae import require_torch  # pylint: disable=g-import-not-at-top
  torch = require_torch()
  if threads > 0:
    torch.set_num_threads(threads)
  x = torch.from_numpy(np.array(x_NxD, np.float32))   # a writable copy
  y = torch.from_numpy(np.asarray(y_N, np.int64))
  widths = [x.shape[1], *hidden_widths]

  def run(seed: int, steps: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
      layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(steps):
      idx = torch.randint(0, x.shape[0], (batch_size,), generator=generator)
      loss = loss_fn(model(x[idx]), y[idx])
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()

  run(0, 1)
  wall, cpu = time.perf_counter(), time.process_time()
  for seed in range(num_seeds):
    run(seed, num_steps)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  return num_seeds * num_steps / wall, cpu
