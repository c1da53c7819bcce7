"""The training loop of any `GAN`: `fit(gan, state, data, steps, ...)`.

`fit` runs the jitted (or `pmap`ped, or mesh-sharded) train step over a data source and
does what a long run needs around it, each part switched on by its argument:

  log_every         metrics averaged on the device over the steps since the last log
                    (`Hook.state_metrics`, such as ADA's p, at their last value), with
                    steps/s and an ETA, written to `<workdir>/metrics.jsonl`
  checkpoint_every  Orbax checkpoints of the whole `GANState` in `<workdir>/checkpoints/`;
                    a later `fit` on the same work directory resumes from the newest one
  evaluator         `gax.evaluation.Evaluator` results every `eval_every` steps in
                    `eval.jsonl`, and the best state by its metric in `best/`
  monitor           `gax.monitor.Monitor` alarms on the logged metrics and evaluations in
                    `alarms.jsonl`, stopping the run on the kinds it is told to
  callbacks         `Callback`s: after every `every` steps, at each log and evaluation, at
                    the start and the end (e.g. `SampleGrid`)

Exact resume: the PRNG key is part of the state and the data are a function of the step
(`data.get(step)` of a `gax.data` source, or a callable `step -> batch`), so a resumed run
computes the same steps as one that was never stopped. An iterable of batches works too, but
is read from where it stands: after a resume its batches are not those the stopped run would
have seen (`fit` says so in the log).

`gax.trainer.train` (config -> run) builds the GAN, state, data and evaluator from a config
and calls `fit`; there is one loop.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import socket
import struct
import sys
import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gax import evaluation, parallel, visualize
from gax import conv as conv_lib
from gax import monitor as monitor_lib
from gax.checkpoint import Checkpointer
from gax.data import fetch_size, prefetch
from gax.state import GANState
from gax.steps import GAN, generate, jit_train_step, sampling_player
from gax.workdir import WorkdirError, WorkdirLock

METRICS_FILE = "metrics.jsonl"
EVAL_FILE = evaluation.EVAL_FILE
ALARMS_FILE = "alarms.jsonl"
CHECKPOINT_DIR = "checkpoints"
PARALLEL = ("none", "pmap", "mesh")
ON_CORRUPT_CHECKPOINT = ("error", "previous")


class Callback:
  """Something `fit` calls during training; override the methods you need.

  Every process of a multi-process run calls its callbacks (work such as sampling from a
  mesh-sharded state is collective); write files from process 0 only
  (`jax.process_index() == 0`). `state` is the state as one device holds it (under `pmap`,
  the first replica). A callback that raises stops the run, after the files are closed.
  A callback with a `close()` method has it called when the loop stops, by an error too.
  """

  every: int = 0  # `on_step` after every `every` steps and after the last one; 0: never

  def on_start(self, step: int, state: GANState) -> None:
    """Before the first step of this call (`step` > 0 when resuming)."""

  def on_step(self, step: int, state: GANState) -> None:
    """After step `step` (counted from 1), when it is a multiple of `every` or the last."""

  def on_log(self, step: int, record: Mapping[str, float]) -> None:
    """After a log: `record` is the line written to metrics.jsonl."""

  def on_evaluate(self, step: int, result: Mapping[str, Any]) -> None:
    """After an evaluation, with the evaluator's result."""

  def on_end(self, step: int, state: GANState) -> None:
    """After the last step (not called when the run stops with an error)."""


class SampleGrid(Callback):
  """Saves `<directory>/step_<step>.png`: G's samples from fixed latents (and, for a
  conditional GAN, labels where row i shows class i mod K) every `every` steps, with the EMA
  weights when the state keeps them (`gax.steps.sampling_player`); images as a grid, 2D
  points as a scatter plot (over `centers`, if given). `gan` must be one without a mapped
  axis (build it with `axis_name=None` for a `pmap` run)."""

  def __init__(self, gan: GAN, directory: str, every: int, num: int = 64, seed: int = 0,
               centers: Optional[np.ndarray] = None):
    if int(every) < 1 or int(num) < 1:
      raise ValueError(f"SampleGrid needs every >= 1 and num >= 1, got {every} and {num}.")
    self.every, self.directory, self.centers = int(every), directory, centers
    z = gan.latent(jax.random.PRNGKey(seed + 1), (int(num), gan.latent_dim))
    y = grid_labels(gan, int(num))
    # A fixed key too, for G's dropout or noise layers, so successive grids are comparable.
    self._generate = jax.jit(lambda g: generate(gan, sampling_player(g), z, y,
                                                key=jax.random.PRNGKey(seed + 3)),
                             compiler_options=conv_lib.compiler_options())
    self.last_path: Optional[str] = None

  def on_step(self, step: int, state: GANState) -> None:
    images = np.asarray(self._generate(state.g))
    if jax.process_index() != 0:
      return
    os.makedirs(self.directory, exist_ok=True)
    path = os.path.join(self.directory, f"step_{step:07d}.png")
    if images.ndim == 2:
      visualize.save_scatter(path, images, self.centers)
    else:
      visualize.save_image_grid(path, images)
    self.last_path = path
    logging.info("Wrote samples to %s", path)


class TensorBoard(Callback):
  """TensorBoard event files in `logdir` (`tensorboard --logdir runs/`), from process 0: a
  scalar for every logged metric (`train/<name>`) and numeric evaluation result
  (`eval/<name>`), the images of a `SampleGrid` as `samples` (given as `samples`, placed
  before this callback), and `text` (e.g. the config) as `config` at the start.

  Events are tensorboardX's protocol buffers (no TensorFlow needed), framed as TFRecords and
  written here, synchronously, at log points only (a few hundred bytes a log; a grid's PNG
  at sample points): a failed write (a full disk) is then a `WorkdirError` of this process,
  where tensorboardX's own background writer would die alone and leave the run waiting on
  it at the next flush. A resumed run's file begins with a purge after the restored step,
  so TensorBoard drops what the stopped run wrote past it: no step appears twice.
  """

  def __init__(self, logdir: str, samples: Optional[SampleGrid] = None, text: str = ""):
    self.logdir, self.samples, self.text = logdir, samples, text
    self.every = samples.every if samples is not None else 0
    self._file = None
    self.path: Optional[str] = None

  def on_start(self, step: int, state: GANState) -> None:
    if jax.process_index() != 0:
      return
    try:
      from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("TensorBoard logging needs tensorboardX (pip install tensorboardX); "
                        "or switch it off (config.train.tensorboard=False).") from e
    self._event_pb2 = event_pb2
    os.makedirs(self.logdir, exist_ok=True)
    # The suffix keeps two files begun in the same second (the name's timestamp) apart, in
    # the order of their first steps, which is the order TensorBoard reads them in.
    self.path = os.path.join(self.logdir, f"events.out.tfevents.{int(time.time()):010d}."
                             f"{socket.gethostname()}.step{step:09d}")
    self._file = open(self.path, "ab")
    self._write(event_pb2.Event(step=step, file_version="brain.Event:2"))
    if step:  # events of steps > `step` in earlier files of this directory are discarded
      self._write(event_pb2.Event(step=step + 1, session_log=event_pb2.SessionLog(
          status=event_pb2.SessionLog.START)))
    if self.text:
      from tensorboardX import summary  # pylint: disable=g-import-not-at-top
      self._write(self._event_pb2.Event(step=step, summary=summary.text("config", self.text)))
    self._flush()

  def _write(self, event) -> None:
    from tensorboardX.record_writer import masked_crc32c  # pylint: disable=g-import-not-at-top
    event.wall_time = time.time()
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    try:
      self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data
                       + struct.pack("<I", masked_crc32c(data)))
    except OSError as e:
      raise _write_failed(self.path, e, _TENSORBOARD_OFF) from e

  def _flush(self) -> None:
    try:
      self._file.flush()
    except OSError as e:
      raise _write_failed(self.path, e, _TENSORBOARD_OFF) from e

  def _summary(self, step: int, summaries) -> None:
    from tensorboardX.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    merged = summary_pb2.Summary(value=[v for s in summaries for v in s.value])
    self._write(self._event_pb2.Event(step=step, summary=merged))
    self._flush()

  def on_log(self, step: int, record: Mapping[str, float]) -> None:
    if self._file is not None:
      from tensorboardX import summary  # pylint: disable=g-import-not-at-top
      self._summary(step, [summary.scalar(f"train/{k}", float(v)) for k, v in record.items()
                           if k != "step"])

  def on_step(self, step: int, state: GANState) -> None:
    grid = self.samples
    if self._file is None or grid is None or grid.last_path is None:
      return
    if not grid.last_path.endswith(f"step_{step:07d}.png"):
      return  # no grid at this step (or the grid comes after this callback in the list)
    from PIL import Image  # pylint: disable=g-import-not-at-top
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    with Image.open(grid.last_path) as im:
      image = np.asarray(im.convert("RGB"))
    self._summary(step, [summary.image("samples", image, dataformats="HWC")])

  def on_evaluate(self, step: int, result: Mapping[str, Any]) -> None:
    if self._file is None:
      return
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    values = [summary.scalar(f"eval/{k}", float(v)) for k, v in result.items()
              if isinstance(v, (int, float, np.integer, np.floating))
              and not isinstance(v, bool) and math.isfinite(float(v))]
    if values:
      self._summary(step, values)

  def on_end(self, step: int, state: GANState) -> None:
    self.close()

  def close(self) -> None:
    if self._file is not None:
      f, self._file = self._file, None
      f.close()


def grid_labels(gan: GAN, num: int) -> Optional[np.ndarray]:
  """Labels of the sample grid of `num` images of a conditional GAN: row i (of the square-ish
  grid `gax.visualize.image_grid` draws) shows class `i mod num_classes`."""
  if not gan.conditional:
    return None
  ncols = int(math.ceil(math.sqrt(num)))
  return ((np.arange(num) // ncols) % gan.num_classes).astype(np.int32)


def truncate_jsonl(path: str, last_step: int) -> None:
  """Drops records logged after `last_step` (by a run that crashed before checkpointing),
  and lines that do not parse (the half-written last line of a crash or a full disk), with
  a warning."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    text = f.read()
  lines = [l for l in text.splitlines(keepends=True) if l.strip()]
  kept, broken = [], 0
  for line in lines:
    try:
      step = json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
      broken += 1
      continue
    if step <= last_step:
      kept.append(line if line.endswith("\n") else line + "\n")
  if broken:
    logging.warning("Dropped %d unreadable line(s) of %s (written when a run stopped).",
                    broken, path)
  if "".join(kept) != text:
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)


def format_eta(seconds: float) -> str:
  """Seconds as `H:MM:SS` (negative counts as 0)."""
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class MetricsAverage:
  """Sums a step's metrics on the device (one small jitted add per step, no transfer) and
  gives their mean over the steps since the last `result()`; the names in `last` are
  snapshots of state (ADA's p, LeCam's anchors) and keep their newest value instead."""

  def __init__(self, last: Iterable[str] = ()):
    self.last = frozenset(last)
    self._add = jax.jit(lambda a, b: jax.tree_util.tree_map(jnp.add, a, b))
    self._sum, self._newest, self.count = None, None, 0

  def add(self, metrics: Mapping[str, Any]) -> None:
    self._sum = metrics if self._sum is None else self._add(self._sum, metrics)
    self._newest, self.count = metrics, self.count + 1

  def result(self, host: Callable[[Any], Any] = lambda m: m) -> Dict[str, float]:
    """The means (and newest values of `last`) as Python floats, `host` applied first (under
    `pmap`, `gax.parallel.unreplicate`); then starts a new window."""
    if not self.count:
      raise ValueError("No metrics were added since the last result.")
    total, newest = jax.device_get((host(self._sum), host(self._newest)))
    out = {k: float(newest[k]) if k in self.last else float(total[k]) / self.count
           for k in total}
    self._sum, self._newest, self.count = None, None, 0
    return out


def state_metrics(gan: GAN) -> frozenset:
  """The metric names `gan`'s hooks declare as state snapshots (`Hook.state_metrics`)."""
  return frozenset(n for h in gan.hooks for n in getattr(h, "state_metrics", ()))


class _FunctionSource:
  def __init__(self, fn: Callable[[int], Any]):
    self.fn = fn

  def get(self, step: int) -> Any:
    return self.fn(step)


class _IteratorSource:
  def __init__(self, batches: Iterable[Any]):
    self.it = iter(batches)

  def get(self, step: int) -> Any:
    try:
      return next(self.it)
    except StopIteration:
      raise ValueError(f"The data iterator ran out before step {step + 1}; give fit at least "
                       "`steps` batches, or a source with get(step).") from None


def as_source(data: Any) -> Any:
  """`data` as an object with `get(step)`: a `gax.data` source (or anything with `get`) as
  it is, a callable `step -> batch`, or an iterable of batches (read in order)."""
  if hasattr(data, "get") and callable(data.get) and not isinstance(data, Mapping):
    return data
  if callable(data):
    return _FunctionSource(data)
  if isinstance(data, Iterable) and not isinstance(data, (np.ndarray, Mapping)):
    return _IteratorSource(data)
  raise TypeError(f"fit's data must be a source with get(step), a callable step -> batch or "
                  f"an iterable of batches; got {type(data).__name__}.")


def _close_all(*closers) -> None:
  """Calls every closer; re-raises the first error after all have run, unless an exception
  is already propagating (the one to report), in which case later errors are only logged."""
  propagating = sys.exc_info()[0] is not None
  first = None
  for close in closers:
    try:
      close()
    except Exception as e:  # pylint: disable=broad-except
      if propagating or first is not None:
        logging.warning("While closing after an error: %s: %s", type(e).__name__, e)
      else:
        first = e
  if first is not None:
    raise first


def _append(f: Any, records: list) -> None:
  """Appends JSON lines to an open records file and flushes it; a failed write (a full disk)
  is a `WorkdirError` saying that the checkpoints are intact and how to resume."""
  if not records:
    return
  try:
    f.write("".join(json.dumps(r) + "\n" for r in records))
    f.flush()
  except OSError as e:
    raise _write_failed(f.name, e, " (records after it are rewritten)") from e


_TENSORBOARD_OFF = " (or switch TensorBoard off: config.train.tensorboard=False)"


def _write_failed(path: str, e: OSError, note: str = "") -> WorkdirError:
  """The error of a failed write to a run's records (a full disk): the checkpoints are
  intact, and how to resume."""
  return WorkdirError(
      f"Could not write {path}: {e.strerror or e}. The run stops here; its checkpoints are "
      "intact: free space (or fix the directory) and rerun with the same --workdir to resume "
      f"from the newest{note}.")


def _restore(ckpt: Checkpointer, state: GANState, on_corrupt: str) -> GANState:
  if on_corrupt == "previous":
    if jax.process_count() > 1:
      raise ValueError("on_corrupt_checkpoint='previous' moves checkpoints aside, which "
                       "several processes cannot do together; use 'error' and move the "
                       "corrupt checkpoint away by hand.")
    return ckpt.restore_newest_good(state)
  return ckpt.restore(state)


def _interval(value: Any, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
    raise ValueError(f"fit's {name} must be an integer >= 0 (0: never), got {value!r}.")
  return int(value)


def fit(gan: GAN, state: GANState, data: Any, steps: int, *, workdir: Optional[str] = None,
        log_every: int = 100, checkpoint_every: int = 0, keep_checkpoints: int = 3,
        evaluator: Optional[evaluation.Evaluator] = None, eval_every: int = 0,
        eval_gan: Optional[GAN] = None, monitor: Optional[monitor_lib.Monitor] = None,
        callbacks: Sequence[Callback] = (), parallel_mode: str = "none",
        on_corrupt_checkpoint: str = "error", lock: bool = True,
        train_step: Optional[Callable[[Any, Any], Tuple[Any, Mapping[str, Any]]]] = None
        ) -> GANState:
  """Trains `state` to step `steps` (a total, not a count: a resumed run does the rest) and
  returns the final state.

  Args:
    gan: the `GAN`; for `parallel_mode="pmap"` built with `axis_name=gax.parallel.
      DEFAULT_AXIS`.
    state: the initial state (`gax.steps.init_state`); with a checkpoint in `workdir`, only
      its structure is used and training resumes from the newest checkpoint.
    data: the global batches `[n_critic, B, ...]` (or `{"x", "y"}` with labels): a source
      with `get(step)` (`gax.data`), a callable `step -> batch`, or an iterable.
    steps: the step to train to.
    workdir: where metrics.jsonl, eval.jsonl, alarms.jsonl, checkpoints/ and best/ go;
      None keeps nothing (then `checkpoint_every` must be 0 and the evaluator keeps no best
      state).
    log_every: steps between logs (0: never).
    checkpoint_every: steps between checkpoints, the last step included (0: never).
    keep_checkpoints: checkpoints Orbax keeps.
    evaluator: scores G every `eval_every` steps (and at the last step).
    eval_every: steps between evaluations; needs `evaluator`.
    eval_gan: the GAN to evaluate and sample with (default `gan`); needed under "pmap",
      whose `gan` has a mapped axis that evaluation outside `pmap` cannot use.
    monitor: watches the logged metrics and evaluations (`gax.monitor.Monitor`).
    callbacks: `Callback`s, called in order.
    parallel_mode: "none" (one device, `jit`), "pmap" (the state replicated on the local
      devices, the batch split over all) or "mesh" (`jit` over a mesh of every device of
      every process, `gax.parallel.sharded_train_step`).
    on_corrupt_checkpoint: "error" (stop, saying which checkpoint and what to do) or
      "previous" (move it aside and resume from the newest good one).
    lock: hold `workdir`'s lock (`gax.workdir.WorkdirLock`) for the run; pass False when the
      caller holds it (as `gax.trainer.train` does).
    train_step: a jitted `(state, batch) -> (state, metrics)` to run instead of `gan`'s
      `gax.steps.train_step`, for models whose state is not a `GANState` (the VAE-GAN of
      `gax.vaegan`: `experiments/train_vaegan.py`); `state` needs a `step` field. fit then
      uses `gan` for nothing; it needs parallel_mode="none" and no evaluator (both are
      written for a `GAN`).

  Raises:
    ValueError: bad arguments; `FloatingPointError`: non-finite metrics;
    `gax.monitor.MonitorStop`: an alarm of a kind the monitor stops on;
    `gax.workdir.WorkdirLocked`: another run holds `workdir`.
  """
  total = _interval(steps, "steps")
  log_every = _interval(log_every, "log_every")
  checkpoint_every = _interval(checkpoint_every, "checkpoint_every")
  eval_every = _interval(eval_every, "eval_every")
  if parallel_mode not in PARALLEL:
    raise ValueError(f"fit's parallel_mode must be one of {PARALLEL}, got {parallel_mode!r}.")
  if on_corrupt_checkpoint not in ON_CORRUPT_CHECKPOINT:
    raise ValueError(f"fit's on_corrupt_checkpoint must be one of {ON_CORRUPT_CHECKPOINT}, "
                     f"got {on_corrupt_checkpoint!r}.")
  if workdir is None and checkpoint_every:
    raise ValueError("fit's checkpoint_every needs a workdir to write the checkpoints to.")
  if eval_every and evaluator is None:
    raise ValueError("fit's eval_every needs an evaluator.")
  if train_step is not None and (parallel_mode != "none" or evaluator is not None):
    raise ValueError("fit's train_step runs on one device without an evaluator (both are "
                     f"written for a GAN); got parallel_mode={parallel_mode!r} and "
                     f"evaluator={type(evaluator).__name__}.")
  if parallel_mode == "pmap" and gan.axis_name is None:
    raise ValueError("parallel_mode='pmap' needs a GAN (and modules) built with axis_name="
                     f"{parallel.DEFAULT_AXIS!r}.")
  if parallel_mode == "pmap" and eval_gan is None and evaluator is not None:
    raise ValueError("Under parallel_mode='pmap', evaluation needs eval_gan: the same GAN "
                     "built with axis_name=None.")
  eval_gan = gan if eval_gan is None else eval_gan
  n_proc = jax.process_count()
  if n_proc > 1 and parallel_mode == "none":
    raise ValueError(f"parallel_mode='none' trains on one device, but this run has {n_proc} "
                     "processes; use 'mesh' (or 'pmap').")
  main = jax.process_index() == 0
  held = None
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    if lock and main:
      held = WorkdirLock(workdir)
      held.acquire()
  try:
    return _fit(gan, state, as_source(data), total, workdir, log_every, checkpoint_every,
                int(keep_checkpoints), evaluator, eval_every, eval_gan, monitor,
                list(callbacks), parallel_mode, on_corrupt_checkpoint, data, train_step)
  finally:
    if held is not None:
      held.release()


def _fit(gan, state, source, total, workdir, log_every, checkpoint_every, keep_checkpoints,
         evaluator, eval_every, eval_gan, monitor, callbacks, parallel_mode, on_corrupt,
         data, train_step) -> GANState:
  n_proc = jax.process_count()
  main = jax.process_index() == 0
  info = logging.info if main else (lambda *args: None)
  warn = logging.warning if main else (lambda *args: None)
  ckpt = None
  if workdir is not None:
    ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), max_to_keep=keep_checkpoints)
    if ckpt.latest_step() is not None:
      try:
        state = _restore(ckpt, state, on_corrupt)
      except Exception:
        ckpt.close()
        raise
      info("Resumed from the checkpoint of step %d in %s", int(state.step), workdir)
      if isinstance(source, _IteratorSource):
        warn("fit resumed at step %d from an iterator of batches, which continues from where "
             "it stands: the batches are not those the stopped run would have seen (give a "
             "source with get(step) for an exact resume).", int(state.step))
  start = int(state.step)
  if main and workdir is not None:
    for name in (METRICS_FILE, EVAL_FILE, ALARMS_FILE):
      truncate_jsonl(os.path.join(workdir, name), start)
  if n_proc > 1 and workdir is not None:  # the truncation before any process reads eval.jsonl
    parallel.sync_processes("gax.loop: records truncated")
  if start >= total:
    info("Nothing to do: the run is at step %d of %d.", start, total)
    if ckpt is not None:
      ckpt.close()
    return state

  best = None
  if evaluator is not None and workdir is not None and evaluator.best_metric is not None:
    # Every process saves the best state (an Orbax save is collective) into the shared best/;
    # best.json is process 0's.
    best = evaluation.BestCheckpoint(
        workdir, evaluator.best_metric,
        evaluation.read_jsonl(os.path.join(workdir, EVAL_FILE)), write_record=main)

  # The global batch of a step is the source's whatever the number of processes; each process
  # keeps the rows of its devices (all of them with one process), so the losses do not depend
  # on how many processes share the work.
  rows = None
  if parallel_mode == "pmap":
    # pmap numbers the devices process by process: process p feeds its local devices rows
    # [p * B/P, (p + 1) * B/P), split among them by shard_batch.
    step_fn = parallel.pmap_train_step(gan)
    state = parallel.replicate(state)
    sharding = parallel.device_axis_sharding()
    n_local = jax.local_device_count()
    put = lambda b: jax.device_put(parallel.shard_batch(b, n_local), sharding)
    host_state = parallel.unreplicate
    if n_proc > 1:
      rows = parallel.process_rows(_global_batch_size(source, data))
  elif parallel_mode == "mesh":
    # One global program over all devices: state replicated, batch split by example.
    mesh = parallel.make_mesh()
    step_fn = parallel.sharded_train_step(gan, mesh)
    state = parallel.put_replicated(state, parallel.replicated_sharding(mesh))
    batch_sharding = parallel.batch_sharding(mesh)
    host_state = lambda s: s
    if n_proc > 1:
      batch_size = _global_batch_size(source, data)
      rows = parallel.sharding_process_rows(batch_sharding, batch_size)
      put = lambda b: parallel.put_global_batch(b, batch_sharding, batch_size)
    else:
      put = lambda b: jax.device_put(b, batch_sharding)
  else:
    step_fn = jit_train_step(gan) if train_step is None else train_step
    put = jax.device_put
    host_state = lambda s: s
  train_source = source if rows is None else parallel.process_share(source, rows)
  every = lambda n, s: bool(n) and (s % int(n) == 0 or s == total)

  # Only process 0 writes records; the others compute the same ones (the metrics are
  # replicated, evaluation results are process 0's) and write them to the null device.
  files = {}
  if workdir is not None:
    for name in (METRICS_FILE, EVAL_FILE, ALARMS_FILE):
      files[name] = open(os.path.join(workdir, name) if main else os.devnull, "a")
  write = lambda name, records: _append(files[name], records) if files else None
  average = MetricsAverage(state_metrics(gan) if train_step is None else ())
  for cb in callbacks:
    cb.on_start(start, host_state(state))
  t_start = t_last = time.time()
  last_logged = start
  done = start
  try:
    for step, batch in prefetch(train_source, start, total, fetch_size(train_source),
                                transform=put):
      state, metrics = step_fn(state, batch)
      done = step + 1
      if log_every:
        average.add(metrics)
      if every(log_every, done):
        m = average.result(host_state)
        now = time.time()
        rate = (done - last_logged) / max(now - t_last, 1e-9)
        alarms = monitor.update(done, m) if monitor is not None else []
        for alarm in alarms:
          warn("Monitor: %s", alarm)
        write(ALARMS_FILE, [a.to_dict() for a in alarms])
        bad = [k for k, v in m.items() if not math.isfinite(v)]
        if bad:
          newest = ckpt.newest_note() if ckpt is not None else "no checkpoints are kept"
          raise FloatingPointError(f"Non-finite {bad} in the steps up to {done}: training "
                                   f"diverged; {newest}.")
        record = {"step": done, **m, "steps_per_sec": rate, "elapsed_sec": now - t_start}
        write(METRICS_FILE, [record])
        info("step %d/%d (%.0f%%) | %s | %.1f steps/s | ETA %s", done, total,
             100.0 * done / total, " ".join(f"{k}={v:.4f}" for k, v in sorted(m.items())),
             rate, format_eta((total - done) / max(rate, 1e-9)))
        t_last, last_logged = now, done
        for cb in callbacks:
          cb.on_log(done, record)
        if monitor is not None:
          monitor.check(alarms)  # raises MonitorStop for a kind in its stop_on
      due = [cb for cb in callbacks if every(cb.every, done)]
      if due:
        s = host_state(state)
        for cb in due:
          cb.on_step(done, s)
      if evaluator is not None and every(eval_every, done):
        s = host_state(state)
        t0 = time.time()
        # Every process evaluates (under mesh, generating from the global state is collective)
        # and then takes process 0's result, so that all make the same decisions from it: the
        # new best checkpoint, whose Orbax save they must make together, and the alarms.
        result = parallel.broadcast_from_process_0(evaluator.evaluate(eval_gan, s))
        write(EVAL_FILE, [{"step": done, **result}])
        info("step %d: %s (%.1fs)", done, evaluator.describe(result), time.time() - t0)
        eval_alarms = monitor.evaluation(done, result) if monitor is not None else []
        for alarm in eval_alarms:
          warn("Monitor: %s", alarm)
        write(ALARMS_FILE, [a.to_dict() for a in eval_alarms])
        if best is not None and best.update(done, result, s):
          info("step %d: new best %s = %.6g, saved to %s", done, best.metric,
               result[best.metric], best.directory)
        for cb in callbacks:
          cb.on_evaluate(done, result)
        if monitor is not None:
          monitor.check(eval_alarms)
      if ckpt is not None and every(checkpoint_every, done):
        ckpt.save(done, host_state(state))  # on every process: Orbax coordinates them
  finally:
    _close_all(*(cb.close for cb in callbacks if hasattr(cb, "close")),
               *(f.close for f in files.values()),
               *(() if ckpt is None else (ckpt.close,)),
               *(() if best is None else (best.close,)))
  state = host_state(state)
  for cb in callbacks:
    cb.on_end(done, state)
  info("Done: %d steps in %.1fs%s", total - start, time.time() - t_start,
       f"; work directory {workdir}" if workdir is not None else "")
  return state


def _global_batch_size(source: Any, data: Any) -> int:
  size = getattr(source, "batch_size", getattr(data, "batch_size", None))
  if size is None:
    raise ValueError("A multi-process fit needs data with a batch_size attribute (the global "
                     "batch), to split its rows among the processes.")
  return int(size)


__all__ = ["METRICS_FILE", "EVAL_FILE", "ALARMS_FILE", "CHECKPOINT_DIR", "PARALLEL",
           "ON_CORRUPT_CHECKPOINT", "Callback", "SampleGrid", "TensorBoard", "grid_labels",
           "truncate_jsonl", "format_eta", "MetricsAverage", "state_metrics", "as_source", "fit"]
