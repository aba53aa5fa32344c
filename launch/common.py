"""What every launch main shares: known user errors end the run with one clear line, not a traceback."""

import sys

from absl import app, logging

from mpcodec.checkpoint import CheckpointError
from mpcodec.codec.sources import ActivationError
from mpcodec.configuration import ConfigError
from mpcodec.data.dataset import DataError
from mpcodec.train.mono_poly import WorkdirConflictError
from mpcodec.train.dynamics_sweep import DivergedError, SweepError
from mpcodec.train.sweep import NonFiniteLossError

USER_ERRORS = (ConfigError, CheckpointError, DataError, WorkdirConflictError, NonFiniteLossError,
               ActivationError, DivergedError, SweepError)


def run(main):
  """app.run(main), printing `error: <message>` and exiting with status 1 on a known user error."""

  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      logging.error("%s: %s", type(e).__name__, e)
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

  app.run(guarded)
