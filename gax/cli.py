"""The launchers' front end: absl apps whose user errors print one line, not tracebacks.

`run(main)` is `absl.app.run(main)` with three differences:

* An error the user can act on (a bad config value or key, a missing or corrupt file, a
  locked work directory, a run that diverged, a full disk: `USER_ERRORS`) prints
  `<script>: error: <message>` once on stderr and exits with status 1. Set `GAX_TRACEBACK=1`
  to get the traceback as well (for a bug report).
* A `--config.KEY=VALUE` override of a key the config does not have is the same kind of one
  line naming the keys it does have; for `config.data`, how to switch the config to another
  data source (`--config=PATH:SOURCE`, see `gax.builders.with_data`).
* `gax.host.tune_malloc()` runs first: XLA:CPU's per-step buffers stay mapped between steps
  (`$GAX_MALLOC=default` keeps glibc's own settings).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from typing import Any, Callable, List, NoReturn, Optional, Sequence

from absl import app, flags

from gax import data as data_lib
from gax import host
from gax.checkpoint import CheckpointError
from gax.monitor import MonitorStop
from gax.workdir import WorkdirError

# OSError covers FileNotFoundError, PermissionError and a full disk (ENOSPC).
USER_ERRORS = (ValueError, KeyError, OSError, CheckpointError, WorkdirError,
               FloatingPointError, MonitorStop)
TRACEBACK_ENV = "GAX_TRACEBACK"


def error_message(e: BaseException) -> str:
  """The one-line text of a user error (a `KeyError`'s message without its quotes)."""
  msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
  return " ".join(str(msg).split()) or type(e).__name__


def fail(message: str, status: int = 1) -> NoReturn:
  """Prints `<script>: error: message` on stderr and exits with `status`."""
  print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def _load_config(spec: str) -> Any:
  """The config of `--config=PATH[:ARG]`, as `ml_collections.config_flags` builds it."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_gax_cli_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _keys(node: Any) -> List[str]:
  return sorted(node.keys()) if hasattr(node, "keys") else []


def override_error(argv: Sequence[str], flag: str = "config") -> Optional[str]:
  """For argv's `--config.KEY=...` overrides, a message naming the first KEY the config does
  not have (and the keys its parent has), or `None` when every key exists."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag}=")), None)
  if spec is None:
    return None
  try:
    config = _load_config(spec)
  except Exception:  # pylint: disable=broad-except
    return None
  prefix = f"--{flag}."
  for arg in argv:
    if not arg.startswith(prefix):
      continue
    key = arg[len(prefix):].split("=", 1)[0]
    node, walked = config, []
    for part in key.split("."):
      if not hasattr(node, "keys") or part not in node.keys():
        parent = ".".join([flag] + walked)
        msg = (f"{parent} has no key {part!r} (--{flag}.{key}); its keys: "
               f"{', '.join(_keys(node)) or '(none: it is a value)'}.")
        if walked == ["data"]:
          msg += (f" Another data source's options come with its name after the config file, "
                  f"e.g. --{flag}={spec.partition(':')[0]}:array --{flag}.data.path=FILE "
                  f"(sources: {', '.join(data_lib.DATASETS.names())}).")
        return msg
      node = node[part]
      walked.append(part)
  return None


def _parse_flags(argv: List[str]) -> List[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error:
    raise  # absl prints these in one line itself
  except Exception as e:  # pylint: disable=broad-except
    # ml_collections' config flag applies the overrides while parsing and raises the
    # AttributeError/KeyError of a missing key, or a TypeError/ValueError of a bad value.
    if os.environ.get(TRACEBACK_ENV):
      traceback.print_exc()
    fail(override_error(argv) or f"bad command-line flag: {type(e).__name__}: "
         f"{error_message(e)}", status=2)


def _unraisable(hook):
  """A `sys.unraisablehook` that drops Orbax's writes abandoned at exit after a failed save
  ("Exception ignored in: <coroutine ...>", reported once already as the error)."""

  def unraisable(info):
    noise = "orbax" in repr(info.object) or _abandoned_write(info.exc_type, info.exc_value,
                                                               info.exc_traceback)
    if os.environ.get(TRACEBACK_ENV) or not noise:
      hook(info)

  return unraisable


def _abandoned_write(kind, value, tb) -> bool:
  """Whether an exception is an abandoned asynchronous read or write of Orbax/tensorstore
  finding its event loop closed at exit (after a failure that was reported already)."""
  if kind is not RuntimeError or "Event loop is closed" not in str(value):
    return False
  frames = traceback.extract_tb(tb)
  return bool(frames) and all("asyncio" in f.filename or "orbax" in f.filename for f in frames)


def _excepthook(hook):
  """A `sys.excepthook` that drops `_abandoned_write` exceptions, which tensorstore's threads
  print at exit when a checkpoint could not be read or written."""

  def excepthook(kind, value, tb):
    if os.environ.get(TRACEBACK_ENV) or not _abandoned_write(kind, value, tb):
      hook(kind, value, tb)

  return excepthook


def run(main: Callable[[List[str]], Any]) -> None:
  """`absl.app.run(main)`, with user errors as one line (see the module docstring)."""
  sys.unraisablehook = _unraisable(sys.unraisablehook)
  sys.excepthook = _excepthook(sys.excepthook)

  def main_(argv):
    try:
      host.tune_malloc()
      return main(argv)
    except app.UsageError:
      raise
    except USER_ERRORS as e:
      if os.environ.get(TRACEBACK_ENV):
        traceback.print_exc()
      fail(error_message(e))

  app.run(main_, flags_parser=_parse_flags)


__all__ = ["USER_ERRORS", "TRACEBACK_ENV", "error_message", "fail", "override_error", "run"]
