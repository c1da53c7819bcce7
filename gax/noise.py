"""Latent sampling for the generator."""

from __future__ import annotations

from typing import Callable, Sequence

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
