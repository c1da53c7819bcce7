"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016, "Unsupervised
representation learning with deep convolutional generative adversarial networks").

The architecture guidelines of the paper's section 3, all kept by default: strided
convolutions instead of pooling (fractionally strided in G), batch normalisation in both
networks except the generator's output and the discriminator's input layer, no hidden fully
connected layers (G's first layer is a projection reshaped to 4x4, D's last a 4x4 valid
convolution to one logit), ReLU in G with tanh at the output, LeakyReLU(0.2) in D, and weights
drawn from N(0, 0.02). Kernels are 4x4 with stride 2, so kernel size is divisible by stride (no
checkerboard from uneven overlap).

Batch statistics live in the `batch_stats` collection, i.e. in `PlayerState.model_state`.
With `axis_name` set, batch statistics are averaged across that mapped axis (synchronised
batch norm), so a `pmap`-ped step normalises exactly as one device would on the global batch.

Options (the layers are in `gax.layers`; every default reproduces the plain DCGAN, with the
same parameter names):

* G `norm`: "batch" | "instance" | "virtual_batch" | "none". With "virtual_batch" (Salimans et
  al. 2016, sec. 3.5) G holds a fixed reference latent batch `z_ref` `[vbn_reference_size,
  latent_dim]` in the `vbn_reference` collection (so in `PlayerState.model_state`), drawn once
  at init from the init RNG with the `gax.noise.LATENTS` sampler `vbn_reference_latent` (set
  it to the config's latent distribution) and never changed. Every call runs `[z_ref; z]`
  through G and drops the reference rows at the output; this costs G a forward (and backward)
  pass over the reference rows. Each sample depends on its own z only, in train and in eval
  mode alike, and is the same under `pmap` as on one device.
* G `noise_std` > 0: `GaussianNoise` after every hidden layer of G (ganhacks 13), in train mode
  only, from the `noise` RNG stream.
* G `dropout` > 0: dropout after every hidden layer of G, in train *and* eval mode (pix2pix,
  Isola et al. 2017, used rate 0.5), from the `dropout` RNG stream, so sampling from G needs a
  key (`gax.steps.apply_model(..., key=...)`).
  Hidden layers run layer -> norm -> ReLU -> dropout -> noise.
* G `upsample`: "transpose" (4x4 stride-2 transposed convolutions) | "pixel_shuffle"
  (`PixelShuffle`, 3x3 stride-1 convolution then depth-to-space, Shi et al. 2016).
* D `norm`: "batch" | "instance" | "layer" | "none". Layer norm normalises each example over
  all its positions and channels, with per-channel scale and offset (the critic normalisation
  recommended by Gulrajani et al. 2017 for WGAN-GP, whose penalty is per example). With
  "none" the hidden convolutions get a bias.
* D `downsample`: "stride" (4x4 stride-2 convolutions) | "avg_pool" (3x3 stride-1 convolution
  then 2x2 average pooling).
* D `minibatch`: "none" | "stddev" (`MinibatchStdDev`, Karras et al. 2018: one channel
  appended to the 4x4 features before the last convolution) | "discrimination"
  (`MinibatchDiscrimination`, Salimans et al. 2016, sec. 3.2: applied to the flattened 4x4
  features, followed by a dense layer to the logit). Both see the per-device batch under
  `pmap`. D sows its last hidden activation as `intermediates/features` before the minibatch
  layer.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gax import checks, noise
from gax.conv import Conv, ConvTranspose, check_impl
from gax.layers import (GaussianNoise, InstanceNorm, MinibatchDiscrimination, MinibatchStdDev,
                        PixelShuffle, SelfAttention, VirtualBatchNorm, check_option)
from gax.models import conditioning as cond

_weight_init = nn.initializers.normal(stddev=0.02)

G_NORMS = ("batch", "instance", "virtual_batch", "none")
D_NORMS = ("batch", "instance", "layer", "none")
MINIBATCH = ("none", "stddev", "discrimination")
UPSAMPLE = ("transpose", "pixel_shuffle")
DOWNSAMPLE = ("stride", "avg_pool")

Layer = Callable[[jax.Array], jax.Array]


def check_attention(attention: int, resolution: int) -> None:
  """`attention` (the feature-map side that gets SAGAN's self-attention block) is 0 (off) or
  a hidden resolution of the DCGAN pair, 4 ... resolution / 2."""
  k = num_stages(resolution)
  allowed = [4 * 2 ** i for i in range(k)]
  if attention != 0 and attention not in allowed:
    raise ValueError(f"model.attention={attention!r}: the self-attention block goes at a "
                     f"hidden resolution of the {resolution}x{resolution} DCGAN, one of "
                     f"{allowed} (0: none).")


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
        f"DCGAN resolution must be 4 * 2^k with k >= 1 (8, 16, 32, 64, 128, ...); got "
        f"{resolution}.")
  return k


def _batch_norm(train: bool, axis_name: Optional[str], dtype: Any) -> nn.BatchNorm:
  # momentum 0.9 is PyTorch's 0.1: running averages that follow G's changing statistics.
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
      scale_init=_bn_scale_init, dtype=dtype)


def make_norm(kind: str, train: bool, axis_name: Optional[str], dtype: Any,
              reference_size: int = 0) -> Optional[Layer]:
  """The normalisation layer named `kind` (constructed in the caller's compact scope), or
  `None` for "none"."""
  if kind == "batch":
    return _batch_norm(train, axis_name, dtype)
  if kind == "instance":
    return InstanceNorm(epsilon=1e-5, scale_init=_bn_scale_init)
  if kind == "virtual_batch":
    return VirtualBatchNorm(reference_size, epsilon=1e-5, scale_init=_bn_scale_init)
  if kind == "layer":
    return nn.LayerNorm(epsilon=1e-5, reduction_axes=(1, 2, 3), feature_axes=-1,
                        scale_init=_bn_scale_init, dtype=dtype)
  if kind == "none":
    return None
  raise ValueError(f"Unknown normalisation {kind!r}.")


def check_g_regularisers(module: nn.Module, noise_std: float, dropout: float, train: bool) -> None:
  """Validates G's noise/dropout options and that the RNG streams they need were given."""
  if noise_std < 0:
    raise ValueError(f"g_noise_std must be >= 0 (0 = off); got {noise_std}.")
  if not 0 <= dropout < 1:
    raise ValueError(f"g_dropout must be a rate in [0, 1) (0 = off); got {dropout}.")
  if module.is_initializing():
    return  # init falls back to the `params` RNG
  if dropout > 0 and not module.has_rng("dropout"):
    raise ValueError(
        f"{type(module).__name__} with dropout {dropout} needs a 'dropout' RNG in train and in "
        "eval mode: pass `key` to gax.steps.apply_model (or rngs={'dropout': ...} to apply).")
  if train and noise_std > 0 and not module.has_rng("noise"):
    raise ValueError(
        f"{type(module).__name__} with noise_std {noise_std} needs a 'noise' RNG in train mode: "
        "pass `key` to gax.steps.apply_model (or rngs={'noise': ...} to apply).")


def vbn_reference_latent(module: nn.Module, z: jax.Array, size: int, sampler: str) -> jax.Array:
  """The fixed reference latent batch `[size, latent_dim]` of a VBN generator, kept in the
  `vbn_reference` collection; drawn once at init from the `params` RNG."""
  checks.integer(size, "vbn_reference_size")
  draw = noise.LATENTS.get(sampler)
  ref = module.variable("vbn_reference", "z",
                        lambda: draw(module.make_rng("params"), (size, z.shape[1])))
  if ref.value.shape != (size, z.shape[1]):
    raise ValueError(
        f"The VBN reference latent batch has shape {ref.value.shape}; z has latent_dim "
        f"{z.shape[1]} and vbn_reference_size is {size}.")
  return ref.value


def g_hidden(x: jax.Array, norm: Optional[Layer], train: bool, noise_std: float,
             dropout: float) -> jax.Array:
  """G's hidden-layer tail: norm -> ReLU -> dropout (always on) -> noise (train only)."""
  if norm is not None:
    x = norm(x)
  x = nn.relu(x)
  if dropout > 0:
    x = nn.Dropout(dropout, deterministic=False)(x)
  if noise_std > 0:
    x = GaussianNoise(noise_std)(x, deterministic=not train)
  return x


def g_input(module: nn.Module, z: jax.Array, labels: Optional[jax.Array], norm: str,
            vbn_reference_size: int, vbn_reference_latent_name: str, num_classes: int,
            conditioning: str, g_class_dim: int):
  """G's first-layer input and the number of VBN reference rows in front of the batch.

  `[z_ref; z]` for a VBN generator (reference rows first), then the class embedding appended
  for a conditional one (the reference rows labelled `arange(n_ref) % num_classes`).
  """
  cond.check_conditioning(num_classes, conditioning)
  conditional = conditioning != "none"
  cond.check_labels(module, labels, z.shape[0], conditional, conditioning)
  n_ref = 0
  if norm == "virtual_batch":
    z_ref = vbn_reference_latent(module, z, vbn_reference_size, vbn_reference_latent_name)
    z = jnp.concatenate([z_ref.astype(z.dtype), z])
    n_ref = vbn_reference_size
    if conditional:
      ref_labels = jnp.arange(n_ref, dtype=labels.dtype) % num_classes
      labels = jnp.concatenate([ref_labels, labels])
  if conditional and conditioning != "projection":  # "projection": G's batch norms condition
    z = cond.condition_latent(z, labels, num_classes, g_class_dim)
  return z, n_ref


def g_norm_layer(module: nn.Module, train: bool, labels: Optional[jax.Array],
                 reference_size: int) -> Optional[Layer]:
  """A norm layer of G (`module.norm`), made in the caller's compact scope: with conditioning
  "projection", the conditional batch norm of `labels` (`cond.ConditionalBatchNorm`)."""
  if module.conditioning == "projection":
    cbn = cond.ConditionalBatchNorm(
        module.num_classes, use_running_average=not train, momentum=0.9, epsilon=1e-5,
        axis_name=module.axis_name, dtype=getattr(module, "dtype", None),
        scale_init=_bn_scale_init)
    return lambda x: cbn(x, labels)
  return make_norm(module.norm, train, module.axis_name, getattr(module, "dtype", jnp.float32),
                   reference_size)


class DCGANGenerator(nn.Module):
  """z `[B, latent_dim]` -> images `[B, resolution, resolution, channels]` in [-1, 1].

  Channels are `width * 2^(k-1)` at 4x4 and halve at each doubling of resolution, e.g. for
  64x64 and width 64: 512 (4x4), 256, 128, 64, then `channels` at 64x64. See the module
  docstring for `norm`, `noise_std`, `dropout`, `upsample` and the VBN reference batch.
  With `conditioning` "concat" or "auxiliary", `labels` `[B]` are required and a learned
  `g_class_dim` class embedding is appended to z; with "projection" they are required and
  every batch norm is a conditional one (`gax.models.conditioning.ConditionalBatchNorm`).
  """

  resolution: int = 64
  width: int = 64
  channels: int = 3
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  norm: str = "batch"
  noise_std: float = 0.0
  dropout: float = 0.0
  upsample: str = "transpose"
  vbn_reference_size: int = 64
  vbn_reference_latent: str = "gaussian"
  num_classes: int = 0
  conditioning: str = "none"
  g_class_dim: int = 16
  attention: int = 0
  conv_impl: str = "auto"

  def _up(self, x: jax.Array, features: int, use_bias: bool) -> jax.Array:
    if self.upsample == "pixel_shuffle":
      return PixelShuffle(features, scale=2, kernel_size=(3, 3), use_bias=use_bias,
                          kernel_init=_weight_init, dtype=self.dtype,
                          conv_impl=self.conv_impl)(x)
    return ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", use_bias=use_bias,
                         kernel_init=_weight_init, dtype=self.dtype, impl=self.conv_impl)(x)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = True,
               labels: Optional[jax.Array] = None) -> jax.Array:
    chex.assert_rank(z, 2)
    check_option("g_norm", self.norm, G_NORMS)
    check_option("upsample", self.upsample, UPSAMPLE)
    check_impl(self.conv_impl)
    check_g_regularisers(self, self.noise_std, self.dropout, train)
    cond.check_g_norm(self.conditioning, self.norm)
    k = num_stages(self.resolution)
    z, n_ref = g_input(self, z, labels, self.norm, self.vbn_reference_size,
                       self.vbn_reference_latent, self.num_classes, self.conditioning,
                       self.g_class_dim)
    norm = lambda: g_norm_layer(self, train, labels, n_ref)
    hidden = lambda x: g_hidden(x, norm(), train, self.noise_std, self.dropout)
    check_attention(self.attention, self.resolution)
    attend = lambda x: (SelfAttention(dtype=self.dtype)(x) if x.shape[1] == self.attention
                        else x)
    c = self.width * 2 ** (k - 1)
    x = nn.Dense(4 * 4 * c, use_bias=self.norm == "none", kernel_init=_weight_init,
                 dtype=self.dtype)(z)
    x = attend(hidden(x.reshape(z.shape[0], 4, 4, c)))
    for _ in range(k - 1):
      c //= 2
      x = attend(hidden(self._up(x, c, use_bias=self.norm == "none")))
    x = self._up(x, self.channels, use_bias=True)[n_ref:]
    return jnp.tanh(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """images `[B, resolution, resolution, C]` in [-1, 1] -> logits `[B]`.

  Channels are `width` after the first (un-normalised) convolution and double at each
  halving of resolution down to 4x4, mirroring the generator. The last hidden activation
  (flattened, `[B, 4 * 4 * C]`, float32) is sown as `intermediates/features`, before any
  minibatch layer. See the module docstring for `norm`, `downsample` and `minibatch`.

  Conditioning (`gax.models.conditioning`): with "concat", `labels` `[B]` are required and
  their class maps (`d_class_dim` channels) are appended to the input; with "auxiliary",
  the output is `(logits [B], class_logits [B, num_classes])`, the class logits from the
  sown features; with "projection", `labels` are required and the logit gets the
  projection term `<v_y, features>` (`gax.models.conditioning.ClassProjection`).
  """

  resolution: int = 64
  width: int = 64
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  norm: str = "batch"
  downsample: str = "stride"
  minibatch: str = "none"
  minibatch_kernels: int = 100
  minibatch_kernel_dim: int = 5
  minibatch_group_size: Optional[int] = None
  num_classes: int = 0
  conditioning: str = "none"
  d_class_dim: int = 4
  class_map_resize: str = "nearest"
  attention: int = 0
  conv_impl: str = "auto"

  def _down(self, x: jax.Array, features: int, use_bias: bool) -> jax.Array:
    if self.downsample == "avg_pool":
      x = Conv(features, (3, 3), strides=(1, 1), padding="SAME", use_bias=use_bias,
               kernel_init=_weight_init, dtype=self.dtype, impl=self.conv_impl)(x)
      return nn.avg_pool(x, (2, 2), strides=(2, 2))
    # kernel 4, stride 2, pad 1: exactly halves the resolution
    return Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=use_bias,
                kernel_init=_weight_init, dtype=self.dtype, impl=self.conv_impl)(x)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True, labels: Optional[jax.Array] = None):
    chex.assert_rank(x, 4)
    check_option("d_norm", self.norm, D_NORMS)
    check_option("downsample", self.downsample, DOWNSAMPLE)
    check_option("minibatch", self.minibatch, MINIBATCH)
    check_impl(self.conv_impl)
    cond.check_conditioning(self.num_classes, self.conditioning)
    cond.check_labels(self, labels, x.shape[0], self.conditioning in cond.D_TAKES_LABELS,
                      self.conditioning)
    if x.shape[1] != self.resolution or x.shape[2] != self.resolution:
      raise ValueError(
          f"DCGANDiscriminator built for {self.resolution}x{self.resolution} inputs got {x.shape}.")
    if self.conditioning == "concat":
      x = cond.class_channels(x, labels, self.num_classes, self.d_class_dim, self.class_map_resize)
    k = num_stages(self.resolution)
    check_attention(self.attention, self.resolution)
    attend = lambda x: (SelfAttention(dtype=self.dtype)(x) if x.shape[1] == self.attention
                        else x)
    c = self.width
    x = attend(nn.leaky_relu(self._down(x, c, use_bias=True), 0.2))
    for _ in range(k - 1):
      c *= 2
      x = self._down(x, c, use_bias=self.norm == "none")
      norm = make_norm(self.norm, train, self.axis_name, self.dtype)
      if norm is not None:
        x = norm(x)
      x = attend(nn.leaky_relu(x, 0.2))
    # The last hidden activation, for feature matching (Salimans et al. 2016, sec. 3.1).
    features = x.reshape(x.shape[0], -1).astype(jnp.float32)
    self.sow("intermediates", "features", features)
    if self.minibatch == "discrimination":
      h = MinibatchDiscrimination(self.minibatch_kernels, self.minibatch_kernel_dim)(features)
      x = nn.Dense(1, kernel_init=_weight_init, dtype=self.dtype)(h)
    else:
      if self.minibatch == "stddev":
        x = MinibatchStdDev(self.minibatch_group_size)(x)
      x = Conv(1, (4, 4), padding="VALID", kernel_init=_weight_init, dtype=self.dtype,
               impl=self.conv_impl)(x)
    logits = x.reshape(x.shape[0]).astype(jnp.float32)
    if self.conditioning == "auxiliary":
      return logits, cond.class_head(features, self.num_classes, kernel_init=_weight_init,
                                     dtype=self.dtype)
    if self.conditioning == "projection":
      logits = logits + cond.ClassProjection(self.num_classes, kernel_init=_weight_init,
                                             name="class_projection")(features, labels)
    return logits


__all__ = ["G_NORMS", "D_NORMS", "MINIBATCH", "UPSAMPLE", "DOWNSAMPLE", "num_stages",
           "check_attention",
           "make_norm", "check_g_regularisers", "vbn_reference_latent", "g_hidden", "g_input",
           "g_norm_layer",
           "DCGANGenerator", "DCGANDiscriminator"]
