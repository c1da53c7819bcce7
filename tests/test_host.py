"""gax.host: the malloc tuning that keeps XLA:CPU's per-step buffers mapped."""

import os
import subprocess
import sys
import textwrap

import pytest

from gax import host

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Allocates, touches and frees a 48 MiB block five times in a fresh process (after
# gax.host.tune_malloc() unless $GAX_MALLOC says "default") and prints the minor page faults
# of the last four rounds. 48 MiB is above the largest mmap threshold glibc reaches by itself
# (32 MiB), so by default every round maps fresh pages and faults on each of them.
_PROBE = textwrap.dedent("""
    import ctypes, resource, sys
    sys.path.insert(0, %r)
    from gax import host
    tuned = host.tune_malloc()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    n = 48 << 20
    faults = []
    for _ in range(5):
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      p = libc.malloc(n)
      ctypes.memset(p, 1, n)
      libc.free(p)
      faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(tuned, sum(faults[1:]))
""" % ROOT)


def _probe(mode):
  env = dict(os.environ, GAX_MALLOC=mode)
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                       check=True, timeout=120).stdout.split()
  return out[0] == "True", int(out[1])


@pytest.mark.skipif(host._glibc() is None, reason="needs glibc")
def test_tuned_malloc_reuses_pages_that_default_maps_afresh():
  pages = 4 * (48 << 20) // os.sysconf("SC_PAGE_SIZE")
  tuned, faults = _probe("default")
  assert not tuned
  assert faults > 0.9 * pages  # every round faults in the whole block again
  tuned, faults = _probe("tuned")
  assert tuned
  assert faults < 0.05 * pages  # the freed block's pages are reused


def test_malloc_mode_reads_the_environment(monkeypatch):
  monkeypatch.delenv(host.MALLOC_ENV, raising=False)
  assert host.malloc_mode() == "tuned"
  monkeypatch.setenv(host.MALLOC_ENV, " Default ")
  assert host.malloc_mode() == "default"
  monkeypatch.setenv(host.MALLOC_ENV, "jemalloc")
  with pytest.raises(ValueError, match="GAX_MALLOC must be one of"):
    host.malloc_mode()


def test_tune_malloc_respects_default_mode_and_other_c_libraries(monkeypatch):
  monkeypatch.setattr(host, "_tuned", None)
  monkeypatch.setenv(host.MALLOC_ENV, "default")
  assert host.tune_malloc() is False
  monkeypatch.setattr(host, "_tuned", None)
  monkeypatch.setenv(host.MALLOC_ENV, "tuned")
  monkeypatch.setattr(host, "_glibc", lambda: None)
  assert host.tune_malloc() is False
  assert host.tune_malloc() is False  # decided once


def test_tune_malloc_rejects_thresholds_mallopt_cannot_take(monkeypatch):
  monkeypatch.setattr(host, "_tuned", None)
  for bad in (0, -1, 1 << 31):
    with pytest.raises(ValueError, match="threshold"):
      host.tune_malloc(bad)
