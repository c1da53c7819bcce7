"""Gaussian mixtures in the plane: the ring and grid benchmarks of Unrolled GAN and PacGAN."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Tuple

import numpy as np

from gax.data.core import Batch, DATASETS, _flag, labelled


@dataclasses.dataclass
class MixtureSource:
  """Samples of an isotropic Gaussian mixture with equal weights.

  Attributes:
    centers: `[K, D]` float32 mode centres.
    std: per-coordinate standard deviation of every mode.
    labels: also yield each sample's mode index (`num_classes` = K) as its label.
  """

  # `get` slices host memory: fetched in the train loop's thread (`gax.data.fetch_size`).
  prefetch_size: ClassVar[int] = 0

  centers: np.ndarray
  std: float
  batch_size: int
  n_critic: int = 1
  seed: int = 0
  labels: bool = False

  @property
  def element_shape(self) -> Tuple[int, ...]:
    return (self.centers.shape[1],)

  @property
  def num_classes(self) -> int:
    """The number of modes with labels on, else 0."""
    return len(self.centers) if self.labels else 0

  def sample_with_modes(self, rng: np.random.Generator, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """`(points float32 [n, D], mode indices int32 [n])`."""
    idx = rng.integers(len(self.centers), size=n)
    x = self.centers[idx] + self.std * rng.standard_normal((n, self.centers.shape[1]))
    return x.astype(np.float32), idx.astype(np.int32)

  def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
    return self.sample_with_modes(rng, n)[0]

  def get(self, step: int) -> Batch:
    """`[n_critic, batch_size, D]` float32 samples for `step` (with labels on, a dict with
    them as `x` and the mode indices `[n_critic, batch_size]` as `y`)."""
    rng = np.random.default_rng([self.seed, step])
    x, idx = self.sample_with_modes(rng, self.n_critic * self.batch_size)
    x = x.reshape(self.n_critic, self.batch_size, -1)
    if not self.labels:
      return x
    return labelled(x, idx.reshape(self.n_critic, self.batch_size))


def ring_centers(num_modes: int = 8, radius: float = 2.0) -> np.ndarray:
  """`[num_modes, 2]` centres evenly spaced on a circle."""
  t = 2 * np.pi * np.arange(num_modes) / num_modes
  return (radius * np.stack([np.cos(t), np.sin(t)], -1)).astype(np.float32)


def grid_centers(side: int = 5, spacing: float = 2.0) -> np.ndarray:
  """`[side^2, 2]` centres on a square grid centred at 0 ({-4, ..., 4}^2 for side 5)."""
  c = spacing * (np.arange(side) - (side - 1) / 2)
  return np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)


@DATASETS.register("ring")
def ring(batch_size: int, n_critic: int = 1, seed: int = 0, num_modes: int = 8,
         radius: float = 2.0, std: float = 0.02, labels: bool = False) -> MixtureSource:
  return MixtureSource(ring_centers(num_modes, radius), std, batch_size, n_critic, seed,
                       labels=_flag(labels, "data.labels"))


@DATASETS.register("grid")
def grid(batch_size: int, n_critic: int = 1, seed: int = 0, side: int = 5,
         spacing: float = 2.0, std: float = 0.05, labels: bool = False) -> MixtureSource:
  return MixtureSource(grid_centers(side, spacing), std, batch_size, n_critic, seed,
                       labels=_flag(labels, "data.labels"))


__all__ = ["MixtureSource", "ring_centers", "grid_centers", "ring", "grid"]
