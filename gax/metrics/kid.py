"""Kernel Inception Distance (Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD
GANs").

KID is the squared maximum mean discrepancy between the feature distributions of two image
sets under the cubic polynomial kernel

  k(x, y) = (x . y / d + 1)^3,  d = feature dimension,

estimated without bias (unlike FID, its expectation does not depend on the sample size):

  MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
            - 2 sum_{i, j} k(x_i, y_j) / (m n).

As in the paper's code, the estimate is averaged over `n_subsets` pairs of random subsets of
`subset_size` features of each set (drawn without replacement within a subset, independently
across subsets), which bounds the cost at `O(n_subsets subset_size^2 d)`; the mean and the
standard deviation over subsets are returned. Papers often report KID x 10^3. The estimator
can be negative when the distributions are close.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from gax import checks
from gax.metrics.features import FeatureExtractor, Images, compute_features

_HIGHEST = jax.lax.Precision.HIGHEST


def polynomial_kernel(x: jax.Array, y: jax.Array, degree: int = 3, gamma: Optional[float] = None,
                      coef0: float = 1.0) -> jax.Array:
  """`(gamma x . y + coef0)^degree` for `x [m, d]`, `y [n, d]` -> `[m, n]`; `gamma` defaults to
  `1 / d`."""
  gamma = 1.0 / x.shape[-1] if gamma is None else gamma
  return (gamma * jnp.matmul(x, y.T, precision=_HIGHEST) + coef0) ** degree


def polynomial_mmd2_unbiased(x: jax.Array, y: jax.Array, degree: int = 3,
                             gamma: Optional[float] = None, coef0: float = 1.0) -> jax.Array:
  """Unbiased MMD^2 between samples `x [m, d]` and `y [n, d]` (m, n >= 2) under the polynomial
  kernel (see the module docstring); a scalar."""
  chex.assert_rank([x, y], 2)
  chex.assert_equal_shape_suffix([x, y], 1)
  m, n = x.shape[0], y.shape[0]
  if m < 2 or n < 2:
    raise ValueError(f"The unbiased MMD needs >= 2 samples per set, got {m} and {n}.")
  x = x.astype(jnp.float32)
  y = y.astype(jnp.float32)
  k = functools.partial(polynomial_kernel, degree=degree, gamma=gamma, coef0=coef0)
  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  # The three terms are large and nearly cancel; MMD^2 is unchanged by subtracting a constant
  # from the kernel, so centre it on the mean cross term to keep the float32 sums small.
  c = jnp.mean(kxy)

  def off_diagonal(a):
    return jnp.sum(a - c) - jnp.trace(a - c)

  return (off_diagonal(kxx) / (m * (m - 1)) + off_diagonal(kyy) / (n * (n - 1))
          - 2.0 * jnp.sum(kxy - c) / (m * n))


def subset_indices(key: jax.Array, n1: int, n2: int, n_subsets: int,
                   subset_size: int) -> Tuple[jax.Array, jax.Array]:
  """`(idx1, idx2)`, int32 `[n_subsets, subset_size]` each: per subset, `subset_size` distinct
  rows of each set."""
  k1, k2 = jax.random.split(key)

  def draw(k, n):
    return jax.vmap(lambda kk: jax.random.permutation(kk, n)[:subset_size])(
        jax.random.split(k, n_subsets))

  return draw(k1, n1), draw(k2, n2)


@functools.partial(jax.jit, static_argnames=("n_subsets", "subset_size", "degree", "gamma",
                                             "coef0"))
def _kid_subsets(f1: jax.Array, f2: jax.Array, key: jax.Array, n_subsets: int, subset_size: int,
                 degree: int, gamma: Optional[float], coef0: float) -> jax.Array:
  idx1, idx2 = subset_indices(key, f1.shape[0], f2.shape[0], n_subsets, subset_size)
  return jax.lax.map(
      lambda ij: polynomial_mmd2_unbiased(f1[ij[0]], f2[ij[1]], degree, gamma, coef0),
      (idx1, idx2))


def kid_from_features(features1, features2, n_subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0, degree: int = 3, gamma: Optional[float] = None,
                      coef0: float = 1.0) -> Tuple[float, float]:
  """KID between feature sets `[N1, F]` and `[N2, F]`.

  Args:
    features1, features2: the two feature sets (NumPy or JAX).
    n_subsets: number of subset pairs averaged (100 in the paper's code and torch-fidelity).
    subset_size: features per subset (1000 there); at most `min(N1, N2)`.
    seed: seeds the subsets.
    degree, gamma, coef0: the kernel `(gamma x.y + coef0)^degree`; gamma None is `1 / F`.

  Returns:
    `(mean, std)` of the unbiased MMD^2 over the subsets (std with `1 / n_subsets`).
  """
  features1 = jnp.asarray(features1, jnp.float32)
  features2 = jnp.asarray(features2, jnp.float32)
  chex.assert_rank([features1, features2], 2)
  if features1.shape[1] != features2.shape[1]:
    raise ValueError(f"KID: feature dimensions differ: {features1.shape} vs {features2.shape}.")
  n = min(features1.shape[0], features2.shape[0])
  if not 2 <= subset_size <= n:
    raise ValueError(f"KID: subset_size must be in [2, {n}] (the smaller set has {n} "
                     f"samples), got {subset_size}; pass a smaller subset_size or more samples.")
  checks.integer(n_subsets, "KID: n_subsets")
  mmd = np.asarray(_kid_subsets(features1, features2, jax.random.key(seed), n_subsets=n_subsets,
                                subset_size=subset_size, degree=degree, gamma=gamma,
                                coef0=coef0), np.float64)
  return float(mmd.mean()), float(mmd.std())


def kid_from_images(extractor: FeatureExtractor, data1: Images, data2: Images, n_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0, batch_size: int = 100) -> Tuple[float, float]:
  """KID `(mean, std)` between two image sets under `extractor` (see `kid_from_features`)."""
  f1, _ = compute_features(extractor, data1, batch_size)
  f2, _ = compute_features(extractor, data2, batch_size)
  return kid_from_features(f1, f2, n_subsets, subset_size, seed)


__all__ = ["polynomial_kernel", "polynomial_mmd2_unbiased", "subset_indices",
           "kid_from_features", "kid_from_images"]
