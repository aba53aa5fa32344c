"""The errors meant for a user: one base class, one subclass per kind of problem.

A launch main catches `MpcodecError` alone and prints its message as one `error: ...` line; anything else
is a bug and keeps its traceback. Each message names the problem (config key, file, checkpoint step,
seed) so that the line is enough to act on.
"""

import errno

# What a full disk or quota looks like: the OS error, or the text of TensorStore's status (Orbax raises it
# as a ValueError "RESOURCE_EXHAUSTED: ...").
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXTS = ("RESOURCE_EXHAUSTED", "No space left on device", "Disk quota exceeded")


def is_disk_full(error: BaseException | None) -> bool:
  """Whether `error`, or an error it was raised from, says the disk (or the user's quota) is full."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
      return True
    if any(text in str(error) for text in _DISK_FULL_TEXTS):
      return True
    error = error.__cause__ or error.__context__
  return False


class MpcodecError(Exception):
  """A problem with the user's input, files or run that one line can explain."""


class ConfigError(MpcodecError, ValueError):
  """A config key is unknown, missing, of the wrong type or holds an impossible value."""


class DataError(MpcodecError, ValueError):
  """A dataset is missing, malformed or does not match what the config asks for."""


class CheckpointError(MpcodecError, RuntimeError):
  """A checkpoint is missing, unreadable, corrupt or does not match the expected structure."""


class WorkdirError(MpcodecError, RuntimeError):
  """The workdir is in use by another process, not writable, or holds a run of another config."""


class DiskFullError(WorkdirError):
  """The disk (or quota) of the workdir filled up while a run wrote to it; names the last good checkpoint."""


class NonFiniteError(MpcodecError, FloatingPointError):
  """A seed's loss (or another checked quantity) became NaN or Inf; names study, phase, step and seed."""


class InterruptedRun(MpcodecError, KeyboardInterrupt):
  """The run was interrupted (SIGINT, or SIGTERM: pre-empted) and stopped cleanly after writing a checkpoint.

  `exit_status` is what the launch exits with: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
  """

  def __init__(self, message: str, exit_status: int = 130):
    super().__init__(message)
    self.exit_status = exit_status


class ActivationError(MpcodecError, ValueError):
  """Activations fed to the codec are malformed: wrong width, NaN/Inf, unknown layer."""


class SweepError(MpcodecError, RuntimeError):
  """A sweep's workdir holds results of another config, or some of its runs did not finish."""


class IncompleteRunError(MpcodecError, RuntimeError):
  """An analysis was asked of a run that has not reached its configured steps."""
