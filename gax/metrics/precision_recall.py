"""Improved precision and recall (Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019,
"Improved precision and recall metric for assessing generative models").

Each feature set approximates its distribution's support by the union of k-NN balls: around
every feature vector, the ball whose radius is the distance to its k-th nearest neighbour in
the same set (k = 3 in the paper; the point itself is not counted). Then

  precision = fraction of generated features inside some ball of the real set (fidelity),
  recall    = fraction of real features inside some ball of the generated set (diversity).

Pairwise distances are computed on the device in blocks of `batch_size` query rows against
the whole other set (`[batch_size, N]` at a time; memory `O(batch_size N)`), as squared
Euclidean distances `|a|^2 + |b|^2 - 2 a.b` at full float32 matmul precision, clipped at 0; a
point lies in a ball when its squared distance is at most the squared radius. The paper used
50k images of each set.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from gax.metrics.features import FeatureExtractor, Images, compute_features

_HIGHEST = jax.lax.Precision.HIGHEST


class PrecisionRecall(NamedTuple):
  precision: float
  recall: float


def _sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
  """Squared Euclidean distances `[m, n]` between rows of `a [m, d]` and `b [n, d]`."""
  ab = jnp.matmul(a, b.T, precision=_HIGHEST)
  d2 = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * ab
  return jnp.maximum(d2, 0.0)


def _blocks(q: jax.Array, batch_size: int) -> jax.Array:
  """`q [m, d]` zero-padded to whole blocks -> `[ceil(m / batch_size), batch_size, d]`."""
  m = q.shape[0]
  nb = -(-m // batch_size)
  q = jnp.pad(q, ((0, nb * batch_size - m), (0, 0)))
  return q.reshape(nb, batch_size, q.shape[1])


@functools.partial(jax.jit, static_argnames=("k", "batch_size"))
def knn_sq_radii(features: jax.Array, k: int = 3, batch_size: int = 1000) -> jax.Array:
  """Squared distance `[N]` from each row of `features [N, d]` to its k-th nearest other row."""
  n = features.shape[0]
  f = features.astype(jnp.float32)

  def block(q):
    # The k + 1 smallest distances include the point's own (zero) distance to itself.
    neg_smallest, _ = jax.lax.top_k(-_sq_dists(q, f), k + 1)
    return -neg_smallest[:, k]

  return jax.lax.map(block, _blocks(f, batch_size)).reshape(-1)[:n]


@functools.partial(jax.jit, static_argnames=("batch_size",))
def in_any_ball(queries: jax.Array, centres: jax.Array, sq_radii: jax.Array,
                batch_size: int = 1000) -> jax.Array:
  """bool `[M]`: whether each row of `queries [M, d]` lies within some ball (centre row of
  `centres [N, d]`, squared radius `sq_radii [N]`)."""
  m = queries.shape[0]
  c = centres.astype(jnp.float32)

  def block(q):
    return jnp.any(_sq_dists(q, c) <= sq_radii[None, :], axis=1)

  return jax.lax.map(block, _blocks(queries.astype(jnp.float32), batch_size)).reshape(-1)[:m]


def feature_pair(real_features, fake_features, what: str):
  """Both feature sets as float32 `[N, d]` and `[M, d]` arrays, or a `ValueError` naming
  `what` when their ranks or dimensions differ."""
  real = jnp.asarray(real_features, jnp.float32)
  fake = jnp.asarray(fake_features, jnp.float32)
  chex.assert_rank([real, fake], 2)
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"{what}: feature dimensions differ: {real.shape} vs {fake.shape}.")
  return real, fake


def precision_recall_from_features(real_features, fake_features, k: int = 3,
                                   batch_size: int = 1000) -> PrecisionRecall:
  """Improved precision and recall of `fake_features [M, d]` against `real_features [N, d]`.

  Args:
    real_features: features of real images (NumPy or JAX).
    fake_features: features of generated images.
    k: the neighbourhood size of the radii (3 in the paper); each set needs more than k rows.
    batch_size: query rows per distance block.

  Returns:
    `PrecisionRecall(precision, recall)`, each in [0, 1].
  """
  real, fake = feature_pair(real_features, fake_features, "precision_recall")
  if k < 1 or min(real.shape[0], fake.shape[0]) <= k:
    raise ValueError(f"precision_recall: k must be >= 1 and each set must have more than k = "
                     f"{k} rows; got {real.shape[0]} real and {fake.shape[0]} fake.")
  batch_size = int(min(batch_size, max(real.shape[0], fake.shape[0])))
  real_r2 = knn_sq_radii(real, k=k, batch_size=batch_size)
  fake_r2 = knn_sq_radii(fake, k=k, batch_size=batch_size)
  precision = jnp.mean(in_any_ball(fake, real, real_r2, batch_size=batch_size))
  recall = jnp.mean(in_any_ball(real, fake, fake_r2, batch_size=batch_size))
  return PrecisionRecall(float(precision), float(recall))


def precision_recall_from_images(extractor: FeatureExtractor, real: Images, fake: Images,
                                 k: int = 3, batch_size: int = 100) -> PrecisionRecall:
  """Improved precision and recall of image sets `fake` against `real` under `extractor`."""
  real_f, _ = compute_features(extractor, real, batch_size)
  fake_f, _ = compute_features(extractor, fake, batch_size)
  return precision_recall_from_features(real_f, fake_f, k)


__all__ = ["PrecisionRecall", "knn_sq_radii", "in_any_ball", "feature_pair",
           "precision_recall_from_features", "precision_recall_from_images"]
