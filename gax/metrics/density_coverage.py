"""Density and coverage (Naeem, Oh, Uh, Choi & Yoo 2020, "Reliable Fidelity and Diversity
Metrics for Generative Models", eqs. 5-6).

Only the real set's k-NN balls are used (k = 5 in the paper): around each real feature X_i,
the ball of radius NND_k(X_i), its distance to its k-th nearest other real feature. With M
generated features Y_j and N real ones,

  density  = 1 / (k M) * sum_j #{i : Y_j in B(X_i, NND_k(X_i))}   (fidelity; 1 on average
             when the two distributions agree, above 1 where fakes crowd dense real regions)
  coverage = 1 / N * #{i : some Y_j in B(X_i, NND_k(X_i))}        (diversity, in [0, 1])

Unlike improved precision and recall, neither uses the generated set's own balls, so a few
outlying fakes cannot inflate them. Distances are blocked on the device as in
`gax.metrics.precision_recall`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gax.metrics.features import FeatureExtractor, Images, compute_features
from gax.metrics.precision_recall import _blocks, _sq_dists, feature_pair, knn_sq_radii


class DensityCoverage(NamedTuple):
  density: float
  coverage: float


@functools.partial(jax.jit, static_argnames=("batch_size",))
def ball_counts(queries: jax.Array, centres: jax.Array, sq_radii: jax.Array,
                batch_size: int = 1000):
  """`(per_query [M], per_centre [N])`: for each row of `queries [M, d]` the number of balls
  (centre rows of `centres [N, d]`, squared radii `sq_radii [N]`) it lies in, and for each
  ball whether any query lies in it (bool)."""
  m = queries.shape[0]
  c = centres.astype(jnp.float32)
  n_pad = -(-m // batch_size) * batch_size
  valid = _blocks((jnp.arange(n_pad) < m).astype(jnp.float32)[:, None], batch_size)[..., 0]

  def block(carry, xs):
    q, ok = xs
    inside = (_sq_dists(q, c) <= sq_radii[None, :]) & (ok[:, None] > 0)
    return carry | jnp.any(inside, axis=0), jnp.sum(inside, axis=1)

  hit, counts = jax.lax.scan(block, jnp.zeros(c.shape[0], bool),
                             (_blocks(queries.astype(jnp.float32), batch_size), valid))
  return counts.reshape(-1)[:m], hit


def density_coverage_from_features(real_features, fake_features, k: int = 5,
                                   batch_size: int = 1000) -> DensityCoverage:
  """Density and coverage of `fake_features [M, d]` against `real_features [N, d]`.

  Args:
    real_features: features of real images (NumPy or JAX).
    fake_features: features of generated images.
    k: the neighbourhood size of the real balls (5 in the paper); the real set needs more
      than k rows.
    batch_size: query rows per distance block.
  """
  real, fake = feature_pair(real_features, fake_features, "density_coverage")
  if k < 1 or real.shape[0] <= k or fake.shape[0] < 1:
    raise ValueError(f"density_coverage: k must be >= 1, the real set needs more than k = {k} "
                     f"rows and the fake set one; got {real.shape[0]} real, {fake.shape[0]} "
                     "fake.")
  batch_size = int(min(batch_size, max(real.shape[0], fake.shape[0])))
  radii = knn_sq_radii(real, k=k, batch_size=batch_size)
  counts, hit = ball_counts(fake, real, radii, batch_size=batch_size)
  density = jnp.sum(counts) / (k * fake.shape[0])
  return DensityCoverage(float(density), float(jnp.mean(hit)))


def density_coverage_from_images(extractor: FeatureExtractor, real: Images, fake: Images,
                                 k: int = 5, batch_size: int = 100) -> DensityCoverage:
  """Density and coverage of image sets `fake` against `real` under `extractor`."""
  real_f, _ = compute_features(extractor, real, batch_size)
  fake_f, _ = compute_features(extractor, fake, batch_size)
  return density_coverage_from_features(real_f, fake_f, k)


__all__ = ["DensityCoverage", "ball_counts", "density_coverage_from_features",
           "density_coverage_from_images"]
