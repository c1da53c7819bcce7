"""Class conditioning for the generators and discriminators of `gax.models`.

A model's `conditioning` option (with `num_classes` K > 0) selects one of (ganhacks 12: use
labels if you have them):

* "none": the unconditional networks, exactly as without the option (same parameters and
  outputs).
* "concat", the conditional GAN of Mirza & Osindero 2014 ("Conditional generative adversarial
  nets", sec. 4): both players see the class. G concatenates a learned class embedding
  (`g_class_dim` wide, `class_embed`) to z. D appends the class to its input: for images a
  learned low-dimensional map per class, `[4, 4, d_class_dim]` (`class_map`), resized to the
  input's height and width with `jax.image.resize` (`class_map_resize`: "nearest" or
  "bilinear") and concatenated as `d_class_dim` extra input channels (ganhacks 16: embed
  discrete labels, keep the embedding low-dimensional, upsample it to the image and add it
  as channels); for vectors a learned `d_class_dim`-vector concatenated to the input.
* "auxiliary", AC-GAN (Odena, Olah & Shlens 2017, "Conditional image synthesis with auxiliary
  classifier GANs", sec. 3): G as for "concat"; D does not see the class but gets an auxiliary
  classifier, a dense layer (`class_head`) from its last hidden features (the activation sown
  as `intermediates/features`) to K class logits.
* "projection", the projection discriminator (Miyato & Koyama 2018, "cGANs with projection
  discriminator", eq. 3) with conditional batch norm in G, the pairing of that paper's
  experiments (sec. 5) and of SAGAN and BigGAN. D's logit is `psi(phi(x)) + <v_y, phi(x)>`:
  its unconditional output plus the inner product of its last hidden features phi(x) (the
  sown `intermediates/features`) with a learned vector per class, the rows of
  `class_projection/kernel` `[K, F]` (`ClassProjection`). The matrix is named `kernel` so that
  spectral normalisation, when D has it, normalises it too (as Miyato & Koyama's
  `SNEmbedID`). G replaces each batch norm's affine map by a per-class one
  (`ConditionalBatchNorm`; de Vries et al. 2017, Dumoulin et al. 2017): the batch is
  normalised with shared statistics, then scaled by `gamma[y]` and shifted by `beta[y]`; G
  gets no class embedding on z, and needs `g_norm="batch"`.

Signatures: G is `(z [B, latent_dim], train, labels=None) -> x`; D is `(x, train, labels=None)
-> logits [B]`, or `(logits [B], class_logits [B, K])` with "auxiliary". Labels are int
`[B]` classes in `[0, K)`; a conditional G and a "concat" or "projection" D need them (the
modes in `D_TAKES_LABELS`), an "auxiliary" D ignores them, and an unconditional network
refuses them (a sign of a wiring mistake).
Embeddings and maps are initialised N(0, 1)-like (`nn.Embed`'s default), the scale of z and
of images in [-1, 1]. Out-of-range labels cannot raise inside `jit`: `nn.Embed` clips them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gax import checks
from gax.layers import check_option

CONDITIONING = ("none", "concat", "auxiliary", "projection")
D_TAKES_LABELS = ("concat", "projection")  # the modes whose D is called with the labels
CLASS_MAP_RESIZE = ("nearest", "bilinear")
CLASS_MAP_SIZE = 4  # side of D's learned per-class map (the DCGAN's smallest resolution)


def check_conditioning(num_classes: int, conditioning: str) -> None:
  """Raises a `ValueError` naming the model option unless the pair is consistent."""
  check_option("conditioning", conditioning, CONDITIONING)
  checks.integer(num_classes, "model.num_classes", 0, " (0: unconditional)")
  if conditioning == "none" and num_classes:
    raise ValueError(f"model.num_classes={num_classes} but model.conditioning is 'none': set "
                     "model.conditioning to 'concat', 'auxiliary' or 'projection' to use the "
                     "labels, or num_classes to 0.")
  if conditioning != "none" and num_classes < 1:
    raise ValueError(f"model.conditioning={conditioning!r} needs model.num_classes >= 1 (the "
                     "data source's number of classes); got 0.")


def check_sizes(g_class_dim: int, d_class_dim: int, class_map_resize: str) -> None:
  checks.integer(g_class_dim, "model.g_class_dim")
  checks.integer(d_class_dim, "model.d_class_dim")
  check_option("class_map_resize", class_map_resize, CLASS_MAP_RESIZE)


def check_labels(module: nn.Module, labels: Optional[jax.Array], batch: int, needed: bool,
                 conditioning: str) -> None:
  """Checks the `labels` argument of a network: given iff `needed`, int `[batch]`."""
  name = type(module).__name__
  if labels is None:
    if needed:
      raise ValueError(f"{name} with conditioning={conditioning!r} needs labels: call it as "
                       "(inputs, train, labels=int [B] classes).")
    return
  if conditioning == "none":
    raise ValueError(f"{name} is unconditional (conditioning='none') but got labels.")
  if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
    raise TypeError(f"{name}: labels must be integer classes, got dtype {labels.dtype}.")
  chex.assert_shape(labels, (batch,))


def condition_latent(z: jax.Array, labels: jax.Array, num_classes: int,
                     dim: int) -> jax.Array:
  """`[z, embed(labels)]`: z with G's learned class embedding (`class_embed`) appended.

  Called inside the generator's compact `__call__`, so the embedding is G's parameter."""
  e = nn.Embed(num_classes, dim, name="class_embed")(labels)
  return jnp.concatenate([z, e.astype(z.dtype)], axis=-1)


def class_channels(x: jax.Array, labels: jax.Array, num_classes: int, channels: int,
                   method: str) -> jax.Array:
  """Images `[B, H, W, C]` with the labels' class maps appended: `[B, H, W, C + channels]`.

  Each class has a learned `[4, 4, channels]` map (`class_map`), resized to `H x W`."""
  s = CLASS_MAP_SIZE
  m = nn.Embed(num_classes, s * s * channels, name="class_map")(labels)
  m = m.reshape(labels.shape[0], s, s, channels)
  b, h, w, _ = x.shape
  m = jax.image.resize(m, (b, h, w, channels), method=method)
  return jnp.concatenate([x, m.astype(x.dtype)], axis=-1)


def class_vector(x: jax.Array, labels: jax.Array, num_classes: int, dim: int) -> jax.Array:
  """Vectors `[B, D]` with the labels' learned `dim`-vectors (`class_map`) appended."""
  e = nn.Embed(num_classes, dim, name="class_map")(labels)
  return jnp.concatenate([x, e.astype(x.dtype)], axis=-1)


def check_g_norm(conditioning: str, g_norm: str) -> None:
  """"projection" conditions G through its batch norms, so it needs g_norm="batch"."""
  if conditioning == "projection" and g_norm != "batch":
    raise ValueError("model.conditioning='projection' conditions G through conditional batch "
                     f"norm, which needs model.g_norm='batch'; got g_norm={g_norm!r}.")


class ClassProjection(nn.Module):
  """The class term of the projection discriminator (Miyato & Koyama 2018, eq. 3):
  `<v_y, phi>` `[B]` (float32) for features `phi` `[B, F]` and labels `y` `[B]`, with `v_y`
  the rows of the parameter `kernel` `[num_classes, F]` (a `kernel`, so that `gax.spectral`'s
  default rule normalises it: its largest singular value is that of the embedding matrix)."""

  num_classes: int
  kernel_init: Callable[..., jax.Array] = nn.initializers.normal(stddev=0.02)

  @nn.compact
  def __call__(self, features: jax.Array, labels: jax.Array) -> jax.Array:
    chex.assert_rank(features, 2)
    v = self.param("kernel", self.kernel_init, (self.num_classes, features.shape[-1]),
                   jnp.float32)
    rows = jnp.take(v, labels, axis=0, mode="clip")
    return jnp.sum(rows * features.astype(jnp.float32), axis=-1)


class ConditionalBatchNorm(nn.Module):
  """Batch norm with a per-class affine map (de Vries et al. 2017, "Modulating early visual
  processing by language"; Dumoulin et al. 2017; as in Miyato & Koyama 2018's generator):
  `gamma[y] * x_hat + beta[y]`, where `x_hat` is `x` normalised with the statistics of the
  whole batch (running averages in eval mode, `batch_stats` as `nn.BatchNorm` keeps them)
  and `gamma` (`scale`, init `scale_init`) and `beta` (`bias`, init 0) are `[num_classes,
  C]` parameters. With one class it is `nn.BatchNorm` exactly."""

  num_classes: int
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: Optional[str] = None
  dtype: Any = None
  scale_init: Callable[..., jax.Array] = nn.initializers.ones

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array) -> jax.Array:
    chex.assert_shape(labels, (x.shape[0],))
    x_hat = nn.BatchNorm(use_running_average=self.use_running_average, momentum=self.momentum,
                         epsilon=self.epsilon, axis_name=self.axis_name, use_scale=False,
                         use_bias=False, dtype=self.dtype, name="norm")(x)
    c = x.shape[-1]
    gamma = self.param("scale", self.scale_init, (self.num_classes, c), jnp.float32)
    beta = self.param("bias", nn.initializers.zeros_init(), (self.num_classes, c), jnp.float32)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)
    g = jnp.take(gamma, labels, axis=0, mode="clip").reshape(shape)
    b = jnp.take(beta, labels, axis=0, mode="clip").reshape(shape)
    return (x_hat * g.astype(x_hat.dtype) + b.astype(x_hat.dtype)).astype(x_hat.dtype)


class VectorConditionalBatchNorm(nn.Module):
  """Batch norm whose affine map comes from a conditioning vector `c` `[B, D]` (BigGAN,
  sec. 3): `x_hat * (1 + c W_gain) + c W_bias`, with `x_hat` normalised by the whole batch's
  statistics (running averages in eval mode). `gain` and `bias` are `nn.Dense` without bias
  (their `kernel` initialised to 0, so the layer starts as plain batch norm)."""

  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: Optional[str] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
    chex.assert_rank(c, 2)
    x_hat = nn.BatchNorm(use_running_average=self.use_running_average, momentum=self.momentum,
                         epsilon=self.epsilon, axis_name=self.axis_name, use_scale=False,
                         use_bias=False, dtype=self.dtype, name="norm")(x)
    ch = x.shape[-1]
    zeros = nn.initializers.zeros_init()
    gain = nn.Dense(ch, use_bias=False, kernel_init=zeros, name="gain")(c)
    bias = nn.Dense(ch, use_bias=False, kernel_init=zeros, name="bias")(c)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (ch,)
    return (x_hat * (1.0 + gain.reshape(shape)).astype(x_hat.dtype)
            + bias.reshape(shape).astype(x_hat.dtype))


def class_head(features: jax.Array, num_classes: int, **dense_kwargs) -> jax.Array:
  """AC-GAN's auxiliary classifier: class logits `[B, K]` (float32) from D's features."""
  return nn.Dense(num_classes, name="class_head", **dense_kwargs)(features).astype(jnp.float32)


__all__ = ["CONDITIONING", "D_TAKES_LABELS", "CLASS_MAP_RESIZE", "CLASS_MAP_SIZE",
           "check_conditioning", "check_sizes", "check_labels", "condition_latent",
           "class_channels", "class_vector",
           "class_head", "check_g_norm", "ClassProjection", "ConditionalBatchNorm",
           "VectorConditionalBatchNorm"]
