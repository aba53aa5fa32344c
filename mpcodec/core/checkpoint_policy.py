"""When a chunk end of the run loop saves a checkpoint: by step (the plan), and optionally by time.

The plan is a phase's: step 0, every `checkpoint_every` steps, its `extra_checkpoints` and its end; a
stop (SIGINT, SIGTERM) always saves too. `CheckpointPolicy.min_interval_s` adds a rule by time: a chunk
end that is not planned also saves when at least that many seconds have passed since the last save
(as "every 500 steps or 30 s"), so a long chunk plan loses at most about that much work to a kill.

Chunks still end where the plan and `chunk_every` say, a function of the absolute step alone, so a
resumed run executes the same chunks and stays bit-identical: the time rule only decides whether a
chunk end saves. A checkpoint saved by the time rule is a resume point and nothing more: the loop removes
it when its phase ends, so a finished run holds exactly its planned steps whatever the timing was.

The interval comes from `run(..., checkpoint_policy=...)`, else from the environment variable
MPCODEC_CHECKPOINT_INTERVAL_S (unset: the plan alone, as before).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping

from mpcodec.core.errors import ConfigError

INTERVAL_VAR = "MPCODEC_CHECKPOINT_INTERVAL_S"


def check_interval(value, name: str) -> float | None:
  """`value` as seconds (None: no time rule); ConfigError naming `name` unless it is a finite number > 0."""
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
    raise ConfigError(f"{name}: a minimum interval between checkpoints must be a number of seconds > 0, got "
                      f"{value!r} (leave it unset to save by step alone)")
  return float(value)


@dataclasses.dataclass(frozen=True)
class CheckpointPolicy:
  """Which chunk ends save: the phase's planned steps, a stop, and (with `min_interval_s`) any chunk end
  reached at least `min_interval_s` seconds after the last save.

  Attributes:
    min_interval_s: seconds; None saves by step alone.
    clock: seconds of a monotonic clock, read once per chunk end while `min_interval_s` is set (and once
      when the run starts); a test plants its own.
  """

  min_interval_s: float | None = None
  clock: Callable[[], float] = time.monotonic

  def __post_init__(self):
    object.__setattr__(self, "min_interval_s", check_interval(self.min_interval_s, "min_interval_s"))

  @classmethod
  def from_environment(cls, environ: Mapping[str, str] | None = None) -> CheckpointPolicy:
    """The policy MPCODEC_CHECKPOINT_INTERVAL_S asks for (unset or empty: by step alone)."""
    environ = os.environ if environ is None else environ
    text = environ.get(INTERVAL_VAR, "").strip()
    if not text:
      return cls()
    try:
      seconds = float(text)
    except ValueError:
      raise ConfigError(f"environment: {INTERVAL_VAR}={text!r} is not a number of seconds") from None
    return cls(check_interval(seconds, f"environment: {INTERVAL_VAR}"))

  def timer(self) -> SaveTimer:
    return SaveTimer(self)


class SaveTimer:
  """The time since the last save, for one run: `decide(planned)` at each chunk end says whether it saves."""

  def __init__(self, policy: CheckpointPolicy):
    self.policy = policy
    self.last = policy.clock() if policy.min_interval_s is not None else 0.0

  def decide(self, planned: bool) -> bool:
    """True for a planned chunk end, or an unplanned one `min_interval_s` or more after the last save."""
    if self.policy.min_interval_s is None:
      return planned
    now = self.policy.clock()
    if planned or now - self.last >= self.policy.min_interval_s:
      self.last = now
      return True
    return False
