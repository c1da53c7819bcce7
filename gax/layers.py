"""GAN layer tricks as Flax linen modules.

Normalisation:
  * `InstanceNorm` (Ulyanov, Vedaldi & Lempitsky 2016, "Instance normalization: the missing
    ingredient for fast stylization"): each example and channel normalised over its spatial
    positions.
  * `VirtualBatchNorm` (Salimans et al. 2016, "Improved techniques for training GANs",
    sec. 3.5): each example normalised with the statistics of a fixed reference batch combined
    with the example itself, so an example's output never depends on the rest of its batch.

Minibatch features for the discriminator (D sees whole batches, so it can detect a batch of
collapsed samples):
  * `MinibatchDiscrimination` (Salimans et al. 2016, sec. 3.2).
  * `MinibatchStdDev` (Karras, Aila, Laine & Lehtinen 2018, "Progressive growing of GANs",
    sec. 3).
  Both compute over the batch the module is called with. Under `pmap` that is the per-device
  batch, not the global one; `gax.steps` also feeds D the real and the fake examples as
  separate batches, so a minibatch feature always describes a batch of one kind.

Regularisers for the generator:
  * `GaussianNoise`: adds N(0, stddev^2) noise from the `noise` RNG stream, by default only in
    train mode (ganhacks tip 13, "add Gaussian noise to every layer of the generator", after
    Zhao, Mathieu & LeCun 2017, "Energy-based generative adversarial network").
  * Dropout at train *and* sample time (Isola et al. 2017, "Image-to-image translation with
    conditional adversarial networks"; ganhacks tip 17) is flax's `nn.Dropout` with
    `deterministic=False`; the models in `gax.models` use it directly.

Hidden units for the discriminator:
  * `Maxout` (Goodfellow, Warde-Farley, Mirza, Courville & Bengio 2013, "Maxout networks"):
    each unit is the maximum of `pieces` affine functions of its input; the D of the
    original GAN (Goodfellow et al. 2014) and of the PacGAN mixture experiments.

Upsampling:
  * `PixelShuffle` (Shi et al. 2016, "Real-time single image and video super-resolution using
    an efficient sub-pixel convolutional neural network"): a stride-1 convolution to
    `features * r^2` channels followed by `depth_to_space`. Its kernel starts in the ICNR form
    (Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution"): all `r^2`
    sub-pixel kernels equal, so at initialisation the layer is a convolution followed by
    nearest-neighbour upsampling, free of checkerboard patterns.

Attention:
  * `SelfAttention` (Zhang, Goodfellow, Metaxas & Odena 2019, "Self-attention generative
    adversarial networks", sec. 3, eqs. 1-3): every position attends to every other one of
    the same feature map, added back through a learned gate that starts at 0.

All statistics are computed in float32 and the outputs cast back to the input's dtype.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gax import checks
from gax.conv import Conv

Initializer = Callable[..., jax.Array]


def check_option(option: str, value: Any, allowed: Sequence[Any]) -> None:
  """Raises a `ValueError` naming `option` and its allowed values unless `value` is one."""
  if value not in allowed:
    raise ValueError(
        f"Unknown {option} {value!r}; allowed: {', '.join(repr(a) for a in allowed)}.")


def _affine(module: nn.Module, y: jax.Array, use_scale: bool, use_bias: bool,
            scale_init: Initializer, bias_init: Initializer) -> jax.Array:
  """Per-channel (last axis) learnable scale and offset, float32 parameters."""
  features = (y.shape[-1],)
  if use_scale:
    y = y * module.param("scale", scale_init, features, jnp.float32)
  if use_bias:
    y = y + module.param("bias", bias_init, features, jnp.float32)
  return y


class InstanceNorm(nn.Module):
  """Instance normalisation (Ulyanov et al. 2016) of `[B, *spatial, C]` inputs.

  Each example's channel c is normalised with the mean and (biased) variance of that channel
  over the example's spatial positions, then scaled and shifted by learnable per-channel
  `scale` (init 1) and `bias` (init 0). Unlike batch norm it has no batch statistics, so train
  and eval mode compute the same function.

  Attributes:
    epsilon: added to the variance.
    use_scale, use_bias: whether to learn the per-channel scale / offset.
  """

  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  scale_init: Initializer = nn.initializers.ones
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim < 3:
      raise ValueError(
          f"InstanceNorm needs inputs [B, *spatial, C] with at least one spatial axis; got "
          f"shape {x.shape}.")
    xf = x.astype(jnp.float32)
    axes = tuple(range(1, x.ndim - 1))
    mean = jnp.mean(xf, axes, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axes, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = _affine(self, y, self.use_scale, self.use_bias, self.scale_init, self.bias_init)
    return y.astype(x.dtype)


class VirtualBatchNorm(nn.Module):
  """Virtual batch normalisation (Salimans et al. 2016, sec. 3.5).

  The input is the concatenation `[reference; x]` along the batch axis: the first
  `reference_size` rows are the activations of a fixed reference batch, the rest the examples
  to normalise. Statistics are per channel (last axis), over the batch and spatial axes:

  * reference rows are normalised with the reference batch's own statistics (mean and
    variance over the N reference rows and their spatial positions), as in batch norm;
  * example i is normalised with the statistics of the reference batch *plus example i*: the
    mean is `N/(N+1) * mean_ref + 1/(N+1) * mean_i` and likewise for the second moment (the
    paper's weighting: the example counts as one more member of the reference batch).

  So an example's output depends on the reference rows and on itself only, never on the
  other examples of its batch, and train and eval mode compute the same function. The
  reference statistics are recomputed (and differentiated through) at every call from the
  reference rows, which the caller must run through every layer along with the batch: this
  costs a forward pass over N extra rows, the reason the paper used VBN in G only.

  Attributes:
    reference_size: N, the number of leading reference rows.
    epsilon: added to the variance.
    use_scale, use_bias: whether to learn the per-channel scale / offset.
  """

  reference_size: int
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  scale_init: Initializer = nn.initializers.ones
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n = checks.integer(self.reference_size, "VirtualBatchNorm reference_size")
    if x.ndim < 2 or x.shape[0] <= n:
      raise ValueError(
          f"VirtualBatchNorm expects [reference ({n} rows); examples (>= 1 row)] stacked along "
          f"axis 0, i.e. at least {n + 1} rows; got shape {x.shape}.")
    xf = x.astype(jnp.float32)
    spatial = tuple(range(1, x.ndim - 1))
    ref, live = xf[:n], xf[n:]
    ref_mean = jnp.mean(ref, (0,) + spatial, keepdims=True)
    ref_var = jnp.mean(jnp.square(ref - ref_mean), (0,) + spatial, keepdims=True)
    ex_mean = jnp.mean(live, spatial, keepdims=True)
    ex_var = jnp.mean(jnp.square(live - ex_mean), spatial, keepdims=True)
    # Moments of the pooled set {reference rows, example i}, each row weighted equally. The
    # pooled variance is written as within-group plus between-group terms (numerically safer
    # than E[x^2] - E[x]^2, and the same quantity).
    w = 1.0 / (n + 1.0)
    mean = w * ex_mean + (1.0 - w) * ref_mean
    var = (w * (ex_var + jnp.square(ex_mean - mean)) +
           (1.0 - w) * (ref_var + jnp.square(ref_mean - mean)))
    y = jnp.concatenate([(ref - ref_mean) * jax.lax.rsqrt(ref_var + self.epsilon),
                         (live - mean) * jax.lax.rsqrt(var + self.epsilon)])
    y = _affine(self, y, self.use_scale, self.use_bias, self.scale_init, self.bias_init)
    return y.astype(x.dtype)


class MinibatchDiscrimination(nn.Module):
  """Minibatch discrimination (Salimans et al. 2016, sec. 3.2) on features `[n, A]`.

  With a learned tensor T `[A, B * C]` (`kernel`), `M_i = f(x_i) T` reshaped to `[B, C]`,
  `c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_1)` and `o(x_i)_b = sum_j c_b(x_i, x_j)`;
  returns `[f(x_i), o(x_i)]`, shape `[n, A + B]`.

  The paper writes the sum as `o(x_i)_b = sum_{j=1}^{n} c_b(x_i, x_j)`, over the whole
  minibatch, so j = i is included and adds the constant `c_b(x_i, x_i) = 1`; that is the
  default here. `include_self=False` sums over j != i only.

  Attributes:
    num_kernels: B, the number of minibatch features appended.
    kernel_dim: C, the dimension of each kernel's projection.
    include_self: whether the sum includes j = i.
    kernel_init: initializer of T.
  """

  num_kernels: int = 100
  kernel_dim: int = 5
  include_self: bool = True
  kernel_init: Initializer = nn.initializers.normal(stddev=0.02)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 2)
    n, a = x.shape
    t = self.param("kernel", self.kernel_init, (a, self.num_kernels * self.kernel_dim),
                   jnp.float32)
    m = (x.astype(jnp.float32) @ t).reshape(n, self.num_kernels, self.kernel_dim)
    # ||M_i,b - M_j,b||_1 summed one kernel coordinate at a time over [n, n, B] arrays: the
    # same value as reducing a [n, n, B, C] difference over its short last axis, which XLA:CPU
    # runs about 9x slower (measured: 36 vs 328 ms for value and gradient at n = B = 100,
    # C = 5).
    mc = jnp.moveaxis(m, -1, 0)  # [C, n, B]
    l1 = sum(jnp.abs(mc[c][:, None, :] - mc[c][None, :, :]) for c in range(self.kernel_dim))
    c = jnp.exp(-l1)
    if not self.include_self:
      c = c * (1.0 - jnp.eye(n, dtype=c.dtype))[:, :, None]
    o = jnp.sum(c, axis=1)  # [n, B]
    return jnp.concatenate([x, o.astype(x.dtype)], axis=-1)


class MinibatchStdDev(nn.Module):
  """Minibatch standard deviation (Karras et al. 2018, sec. 3) on `[B, ..., C]` inputs.

  The batch is split into groups of `group_size` examples; within each group the standard
  deviation of every feature at every position is taken over the group (biased,
  `sqrt(var + epsilon)`), averaged over all features and positions into one value, and that
  value is appended to each of the group's examples as one extra channel (last axis),
  constant over positions. Output `[B, ..., C + 1]`.

  `group_size=None` uses the whole batch as one group (the paper's text); a group size G
  (ProGAN's code uses 4) puts example i in group `i mod (B / G)`, the layout of ProGAN's
  reshape to `[G, B / G, ...]`. G larger than the batch is clipped to the batch; the batch
  must otherwise be divisible by G. Under `pmap` the batch is the per-device batch.

  Attributes:
    group_size: examples per group, `None` for the whole batch.
    epsilon: added to the variance before the square root.
  """

  group_size: Optional[int] = None
  epsilon: float = 1e-8

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim < 2:
      raise ValueError(f"MinibatchStdDev needs inputs [B, ..., C]; got shape {x.shape}.")
    b = x.shape[0]
    if self.group_size is not None:
      checks.integer(self.group_size, "MinibatchStdDev group_size", note=" or None")
    g = b if self.group_size is None else min(self.group_size, b)
    if b % g:
      raise ValueError(
          f"MinibatchStdDev: batch size {b} is not divisible by group_size {self.group_size}.")
    xf = x.astype(jnp.float32).reshape(g, b // g, *x.shape[1:])
    var = jnp.mean(jnp.square(xf - jnp.mean(xf, axis=0)), axis=0)  # [B / G, ...]
    s = jnp.mean(jnp.sqrt(var + self.epsilon), axis=tuple(range(1, x.ndim)))  # [B / G]
    s = jnp.tile(s, g)  # example i gets its group's value s[i mod (B / G)]
    feature = jnp.broadcast_to(s.reshape((b,) + (1,) * (x.ndim - 1)), x.shape[:-1] + (1,))
    return jnp.concatenate([x, feature.astype(x.dtype)], axis=-1)


class GaussianNoise(nn.Module):
  """Adds N(0, stddev^2) noise drawn from the `noise` RNG stream.

  By convention (`deterministic` as in `nn.Dropout`) the noise is on in train mode only: the
  models pass `deterministic=not train`. `stddev=0` is the identity and needs no RNG.

  Attributes:
    stddev: the noise's standard deviation (>= 0).
    deterministic: if true the layer is the identity; may instead be passed to the call.
    rng_collection: the RNG stream the noise is drawn from.
  """

  stddev: float
  deterministic: Optional[bool] = None
  rng_collection: str = "noise"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: Optional[bool] = None) -> jax.Array:
    if self.stddev < 0:
      raise ValueError(f"GaussianNoise stddev must be >= 0; got {self.stddev}.")
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if deterministic or self.stddev == 0:
      return x
    eps = jax.random.normal(self.make_rng(self.rng_collection), x.shape, jnp.float32)
    return (x.astype(jnp.float32) + self.stddev * eps).astype(x.dtype)


class Maxout(nn.Module):
  """`[..., d] -> [..., features]`: `max_k (x W_k + b_k)` over `pieces` affine maps, kept as
  one `Dense(features * pieces)` whose output is read as `[..., features, pieces]`."""

  features: int
  pieces: int = 5
  kernel_init: Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    checks.integer(self.pieces, "Maxout pieces")
    y = nn.Dense(self.features * self.pieces, kernel_init=self.kernel_init)(x)
    return y.reshape(*y.shape[:-1], self.features, self.pieces).max(axis=-1)


def depth_to_space(x: jax.Array, r: int) -> jax.Array:
  """`[B, H, W, r * r * C]` -> `[B, H * r, W * r, C]`, TensorFlow's `depth_to_space` layout.

  `out[b, h * r + i, w * r + j, c] = x[b, h, w, (i * r + j) * C + c]`: the channel axis is
  read as `(i, j, c)` with c fastest ("DCR"; PyTorch's `pixel_shuffle` on NCHW reads it as
  `(c, i, j)` instead).
  """
  chex.assert_rank(x, 4)
  b, h, w, d = x.shape
  if r < 1 or d % (r * r):
    raise ValueError(f"depth_to_space: channels {d} are not divisible by r^2 = {r * r}.")
  c = d // (r * r)
  x = x.reshape(b, h, w, r, r, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * r, w * r, c)


def icnr(base_init: Initializer, r: int) -> Initializer:
  """ICNR kernel initializer (Aitken et al. 2017) for a conv followed by `depth_to_space(., r)`.

  Draws a kernel for `C = out / r^2` channels with `base_init` and repeats it for each of the
  `r^2` sub-pixel positions, so all sub-pixels of an output block start with equal kernels.
  """

  def init(key: jax.Array, shape: Tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    if shape[-1] % (r * r):
      raise ValueError(f"icnr: {shape[-1]} output channels are not divisible by r^2 = {r * r}.")
    k = base_init(key, (*shape[:-1], shape[-1] // (r * r)), dtype)
    reps = (1,) * (len(shape) - 1) + (r * r,)
    return jnp.tile(k, reps)  # channel s * C + c holds kernel c, the depth_to_space layout

  return init


class PixelShuffle(nn.Module):
  """Sub-pixel convolution upsampling by `scale` (Shi et al. 2016).

  A stride-1 `kernel_size` convolution to `features * scale^2` channels, then
  `depth_to_space`. With stride 1 any kernel size is divisible by the stride, so there is no
  uneven-overlap checkerboard; with `icnr=True` (default) the kernel starts in ICNR form.

  Attributes:
    features: output channels.
    scale: the upsampling factor r.
    kernel_size: the convolution's kernel size.
    use_bias: whether the convolution has a bias.
    kernel_init: base initializer of the convolution kernel.
    icnr: whether to initialise the kernel with `icnr(kernel_init, scale)`.
    dtype: the convolution's compute dtype.
    conv_impl: how the convolution is lowered (`gax.conv.IMPLS`).
  """

  features: int
  scale: int = 2
  kernel_size: Tuple[int, int] = (3, 3)
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.normal(stddev=0.02)
  icnr: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    r = self.scale
    init = icnr(self.kernel_init, r) if self.icnr else self.kernel_init
    x = Conv(self.features * r * r, tuple(self.kernel_size), strides=(1, 1), padding="SAME",
             use_bias=self.use_bias, kernel_init=init, dtype=self.dtype, impl=self.conv_impl)(x)
    return depth_to_space(x, r)


class SelfAttention(nn.Module):
  """SAGAN's self-attention block (Zhang et al. 2019, sec. 3) on `[B, H, W, C]` maps.

  With the N = H * W positions x_i as C-vectors and C' = C / `reduction` (the paper's C/8):
  `f = W_f x`, `g = W_g x`, `h = W_h x` (each C'-dimensional), `s_ij = f(x_i)^T g(x_j)`,
  `beta_{j,i} = softmax_i(s_ij)` (how much output position j attends to position i),
  `o_j = W_v sum_i beta_{j,i} h(x_i)` (back to C), and `y_i = gamma * o_i + x_i` with the
  scalar `gamma` initialised to 0 (eq. 3), so the block starts as the identity. The four
  maps are 1x1 convolutions, written as `nn.Dense` on the channel axis (parameters named
  after the paper's `f`, `g`, `h`, `v`, each a `kernel` without bias, as in the SAGAN code),
  so `gax.spectral` normalises them like every other kernel. The softmax is in float32.
  """

  reduction: int = 8
  kernel_init: Initializer = nn.initializers.xavier_uniform()
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    b, h, w, c = x.shape
    checks.integer(self.reduction, "attention reduction", 1)
    inner = max(c // self.reduction, 1)
    dense = lambda n, name: nn.Dense(n, use_bias=False, kernel_init=self.kernel_init,
                                     dtype=self.dtype, name=name)
    flat = x.reshape(b, h * w, c)
    f, g, hx = (dense(inner, n)(flat).astype(jnp.float32) for n in ("f", "g", "h"))
    s = jnp.einsum("bic,bjc->bji", f, g)  # s[b, j, i] = s_ij = f(x_i)^T g(x_j)
    beta = jax.nn.softmax(s, axis=-1)  # beta_{j,i}: softmax over i, for each position j
    o = dense(c, "v")(jnp.einsum("bji,bic->bjc", beta, hx).astype(flat.dtype))
    gamma = self.param("gamma", nn.initializers.zeros_init(), (), jnp.float32)
    return (x + gamma.astype(x.dtype) * o.reshape(b, h, w, c)).astype(x.dtype)


__all__ = ["InstanceNorm", "VirtualBatchNorm", "MinibatchDiscrimination", "MinibatchStdDev",
           "GaussianNoise", "PixelShuffle", "SelfAttention", "depth_to_space", "icnr",
           "check_option"]
