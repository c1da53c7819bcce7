"""The host process's memory allocator, tuned for XLA:CPU's per-step buffers.

XLA:CPU allocates a program's temporary buffers with `malloc` at every execution and frees
them when it ends. With glibc's default settings a block above the mmap threshold (128 KiB,
raised as blocks are freed up to 32 MiB) is a fresh `mmap` each time, and the heap's top is
handed back to the kernel once more than the trim threshold is free. Either way the next step
touches new pages and the kernel zero-fills them one page fault at a time. For the DCGAN step
at 32x32, batch 64 (tens of MB of temporaries) that was 30 ms of system time in a 160 ms step
on a 2-core Sapphire Rapids Xeon (getrusage; docs/speed.md, 2026-12-05, fourth session).

`tune_malloc()` raises both thresholds to 1 GiB with glibc's `mallopt`: blocks below that come
from the heap and stay mapped once freed, so later steps reuse pages that are already there.
The system time fell to about 1 ms and the step to 145-155 ms. The price is that the process
keeps its peak heap mapped instead of returning it to the kernel between steps, the usual
trade of a long-running training process. Blocks of a GiB or more are still mapped apiece.

gax's launchers (`gax.cli.run`, the benchmarks) and its test suite call it at start-up. A
program that imports gax as a library calls it itself, once, early. `$GAX_MALLOC=default`
leaves the allocator alone. On a C library other than glibc (musl, macOS) it changes nothing
and says so.
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

from absl import logging

MALLOC_ENV = "GAX_MALLOC"
MALLOC_MODES = ("tuned", "default")
THRESHOLD = 1 << 30

# glibc's malloc.h parameter numbers for mallopt.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_tuned: Optional[bool] = None


def _glibc() -> Optional[ctypes.CDLL]:
  """The process's C library if it is glibc, else None."""
  try:
    libc = ctypes.CDLL(None)  # the symbols the process already has, its C library's among them
  except OSError:
    return None
  if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
    return None
  return libc


def malloc_mode() -> str:
  """`$GAX_MALLOC`, "tuned" when unset; an error for any other value."""
  mode = os.environ.get(MALLOC_ENV, "tuned").strip().lower() or "tuned"
  if mode not in MALLOC_MODES:
    raise ValueError(f"${MALLOC_ENV} must be one of {MALLOC_MODES}; got "
                     f"{os.environ[MALLOC_ENV]!r}.")
  return mode


def tune_malloc(threshold: int = THRESHOLD) -> bool:
  """Raises glibc's mmap and trim thresholds to `threshold` bytes (see the module docstring).

  Returns whether the allocator is now tuned: False where `$GAX_MALLOC` is "default" or the C
  library is not glibc. Calling it again does nothing more.
  """
  global _tuned
  if not 0 < threshold < 1 << 31:
    raise ValueError(f"threshold must be in (0, 2 GiB) (mallopt takes an int); got {threshold}.")
  if _tuned is not None:
    return _tuned
  if malloc_mode() == "default":
    _tuned = False
    return _tuned
  libc = _glibc()
  if libc is None:
    logging.info("gax.host.tune_malloc: the C library is not glibc; the allocator keeps its "
                 "own settings.")
    _tuned = False
    return _tuned
  ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1
  ok = libc.mallopt(_M_TRIM_THRESHOLD, threshold) == 1 and ok
  if not ok:
    raise OSError(f"glibc's mallopt refused a threshold of {threshold} bytes.")
  _tuned = True
  return _tuned


__all__ = ["MALLOC_ENV", "MALLOC_MODES", "THRESHOLD", "malloc_mode", "tune_malloc"]
