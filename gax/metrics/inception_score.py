"""Inception Score (Salimans et al. 2016, "Improved techniques for training GANs", sec. 4).

  IS = exp(E_x KL(p(y | x) || p(y))),  p(y) = E_x p(y | x),

computed, as in the paper's code, on `splits` consecutive equal parts of the samples (the
last `N mod splits` samples are dropped) and reported as the mean and standard deviation
over the parts. IS lies in [1, K] for K classes: 1 when every sample gets the same prediction
(e.g. uniform), K when predictions are confident and spread evenly over the classes.

With the FID Inception network (`gax.metrics.features.inception_v3_from_file`) the logits have
1008 classes as in the TensorFlow graph the paper used; with `gax.metrics.classifier` they are
the dataset's own classes (a "domain" IS, comparable only under that same classifier).
"""

from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from gax.metrics.features import FeatureExtractor, Images, compute_features


@functools.partial(jax.jit, static_argnames=("splits",))
def split_scores(probs: jax.Array, splits: int) -> jax.Array:
  """IS of each of `splits` consecutive parts of class probabilities `[N, K]` -> `[splits]`
  (N must be a multiple of `splits`)."""
  n, k = probs.shape
  p = probs.astype(jnp.float32).reshape(splits, n // splits, k)
  py = jnp.mean(p, axis=1, keepdims=True)
  kl = jnp.sum(xlogy(p, p) - xlogy(p, py), axis=-1)  # 0 log 0 = 0
  return jnp.exp(jnp.mean(kl, axis=1))


def inception_score_from_probs(probs, splits: int = 10) -> Tuple[float, float]:
  """IS `(mean, std)` over `splits` from class probabilities `[N, K]` (rows sum to 1)."""
  probs = np.asarray(probs)
  if probs.ndim != 2:
    raise ValueError(f"Inception Score: probabilities must be [N, K], got {probs.shape}.")
  if probs.min() < 0 or not np.allclose(probs.sum(-1), 1.0, atol=1e-3):
    raise ValueError("Inception Score: probabilities must be >= 0 with rows summing to 1; pass "
                     "logits with inception_score_from_logits instead.")
  return _score(probs, splits)


def inception_score_from_logits(logits, splits: int = 10) -> Tuple[float, float]:
  """IS `(mean, std)` over `splits` from logits `[N, K]` (softmax taken here)."""
  logits = jnp.asarray(logits, jnp.float32)
  if logits.ndim != 2:
    raise ValueError(f"Inception Score: logits must be [N, K], got {logits.shape}.")
  return _score(jax.nn.softmax(logits, axis=-1), splits)


def _score(probs, splits: int) -> Tuple[float, float]:
  n = probs.shape[0]
  if not 1 <= splits <= n:
    raise ValueError(f"Inception Score: splits must be in [1, N = {n}], got {splits}.")
  usable = n - n % splits
  scores = np.asarray(split_scores(jnp.asarray(probs[:usable]), splits=splits), np.float64)
  return float(scores.mean()), float(scores.std())


def inception_score_from_images(extractor: FeatureExtractor, data: Images, splits: int = 10,
                    batch_size: int = 100) -> Tuple[float, float]:
  """IS `(mean, std)` of images under a classifying `extractor` (one with logits)."""
  if not extractor.num_classes:
    raise ValueError(f"Inception Score: feature extractor {extractor.name!r} has no logits.")
  _, logits = compute_features(extractor, data, batch_size)
  return inception_score_from_logits(logits, splits)



__all__ = ["split_scores", "inception_score_from_probs", "inception_score_from_logits",
           "inception_score_from_images"]
