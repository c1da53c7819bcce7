"""Fréchet Inception Distance (Heusel et al. 2017, "GANs trained by a two time-scale update
rule converge to a local Nash equilibrium").

FID is the Fréchet (2-Wasserstein) distance between Gaussians fitted to the features of two
image sets:

  FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}).

Statistics. `FeatureStats` accumulates the mean and covariance batch by batch, so any number
of images (e.g. 50k generator samples) streams through with one batch in memory. For each
batch the device computes, in float32 (jit-compiled, full-precision matmul), the sum and the
scatter `sum (x - s)(x - s)^T` of the features shifted by `s`, the running mean so far (the
batch's own mean for the first batch); the host turns them into the batch mean and centred
scatter in float64 and merges them with the pairwise update of Chan, Golub & LeVeque (1979).
Shifting by a close estimate of the mean avoids the cancellation of `E[x x^T] - mu mu^T` and
keeps the float32 sums small; float64 merging keeps 50k-sample totals exact enough. The
covariance uses `N - 1` (as `numpy.cov`, used by the reference implementations).

Distance. `Tr((S_1 S_2)^{1/2})` is computed without the non-symmetric `sqrtm(S_1 S_2)` of the
reference code: with `R = S_1^{1/2}` (symmetric, from an eigendecomposition of `S_1`), `S_1 S_2
= R (R S_2)` has the same non-zero eigenvalues as `M = R S_2 R`, which is symmetric positive
semi-definite, so `Tr((S_1 S_2)^{1/2}) = sum_i sqrt(lambda_i(M))` (the nuclear norm of
`S_1^{1/2} S_2^{1/2}`), with two `eigh` calls that are stable for singular covariances (fewer
samples than features) and never return complex values. Eigenvalues that rounding leaves
slightly negative are clipped to 0. `fid_from_stats` runs this in float64 on the host CPU
through JAX (`jax.enable_x64` locally): in float32 the square roots of tiny eigenvalues of a
2048-d covariance carry errors that add up to a visible bias (about 3e-4 of the value for 512-d
covariances from 300 samples; float32 on the device stays available with `float64=False`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from gax.metrics.features import FeatureExtractor, Images, iter_features

_HIGHEST = jax.lax.Precision.HIGHEST


@jax.jit
def shifted_moments(features: jax.Array, shift: jax.Array):
  """`(sum_i (x_i - shift) [F], sum_i (x_i - shift)(x_i - shift)^T [F, F])` of a batch of
  features `[B, F]`, in float32."""
  xs = features.astype(jnp.float32) - shift.astype(jnp.float32)
  return jnp.sum(xs, axis=0), jnp.matmul(xs.T, xs, precision=_HIGHEST)


@dataclasses.dataclass
class FeatureStats:
  """Streaming mean and covariance of features, in float64 on the host.

  Attributes:
    count: number of feature vectors seen.
    mean: float64 `[F]` mean (None before the first update).
    scatter: float64 `[F, F]` `sum_i (x_i - mean)(x_i - mean)^T`.
  """

  count: int = 0
  mean: Optional[np.ndarray] = None
  scatter: Optional[np.ndarray] = None

  @property
  def dim(self) -> Optional[int]:
    return None if self.mean is None else int(self.mean.shape[0])

  def update(self, features) -> "FeatureStats":
    """Adds a batch `[B, F]` (NumPy or JAX); returns self."""
    if features.ndim != 2:
      raise ValueError(f"FeatureStats.update: features must be [B, F], got {features.shape}.")
    n = int(features.shape[0])
    if n == 0:
      return self
    if self.mean is not None and features.shape[1] != self.dim:
      raise ValueError(f"FeatureStats.update: features have {features.shape[1]} dimensions, the "
                       f"statistics {self.dim}.")
    features = jnp.asarray(features)
    # Shift by the running mean (the first batch's float32 mean at first): the shifted values
    # are small, so their float32 sums are accurate; the shift itself is added back in float64.
    shift = (jnp.mean(features.astype(jnp.float32), axis=0) if self.count == 0 else
             jnp.asarray(self.mean, jnp.float32))
    shift64 = np.asarray(shift, np.float64)
    total, scatter = (np.asarray(a, np.float64) for a in shifted_moments(features, shift))
    offset = total / n  # batch mean - shift
    return self._merge(n, shift64 + offset, scatter - n * np.outer(offset, offset))

  def merge(self, other: "FeatureStats") -> "FeatureStats":
    """Adds the statistics of `other` (of disjoint samples); returns self."""
    if other.count == 0:
      return self
    if self.mean is not None and other.dim != self.dim:
      raise ValueError(f"FeatureStats.merge: {other.dim} vs {self.dim} dimensions.")
    return self._merge(other.count, other.mean, other.scatter)

  def _merge(self, n: int, mean_b: np.ndarray, scatter_b: np.ndarray) -> "FeatureStats":
    if self.count == 0:
      self.count, self.mean, self.scatter = n, mean_b.copy(), scatter_b.copy()
      return self
    total = self.count + n
    delta = mean_b - self.mean
    self.scatter = self.scatter + scatter_b + np.outer(delta, delta) * (self.count * n / total)
    self.mean = self.mean + delta * (n / total)
    self.count = total
    return self

  def covariance(self) -> np.ndarray:
    """float64 `[F, F]` sample covariance (`N - 1` normalisation)."""
    if self.count < 2:
      raise ValueError(f"A covariance needs at least 2 samples, have {self.count}.")
    return self.scatter / (self.count - 1)

  def save(self, path: str) -> None:
    """Writes `count`, `mean`, `scatter` to the `.npz` at `path` (e.g. reference statistics of
    a dataset, computed once)."""
    if self.count == 0:
      raise ValueError("FeatureStats.save: no samples yet.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
      np.savez(f, count=np.int64(self.count), mean=self.mean, scatter=self.scatter)

  @classmethod
  def load(cls, path: str) -> "FeatureStats":
    """The statistics saved at `path` by `save`."""
    if not os.path.isfile(path):
      raise FileNotFoundError(f"No feature statistics at {path!r}.")
    with np.load(path, allow_pickle=False) as z:
      return cls(int(z["count"]), np.asarray(z["mean"], np.float64),
                 np.asarray(z["scatter"], np.float64))

  @classmethod
  def from_features(cls, features, batch_size: int = 5000) -> "FeatureStats":
    """The statistics of features `[N, F]`, accumulated `batch_size` rows at a time."""
    stats = cls()
    for start in range(0, features.shape[0], batch_size):
      stats.update(features[start:start + batch_size])
    return stats


def feature_statistics(extractor: FeatureExtractor, data: Images,
                       batch_size: int = 100) -> FeatureStats:
  """`FeatureStats` of the `extractor` features of `data` (images `[N, H, W, C]` or an iterable
  of image batches; see `gax.metrics.features.iter_features`)."""
  stats = FeatureStats()
  for feats, _ in iter_features(extractor, data, batch_size):
    stats.update(feats)
  if stats.count < 2:
    raise ValueError(f"{extractor.name}: FID statistics need at least 2 images, got "
                     f"{stats.count}.")
  return stats


def _sym_sqrt(a: jax.Array) -> jax.Array:
  w, v = jnp.linalg.eigh(a)
  return jnp.matmul(v * jnp.sqrt(jnp.clip(w, 0.0)), v.T, precision=_HIGHEST)


def trace_sqrt_product(sigma1: jax.Array, sigma2: jax.Array) -> jax.Array:
  """`Tr((S_1 S_2)^{1/2}) = sum_i sqrt(lambda_i(S_1^{1/2} S_2 S_1^{1/2}))` for symmetric PSD
  `S_1, S_2 [F, F]` (see the module docstring)."""
  r = _sym_sqrt(sigma1)
  m = jnp.matmul(jnp.matmul(r, sigma2, precision=_HIGHEST), r, precision=_HIGHEST)
  m = 0.5 * (m + m.T)
  return jnp.sum(jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(m), 0.0)))


def frechet_distance(mu1: jax.Array, sigma1: jax.Array, mu2: jax.Array,
                     sigma2: jax.Array) -> jax.Array:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in the inputs' dtype.

  Args:
    mu1, mu2: means `[F]`.
    sigma1, sigma2: symmetric positive semi-definite covariances `[F, F]`.

  Returns:
    scalar `||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})`; traceable and
    jit-compatible (`fid_from_stats` is the float64 host entry point).
  """
  chex.assert_rank([mu1, sigma1, mu2, sigma2], [1, 2, 1, 2])
  f = mu1.shape[0]
  chex.assert_shape([mu2], (f,))
  chex.assert_shape([sigma1, sigma2], (f, f))
  diff = mu1 - mu2
  return (jnp.dot(diff, diff, precision=_HIGHEST) + jnp.trace(sigma1) + jnp.trace(sigma2)
          - 2.0 * trace_sqrt_product(sigma1, sigma2))


_frechet_distance_jit = jax.jit(frechet_distance)


def _host_device() -> jax.Device:
  try:
    return jax.devices("cpu")[0]
  except RuntimeError:  # JAX_PLATFORMS excludes the CPU: use the default device.
    return jax.devices()[0]


def frechet_distance_float64(mu1, sigma1, mu2, sigma2) -> float:
  """`frechet_distance` of NumPy/JAX inputs, computed in float64 on the CPU backend."""
  dev = _host_device()
  with jax.enable_x64(True):
    args = [jax.device_put(np.asarray(a, np.float64), dev) for a in (mu1, sigma1, mu2, sigma2)]
    return float(_frechet_distance_jit(*args))


def fid_from_stats(stats1: FeatureStats, stats2: FeatureStats, float64: bool = True) -> float:
  """FID between two sets of feature statistics.

  Args:
    stats1, stats2: statistics of the same feature network.
    float64: compute in float64 on the host CPU (default; for 2048-d features a few seconds
      on a multi-core CPU), or else in float32 on the default device (fast on accelerators;
      with singular 2048-d covariances expect errors around 1e-3 relative).
  """
  for i, s in enumerate((stats1, stats2), 1):
    if s.count < 2:
      raise ValueError(f"fid_from_stats: statistics {i} have {s.count} samples; need >= 2.")
  if stats1.dim != stats2.dim:
    raise ValueError(f"fid_from_stats: feature dimensions differ ({stats1.dim} vs "
                     f"{stats2.dim}); were they computed with the same extractor?")
  args = (stats1.mean, stats1.covariance(), stats2.mean, stats2.covariance())
  if float64:
    return frechet_distance_float64(*args)
  return float(_frechet_distance_jit(*(jnp.asarray(a, jnp.float32) for a in args)))


def fid_from_features(features1, features2) -> float:
  """FID between two feature arrays `[N1, F]` and `[N2, F]`."""
  return fid_from_stats(FeatureStats.from_features(features1),
                        FeatureStats.from_features(features2))


def fid_from_images(extractor: FeatureExtractor, data1: Images, data2: Images,
                    batch_size: int = 100) -> float:
  """FID between two image sets under `extractor` (images `[N, H, W, C]` uint8 or float in
  [-1, 1], or iterables of batches). Compare scores only at equal sample counts: FID is
  biased upwards at small N (Bińkowski et al. 2018; Chong & Forsyth 2020)."""
  return fid_from_stats(feature_statistics(extractor, data1, batch_size),
                        feature_statistics(extractor, data2, batch_size))


__all__ = ["shifted_moments", "FeatureStats", "feature_statistics", "trace_sqrt_product",
           "frechet_distance", "frechet_distance_float64", "fid_from_stats",
           "fid_from_features", "fid_from_images"]
