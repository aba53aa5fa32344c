"""Task phases of the mono->poly curriculum: labels derived from the bars' concept labels.

- "orientation": class 0 = vertical, class 1 = horizontal (one-hot [1,0] / [0,1]); colour irrelevant.
- "colour": class 0 = red, class 1 = blue; orientation irrelevant.
- "xor" (the mixed task): class 0 = vertical+red or horizontal+blue, class 1 = vertical+blue or
  horizontal+red, i.e. the label is orientation XOR colour.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TASKS = ("orientation", "colour", "xor")


def task_labels(task: str, orientation: jax.Array, colour: jax.Array) -> jax.Array:
  """Integer class labels (0 or 1) of `task` for each sample."""
  if task == "orientation":
    return orientation.astype(jnp.int32)
  if task == "colour":
    return colour.astype(jnp.int32)
  if task == "xor":
    return jnp.bitwise_xor(orientation, colour).astype(jnp.int32)
  raise ValueError(f"unknown task {task!r}; valid tasks: {list(TASKS)}")
