"""The training loop: config -> checkpoints, metrics, samples in a work directory.

Work directory layout:
  config.json      the run's config; a resumed run must match it (see `compatibility_diff`)
  run.json         facts derived at start-up that sampling needs (data shape)
  checkpoints/     Orbax checkpoints of `GANState`, by step
  metrics.jsonl    one JSON object per logged step: losses, logits, gradient norms, speed
  eval.jsonl       evaluation results with their step, every `eval.every` steps (mode coverage
                   for the 2D mixtures; FID etc. for images; see `gax.evaluation`)
  best/, best.json the state of the best evaluation so far by `eval.best_metric`, and
                   `{"metric", "value", "step", ...}`
  eval_classifier.npz, eval_reference_<features>.npz  the evaluation's feature network (for
                   "classifier" features) and real-data statistics, made once per run
  alarms.jsonl     failures `gax.monitor` detected in the logged metrics (see config.monitor)
  samples/         PNG sample grids (images) or scatter plots (2D points) from a fixed z
                   (and, for a conditional model, fixed labels: grid row i shows class i mod K)

  .lock            the exclusive lock a run holds on its work directory (`gax.workdir`), with
                   the holder's pid, host and start time

Re-running on the same work directory resumes from the newest checkpoint. Because the state
holds the PRNG key and the data source is a function of the step, the resumed run computes
exactly the losses the uninterrupted run would have. Records logged after the restored step
are dropped from the JSON-lines files, and the best checkpoint is chosen again from the kept
evaluation records (see `gax.evaluation.BestCheckpoint`).

Several processes (`gax.parallel.initialize_distributed`, `experiments/train.py
--distributed`) run `train` together on one work directory that all of them see: process 0
alone writes config.json, run.json, the JSON-lines files, samples and best.json, and logs
progress; every process loads only its rows of each global batch (`gax.parallel.ProcessRows`)
and takes part in the collective work: the train steps, sampling and evaluation of the global
state, and the Orbax saves (`gax.checkpoint`).
"""

from __future__ import annotations

import datetime
import json
import logging as stdlib_logging
import math
import os
import sys
import time
from typing import Any, Dict, Optional, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from gax import builders, evaluation, parallel, visualize
from gax import monitor as monitor_lib
from gax.checkpoint import Checkpointer
from gax.cli import TRACEBACK_ENV
from gax.data import prefetch
from gax.workdir import WorkdirError, WorkdirLock
from gax.state import GANState, param_count
from gax.steps import GAN, generate, jit_train_step, sampling_player

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = evaluation.EVAL_FILE
ALARMS_FILE = "alarms.jsonl"


class WorkdirConfigMismatch(ValueError):
  """The work directory holds a run of a different config."""


def check_or_write_config(workdir: str, cfg: Dict[str, Any], has_checkpoint: bool,
                          write: bool = True) -> None:
  """Writes `cfg` as the work directory's config.json, refusing (`WorkdirConfigMismatch`)
  when the directory holds checkpoints of a run whose saved config differs; with `write=False`
  only checks (every process of a multi-process run checks, process 0 writes)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path) and has_checkpoint:
    with open(path) as f:
      old = json.load(f)
    diffs = builders.compatibility_diff(old, cfg)
    if diffs:
      raise WorkdirConfigMismatch(
          f"{workdir} holds checkpoints of a run with another config, so it cannot be resumed "
          f"with this one. Differences (saved -> given): {'; '.join(diffs)}. Use a new --workdir, "
          "or pass the saved config's values.")
  if not write:
    return
  with open(path, "w") as f:
    json.dump(cfg, f, indent=2, sort_keys=True)


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


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved in a work directory by `train`."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} has no {CONFIG_FILE}: it is not a gax work directory.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str) -> Tuple[ml_collections.ConfigDict, GAN, Any]:
  """`(config, gan, template)` of the run in `workdir`: its saved config, the `GAN` (eval
  mode, single device) and the abstract state (`jax.eval_shape`) its checkpoints restore
  into."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"No work directory {workdir!r}.")
  config = load_config(workdir)
  path = os.path.join(workdir, RUN_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} has no {RUN_FILE}: its run never started training.")
  with open(path) as f:
    data_shape = tuple(json.load(f)["data_shape"])
  gan = builders.build_gan(config, data_shape)
  template = jax.eval_shape(lambda: builders.build_state(gan, config, data_shape))
  return config, gan, template


def checkpoint_dir(workdir: str, best: bool = False) -> str:
  """The directory of a run's regular checkpoints, or with `best` of its best checkpoint."""
  return os.path.join(workdir, evaluation.BEST_DIR if best else "checkpoints")


def restore_checkpoint(workdir: str, template: Any, step: Optional[int] = None,
                       best: bool = False) -> GANState:
  """The state of `step` (default: the newest) from a run's checkpoints, or with `best` the
  state of its best evaluation (`best/`, see `gax.evaluation.BestCheckpoint`)."""
  directory = checkpoint_dir(workdir, best)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f"{workdir} has no best checkpoint ({directory}): it is written by evaluations during "
        "training with config.eval.best_metric other than 'none'." if best else
        f"{workdir} has no checkpoint yet.")
  ckpt = Checkpointer(directory)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise FileNotFoundError(f"{directory} holds no checkpoint yet.")
    if step is not None and step not in steps:
      raise FileNotFoundError(f"{directory} has no checkpoint of step {step}; it has steps "
                              f"{sorted(steps)}.")
    return ckpt.restore(template, step)
  finally:
    ckpt.close()


def restore_run(workdir: str, step: Optional[int] = None,
                best: bool = False) -> Tuple[ml_collections.ConfigDict, GAN, GANState]:
  """Rebuilds `(config, gan, state)` of a run from its work directory's checkpoint of `step`
  (default: the newest), or with `best` from its best checkpoint."""
  config, gan, template = load_run(workdir)
  return config, gan, restore_checkpoint(workdir, template, step, best)


def sample_labels_for(gan: GAN, num: int, labels: Any = None) -> Optional[np.ndarray]:
  """The int32 `[num]` labels to sample a conditional GAN with: `labels` as given (one class
  for all, or one per sample), or by default the classes in turn, `i mod num_classes`.
  `None` for an unconditional GAN, which refuses labels."""
  if not gan.conditional:
    if labels is not None:
      raise ValueError("Labels were given but the run's model is unconditional "
                       "(model.conditioning='none').")
    return None
  if labels is None:
    return (np.arange(num) % gan.num_classes).astype(np.int32)
  y = np.asarray(labels)
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"Labels must be integer classes, got {labels!r}.")
  y = np.broadcast_to(y, (num,)) if y.ndim == 0 else y
  if y.shape != (num,):
    raise ValueError(f"Need one label or {num} labels, got shape {y.shape}.")
  if y.min() < 0 or y.max() >= gan.num_classes:
    raise ValueError(f"Labels must be classes in [0, {gan.num_classes}); got {y.min()}.."
                     f"{y.max()}.")
  return y.astype(np.int32)


def sample(gan: GAN, state: GANState, key: jax.Array, num: int, batch_size: int = 1000,
           labels: Any = None) -> np.ndarray:
  """`num` samples of G (eval mode, EMA weights when the run keeps them) as a float32 NumPy
  array, generated in batches.

  For a conditional GAN, `labels` is one class for every sample or `[num]` classes; by
  default sample i gets class `i mod num_classes` (see `sample_labels_for`).
  """
  y = sample_labels_for(gan, num, labels)
  gen = jax.jit(lambda g, z, y, k: generate(gan, sampling_player(g), z, y, key=k))
  keys = jax.random.split(key, math.ceil(num / batch_size))
  out = []
  for i, k in enumerate(keys):
    z = gan.latent(k, (batch_size, gan.latent_dim))
    yb = None
    if y is not None:  # pad the last batch by wrapping round (its extra rows are dropped)
      yb = np.resize(y[i * batch_size:(i + 1) * batch_size], batch_size)
    out.append(np.asarray(gen(state.g, z, yb, jax.random.fold_in(k, 1))))
  return np.concatenate(out)[:num].astype(np.float32)


def grid_labels(gan: GAN, num: int) -> Optional[np.ndarray]:
  """Labels of the sample grid of `num` images of a conditional GAN: row i (of the square-ish
  grid `gax.visualize.image_grid` draws) shows class `i mod num_classes`."""
  if not gan.conditional:
    return None
  ncols = int(math.ceil(math.sqrt(num)))
  return ((np.arange(num) // ncols) % gan.num_classes).astype(np.int32)


class EvaluationError(ValueError):
  """A problem with the arguments or the work directory, reported without a traceback."""


def evaluate_run(workdir: str, step=None, all_steps: bool = False, best: bool = False,
                 out_file: str = evaluation.OFFLINE_EVAL_FILE, **overrides):
  """Evaluates checkpoints of the run in `workdir`; returns the records it appended to
  `<workdir>/<out_file>`.

  Args:
    workdir: the run's work directory.
    step: the checkpoint step (default: the newest); exclusive with `all_steps` and `best`.
    all_steps: evaluate every kept checkpoint, oldest first.
    best: evaluate the best checkpoint (`<workdir>/best/`).
    out_file: the JSON-lines file the records are appended to.
    **overrides: `gax.evaluation.EvalSettings` fields replacing the run's (None: keep).
  """
  if sum([step is not None, all_steps, best]) > 1:
    raise EvaluationError("--step, --all_steps and --best exclude each other.")
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"No work directory {workdir!r}.")
  config, gan, template = load_run(workdir)
  if "eval" not in config:  # a run from before the eval section: its defaults
    config.eval = builders.base_config().eval
  if best:
    if not os.path.isdir(checkpoint_dir(workdir, best=True)):
      raise FileNotFoundError(f"{workdir} has no best checkpoint: it is written by evaluations "
                              "during training with config.eval.best_metric other than 'none'.")
    steps = [None]
  else:
    ckpt_dir = checkpoint_dir(workdir)
    kept = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(
        ckpt_dir) else []
    if not kept:
      raise FileNotFoundError(f"{workdir} has no checkpoint yet ({ckpt_dir} is empty).")
    if step is not None and step not in kept:
      raise FileNotFoundError(f"{workdir} has no checkpoint of step {step}; it has steps "
                              f"{kept}.")
    steps = kept if all_steps else [kept[-1] if step is None else step]
  source = builders.build_data(config)
  evaluator = evaluation.Evaluator.from_config(config, source, workdir, **overrides)
  records = []
  for s in steps:
    state = restore_checkpoint(workdir, template, s, best=best)
    t0 = time.time()
    result = evaluator.evaluate(gan, state)
    record = {"step": int(state.step), "checkpoint": "best" if best else "checkpoints",
              **result, "time": datetime.datetime.now().isoformat(timespec="seconds")}
    with open(os.path.join(workdir, out_file), "a") as f:
      f.write(json.dumps(record) + "\n")
    logging.info("step %d: %s (%.1fs)", record["step"], evaluator.describe(result),
                 time.time() - t0)
    records.append(record)
  return records


def format_eta(seconds: float) -> str:
  """Seconds as `H:MM:SS` (negative counts as 0)."""
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def _write_samples(workdir: str, step: int, images: np.ndarray, source: Any) -> str:
  os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
  path = os.path.join(workdir, "samples", f"step_{step:07d}.png")
  if images.ndim == 2:
    visualize.save_scatter(path, images, getattr(source, "centers", None))
  else:
    visualize.save_image_grid(path, images)
  return path


class _QuietOrbax(stdlib_logging.Filter):
  """Drops Orbax's INFO records (it logs every step of every save) and its error reports.

  Orbax logs each failure from each of its writer threads, with a traceback (a truncated
  checkpoint gave 34), before raising it in the caller; gax turns that exception into one
  error naming the checkpoint (`gax.checkpoint.CheckpointError`), so the reports are noise.
  With `GAX_TRACEBACK=1` (see `gax.cli`) they are kept. Orbax's warnings are kept.
  """

  def filter(self, record: stdlib_logging.LogRecord) -> bool:
    if "/orbax/" in record.pathname:
      return record.levelno == stdlib_logging.WARNING or (
          record.levelno > stdlib_logging.WARNING and bool(os.environ.get(TRACEBACK_ENV)))
    # asyncio's "Task exception was never retrieved" for Orbax's abandoned writes.
    return record.name != "asyncio" or "orbax" not in record.getMessage()


def quiet_library_logs() -> None:
  """Keeps the run's log readable (`_QuietOrbax`): Orbax's INFO lines and error reports are
  dropped, its warnings kept."""
  for name in ("absl", "asyncio"):
    logger = stdlib_logging.getLogger(name)
    if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
      logger.addFilter(_QuietOrbax())


def train(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  """Trains (or resumes) the run described by `config` in `workdir`; returns the final state.

  The run holds `workdir`'s lock (`gax.workdir.WorkdirLock`, process 0 only) from start to
  end: a second run on the same directory fails at once with `WorkdirLocked`.
  """
  quiet_library_logs()
  builders.validate_config(config)
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
  if lock is not None:
    lock.acquire()
  try:
    return _train(config, workdir)
  finally:
    if lock is not None:
      lock.release()


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
    raise WorkdirError(
        f"Could not write {f.name}: {e.strerror or e}. The run stops here; its checkpoints "
        "are intact: free space (or fix the directory) and rerun with the same --workdir to "
        "resume from the newest (records after it are rewritten).") from e


def _restore(ckpt: Checkpointer, state: GANState, on_corrupt: str) -> GANState:
  if on_corrupt == "previous":
    if jax.process_count() > 1:
      raise ValueError("config.train.on_corrupt_checkpoint='previous' moves checkpoints aside, "
                       "which several processes cannot do together; use 'error' and move the "
                       "corrupt checkpoint away by hand.")
    return ckpt.restore_newest_good(state)
  return ckpt.restore(state)


def _train(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  tc = config.train
  total = int(tc.steps)
  # Several processes: all run this function in step (same branches, same collectives);
  # `main` (process 0) alone writes the work directory's files and logs.
  n_proc = jax.process_count()
  main = jax.process_index() == 0
  info = logging.info if main else (lambda *args: None)
  warn = logging.warning if main else (lambda *args: None)
  if n_proc > 1 and config.parallel == "none":
    raise ValueError(f"config.parallel='none' trains on one device, but this run has {n_proc} "
                     "processes (--distributed); use config.parallel='mesh' (or 'pmap').")
  use_pmap = config.parallel == "pmap"
  n_dev = {"pmap": jax.local_device_count() * n_proc,
           "mesh": jax.device_count()}.get(config.parallel, 1)
  batch_size = int(config.data.batch_size)
  parallel.check_global_batch(batch_size, n_dev, n_proc)
  os.makedirs(workdir, exist_ok=True)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=int(tc.keep_checkpoints))
  has_checkpoint = ckpt.latest_step() is not None
  check_or_write_config(workdir, config.to_dict(), has_checkpoint, write=n_proc == 1)
  if n_proc > 1:  # process 0 rewrites config.json once every process has compared it
    parallel.sync_processes("gax.trainer: config checked")
    if main:
      check_or_write_config(workdir, config.to_dict(), has_checkpoint)

  source = builders.build_data(config)
  data_shape = tuple(source.element_shape)
  if main:
    with open(os.path.join(workdir, RUN_FILE), "w") as f:
      json.dump({"data_shape": list(data_shape)}, f)
  gan = builders.build_gan(config, data_shape, parallel.DEFAULT_AXIS if use_pmap else None)
  eval_gan = builders.build_gan(config, data_shape)  # eval mode needs no mapped axis
  state = builders.build_state(gan, config, data_shape)
  info("G: %d parameters, D: %d parameters, data %s, %d device(s)%s",
       param_count(state.g.params), param_count(state.d.params), data_shape, n_dev,
       f" in {n_proc} processes" if n_proc > 1 else "")

  if has_checkpoint:
    try:
      state = _restore(ckpt, state, tc.get("on_corrupt_checkpoint", "error"))
    except Exception:
      ckpt.close()
      raise
    info("Resumed from the checkpoint of step %d in %s", int(state.step), workdir)
  start = int(state.step)
  if main:
    for name in (METRICS_FILE, EVAL_FILE, ALARMS_FILE):
      truncate_jsonl(os.path.join(workdir, name), start)
  if start >= total:
    info("Nothing to do: the run is at step %d of %d.", start, total)
    ckpt.close()
    return state

  eval_every = evaluation.EvalSettings.from_config(config.eval).interval(tc.sample_every)
  evaluator, best = None, None
  if eval_every:
    t0 = time.time()
    try:
      # Process 0 first: it may train the feature network and cache the real statistics in the
      # work directory, which the others then read rather than write at the same time. The
      # barrier also puts its truncation of eval.jsonl before every process reads it below.
      evaluator = parallel.process_0_first(
          lambda: evaluation.Evaluator.from_config(config, source, workdir),
          "gax.trainer: evaluator ready")
    except Exception:
      ckpt.close()
      raise
    info("Evaluation every %d steps (%s), ready in %.1fs", eval_every,
         ", ".join(evaluator.metrics), time.time() - t0)
    if evaluator.best_metric is not None:
      # Every process saves the best state (an Orbax save is collective) into the shared
      # best/; best.json is process 0's.
      best = evaluation.BestCheckpoint(
          workdir, evaluator.best_metric,
          evaluation.read_jsonl(os.path.join(workdir, EVAL_FILE)), write_record=main)

  # The global batch of a step is the source's batch of `batch_size` rows whatever the number
  # of processes; each process draws it and keeps the rows of its devices (all of them with
  # one process), so the losses do not depend on how many processes share the work.
  rows = np.arange(batch_size)
  if use_pmap:
    # pmap numbers the devices process by process: process p feeds its local devices rows
    # [p * B/P, (p + 1) * B/P), split among them by shard_batch.
    step_fn = parallel.pmap_train_step(gan)
    state = parallel.replicate(state)
    sharding = parallel.device_axis_sharding()
    n_local = jax.local_device_count()
    put = lambda b: jax.device_put(parallel.shard_batch(b, n_local), sharding)
    host_state = parallel.unreplicate
    rows = parallel.process_rows(batch_size)
  elif config.parallel == "mesh":
    # One global program over all devices: state replicated, batch split by example.
    mesh = parallel.make_mesh()
    step_fn = parallel.sharded_train_step(gan, mesh)
    state = parallel.put_replicated(state, parallel.replicated_sharding(mesh))
    batch_sharding = parallel.batch_sharding(mesh)
    put = lambda b: parallel.put_global_batch(b, batch_sharding, batch_size)
    host_state = lambda s: s
    rows = parallel.sharding_process_rows(batch_sharding, batch_size)
  else:
    step_fn = jit_train_step(gan)
    put = jax.device_put
    host_state = lambda s: s
  train_source = source if len(rows) == batch_size else parallel.ProcessRows(source, rows)

  z_fixed = gan.latent(jax.random.PRNGKey(config.seed + 1), (int(tc.num_samples), gan.latent_dim))
  y_fixed = grid_labels(gan, int(tc.num_samples))
  # Sample grids use fixed latents (and labels, and a fixed key for G's dropout/noise layers,
  # if any) so that grids of successive steps are comparable.
  gen_fixed = jax.jit(lambda g: generate(eval_gan, sampling_player(g), z_fixed, y_fixed,
                                         key=jax.random.PRNGKey(config.seed + 3)))
  every = lambda n, s: bool(n) and (s % int(n) == 0 or s == total)

  # Only process 0 writes records; the others compute the same ones (the metrics are
  # replicated, evaluation results are process 0's) and write them to the null device.
  record_path = lambda name: os.path.join(workdir, name) if main else os.devnull
  metrics_file = open(record_path(METRICS_FILE), "a")
  eval_file = open(record_path(EVAL_FILE), "a")
  monitor = monitor_lib.Monitor.from_config(config.monitor, loss=config.loss)
  alarms_file = open(record_path(ALARMS_FILE), "a")
  t_start = t_last = time.time()
  last_logged = start
  try:
    for step, batch in prefetch(train_source, start, total, transform=put):
      state, metrics = step_fn(state, batch)
      done = step + 1
      if every(tc.log_every, done):
        m = {k: float(v) for k, v in jax.device_get(host_state(metrics)).items()}
        now = time.time()
        rate = (done - last_logged) / max(now - t_last, 1e-9)
        alarms = monitor.update(done, m)
        for alarm in alarms:
          warn("Monitor: %s", alarm)
        _append(alarms_file, [a.to_dict() for a in alarms])
        bad = [k for k, v in m.items() if not math.isfinite(v)]
        if bad:
          raise FloatingPointError(f"Non-finite {bad} at step {done}: training diverged; "
                                   f"{ckpt.newest_note()}.")
        record = {"step": done, **m, "steps_per_sec": rate, "elapsed_sec": now - t_start}
        _append(metrics_file, [record])
        info("step %d/%d (%.0f%%) | %s | %.1f steps/s | ETA %s", done, total,
             100.0 * done / total, " ".join(f"{k}={v:.4f}" for k, v in sorted(m.items())),
             rate, format_eta((total - done) / max(rate, 1e-9)))
        t_last, last_logged = now, done
        monitor.check(alarms)  # raises MonitorStop for a kind in config.monitor.stop_on
      if every(tc.sample_every, done):
        # Generated on every process: under parallel=mesh it is one program over the global
        # state, which all processes must run.
        images = np.asarray(gen_fixed(host_state(state).g))
        if main:
          path = _write_samples(workdir, done, images, source)
          info("Wrote samples to %s", path)
      if evaluator is not None and every(eval_every, done):
        s = host_state(state)
        t0 = time.time()
        # Every process evaluates (under mesh, generating from the global state is collective)
        # and then takes process 0's result, so that all make the same decisions from it: the
        # new best checkpoint, whose Orbax save they must make together, and the alarms.
        result = parallel.broadcast_from_process_0(evaluator.evaluate(eval_gan, s))
        _append(eval_file, [{"step": done, **result}])
        info("step %d: %s (%.1fs)", done, evaluator.describe(result), time.time() - t0)
        eval_alarms = monitor.evaluation(done, result)
        for alarm in eval_alarms:
          warn("Monitor: %s", alarm)
        _append(alarms_file, [a.to_dict() for a in eval_alarms])
        if best is not None and best.update(done, result, s):
          info("step %d: new best %s = %.6g, saved to %s", done, best.metric,
               result[best.metric], best.directory)
        monitor.check(eval_alarms)
      if every(tc.checkpoint_every, done):
        ckpt.save(done, host_state(state))  # on every process: Orbax coordinates them
  finally:
    _close_all(metrics_file.close, eval_file.close, alarms_file.close, ckpt.close,
               *(() if best is None else (best.close,)))
  info("Done: %d steps in %.1fs; work directory %s", total - start, time.time() - t_start,
       workdir)
  return host_state(state)
