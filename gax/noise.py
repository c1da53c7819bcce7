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


def truncated_gaussian(threshold: float) -> LatentSampler:
  """The truncation trick's latents (Brock et al. 2019, BigGAN, sec. 3.1): z ~ N(0, I) with
  every value whose magnitude exceeds `threshold` resampled until it does not, i.e. each
  coordinate from the standard normal truncated to [-threshold, threshold]
  (`jax.random.truncated_normal`, the same distribution in one draw). Smaller thresholds
  trade variety for fidelity; use it at sampling time for a G trained on Gaussian z."""
  if not threshold > 0:
    raise ValueError(f"The truncation threshold must be > 0, got {threshold!r}.")
  t = float(threshold)

  def sample(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    return jax.random.truncated_normal(key, -t, t, tuple(shape), jnp.float32)

  sample.__name__ = f"truncated_gaussian_{t:g}"
  return sample


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
  return local_rows(sampler(key, (n * shape[0], *shape[1:])), shape[0], axis_name)


def local_rows(x: jax.Array, local: int, axis_name: Optional[str]) -> jax.Array:
  """This device's `local` rows of a global-batch array `x` (device i takes rows
  `[i * local, (i + 1) * local)`, the split `gax.parallel.shard_batch` makes); `x` itself
  outside `pmap`."""
  if axis_name is None:
    return x
  i = jax.lax.axis_index(axis_name)
  return jax.lax.dynamic_slice_in_dim(x, i * local, local)


def slerp(z0: jax.Array, z1: jax.Array, t: jax.Array | float) -> jax.Array:
  """Great-circle interpolation between latents (White 2016, "Sampling generative networks").

  `slerp(z0, z1, t) = sin((1 - t) w) / sin(w) * z0 + sin(t w) / sin(w) * z1`, where `w` is the
  angle between `z0` and `z1` along the last axis. For vectors of equal norm the path keeps
  that norm (unit vectors stay on the sphere), so the latents along it look like draws of a
  Gaussian or `sphere` prior, which a straight line through the low-norm middle does not; the
  angle between `z0` and the result is `t * w`. Where the angle is ~0 or ~pi (parallel or
  antiparallel vectors, whose great circle is not unique) or a vector is zero, the result
  falls back to linear interpolation `(1 - t) z0 + t z1`, with no NaN in values or gradients.

  Args:
    z0, z1: latents `[..., D]` with broadcastable batch shapes.
    t: interpolation weight(s), scalar or an array broadcastable against the batch shape
      `[...]` (not including D): t=0 gives `z0`, t=1 gives `z1`. For a `[T]` sweep of N
      pairs, pass `z0[:, None]`, `z1[:, None]` of shape `[N, 1, D]` and get `[N, T, D]`.

  Returns:
    The interpolated latents, shape `broadcast(z0.shape[:-1], z1.shape[:-1], t.shape) + [D]`.
  """
  z0 = jnp.asarray(z0)
  z1 = jnp.asarray(z1)
  dtype = jnp.result_type(z0, z1, jnp.float32)
  z0, z1 = z0.astype(dtype), z1.astype(dtype)
  t = jnp.asarray(t, dtype)[..., None]
  tiny = jnp.finfo(dtype).tiny
  sumsq = lambda x: jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  # Norms floored at sqrt(tiny): no 0/0 in values or gradients for zero or parallel vectors.
  norm = lambda x: jnp.sqrt(jnp.maximum(sumsq(x), tiny))
  u0, u1 = z0 / norm(z0), z1 / norm(z1)
  # 2 atan2(|u0 - u1|, |u0 + u1|) is accurate at every angle, unlike arccos of the dot product
  # near 0 and pi.
  omega = 2.0 * jnp.arctan2(norm(u0 - u1), norm(u0 + u1))
  sin_omega = jnp.sin(omega)
  eps = 1e-4 if dtype == jnp.float32 else 1e-8
  linear = (sin_omega < eps) | (sumsq(z0) == 0) | (sumsq(z1) == 0)
  safe_sin = jnp.where(linear, 1.0, sin_omega)
  w0 = jnp.where(linear, 1.0 - t, jnp.sin((1.0 - t) * omega) / safe_sin)
  w1 = jnp.where(linear, t, jnp.sin(t * omega) / safe_sin)
  return w0 * z0 + w1 * z1


def per_device_key(key: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """`key` folded with the device index under `pmap`, so each device draws independent values
  (G's dropout and noise layers); `key` itself outside `pmap`."""
  if axis_name is None:
    return key
  return jax.random.fold_in(key, jax.lax.axis_index(axis_name))


__all__ = ["LATENTS", "gaussian", "uniform", "sphere", "truncated_gaussian", "draw_global",
           "local_rows", "slerp", "per_device_key"]
