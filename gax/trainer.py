"""Config-driven runs: config -> checkpoints, metrics, samples in a work directory, trained by
the one loop, `gax.loop.fit`.

Work directory layout:
  config.json      the run's config; a resumed run must match it (see `compatibility_diff`)
  run.json         facts derived at start-up that sampling needs (data shape)
  checkpoints/     Orbax checkpoints of `GANState`, by step
  metrics.jsonl    one JSON object per log: losses, logits, gradient norms averaged over the
                   steps since the previous log, speed
  eval.jsonl       evaluation results with their step, every `eval.every` steps (mode coverage
                   for the 2D mixtures; FID etc. for images; see `gax.evaluation`)
  best/, best.json the state of the best evaluation so far by `eval.best_metric`, and
                   `{"metric", "value", "step", ...}`
  eval_classifier.npz, eval_reference_<features>.npz  the evaluation's feature network (for
                   "classifier" features) and real-data statistics, made once per run
  init_from.json   with config.train.init_from: the run and step its state was warm-started
                   from (`warm_start`)
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

import dataclasses
import datetime
import json
import logging as stdlib_logging
import math
import os
import time
from typing import Any, Dict, Optional, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from gax import builders, evaluation, loop, noise, parallel
from gax import conv as conv_lib
from gax import monitor as monitor_lib
from gax.checkpoint import Checkpointer
from gax.cli import TRACEBACK_ENV
# The loop's names, kept here for the callers that know them from the trainer.
from gax.loop import (ALARMS_FILE, EVAL_FILE, METRICS_FILE, format_eta, grid_labels,
                      truncate_jsonl)
from gax.workdir import WorkdirLock
from gax.state import GANState, param_count
from gax.steps import GAN, generate, sampling_player, standing_player

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
INIT_FROM_FILE = "init_from.json"
# The parts of the state a warm start must find, array for array, in its source run: the
# networks. Everything else is taken where the source has it and kept fresh otherwise.
NETWORK_PARTS = (".g.params", ".g.model_state", ".d.params", ".d.model_state")


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
  return os.path.join(workdir, evaluation.BEST_DIR if best else loop.CHECKPOINT_DIR)


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


def _part(path: str) -> str:
  return next((p for p in NETWORK_PARTS if path.startswith(p + "[") or path == p), "")


def warm_start(state: GANState, config: ml_collections.ConfigDict, source: str,
               step: Optional[int] = None) -> Tuple[GANState, Dict[str, Any]]:
  """`state` (a fresh state of `config`'s run) with the arrays of another run's checkpoint:
  fine-tuning, or continuing a run under a changed optimizer section (e.g. a learning-rate
  schedule, which adds a step count to the optimizer state, so a plain resume refuses it).

  Taken from the checkpoint of `step` (default: the newest) in the work directory `source`:
  both networks (params and batch statistics, which must match `config`'s array for array,
  else `ValueError`), each player's optimizer state where both runs use the same optimizer
  (`name`), the tricks' state and the PRNG key, each array where the source has one at the
  same path with the same shape and dtype. Kept fresh: the step (the new run counts from 0),
  and whatever the source lacks, e.g. the count of a schedule the source ran without, so the
  schedule starts with the new run, or the state of a trick the source ran without (logged
  as a warning: an EMA of G then starts from the fresh G). Returns the state and
  `{"workdir", "step", "taken", "fresh"}` (the dotted paths of the arrays kept fresh).
  """
  src_config, _, template = load_run(source)
  src = restore_checkpoint(source, template, step)
  found = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(src)[0]}
  same_optimizer = {p: src_config.optimizer[p].name == config.optimizer[p].name
                    for p in ("g", "d")}
  flat, treedef = jax.tree_util.tree_flatten_with_path(state)
  keys = [jax.tree_util.keystr(p) for p, _ in flat]
  leaves, fresh, differ = [], [], []
  for k, (_, x) in zip(keys, flat):
    y = found.get(k)
    fits = y is not None and tuple(y.shape) == tuple(x.shape) and y.dtype == x.dtype
    if _part(k):
      if not fits:
        differ.append(k if y is None else f"{k} {tuple(y.shape)} -> {tuple(x.shape)}")
    elif k == ".step" or (k.startswith((".g.opt_state", ".d.opt_state"))
                          and not same_optimizer[k[1]]):
      fits = False
    if not fits and not _part(k):
      fresh.append(k)
    leaves.append(y if fits else x)
  ours = set(keys)
  differ += sorted(f"{k} (not in this config's networks)" for k in found
                   if _part(k) and k not in ours)
  if differ:
    raise ValueError(
        f"Cannot warm-start from {source}: its networks differ from this config's in "
        f"{len(differ)} arrays (e.g. {'; '.join(differ[:3])}). config.train.init_from needs "
        "a run of the same model, data shape and conditioning.")
  # Besides the step, a schedule's count is expected to start fresh; any other array is
  # state the source lacks, e.g. G's EMA (in G's optimizer state) when it ran without one.
  unmatched = [k for k in fresh if k != ".step" and not k.endswith(".count")]
  if unmatched and jax.process_index() == 0:
    logging.warning("The source run has no matching state for %d arrays (e.g. %s): they "
                    "start from their fresh initialisation, so an EMA of G starts from the "
                    "fresh, untrained G, not the warm-started one. Warm-start from a run with "
                    "the same tricks and optimizers to carry them over.", len(unmatched),
                    ", ".join(unmatched[:3]))
  summary = {"workdir": os.path.abspath(source), "step": int(src.step),
             "taken": len(leaves) - len(fresh), "fresh": fresh}
  return jax.tree_util.tree_unflatten(treedef, leaves), summary


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


def truncated(gan: GAN, threshold: Optional[float]) -> GAN:
  """`gan` sampling its latents with the truncation trick at `threshold`
  (`gax.noise.truncated_gaussian`); `gan` itself for None. Its G must have been trained on
  Gaussian latents."""
  if threshold is None:
    return gan
  if gan.latent is not noise.gaussian:
    raise ValueError(f"Truncation samples a truncated normal, but this G was trained on "
                     f"{getattr(gan.latent, '__name__', gan.latent)!r} latents "
                     "(config.latent.distribution); it applies to 'gaussian' only.")
  return dataclasses.replace(gan, latent=noise.truncated_gaussian(threshold))


def sample(gan: GAN, state: GANState, key: jax.Array, num: int, batch_size: int = 1000,
           labels: Any = None, standing_stats: int = 0) -> np.ndarray:
  """`num` samples of G (eval mode, EMA weights when the run keeps them) as a float32 NumPy
  array, generated in batches.

  For a conditional GAN, `labels` is one class for every sample or `[num]` classes; by
  default sample i gets class `i mod num_classes` (see `sample_labels_for`).
  `standing_stats` > 0 first recomputes a batch-norm G's running statistics for the weights
  it samples with from that many batches of `batch_size` (`gax.steps.standing_player`;
  for G's EMA).
  """
  y = sample_labels_for(gan, num, labels)
  if standing_stats:
    state = state.replace(g=standing_player(gan, state.g, key, standing_stats, batch_size))
  gen = jax.jit(lambda g, z, y, k: generate(gan, sampling_player(g), z, y, key=k),
                compiler_options=conv_lib.compiler_options())
  keys = jax.random.split(key, math.ceil(num / batch_size))
  out = []
  for i, k in enumerate(keys):
    z = gan.latent(k, (batch_size, gan.latent_dim))
    yb = None
    if y is not None:  # pad the last batch by wrapping round (its extra rows are dropped)
      yb = np.resize(y[i * batch_size:(i + 1) * batch_size], batch_size)
    out.append(np.asarray(gen(state.g, z, yb, jax.random.fold_in(k, 1))))
  return np.concatenate(out)[:num].astype(np.float32)


class EvaluationError(ValueError):
  """A problem with the arguments or the work directory, reported without a traceback."""


def evaluate_run(workdir: str, step=None, all_steps: bool = False, best: bool = False,
                 out_file: str = evaluation.OFFLINE_EVAL_FILE, truncations=(None,),
                 **overrides):
  """Evaluates checkpoints of the run in `workdir`; returns the records it appended to
  `<workdir>/<out_file>`.

  Args:
    workdir: the run's work directory.
    step: the checkpoint step (default: the newest); exclusive with `all_steps` and `best`.
    all_steps: evaluate every kept checkpoint, oldest first.
    best: evaluate the best checkpoint (`<workdir>/best/`).
    out_file: the JSON-lines file the records are appended to.
    truncations: evaluate each checkpoint at each of these truncation thresholds
      (`truncated`; None: the full Gaussian), e.g. for the FID-vs-truncation curve; the
      records of truncated samples carry `"truncation": t`.
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
  cut = {t: truncated(gan, t) for t in truncations}  # checked before any work
  source = builders.build_data(config)
  evaluator = evaluation.Evaluator.from_config(config, source, workdir, **overrides)
  records = []
  for s in steps:
    state = restore_checkpoint(workdir, template, s, best=best)
    for t, g in cut.items():
      t0 = time.time()
      result = evaluator.evaluate(g, state)
      record = {"step": int(state.step), "checkpoint": "best" if best else "checkpoints",
                **({} if t is None else {"truncation": float(t)}),
                **({"standing_stats": evaluator.settings.standing_stats}
                   if evaluator.settings.standing_stats else {}), **result,
                "time": datetime.datetime.now().isoformat(timespec="seconds")}
      with open(os.path.join(workdir, out_file), "a") as f:
        f.write(json.dumps(record) + "\n")
      logging.info("step %d%s: %s (%.1fs)", record["step"],
                   "" if t is None else f", truncation {t:g}", evaluator.describe(result),
                   time.time() - t0)
      records.append(record)
  return records


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


def _train(config: ml_collections.ConfigDict, workdir: str) -> GANState:
  tc = config.train
  total = int(tc.steps)
  # Several processes: all run this function in step (same branches, same collectives);
  # `main` (process 0) alone writes the work directory's files and logs.
  n_proc = jax.process_count()
  main = jax.process_index() == 0
  info = logging.info if main else (lambda *args: None)
  if n_proc > 1 and config.parallel == "none":
    raise ValueError(f"config.parallel='none' trains on one device, but this run has {n_proc} "
                     "processes (--distributed); use config.parallel='mesh' (or 'pmap').")
  use_pmap = config.parallel == "pmap"
  n_dev = {"pmap": jax.local_device_count() * n_proc,
           "mesh": jax.device_count()}.get(config.parallel, 1)
  batch_size = int(config.data.batch_size)
  parallel.check_global_batch(batch_size, n_dev, n_proc)
  os.makedirs(workdir, exist_ok=True)
  ckpt = Checkpointer(checkpoint_dir(workdir))
  latest = ckpt.latest_step()
  ckpt.close()
  check_or_write_config(workdir, config.to_dict(), latest is not None, write=n_proc == 1)
  if n_proc > 1:  # process 0 rewrites config.json once every process has compared it
    parallel.sync_processes("gax.trainer: config checked")
    if main:
      check_or_write_config(workdir, config.to_dict(), latest is not None)

  source = builders.build_data(config)
  data_shape = tuple(source.element_shape)
  if main:
    with open(os.path.join(workdir, RUN_FILE), "w") as f:
      json.dump({"data_shape": list(data_shape)}, f)
  gan = builders.build_gan(config, data_shape, parallel.DEFAULT_AXIS if use_pmap else None)
  eval_gan = builders.build_gan(config, data_shape)  # eval mode needs no mapped axis
  state = builders.build_state(gan, config, data_shape)
  init_from = tc.get("init_from", "")
  if init_from and latest is None:
    state, summary = warm_start(state, config, init_from,
                                None if tc.get("init_from_step", -1) < 0 else
                                int(tc.init_from_step))
    info("Warm start from step %d of %s: %d arrays taken, %d kept fresh (%s)",
         summary["step"], init_from, summary["taken"], len(summary["fresh"]),
         ", ".join(summary["fresh"]))
    if main:
      with open(os.path.join(workdir, INIT_FROM_FILE), "w") as f:
        json.dump(summary, f, indent=2)
  elif init_from:
    info("Resuming from this run's step %d; config.train.init_from (%s) applied at its start.",
         latest, init_from)
  info("G: %d parameters, D: %d parameters, data %s, %d device(s)%s",
       param_count(state.g.params), param_count(state.d.params), data_shape, n_dev,
       f" in {n_proc} processes" if n_proc > 1 else "")

  settings = evaluation.EvalSettings.from_config(config.eval)
  eval_every = settings.interval(tc.sample_every)
  why_not = evaluation.unlabelled_default(config, source, workdir) if eval_every else None
  if why_not and settings.every == 0:
    if main:
      logging.warning("Evaluation is off: %s.", why_not)
    eval_every = 0
  evaluator = None
  if eval_every and (latest is None or latest < total):
    t0 = time.time()
    # Process 0 first: it may train the feature network and cache the real statistics in the
    # work directory, which the others then read rather than write at the same time.
    evaluator = parallel.process_0_first(
        lambda: evaluation.Evaluator.from_config(config, source, workdir),
        "gax.trainer: evaluator ready")
    info("Evaluation every %d steps (%s), ready in %.1fs", eval_every,
         ", ".join(evaluator.metrics), time.time() - t0)
  callbacks = []
  grid = None
  if tc.sample_every:
    grid = loop.SampleGrid(eval_gan, os.path.join(workdir, "samples"), int(tc.sample_every),
                           int(tc.num_samples), int(config.seed),
                           centers=getattr(source, "centers", None))
    callbacks.append(grid)
  if tc.get("tensorboard", True):
    config_text = "```\n" + json.dumps(config.to_dict(), indent=2) + "\n```"
    callbacks.append(loop.TensorBoard(workdir, samples=grid, text=config_text))
  return loop.fit(
      gan, state, source, total, workdir=workdir, log_every=int(tc.log_every),
      checkpoint_every=int(tc.checkpoint_every), keep_checkpoints=int(tc.keep_checkpoints),
      evaluator=evaluator, eval_every=eval_every if evaluator is not None else 0,
      eval_gan=eval_gan, monitor=monitor_lib.Monitor.from_config(config.monitor,
                                                                   loss=config.loss),
      callbacks=callbacks, parallel_mode=config.parallel,
      on_corrupt_checkpoint=tc.get("on_corrupt_checkpoint", "error"), lock=False)


__all__ = ["CONFIG_FILE", "RUN_FILE", "INIT_FROM_FILE", "warm_start", "METRICS_FILE",
           "EVAL_FILE", "ALARMS_FILE",
           "WorkdirConfigMismatch", "check_or_write_config", "truncate_jsonl", "load_config",
           "load_run", "checkpoint_dir", "restore_checkpoint", "restore_run",
           "sample_labels_for", "truncated", "sample", "grid_labels", "EvaluationError",
           "evaluate_run", "format_eta", "quiet_library_logs", "train"]
