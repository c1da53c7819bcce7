"""ResNet generator and discriminator in the style of SNGAN's CIFAR-10 networks (Miyato et
al. 2018, appendix B; residual blocks after Gulrajani et al. 2017), for any resolution
R = 4 * 2^k.

Generator: z -> dense to 4x4 x `width` -> k up-blocks (BN, ReLU, nearest 2x upsample, 3x3
conv, BN, ReLU, 3x3 conv; shortcut: upsample + 1x1 conv) -> BN, ReLU, 3x3 conv to the
image channels, tanh. Discriminator: an optimised first down-block (3x3 conv, ReLU, 3x3
conv, 2x2 average pool; shortcut: pool + 1x1 conv), further down-blocks (ReLU, conv, ReLU,
conv, pool; 1x1-conv shortcut) until 8x8, two blocks without pooling, ReLU, global *sum*
pooling and a dense layer to the logit. At R = 32 this is the paper's CIFAR-10 pair (G width
256, D width 128: 3 up-blocks; 2 down-blocks and 2 plain blocks). D has no normalisation:
spectral normalisation (`config.tricks.spectral_norm`) is its regulariser in SNGAN.

Convolutions are lowered by `gax.conv` (`conv_impl`, default "auto"), with Flax's parameters.

D sows its pooled features (`intermediates/features`, `[B, d_width]`) for feature matching.
"""

from __future__ import annotations

from typing import Any, Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gax.conv import Conv, ConvAvgPool, UpsampleConv, avg_pool2x, check_impl
from gax.layers import SelfAttention
from gax.models.conditioning import VectorConditionalBatchNorm
from gax.models.dcgan import num_stages

_init = nn.initializers.xavier_uniform()


class _GBlock(nn.Module):
  channels: int
  axis_name: Optional[str]
  dtype: Any
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, train, c=None):
    """With a conditioning vector `c` `[B, D]` its batch norms are conditional on it
    (`VectorConditionalBatchNorm`, the BigGAN-style G)."""
    if c is None:
      bn = lambda h: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                  axis_name=self.axis_name, dtype=self.dtype)(h)
    else:
      bn = lambda h: VectorConditionalBatchNorm(use_running_average=not train,
                                                axis_name=self.axis_name, dtype=self.dtype)(h, c)
    conv = lambda k, layer=Conv: layer(self.channels, (k, k), padding="SAME",
                                       kernel_init=_init, dtype=self.dtype, impl=self.conv_impl)
    # conv(upsample(.)) as one layer: the same Flax Conv (name, parameters), computed on the
    # low-resolution input (`gax.conv.upsample_conv`: 16/36 of the 3x3's work, 1/4 of the
    # 1x1's).
    h = conv(3, UpsampleConv)(nn.relu(bn(x)))
    h = conv(3)(nn.relu(bn(h)))
    return h + conv(1, UpsampleConv)(x)


class _DBlock(nn.Module):
  channels: int
  downsample: bool
  first: bool
  dtype: Any
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    conv = lambda k, layer=Conv: layer(self.channels, (k, k), padding="SAME",
                                       kernel_init=_init, dtype=self.dtype, impl=self.conv_impl)
    # pool(conv(.)) as one layer where the block downsamples: the same Flax Conv, computed as
    # one stride-2 convolution (`gax.conv.conv_avg_pool`: 16/36 of the 3x3's work; a 1x1
    # pools first, 1/4).
    pooled = ConvAvgPool if self.downsample else Conv
    h = x if self.first else nn.relu(x)
    h = conv(3)(h)
    h = conv(3, pooled)(nn.relu(h))
    # The optimised first block pools before its shortcut conv, the others after it (the
    # same for a 1x1 convolution, up to rounding).
    if self.first:
      s = conv(1)(avg_pool2x(x))
    elif self.downsample or x.shape[-1] != self.channels:
      s = conv(1, pooled)(x)
    else:
      s = x
    return h + s


def g_output(module: nn.Module, x: jax.Array, train: bool) -> jax.Array:
  """G's head in `module`'s compact scope (its `axis_name`, `dtype`, `channels`,
  `conv_impl`): BN, ReLU, 3x3 conv to the image channels, tanh (float32)."""
  x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   axis_name=module.axis_name, dtype=module.dtype)(x)
  x = Conv(module.channels, (3, 3), padding="SAME", kernel_init=_init, dtype=module.dtype,
           impl=module.conv_impl)(nn.relu(x))
  return jnp.tanh(x.astype(jnp.float32))


def d_features(module: nn.Module, x: jax.Array, width: int, attention: int = 0) -> jax.Array:
  """SNGAN's ResNet D body in `module`'s compact scope (its `resolution`, `dtype`,
  `conv_impl`): an optimised first down-block and down-blocks to 8x8 (4x4 for R = 8), SAGAN's
  self-attention after the one whose output side is `attention` (0: none), two plain
  blocks, ReLU and global sum pooling to phi(x) `[B, width]` (float32), which is sown as
  `intermediates/features`."""
  k = num_stages(module.resolution)
  x = x.astype(module.dtype)
  for i in range(max(k - 1, 1)):
    x = _DBlock(width, downsample=True, first=i == 0, dtype=module.dtype,
                conv_impl=module.conv_impl)(x)
    if x.shape[1] == attention:
      x = SelfAttention(dtype=module.dtype)(x)
  for _ in range(2):
    x = _DBlock(width, downsample=False, first=False, dtype=module.dtype,
                conv_impl=module.conv_impl)(x)
  features = jnp.sum(nn.relu(x), axis=(1, 2)).astype(jnp.float32)  # global sum pooling
  module.sow("intermediates", "features", features)
  return features


class ResNetGenerator(nn.Module):
  """z `[B, latent_dim]` -> images `[B, resolution, resolution, channels]` in [-1, 1]."""

  resolution: int = 32
  width: int = 256
  channels: int = 3
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
    chex.assert_rank(z, 2)
    check_impl(self.conv_impl)
    k = num_stages(self.resolution)
    x = nn.Dense(4 * 4 * self.width, kernel_init=_init, dtype=self.dtype)(z)
    x = x.reshape(z.shape[0], 4, 4, self.width)
    for _ in range(k):
      x = _GBlock(self.width, self.axis_name, self.dtype, self.conv_impl)(x, train)
    return g_output(self, x, train)


class ResNetDiscriminator(nn.Module):
  """images `[B, resolution, resolution, C]` in [-1, 1] -> logits `[B]`."""

  resolution: int = 32
  width: int = 128
  axis_name: Optional[str] = None  # unused: D has no batch statistics
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    del train
    chex.assert_rank(x, 4)
    check_impl(self.conv_impl)
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(f"ResNetDiscriminator built for {self.resolution}x{self.resolution} "
                       f"inputs got {x.shape}.")
    features = d_features(self, x, self.width)
    return nn.Dense(1, kernel_init=_init)(features).reshape(x.shape[0])


__all__ = ["ResNetGenerator", "ResNetDiscriminator", "g_output", "d_features"]
