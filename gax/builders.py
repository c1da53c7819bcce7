"""From a config to the objects of a run: the `GAN`, its data source and initial state.

The config layout (see `experiments/configs/`):

  seed          int
  data          name (a `gax.data.DATASETS` entry), batch_size, and that source's options
  model         name (a `gax.models.MODELS` entry) and that model's options
  latent        dim, distribution (a `gax.noise.LATENTS` entry)
  loss          a `gax.losses.LOSSES` name
  d_penalty     weight of each `gax.penalties.PENALTIES` entry in D's loss (0 = off)
  n_critic      D updates per G update
  tricks        one section per `gax.tricks.TRICKS` entry: enabled (bool) and its options
  optimizer     g, d: name (a `gax.optimizers.OPTIMIZERS` entry) and its options
  parallel      'none' (one device, jit) or 'pmap' (all local devices)
  train         steps and logging/sampling/checkpoint intervals
  monitor       failure detection in the logged metrics (`gax.monitor`) and which stop the run
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import jax

from gax import data as data_lib
from gax import losses, models, monitor, noise, penalties, tricks
from gax.optimizers import build_optimizer
from gax.state import GANState
from gax.steps import GAN, init_state

TOP_LEVEL_KEYS = frozenset(
    {"seed", "data", "model", "latent", "loss", "d_penalty", "n_critic", "tricks", "optimizer",
     "parallel", "train", "monitor"})
PARALLEL_MODES = ("none", "pmap")


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
  if int(config.data.batch_size) < 1:
    raise ValueError(f"config.data.batch_size must be >= 1, got {config.data.batch_size}.")
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


def build_data(config: Any, batch_size: Optional[int] = None):
  """The data source named by `config.data`, batched `[n_critic, batch_size, ...]`."""
  cfg = _as_dict(config.data)
  name = cfg.pop("name")
  bs = cfg.pop("batch_size")
  return data_lib.DATASETS.build(name, batch_size=batch_size or bs, n_critic=config.n_critic,
                                 seed=config.seed, **cfg)


def build_gan(config: Any, data_shape: Tuple[int, ...], axis_name: Optional[str] = None) -> GAN:
  """The `GAN` described by `config` for examples of shape `data_shape`."""
  model_cfg = _as_dict(config.model)
  generator, discriminator = models.MODELS.build(
      model_cfg.pop("name"), data_shape=tuple(data_shape), axis_name=axis_name, **model_cfg)
  opt = _as_dict(config.optimizer)
  if set(opt) != {"g", "d"}:
    raise KeyError(f"config.optimizer must have exactly the keys 'g' and 'd', got {sorted(opt)}.")
  parts = tricks.apply_tricks(
      tricks.Parts(loss=losses.get_loss(config.loss, axis_name), axis_name=axis_name),
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
  )


def build_state(gan: GAN, config: Any, data_shape: Tuple[int, ...]) -> GANState:
  return init_state(gan, jax.random.PRNGKey(config.seed), tuple(data_shape))


def compatibility_diff(old: Mapping[str, Any], new: Mapping[str, Any],
                       may_differ=("train", "parallel", "monitor")) -> list[str]:
  """Config keys (dotted) whose values differ between two config dicts, ignoring the
  sections that do not change what a checkpoint holds (run length, logging, parallelism)."""
  diffs = []

  def walk(a, b, prefix):
    for k in sorted(set(a) | set(b)):
      path = f"{prefix}{k}"
      if not prefix and k in may_differ:
        continue
      va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
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
  c.optimizer = ml_collections.ConfigDict({
      "g": {"name": "adam", "learning_rate": 2e-4, "b1": 0.5, "b2": 0.999},
      "d": {"name": "adam", "learning_rate": 2e-4, "b1": 0.5, "b2": 0.999},
  })
  c.parallel = "none"
  c.train = ml_collections.ConfigDict({
      "steps": 1000,
      "log_every": 100,
      "sample_every": 500,
      "checkpoint_every": 500,
      "keep_checkpoints": 3,
      "num_samples": 64,
  })
  c.monitor = ml_collections.ConfigDict(monitor.monitor_config_defaults())
  return c
