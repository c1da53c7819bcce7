"""The GAN training tricks a config can switch on, by name (`TRICKS`).

A trick is one of three kinds of piece, and `apply_tricks` puts each where it belongs:

* an optax transformation chained around a player's optimizer (`gax.transforms`): weight
  clipping, historical averaging, gradient noise, EMA of G's weights;
* a loss wrapper (`gax.losses`): label smoothing, soft labels, noisy labels;
* a step `Hook` (`gax.steps.Hook`) with its own state in `GANState.tricks`: spectral
  normalisation, instance noise, experience replay, checkpoint swapping, feature matching,
  top-k training.

The train step knows nothing of individual tricks: it calls the hooks at fixed points and
the optimizers and losses it is given. Every trick has a section in the config,

  config.tricks.<name> = {'enabled': False, <its options with defaults>}

so any trick is switched on from the command line, e.g.
`--config.tricks.spectral_norm.enabled=True --config.tricks.g_ema.decay=0.999`.

Order: tricks are applied in the order of `TRICKS` (registration order below), which fixes
the optimizer chains as `[historical averaging, gradient noise] + optimizer + [weight
clipping, EMA]` (`gax.transforms` explains why) and the hooks' order in the step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from gax import losses as losses_lib
from gax import checks, noise, spectral, transforms
from gax.losses import GANLoss
from gax.registry import Registry
from gax.steps import Hook

Array = jax.Array


# --------------------------------------------------------------------------------------------
# Hooks.


@dataclasses.dataclass(frozen=True)
class SpectralNorm(Hook):
  """D's weight matrices divided by their spectral norm wherever D runs (Miyato et al. 2018).

  State: `gax.spectral`'s `{path: u}` power-iteration vectors, refined by
  `n_power_iterations` steps in every D update (and used as they are in the G step).
  """

  n_power_iterations: int = 1
  name: str = "spectral_norm"

  def __post_init__(self):
    checks.integer(self.n_power_iterations, "spectral_norm.n_power_iterations")

  def init(self, key, state, data_shape):
    sn = spectral.init_spectral_state(state.d.params, key, self.n_power_iterations)
    if not sn:
      raise ValueError("spectral_norm found no kernel (a leaf named 'kernel' with ndim >= 2) "
                       "in D's params.")
    return sn

  def d_params(self, st, params, update):
    return spectral.spectral_normalize(params, st, self.n_power_iterations, update_state=update)


@dataclasses.dataclass(frozen=True)
class InstanceNoise(Hook):
  """Gaussian noise added to every input of D, real and fake, in both players' steps, with a
  standard deviation annealed from `std` to 0 over `decay_steps` train steps (Sønderby et
  al. 2017, "Amortised MAP inference for image super-resolution", sec. 3.2; Arjovsky &
  Bottou 2017, sec. 3; ganhacks 13). `decay_steps=0` keeps `std` constant.

  Inputs are in D's input scale ([-1, 1] for images). Noise is drawn for the global batch
  (`gax.noise.draw_global`), so `pmap` sees the values one device would.
  """

  std: float = 0.1
  decay_steps: int = 0
  name: str = "instance_noise"

  def __post_init__(self):
    if not self.std > 0:
      raise ValueError(f"instance_noise.std must be > 0, got {self.std!r}.")
    if self.decay_steps < 0:
      raise ValueError(f"instance_noise.decay_steps must be >= 0, got {self.decay_steps!r}.")

  def schedule(self, step: Array) -> Array:
    if self.decay_steps == 0:
      return jnp.asarray(self.std, jnp.float32)
    return optax.linear_schedule(self.std, 0.0, self.decay_steps)(step)

  def _noisy(self, x, key, ctx):
    eps = noise.draw_global(noise.gaussian, key, x.shape, ctx.axis_name)
    return x + self.schedule(ctx.step) * eps

  def d_inputs(self, st, real, fake, key, ctx):
    k_real, k_fake = jax.random.split(key)
    return self._noisy(real, k_real, ctx), self._noisy(fake, k_fake, ctx), st

  def g_inputs(self, st, real, fake, key, ctx):
    k_real, k_fake = jax.random.split(key)
    return self._noisy(real, k_real, ctx), self._noisy(fake, k_fake, ctx)


@dataclasses.dataclass(frozen=True)
class ExperienceReplay(Hook):
  """D's fake batch mixes in generated examples from past steps (Shrivastava et al. 2017,
  "Learning from simulated and unsupervised images through adversarial training", sec. 2.3;
  ganhacks 8).

  State: a ring buffer of the last `size` generated examples (`buffer`, float32), the write
  position and the number filled. In every D update each fake example is replaced, with
  probability `prob`, by a uniformly drawn buffer entry; then the fresh fakes are written.
  The buffer holds the *global* batch's fakes (gathered across `pmap` devices), so it is the
  same on every device and the mixing matches one device on the global batch.

  For a conditional GAN (`store_labels=True`, set by `gax.builders` for conditional models)
  the buffer also keeps each fake's class (`labels`, int32) and a replayed fake comes back
  with the label it was generated for, so a cGAN's D scores it with that label and an
  AC-GAN's classifier is trained towards it.
  """

  size: int = 1024
  prob: float = 0.5
  store_labels: bool = False
  name: str = "experience_replay"

  def __post_init__(self):
    checks.integer(self.size, "experience_replay.size")
    if not 0.0 <= self.prob <= 1.0:
      raise ValueError(f"experience_replay.prob must be in [0, 1], got {self.prob!r}.")

  def init(self, key, state, data_shape):
    st = {"buffer": jnp.zeros((self.size, *data_shape), jnp.float32),
          "position": jnp.zeros((), jnp.int32), "filled": jnp.zeros((), jnp.int32)}
    if self.store_labels:
      st["labels"] = jnp.zeros((self.size,), jnp.int32)
    return st

  def d_inputs(self, st, real, fake, key, ctx):
    real, mixed, _, _, new = self.d_inputs_with_labels(st, real, fake, None, None, key, ctx)
    return real, mixed, new

  def d_inputs_with_labels(self, st, real, fake, real_labels, fake_labels, key, ctx):
    if (fake_labels is not None) != self.store_labels:
      raise ValueError(
          "experience_replay: the GAN is conditional but the hook keeps no labels; build it "
          "with ExperienceReplay(store_labels=True)." if fake_labels is not None else
          "experience_replay was built with store_labels=True but the fakes have no labels "
          "(the GAN is unconditional).")
    local = fake.shape[0]
    gather = lambda x: x if ctx.axis_name is None else jax.lax.all_gather(
        x, ctx.axis_name, tiled=True)
    everyone = gather(fake)
    n = everyone.shape[0]
    if n > self.size:
      raise ValueError(f"experience_replay.size={self.size} is smaller than the global batch "
                       f"{n}; use a buffer of at least one batch.")
    k_use, k_idx = jax.random.split(key)
    use_old = jax.random.bernoulli(k_use, self.prob, (n,)) & (st["filled"] > 0)
    idx = jax.random.randint(k_idx, (n,), 0, jnp.maximum(st["filled"], 1))

    def mix(old, new):  # this device's rows of the mixed global batch
      mixed = jnp.where(use_old.reshape((n,) + (1,) * (new.ndim - 1)), old, new)
      return noise.local_rows(mixed, local, ctx.axis_name)

    mixed = mix(st["buffer"][idx], everyone)
    rows = (st["position"] + jnp.arange(n)) % self.size
    new = {"buffer": st["buffer"].at[rows].set(everyone.astype(jnp.float32)),
           "position": (st["position"] + n) % self.size,
           "filled": jnp.minimum(st["filled"] + n, self.size)}
    if self.store_labels:
      all_labels = gather(fake_labels)
      fake_labels = mix(st["labels"][idx], all_labels).astype(fake_labels.dtype)
      new["labels"] = st["labels"].at[rows].set(all_labels.astype(jnp.int32))
    return real, mixed.astype(fake.dtype), real_labels, fake_labels, new


@dataclasses.dataclass(frozen=True)
class CheckpointSwap(Hook):
  """Each player occasionally trains against an old copy of the other (ganhacks 8: keep
  checkpoints of G and D from the past and swap them in for a few iterations).

  State: snapshots of both players' params, taken at every multiple of `every` train steps
  (and at initialisation). In the last `duration` steps of each period of `every` steps, the
  D step draws fakes from the snapshot of G and the G step is scored by the snapshot of D
  (each switchable); batch statistics stay the current ones.
  """

  every: int = 1000
  duration: int = 10
  swap_generator: bool = True
  swap_discriminator: bool = True
  name: str = "checkpoint_swap"

  def __post_init__(self):
    if self.every < 2 or not 1 <= self.duration < self.every:
      raise ValueError(f"checkpoint_swap needs every >= 2 and 1 <= duration < every; got "
                       f"every={self.every}, duration={self.duration}.")

  def init(self, key, state, data_shape):
    return {"g": state.g.params, "d": state.d.params}

  def swapping(self, step: Array) -> Array:
    return (step % self.every) >= self.every - self.duration

  def _pick(self, enabled, old, new, ctx):
    if not enabled:
      return new
    on = self.swapping(ctx.step)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(on, a, b), old, new)

  def generator_for_d(self, st, g_params, ctx):
    return self._pick(self.swap_generator, st["g"], g_params, ctx)

  def discriminator_for_g(self, st, d_params, ctx):
    return self._pick(self.swap_discriminator, st["d"], d_params, ctx)

  def after_step(self, st, state, ctx):
    take = (ctx.step + 1) % self.every == 0
    pick = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), new, old)
    return {"g": pick(state.g.params, st["g"]), "d": pick(state.d.params, st["d"])}


@dataclasses.dataclass(frozen=True)
class FeatureMatching(Hook):
  """G's loss becomes `adversarial_weight * L_adv + weight * ||E f(x) - E f(G(z))||^2`, f
  being D's last hidden activation (Salimans et al. 2016, sec. 3.1, which uses
  `adversarial_weight=0`: feature matching replaces G's objective). A "concat" D computes
  f(x, y) with the real batch's labels for x and the fakes' labels for G(z); an AC-GAN's
  class loss is added after this hook, so it is kept whatever `adversarial_weight` is.
  """

  weight: float = 1.0
  adversarial_weight: float = 0.0
  name: str = "feature_matching"

  def __post_init__(self):
    if not self.weight > 0 or not self.adversarial_weight >= 0:
      raise ValueError(f"feature_matching needs weight > 0 and adversarial_weight >= 0; got "
                       f"{self.weight!r}, {self.adversarial_weight!r}.")

  def g_loss(self, st, loss, features, real, fake, ctx):
    fm = losses_lib.feature_matching_loss(features(real, ctx.real_labels),
                                          features(fake, ctx.fake_labels), ctx.axis_name)
    return self.adversarial_weight * loss + self.weight * fm, {"g_feature_matching": fm}


@dataclasses.dataclass(frozen=True)
class TopK(Hook):
  """G learns only from the k fakes D scores highest (Sinha et al. 2020, "Top-k Training of
  GANs: Improving GAN Performance by Throwing Away Bad Samples", alg. 1).

  With n fakes in the global batch (packs, for a packed D), G's loss is the mean of the
  per-example loss over the k of largest logit, where

    k = max(floor(gamma ** (step // decay_every) * n), ceil(nu * n)),

  so k starts at n and shrinks by `gamma` every `decay_every` train steps (the paper's
  "epoch") down to the floor `nu * n`. The other fakes get no gradient: they are the ones D
  already finds least realistic, whose gradients would pull G towards the blurred average of
  the modes. The selection runs over the global batch under `pmap` (the logits are
  gathered), so one device and many pick the same fakes.
  """

  gamma: float = 0.99
  nu: float = 0.5
  decay_every: int = 1000
  name: str = "top_k"

  def __post_init__(self):
    if not 0 < self.gamma <= 1 or not 0 < self.nu <= 1:
      raise ValueError(f"top_k needs 0 < gamma <= 1 and 0 < nu <= 1; got {self.gamma!r}, "
                       f"{self.nu!r}.")
    checks.integer(self.decay_every, "top_k.decay_every")

  def k(self, step: Array, n: int) -> Array:
    """The number of fakes G learns from at train step `step`, out of `n`."""
    epochs = (jnp.asarray(step, jnp.int32) // self.decay_every).astype(jnp.float32)
    decayed = jnp.floor(jnp.float32(self.gamma) ** epochs * n).astype(jnp.int32)
    floor = max(math.ceil(self.nu * n - 1e-9), 1)
    return jnp.clip(decayed, floor, n)

  def g_fake_weights(self, st, fake_logits, ctx):
    logits = jnp.reshape(fake_logits, (-1,))
    everyone = logits
    if ctx.axis_name is not None:
      everyone = jnp.reshape(jax.lax.all_gather(logits, ctx.axis_name), (-1,))
    n = everyone.shape[0]
    threshold = jnp.sort(everyone)[n - self.k(ctx.step, n)]
    return jnp.reshape(logits >= threshold, fake_logits.shape).astype(jnp.float32)


# --------------------------------------------------------------------------------------------
# The registry.


@dataclasses.dataclass
class Parts:
  """What tricks modify while a GAN is assembled (see `gax.builders.build_gan`)."""

  loss: GANLoss
  axis_name: Optional[str]
  conditional: bool = False
  g_before: List[optax.GradientTransformation] = dataclasses.field(default_factory=list)
  g_after: List[optax.GradientTransformation] = dataclasses.field(default_factory=list)
  d_before: List[optax.GradientTransformation] = dataclasses.field(default_factory=list)
  d_after: List[optax.GradientTransformation] = dataclasses.field(default_factory=list)
  hooks: List[Hook] = dataclasses.field(default_factory=list)

  def chain(self, player: str, base: optax.GradientTransformation) -> optax.GradientTransformation:
    before, after = getattr(self, f"{player}_before"), getattr(self, f"{player}_after")
    if not before and not after:
      return base
    return optax.chain(*before, base, *after)


@dataclasses.dataclass(frozen=True)
class Trick:
  """A switchable trick: where it comes from, its options, and how it changes `Parts`.

  Attributes:
    source: the paper or guide it comes from.
    defaults: its options and their default values (the config section's keys).
    apply: `(parts, **options) -> None`, mutating `parts`.
  """

  source: str
  defaults: Mapping[str, Any]
  apply: Callable[..., None]


TRICKS: Registry[Trick] = Registry("trick")


def _register(name: str, source: str, **defaults):
  def wrap(fn):
    TRICKS.register(name, Trick(source=source, defaults=defaults, apply=fn))
    return fn
  return wrap


def _transform(player: str, where: str, factory):
  def apply(parts: Parts, **options):
    getattr(parts, f"{player}_{where}").append(factory(**options))
  return apply


_register("d_historical_averaging", "Salimans et al. 2016, sec. 3.3", weight=1e-3)(
    _transform("d", "before", transforms.historical_averaging))
_register("g_historical_averaging", "Salimans et al. 2016, sec. 3.3", weight=1e-3)(
    _transform("g", "before", transforms.historical_averaging))
_register("d_gradient_noise", "Neelakantan et al. 2015", eta=0.01, gamma=0.55, seed=0)(
    _transform("d", "before", transforms.add_gradient_noise))
_register("g_gradient_noise", "Neelakantan et al. 2015", eta=0.01, gamma=0.55, seed=0)(
    _transform("g", "before", transforms.add_gradient_noise))
_register("d_clip_params", "Arjovsky et al. 2017 (WGAN), alg. 1", c=0.01)(
    _transform("d", "after", transforms.clip_params))
_register("g_ema", "Karras et al. 2018; Yazici et al. 2019", decay=0.999, debias=False)(
    _transform("g", "after", transforms.ema_params))


def _labels(**fixed):
  def apply(parts: Parts, **options):
    parts.loss = losses_lib.with_labels(parts.loss, **fixed, **options, axis_name=parts.axis_name)
  return apply


_register("label_smoothing", "Salimans et al. 2016, sec. 3.4 (one-sided)", real=0.9)(_labels())
_register("soft_labels", "ganhacks 6; Salimans et al. 2016", real_low=0.7, real_high=1.2,
          fake_low=0.0, fake_high=0.3)(
              lambda parts, real_low, real_high, fake_low, fake_high: _labels(
                  real=(real_low, real_high), fake=(fake_low, fake_high))(parts))
_register("noisy_labels", "ganhacks 6", flip_prob=0.05)(_labels())


def _register_hook(name: str, source: str, cls: type,
                   from_parts: Optional[Mapping[str, Callable[[Parts], Any]]] = None) -> None:
  """Registers a step `Hook` class as trick `name`. Its options are the class's fields with
  their defaults (so that they are written once), less `name` and the fields `from_parts`
  fills in from the `Parts` being assembled (`field -> parts -> value`)."""
  from_parts = dict(from_parts or {})
  defaults = {}
  for field in dataclasses.fields(cls):
    if not field.init or field.name == "name" or field.name in from_parts:
      continue
    if field.default is dataclasses.MISSING:
      raise TypeError(f"Hook {cls.__name__}.{field.name} needs a default to be a trick option.")
    defaults[field.name] = field.default

  def hook(parts: Parts, **options):
    parts.hooks.append(cls(**options, **{k: get(parts) for k, get in from_parts.items()}))

  _register(name, source, **defaults)(hook)


_register_hook("spectral_norm", "Miyato et al. 2018", SpectralNorm)
_register_hook("instance_noise", "Sønderby et al. 2017; Arjovsky & Bottou 2017; ganhacks 13",
               InstanceNoise)
_register_hook("experience_replay", "Shrivastava et al. 2017; ganhacks 8", ExperienceReplay,
               from_parts={"store_labels": lambda parts: parts.conditional})
_register_hook("checkpoint_swap", "ganhacks 8", CheckpointSwap)
_register_hook("feature_matching", "Salimans et al. 2016, sec. 3.1", FeatureMatching)
_register_hook("top_k", "Sinha et al. 2020", TopK)


def default_config() -> Dict[str, Dict[str, Any]]:
  """`{name: {'enabled': False, **defaults}}` for every trick: the config's `tricks` section."""
  return {name: {"enabled": False, **dict(TRICKS.get(name).defaults)}
          for name in TRICKS.names_in_order()}


def _options(name: str, section: Mapping[str, Any]) -> Tuple[bool, Dict[str, Any]]:
  trick = TRICKS.get(name)
  section = dict(section)
  if "enabled" not in section:
    raise KeyError(f"config.tricks.{name} has no 'enabled' key.")
  enabled = section.pop("enabled")
  if not isinstance(enabled, bool):
    raise ValueError(f"config.tricks.{name}.enabled must be True or False, got {enabled!r}.")
  unknown = set(section) - set(trick.defaults)
  if unknown:
    raise KeyError(f"config.tricks.{name} has unknown options {sorted(unknown)}; its options "
                   f"are {sorted(trick.defaults)}.")
  return enabled, {**trick.defaults, **section}


def validate(section: Mapping[str, Mapping[str, Any]]) -> None:
  """Checks a config's `tricks` section: known names, `enabled` flags, known options."""
  for name, options in section.items():
    _options(name, options)


def apply_tricks(parts: Parts, section: Mapping[str, Mapping[str, Any]]) -> Parts:
  """Applies every enabled trick of a config's `tricks` section to `parts`, in `TRICKS`
  order. Tricks absent from the section are off."""
  validate(section)
  for name in TRICKS.names_in_order():
    if name in section:
      enabled, options = _options(name, section[name])
      if enabled:
        try:
          TRICKS.get(name).apply(parts, **options)
        except (TypeError, ValueError) as e:
          raise ValueError(f"config.tricks.{name}: {e}") from e
  return parts
