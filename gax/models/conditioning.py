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

Signatures: G is `(z [B, latent_dim], train, labels=None) -> x`; D is `(x, train, labels=None)
-> logits [B]`, or `(logits [B], class_logits [B, K])` with "auxiliary". Labels are int
`[B]` classes in `[0, K)`; a conditional G and a "concat" D need them, an "auxiliary" D
ignores them, and an unconditional network refuses them (a sign of a wiring mistake).
Embeddings and maps are initialised N(0, 1)-like (`nn.Embed`'s default), the scale of z and
of images in [-1, 1]. Out-of-range labels cannot raise inside `jit`: `nn.Embed` clips them.
"""

from __future__ import annotations

from typing import Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gax import checks
from gax.layers import check_option

CONDITIONING = ("none", "concat", "auxiliary")
CLASS_MAP_RESIZE = ("nearest", "bilinear")
CLASS_MAP_SIZE = 4  # side of D's learned per-class map (the DCGAN's smallest resolution)


def check_conditioning(num_classes: int, conditioning: str) -> None:
  """Raises a `ValueError` naming the model option unless the pair is consistent."""
  check_option("conditioning", conditioning, CONDITIONING)
  checks.integer(num_classes, "model.num_classes", 0, " (0: unconditional)")
  if conditioning == "none" and num_classes:
    raise ValueError(f"model.num_classes={num_classes} but model.conditioning is 'none': set "
                     "model.conditioning to 'concat' or 'auxiliary' to use the labels, or "
                     "num_classes to 0.")
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


def class_head(features: jax.Array, num_classes: int, **dense_kwargs) -> jax.Array:
  """AC-GAN's auxiliary classifier: class logits `[B, K]` (float32) from D's features."""
  return nn.Dense(num_classes, name="class_head", **dense_kwargs)(features).astype(jnp.float32)


__all__ = ["CONDITIONING", "CLASS_MAP_RESIZE", "CLASS_MAP_SIZE", "check_conditioning",
           "check_sizes", "check_labels", "condition_latent", "class_channels", "class_vector",
           "class_head"]
