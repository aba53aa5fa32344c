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
  ("<desc>: 100/100 steps (100%) done in 00:30, <postfix>", or "stopped at" when it ends short).
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
    self._closed = False
    self._write(f"started, {self.total} {self.unit}s" + (f" ({self.postfix})" if self.postfix else ""))

  def _write(self, text: str) -> None:
    if self.disable:
      return
    self._stream.write(f"{self.desc}: {text}\n")
    self._stream.flush()

  def _count(self) -> str:
    percent = f" ({100 * self.n / self.total:.0f}%)" if self.total > 0 else ""
    return f"{self.n}/{self.total} {self.unit}s{percent}"

  def update(self, n: int = 1) -> None:
    self.n += int(n)
    if self.total > 0 and self.n >= self.total:
      self._finish()
      return
    if not self._every or self.n < self._next_line_at:
      return
    elapsed = time.perf_counter() - self._started
    left = f", about {_duration(elapsed * (self.total - self.n) / self.n)} left" if self.n > 0 else ""
    self._write(f"{self._count()}, {_duration(elapsed)} elapsed{left}"
                + (f", {self.postfix}" if self.postfix else ""))
    self._next_line_at = (self.n // self._every + 1) * self._every

  def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
    del refresh
    self.postfix = str(s)

  def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
    del refresh
    self.desc = desc or ""

  def refresh(self) -> None:
    """Nothing: a line is written only at the tenths of the total (tqdm redraws here)."""

  def close(self) -> None:
    self._finish()

  def _finish(self) -> None:
    """The final line, once: when the total is reached, or at close when it is not."""
    if self._closed:
      return
    self._closed = True
    state = "done in" if self.total <= 0 or self.n >= self.total else "stopped after"
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
