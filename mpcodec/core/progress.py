"""One progress bar per launch, with absl log lines printed above it instead of through it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import jax
import tqdm
from absl import logging


class _TqdmStream:
  """A stream that writes whole lines with tqdm.write, so the bar is redrawn below them."""

  def __init__(self, stream):
    self._stream = stream
    self._buffer = ""

  def write(self, text: str) -> int:
    self._buffer += text
    while "\n" in self._buffer:
      line, self._buffer = self._buffer.split("\n", 1)
      tqdm.tqdm.write(line, file=self._stream)
    return len(text)

  def flush(self) -> None:
    if self._buffer:
      tqdm.tqdm.write(self._buffer, file=self._stream)
      self._buffer = ""
    self._stream.flush()


@contextlib.contextmanager
def bar(total: int, desc: str, unit: str = "step") -> Iterator[tqdm.tqdm]:
  """A tqdm bar on stderr (only in process 0 of a multi-process run) while absl logs go above it."""
  disable = jax.process_index() != 0
  handler = logging.get_absl_handler().python_handler
  previous = handler.stream
  handler.stream = _TqdmStream(previous or sys.stderr)
  try:
    with tqdm.tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True) as progress:
      yield progress
  finally:
    handler.stream.flush()
    handler.stream = previous
