"""Images held in host memory: `ArraySource` (random-access batches, reshuffled every epoch),
the user's `.npy` / `.npz` arrays, and the crop / resize / cache helpers the in-memory
loaders share."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from gax.data.core import Batch, DATASETS, _flag, check_images, check_labels, labelled


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

  # `get` slices host memory: fetched in the train loop's thread (`gax.data.fetch_size`).
  prefetch_size: ClassVar[int] = 0

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


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
  """Bicubic resize of uint8 `[N, H, W, C]` images to `[N, size, size, C]`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if images.shape[1:3] == (size, size):
    return images
  out = [np.asarray(Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).resize(
      (size, size), Image.BICUBIC)) for im in images]
  return np.stack(out).reshape(len(images), size, size, images.shape[-1])


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


def _source(images: np.ndarray, labels: Optional[np.ndarray], num_classes: Optional[int],
            class_names: Tuple[str, ...], batch_size: int, n_critic: int, seed: int,
            want_labels: bool, reference_images: Optional[np.ndarray] = None) -> ArraySource:
  """The `ArraySource` of loaded images (with their labels if `want_labels`)."""
  if not want_labels:
    return ArraySource(images, batch_size, n_critic, seed, reference_images=reference_images)
  return ArraySource(images, batch_size, n_critic, seed, labels=labels, num_classes=num_classes,
                     class_names=tuple(class_names) or None, reference_images=reference_images)


__all__ = ["ArraySource", "resize_images", "class_fraction", "load_array_images",
           "load_array_labels", "array", "fit_image", "fit_array", "Loaded"]
