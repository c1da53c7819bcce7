"""Prefetching batches ahead of the step, and measuring how fast a source feeds the device."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from gax.data.core import Batch


def benchmark_source(source: Any, steps: int = 50, start: int = 0,
                     put: Optional[Callable[[Batch], Any]] = None, warmup: int = 2,
                     prefetch_size: int = 2) -> Dict[str, float]:
  """How fast `source` feeds the device: `get(step)` then `put` (default `jax.device_put`,
  waited for) over `steps` steps, alone and overlapped by `prefetch` as the train loop does.

  Returns:
    `get_ms` and `put_ms` (mean per step, sequential), `batches_per_s` and `examples_per_s`
    (through `prefetch`, one example = one image of one critic step), `mb_per_s` (bytes moved
    to the device), `batch_mb`.
  """
  import jax  # pylint: disable=g-import-not-at-top

  if put is None:
    put = lambda b: jax.block_until_ready(jax.device_put(b))
  for s in range(start, start + warmup):
    put(source.get(s))
  first = source.get(start)
  nbytes = sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(first))
  examples = int(np.prod(np.shape(jax.tree_util.tree_leaves(first)[0])[:2]))
  t_get = t_put = 0.0
  for s in range(start, start + steps):
    t0 = time.perf_counter()
    batch = source.get(s)
    t1 = time.perf_counter()
    put(batch)
    t_get, t_put = t_get + t1 - t0, t_put + time.perf_counter() - t1
  t0 = time.perf_counter()
  for _ in prefetch(source, start, start + steps, prefetch_size, transform=put):
    pass
  rate = steps / (time.perf_counter() - t0)
  return {"get_ms": 1e3 * t_get / steps, "put_ms": 1e3 * t_put / steps, "batches_per_s": rate,
          "examples_per_s": rate * examples, "mb_per_s": rate * nbytes / 1e6,
          "batch_mb": nbytes / 1e6}


def prefetch(source: Any, start: int, stop: int, size: int = 2,
             transform: Optional[Callable[[Batch], Any]] = None) -> Iterator[Tuple[int, Any]]:
  """Yields `(step, transform(source.get(step)))` for steps in `[start, stop)`, fetched by a
  background thread up to `size` steps ahead (`transform` typically puts the batch on device;
  a batch with labels is a dict of arrays, so it should be pytree-aware, as
  `jax.device_put` is). `size=0` fetches in the caller's thread, when asked: for a source
  that only slices host memory, where JAX's asynchronous dispatch already overlaps the fetch
  with the running step and a thread's hand-offs cost more than the fetch (`fetch_size`)."""
  transform = transform or (lambda x: x)
  if size < 0:
    raise ValueError(f"prefetch size must be >= 0; got {size}.")
  if size == 0:
    for step in range(start, stop):
      yield step, transform(source.get(step))
    return
  q: "queue.Queue" = queue.Queue(maxsize=size)
  stop_event = threading.Event()

  def producer():
    try:
      for step in range(start, stop):
        if stop_event.is_set():
          return
        q.put((step, transform(source.get(step))))
    except BaseException as e:  # surfaced in the consumer
      q.put(e)
    q.put(None)

  thread = threading.Thread(target=producer, daemon=True)
  thread.start()
  try:
    while True:
      item = q.get()
      if item is None:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop_event.set()
    while thread.is_alive():
      try:
        q.get_nowait()
      except queue.Empty:
        thread.join(timeout=0.05)


def fetch_size(source: Any, default: int = 2) -> int:
  """How far ahead the train loop fetches `source`: its `prefetch_size` (0 for the in-memory
  sources, whose `get` is a slice of host arrays: on the 2-core CPU machine a prefetch thread
  cost the MLP step 12% of its speed, 1.27 against 1.13 ms a step), else `default`."""
  return int(getattr(source, "prefetch_size", default))


__all__ = ["benchmark_source", "fetch_size", "prefetch"]
