"""Adversarial losses as pure functions of discriminator logits, and auxiliary GAN losses.

Each loss is a pair: a discriminator loss `d(real_logits, fake_logits) -> scalar` (with a
third argument `key` when `d_needs_key`) and a generator loss `g(fake_logits, real_logits) ->
scalar`, both to be *minimised*. Logits are the raw, unbounded outputs of D with shape `[B]`
(or `[B, 1]`); `real_logits` passed to a generator loss is `None` unless the loss declares
`g_needs_real`.

Most losses are means over the batch of per-example terms, so under `pmap` the cross-replica
mean of the per-device losses equals the loss of the global batch. Losses that compare an
example with a *batch mean* (the relativistic average losses, feature matching) take an
`axis_name` and average over the global batch themselves. `LOSSES` therefore holds either a
`GANLoss` or a factory `axis_name -> GANLoss`; `get_loss(name, axis_name)` resolves both.

Label tricks for the cross-entropy discriminator loss (one-sided smoothing, soft labels, noisy
labels) wrap a `GANLoss`: see `with_labels`. The auxiliary losses at the end (feature matching,
the AC-GAN class loss, and the VAE-GAN reconstruction and KL terms) are plain functions for
steps that need them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable, NamedTuple, Optional, Tuple, Union

import chex
import jax
import jax.numpy as jnp

from gax import noise
from gax.registry import Registry

Array = jax.Array
DLoss = Callable[..., Array]
GLoss = Callable[[Array, Optional[Array]], Array]
# A label target: a fixed value, or a `(low, high)` range drawn from uniformly per example.
Target = Union[float, Tuple[float, float]]


class GANLoss(NamedTuple):
  """A discriminator loss and the generator loss that goes with it."""

  d: DLoss
  g: GLoss
  # The generator loss also reads D's logits on real data (relativistic losses); the
  # generator step then runs D on the real batch too.
  g_needs_real: bool = False
  # The discriminator loss is random (noisy or soft labels): it is called as
  # `d(real_logits, fake_logits, key)` with a fresh key at every D update.
  d_needs_key: bool = False


# An entry is a loss, or a factory `axis_name -> GANLoss` for losses that need the pmap axis.
LossEntry = Union[GANLoss, Callable[[Optional[str]], GANLoss]]
LOSSES: Registry[LossEntry] = Registry("loss")


def _flat(logits: Array) -> Array:
  chex.assert_rank(logits, {1, 2})
  if logits.ndim == 2:
    chex.assert_axis_dimension(logits, 1, 1)
  return jnp.reshape(logits, (-1,)).astype(jnp.float32)


def global_mean(x: Array, axis_name: Optional[str], axis: Optional[int] = None) -> Array:
  """Mean over `axis` (all axes by default) of the global batch: under `pmap` the mean of
  the per-device means, which is the global mean because every device holds as many rows."""
  m = jnp.mean(x, axis=axis)
  return m if axis_name is None else jax.lax.pmean(m, axis_name)


# log D(x) = -softplus(-l) and log(1 - D(x)) = -softplus(l) for D(x) = sigmoid(l);
# softplus keeps both exact where sigmoid saturates.


def minimax_d_loss(real_logits: Array, fake_logits: Array) -> Array:
  """-E[log D(x)] - E[log(1 - D(G(z)))] (Goodfellow et al. 2014, eq. 1)."""
  return jnp.mean(jax.nn.softplus(-_flat(real_logits))) + jnp.mean(
      jax.nn.softplus(_flat(fake_logits)))


def minimax_g_loss(fake_logits: Array, real_logits: Optional[Array] = None) -> Array:
  """E[log(1 - D(G(z)))]: the saturating generator loss of the original minimax game."""
  del real_logits
  return -jnp.mean(jax.nn.softplus(_flat(fake_logits)))


def non_saturating_g_loss(fake_logits: Array, real_logits: Optional[Array] = None) -> Array:
  """-E[log D(G(z))] (Goodfellow et al. 2014, sec. 3; ganhacks 2: flip labels for G)."""
  del real_logits
  return jnp.mean(jax.nn.softplus(-_flat(fake_logits)))


def wasserstein_d_loss(real_logits: Array, fake_logits: Array) -> Array:
  """E[D(G(z))] - E[D(x)]: the WGAN critic loss (Arjovsky et al. 2017, alg. 1)."""
  return jnp.mean(_flat(fake_logits)) - jnp.mean(_flat(real_logits))


def wasserstein_g_loss(fake_logits: Array, real_logits: Optional[Array] = None) -> Array:
  """-E[D(G(z))] (Arjovsky et al. 2017); also the hinge generator loss."""
  del real_logits
  return -jnp.mean(_flat(fake_logits))


def hinge_d_loss(real_logits: Array, fake_logits: Array) -> Array:
  """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018)."""
  return jnp.mean(jax.nn.relu(1.0 - _flat(real_logits))) + jnp.mean(
      jax.nn.relu(1.0 + _flat(fake_logits)))


def least_squares_d_loss(real_logits: Array, fake_logits: Array) -> Array:
  """1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]: LSGAN with a=0, b=1 (Mao et al. 2017, eq. 2)."""
  return 0.5 * jnp.mean(jnp.square(_flat(real_logits) - 1.0)) + 0.5 * jnp.mean(
      jnp.square(_flat(fake_logits)))


def least_squares_g_loss(fake_logits: Array, real_logits: Optional[Array] = None) -> Array:
  """1/2 E[(D(G(z)) - 1)^2]: LSGAN with c=1 (Mao et al. 2017, eq. 2)."""
  del real_logits
  return 0.5 * jnp.mean(jnp.square(_flat(fake_logits) - 1.0))


LOSSES.register("minimax", GANLoss(d=minimax_d_loss, g=minimax_g_loss))
LOSSES.register("non_saturating", GANLoss(d=minimax_d_loss, g=non_saturating_g_loss))
LOSSES.register("wasserstein", GANLoss(d=wasserstein_d_loss, g=wasserstein_g_loss))
LOSSES.register("hinge", GANLoss(d=hinge_d_loss, g=wasserstein_g_loss))
LOSSES.register("least_squares", GANLoss(d=least_squares_d_loss, g=least_squares_g_loss))

# ------------------------------------------------------------------------------------------
# Label tricks for the cross-entropy discriminator loss.
# ------------------------------------------------------------------------------------------


def binary_cross_entropy_with_logits(logits: Array, targets: Array) -> Array:
  """E_b[-t_b log sigmoid(l_b) - (1 - t_b) log(1 - sigmoid(l_b))] for soft targets t.

  Equal to `softplus(l) - t * l` per example, computed as `t * softplus(-l) + (1 - t) *
  softplus(l)`, which is exact for t = 0 and t = 1 however saturated the logits (the
  difference form loses the small term to cancellation). Targets outside [0, 1] (soft labels
  up to 1.2) are allowed; the loss is then no longer bounded below in l.

  Args:
    logits: `[B]` or `[B, 1]` discriminator logits.
    targets: `[B]` targets (or a scalar, broadcast).
  """
  l = _flat(logits)
  t = jnp.broadcast_to(jnp.asarray(targets, jnp.float32), l.shape)
  return jnp.mean(t * jax.nn.softplus(-l) + (1.0 - t) * jax.nn.softplus(l))


def _as_target(value: object, what: str) -> Optional[Target]:
  """Normalises a target to a float or a `(low, high)` float pair, or raises."""
  if value is None:
    return None
  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    if not math.isfinite(value):
      raise ValueError(f"The {what} target must be finite, got {value!r}.")
    return float(value)
  if isinstance(value, (tuple, list)) and len(value) == 2 and all(
      isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
      raise ValueError(
          f"The {what} target range must be finite with low < high, got {tuple(value)!r} "
          "(use a single number for a fixed target).")
    return (low, high)
  raise TypeError(
      f"The {what} target must be a number or a (low, high) pair of numbers, got {value!r}.")


def _bounds(target: Target) -> Tuple[float, float]:
  return target if isinstance(target, tuple) else (target, target)


@dataclasses.dataclass(frozen=True)
class LabelledCrossEntropy:
  """The cross-entropy discriminator loss with configurable label targets.

  `E_x[BCE(D(x), t_real)] + E_z[BCE(D(G(z)), t_fake)]` on logits (see
  `binary_cross_entropy_with_logits`). With the defaults (`real=1`, `fake=0`, no flips) this
  is `minimax_d_loss`. Build it with `with_labels` rather than directly.

  Attributes:
    real: the target of real examples: a number, or a `(low, high)` range from which each
      example's target is drawn uniformly; `None` means 1 (not set by any label trick).
    fake: the same for generated examples; `None` means 0.
    flip_prob: each example's label is flipped with this probability, i.e. a flipped real
      example is given the fake target (drawn as for a fake) and vice versa; `None` means 0.
    axis_name: the `pmap` axis; random targets are drawn with `gax.noise.draw_global`, so
      N devices with batch B draw the targets one device with batch N * B draws.
  """

  real: Optional[Target] = None
  fake: Optional[Target] = None
  flip_prob: Optional[float] = None
  axis_name: Optional[str] = None

  def __post_init__(self):
    object.__setattr__(self, "real", _as_target(self.real, "real"))
    object.__setattr__(self, "fake", _as_target(self.fake, "fake"))
    p = self.flip_prob
    if p is not None:
      if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 0.5:
        raise ValueError(
            f"flip_prob must be a probability with 0 <= flip_prob < 0.5, got {p!r} (at 0.5 "
            "the labels carry no information, above it they are inverted).")
      object.__setattr__(self, "flip_prob", float(p))
    if self.axis_name is not None and not isinstance(self.axis_name, str):
      raise TypeError(f"axis_name must be a string or None, got {self.axis_name!r}.")
    real_low = _bounds(self.real_target)[0]
    fake_high = _bounds(self.fake_target)[1]
    if not real_low > fake_high:
      raise ValueError(
          f"Every real target must exceed every fake target, but real={self.real_target!r} "
          f"and fake={self.fake_target!r} overlap.")

  @property
  def real_target(self) -> Target:
    return 1.0 if self.real is None else self.real

  @property
  def fake_target(self) -> Target:
    return 0.0 if self.fake is None else self.fake

  @property
  def is_random(self) -> bool:
    """Whether the targets are drawn at random (the loss then needs a key)."""
    return (isinstance(self.real_target, tuple) or isinstance(self.fake_target, tuple) or
            bool(self.flip_prob))

  def _draw(self, target: Target, key: Array, n: int) -> Array:
    if isinstance(target, tuple):
      low, high = target
      sampler = lambda k, s: jax.random.uniform(k, s, jnp.float32, low, high)
      return noise.draw_global(sampler, key, (n,), self.axis_name)
    return jnp.full((n,), target, jnp.float32)

  def _targets_for(self, key: Optional[Array], n: int, own: Target, other: Target) -> Array:
    if key is None:
      return self._draw(own, key, n)
    k_own, k_other, k_flip = jax.random.split(key, 3)
    t = self._draw(own, k_own, n)
    if self.flip_prob:
      p = self.flip_prob
      flip = noise.draw_global(lambda k, s: jax.random.bernoulli(k, p, s), k_flip, (n,),
                               self.axis_name)
      t = jnp.where(flip, self._draw(other, k_other, n), t)
    return t

  def targets(self, key: Optional[Array], n_real: int, n_fake: int) -> Tuple[Array, Array]:
    """This device's `([n_real], [n_fake])` targets for the real and the generated batch.

    Args:
      key: a PRNG key, identical on every device under `pmap`; may be `None` only when
        `is_random` is false.
      n_real, n_fake: this device's batch sizes.
    """
    if key is None and self.is_random:
      raise ValueError(
          f"These labels are random ({self}) and need a PRNG key: call "
          "d(real_logits, fake_logits, key) (GANLoss.d_needs_key is True).")
    k_real, k_fake = (None, None) if key is None else jax.random.split(key)
    return (self._targets_for(k_real, n_real, self.real_target, self.fake_target),
            self._targets_for(k_fake, n_fake, self.fake_target, self.real_target))

  def __call__(self, real_logits: Array, fake_logits: Array,
               key: Optional[Array] = None) -> Array:
    r, f = _flat(real_logits), _flat(fake_logits)
    t_real, t_fake = self.targets(key, r.shape[0], f.shape[0])
    return binary_cross_entropy_with_logits(r, t_real) + binary_cross_entropy_with_logits(
        f, t_fake)


def _cross_entropy_names() -> list[str]:
  return [n for n in LOSSES.names()
          if isinstance(LOSSES.get(n), GANLoss) and LOSSES.get(n).d is minimax_d_loss]


def with_labels(loss: GANLoss, *, real: Optional[Target] = None,
                fake: Optional[Target] = None, flip_prob: Optional[float] = None,
                axis_name: Optional[str] = None) -> GANLoss:
  """`loss` with its cross-entropy discriminator loss trained on other label targets.

  The discriminator loss becomes `E_x[BCE(D(x), t_real)] + E_z[BCE(D(G(z)), t_fake)]` with
  BCE on logits and soft targets (`binary_cross_entropy_with_logits`); the generator loss is
  unchanged. Wrappers compose: each of `real`, `fake` and `flip_prob` may be set by one of
  them, e.g. `noisy_labels(one_sided_label_smoothing(loss), 0.05)`.

  Args:
    loss: a loss whose discriminator loss is the cross-entropy one ('minimax',
      'non_saturating', or one already wrapped here).
    real: the target of real examples: a number (0.9 is one-sided label smoothing, Salimans
      et al. 2016, sec. 3.4) or a `(low, high)` range drawn from uniformly per example (soft
      labels, ganhacks 6: (0.7, 1.2)). Unset: 1.
    fake: the same for generated examples (soft labels: (0.0, 0.3)). Unset: 0.
    flip_prob: probability with which each example's label is flipped: a real example is
      then trained towards the fake target and vice versa (noisy labels, ganhacks 6); must
      be in [0, 0.5). Unset: 0.
    axis_name: the `pmap` axis: random targets are drawn over the global batch with
      `gax.noise.draw_global`, so they do not depend on how the batch is split.

  Returns:
    The wrapped `GANLoss`; `d_needs_key` is true when any target is random, and its `d` is
    then called as `d(real_logits, fake_logits, key)`.

  Raises:
    ValueError: when the discriminator loss is not the cross-entropy one, when a label is set
      twice, when targets overlap (every real target must exceed every fake one) or a
      probability is out of range.
  """
  if not isinstance(loss, GANLoss):
    raise TypeError(f"with_labels wraps a GANLoss (see get_loss), got {type(loss).__name__}.")
  if isinstance(loss.d, LabelledCrossEntropy):
    base = loss.d
  elif loss.d is minimax_d_loss:
    base = LabelledCrossEntropy()
  else:
    d_name = getattr(loss.d, "__name__", type(loss.d).__name__)
    raise ValueError(
        "Label tricks (label smoothing, soft and noisy labels) apply only to the cross-entropy "
        "discriminator loss -E[log D(x)] - E[log(1 - D(G(z)))], used by the losses "
        f"{', '.join(map(repr, _cross_entropy_names()))}; this loss's discriminator loss is "
        f"{d_name}.")
  updates = {}
  for field, value in (("real", real), ("fake", fake), ("flip_prob", flip_prob)):
    if value is None:
      continue
    if getattr(base, field) is not None:
      raise ValueError(
          f"The {field} label is already set to {getattr(base, field)!r} by an inner label "
          f"trick; cannot set it again to {value!r}.")
    updates[field] = value
  if axis_name is not None:
    if base.axis_name not in (None, axis_name):
      raise ValueError(f"An inner label trick uses axis_name={base.axis_name!r}; cannot "
                       f"combine it with axis_name={axis_name!r}.")
    updates["axis_name"] = axis_name
  d = dataclasses.replace(base, **updates)
  return loss._replace(d=d, d_needs_key=d.is_random)


def one_sided_label_smoothing(loss: GANLoss, real: float = 0.9) -> GANLoss:
  """Real targets `real` < 1, fake targets left at 0 (Salimans et al. 2016, sec. 3.4).

  Smoothing only the real side keeps D's optimum from pulling fakes towards the data where
  the data density is small (the fake target would otherwise appear in D*'s numerator).
  """
  if isinstance(real, bool) or not isinstance(real, numbers.Real) or not 0.0 < real <= 1.0:
    raise ValueError(f"The smoothed real target must be a number in (0, 1], got {real!r}.")
  return with_labels(loss, real=real)


def soft_labels(loss: GANLoss, real: Tuple[float, float] = (0.7, 1.2),
                fake: Tuple[float, float] = (0.0, 0.3),
                axis_name: Optional[str] = None) -> GANLoss:
  """Per-example targets drawn uniformly from `real` and `fake` (ganhacks 6; cf. Salimans et
  al. 2016, sec. 3.4). Pass a number for a side to keep its target fixed."""
  return with_labels(loss, real=real, fake=fake, axis_name=axis_name)


def noisy_labels(loss: GANLoss, flip_prob: float = 0.05,
                 axis_name: Optional[str] = None) -> GANLoss:
  """Each example's label flipped with probability `flip_prob` in D's loss (ganhacks 6)."""
  return with_labels(loss, flip_prob=flip_prob, axis_name=axis_name)


# ------------------------------------------------------------------------------------------
# Relativistic average losses (Jolicoeur-Martineau 2018).
# ------------------------------------------------------------------------------------------


def _relativistic_average(name: str, f1: Callable[[Array], Array], f2: Callable[[Array], Array],
                          axis_name: Optional[str]) -> GANLoss:
  """The RaGAN pair for `f1` (applied where the example should look more real than the other
  side's average) and `f2` (less real), Jolicoeur-Martineau 2018, sec. 4.3:

    L_D = E_xr[f1(C(xr) - E_xf C(xf))] + E_xf[f2(C(xf) - E_xr C(xr))]
    L_G = E_xf[f1(C(xf) - E_xr C(xr))] + E_xr[f2(C(xr) - E_xf C(xf))]

  with C the critic's logits and every expectation over the global batch.
  """

  def relative(real_logits, fake_logits):
    r, f = _flat(real_logits), _flat(fake_logits)
    return r - global_mean(f, axis_name), f - global_mean(r, axis_name)

  def d_loss(real_logits: Array, fake_logits: Array) -> Array:
    r_rel, f_rel = relative(real_logits, fake_logits)
    return global_mean(f1(r_rel), axis_name) + global_mean(f2(f_rel), axis_name)

  def g_loss(fake_logits: Array, real_logits: Optional[Array] = None) -> Array:
    if real_logits is None:
      raise ValueError(
          f"The {name} generator loss compares fakes with the real batch and needs "
          "real_logits (the loss has g_needs_real=True: run D on the real batch in the G step).")
    r_rel, f_rel = relative(real_logits, fake_logits)
    return global_mean(f1(f_rel), axis_name) + global_mean(f2(r_rel), axis_name)

  d_loss.__name__ = d_loss.__qualname__ = f"{name}_d_loss"
  g_loss.__name__ = g_loss.__qualname__ = f"{name}_g_loss"
  return GANLoss(d=d_loss, g=g_loss, g_needs_real=True)


@LOSSES.register("relativistic_average")
def relativistic_average(axis_name: Optional[str] = None) -> GANLoss:
  """RaSGAN: f1(y) = -log sigmoid(y), f2(y) = -log(1 - sigmoid(y)) (Jolicoeur-Martineau 2018,
  sec. 4.3, the relativistic average discriminator D(x) = sigmoid(C(x) - E C(x')) in the SGAN
  loss; the generator loss is the non-saturating one).

  Args:
    axis_name: the `pmap` axis; the batch means of the logits are then global.
  """
  return _relativistic_average("relativistic_average", lambda y: jax.nn.softplus(-y),
                               jax.nn.softplus, axis_name)


@LOSSES.register("relativistic_average_least_squares")
def relativistic_average_least_squares(axis_name: Optional[str] = None) -> GANLoss:
  """RaLSGAN: f1(y) = (y - 1)^2, f2(y) = (y + 1)^2 (Jolicoeur-Martineau 2018, sec. 4.3 and the
  appendix's RaLSGAN losses). The reference code halves both losses; this does not."""
  return _relativistic_average("relativistic_average_least_squares",
                               lambda y: jnp.square(y - 1.0), lambda y: jnp.square(y + 1.0),
                               axis_name)


@LOSSES.register("relativistic_average_hinge")
def relativistic_average_hinge(axis_name: Optional[str] = None) -> GANLoss:
  """RaHingeGAN: f1(y) = max(0, 1 - y), f2(y) = max(0, 1 + y) (Jolicoeur-Martineau 2018,
  sec. 4.3 and the appendix's RaHingeGAN losses)."""
  return _relativistic_average("relativistic_average_hinge", lambda y: jax.nn.relu(1.0 - y),
                               lambda y: jax.nn.relu(1.0 + y), axis_name)


def get_loss(name: str, axis_name: Optional[str] = None) -> GANLoss:
  """The registered `GANLoss` called `name` (see `LOSSES.names()`).

  Args:
    name: a `LOSSES` name.
    axis_name: the `pmap` axis, passed to losses built by a factory (those that take batch
      means of logits). Losses that are per-example means ignore it: they are already exact
      under `pmap` once the step averages them across devices.
  """
  entry = LOSSES.get(name)
  return entry if isinstance(entry, GANLoss) else entry(axis_name)


# ------------------------------------------------------------------------------------------
# Auxiliary losses.
# ------------------------------------------------------------------------------------------


def _batched(x: Array, what: str, min_rank: int = 1) -> Array:
  x = jnp.asarray(x)
  if x.ndim < min_rank:
    raise ValueError(f"{what} must have rank >= {min_rank} (batch first), got shape {x.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{what} must be a float array, got dtype {x.dtype}.")
  return x.astype(jnp.float32)


def feature_matching_loss(real_features: Array, fake_features: Array,
                          axis_name: Optional[str] = None) -> Array:
  """||E_x f(x) - E_z f(G(z))||_2^2: feature matching (Salimans et al. 2016, sec. 3.1).

  `f` is an intermediate layer of D (gax's models sow it as `intermediates/features`). The
  generator minimises this instead of, or besides, its adversarial loss; only the fake
  features depend on G.

  Args:
    real_features: `[B, F]` features of real data (further trailing axes are flattened).
    fake_features: `[B', F]` features of generated data; `B'` may differ from `B`.
    axis_name: the `pmap` axis: the expectations are then over the global batch (the
      cross-device mean of the per-device means), so N devices give the one-device value.
  """
  r = _batched(real_features, "real_features", 2)
  f = _batched(fake_features, "fake_features", 2)
  r, f = r.reshape(r.shape[0], -1), f.reshape(f.shape[0], -1)
  if r.shape[1] != f.shape[1]:
    raise ValueError(f"Real and fake features differ in size: {real_features.shape} vs "
                     f"{fake_features.shape}.")
  diff = global_mean(r, axis_name, axis=0) - global_mean(f, axis_name, axis=0)
  return jnp.sum(jnp.square(diff))


def auxiliary_classifier_loss(class_logits: Array, labels: Array) -> Array:
  """-E[log P(C = c | X)]: the AC-GAN class term (Odena et al. 2017, sec. 3, L_C).

  Mean softmax cross-entropy of the auxiliary classifier on one batch. AC-GAN's L_C sums it
  over the real and the generated batch: D minimises both terms (with its source loss), G
  minimises the generated one (with its adversarial loss).

  Args:
    class_logits: `[B, K]` unnormalised class scores.
    labels: `[B]` integer classes in [0, K); a label out of range gives NaN (inside `jit`
      there is no way to raise).
  """
  logits = _batched(class_logits, "class_logits", 2)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}.")
  if labels.shape != logits.shape[:-1]:
    raise ValueError(f"labels {labels.shape} must have the shape of class_logits "
                     f"{logits.shape} without its last (class) axis.")
  k = logits.shape[-1]
  log_p = jax.nn.log_softmax(logits, axis=-1)
  valid = (labels >= 0) & (labels < k)
  picked = jnp.take_along_axis(log_p, jnp.clip(labels, 0, k - 1)[..., None], axis=-1)[..., 0]
  return -jnp.mean(jnp.where(valid, picked, jnp.nan))


def focal_reconstruction_loss(x_recon: Array, x: Array, gamma: float = 2.0, *,
                              from_logits: bool = False, eps: float = 1e-6) -> Array:
  """Focal-loss reconstruction term for a VAE-GAN (Larsen et al. 2016; ganhacks 7).

  Each pixel of `x` in [-1, 1] is read as the probability `p = (x + 1) / 2` of a Bernoulli
  pixel, and the decoder's output as the predicted probability `q` (`q = (x_recon + 1) / 2`,
  clipped to [eps, 1 - eps], or `q = sigmoid(x_recon)` with `from_logits`). The loss is the
  expectation over `y ~ Bernoulli(p)` of the binary focal loss FL(q, y) = -(1 - q_y)^gamma
  log q_y (Lin et al. 2017, sec. 3.2, q_1 = q, q_0 = 1 - q):

    -[p (1 - q)^gamma log q + (1 - p) q^gamma log(1 - q)],

  summed over each example's pixels and averaged over the batch (a negative log-likelihood
  per example, on the scale of `gaussian_kl`). With gamma = 0 it is the binary cross-entropy;
  gamma > 0 down-weights pixels already reconstructed well.

  Args:
    x_recon: `[B, ...]` reconstruction in [-1, 1] (e.g. a tanh output), or logits of q with
      `from_logits` (stable where the tanh would saturate; no clipping then).
    x: `[B, ...]` data in [-1, 1], same shape.
    gamma: the focusing parameter, >= 0.
    from_logits: read `x_recon` as logits of q.
    eps: clipping of q away from 0 and 1 when not `from_logits` (no gradient beyond it).
  """
  if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not (
      math.isfinite(gamma) and gamma >= 0):
    raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}.")
  if not 0.0 < eps < 0.5:
    raise ValueError(f"eps must be in (0, 0.5), got {eps!r}.")
  xr = _batched(x_recon, "x_recon")
  xt = _batched(x, "x")
  if xr.shape != xt.shape:
    raise ValueError(f"x_recon {xr.shape} and x {xt.shape} must have the same shape.")
  p = (xt + 1.0) * 0.5
  if from_logits:
    log_q, log_1mq = -jax.nn.softplus(-xr), -jax.nn.softplus(xr)
  else:
    q = jnp.clip((xr + 1.0) * 0.5, eps, 1.0 - eps)
    log_q, log_1mq = jnp.log(q), jnp.log1p(-q)
  # (1 - q)^gamma = exp(gamma log(1 - q)): finite gradients for any gamma >= 0.
  per_pixel = -(p * jnp.exp(gamma * log_1mq) * log_q + (1.0 - p) * jnp.exp(gamma * log_q) *
                log_1mq)
  return jnp.mean(jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=1))


def gaussian_kl(mean: Array, log_var: Array) -> Array:
  """KL(N(mean, diag(exp(log_var))) || N(0, I)), summed over latent dims, mean over the batch.

  1/2 sum_j (exp(lv_j) + mu_j^2 - 1 - lv_j) (Kingma & Welling 2014, app. B), the prior term
  of the VAE-GAN encoder loss (Larsen et al. 2016, sec. 2); `exp(lv) - 1 - lv` is computed
  as `expm1(lv) - lv` to stay exact near lv = 0.

  Args:
    mean: `[B, D]` posterior means (further trailing axes are summed over too).
    log_var: `[B, D]` posterior log-variances.
  """
  mu = _batched(mean, "mean", 2)
  lv = _batched(log_var, "log_var", 2)
  if mu.shape != lv.shape:
    raise ValueError(f"mean {mu.shape} and log_var {lv.shape} must have the same shape.")
  per_dim = 0.5 * (jnp.expm1(lv) - lv + jnp.square(mu))
  return jnp.mean(jnp.sum(per_dim.reshape(per_dim.shape[0], -1), axis=1))


__all__ = ["GANLoss", "LOSSES", "global_mean", "minimax_d_loss", "minimax_g_loss",
           "non_saturating_g_loss", "wasserstein_d_loss", "wasserstein_g_loss", "hinge_d_loss",
           "least_squares_d_loss", "least_squares_g_loss", "binary_cross_entropy_with_logits",
           "LabelledCrossEntropy", "with_labels", "one_sided_label_smoothing", "soft_labels",
           "noisy_labels", "relativistic_average", "relativistic_average_least_squares",
           "relativistic_average_hinge", "get_loss", "feature_matching_loss",
           "auxiliary_classifier_loss", "focal_reconstruction_loss", "gaussian_kl"]
