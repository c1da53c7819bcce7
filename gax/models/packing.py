"""Packing (PacGAN, Lin et al. 2018): D judges `degree` samples at once.

`Packed(inner, degree)` turns a batch `[B, ..., C]` into `B / degree` packs by concatenating
each run of `degree` consecutive examples along the last (feature / channel) axis, `[B /
degree, ..., degree * C]`, and returns the inner discriminator's logits for the packs. Real
packs hold only real examples and fake packs only fakes (the paper's construction, sec. 3),
so a generator that drops modes makes packs whose joint statistics differ from real packs,
which penalises mode collapse. The batch (per device under `pmap`) must be divisible by
`degree`; the losses average over packs as they average over examples.

The `inner` network is built for the data's shape and sees `degree` times the channels: the
MLP and convolutional discriminators infer their input width at initialisation.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


def pack(x: jax.Array, degree: int) -> jax.Array:
  """`[B, ..., C]` -> `[B / degree, ..., degree * C]`: examples `i * degree + j`, j = 0 ..
  degree - 1, side by side on the last axis of pack i."""
  b = x.shape[0]
  if b % degree:
    raise ValueError(f"Packing (model.packing={degree}) needs a batch divisible by {degree} "
                     f"(per device under pmap), got {b}.")
  x = x.reshape(b // degree, degree, *x.shape[1:])
  x = jnp.moveaxis(x, 1, -2)  # [B/d, ..., d, C]
  return x.reshape(*x.shape[:-2], degree * x.shape[-1])


class Packed(nn.Module):
  """`inner` applied to packs of `degree` examples (see the module docstring)."""

  inner: nn.Module
  degree: int = 2

  def setup(self):
    # The inner network's variables (and its sown `intermediates/features`, which feature
    # matching reads) keep the paths they have without the wrapper.
    nn.share_scope(self, self.inner)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True, labels: Optional[Any] = None):
    if labels is not None:
      raise ValueError("Packing does not support conditional discriminators (labels).")
    if self.is_initializing() and x.shape[0] % self.degree:
      # Initialisation only needs shapes: use a batch of one pack.
      x = jnp.concatenate([x] * self.degree, axis=0)[:self.degree]
    return self.inner(pack(x, self.degree), train=train)


__all__ = ["pack", "Packed"]
