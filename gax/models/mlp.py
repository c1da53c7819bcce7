"""Fully connected G and D for low-dimensional toy data (the 2D Gaussian mixtures)."""

from __future__ import annotations

from typing import Optional, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPGenerator(nn.Module):
  """z `[B, latent_dim]` -> points `[B, out_dim]` (linear output: toy data is unbounded)."""

  hidden: Sequence[int] = (256, 256, 256)
  out_dim: int = 2

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    del train  # no batch statistics; kept for the common model interface
    chex.assert_rank(z, 2)
    x = z
    for h in self.hidden:
      x = nn.relu(nn.Dense(h)(x))
    return nn.Dense(self.out_dim)(x)


class MLPDiscriminator(nn.Module):
  """points `[B, in_dim]` -> logits `[B]`, LeakyReLU(0.2) hidden layers; the last hidden
  activation is sown as `intermediates/features`."""

  hidden: Sequence[int] = (256, 256, 256)
  axis_name: Optional[str] = None  # unused: the MLP has no cross-example statistics

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    del train
    chex.assert_rank(x, 2)
    for h in self.hidden:
      x = nn.leaky_relu(nn.Dense(h)(x), 0.2)
    self.sow("intermediates", "features", x)  # for feature matching
    return nn.Dense(1)(x).reshape(x.shape[0]).astype(jnp.float32)
