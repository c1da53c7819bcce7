"""One writer per work directory: an exclusive OS lock held for the whole run.

Two runs writing one work directory would interleave their `metrics.jsonl` records and
overwrite each other's checkpoints. `WorkdirLock` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on
`<workdir>/.lock` and holds it until it is released or the process ends in any way (kill -9
included: the kernel drops the lock with the last open descriptor, so a lock is never left
stale the way a pid file is). The file records who holds it (pid, host, start time,
command line) so that a second run can say so; the record is informational, the lock is the
kernel's.

With several processes (`jax.distributed`), process 0 alone takes the lock: the others share
its run. flock is reliable on local filesystems; on NFS it is emulated with byte-range locks
(Linux >= 2.6.12), and on some network filesystems it is not supported, which is an error
(`WorkdirError`), not a run without a lock.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from typing import Any, Dict, Optional

LOCK_FILE = ".lock"


class WorkdirError(RuntimeError):
  """The work directory cannot be created, written or locked."""


class WorkdirLocked(WorkdirError):
  """Another process holds the work directory's lock (`holder`: what it recorded)."""

  def __init__(self, message: str, holder: Dict[str, Any]):
    super().__init__(message)
    self.holder = holder


def _describe(holder: Dict[str, Any]) -> str:
  if not holder:
    return "another process (it has not recorded itself yet)"
  return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since "
          f"{holder.get('since', '?')} ({holder.get('command', '?')})")


def read_holder(workdir: str) -> Dict[str, Any]:
  """What the lock file of `workdir` records (`{}` if nothing readable): the last holder's
  pid, host, start time and command line. It does not say whether the lock is held now."""
  try:
    with open(os.path.join(workdir, LOCK_FILE)) as f:
      holder = json.load(f)
    return holder if isinstance(holder, dict) else {}
  except (OSError, ValueError):
    return {}


class WorkdirLock:
  """The exclusive lock of one work directory, as a context manager (or `acquire`/`release`).

  >>> with WorkdirLock("runs/digits"):  # raises WorkdirLocked if another run holds it
  ...   train(...)
  """

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> "WorkdirLock":
    if self._fd is not None:
      return self
    try:
      os.makedirs(self.workdir, exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(
          f"Cannot write to the work directory {self.workdir}: {e.strerror or e}.") from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        holder = read_holder(self.workdir)
        raise WorkdirLocked(
            f"The work directory {self.workdir} is in use by another run: {_describe(holder)}. "
            "Wait for it to end or stop it, or use another --workdir.", holder) from None
      raise WorkdirError(f"Cannot lock the work directory {self.workdir} ({self.path}): "
                         f"{e.strerror or e}; its filesystem may not support flock.") from e
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv) or sys.executable}
    try:
      os.ftruncate(fd, 0)
      os.write(fd, (json.dumps(holder) + "\n").encode())
      os.fsync(fd)
    except OSError as e:
      os.close(fd)
      raise WorkdirError(
          f"Cannot write to the work directory {self.workdir}: {e.strerror or e}.") from e
    self._fd = fd
    return self

  def release(self) -> None:
    """Releases the lock (the file stays, with the last holder's record)."""
    if self._fd is not None:
      fd, self._fd = self._fd, None
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)

  @property
  def held(self) -> bool:
    return self._fd is not None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


__all__ = ["LOCK_FILE", "WorkdirError", "WorkdirLocked", "read_holder", "WorkdirLock"]
