"""Adversarial losses as pure functions of discriminator logits.

Each loss is a pair: a discriminator loss `d(real_logits, fake_logits) -> scalar` (with a
third argument `key` when `d_needs_key`) and a generator loss `g(fake_logits, real_logits) ->
scalar`, both to be *minimised*. Logits are
the raw, unbounded outputs of D with shape `[B]` (or `[B, 1]`); `real_logits` passed to a
generator loss is `None` unless the loss declares `g_needs_real`.

All losses are means over the batch, so under `pmap` the cross-replica mean of the
per-device losses equals the loss of the global batch.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from gax.registry import Registry

Array = jax.Array
DLoss = Callable[[Array, Array], Array]
GLoss = Callable[[Array, Optional[Array]], Array]


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


LOSSES: Registry[GANLoss] = Registry("loss")


def _flat(logits: Array) -> Array:
  chex.assert_rank(logits, {1, 2})
  if logits.ndim == 2:
    chex.assert_axis_dimension(logits, 1, 1)
  return jnp.reshape(logits, (-1,)).astype(jnp.float32)


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


def get_loss(name: str) -> GANLoss:
  """The registered `GANLoss` called `name` (see `LOSSES.names()`)."""
  return LOSSES.get(name)
