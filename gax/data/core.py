"""The registry of data sources and the checks every source shares."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import numpy as np

from gax import checks
from gax.registry import Registry


DATASETS: Registry = Registry("dataset")


Batch = Union[np.ndarray, Dict[str, np.ndarray]]


def labelled(x: np.ndarray, y: np.ndarray) -> Dict[str, np.ndarray]:
  """The batch of a source with labels: `{"x": x, "y": y as int32}`."""
  return {"x": x, "y": np.asarray(y, np.int32)}


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


def _flag(value: Any, key: str) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{key} must be True or False, got {value!r}.")
  return bool(value)


def _cap(max_examples: Optional[int]) -> Optional[int]:
  if max_examples is None:
    return None
  return checks.integer(max_examples, "data.max_examples", note=" or None")


def _check_size(image_size: Optional[int]) -> Optional[int]:
  if image_size is None or image_size == 0:
    return None
  return checks.integer(image_size, "data.image_size", note=" or None")


def _workers() -> int:
  return max(1, min(8, os.cpu_count() or 1))


LOADERS = ("memory", "grain")
REFERENCE_SIZE = 10000  # examples a streamed source decodes once for the evaluation
STREAM_DEFAULTS = dict(threads=8, workers=0, buffer=0, reference_size=REFERENCE_SIZE)


def streams(loader: str, streaming: Dict[str, Any], memory_only: Dict[str, Any],
            slice_hint: str) -> bool:
  """Whether a source with `data.loader=loader` streams through Grain (`gax.data.stream`),
  after checking that `streaming` (the Grain options, `STREAM_DEFAULTS` unless set) are only
  set with 'grain' and `memory_only` (options of the in-memory path, falsy unless set) only
  with 'memory'. `slice_hint` says what replaces `max_examples` when streaming."""
  if loader not in LOADERS:
    raise ValueError(f"data.loader must be one of {LOADERS}, got {loader!r}.")
  if loader == "grain":
    given = [k for k, v in memory_only.items() if v]
    if given:
      raise ValueError(f"data.{', data.'.join(given)} belong to data.loader='memory'; with "
                       f"'grain' {slice_hint}.")
    return True
  given = [k for k, v in streaming.items() if v != STREAM_DEFAULTS[k]]
  if given:
    raise ValueError(f"data.{', data.'.join(given)} belong to data.loader='grain'; the "
                     "'memory' loader decodes the whole dataset once.")
  return False

__all__ = ["LOADERS", "REFERENCE_SIZE", "STREAM_DEFAULTS", "streams", "DATASETS", "Batch",
           "labelled", "check_images", "check_labels"]
