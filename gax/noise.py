"""Latent sampling for the generator."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from gax.registry import Registry

LatentSampler = Callable[[jax.Array, Sequence[int]], jax.Array]
LATENTS: Registry[LatentSampler] = Registry("latent distribution")


@LATENTS.register("gaussian")
def gaussian(key: jax.Array, shape: Sequence[int]) -> jax.Array:
  """z ~ N(0, I) (ganhacks 3: sample from a Gaussian, not a uniform)."""
  return jax.random.normal(key, shape, jnp.float32)


@LATENTS.register("uniform")
def uniform(key: jax.Array, shape: Sequence[int]) -> jax.Array:
  """z ~ U[-1, 1]^d, as in DCGAN (Radford et al. 2016)."""
  return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)


@LATENTS.register("sphere")
def sphere(key: jax.Array, shape: Sequence[int]) -> jax.Array:
  """z uniform on the unit sphere of the last axis (White 2016, "Sampling generative networks")."""
  z = jax.random.normal(key, shape, jnp.float32)
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def draw_global(sampler: Callable[[jax.Array, Sequence[int]], jax.Array], key: jax.Array,
                shape: Sequence[int], axis_name: Optional[str] = None) -> jax.Array:
  """This device's slice of one draw over the *global* batch.

  `shape[0]` is the per-device batch. Outside `pmap` (`axis_name=None`) this is
  `sampler(key, shape)`. Under `pmap` every device holds the same key, draws the global batch
  `[n_devices * shape[0], *shape[1:]]` and keeps its own rows, so a random quantity per
  example (latents, instance noise, random labels) does not depend on how the batch is split
  across devices: N devices with batch B see the values one device with batch N * B sees.
  """
  if axis_name is None:
    return sampler(key, tuple(shape))
  n = jax.lax.psum(1, axis_name)
  i = jax.lax.axis_index(axis_name)
  x = sampler(key, (n * shape[0], *shape[1:]))
  return jax.lax.dynamic_slice_in_dim(x, i * shape[0], shape[0])
