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
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union

import numpy as np

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
  """

  images: np.ndarray
  batch_size: int
  n_critic: int = 1
  seed: int = 0
  labels: Optional[np.ndarray] = None
  num_classes: Optional[int] = None

  def __post_init__(self):
    check_images(self.images, "ArraySource")
    if len(self.images) < self.batch_size:
      raise ValueError(
          f"The dataset has {len(self.images)} examples, fewer than one batch of {self.batch_size}.")
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
    raise ValueError(f"{what}: images must have shape [N, H, W, C] with C in (1, 3), got {images.shape}.")


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


@DATASETS.register("digits")
def digits(batch_size: int, n_critic: int = 1, seed: int = 0, image_size: int = 16,
           labels: bool = False) -> ArraySource:
  images, digit = load_digits_images()
  if not _flag(labels, "data.labels"):
    return ArraySource(resize_images(images, image_size), batch_size, n_critic, seed)
  return ArraySource(resize_images(images, image_size), batch_size, n_critic, seed,
                     labels=digit, num_classes=DIGITS_CLASSES)


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
