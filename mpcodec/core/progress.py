"""One progress bar per launch, with absl log lines printed above it instead of through it.

On a terminal the bar is tqdm's, redrawn in place (carriage returns), and absl's lines are written above
it. Where stderr is not a terminal (a log file, a pipe, a batch job) a redrawn bar would leave one frame
per update and per log line in the file, so the bar writes plain lines instead: one when it starts, one
each time another tenth of the total is done, and one when it ends, with no carriage return.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

import jax
import tqdm
from absl import logging

# A bar on a stream that is not a terminal writes a line each time this fraction of its total is done.
LINE_EVERY_FRACTION = 0.1


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


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class LineProgress:
  """The bar for a stream that is not a terminal: whole lines, never a carriage return.

  It has the part of tqdm's interface the run loops use (`update`, `set_postfix_str`, `set_description`,
  `close`, `n`, `total`). Lines: "<desc>: started, <total> <unit>s", one at each further `every` of the
  total ("<desc>: 40/100 steps (40%), 00:12 elapsed, about 00:18 left, <postfix>") and a final one
  ("<desc>: 100/100 steps (100%) done in 00:30, <postfix>", or "stopped after" when it ends short).
  The run loops call `update` and then `set_postfix_str` with that chunk's loss, so a line due at an
  update waits for the postfix that follows it (its times are those of the update); the next update,
  `close` or the end of the block writes it in any case.
  """

  def __init__(self, total: int, desc: str, unit: str = "step", stream: TextIO | None = None,
               disable: bool = False, every: float = LINE_EVERY_FRACTION):
    self.total, self.desc, self.unit, self.n = int(total), desc, unit, 0
    self.postfix = ""
    self.disable = disable
    self._stream = stream if stream is not None else sys.stderr
    self._every = max(1, int(round(every * self.total))) if self.total > 0 else 0
    self._next_line_at = self._every
    self._started = time.perf_counter()
    self._pending: tuple[str, float] | None = None   # ("progress" or "final", elapsed seconds)
    self._closed = False
    self._write(f"started, {self.total} {self.unit}s")

  def _write(self, text: str) -> None:
    if self.disable:
      return
    self._stream.write(f"{self.desc}: {text}\n")
    self._stream.flush()

  def _count(self) -> str:
    percent = f" ({100 * self.n / self.total:.0f}%)" if self.total > 0 else ""
    return f"{self.n}/{self.total} {self.unit}s{percent}"

  def _flush(self) -> None:
    """Writes the line waiting for its postfix, if any."""
    if self._pending is None:
      return
    kind, elapsed = self._pending
    self._pending = None
    postfix = f", {self.postfix}" if self.postfix else ""
    if kind == "final":
      self._write(f"{self._count()} done in {_duration(elapsed)}{postfix}")
      return
    left = f", about {_duration(elapsed * (self.total - self.n) / self.n)} left" if self.n > 0 else ""
    self._write(f"{self._count()}, {_duration(elapsed)} elapsed{left}{postfix}")

  def update(self, n: int = 1) -> None:
    self._flush()
    if self._closed:
      return
    self.n += int(n)
    elapsed = time.perf_counter() - self._started
    if self.total > 0 and self.n >= self.total:
      self._pending, self._closed = ("final", elapsed), True
    elif self._every and self.n >= self._next_line_at:
      self._pending = ("progress", elapsed)
      self._next_line_at = (self.n // self._every + 1) * self._every

  def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
    del refresh
    self.postfix = str(s)
    self._flush()

  def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
    del refresh
    self._flush()
    self.desc = desc or ""

  def refresh(self) -> None:
    """Nothing: a line is written only at the tenths of the total (tqdm redraws here)."""

  def close(self) -> None:
    """Writes the line still waiting, or, for a bar that ends short of its total, where it stopped."""
    self._flush()
    if self._closed:
      return
    self._closed = True
    state = "done in" if self.total <= 0 else "stopped after"
    self._write(f"{self._count()} {state} {_duration(time.perf_counter() - self._started)}"
                + (f", {self.postfix}" if self.postfix else ""))

  def __enter__(self) -> LineProgress:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def _is_terminal(stream: Any) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):   # no isatty, or a closed stream
    return False


@contextlib.contextmanager
def bar(total: int, desc: str, unit: str = "step", stream: TextIO | None = None
        ) -> Iterator[tqdm.tqdm | LineProgress]:
  """A progress bar on `stream` (default stderr), only in process 0 of a multi-process run.

  On a terminal: a tqdm bar while absl logs go above it. Elsewhere: a `LineProgress` (plain lines; absl
  lines pass straight to their stream).
  """
  stream = stream if stream is not None else sys.stderr
  disable = jax.process_index() != 0
  if not _is_terminal(stream):
    with LineProgress(total, desc, unit, stream=stream, disable=disable) as progress:
      yield progress
    return
  handler = logging.get_absl_handler().python_handler
  previous = handler.stream
  handler.stream = _TqdmStream(previous or stream)
  try:
    with tqdm.tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                   file=stream) as progress:
      yield progress
  finally:
    handler.stream.flush()
    handler.stream = previous
