"""What every launch main shares: a user error ends the run with one clear line, not a traceback."""

import errno
import sys

from absl import app, flags, logging

from mpcodec.core.errors import InterruptedRun, MpcodecError

# OS errors a user can act on (full disk, read-only or forbidden folder): one line, no traceback.
_USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                   errno.ENOTDIR, None)  # None: config_flags' 'file not found' for a bad --config path


def _fail(message: str, status: int = 1, log: bool = False):
  """Prints the one `error:` line and exits; `log` also sends it to absl's log (when it goes to files)."""
  if log:
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
    except InterruptedRun as e:  # Also an MpcodecError: caught first, so it exits 130 like Ctrl-C.
      _fail(str(e), 130)
    except MpcodecError as e:
      _fail(str(e))
    except OSError as e:
      if e.errno not in _USER_OS_ERRORS:
        raise
      if e.errno is None:  # config_flags: a --config file that cannot be loaded; its last line says why
        _fail(f"--config: {str(e).strip().splitlines()[-1].strip()}")
      where = f"{e.filename}: " if e.filename else ""
      _fail(f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
      _fail("interrupted; the last checkpoint is kept, and the same command resumes from it", 130)

  def parse_flags(argv):
    try:
      return flags.FLAGS(argv)  # Not app.parse_flags_with_usage: it prints a "FATAL ..." block of its own.
    except SystemExit:
      raise
    except Exception as e:  # absl's flags.Error (a wrong type, an unknown flag), or the plain errors
      _fail(_flag_error(e, argv), 2, log=False)  # config_flags raises for an unknown --config.<key>

  app.run(guarded, flags_parser=parse_flags)


def _flag_error(e: BaseException, argv) -> str:
  """One line for a flag that does not parse, naming the flag as given on the command line."""
  chain = [e]
  while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
    chain.append(chain[-1].__cause__ or chain[-1].__context__)
  root = chain[-1]
  if isinstance(root, KeyError) and root.args and isinstance(root.args[0], str):
    # An unknown --config.<key>: ConfigDict raises KeyError(key), then re-raises it with a suggestion.
    key = root.args[0]
    arg = next((a for a in argv[1:] if a.startswith("-") and "." in a.split("=", 1)[0]
                and key in a.lstrip("-").split("=", 1)[0].split(".")[1:]), None)
    hints = [line.strip() for c in chain for line in str(c.args[0] if c.args else "").splitlines()[1:]
             if line.strip().lower().startswith("did you mean")]
    hint = f" ({hints[0][0].lower()}{hints[0][1:].rstrip('?')}?)" if hints else ""
    return f"bad flag {arg or '--config.' + key}: the config has no key {key!r}{hint}"
  head = _first_line(e)
  if head.startswith("flag --"):  # absl: "flag --name=value: problem"
    head = head[len("flag "):]
  root_line = _first_line(root)
  if root is not e and root_line not in head:  # e.g. the config file's get_config raised
    head = f"{head.rstrip(':')}: {root_line}"
  return f"bad flag {head}" if head.startswith("--") else f"bad flag: {head}"


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return lines[0] if lines else type(e).__name__
