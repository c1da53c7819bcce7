"""Pure GAN train steps.

`d_step` and `g_step` are `(gan, state, real, key) -> (state, metrics)`; `train_step` is
`(gan, state, batch) -> (state, metrics)` and runs `gan.n_critic` discriminator updates and
one generator update in one compiled program, drawing its randomness from `state.key`.
Bind `gan` with `functools.partial` and the step runs eagerly, under `jax.jit` (see
`jit_train_step`, which donates the state buffers) or under `jax.pmap`
(`gax.parallel.pmap_train_step`).

Under `pmap`, `gan.axis_name` names the mapped axis: gradients and metrics are averaged
across it, batch statistics are synchronised by the models' batch norm, and each device
draws its slice of one *global* latent batch, so N devices with per-device batch B compute
the same update as one device with batch N * B.

Tricks that need more than an optimizer or a loss (spectral normalisation, instance noise,
experience replay, ...) are `Hook`s in `gan.hooks`: the steps call every hook at fixed points
(which G the D step samples, D's inputs, D's params, G's loss, the terms each player's
objective gains from the step's logits through `DView` / `GView`, after the step) and keep each
hook's state in `state.tricks`; no step code names a trick (see `gax.tricks`).

Discriminator updates see real and fake examples in separate batches (ganhacks 4), so
batch norm never mixes the two. The generator step runs D in train mode but discards D's
batch-statistics update: D's state changes only in D's own step.

Conditional GANs (`GAN.conditioning`, ganhacks 12: use labels if you have them): the batch is
`{"x": [n_critic, B, ...], "y": int [n_critic, B]}` (`gax.data` with `labels=True`), and both
steps draw the fakes' labels uniformly over the `num_classes` classes for the global batch
(`gax.noise.draw_global`, as the latents), G generating `G(z, y_fake)`.

* "concat" (cGAN, Mirza & Osindero 2014) and "projection" (Miyato & Koyama 2018): D scores
  `D(x_real, y_real)` and `D(G(z, y_fake), y_fake)`; the losses are the unconditional ones.
* "auxiliary" (AC-GAN, Odena et al. 2017, sec. 3): D is unconditional but also returns class
  logits. With the class loss L_C = CE(C(x_real), y_real) + CE(C(G(z, y_fake)), y_fake), D
  minimises its adversarial loss + `aux_weight` * L_C and G minimises its adversarial loss
  (after any `g_loss` hook, e.g. feature matching) + `aux_weight` * CE(C(G(z, y_fake)),
  y_fake): the paper's "D maximises L_S + L_C, G maximises L_C - L_S" with the GAN loss of
  the config as L_S. Metrics `d_class_loss`, `d_class_accuracy_real`, `d_class_accuracy_fake`
  and `g_class_loss` report it.

Penalties (`GAN.d_penalties`) differentiate D's adversarial logit only (never AC-GAN's class
head). For "concat" and "projection" they run D with the real labels (R1, DRAGAN's
perturbed reals and WGAN-GP's real-fake interpolates, which lie on the real side of each
pair), except the penalties on fakes alone named in `FAKE_SIDE_PENALTIES` (R2), which get
the fakes' labels.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gax import checks, noise
from gax import conv as conv_lib
from gax.losses import GANLoss, auxiliary_classifier_loss
from gax.models.conditioning import CONDITIONING, D_TAKES_LABELS
from gax.penalties import Penalty
from gax.state import GANState, PlayerState, init_player
from gax.transforms import EmaParamsState

Array = jax.Array
Metrics = Dict[str, Array]


@dataclasses.dataclass(frozen=True)
class StepContext:
  """What a `Hook` may read about the step it runs in.

  Attributes:
    step: int32 scalar, the number of completed train steps (`GANState.step`).
    axis_name: the mapped axis under `pmap`, else `None`; hooks that draw per-example
      randomness or keep cross-batch state use it to act on the global batch.
    real_labels, fake_labels: for a conditional GAN, this device's int32 `[B]` classes of the
      step's real batch and of its fakes (as drawn, before any hook); `None` otherwise.
  """

  step: Array
  axis_name: Optional[str]
  real_labels: Optional[Array] = None
  fake_labels: Optional[Array] = None


@dataclasses.dataclass(frozen=True)
class DView:
  """What `Hook.d_objective` sees of a D update, inside D's differentiated loss.

  Attributes:
    real, fake: D's input batches after every hook's `d_inputs` (e.g. augmented).
    real_logits, fake_logits: D's adversarial logits of them (differentiable in D's params;
      `[B]`, or `[B / degree]` for a packed D).
    d: `(x, labels=None) -> logits`, D with the params being differentiated and the pre-step
      batch statistics (left unchanged), as the penalties run it.
    z: the latents the fakes were generated from, `[B, latent_dim]`.
    generate: `z -> images` with the step's generator (train mode, no gradient), for
      regularisers on perturbed latents (zCR).
    key: a PRNG key of this hook's own in this update (the same on every `pmap` device; draw
      per-example values with `gax.noise.draw_global`).
    real_labels, fake_labels: the batches' classes for a conditional GAN, else `None`.
  """

  real: Array
  fake: Array
  real_logits: Array
  fake_logits: Array
  d: Callable[..., Array]
  z: Array
  generate: Callable[[Array], Array]
  key: Array
  real_labels: Optional[Array] = None
  fake_labels: Optional[Array] = None


@dataclasses.dataclass(frozen=True)
class GView:
  """What `Hook.g_objective` sees of a G update, inside G's differentiated loss.

  Attributes:
    z: the step's latents `[B, latent_dim]`.
    generated: G(z) as G made it, before any hook's `g_inputs`.
    fake: G(z) as D sees it (after every hook's `g_inputs`), differentiable in G's params.
    fake_logits: D's logits of `fake`; real_logits: of the real batch when the loss needs
      them, else `None`.
    generate: `z -> images`, G in train mode with the params being differentiated (before
      any `g_inputs`), for regularisers on perturbed latents (zCR).
    d: `(x, labels=None) -> logits`, D as the G step scores with it.
    key: a PRNG key of this hook's own in this update (as `DView.key`).
    fake_labels: the fakes' classes for a conditional GAN, else `None`.
  """

  z: Array
  generated: Array
  fake: Array
  fake_logits: Array
  real_logits: Optional[Array]
  generate: Callable[[Array], Array]
  d: Callable[..., Array]
  key: Array
  fake_labels: Optional[Array] = None


class Hook:
  """A trick that acts inside the train step, on state of its own.

  The step calls every hook of `GAN.hooks` at fixed points, in order; the defaults do
  nothing, so a hook overrides only what its trick changes. A hook's state lives in
  `GANState.tricks[hook.name]` (`init` returning `None` means no entry) and is passed to
  each method as `st`. `gax.tricks` holds the hooks the config can switch on (spectral
  normalisation, instance noise, experience replay, checkpoint swapping, feature matching,
  top-k, DiffAugment, ADA, LeCam, consistency regularisation).
  """

  name: str = "hook"
  # Names of the metrics this hook emits that are snapshots of its state (ADA's p), which
  # `gax.loop.fit` logs at their newest value rather than averaged since the last log.
  state_metrics = ()

  def init(self, key: Array, state: GANState, data_shape: Tuple[int, ...]) -> Any:
    """The hook's initial state, from the freshly initialised players (`state.tricks` empty)."""
    del key, state, data_shape
    return None

  def generator_for_d(self, st: Any, g_params: Any, ctx: StepContext) -> Any:
    """The generator params the D step draws its fakes from."""
    del st, ctx
    return g_params

  def discriminator_for_g(self, st: Any, d_params: Any, ctx: StepContext) -> Any:
    """The discriminator params the G step is scored by (before `d_params`)."""
    del st, ctx
    return d_params

  def d_params(self, st: Any, params: Any, update: bool) -> Tuple[Any, Any]:
    """A differentiable transform of D's params applied wherever D runs; `update` is True
    in the D step, whose returned state is kept, and False in the G step."""
    del update
    return params, st

  def d_inputs(self, st: Any, real: Array, fake: Array, key: Array,
               ctx: StepContext) -> Tuple[Array, Array, Any]:
    """D's real and fake input batches in the D step (fakes carry no gradient here)."""
    del key, ctx
    return real, fake, st

  def d_inputs_with_labels(
      self, st: Any, real: Array, fake: Array, real_labels: Optional[Array],
      fake_labels: Optional[Array], key: Array,
      ctx: StepContext) -> Tuple[Array, Array, Optional[Array], Optional[Array], Any]:
    """`d_inputs` with the batches' labels (`None` for an unconditional GAN); this is what
    the D step calls. The default runs `d_inputs` and keeps the labels: a hook that replaces
    or reorders examples (experience replay) must override it to move the labels along."""
    real, fake, st = self.d_inputs(st, real, fake, key, ctx)
    return real, fake, real_labels, fake_labels, st

  def g_inputs(self, st: Any, real: Array, fake: Array, key: Array,
               ctx: StepContext) -> Tuple[Array, Array]:
    """D's inputs in the G step (differentiable in `fake`)."""
    del st, key, ctx
    return real, fake

  def g_fake_weights(self, st: Any, fake_logits: Array, ctx: StepContext) -> Optional[Array]:
    """Weights, shaped like `fake_logits`, of this device's fakes in G's loss, or `None` to
    leave the loss alone. With weights G minimises the weighted mean of the per-example
    loss over the global batch (`weighted_g_loss`); several hooks' weights multiply."""
    del st, fake_logits, ctx
    return None

  def g_loss(self, st: Any, loss: Array, features: Callable[..., Array], real: Array,
             fake: Array, ctx: StepContext) -> Tuple[Array, Metrics]:
    """G's loss and extra metrics; `features(x, labels=None)` is D's last hidden activation
    `[B, F]` (a "concat" or "projection" D needs the labels: `ctx.real_labels` /
    `ctx.fake_labels`)."""
    del st, features, real, fake, ctx
    return loss, {}

  def d_objective(self, st: Any, loss: Array, view: DView,
                  ctx: StepContext) -> Tuple[Array, Metrics, Any]:
    """D's loss with this hook's terms added (after the loss and the penalties), metrics
    from the D side (averaged over the critic's updates and devices, like D's), and the
    hook's new state, e.g. moving averages of `view.real_logits` (LeCam) or the statistic an
    adaptive augmentation steers by (ADA). The state must not carry gradients: it is taken
    through `jax.lax.stop_gradient`."""
    del view, ctx
    return loss, {}, st

  def g_objective(self, st: Any, loss: Array, view: GView,
                  ctx: StepContext) -> Tuple[Array, Metrics]:
    """G's loss with this hook's terms added (after `g_loss`), and metrics from the G side."""
    del st, view, ctx
    return loss, {}

  def after_step(self, st: Any, state: GANState, ctx: StepContext) -> Any:
    """The hook's state after the whole train step (`state` holds the updated players)."""
    del state, ctx
    return st


@dataclasses.dataclass(frozen=True)
class GAN:
  """The static description of a GAN: networks, loss, optimizers and step structure.

  Nothing here changes during training; everything that does lives in `GANState`.

  Attributes:
    generator: Flax module `(z [B, latent_dim], train, labels=None) -> x [B, *data_shape]`
      (`labels` only given to a conditional G).
    discriminator: Flax module `(x [B, *data_shape], train, labels=None) -> logits [B]`
      (`labels` only given with "concat" and "projection"); with "auxiliary" it returns
      `(logits [B], class_logits [B, num_classes])`.
    loss: the adversarial loss pair.
    g_tx, d_tx: the players' optax transformations.
    latent_dim: size of z.
    latent: sampler `(key, shape) -> z`.
    n_critic: discriminator updates per generator update (WGAN uses 5).
    axis_name: the `pmap` axis to average over; `None` for a single device or `jit` with
      shardings (where XLA inserts the collectives itself).
    d_penalties: `(name, weight, fn)` triples added to D's loss as `weight * fn(d_apply,
      real, fake, key)`, e.g. WGAN-GP or R1 from `gax.penalties`; `d_apply` runs D in train
      mode with the parameters being differentiated.
    hooks: `Hook`s with unique names, called in order at the step's fixed points.
    num_classes: number of classes of the labels; 0 for an unconditional GAN.
    conditioning: "none" | "concat" (cGAN) | "auxiliary" (AC-GAN) | "projection" (projection
      D, conditional batch norm in G); see the module docstring.
      Must match the networks' own `num_classes` / `conditioning` where they have them.
    aux_weight: AC-GAN's weight of the class loss in both players' losses.
  """

  generator: nn.Module
  discriminator: nn.Module
  loss: GANLoss
  g_tx: optax.GradientTransformation
  d_tx: optax.GradientTransformation
  latent_dim: int
  latent: noise.LatentSampler = noise.gaussian
  n_critic: int = 1
  axis_name: Optional[str] = None
  d_penalties: Tuple[Tuple[str, float, Penalty], ...] = ()
  hooks: Tuple[Hook, ...] = ()
  num_classes: int = 0
  conditioning: str = "none"
  aux_weight: float = 1.0

  def __post_init__(self):
    checks.integer(self.n_critic, "n_critic")
    checks.integer(self.latent_dim, "latent_dim")
    names = [h.name for h in self.hooks]
    if len(set(names)) != len(names):
      raise ValueError(f"Hook names must be unique, got {names}.")
    if self.conditioning not in CONDITIONING:
      raise ValueError(f"Unknown conditioning {self.conditioning!r}; allowed: {CONDITIONING}.")
    if (self.conditioning == "none") != (self.num_classes == 0) or self.num_classes < 0:
      raise ValueError(f"conditioning={self.conditioning!r} with num_classes={self.num_classes}: "
                       "an unconditional GAN has num_classes 0, a conditional one >= 1.")
    if not self.aux_weight >= 0:
      raise ValueError(f"aux_weight must be >= 0, got {self.aux_weight!r}.")
    for role, module in (("generator", self.generator), ("discriminator", self.discriminator)):
      theirs = (getattr(module, "conditioning", self.conditioning),
                getattr(module, "num_classes", self.num_classes))
      if theirs != (self.conditioning, self.num_classes):
        raise ValueError(
            f"The {role} was built with conditioning={theirs[0]!r}, num_classes={theirs[1]} "
            f"but the GAN has conditioning={self.conditioning!r}, num_classes="
            f"{self.num_classes}.")

  @property
  def conditional(self) -> bool:
    """Whether G (and, for "concat" and "projection", D) take class labels."""
    return self.conditioning != "none"


# fold_in offsets of the step's random streams: the latent batch uses the step key itself and
# penalty i uses fold_in(key, i + 1), as before hooks existed, so those draws are unchanged.
_G_RNG, _LOSS_RNG, _HOOK_RNG, _LABEL_RNG, _OBJECTIVE_RNG = 1_000, 2_000, 3_000, 4_000, 5_000

# Penalties evaluated on fakes alone, which a D that takes labels ("concat", "projection")
# scores with the fakes' labels.
FAKE_SIDE_PENALTIES = frozenset({"r2"})


def apply_model(module: nn.Module, params: Any, model_state: Any, x: Array, train: bool,
                key: Optional[Array] = None, labels: Optional[Array] = None) -> Tuple[Any, Any]:
  """Runs a Flax module; returns `(output, new_model_state)`.

  In train mode every non-`params` collection is mutable and its update returned; in eval
  mode `model_state` is returned unchanged. `key`, when given, feeds the module's `dropout`
  and `noise` RNG streams (generator dropout and noise layers). `labels`, when given, are
  passed as the module's `labels` argument (conditional networks).
  """
  variables = {"params": params, **model_state}
  kwargs = {} if labels is None else {"labels": labels}
  if key is not None:
    kwargs["rngs"] = {"dropout": jax.random.fold_in(key, 0), "noise": jax.random.fold_in(key, 1)}
  if train and model_state:
    return module.apply(variables, x, train=True, mutable=list(model_state), **kwargs)
  return module.apply(variables, x, train=train, **kwargs), model_state


def to_model_input(x: Array) -> Array:
  """uint8 images in [0, 255] -> float32 in [-1, 1]; float inputs pass through as float32."""
  if x.dtype == jnp.uint8:
    return x.astype(jnp.float32) * (2.0 / 255.0) - 1.0
  return x.astype(jnp.float32)


def sample_latent(gan: GAN, key: Array, batch_size: int) -> Array:
  """Draws this device's `[batch_size, latent_dim]` slice of a global latent batch
  (`gax.noise.draw_global`: the result does not depend on how the batch is split across
  devices)."""
  return noise.draw_global(gan.latent, key, (batch_size, gan.latent_dim), gan.axis_name)


def sample_labels(gan: GAN, key: Array, batch_size: int) -> Array:
  """This device's int32 `[batch_size]` slice of global fake labels, uniform over the
  `gan.num_classes` classes (`gax.noise.draw_global`)."""
  if not gan.conditional:
    raise ValueError("sample_labels needs a conditional GAN (num_classes > 0).")
  draw = lambda k, shape: jax.random.randint(k, shape, 0, gan.num_classes, jnp.int32)
  return noise.draw_global(draw, key, (batch_size,), gan.axis_name)


def _check_labels(gan: GAN, labels: Optional[Array], batch: int, where: str) -> None:
  """Labels are given to a conditional GAN (int `[batch]`) and to no other."""
  if not gan.conditional:
    if labels is not None:
      raise ValueError(f"{where}: labels were given but the GAN is unconditional "
                       "(conditioning='none').")
    return
  if labels is None:
    need = ("labels, int [B] classes, one per latent" if where == "generate" else
            "the real batch's labels: train on a source with data.labels=True, whose batches "
            "are {'x': examples, 'y': labels}")
    raise ValueError(f"{where}: the GAN is conditional (conditioning={gan.conditioning!r}) and "
                     f"needs {need}.")
  if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer) or labels.shape != (batch,):
    raise ValueError(f"{where}: labels must be integer classes of shape ({batch},), got "
                     f"{jnp.asarray(labels).dtype} {labels.shape}.")


def _d_labels(gan: GAN, labels: Optional[Array]) -> Optional[Array]:
  """The labels D itself takes: the given ones for "concat" and "projection", none
  otherwise."""
  return labels if gan.conditioning in D_TAKES_LABELS else None


def _d_out(gan: GAN, out: Any) -> Tuple[Array, Optional[Array]]:
  """D's output as `(logits [B], class_logits [B, K] or None)`."""
  if gan.conditioning != "auxiliary":
    return out, None
  if not (isinstance(out, (tuple, list)) and len(out) == 2):
    raise ValueError(f"With conditioning='auxiliary' the discriminator must return (logits, "
                     f"class_logits); {type(gan.discriminator).__name__} returned "
                     f"{type(out).__name__}.")
  return out[0], out[1]


def _accuracy(class_logits: Array, labels: Array) -> Array:
  return jnp.mean((jnp.argmax(class_logits, axis=-1) == labels).astype(jnp.float32))


def _pmean(gan: GAN, tree: Any) -> Any:
  return tree if gan.axis_name is None else jax.lax.pmean(tree, gan.axis_name)


def _update(gan: GAN, tx: optax.GradientTransformation, player: PlayerState, grads: Any,
            model_state: Any) -> PlayerState:
  updates, opt_state = tx.update(grads, player.opt_state, player.params)
  return PlayerState(params=optax.apply_updates(player.params, updates),
                     model_state=model_state, opt_state=opt_state)


def _check_fake_matches_real(fake: Array, real: Array) -> None:
  if fake.shape != real.shape:
    raise ValueError(
        f"Generator output {fake.shape} does not match the real batch {real.shape}: the "
        "model was built for different data (check data.image_size / channels).")


def generate(gan: GAN, g: PlayerState, z: Array, labels: Optional[Array] = None, *,
             train: bool = False, key: Optional[Array] = None) -> Array:
  """G(z) (or G(z, labels) for a conditional GAN, which needs int `[B]` labels) with the
  generator's params; eval mode (running batch statistics) by default.

  `key` feeds G's dropout/noise layers; a generator with dropout needs one even in eval mode
  (ganhacks 17: dropout at sample time).
  """
  _check_labels(gan, labels, z.shape[0], "generate")
  return apply_model(gan.generator, g.params, g.model_state, z, train, key, labels)[0]


def generate_indexed(gan: GAN, g: PlayerState, key: Array, start: Array,
                     batch_size: int) -> Array:
  """Samples `start ... start + batch_size - 1` of G's indexed stream, with the sampling
  params (`sampling_player`) in eval mode: sample i from latent `gan.latent(fold_in(key_z,
  i))` and, for a conditional GAN, class `i mod num_classes`, so a sample does not depend on
  the batch it is drawn in (G's dropout/noise layers aside, keyed per batch)."""
  key_z, key_g = jax.random.split(key)
  idx = start + jnp.arange(batch_size)
  z = jax.vmap(lambda i: gan.latent(jax.random.fold_in(key_z, i), (gan.latent_dim,)))(idx)
  y = (idx % gan.num_classes).astype(jnp.int32) if gan.conditional else None
  return generate(gan, sampling_player(g), z, y, key=jax.random.fold_in(key_g, start))


def sampling_params(g: PlayerState) -> Any:
  """The params to sample with: the moving average of `gax.transforms.ema_params` when G's
  optimizer keeps one (the `g_ema` trick), else the trained params."""
  is_ema = lambda x: isinstance(x, EmaParamsState)
  found = [s for s in jax.tree_util.tree_leaves(g.opt_state, is_leaf=is_ema) if is_ema(s)]
  if len(found) > 1:
    raise ValueError(f"G's optimizer keeps {len(found)} EMAs of its params; which one to "
                     "sample with is ambiguous.")
  return found[0].ema if found else g.params


def sampling_player(g: PlayerState) -> PlayerState:
  """`g` with `sampling_params(g)` as its params, for `generate`."""
  return g.replace(params=sampling_params(g))


BATCH_STATS = "batch_stats"
# `fold_in` data of the key that standing statistics draw from, apart from the samples' keys.
STANDING_STATS_STREAM = 0x57A7


def standing_statistics(gan: GAN, g: PlayerState, key: Array, num_batches: int = 16,
                        batch_size: int = 100, params: Any = None) -> Any:
  """G's `model_state` with its batch norms' running statistics recomputed for `params`
  (default: the sampling params, `sampling_params(g)`): "standing statistics" (Brock et al.
  2019, BigGAN, appendix C.1).

  The running statistics a batch-norm G keeps in training follow its trained params; the
  moving average of those params that `g_ema` samples with normalises differently, so in
  eval mode it is fed statistics of another network. Here G runs in train mode on
  `num_batches` batches of `batch_size` latents (and classes `i mod num_classes` for a
  conditional G), and each running mean and variance becomes the average over the batches
  of that batch's own statistic (later layers see earlier layers normalised by the batch,
  as in training). With one batch, eval mode on the result reproduces train mode on that
  batch.

  Flax keeps the running statistics as `m * old + (1 - m) * batch`; each batch runs from
  running statistics of 0 and of 1, which gives `(1 - m) * batch` and `m`, so any momentum
  works. Every other collection in `model_state` is returned unchanged.

  Raises:
    ValueError: G keeps no `batch_stats`, a collection that is not updated as a running
      average, or bad `num_batches` / `batch_size`.
  """
  checks.integer(num_batches, "num_batches", 1)
  checks.integer(batch_size, "batch_size", 2)
  state = dict(g.model_state) if isinstance(g.model_state, Mapping) else {}
  stats = state.get(BATCH_STATS)
  if not stats:
    raise ValueError("Standing statistics recompute a generator's batch norm statistics; "
                     f"this generator keeps none (its model_state has {sorted(state)}).")
  params = sampling_params(g) if params is None else params
  total = None
  for i in range(num_batches):
    batch, momentum = _standing_batch(gan, batch_size, params, state, key, jnp.int32(i))
    if i == 0:
      _check_running_average(momentum)
    total = batch if total is None else jax.tree.map(jnp.add, total, batch)
  return {**state, BATCH_STATS: jax.tree.map(lambda t: t / num_batches, total)}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _standing_batch(gan: GAN, batch_size: int, params: Any, state: Dict[str, Any], key: Array,
                    i: Array) -> Tuple[Any, Any]:
  """Batch i's own statistics for `standing_statistics`, and the momentum they were read
  with: G runs in train mode from running statistics of 0 and of 1. Compiled once per
  (gan, batch_size, shapes), not once per call."""
  k_z, k_g = jax.random.split(jax.random.fold_in(key, i))
  z = gan.latent(k_z, (batch_size, gan.latent_dim))
  y = ((jnp.arange(batch_size) % gan.num_classes).astype(jnp.int32)
       if gan.conditional else None)
  stats = state[BATCH_STATS]
  run = lambda start: apply_model(gan.generator, params, {**state, BATCH_STATS: start}, z,
                                  True, k_g, y)[1][BATCH_STATS]
  from_zeros = run(jax.tree.map(jnp.zeros_like, stats))
  from_ones = run(jax.tree.map(jnp.ones_like, stats))
  momentum = jax.tree.map(lambda a, b: b - a, from_zeros, from_ones)
  return jax.tree.map(lambda a, m: a / (1.0 - m), from_zeros, momentum), momentum


def _check_running_average(momentum: Any) -> None:
  """Raises unless every leaf of the `batch_stats` update read one momentum in [0, 1)."""
  for path, m in jax.tree_util.tree_leaves_with_path(momentum):
    m = jnp.asarray(m, jnp.float32)
    lo, hi = float(jnp.min(m)), float(jnp.max(m))
    if not (0.0 <= lo and hi < 1.0 and hi - lo < 1e-3):
      raise ValueError(f"{BATCH_STATS}{jax.tree_util.keystr(path)} is not updated as a running "
                       f"average m * old + (1 - m) * batch (momentum read as {lo:.4g} to "
                       f"{hi:.4g}); standing statistics cannot be computed for it.")


def standing_player(gan: GAN, g: PlayerState, key: Array, num_batches: int = 16,
                    batch_size: int = 100) -> PlayerState:
  """`g` with `standing_statistics` for its sampling params, drawn from a stream of `key`
  of their own (`STANDING_STATS_STREAM`), so that the same `key` can still draw samples."""
  stream = jax.random.fold_in(key, STANDING_STATS_STREAM)
  return g.replace(model_state=standing_statistics(gan, g, stream, num_batches, batch_size))


def _set(tricks: Dict[str, Any], name: str, st: Any) -> None:
  if st is not None:
    tricks[name] = st


def _transform_d_params(gan: GAN, tricks: Dict[str, Any], params: Any, update: bool):
  """D's params through every hook's `d_params`; returns `(params, new_tricks)`."""
  tricks = dict(tricks)
  for h in gan.hooks:
    params, st = h.d_params(tricks.get(h.name), params, update)
    _set(tricks, h.name, st)
  return params, tricks


def discriminator_logits(gan: GAN, state: GANState, x: Array,
                         labels: Optional[Array] = None) -> Array:
  """D's adversarial logits for `x [B, *data_shape]` in eval mode, with the params D scores
  with in its own step (every hook's `d_params`, e.g. spectral normalisation, applied
  without updating its state): `[B]`, or `[B / degree]` for a packed D. A "concat" or
  "projection" D needs the examples' `labels`."""
  _check_labels(gan, labels, x.shape[0], "discriminator_logits")
  params, _ = _transform_d_params(gan, state.tricks, state.d.params, update=False)
  out, _ = apply_model(gan.discriminator, params, state.d.model_state, to_model_input(x),
                       False, labels=_d_labels(gan, labels))
  return _d_out(gan, out)[0]


def d_features(gan: GAN, params: Any, model_state: Any, x: Array,
               labels: Optional[Array] = None) -> Array:
  """D's last hidden activation `[B, F]` (sown as `intermediates/features`), in train mode;
  a "concat" or "projection" D needs the examples' `labels` (other Ds ignore them)."""
  kwargs = {}
  if _d_labels(gan, labels) is not None:
    kwargs["labels"] = labels
  _, out = gan.discriminator.apply({"params": params, **model_state}, x, train=True,
                                   mutable=[*model_state, "intermediates"], **kwargs)
  try:
    return out["intermediates"]["features"][0]
  except KeyError:
    raise ValueError(f"{type(gan.discriminator).__name__} does not sow "
                     "'intermediates/features', which feature matching needs.") from None


def d_step(gan: GAN, state: GANState, real: Array, key: Array,
           real_labels: Optional[Array] = None) -> Tuple[GANState, Metrics]:
  """One discriminator update on a real batch `[B, *data_shape]` and B fresh fakes.

  A conditional GAN needs `real_labels`, int `[B]`; the fakes' labels are drawn here.
  """
  real = to_model_input(real)
  _check_labels(gan, real_labels, real.shape[0], "d_step")
  z = sample_latent(gan, key, real.shape[0])
  fake_labels = None
  if gan.conditional:
    fake_labels = sample_labels(gan, jax.random.fold_in(key, _LABEL_RNG), real.shape[0])
  ctx = StepContext(step=state.step, axis_name=gan.axis_name, real_labels=real_labels,
                    fake_labels=fake_labels)
  penalty_keys = [jax.random.fold_in(key, i + 1) for i in range(len(gan.d_penalties))]
  tricks = dict(state.tricks)
  g_params = state.g.params
  for h in gan.hooks:
    g_params = h.generator_for_d(tricks.get(h.name), g_params, ctx)
  g_key = noise.per_device_key(jax.random.fold_in(key, _G_RNG), gan.axis_name)
  g_of = lambda latents: jax.lax.stop_gradient(generate(
      gan, state.g.replace(params=g_params), latents, fake_labels, train=True, key=g_key))
  fake = g_of(z)
  _check_fake_matches_real(fake, real)
  for i, h in enumerate(gan.hooks):
    real, fake, real_labels, fake_labels, st = h.d_inputs_with_labels(
        tricks.get(h.name), real, fake, real_labels, fake_labels,
        jax.random.fold_in(key, _HOOK_RNG + i), ctx)
    _set(tricks, h.name, st)
  loss_args = (jax.random.fold_in(key, _LOSS_RNG),) if gan.loss.d_needs_key else ()
  d_real_labels, d_fake_labels = _d_labels(gan, real_labels), _d_labels(gan, fake_labels)

  def loss_fn(params):
    params, new_tricks = _transform_d_params(gan, tricks, params, update=True)
    real_out, ms = apply_model(gan.discriminator, params, state.d.model_state, real, True,
                               labels=d_real_labels)
    fake_out, ms = apply_model(gan.discriminator, params, ms, fake, True, labels=d_fake_labels)
    (real_logits, real_classes), (fake_logits, fake_classes) = (
        _d_out(gan, real_out), _d_out(gan, fake_out))
    loss = gan.loss.d(real_logits, fake_logits, *loss_args)
    extra = {}
    if gan.conditioning == "auxiliary":
      class_loss = (auxiliary_classifier_loss(real_classes, real_labels)
                    + auxiliary_classifier_loss(fake_classes, fake_labels))
      loss = loss + gan.aux_weight * class_loss
      extra = {"d_class_loss": class_loss,
               "d_class_accuracy_real": _accuracy(real_classes, real_labels),
               "d_class_accuracy_fake": _accuracy(fake_classes, fake_labels)}
    # Penalties see D with the pre-step statistics and leave them unchanged.
    d_apply = lambda labels: lambda x: _d_out(gan, apply_model(
        gan.discriminator, params, state.d.model_state, x, True, labels=labels)[0])[0]
    for (name, weight, fn), k in zip(gan.d_penalties, penalty_keys):
      labels = d_fake_labels if name in FAKE_SIDE_PENALTIES else d_real_labels
      value = fn(d_apply(labels), real, fake, k)
      extra[f"d_penalty_{name}"] = value
      loss = loss + weight * value
    if gan.hooks:
      view = DView(real=real, fake=fake, real_logits=real_logits, fake_logits=fake_logits,
                   d=lambda x, labels=None: d_apply(_d_labels(gan, labels))(x), z=z,
                   generate=g_of, key=key, real_labels=real_labels, fake_labels=fake_labels)
      for i, h in enumerate(gan.hooks):
        hook_view = dataclasses.replace(view, key=jax.random.fold_in(key, _OBJECTIVE_RNG + i))
        loss, m, st = h.d_objective(new_tricks.get(h.name), loss, hook_view, ctx)
        _set(new_tricks, h.name, jax.lax.stop_gradient(st))
        extra.update(m)
    return loss, (ms, real_logits, fake_logits, extra, new_tricks)

  (loss, (ms, real_logits, fake_logits, extra, tricks)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.d.params)
  grads = _pmean(gan, grads)
  metrics = _pmean(gan, {
      "d_loss": loss,
      "d_real_logit": jnp.mean(real_logits),
      "d_fake_logit": jnp.mean(fake_logits),
      "d_grad_norm": optax.tree.norm(grads),
      **extra,
  })
  new_d = _update(gan, gan.d_tx, state.d, grads, ms)
  return state.replace(d=new_d, tricks=tricks), metrics


def weighted_g_loss(gan: GAN, fake_logits: Array, weights: Array) -> Array:
  """This device's share of G's loss as a weighted mean over the global batch,
  `sum_i w_i l_i / sum_i w_i` with `l_i = gan.loss.g` of fake i alone.

  Under `pmap` the sums run over every device (the step averages the devices' gradients, so
  each device returns `num_devices * (its sum) / (global weight)`); one device or many give
  the same gradient. The loss must be a mean of per-example terms: the relativistic losses,
  which compare each fake with the real batch's mean, have no per-example form here.
  """
  if gan.loss.g_needs_real:
    raise ValueError("Per-example weights of G's loss (top_k) need a loss that is a mean of "
                     "per-example terms; this loss also reads D's real logits.")
  if weights.shape != fake_logits.shape:
    raise ValueError(f"G loss weights have shape {weights.shape}; the fake logits have "
                     f"{fake_logits.shape}.")
  flat = jnp.reshape(fake_logits, (-1, 1))
  per_example = jax.vmap(lambda l: gan.loss.g(l, None))(flat)
  w = jnp.reshape(weights, (-1,)).astype(jnp.float32)
  weighted, total, devices = jnp.sum(w * per_example), jnp.sum(w), 1.0
  if gan.axis_name is not None:
    total = jax.lax.psum(total, gan.axis_name)
    devices = jax.lax.psum(1.0, gan.axis_name)
  return devices * weighted / total


def g_step(gan: GAN, state: GANState, real: Array, key: Array,
           real_labels: Optional[Array] = None) -> Tuple[GANState, Metrics]:
  """One generator update with a batch of B fakes (B = `real.shape[0]`).

  `real` sets the batch size and feeds losses with `g_needs_real` and hooks (feature
  matching). A conditional GAN needs `real_labels`, int `[B]`; the fakes' labels are drawn
  here.
  """
  real = to_model_input(real)
  _check_labels(gan, real_labels, real.shape[0], "g_step")
  z = sample_latent(gan, key, real.shape[0])
  fake_labels = None
  if gan.conditional:
    fake_labels = sample_labels(gan, jax.random.fold_in(key, _LABEL_RNG), real.shape[0])
  ctx = StepContext(step=state.step, axis_name=gan.axis_name, real_labels=real_labels,
                    fake_labels=fake_labels)
  d = state.d
  tricks = state.tricks
  d_params = d.params
  for h in gan.hooks:
    d_params = h.discriminator_for_g(tricks.get(h.name), d_params, ctx)
  d_params, _ = _transform_d_params(gan, tricks, d_params, update=False)
  g_key = noise.per_device_key(jax.random.fold_in(key, _G_RNG), gan.axis_name)
  d_of = lambda x, labels: _d_out(gan, apply_model(
      gan.discriminator, d_params, d.model_state, x, True, labels=_d_labels(gan, labels))[0])

  def loss_fn(params):
    g_of = lambda latents: apply_model(gan.generator, params, state.g.model_state, latents,
                                       True, g_key, labels=fake_labels)
    fake, g_ms = g_of(z)
    generated = fake
    _check_fake_matches_real(fake, real)
    real_in = real
    for i, h in enumerate(gan.hooks):
      real_in, fake = h.g_inputs(tricks.get(h.name), real_in, fake,
                                 jax.random.fold_in(key, _HOOK_RNG + i), ctx)
    real_logits = d_of(real_in, real_labels)[0] if gan.loss.g_needs_real else None
    fake_logits, fake_classes = d_of(fake, fake_labels)
    weights = None
    for h in gan.hooks:
      w = h.g_fake_weights(tricks.get(h.name), jax.lax.stop_gradient(fake_logits), ctx)
      if w is not None:
        weights = w if weights is None else weights * w
    if weights is None:
      loss = gan.loss.g(fake_logits, real_logits)
    else:
      loss = weighted_g_loss(gan, fake_logits, weights)
    features = lambda x, labels=None: d_features(gan, d_params, d.model_state, x, labels)
    metrics = {}
    for h in gan.hooks:
      loss, m = h.g_loss(tricks.get(h.name), loss, features, real_in, fake, ctx)
      metrics.update(m)
    if gan.hooks:
      view = GView(z=z, generated=generated, fake=fake, fake_logits=fake_logits,
                   real_logits=real_logits, generate=lambda latents: g_of(latents)[0],
                   d=lambda x, labels=None: d_of(x, labels)[0], key=key,
                   fake_labels=fake_labels)
      for i, h in enumerate(gan.hooks):
        hook_view = dataclasses.replace(view, key=jax.random.fold_in(key, _OBJECTIVE_RNG + i))
        loss, m = h.g_objective(tricks.get(h.name), loss, hook_view, ctx)
        metrics.update(m)
    if gan.conditioning == "auxiliary":
      class_loss = auxiliary_classifier_loss(fake_classes, fake_labels)
      loss = loss + gan.aux_weight * class_loss
      metrics["g_class_loss"] = class_loss
    return loss, (g_ms, metrics)

  (loss, (g_ms, hook_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g.params)
  grads = _pmean(gan, grads)
  metrics = _pmean(gan, {"g_loss": loss, "g_grad_norm": optax.tree.norm(grads), **hook_metrics})
  return state.replace(g=_update(gan, gan.g_tx, state.g, grads, g_ms)), metrics


def split_batch(batch: Any) -> Tuple[Array, Optional[Array]]:
  """`(examples, labels or None)` of a batch: an array, or `{"x": ..., "y": ...}`."""
  if isinstance(batch, Mapping):
    if set(batch) != {"x", "y"}:
      raise ValueError(f"A batch with labels must be a dict with the keys 'x' and 'y'; got "
                       f"{sorted(batch)}.")
    return batch["x"], batch["y"]
  return batch, None


def train_step(gan: GAN, state: GANState, batch: Any) -> Tuple[GANState, Metrics]:
  """`n_critic` D updates then one G update, fused into one program.

  Args:
    gan: the static GAN description.
    state: the current state.
    batch: real data `[n_critic, B, *data_shape]` (uint8 images or float vectors), or with
      labels `{"x": that, "y": int [n_critic, B]}`, which a conditional GAN needs (an
      unconditional one ignores the labels); D step i uses `batch[i]`, the G step uses
      `batch[-1]` where its loss needs real data.

  Returns:
    `(new_state, metrics)`: scalar metrics, D's averaged over its `n_critic` updates.
  """
  batch, labels = split_batch(batch)
  if batch.ndim < 2 or batch.shape[0] != gan.n_critic:
    raise ValueError(
        f"train_step expects a batch of shape [n_critic={gan.n_critic}, B, ...]; got "
        f"{batch.shape}.")
  if not gan.conditional:
    labels = None
  elif labels is None:
    raise ValueError(
        f"The GAN is conditional (conditioning={gan.conditioning!r}) but the batch has no "
        "labels: set data.labels=True so that batches are {'x': examples, 'y': labels}.")
  elif tuple(labels.shape) != tuple(batch.shape[:2]):
    raise ValueError(f"Labels of shape {tuple(labels.shape)} do not match the batch "
                     f"{tuple(batch.shape)}: expected [n_critic, B] = {tuple(batch.shape[:2])}.")
  key, d_key, g_key = jax.random.split(state.key, 3)
  # The critic loop is unrolled at trace time rather than a lax.scan: n_critic is small (1 or
  # 5), and XLA:CPU runs convolutions inside a while loop about 6x slower (measured: 350 ms
  # vs 55 ms for the digits DCGAN step), so a loop would slow every CPU run and test.
  d_metrics = []
  for i, (real, k) in enumerate(zip(batch, jax.random.split(d_key, gan.n_critic))):
    state, m = d_step(gan, state, real, k, None if labels is None else labels[i])
    d_metrics.append(m)
  d_metrics = jax.tree_util.tree_map(lambda *x: jnp.mean(jnp.stack(x)), *d_metrics)
  state, g_metrics = g_step(gan, state, batch[-1], g_key,
                            None if labels is None else labels[-1])
  ctx = StepContext(step=state.step, axis_name=gan.axis_name)
  tricks = dict(state.tricks)
  for h in gan.hooks:
    _set(tricks, h.name, h.after_step(tricks.get(h.name), state, ctx))
  return state.replace(step=state.step + 1, key=key, tricks=tricks), {**d_metrics, **g_metrics}


def jit_train_step(gan: GAN) -> Callable[[GANState, Any], Tuple[GANState, Metrics]]:
  """`train_step` bound to `gan`, jitted, with the input state's buffers donated."""
  return jax.jit(functools.partial(train_step, gan), donate_argnums=0,
                 compiler_options=conv_lib.compiler_options())


def init_state(gan: GAN, key: Array, data_shape: Tuple[int, ...]) -> GANState:
  """Initialises both players and the hooks' state; checks that G's output matches
  `data_shape`.

  Args:
    gan: the GAN description.
    key: a raw PRNG key (`jax.random.PRNGKey(seed)`).
    data_shape: the shape of one real example, e.g. `(16, 16, 1)` or `(2,)`.
  """
  g_key, d_key, key = jax.random.split(key, 3)
  labels = jnp.zeros((2,), jnp.int32) if gan.conditional else None
  g_kw = {} if labels is None else {"labels": labels}
  d_kw = {} if _d_labels(gan, labels) is None else {"labels": labels}
  # Eval mode at init: no batch statistics are computed, so no mapped axis is needed.
  g_vars = gan.generator.init(g_key, jnp.zeros((2, gan.latent_dim), jnp.float32), train=False,
                              **g_kw)
  out = jax.eval_shape(
      lambda v: apply_model(gan.generator, v["params"],
                            {k: x for k, x in v.items() if k != "params"},
                            jnp.zeros((2, gan.latent_dim)), False, g_key, labels)[0], g_vars)
  if tuple(out.shape[1:]) != tuple(data_shape):
    raise ValueError(
        f"The generator makes examples of shape {tuple(out.shape[1:])} but the data has "
        f"{tuple(data_shape)}.")
  d_vars = gan.discriminator.init(d_key, jnp.zeros((2, *data_shape), jnp.float32), train=False,
                                  **d_kw)
  if gan.conditioning == "auxiliary":
    d_out = jax.eval_shape(lambda v: gan.discriminator.apply(
        v, jnp.zeros((2, *data_shape), jnp.float32), train=False), d_vars)
    _, classes = _d_out(gan, d_out)
    if tuple(classes.shape) != (2, gan.num_classes):
      raise ValueError(f"The discriminator's class logits have shape {tuple(classes.shape)} "
                       f"for a batch of 2; expected (2, num_classes={gan.num_classes}).")
  state = GANState(
      step=jnp.zeros((), jnp.int32),
      g=init_player(g_vars, gan.g_tx),
      d=init_player(d_vars, gan.d_tx),
      tricks={},
      key=key,
  )
  tricks = {}
  for i, h in enumerate(gan.hooks):
    # Hook keys come from the data key's fold_in, leaving the players' initialisation and the
    # run's key stream as they are without hooks.
    _set(tricks, h.name, h.init(jax.random.fold_in(d_key, _HOOK_RNG + i), state, tuple(data_shape)))
  return state.replace(tricks=tricks)


__all__ = ["StepContext", "DView", "GView", "Hook", "GAN", "FAKE_SIDE_PENALTIES", "apply_model",
           "to_model_input", "sample_latent", "sample_labels", "generate", "generate_indexed",
           "sampling_params", "sampling_player", "standing_statistics", "standing_player",
           "STANDING_STATS_STREAM", "discriminator_logits", "d_features", "d_step",
           "weighted_g_loss", "g_step", "split_batch", "train_step", "jit_train_step",
           "init_state"]
