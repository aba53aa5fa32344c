"""What every launch main shares: a user error ends the run with one clear line, not a traceback."""

import errno
import sys

from absl import app, logging

from mpcodec.core.errors import MpcodecError

# OS errors a user can act on (full disk, read-only or forbidden folder): one line, no traceback.
_USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _fail(message: str, status: int = 1):
  logging.error("%s", message)
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


def run(main):
  """app.run(main), printing `error: <message>` and exiting non-zero on a user error.

  Bad `--config.<key>` overrides (an unknown key, a wrong type) are reported the same way.
  """

  def guarded(argv):
    try:
      return main(argv)
    except MpcodecError as e:
      _fail(str(e))
    except OSError as e:
      if e.errno not in _USER_OS_ERRORS:
        raise
      where = f"{e.filename}: " if e.filename else ""
      _fail(f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
      _fail("interrupted; the last checkpoint is kept, and the same command resumes from it", 130)

  def parse_flags(argv):
    try:
      return app.parse_flags_with_usage(argv)
    except SystemExit:
      raise
    except Exception as e:  # config_flags raises plain errors for a bad --config.<key>=<value>
      cause = e
      while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
      _fail(f"bad flag: {_first_line(e)}" + (f" ({_first_line(cause)})" if cause is not e else ""), 2)

  app.run(guarded, flags_parser=parse_flags)


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return lines[0] if lines else type(e).__name__
