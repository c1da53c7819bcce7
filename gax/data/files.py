"""Folders of image files (png, jpg, ...), decoded with PIL into host memory."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from gax.data.arrays import _cache_path, _cached, _source, _stack_same_size, fit_image
from gax.data.core import REFERENCE_SIZE, DATASETS, _cap, _check_size, _flag, _workers, streams


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


def check_channels(channels: Any) -> None:
  """Raises unless `channels` (`data.channels`) is 1 (grey) or 3 (RGB)."""
  if channels not in (1, 3):
    raise ValueError(f"data.channels must be 1 (grey) or 3 (RGB), got {channels!r}.")


def _read_image_file(path: str, channels: int, image_size: Optional[int], crop: bool) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  try:
    with Image.open(path) as im:
      im = im.convert("L" if channels == 1 else "RGB")
  except Exception as e:  # PIL raises several types for a damaged or foreign file
    raise ValueError(f"Could not read image file {path!r}: {e}") from e
  out = np.asarray(fit_image(im, image_size, crop), np.uint8)
  return out.reshape(*out.shape[:2], channels)


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
  check_channels(channels)
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
           cache: Union[bool, str] = False, loader: str = "memory", threads: int = 8,
           workers: int = 0, buffer: int = 0, reference_size: int = REFERENCE_SIZE) -> Any:
  """The images under the directory `path` (`load_folder_images`), reshuffled every epoch.

  `cache=True` keeps the decoded array in `<path>.gax-<options>.npz` beside the directory (a
  string: that file instead) and reuses it while the files and options are unchanged.
  `loader="grain"` streams the files instead of decoding them into memory
  (`gax.data.stream.folder_grain`, options as for the 'tfds' source).
  """
  streaming = dict(threads=threads, workers=workers, buffer=buffer,
                   reference_size=reference_size)
  if streams(loader, streaming, dict(max_examples=max_examples is not None, cache=cache),
             "keep the files to train on under data.path"):
    from gax.data import stream  # pylint: disable=g-import-not-at-top  # stream imports this
    return stream.folder_grain(path, batch_size, n_critic, seed, image_size=image_size,
                               channels=channels, crop=crop, labels=labels,
                               **{**streaming, "buffer": buffer or None})
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


__all__ = ["IMAGE_EXTENSIONS", "list_image_files", "check_channels", "load_folder_images",
           "folder"]
