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
from gax import augment, checks, noise, spectral, transforms
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


def _global_count(n: int, axis_name: Optional[str]) -> Array:
  n = jnp.asarray(n, jnp.float32)
  return n if axis_name is None else jax.lax.psum(n, axis_name)


def _policy(value: Any) -> Tuple[str, ...]:
  if isinstance(value, str):
    value = [p.strip() for p in value.split(",") if p.strip()]
  return augment.check_policy(value)


class _Augmenting(Hook):
  """A hook that augments every image D sees, real and fake, in both players' steps, with
  independent draws for the two batches: subclasses define `augment(st, x, key, ctx)`."""

  def augment(self, st: Any, x: Array, key: Array, ctx: StepContext) -> Array:
    raise NotImplementedError

  def _both(self, st, real, fake, key, ctx):
    k_real, k_fake = jax.random.split(key)
    return self.augment(st, real, k_real, ctx), self.augment(st, fake, k_fake, ctx)

  def d_inputs(self, st, real, fake, key, ctx):
    real, fake = self._both(st, real, fake, key, ctx)
    return real, fake, st

  def g_inputs(self, st, real, fake, key, ctx):
    return self._both(st, real, fake, key, ctx)


@dataclasses.dataclass(frozen=True)
class DiffAugment(_Augmenting):
  """Differentiable augmentation of every image D sees (Zhao et al. 2020, "Differentiable
  Augmentation for Data-Efficient GAN Training", sec. 3): the same random `policy`
  (`gax.augment.diff_augment`: "color", "translation", "cutout", comma-separated) applied to
  the real and the fake batch in D's step, its penalties, and G's step, where G's gradient
  flows through the augmentation. Each image gets its own draw, independent for real and
  fake, deterministic from the step's key. The paper's choice for CIFAR-10 with BigGAN is
  "translation,cutout" with "color" added when data are scarce; all three is its default.
  """

  policy: str = "color,translation,cutout"
  name: str = "diffaugment"

  def __post_init__(self):
    _policy(self.policy)

  def init(self, key, state, data_shape):
    if len(data_shape) != 3:
      raise ValueError(f"diffaugment augments images [H, W, C]; the data are "
                       f"{tuple(data_shape)}.")
    return None

  def augment(self, st, x, key, ctx):
    return augment.diff_augment(x, key, _policy(self.policy), ctx.axis_name)


@dataclasses.dataclass(frozen=True)
class AdaptiveAugment(_Augmenting):
  """Adaptive discriminator augmentation (Karras et al. 2020, "Training Generative
  Adversarial Networks with Limited Data", sec. 3-4): ADA's `bgc` pipeline
  (`gax.augment.ada_augment`) on every image D sees, real and fake, in both players' steps,
  each transformation with probability p.

  p lives in the state (`{"p", "signs", "count", "images"}`), so it checkpoints and resumes
  exactly. Every D update adds `sign(D(x_real))` of the augmented reals to `signs` (and the
  number of logits and real images seen to `count` and `images`); every `interval` train
  steps the overfitting heuristic r_t = signs / count moves p by
  `sign(r_t - target) * images / (kimg * 1000)` (the paper's eq. and its code's
  `ada_interval=4`, `ada_kimg=500`, `target=0.6`), p kept in [0, 1], and the sums restart.
  `adjust=False` keeps p at its initial value (fixed-p augmentation). Logged: `ada_p` and
  `ada_rt` (this update's mean sign).
  """

  p: float = 0.0
  target: float = 0.6
  interval: int = 4
  kimg: float = 500.0
  adjust: bool = True
  name: str = "ada"
  state_metrics = ("ada_p",)

  def __post_init__(self):
    if not 0 <= self.p <= 1:
      raise ValueError(f"ada.p must be in [0, 1], got {self.p!r}.")
    if not -1 < self.target < 1:
      raise ValueError(f"ada.target must be in (-1, 1), got {self.target!r}.")
    checks.integer(self.interval, "ada.interval")
    if not self.kimg > 0:
      raise ValueError(f"ada.kimg must be > 0, got {self.kimg!r}.")
    if not isinstance(self.adjust, bool):
      raise ValueError(f"ada.adjust must be True or False, got {self.adjust!r}.")

  def init(self, key, state, data_shape):
    if len(data_shape) != 3:
      raise ValueError(f"ada augments images [H, W, C]; the data are {tuple(data_shape)}.")
    # One array per leaf: the trainer donates the state, and a buffer shared by two leaves
    # cannot be donated twice.
    zero = lambda: jnp.zeros((), jnp.float32)
    return {"p": jnp.full((), self.p, jnp.float32), "signs": zero(), "count": zero(),
            "images": zero()}

  def augment(self, st, x, key, ctx):
    return augment.ada_augment(x, key, st["p"], ctx.axis_name)

  def d_objective(self, st, loss, view, ctx):
    signs = jnp.sign(view.real_logits)
    rt = losses_lib.global_mean(signs, ctx.axis_name)
    n = _global_count(signs.size, ctx.axis_name)
    st = {**st, "signs": st["signs"] + rt * n, "count": st["count"] + n,
          "images": st["images"] + _global_count(view.real.shape[0], ctx.axis_name)}
    return loss, {"ada_p": st["p"], "ada_rt": rt}, st

  def after_step(self, st, state, ctx):
    if not self.adjust:
      return st
    due = (state.step + 1) % self.interval == 0
    rt = st["signs"] / jnp.maximum(st["count"], 1.0)
    step = jnp.sign(rt - self.target) * st["images"] / (self.kimg * 1000.0)
    z = jnp.zeros((), jnp.float32)
    return {"p": jnp.where(due, jnp.clip(st["p"] + step, 0.0, 1.0), st["p"]),
            "signs": jnp.where(due, z, st["signs"]), "count": jnp.where(due, z, st["count"]),
            "images": jnp.where(due, z, st["images"])}


@dataclasses.dataclass(frozen=True)
class LeCam(Hook):
  """LeCam regularisation of D (Tseng et al. 2021, "Regularizing Generative Adversarial
  Networks under Limited Data", eq. 3):

    R_LC = E_x[relu(D(x) - a_F)^2] + E_z[relu(a_R - D(G(z)))^2],

  added to D's loss with `weight`, where a_R and a_F are moving averages of D's mean logit on
  the real and the fake batch (`decay`). As the authors' BigGAN code (google/lecam-gan,
  `lecam_reg`, `utils.ema_losses(start_itr=1000)` with decay 0.9, `--LC 0.3`): the averages
  take in this update's means before the penalty is computed, follow the current means
  exactly until `start_step` train steps have passed, and the penalty is applied from then
  on; `relu=False` gives the paper's eq. 3 without the hinges. Under `pmap` the means are
  over the global batch, so every device holds the same anchors. State `{"real", "fake"}`;
  logged: `d_lecam` (the penalty, before its weight) and the anchors.
  """

  weight: float = 0.3
  decay: float = 0.9
  start_step: int = 1000
  relu: bool = True
  name: str = "lecam"
  state_metrics = ("lecam_anchor_real", "lecam_anchor_fake")

  def __post_init__(self):
    if not self.weight > 0 or not 0 <= self.decay < 1:
      raise ValueError(f"lecam needs weight > 0 and 0 <= decay < 1; got {self.weight!r}, "
                       f"{self.decay!r}.")
    if self.start_step < 0:
      raise ValueError(f"lecam.start_step must be >= 0, got {self.start_step!r}.")

  def init(self, key, state, data_shape):
    return {"real": jnp.zeros((), jnp.float32), "fake": jnp.zeros((), jnp.float32)}

  def penalty(self, real_logits: Array, fake_logits: Array, anchor_real: Array,
              anchor_fake: Array) -> Array:
    """R_LC of this device's logits and the given anchors."""
    act = jax.nn.relu if self.relu else (lambda v: v)
    return (jnp.mean(jnp.square(act(real_logits - anchor_fake)))
            + jnp.mean(jnp.square(act(anchor_real - fake_logits))))

  def d_objective(self, st, loss, view, ctx):
    real_mean = jax.lax.stop_gradient(losses_lib.global_mean(view.real_logits, ctx.axis_name))
    fake_mean = jax.lax.stop_gradient(losses_lib.global_mean(view.fake_logits, ctx.axis_name))
    on = ctx.step >= self.start_step
    decay = jnp.where(on, self.decay, 0.0)
    st = {"real": decay * st["real"] + (1 - decay) * real_mean,
          "fake": decay * st["fake"] + (1 - decay) * fake_mean}
    reg = self.penalty(view.real_logits, view.fake_logits, st["real"], st["fake"])
    loss = loss + jnp.where(on, self.weight, 0.0) * reg
    return loss, {"d_lecam": reg, "lecam_anchor_real": st["real"],
                  "lecam_anchor_fake": st["fake"]}, st


@dataclasses.dataclass(frozen=True)
class Consistency(Hook):
  """Consistency regularisation of D's logits under a semantics-preserving augmentation T
  (`gax.augment.flip_translate`):

  * CR (Zhang et al. 2020, "Consistency Regularization for Generative Adversarial Networks",
    eq. 2): `real_weight * E ||D(x) - D(T(x))||^2` on the real batch, weight 10;
  * bCR (Zhao et al. 2021, "Improved Consistency Regularization for GANs", alg. 1, balanced):
    also `fake_weight * E ||D(G(z)) - D(T(G(z)))||^2` on the fakes, both weights 10;
  * zCR (the same paper, latent consistency): `z_weight * E ||D(G(z)) - D(G(z + dz))||^2`
    for D and `-g_weight * E ||G(z) - G(z + dz)||^2` for G (G is pushed to make nearby
    latents give different images), dz ~ N(0, z_std^2), the paper's 5, 0.5 and 0.03.

  A weight of 0 switches its term off; the config's `cr`, `bcr` and `zcr` tricks are this
  hook with the papers' weights. D(x) and D(G(z)) are the logits D's loss uses (after any
  augmentation hook before this one); D(T(.)) runs D with the pre-step batch statistics,
  like the penalties. The squared differences are averaged over the batch (and, for G's
  term, over the image's elements). Logged: `d_cr_real`, `d_cr_fake`, `d_zcr`, `g_zcr`.
  """

  real_weight: float = 10.0
  fake_weight: float = 0.0
  z_weight: float = 0.0
  g_weight: float = 0.0
  z_std: float = 0.03
  name: str = "consistency"

  def __post_init__(self):
    weights = (self.real_weight, self.fake_weight, self.z_weight, self.g_weight)
    if any(not w >= 0 for w in weights) or not any(w > 0 for w in weights):
      raise ValueError(f"{self.name}: weights must be >= 0 with one > 0; got real_weight="
                       f"{self.real_weight!r}, fake_weight={self.fake_weight!r}, z_weight="
                       f"{self.z_weight!r}, g_weight={self.g_weight!r}.")
    if not self.z_std > 0:
      raise ValueError(f"{self.name}.z_std must be > 0, got {self.z_std!r}.")

  def _dz(self, key, z, ctx):
    return self.z_std * noise.draw_global(noise.gaussian, key, z.shape, ctx.axis_name)

  def d_objective(self, st, loss, view, ctx):
    k_real, k_fake, k_z = jax.random.split(view.key, 3)
    metrics = {}
    if self.real_weight > 0:
      t = view.d(augment.flip_translate(view.real, k_real, ctx.axis_name), view.real_labels)
      cr = jnp.mean(jnp.square(view.real_logits - t))
      loss, metrics["d_cr_real"] = loss + self.real_weight * cr, cr
    if self.fake_weight > 0:
      t = view.d(augment.flip_translate(view.fake, k_fake, ctx.axis_name), view.fake_labels)
      cr = jnp.mean(jnp.square(view.fake_logits - t))
      loss, metrics["d_cr_fake"] = loss + self.fake_weight * cr, cr
    if self.z_weight > 0:
      t = view.d(view.generate(view.z + self._dz(k_z, view.z, ctx)), view.fake_labels)
      zcr = jnp.mean(jnp.square(view.fake_logits - t))
      loss, metrics["d_zcr"] = loss + self.z_weight * zcr, zcr
    return loss, metrics, st

  def g_objective(self, st, loss, view, ctx):
    if self.g_weight == 0:
      return loss, {}
    moved = view.generate(view.z + self._dz(view.key, view.z, ctx))
    zcr = jnp.mean(jnp.square(view.generated - moved))
    return loss - self.g_weight * zcr, {"g_zcr": zcr}


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
_register("g_orthogonal_regularization", "Brock et al. 2019 (BigGAN), sec. 3.1",
          strength=1e-4)(_transform("g", "before", transforms.orthogonal_regularization))
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
_register_hook("diffaugment", "Zhao et al. 2020 (DiffAugment)", DiffAugment)
_register_hook("ada", "Karras et al. 2020 (ADA), the bgc pipeline", AdaptiveAugment)
_register_hook("lecam", "Tseng et al. 2021", LeCam)


def _consistency(name: str, **weights):
  """`Consistency` with the papers' weights of one variant as its trick's defaults."""
  defaults = {"real_weight": 0.0, "fake_weight": 0.0, "z_weight": 0.0, "g_weight": 0.0,
              **weights, "z_std": 0.03}
  def hook(parts: Parts, **options):
    parts.hooks.append(Consistency(**options, name=name))
  return defaults, hook


for _name, _source, _weights in (
    ("cr", "Zhang et al. 2020 (CR)", {"real_weight": 10.0}),
    ("bcr", "Zhao et al. 2021 (bCR)", {"real_weight": 10.0, "fake_weight": 10.0}),
    ("zcr", "Zhao et al. 2021 (zCR)", {"z_weight": 5.0, "g_weight": 0.5})):
  _defaults, _hook = _consistency(_name, **_weights)
  _register(_name, _source, **_defaults)(_hook)


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


__all__ = ["SpectralNorm", "InstanceNoise", "ExperienceReplay", "CheckpointSwap",
           "FeatureMatching", "TopK", "DiffAugment", "AdaptiveAugment", "LeCam", "Consistency",
           "Parts", "Trick", "TRICKS", "default_config", "validate", "apply_tricks"]
