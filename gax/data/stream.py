"""Datasets streamed through Grain: data larger than host memory.

`GrainSource` keeps the contract of every gax source, `get(step) -> [n_critic, B, ...]`, a
deterministic function of the step and the seed, but holds no images: each step's examples
are read from a prepared TFDS split's array_record files (`tfds_grain`: `tfds.data_source`,
random access without TensorFlow) or from image files (`folder_grain`), decoded and resized
by Grain's reading threads (`threads`) or worker processes (`workers`), a bounded number of
examples ahead (`buffer`). Host memory is the buffers and the decoded evaluation sample, not
the dataset.

Order: Grain's global shuffle of the split, a new permutation every epoch
(`MapDataset.shuffle(seed).repeat()`); the examples of step s are positions
`[s n, (s + 1) n)` of that endless order, `n = n_critic * batch_size`, as for `ArraySource`
(which draws its own permutations: the two give different, equally uniform orders).

Resume. The pipeline is a Grain `MapDataset` read by position, so the iterator's whole state
is the position of the next example, `step * n`: Grain's own checkpointable state for this
dataset is `{"next_index": step * n}` (`iterator_state`). gax restores the step from the Orbax
checkpoint and `get(step)` starts the iterator there, so a resumed run reads exactly the
batches an uninterrupted one would. Saving Grain's state as a second checkpoint item would
store the same number twice, free to disagree with the step it was saved beside; gax derives
it instead, and `tests/test_stream.py` checks both the state and the resumed losses.

Several processes (`jax.distributed`): `with_rows(rows)` is the source that reads only the
rows of each global batch that this process's devices hold (`gax.parallel.process_share`), so
each host decodes its shard only and the hosts' shards are disjoint.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from gax import checks
from gax.data.arrays import fit_array
from gax.data.core import REFERENCE_SIZE, _check_size, _flag, _workers, check_labels, labelled
from gax.data.files import _read_image_file, check_channels, list_image_files
from gax.data.tfds import (_convert_command, _lookup, _stored_as, check_tfds_image_feature,
                           raw_records, tfds_builder, tfds_label_classes)

def _import_grain():
  try:
    import grain  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("data.loader='grain' streams the dataset through Grain: pip install "
                      "grain") from e
  return grain


class _Positions:
  """Local example j of one process -> its position in the global order: step `j // k`,
  critic step and row from `j % k` (`k = n_critic * len(rows)`). An endless sequence."""

  def __init__(self, n_critic: int, batch_size: int, rows: np.ndarray):
    self.n = int(n_critic) * int(batch_size)
    self.offsets = (np.arange(int(n_critic))[:, None] * int(batch_size)
                    + np.asarray(rows, np.int64)[None, :]).reshape(-1)

  def __len__(self) -> int:
    return sys.maxsize

  def __getitem__(self, j: int) -> int:
    step, i = divmod(int(j), len(self.offsets))
    return step * self.n + int(self.offsets[i])


class _Decode:
  """A raw array_record record -> `(uint8 [H, W, C] image, int label)`, fitted to
  `image_size`. A class (not a closure) so that Grain's worker processes can pickle it."""

  def __init__(self, features: Any, image_key: str, label_key: str, labels: bool,
               image_size: Optional[int], crop: bool):
    self.features, self.image_key, self.label_key = features, image_key, label_key
    self.labels, self.image_size, self.crop = labels, image_size, crop

  def __call__(self, record: bytes) -> Tuple[np.ndarray, int]:
    example = self.features.deserialize_example_np(record)
    image = fit_array(np.asarray(_lookup(example, self.image_key)), self.image_size, self.crop)
    return image, (int(_lookup(example, self.label_key)) if self.labels else 0)


class _DecodeFile:
  """A `(path relative to root, label)` record -> `(uint8 [H, W, C] image, label)`, as the
  in-memory `folder` loader decodes it (`gax.data.files`)."""

  def __init__(self, root: str, channels: int, labels: bool, image_size: Optional[int],
               crop: bool):
    self.root, self.channels, self.labels = root, channels, labels
    self.image_size, self.crop = image_size, crop

  def __call__(self, record: Tuple[str, int]) -> Tuple[np.ndarray, int]:
    path, label = record
    return (_read_image_file(os.path.join(self.root, path), self.channels, self.image_size,
                             self.crop), int(label))


class _Read:
  """Position -> the decoded example at that place of `order` (a sequence of records: the
  shuffled, repeated split, or the split itself)."""

  def __init__(self, order: Any, decode: _Decode):
    self.order, self.decode = order, decode

  def __call__(self, position: int) -> Tuple[np.ndarray, int]:
    return self.decode(self.order[position])


class GrainSource:
  """Random-access records (a TFDS array_record split, a folder's image files) streamed
  through Grain and decoded by `decode(record) -> (image, label)`; see the module docstring.

  Attributes:
    batch_size, n_critic, seed: as for `ArraySource`; `batch_size` is the global batch.
    rows: the rows of each global batch this source reads (default all of them).
    num_classes, class_names: with `labels`, the label feature's classes (else 0, ()).
    element_shape: `(H, W, C)` of the decoded, fitted images.
    num_examples: the split's size.
  """

  def __init__(self, records: Any, decode: _Decode, *, batch_size: int, n_critic: int = 1,
               seed: int = 0, rows: Optional[Sequence[int]] = None, num_classes: int = 0,
               class_names: Tuple[str, ...] = (), threads: Optional[int] = None,
               workers: int = 0, buffer: Optional[int] = None,
               reference_size: int = REFERENCE_SIZE, name: str = "dataset"):
    self._grain = _import_grain()
    self.records, self.decode, self.name = records, decode, name
    self.batch_size = checks.integer(batch_size, "data.batch_size")
    self.n_critic = checks.integer(n_critic, "n_critic")
    self.seed = int(seed)
    self.num_examples = len(records)
    if self.num_examples < self.batch_size:
      raise ValueError(f"{name} has {self.num_examples} examples, fewer than one batch of "
                       f"{self.batch_size}.")
    self.rows = np.arange(self.batch_size) if rows is None else np.asarray(rows, np.int64)
    if not len(self.rows) or self.rows.min() < 0 or self.rows.max() >= self.batch_size:
      raise ValueError(f"rows must be a non-empty subset of [0, {self.batch_size}), got "
                       f"{self.rows}.")
    self.labels_on = bool(decode.labels)
    self.num_classes = int(num_classes) if self.labels_on else 0
    self.class_names = tuple(class_names) if self.labels_on else ()
    self.threads = _workers() if threads is None else checks.integer(
        threads, "data.threads", minimum=0)
    self.workers = checks.integer(workers, "data.workers", minimum=0)
    self.per_step = self.n_critic * len(self.rows)
    self._buffer_option = buffer
    self.buffer = 2 * self.per_step if buffer is None else checks.integer(buffer, "data.buffer")
    self.reference_size = checks.integer(reference_size, "data.reference_size")
    first, _ = decode(records[0])
    self.element_shape = tuple(int(d) for d in first.shape)
    order = self._grain.MapDataset.source(records).shuffle(seed=self.seed).repeat()
    positions = _Positions(self.n_critic, self.batch_size, self.rows)
    self._examples = self._grain.MapDataset.source(positions).map(_Read(order, decode))
    self._iter, self._next = None, None
    self._reference: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None

  def with_rows(self, rows: Sequence[int]) -> "GrainSource":
    """This source reading only `rows` of each global batch (one process's share)."""
    return GrainSource(self.records, self.decode, batch_size=self.batch_size,
                       n_critic=self.n_critic, seed=self.seed, rows=rows,
                       num_classes=self.num_classes, class_names=self.class_names,
                       threads=self.threads, workers=self.workers, buffer=self._buffer_option,
                       reference_size=self.reference_size, name=self.name)

  def iterator_state(self, step: int) -> Dict[str, int]:
    """Grain's iterator state before `step`: the position of its first example."""
    return {"next_index": int(step) * self.per_step}

  def _iterator(self, step: int):
    grain = self._grain
    ds = self._examples.slice(slice(self.iterator_state(step)["next_index"], None))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.threads,
                                              prefetch_buffer_size=self.buffer))
    if self.workers:
      from absl import flags  # pylint: disable=g-import-not-at-top
      if not flags.FLAGS.is_parsed():
        # Grain <= 0.2.18 reads an absl flag in its workers and fails when the program never
        # parsed flags (a library or notebook user; google/grain#1355, fixed by #1362):
        # mark them parsed with their defaults, as that workaround does.
        flags.FLAGS.mark_as_parsed()
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.workers))
    return iter(ds)

  def get(self, step: int) -> Union[np.ndarray, Dict[str, np.ndarray]]:
    """`[n_critic, len(rows), H, W, C]` uint8 images of `step` (with labels, `{"x", "y"}`).
    Consecutive steps stream from one iterator; any other step starts a new one there."""
    step = int(step)
    if self._iter is None or step != self._next:
      self._close()
      self._iter = self._iterator(step)
    examples = [next(self._iter) for _ in range(self.per_step)]
    self._next = step + 1
    for image, _ in examples:
      if image.shape != self.element_shape:
        raise ValueError(f"{self.name}: images have different sizes, {self.element_shape} "
                         f"and {image.shape}; set data.image_size (and data.crop=True to "
                         "center-crop non-square images) to bring them to one size.")
    x = np.stack([im for im, _ in examples]).reshape(
        self.n_critic, len(self.rows), *self.element_shape)
    if not self.labels_on:
      return x
    y = np.asarray([label for _, label in examples], np.int64).reshape(self.n_critic, -1)
    return labelled(x, y)

  def _close(self):
    it, self._iter = self._iter, None
    if it is not None and hasattr(it, "close"):
      it.close()

  def _reference_sample(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    if self._reference is None:
      n = min(self.num_examples, self.reference_size)
      idx = np.sort(np.random.default_rng(0).choice(self.num_examples, n, replace=False))
      ds = self._grain.MapDataset.source(idx.tolist()).map(_Read(self.records, self.decode))
      it = iter(ds.to_iter_dataset(self._grain.ReadOptions(num_threads=self.threads)))
      examples = list(it)
      images = np.stack([im for im, _ in examples])
      labels = None
      if self.labels_on:
        labels = check_labels(np.asarray([y for _, y in examples]), n,
                              self.num_classes or None, self.name)
      self._reference = (images, labels)
    return self._reference

  @property
  def reference_images(self) -> np.ndarray:
    """A fixed random subset of `min(num_examples, reference_size)` decoded examples (the
    same for every seed), the real images of the evaluation: FID's reference statistics
    and the feature classifier's training set."""
    return self._reference_sample()[0]

  @property
  def reference_labels(self) -> Optional[np.ndarray]:
    """The labels of `reference_images` (with labels on), else None."""
    return self._reference_sample()[1] if self.labels_on else None


def tfds_grain(dataset: str, data_dir: str, batch_size: int, n_critic: int = 1, seed: int = 0,
               split: str = "train", image_size: Optional[int] = None, crop: bool = False,
               image_key: str = "image", label_key: str = "label", labels: bool = False,
               threads: int = 8, workers: int = 0, buffer: Optional[int] = None,
               reference_size: int = REFERENCE_SIZE) -> GrainSource:
  """The `GrainSource` of split `split` of the prepared TFDS dataset `dataset` in the local
  `data_dir`, which must be stored as array_record (`tfds build --file_format=array_record`,
  or `prepare_tfds_from_arrays` / `_from_folder`, whose default it is)."""
  image_size, labels = _check_size(image_size), _flag(labels, "data.labels")
  builder = tfds_builder(dataset, data_dir)
  records = raw_records(builder, split)
  if records is None:
    raise ValueError(
        f"data.loader='grain' reads array_record files; TFDS dataset {builder.info.full_name!r}"
        f" is stored as {_stored_as(builder)}. Convert it: {_convert_command(builder)}, or "
        "use data.loader='memory'.")
  features = builder.info.features
  check_tfds_image_feature(features, image_key, dataset)
  num_classes, class_names = 0, ()
  if labels:
    num_classes, class_names = tfds_label_classes(features, label_key, dataset)
    if num_classes is None:
      raise ValueError(f"TFDS feature {label_key!r} of {dataset!r} is an integer without a "
                       "class count, which data.loader='grain' cannot infer without reading "
                       "the whole split; store it as a ClassLabel (prepare_tfds_from_arrays "
                       "does) or use data.loader='memory'.")
  decode = _Decode(features, image_key, label_key, labels, image_size, bool(crop))
  return GrainSource(records, decode, batch_size=batch_size, n_critic=n_critic, seed=seed,
                     num_classes=num_classes, class_names=class_names, threads=threads,
                     workers=workers, buffer=buffer, reference_size=reference_size,
                     name=f"TFDS dataset {dataset!r} split {split!r}")


def folder_grain(path: str, batch_size: int, n_critic: int = 1, seed: int = 0,
                 image_size: Optional[int] = None, channels: int = 3, crop: bool = False,
                 labels: bool = False, threads: int = 8, workers: int = 0,
                 buffer: Optional[int] = None,
                 reference_size: int = REFERENCE_SIZE) -> GrainSource:
  """The `GrainSource` of the image files under `path` (`gax.data.list_image_files`, one
  subdirectory per class with `labels`), decoded as the in-memory `folder` loader does."""
  check_channels(channels)
  labels = _flag(labels, "data.labels")
  files, y, class_names = list_image_files(path, labels)
  records = list(zip(files, [0] * len(files) if y is None else y.tolist()))
  decode = _DecodeFile(path, channels, labels, _check_size(image_size), bool(crop))
  return GrainSource(records, decode, batch_size=batch_size, n_critic=n_critic, seed=seed,
                     num_classes=len(class_names) if labels else 0, class_names=class_names,
                     threads=threads, workers=workers, buffer=buffer,
                     reference_size=reference_size, name=f"The images under {path!r}")


__all__ = ["GrainSource", "tfds_grain", "folder_grain"]
