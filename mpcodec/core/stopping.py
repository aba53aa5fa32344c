"""How a run stops: SIGINT and SIGTERM become a request to stop at the next chunk boundary, and checkpoint
stores are closed on every way out."""

from __future__ import annotations

import contextlib
import signal
import threading

from absl import logging


class StopFlag:
  """Turns SIGINT (Ctrl-C) and SIGTERM (a scheduler pre-empting the job) into a request to stop at the
  next chunk boundary with a checkpoint (main thread only); a second signal stops at once."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.requested = False
    self.signum: int | None = None

  @property
  def preempted(self) -> bool:
    return self.signum == signal.SIGTERM

  @contextlib.contextmanager
  def installed(self):
    if threading.current_thread() is not threading.main_thread():
      yield
      return
    previous = {signum: signal.getsignal(signum) for signum in self.SIGNALS}

    def handler(signum, frame):
      del frame
      if self.requested:  # A second signal: stop at once.
        raise KeyboardInterrupt
      self.requested, self.signum = True, signum
      what = "pre-empted (SIGTERM)" if signum == signal.SIGTERM else "interrupt"
      logging.warning("%s: stopping after the current chunk and saving a checkpoint", what)

    for signum in self.SIGNALS:
      signal.signal(signum, handler)
    try:
      yield
    finally:
      for signum, before in previous.items():
        signal.signal(signum, before)


@contextlib.contextmanager
def closing(stores):
  """Closes every store on the way out (an error too), after its pending saves are on disk. On the way
  out of an error, a store that fails to close (the same full disk) is a warning: the first error is the
  one reported."""
  try:
    yield
  except BaseException:
    for store in stores:
      try:
        store.close()
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("closing the checkpoints in %s after an error: %s", store.directory,
                        str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
    raise
  for store in stores:
    store.close()
