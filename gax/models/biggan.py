"""A BigGAN-style class-conditional ResNet pair (Brock, Donahue & Simonyan 2019, "Large scale
GAN training for high fidelity natural image synthesis", sec. 3 and appendix B), for any
resolution R = 4 * 2^k, built from gax's pieces:

* G: a shared class embedding (`shared`, `shared_dim` wide, one table for every block) and a
  hierarchical latent: z is split into k + 1 equal chunks; the first goes through a dense
  layer to 4x4 x `4 * width` channels (4 * ch at every resolution, as in the BigGAN
  authors' 32x32 architecture), and chunk i + 1 is concatenated with the shared embedding to
  condition up-block i. Each up-block is BN -> ReLU -> 2x nearest upsample -> 3x3 conv ->
  BN -> ReLU -> 3x3 conv, with an upsample + 1x1 conv shortcut (SNGAN's, from
  `gax.models.resnet`), where every BN is conditional on that vector
  (`gax.models.conditioning.VectorConditionalBatchNorm`: gain `1 + W_g c`, bias `W_b c`, the
  paper's "class-conditional BatchNorm ... linear projections of the shared embedding").
  Then BN, ReLU, a 3x3 conv to the image channels and tanh.
* D: SNGAN's ResNet D (an optimised first down-block, down-blocks to 8x8, two plain blocks),
  ReLU, global sum pooling to phi(x) `[B, 4 * width]` (sown as `intermediates/features`),
  and the projection discriminator's output `psi(phi) + <v_y, phi>` (Miyato & Koyama 2018;
  `gax.models.conditioning.ClassProjection`).
* SAGAN's self-attention block (`gax.layers.SelfAttention`) at feature-map side `attention`
  in both, after G's up-block and D's down-block of that side, 8 ... R/2 (0: none; BigGAN
  uses 64x64 at 128x128).

Spectral normalisation (the `spectral_norm` trick) covers D's kernels and its class matrix;
BigGAN also normalises G, and the `g_orthogonal_regularization` trick and the truncation
trick (`gax.noise.truncated_gaussian`, `experiments/sample.py --truncation`) are its other
ingredients. Both modules take labels: the pair's `conditioning` is "projection".
"""

from __future__ import annotations

from typing import Any, Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gax.conv import check_impl
from gax.layers import SelfAttention
from gax.models import conditioning as cond
from gax.models.conditioning import VectorConditionalBatchNorm
from gax.models.dcgan import num_stages
from gax.models.resnet import _GBlock, d_features, g_output

_init = nn.initializers.xavier_uniform()


def check_attention(attention: int, resolution: int) -> None:
  """`attention` is 0 or a side that both G (8 ... R) and D (R/2 ... 8) have: 8 ... R/2."""
  allowed = [8 * 2 ** i for i in range(num_stages(resolution) - 1)]
  if attention != 0 and attention not in allowed:
    raise ValueError(f"model.attention={attention!r}: the BigGAN pair's self-attention goes "
                     f"at a feature-map side both networks have at {resolution}x{resolution}, "
                     f"one of {allowed} (0: none).")


def _check_call(module: nn.Module, inputs: jax.Array, labels: Optional[jax.Array]) -> None:
  """The checks both networks make of their options and of a call's inputs and labels."""
  chex.assert_rank(inputs, 2 if isinstance(module, BigGANGenerator) else 4)
  check_impl(module.conv_impl)
  check_attention(module.attention, module.resolution)
  cond.check_conditioning(module.num_classes, "projection")
  cond.check_labels(module, labels, inputs.shape[0], True, "projection")


class BigGANGenerator(nn.Module):
  """z `[B, latent_dim]` and labels `[B]` -> images `[B, resolution, resolution, channels]`
  in [-1, 1]; `latent_dim` must split into `num_stages(resolution) + 1` equal chunks."""

  resolution: int = 32
  width: int = 64
  channels: int = 3
  num_classes: int = 10
  shared_dim: int = 128
  attention: int = 0
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  conditioning: str = "projection"

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True,
               labels: Optional[jax.Array] = None) -> jax.Array:
    _check_call(self, z, labels)
    k = num_stages(self.resolution)
    if z.shape[1] % (k + 1):
      raise ValueError(f"BigGANGenerator at {self.resolution}x{self.resolution} splits z into "
                       f"{k + 1} chunks (one for the input layer, one per block): latent_dim "
                       f"must be a multiple of {k + 1}; got {z.shape[1]}.")
    chunks = jnp.split(z, k + 1, axis=-1)
    shared = nn.Embed(self.num_classes, self.shared_dim, name="shared")(labels)
    ch = 4 * self.width
    x = nn.Dense(4 * 4 * ch, kernel_init=_init, dtype=self.dtype)(chunks[0])
    x = x.reshape(z.shape[0], 4, 4, ch)
    for i in range(k):
      c = jnp.concatenate([chunks[i + 1], shared.astype(z.dtype)], axis=-1)
      x = _GBlock(ch, self.axis_name, self.dtype, self.conv_impl)(x, train, c)
      if x.shape[1] == self.attention:
        x = SelfAttention(dtype=self.dtype)(x)
    return g_output(self, x, train)


class BigGANDiscriminator(nn.Module):
  """images `[B, resolution, resolution, C]` in [-1, 1] and labels `[B]` -> logits `[B]`:
  the projection discriminator on SNGAN's ResNet D."""

  resolution: int = 32
  width: int = 64
  num_classes: int = 10
  attention: int = 0
  axis_name: Optional[str] = None  # unused: D has no batch statistics
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  conditioning: str = "projection"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True,
               labels: Optional[jax.Array] = None) -> jax.Array:
    del train
    _check_call(self, x, labels)
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(f"BigGANDiscriminator built for {self.resolution}x{self.resolution} "
                       f"inputs got {x.shape}.")
    features = d_features(self, x, 4 * self.width, self.attention)
    logits = nn.Dense(1, kernel_init=_init)(features).reshape(x.shape[0])
    return logits + cond.ClassProjection(self.num_classes, kernel_init=_init,
                                         name="class_projection")(features, labels)


__all__ = ["BigGANGenerator", "BigGANDiscriminator", "check_attention",
           "VectorConditionalBatchNorm"]
