"""scikit-learn's 1797 UCI digits (offline) and the stacked-digits analogue of Stacked MNIST."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from gax import checks
from gax.data.arrays import ArraySource, _limited, resize_images
from gax.data.core import DATASETS, _check_size, _flag


def load_digits_images() -> Tuple[np.ndarray, np.ndarray]:
  """The 1797 UCI handwritten digits from scikit-learn's package data, offline.

  Returns:
    `(images uint8 [1797, 8, 8, 1], labels int32 [1797])`; grey levels 0..16 mapped to 0..255.
  """
  try:
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "The 'digits' dataset is read from scikit-learn's bundled data: pip install scikit-learn"
    ) from e
  d = load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return images, d.target.astype(np.int32)


DIGITS_CLASSES = 10


@DATASETS.register("digits")
def digits(batch_size: int, n_critic: int = 1, seed: int = 0, image_size: int = 16,
           labels: bool = False, fraction: float = 1.0) -> ArraySource:
  """The 1797 sklearn digits at `image_size`; `fraction` < 1 trains on the first `fraction`
  of each class (`class_fraction`) and evaluates against all 1797."""
  images, digit = load_digits_images()
  return _limited(resize_images(images, image_size), digit, fraction, batch_size, n_critic,
                  seed, _flag(labels, "data.labels"), DIGITS_CLASSES)


STACKED_DIGITS_MODES = DIGITS_CLASSES ** 3


def stacked_digits_images(num_examples: int = 25600, image_size: int = 16,
                          seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """Stacked digits: each example stacks 3 digit images as its R, G, B channels.

  The three images of every example are drawn uniformly with replacement from the 1797 sklearn
  digits (resized to `image_size`) by `np.random.default_rng(seed)`, so the set is a
  deterministic function of `(num_examples, image_size, seed)`. It mirrors Stacked MNIST
  (Metz et al. 2017, Unrolled GAN; Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN):
  1000 modes, one per digit triple; `gax.metrics.stacked` counts them in samples.

  Returns:
    `(images uint8 [num_examples, image_size, image_size, 3], labels int32 [num_examples])`
    with label `100 * d_R + 10 * d_G + d_B` (the digits of channels 0, 1, 2), in [0, 1000).
  """
  checks.integer(num_examples, "data.num_examples")
  size = _check_size(image_size)
  if size is None:
    raise ValueError("stacked_digits needs an image_size.")
  images, digit = load_digits_images()
  return stack_triples(resize_images(images, size), digit, num_examples, seed)


def stack_triples(images: np.ndarray, digit: np.ndarray, num_examples: int,
                  seed: int) -> Tuple[np.ndarray, np.ndarray]:
  """`num_examples` triples of the single-channel `images` (`[N, S, S, 1]`, classes `digit`),
  drawn uniformly with replacement by `np.random.default_rng(seed)` and stacked as R, G, B;
  labels `100 d_R + 10 d_G + d_B`. Stacked digits and Stacked MNIST are this of their digits."""
  idx = np.random.default_rng(seed).integers(0, len(images), size=(int(num_examples), 3))
  stacked = np.stack([images[idx[:, c], ..., 0] for c in range(3)], axis=-1)
  d = digit[idx]
  labels = (100 * d[:, 0] + 10 * d[:, 1] + d[:, 2]).astype(np.int32)
  return np.ascontiguousarray(stacked), labels


@DATASETS.register("stacked_digits")
def stacked_digits(batch_size: int, n_critic: int = 1, seed: int = 0, image_size: int = 16,
                   num_examples: int = 25600, labels: bool = False) -> ArraySource:
  """`stacked_digits_images(num_examples, image_size, seed)` (default 25600 examples, ~25.6 per
  mode, 19.7 MB at 16x16) served by `ArraySource`; labels: the digit triple, 1000 classes."""
  images, triple = stacked_digits_images(num_examples, image_size, seed)
  if not _flag(labels, "data.labels"):
    return ArraySource(images, batch_size, n_critic, seed)
  return ArraySource(images, batch_size, n_critic, seed, labels=triple,
                     num_classes=STACKED_DIGITS_MODES)


__all__ = ["load_digits_images", "DIGITS_CLASSES", "digits", "STACKED_DIGITS_MODES",
           "stacked_digits_images", "stack_triples", "stacked_digits"]
