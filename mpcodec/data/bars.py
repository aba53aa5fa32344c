"""Synthetic orientation x colour bars: one red or blue, vertical or horizontal bar per RGB image.

Generated in JAX from a key, no files. Each image holds one bar whose position, thickness and length are
jittered, painted pure red (1, 0, 0) or pure blue (0, 0, 1) on a black background, plus Gaussian pixel
noise. The four orientation x colour conjunctions are balanced exactly (then shuffled), so every task
built from the concept labels is balanced too. Same key, same data.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

VERTICAL, HORIZONTAL = 0, 1
RED, BLUE = 0, 1
ORIENTATION_NAMES = ("vertical", "horizontal")
COLOUR_NAMES = ("red", "blue")


@dataclasses.dataclass(frozen=True)
class BarsConfig:
  """Size and jitter of the bars dataset."""

  num_train: int = 5000
  num_test: int = 1000
  image_size: int = 32
  min_thickness: int = 2
  max_thickness: int = 5
  min_length_fraction: float = 0.5
  intensity: float = 1.0
  noise_std: float = 0.1

  def checks(self):
    yield "num_train", self.num_train >= 4, f"must be >= 4, got {self.num_train}"
    yield "num_test", self.num_test >= 4, f"must be >= 4, got {self.num_test}"
    yield "image_size", self.image_size >= 4, f"must be >= 4, got {self.image_size}"
    yield "min_thickness", 1 <= self.min_thickness, f"must be >= 1, got {self.min_thickness}"
    yield ("max_thickness", self.min_thickness <= self.max_thickness < self.image_size,
           f"must be in [min_thickness, image_size), got {self.max_thickness}")
    yield ("min_length_fraction", 0 < self.min_length_fraction <= 1,
           f"must be in (0, 1], got {self.min_length_fraction}")
    yield "noise_std", self.noise_std >= 0, f"must be >= 0, got {self.noise_std}"


@functools.partial(jax.jit, static_argnums=(1, 2))
def generate_bars(key: jax.Array, num_samples: int, cfg: BarsConfig) -> dict[str, jax.Array]:
  """Draws `num_samples` bar images with balanced conjunctions.

  Returns a dict: "images" (N, size, size, 3) float32, "orientation" (N,) int32 (0 vertical,
  1 horizontal), "colour" (N,) int32 (0 red, 1 blue).
  """
  size = cfg.image_size
  k_order, k_thick, k_pos, k_len, k_start, k_noise = jax.random.split(key, 6)
  conjunction = jax.random.permutation(k_order, jnp.arange(num_samples) % 4)
  orientation = (conjunction // 2).astype(jnp.int32)
  colour = (conjunction % 2).astype(jnp.int32)
  thickness = jax.random.randint(k_thick, (num_samples,), cfg.min_thickness, cfg.max_thickness + 1)
  position = (jax.random.uniform(k_pos, (num_samples,)) * (size - thickness + 1)).astype(jnp.int32)
  min_length = max(1, int(round(cfg.min_length_fraction * size)))
  length = jax.random.randint(k_len, (num_samples,), min_length, size + 1)
  start = (jax.random.uniform(k_start, (num_samples,)) * (size - length + 1)).astype(jnp.int32)
  across = jnp.arange(size)[None, :]
  in_width_NxS = (across >= position[:, None]) & (across < (position + thickness)[:, None])
  in_length_NxS = (across >= start[:, None]) & (across < (start + length)[:, None])
  # Rows index the first image axis: a vertical bar is narrow in columns and long in rows.
  vertical = in_length_NxS[:, :, None] & in_width_NxS[:, None, :]
  horizontal = in_width_NxS[:, :, None] & in_length_NxS[:, None, :]
  mask = jnp.where((orientation == VERTICAL)[:, None, None], vertical, horizontal)
  rgb_Nx3 = jnp.where((colour == RED)[:, None], jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 1.0]))
  images = cfg.intensity * mask[..., None].astype(jnp.float32) * rgb_Nx3[:, None, None, :]
  images = images + cfg.noise_std * jax.random.normal(k_noise, images.shape)
  return {"images": images, "orientation": orientation, "colour": colour}


def make_bars_splits(cfg: BarsConfig, seed: int) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """Train and test sets drawn from separate keys derived from `seed`."""
  base = jax.random.PRNGKey(seed)
  train = generate_bars(jax.random.fold_in(base, 0), cfg.num_train, cfg)
  test = generate_bars(jax.random.fold_in(base, 1), cfg.num_test, cfg)
  return train, test
