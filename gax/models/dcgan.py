"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016, "Unsupervised
representation learning with deep convolutional generative adversarial networks").

The architecture guidelines of the paper's section 3, all kept here: strided convolutions
instead of pooling (fractionally strided in G), batch normalisation in both networks except
the generator's output and the discriminator's input layer, no hidden fully connected layers
(G's first layer is a projection reshaped to 4x4, D's last a 4x4 valid convolution to one
logit), ReLU in G with tanh at the output, LeakyReLU(0.2) in D, and weights drawn from
N(0, 0.02). Kernels are 4x4 with stride 2, so kernel size is divisible by stride (no
checkerboard from uneven overlap).

Batch statistics live in the `batch_stats` collection, i.e. in `PlayerState.model_state`.
With `axis_name` set, batch statistics are averaged across that mapped axis (synchronised
batch norm), so a `pmap`-ped step normalises exactly as one device would on the global batch.
"""

from __future__ import annotations

from typing import Any, Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

_weight_init = nn.initializers.normal(stddev=0.02)


def _bn_scale_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  # DCGAN reference implementations draw BN scales from N(1, 0.02).
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def num_stages(resolution: int) -> int:
  """Number of stride-2 stages between 4x4 and `resolution` (which must be 4 * 2^k, k >= 1)."""
  k = 0
  r = resolution
  while r > 4 and r % 2 == 0:
    r //= 2
    k += 1
  if r != 4 or k < 1:
    raise ValueError(
        f"DCGAN resolution must be 4 * 2^k with k >= 1 (8, 16, 32, 64, 128, ...); got {resolution}.")
  return k


def _batch_norm(train: bool, axis_name: Optional[str], dtype: Any) -> nn.BatchNorm:
  # momentum 0.9 is PyTorch's 0.1: running averages that follow G's changing statistics.
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
      scale_init=_bn_scale_init, dtype=dtype)


class DCGANGenerator(nn.Module):
  """z `[B, latent_dim]` -> images `[B, resolution, resolution, channels]` in [-1, 1].

  Channels are `width * 2^(k-1)` at 4x4 and halve at each doubling of resolution, e.g. for
  64x64 and width 64: 512 (4x4), 256, 128, 64, then `channels` at 64x64.
  """

  resolution: int = 64
  width: int = 64
  channels: int = 3
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    chex.assert_rank(z, 2)
    k = num_stages(self.resolution)
    c = self.width * 2 ** (k - 1)
    x = nn.Dense(4 * 4 * c, use_bias=False, kernel_init=_weight_init, dtype=self.dtype)(z)
    x = x.reshape(z.shape[0], 4, 4, c)
    x = nn.relu(_batch_norm(train, self.axis_name, self.dtype)(x))
    for _ in range(k - 1):
      c //= 2
      x = nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding="SAME", use_bias=False,
                           kernel_init=_weight_init, dtype=self.dtype)(x)
      x = nn.relu(_batch_norm(train, self.axis_name, self.dtype)(x))
    x = nn.ConvTranspose(self.channels, (4, 4), strides=(2, 2), padding="SAME",
                         kernel_init=_weight_init, dtype=self.dtype)(x)
    return jnp.tanh(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """images `[B, resolution, resolution, C]` in [-1, 1] -> logits `[B]`.

  Channels are `width` after the first (un-normalised) convolution and double at each
  halving of resolution down to 4x4, mirroring the generator. The last hidden activation
  (flattened, `[B, 4 * 4 * C]`) is sown as `intermediates/features`.
  """

  resolution: int = 64
  width: int = 64
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    chex.assert_rank(x, 4)
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(
          f"DCGANDiscriminator built for {self.resolution}x{self.resolution} inputs got {x.shape}.")
    k = num_stages(self.resolution)
    pad = ((1, 1), (1, 1))  # kernel 4, stride 2, pad 1: exactly halves the resolution
    c = self.width
    x = nn.Conv(c, (4, 4), strides=(2, 2), padding=pad, kernel_init=_weight_init,
                dtype=self.dtype)(x)
    x = nn.leaky_relu(x, 0.2)
    for _ in range(k - 1):
      c *= 2
      x = nn.Conv(c, (4, 4), strides=(2, 2), padding=pad, use_bias=False,
                  kernel_init=_weight_init, dtype=self.dtype)(x)
      x = nn.leaky_relu(_batch_norm(train, self.axis_name, self.dtype)(x), 0.2)
    # The last hidden activation, for feature matching (Salimans et al. 2016, sec. 3.1).
    self.sow("intermediates", "features", x.reshape(x.shape[0], -1).astype(jnp.float32))
    x = nn.Conv(1, (4, 4), padding="VALID", kernel_init=_weight_init, dtype=self.dtype)(x)
    return x.reshape(x.shape[0]).astype(jnp.float32)
