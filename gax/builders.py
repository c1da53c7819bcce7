"""From a config to the objects of a run: the `GAN`, its data source and initial state.

The config layout (see `experiments/configs/`):

  seed          int
  data          name (a `gax.data.DATASETS` entry), batch_size, and that source's options
                (`labels=True`: batches carry class labels, see `gax.data`)
  model         name (a `gax.models.MODELS` entry) and that model's options, among them
                the class conditioning `num_classes` and `conditioning` ("none" | "concat"
                | "auxiliary" | "projection"; see `gax.models.conditioning`) and
                `aux_weight`, AC-GAN's class-loss weight (read here for `GAN.aux_weight`,
                not by the networks)
  latent        dim, distribution (a `gax.noise.LATENTS` entry)
  loss          a `gax.losses.LOSSES` name
  d_penalty     weight of each `gax.penalties.PENALTIES` entry in D's loss (0 = off)
  n_critic      D updates per G update
  tricks        one section per `gax.tricks.TRICKS` entry: enabled (bool) and its options
  optimizer     g, d: name (a `gax.optimizers.OPTIMIZERS` entry) and its options, and the
                learning-rate schedule (`gax.optimizers.SCHEDULE_KEYS`)
  parallel      'none' (one device, jit), 'pmap' (all local devices) or 'mesh' (jit over a
                Mesh of all devices with NamedSharding)
  train         steps and logging/sampling/checkpoint intervals
  monitor       failure detection in the logged metrics (`gax.monitor`) and which stop the run
  eval          evaluation during training and by experiments/evaluate.py: how often, which
                metrics and feature network, and the metric of the best checkpoint
                (`gax.evaluation.EvalSettings`)
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Mapping, Optional, Tuple

import jax

from gax import data as data_lib
from gax import checks, evaluation, loop, losses, models, monitor, noise, penalties, tricks
from gax.models.conditioning import check_conditioning
from gax.models.packing import Packed
from gax.optimizers import SCHEDULE_DEFAULTS, build_optimizer
from gax.state import GANState
from gax.steps import GAN, init_state

TOP_LEVEL_KEYS = frozenset(
    {"seed", "data", "model", "latent", "loss", "d_penalty", "n_critic", "tricks", "optimizer",
     "parallel", "train", "monitor", "eval"})
# The loop's choices, under the names the config checks have always used.
PARALLEL_MODES = loop.PARALLEL
ON_CORRUPT_CHECKPOINT = loop.ON_CORRUPT_CHECKPOINT
# Arguments of every data source that the config does not set in `config.data`.
_DATA_ARGS_FROM_ELSEWHERE = ("batch_size", "n_critic", "seed")


def _as_dict(section: Any) -> dict:
  return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def validate_config(config: Any) -> None:
  """Checks the config's top-level layout and enumerated values, with errors naming the key."""
  keys = set(config.keys())
  unknown = keys - TOP_LEVEL_KEYS
  missing = TOP_LEVEL_KEYS - keys
  if unknown:
    raise KeyError(f"Unknown config keys: {sorted(unknown)}; known: {sorted(TOP_LEVEL_KEYS)}.")
  if missing:
    raise KeyError(f"Config is missing keys: {sorted(missing)}.")
  if config.parallel not in PARALLEL_MODES:
    raise ValueError(f"config.parallel={config.parallel!r}; choose one of {PARALLEL_MODES}.")
  checks.integer(config.data.batch_size, "config.data.batch_size")
  check_data_options(config.data)
  if not isinstance(config.train.get("tensorboard", True), bool):
    raise ValueError("config.train.tensorboard must be True or False, got "
                     f"{config.train.tensorboard!r}.")
  if not isinstance(config.train.get("init_from", ""), str):
    raise ValueError("config.train.init_from must be a work directory path ('' for none), "
                     f"got {config.train.init_from!r}.")
  checks.integer(config.train.get("init_from_step", -1), "config.train.init_from_step", -1,
                 " (-1: the newest checkpoint)")
  on_corrupt = config.train.get("on_corrupt_checkpoint", "error")
  if on_corrupt not in ON_CORRUPT_CHECKPOINT:
    raise ValueError(f"config.train.on_corrupt_checkpoint={on_corrupt!r}; choose one of "
                     f"{ON_CORRUPT_CHECKPOINT}.")
  losses.LOSSES.get(config.loss)
  for name, weight in config.d_penalty.items():
    penalties.PENALTIES.get(name)
    if not weight >= 0:
      raise ValueError(f"config.d_penalty.{name} must be a weight >= 0, got {weight!r}.")
  noise.LATENTS.get(config.latent.distribution)
  models.MODELS.get(config.model.name)
  data_lib.DATASETS.get(config.data.name)
  tricks.validate(_as_dict(config.tricks))
  monitor.Monitor.from_config(config.monitor, loss=config.loss)
  evaluation.EvalSettings.from_config(config.eval)
  _check_conditioning_config(config)


def data_options(name: str) -> Dict[str, Any]:
  """`{option: default}` of the data source `name`: the keys `config.data` may hold besides
  `name` and `batch_size` (`inspect.Parameter.empty` for an option without a default)."""
  factory = data_lib.DATASETS.get(name)
  return {k: p.default for k, p in inspect.signature(factory).parameters.items()
          if k not in _DATA_ARGS_FROM_ELSEWHERE}


def check_data_options(data: Any) -> None:
  """A `KeyError` naming the valid options when `config.data` has a key its source does not
  take."""
  options = data_options(data.name)
  unknown = sorted(set(_as_dict(data)) - set(options) - {"name", "batch_size"})
  if unknown:
    raise KeyError(
        f"config.data.{unknown[0]} is not an option of the {data.name!r} data source; its "
        f"options are name, batch_size, {', '.join(options)}.")


def data_config(name: str, batch_size: int, **options: Any) -> Dict[str, Any]:
  """A `config.data` section for the source `name` holding every one of its options, at its
  default unless given in `options`, so that each can be set from the command line
  (`--config.data.path=...`); an option without a default becomes `""`."""
  defaults = data_options(name)
  unknown = sorted(set(options) - set(defaults))
  if unknown:
    raise KeyError(f"{unknown[0]!r} is not an option of the {name!r} data source; its options "
                   f"are {', '.join(defaults)}.")
  section = {"name": name, "batch_size": batch_size}
  for k, v in defaults.items():
    section[k] = options.get(k, "" if v is inspect.Parameter.empty else v)
  return section


def with_data(config: Any, source: str) -> Any:
  """`config` with its data section replaced by every option of the data source `source`
  (`data_config`), keeping the batch size and the image size when the new source has one;
  unchanged for `source=""`. The configs' `get_config(data)` calls it, so that
  `--config=experiments/configs/dcgan_digits.py:array --config.data.path=images.npz` trains
  the same GAN on other data."""
  if not source:
    return config
  old = _as_dict(config.data)
  keep = {k: old[k] for k in ("image_size",) if k in old and k in data_options(source)}
  config.data = data_config(source, old["batch_size"], **keep)
  return config


def _conditioning(config: Any) -> Tuple[int, str]:
  model = _as_dict(config.model)
  return model.get("num_classes", 0), model.get("conditioning", "none")


def _check_conditioning_config(config: Any) -> None:
  """A conditional model needs a consistent `model.num_classes` and `data.labels=True`."""
  num_classes, conditioning = _conditioning(config)
  check_conditioning(num_classes, conditioning)
  if conditioning != "none" and _as_dict(config.data).get("labels", False) is not True:
    raise ValueError(f"config.model.conditioning={conditioning!r} trains on class labels: set "
                     "config.data.labels=True.")


def check_data_labels(config: Any, source: Any) -> None:
  """Checks that a conditional model's `model.num_classes` is the data source's number of
  classes (with a clear error naming both keys)."""
  _check_conditioning_config(config)
  num_classes, conditioning = _conditioning(config)
  if conditioning == "none":
    return
  have = getattr(source, "num_classes", 0)
  if have != num_classes:
    raise ValueError(
        f"config.model.num_classes={num_classes} but the data source "
        f"{config.data.name!r} (config.data) has {have} classes; set config.model.num_classes="
        f"{have}.")


def build_data(config: Any, batch_size: Optional[int] = None):
  """The data source named by `config.data`, batched `[n_critic, batch_size, ...]`; checks
  that a conditional model's classes are the source's (`check_data_labels`)."""
  cfg = _as_dict(config.data)
  name = cfg.pop("name")
  bs = cfg.pop("batch_size")
  source = data_lib.DATASETS.build(name, batch_size=batch_size or bs, n_critic=config.n_critic,
                                   seed=config.seed, **cfg)
  check_data_labels(config, source)
  return source


def build_gan(config: Any, data_shape: Tuple[int, ...], axis_name: Optional[str] = None) -> GAN:
  """The `GAN` described by `config` for examples of shape `data_shape`."""
  model_cfg = _as_dict(config.model)
  aux_weight = model_cfg.pop("aux_weight", 1.0)
  num_classes, conditioning = _conditioning(config)
  if conditioning != "auxiliary" and "aux_weight" in _as_dict(config.model):
    raise ValueError(f"config.model.aux_weight is AC-GAN's class-loss weight, but "
                     f"config.model.conditioning is {conditioning!r}, not 'auxiliary'.")
  if not isinstance(aux_weight, (int, float)) or not aux_weight >= 0:
    raise ValueError(f"config.model.aux_weight must be a number >= 0, got {aux_weight!r}.")
  packing = model_cfg.pop("packing", 1)
  checks.integer(packing, "config.model.packing", note=" (1: off)")
  if packing > 1 and conditioning != "none":
    raise ValueError("config.model.packing > 1 (PacGAN) does not support conditional GANs "
                     f"(config.model.conditioning={conditioning!r}).")
  generator, discriminator = models.MODELS.build(
      model_cfg.pop("name"), data_shape=tuple(data_shape), axis_name=axis_name, **model_cfg)
  if packing > 1:
    discriminator = Packed(discriminator, packing)
  opt = _as_dict(config.optimizer)
  if set(opt) != {"g", "d"}:
    raise KeyError(f"config.optimizer must have exactly the keys 'g' and 'd', got {sorted(opt)}.")
  parts = tricks.apply_tricks(
      tricks.Parts(loss=losses.get_loss(config.loss, axis_name), axis_name=axis_name,
                   conditional=conditioning != "none"),
      _as_dict(config.tricks))
  return GAN(
      generator=generator,
      discriminator=discriminator,
      loss=parts.loss,
      g_tx=parts.chain("g", build_optimizer(opt["g"])),
      d_tx=parts.chain("d", build_optimizer(opt["d"])),
      latent_dim=int(config.latent.dim),
      latent=noise.LATENTS.get(config.latent.distribution),
      n_critic=int(config.n_critic),
      axis_name=axis_name,
      d_penalties=tuple((name, float(w), penalties.get_penalty(name))
                        for name, w in sorted(_as_dict(config.d_penalty).items()) if w > 0),
      hooks=tuple(parts.hooks),
      num_classes=int(num_classes),
      conditioning=conditioning,
      aux_weight=float(aux_weight),
  )


def build_state(gan: GAN, config: Any, data_shape: Tuple[int, ...]) -> GANState:
  return init_state(gan, jax.random.PRNGKey(config.seed), tuple(data_shape))


# Keys added to the config after runs were made without them, with the value that gives the
# behaviour of those runs: a saved config that lacks one matches a new config holding it.
# (Tricks need no entry: see `_absent_trick_is_off`.)
ADDED_KEYS = {
    f"optimizer.{player}.{key}": value for player in ("g", "d")
    for key, value in SCHEDULE_DEFAULTS.items()
}


def _absent_trick_is_off(path: str, new: Any) -> bool:
  """Whether `path` is a `tricks.<name>` section that a saved config lacks and the new config
  switches off: `tricks.apply_tricks` leaves absent tricks off, so the saved run trained
  without it (it predates the trick) and the two behave alike, whatever the options."""
  return (path.startswith("tricks.") and path.count(".") == 1 and isinstance(new, Mapping)
          and new.get("enabled") is False)


def compatibility_diff(old: Mapping[str, Any], new: Mapping[str, Any],
                       may_differ=("train", "parallel", "monitor", "eval")) -> list[str]:
  """Config keys (dotted) whose values differ between two config dicts, ignoring the
  sections that do not change what a checkpoint holds (run length, logging, parallelism,
  evaluation), the `ADDED_KEYS` a saved config predates, and tricks it predates that the new
  config leaves off."""
  diffs = []

  def walk(a, b, prefix):
    for k in sorted(set(a) | set(b)):
      path = f"{prefix}{k}"
      if not prefix and k in may_differ:
        continue
      va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
      if va == "<absent>" and (path in ADDED_KEYS and _normalise(vb) == ADDED_KEYS[path]
                               or _absent_trick_is_off(path, vb)):
        continue
      if isinstance(va, Mapping) and isinstance(vb, Mapping):
        walk(va, vb, path + ".")
      elif _normalise(va) != _normalise(vb):
        diffs.append(f"{path}: {va!r} -> {vb!r}")

  walk(old, new, "")
  return diffs


def _normalise(v: Any) -> Any:
  return list(v) if isinstance(v, (tuple, list)) else v


def base_config() -> "ml_collections.ConfigDict":
  """A complete config with every key at a neutral default; experiment configs override it."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = ml_collections.ConfigDict({"name": "ring", "batch_size": 256})
  c.model = ml_collections.ConfigDict({"name": "mlp"})
  c.latent = ml_collections.ConfigDict({"dim": 64, "distribution": "gaussian"})
  c.loss = "non_saturating"
  c.d_penalty = ml_collections.ConfigDict({name: 0.0 for name in penalties.PENALTIES})
  c.n_critic = 1
  c.tricks = ml_collections.ConfigDict(tricks.default_config())
  # Constant learning rates; `gax.optimizers` documents the schedule keys.
  adam = {"name": "adam", "learning_rate": 2e-4, "b1": 0.5, "b2": 0.999, **SCHEDULE_DEFAULTS}
  c.optimizer = ml_collections.ConfigDict({"g": dict(adam), "d": dict(adam)})
  c.parallel = "none"
  c.train = ml_collections.ConfigDict({
      "steps": 1000,
      "log_every": 100,
      "sample_every": 500,
      "checkpoint_every": 500,
      "keep_checkpoints": 3,
      "num_samples": 64,
      # A newest checkpoint that fails its checksums: "error" stops with the way to resume
      # from the previous one; "previous" moves it to checkpoints.corrupt/ and resumes from
      # the newest intact one (single-process runs).
      "on_corrupt_checkpoint": "error",
      # TensorBoard event files in the work directory (`gax.loop.TensorBoard`).
      "tensorboard": True,
      # A work directory to warm-start from (`gax.trainer.warm_start`): a new run takes its
      # networks, optimizer moments, tricks' state and key from that run's checkpoint of
      # step `init_from_step` (-1: the newest), and counts its own steps from 0.
      "init_from": "",
      "init_from_step": -1,
  })
  c.monitor = ml_collections.ConfigDict(monitor.monitor_config_defaults())
  c.eval = ml_collections.ConfigDict(evaluation.eval_config_defaults())
  return c


__all__ = ["TOP_LEVEL_KEYS", "PARALLEL_MODES", "ON_CORRUPT_CHECKPOINT", "validate_config",
           "data_options", "check_data_options", "data_config", "with_data",
           "check_data_labels", "build_data", "build_gan", "build_state", "ADDED_KEYS",
           "compatibility_diff", "base_config"]
