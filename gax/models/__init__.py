"""Generator/discriminator pairs, registered by name in `MODELS`.

A model factory takes the data's per-example shape (`data_shape`), the mapped axis name for
cross-device batch statistics (`axis_name`, `None` outside `pmap`) and its own keyword
arguments from the config, and returns `(generator, discriminator)` Flax modules. Both
modules take `(inputs, train: bool, labels=None)`; D returns logits of shape `[B]`, or
`(logits [B], class_logits [B, K])` with `conditioning="auxiliary"`.

Class conditioning (`gax.models.conditioning`) is the options `num_classes` (0 =
unconditional, the default) and `conditioning` ("none" | "concat" for the cGAN of Mirza &
Osindero 2014 | "auxiliary" for AC-GAN, Odena et al. 2017 | "projection" for the projection
discriminator of Miyato & Koyama 2018 with conditional batch norm in G), with `g_class_dim`
(G's class embedding, appended to z), `d_class_dim` (D's label channels for "concat") and,
for the DCGAN, `class_map_resize` ("nearest" | "bilinear", how D's 4x4 class maps reach the
input size).

`resnet` is the SNGAN-style ResNet pair (`gax.models.resnet`), unconditional; `biggan` the
BigGAN-style class-conditional ResNet pair (`gax.models.biggan`: shared embedding,
hierarchical latent, conditional batch norm, projection D, optional self-attention).

The DCGAN and MLP factories take GAN-trick options (normalisation, minibatch features,
generator noise and dropout, up/downsampling) whose defaults are the plain architectures;
the layers are in `gax.layers` and the options are described in `gax.models.dcgan` and
`gax.models.mlp`. A generator with `g_dropout > 0` needs a `dropout` RNG even when sampling,
and one with `g_noise_std > 0` a `noise` RNG in train mode: pass `key` to
`gax.steps.apply_model`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from gax import checks, noise
from gax.conv import check_impl
from gax.layers import check_option
from gax.models.conditioning import CONDITIONING, check_conditioning, check_sizes
from gax.models.dcgan import (D_NORMS, DOWNSAMPLE, MINIBATCH, UPSAMPLE, DCGANDiscriminator,
                              DCGANGenerator, check_attention)
from gax.models import biggan as biggan_lib
from gax.models.dcgan import G_NORMS as DCGAN_G_NORMS
from gax.models.mlp import D_ACTIVATIONS as MLP_D_ACTIVATIONS
from gax.models.mlp import G_NORMS as MLP_G_NORMS
from gax.models.mlp import MLPDiscriminator, MLPGenerator, check_init_std
from gax.models.resnet import ResNetDiscriminator, ResNetGenerator
from gax.registry import Registry

MODELS: Registry = Registry("model")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _dtype(name: str) -> Any:
  if name not in _DTYPES:
    raise ValueError(f"Unknown compute dtype {name!r}; known: {', '.join(_DTYPES)}.")
  return _DTYPES[name]


def _check_common(minibatch: str, g_noise_std: float, g_dropout: float, vbn_reference_size: int,
                  vbn_reference_latent: str) -> None:
  check_option("minibatch", minibatch, MINIBATCH)
  if g_noise_std < 0:
    raise ValueError(f"g_noise_std must be >= 0 (0 = off); got {g_noise_std}.")
  if not 0 <= g_dropout < 1:
    raise ValueError(f"g_dropout must be a rate in [0, 1) (0 = off); got {g_dropout}.")
  checks.integer(vbn_reference_size, "vbn_reference_size")
  check_option("vbn_reference_latent", vbn_reference_latent, tuple(noise.LATENTS))


def _conditioning(num_classes: int, conditioning: str, g_class_dim: int, d_class_dim: int,
                  class_map_resize: str = "nearest") -> Tuple[dict, dict]:
  """Checks the conditioning options; returns the G and D keyword arguments they set."""
  check_conditioning(num_classes, conditioning)
  check_sizes(g_class_dim, d_class_dim, class_map_resize)
  both = {"num_classes": num_classes, "conditioning": conditioning}
  return {**both, "g_class_dim": g_class_dim}, {**both, "d_class_dim": d_class_dim}


@MODELS.register("dcgan")
def dcgan(data_shape: Sequence[int], axis_name: Optional[str] = None, width: int = 64,
          dtype: str = "float32", g_norm: str = "batch", d_norm: str = "batch",
          minibatch: str = "none", g_noise_std: float = 0.0, g_dropout: float = 0.0,
          upsample: str = "transpose", downsample: str = "stride", vbn_reference_size: int = 64,
          vbn_reference_latent: str = "gaussian", minibatch_kernels: int = 100,
          minibatch_kernel_dim: int = 5, minibatch_group_size: Optional[int] = None,
          num_classes: int = 0, conditioning: str = "none", g_class_dim: int = 16,
          d_class_dim: int = 4, class_map_resize: str = "nearest", attention: int = 0,
          conv_impl: str = "auto") -> Tuple[nn.Module, nn.Module]:
  """DCGAN pair for square images of shape `(R, R, C)`, R = 4 * 2^k.

  Args:
    data_shape: `(R, R, C)`.
    axis_name: the mapped axis for synchronised batch norm, `None` outside `pmap`.
    width: D's first-layer channels (G mirrors D).
    dtype: compute dtype, "float32" or "bfloat16".
    g_norm: G's normalisation, "batch" | "instance" | "virtual_batch" | "none".
    d_norm: D's normalisation, "batch" | "instance" | "layer" | "none".
    minibatch: D's minibatch layer before its last layer, "none" | "stddev" |
      "discrimination".
    g_noise_std: std of the Gaussian noise added after each hidden G layer in train mode
      (0 = off).
    g_dropout: dropout rate after each hidden G layer, at train and sample time (0 = off).
    upsample: G's upsampling, "transpose" | "pixel_shuffle".
    downsample: D's downsampling, "stride" | "avg_pool".
    vbn_reference_size: rows of G's fixed reference batch for g_norm="virtual_batch".
    vbn_reference_latent: the `gax.noise.LATENTS` distribution the reference latents are
      drawn from; should match the config's `latent.distribution`.
    minibatch_kernels, minibatch_kernel_dim: B and C of minibatch discrimination.
    minibatch_group_size: group size of the minibatch stddev (`None`: the whole batch).
    num_classes: number of classes of the labels (0: unconditional).
    conditioning: "none" | "concat" | "auxiliary" | "projection"
      (`gax.models.conditioning`; "projection" needs g_norm="batch").
    g_class_dim: width of G's class embedding appended to z.
    d_class_dim: channels of D's learned 4x4 class map ("concat").
    class_map_resize: "nearest" | "bilinear" resizing of D's class map to the input size.
    attention: the feature-map side (a hidden resolution, 4 ... R/2) at which G and D get
      SAGAN's self-attention block (`gax.layers.SelfAttention`); 0: none.
    conv_impl: how convolutions are lowered, "auto" | "xla" | "matmul" (`gax.conv`; the
      parameters are the same for all three).
  """
  if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
    raise ValueError(f"DCGAN needs square images (H, W, C) with H == W; data has "
                     f"{tuple(data_shape)}.")
  check_option("g_norm", g_norm, DCGAN_G_NORMS)
  check_option("d_norm", d_norm, D_NORMS)
  check_option("upsample", upsample, UPSAMPLE)
  check_option("downsample", downsample, DOWNSAMPLE)
  check_impl(conv_impl)
  _check_common(minibatch, g_noise_std, g_dropout, vbn_reference_size, vbn_reference_latent)
  g_cond, d_cond = _conditioning(num_classes, conditioning, g_class_dim, d_class_dim,
                                 class_map_resize)
  r, _, c = data_shape
  check_attention(attention, r)
  dt = _dtype(dtype)
  return (DCGANGenerator(resolution=r, width=width, channels=c, axis_name=axis_name, dtype=dt,
                         attention=attention,
                         norm=g_norm, noise_std=float(g_noise_std), dropout=float(g_dropout),
                         upsample=upsample, vbn_reference_size=vbn_reference_size,
                         vbn_reference_latent=vbn_reference_latent, conv_impl=conv_impl,
                         **g_cond),
          DCGANDiscriminator(resolution=r, width=width, axis_name=axis_name, dtype=dt,
                             norm=d_norm, downsample=downsample, minibatch=minibatch,
                             minibatch_kernels=minibatch_kernels,
                             minibatch_kernel_dim=minibatch_kernel_dim,
                             minibatch_group_size=minibatch_group_size,
                             class_map_resize=class_map_resize, conv_impl=conv_impl,
                             attention=attention,
                             **d_cond))


@MODELS.register("mlp")
def mlp(data_shape: Sequence[int], axis_name: Optional[str] = None,
        g_hidden: Sequence[int] = (256, 256, 256), d_hidden: Sequence[int] = (256, 256, 256),
        g_norm: str = "none", minibatch: str = "none", g_noise_std: float = 0.0,
        g_dropout: float = 0.0, vbn_reference_size: int = 64,
        vbn_reference_latent: str = "gaussian", minibatch_kernels: int = 100,
        minibatch_kernel_dim: int = 5, minibatch_group_size: Optional[int] = None,
        num_classes: int = 0, conditioning: str = "none", g_class_dim: int = 16,
        d_class_dim: int = 4, d_activation: str = "leaky_relu", maxout_pieces: int = 5,
        init_std: float = 0.0) -> Tuple[nn.Module, nn.Module]:
  """MLP pair for vector data of shape `(dim,)`.

  Args:
    data_shape: `(dim,)`.
    axis_name: the mapped axis for synchronised batch norm (g_norm="batch").
    g_hidden, d_hidden: hidden layer widths.
    g_norm: G's normalisation after each hidden layer, "none" | "batch" | "virtual_batch".
    minibatch, g_noise_std, g_dropout, vbn_reference_size, vbn_reference_latent,
      minibatch_kernels, minibatch_kernel_dim, minibatch_group_size, num_classes,
      conditioning, g_class_dim: as for `dcgan`.
    d_class_dim: size of D's learned class vector appended to its input ("concat").
    d_activation: D's hidden units, "leaky_relu" | "relu" | "maxout" (with `maxout_pieces`
      pieces).
    init_std: > 0: N(0, init_std^2) kernels in both networks; 0: Flax's default.
  """
  if len(data_shape) != 1:
    raise ValueError(f"The MLP model needs vector data of shape (dim,); data has "
                     f"{tuple(data_shape)}.")
  check_option("g_norm", g_norm, MLP_G_NORMS)
  check_option("d_activation", d_activation, MLP_D_ACTIVATIONS)
  checks.integer(maxout_pieces, "maxout_pieces")
  check_init_std(init_std)
  _check_common(minibatch, g_noise_std, g_dropout, vbn_reference_size, vbn_reference_latent)
  g_cond, d_cond = _conditioning(num_classes, conditioning, g_class_dim, d_class_dim)
  return (MLPGenerator(hidden=tuple(g_hidden), out_dim=data_shape[0], norm=g_norm,
                       noise_std=float(g_noise_std), dropout=float(g_dropout), axis_name=axis_name,
                       vbn_reference_size=vbn_reference_size,
                       vbn_reference_latent=vbn_reference_latent, init_std=float(init_std),
                       **g_cond),
          MLPDiscriminator(hidden=tuple(d_hidden), axis_name=axis_name, minibatch=minibatch,
                           activation=d_activation, maxout_pieces=maxout_pieces,
                           init_std=float(init_std),
                           minibatch_kernels=minibatch_kernels,
                           minibatch_kernel_dim=minibatch_kernel_dim,
                           minibatch_group_size=minibatch_group_size, **d_cond))


@MODELS.register("biggan")
def biggan(data_shape: Sequence[int], axis_name: Optional[str] = None, width: int = 64,
           num_classes: int = 0, conditioning: str = "projection", shared_dim: int = 128,
           attention: int = 0, dtype: str = "float32",
           conv_impl: str = "auto") -> Tuple[nn.Module, nn.Module]:
  """The BigGAN-style class-conditional ResNet pair (`gax.models.biggan`) for square images
  `(R, R, C)`, R = 4 * 2^k: shared class embedding and hierarchical latent (config
  `latent.dim` a multiple of k + 1), conditional batch norm in G, the projection D.

  Args:
    data_shape: `(R, R, C)`.
    axis_name: the mapped axis for G's synchronised batch norm, `None` outside `pmap`.
    width: the channel multiplier ch; both networks have 4 * ch channels throughout.
    num_classes: the data's classes (>= 1; the pair is conditional).
    conditioning: must be "projection" (what the pair is).
    shared_dim: width of G's shared class embedding.
    attention: the feature-map side with SAGAN's self-attention, 8 ... R/2; 0: none.
    dtype, conv_impl: as for `dcgan`.
  """
  if conditioning != "projection" or num_classes < 1:
    raise ValueError(f"model 'biggan' is class-conditional with a projection D: set "
                     f"model.conditioning='projection' and model.num_classes (the data's "
                     f"classes, with data.labels=True); got conditioning={conditioning!r}, "
                     f"num_classes={num_classes}.")
  check_impl(conv_impl)
  if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
    raise ValueError(f"The BigGAN pair needs square images (H, W, C) with H == W; data has "
                     f"{tuple(data_shape)}.")
  r, _, c = data_shape
  checks.integer(width, "model.width")
  checks.integer(shared_dim, "model.shared_dim")
  biggan_lib.check_attention(attention, r)
  dt = _dtype(dtype)
  return (biggan_lib.BigGANGenerator(resolution=r, width=width, channels=c,
                                     num_classes=num_classes, shared_dim=shared_dim,
                                     attention=attention, axis_name=axis_name, dtype=dt,
                                     conv_impl=conv_impl),
          biggan_lib.BigGANDiscriminator(resolution=r, width=width, num_classes=num_classes,
                                         attention=attention, axis_name=axis_name, dtype=dt,
                                         conv_impl=conv_impl))


@MODELS.register("resnet")
def resnet(data_shape: Sequence[int], axis_name: Optional[str] = None, g_width: int = 256,
           d_width: int = 128, dtype: str = "float32",
           conv_impl: str = "auto") -> Tuple[nn.Module, nn.Module]:
  """SNGAN-style ResNet pair (`gax.models.resnet`) for square images `(R, R, C)`, R = 4 * 2^k.

  Unconditional, without the layer-trick options; D has no normalisation (pair it with
  `config.tricks.spectral_norm`). `conv_impl` as for `dcgan`.
  """
  check_impl(conv_impl)
  if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
    raise ValueError(f"The ResNet needs square images (H, W, C) with H == W; data has "
                     f"{tuple(data_shape)}.")
  r, _, c = data_shape
  dt = _dtype(dtype)
  return (ResNetGenerator(resolution=r, width=g_width, channels=c, axis_name=axis_name, dtype=dt,
                          conv_impl=conv_impl),
          ResNetDiscriminator(resolution=r, width=d_width, axis_name=axis_name, dtype=dt,
                              conv_impl=conv_impl))


__all__ = ["MODELS", "CONDITIONING", "DCGANGenerator", "DCGANDiscriminator", "MLPGenerator",
           "MLPDiscriminator", "ResNetGenerator", "ResNetDiscriminator", "BigGANGenerator",
           "BigGANDiscriminator"]

BigGANGenerator = biggan_lib.BigGANGenerator
BigGANDiscriminator = biggan_lib.BigGANDiscriminator
