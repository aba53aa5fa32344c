"""A run's workdir: checked writable before any long work, and held by one process at a time.

The lock is a file `<workdir>/.lock` holding the holder's host, pid and command. A second process
refuses the workdir with a message naming it and the holder; a lock left by a process that no longer
runs on this host is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

from absl import logging

from mpcodec.core.errors import WorkdirError

LOCK_NAME = ".lock"
# Lock files this process holds -> how many nested `locked` blocks hold each (re-entry keeps the lock).
_HELD: dict[str, int] = {}


def check_writable(workdir: str) -> None:
  """Creates `workdir` if needed and writes a probe file in it; WorkdirError naming it otherwise."""
  try:
    os.makedirs(workdir, exist_ok=True)
    # Host and pid: processes of one multi-host run probe a shared workdir at once, pids may repeat.
    probe = os.path.join(workdir, f".write_probe_{socket.gethostname()}_{os.getpid()}")
    with open(probe, "w", encoding="utf-8") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"workdir {workdir} is not writable ({e.strerror or e}); choose another --workdir") from e


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _holder(path: str) -> dict | None:
  """The lock's holder, or None when the file is missing, not JSON, or JSON of another shape (garbage)."""
  try:
    with open(path, encoding="utf-8") as f:
      holder = json.load(f)
  except (OSError, ValueError):
    return None
  if (not isinstance(holder, dict) or not isinstance(holder.get("host"), str)
      or not isinstance(holder.get("pid"), int) or isinstance(holder.get("pid"), bool)):
    return None
  return holder


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
  """Holds `workdir` for this process for the duration of the block."""
  check_writable(workdir)
  path = os.path.join(workdir, LOCK_NAME)
  key = os.path.realpath(path)
  if _HELD.get(key) and (_holder(path) or {}).get("pid") == os.getpid():
    # Held by an outer block of this process: that block keeps the lock and releases it.
    _HELD[key] += 1
    try:
      yield
    finally:
      _HELD[key] -= 1
    return
  me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv)[:500]}
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      holder = _holder(path)
      if holder is None:
        time.sleep(0.2)  # Being written right now, or garbage: look once more before taking it over.
        holder = _holder(path)
      same_host = holder is not None and holder["host"] == me["host"]
      stale = holder is None or (same_host and not _alive(holder["pid"]))
      if same_host and holder["pid"] == me["pid"]:
        stale = True  # Our own lock from an earlier run in this process.
      if not stale:
        elsewhere = "" if same_host else (
            f" (on another host, so whether it still runs cannot be checked from here: if it has ended, "
            f"remove {path} and run again)")
        raise WorkdirError(
            f"workdir {workdir} is in use by pid {holder['pid']} on {holder['host']} since "
            f"{holder.get('since')} ({holder.get('command')}); wait for it to end or use another "
            f"--workdir{elsewhere}") from None
      if holder is None or holder["pid"] != me["pid"]:
        logging.warning("workdir %s: taking over the lock %s (%s)", workdir, path,
                        "unreadable or malformed" if holder is None else
                        f"left by pid {holder['pid']}, which no longer runs")
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
      continue
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(me, f)
    break
  else:
    raise WorkdirError(f"workdir {workdir}: could not take its lock file {path}")
  _HELD[key] = 1
  try:
    yield
  finally:
    _HELD.pop(key, None)
    _release(path, me)


def _release(path: str, me: dict) -> None:
  """Removes our lock file. A failure (a filesystem remounted read-only, a full disk) is only a warning:
  the next run takes the lock of a process that ended over, and an error that ended the block must not
  be hidden behind this one."""
  holder = _holder(path)
  if holder is None or holder.get("pid") != me["pid"] or holder.get("host") != me["host"]:
    return
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
  except OSError as e:
    logging.warning("could not remove the lock file %s (%s); the next run takes it over", path,
                    e.strerror or e)


@contextlib.contextmanager
def writable(workdir: str) -> Iterator[None]:
  """`check_writable`, as a block (for processes that share a workdir another process holds)."""
  check_writable(workdir)
  yield
