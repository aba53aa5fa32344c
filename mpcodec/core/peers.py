"""A watchdog over the other processes of a multi-process run, once they have all started.

A process that dies mid-run (killed, out of memory, its host lost) leaves the others blocked in the next
collective (a checkpoint save, a barrier): JAX's own heartbeat check aborts them much later, without a
word a user can act on. Here every process writes a heartbeat into jax.distributed's key-value store
every few seconds and reads the others'; a process whose heartbeat has not changed for
MPCODEC_PEER_TIMEOUT_S seconds (default 60), or a coordinator that stops answering, ends this process
with one `error:` line naming it and exit status 1. A process that ends normally marks its heartbeat as
ended first, so the processes that go on (process 0's analysis) are not stopped.

Not covered: when process 0 itself dies, JAX's client in every other process ends that process at once
(exit 134, JAX's own message that "another task died"); jaxlib's hook for that moment cannot be set from
Python (a Python callback aborts on its status argument).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mpcodec.core.errors import ConfigError

PEER_TIMEOUT_VAR = "MPCODEC_PEER_TIMEOUT_S"
PEER_TIMEOUT_S = 60
ENDED = "ended"
_KEY = "mpcodec/heartbeat/{}"
# How a collective with a process that died reads when it fails in this process first (Gloo on CPU).
_LOST_CONNECTION = ("connection reset by peer", "connection closed by peer", "gloo", "heartbeat timeout")
_running: "PeerWatchdog | None" = None   # this process's watchdog, once started


def peer_timeout(environ: Mapping[str, str]) -> int:
  """Seconds without a heartbeat after which another process counts as lost (MPCODEC_PEER_TIMEOUT_S)."""
  text = environ.get(PEER_TIMEOUT_VAR, "").strip()
  if not text:
    return PEER_TIMEOUT_S
  try:
    seconds = int(text)
  except ValueError:
    raise ConfigError(f"environment: {PEER_TIMEOUT_VAR}={text!r} is not an integer") from None
  if seconds < 2:
    raise ConfigError(f"environment: {PEER_TIMEOUT_VAR}={seconds} must be >= 2 (seconds)")
  return seconds


class PeerWatchdog:
  """Heartbeats of this process and checks of the others' through a key-value client
  (`key_value_set(key, value, allow_overwrite=True)`, `key_value_try_get(key)`).

  `check()` makes one round and returns the message naming a lost process, or None; `start()` runs
  rounds every `timeout / 5` seconds on a daemon thread and ends the process on the first message.
  """

  def __init__(self, client: Any, process_id: int, num_processes: int, timeout: float,
               coordinator: str = "", clock: Callable[[], float] = time.monotonic):
    self.client, self.me, self.count, self.timeout = client, process_id, num_processes, timeout
    self.coordinator, self.clock = coordinator, clock
    now = clock()
    self.beats = 0
    self.last_ok = now
    self.seen: dict[int, tuple[str | None, float]] = {p: (None, now) for p in range(num_processes) if p != process_id}
    self._stopped = threading.Event()
    self._thread: threading.Thread | None = None

  def _key(self, process: int) -> str:
    return _KEY.format(process)

  def check(self) -> str | None:
    """Writes this process's next heartbeat and reads the others'; a message when one is lost."""
    now = self.clock()
    try:
      self.beats += 1
      self.client.key_value_set(self._key(self.me), str(self.beats), allow_overwrite=True)
      values = {p: self._read(p) for p in self.seen}
    except Exception as e:  # pylint: disable=broad-except  (the store lives in process 0: it is gone)
      if now - self.last_ok < self.timeout:
        return None
      reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      return (f"process 0 of {self.count} (the coordinator{', ' + self.coordinator if self.coordinator else ''}) "
              f"stopped answering process {self.me} for {self.timeout:g} s ({reason}); it ended or its host "
              f"failed: start every process of the run again with the same command (the last checkpoint is "
              f"kept), or raise {PEER_TIMEOUT_VAR}")
    self.last_ok = now
    for process, value in values.items():
      last_value, since = self.seen[process]
      if value == ENDED:
        self.seen[process] = (value, now)
        continue
      if value != last_value:
        self.seen[process] = (value, now)
      elif now - since >= self.timeout:
        return (f"process {process} of {self.count} sent no heartbeat to process {self.me} for "
                f"{self.timeout:g} s; it ended or its host failed: start every process of the run again with "
                f"the same command (the last checkpoint is kept), or raise {PEER_TIMEOUT_VAR}")
    return None

  def _read(self, process: int) -> str | None:
    try:
      return self.client.key_value_try_get(self._key(process))
    except Exception as e:  # pylint: disable=broad-except
      if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
        return None   # not beating yet
      raise

  def start(self) -> None:
    global _running  # pylint: disable=global-statement
    _running = self
    self._thread = threading.Thread(target=self._loop, name="peer-watchdog", daemon=True)
    self._thread.start()
    atexit.register(self.stop)   # runs before jax.distributed's own shutdown (registered earlier)

  def _loop(self) -> None:
    interval = max(0.5, self.timeout / 5)
    while not self._stopped.wait(interval):
      message = self.check()
      if message is not None and not self._stopped.is_set():
        print(f"error: {message}", file=sys.stderr, flush=True)
        os._exit(1)  # pylint: disable=protected-access  (the main thread is blocked inside JAX)

  def stop(self) -> None:
    """Ends the checks and marks this process's heartbeat as ended (a normal end, not a lost process)."""
    if self._stopped.is_set():
      return
    self._stopped.set()
    try:
      self.client.key_value_set(self._key(self.me), ENDED, allow_overwrite=True)
    except Exception:  # pylint: disable=broad-except  (the store may already be gone at exit)
      pass


def end_after_lost_connection(error: BaseException) -> None:
  """A collective that failed because another process died (the error a launch caught) waits for the
  watchdog to name that process, then ends this one with its line and exit 1, as when the watchdog sees it
  first; never past the timeout (then one line about the failed collective). Returns for any other error
  or without a running watchdog. Ending with os._exit skips JAX's own shutdown, which aborts (exit 134)
  when a process of the run is gone."""
  watchdog = _running
  text = str(error).lower()
  if watchdog is None or watchdog._stopped.is_set() or not any(mark in text for mark in _LOST_CONNECTION):
    return
  deadline = time.monotonic() + watchdog.timeout + max(1.0, watchdog.timeout / 5) * 2
  while time.monotonic() < deadline:
    time.sleep(0.2)   # the watchdog's thread ends the process when it names the lost one
  first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  print(f"error: a collective with the other processes of the run failed ({first[:300]}); start every process "
        "again with the same command (the last checkpoint is kept)", file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access
