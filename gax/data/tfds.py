"""TFDS datasets from a local, already prepared `data_dir` (never downloaded), read into host
memory; and writing local TFDS datasets from arrays or folders (`prepare_tfds_from_*`)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from gax.data.arrays import (Loaded, _cache_path, _cached, _source, _stack_same_size,
                             fit_array)
from gax.data.core import (DATASETS, REFERENCE_SIZE, _cap, _check_size, _flag, _workers,
                           check_images, check_labels, streams)
from gax.data.files import load_folder_images



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


def raw_records(builder: Any, split: str) -> Optional[Any]:
  """The serialized records of `split`, random access without TensorFlow (`tfds.data_source`
  of an array_record dataset), or None when the dataset is stored only in a format without
  random access (TFRecord)."""
  tfds = _import_tfds()
  formats = builder.info.available_file_formats()
  if not formats & set(tfds.core.file_adapters.FileFormat.with_random_access()):
    return None
  return builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)


def _stored_as(builder: Any) -> str:
  """The file formats `builder`'s dataset is stored in, e.g. "tfrecord"."""
  formats = builder.info.available_file_formats()
  return ", ".join(sorted(str(getattr(f, "value", f)) for f in formats))


def _convert_command(builder: Any) -> str:
  """The command that rewrites `builder`'s dataset as array_record."""
  return (f"`tfds convert_format --dataset_version_dir={builder.data_path} "
          "--out_file_format=array_record`")


def _tfds_examples(builder: Any, split: str, n: Optional[int], process: Callable[[Any], Any],
                   chunk: int = 1024) -> Iterator[List[Any]]:
  """`process(example)` for the decoded examples of `split` (the first `n`), `chunk` at a
  time, in the stored order."""
  raw = raw_records(builder, split)
  if raw is not None:
    # array_record: random access without TensorFlow. Records are read in order here and
    # decoded (PIL, mostly without the GIL) and processed by a thread pool, one chunk ahead.
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
        f"TFDS dataset {builder.info.full_name!r} is stored as {_stored_as(builder)}, which "
        "only TensorFlow reads: pip install tensorflow, or prepare it again with "
        "--file_format=array_record (read without TensorFlow), e.g. "
        f"{_convert_command(builder)}.") from e
  ds = builder.as_dataset(split=split, shuffle_files=False)
  if n is not None:
    ds = ds.take(n)
  batch = []
  for example in _import_tfds().as_numpy(ds):
    batch.append(process(example))
    if len(batch) == chunk:
      yield batch
      batch = []
  if batch:
    yield batch


def check_tfds_image_feature(features: Any, image_key: str, dataset: str) -> None:
  """Raises unless the feature `image_key` of `dataset` holds uint8 images `[H, W, C]`, C in
  (1, 3)."""
  feat = _feature(features, image_key, "image_key", dataset)
  if np.dtype(feat.np_dtype) != np.uint8 \
      or len(getattr(feat, "shape", ())) != 3 or feat.shape[-1] not in (1, 3):
    raise ValueError(f"TFDS feature {image_key!r} of {dataset!r} is {feat}, not uint8 images "
                     "[H, W, C] with C in (1, 3); set data.image_key.")


def tfds_label_classes(features: Any, label_key: str,
                       dataset: str) -> Tuple[Optional[int], Tuple[str, ...]]:
  """`(number of classes, class names)` of the label feature `label_key`: a `ClassLabel`'s,
  2 for a bool feature, `(None, ())` (infer `max + 1`) for another integer scalar; raises for
  anything else."""
  lfeat = _feature(features, label_key, "label_key", dataset)
  if isinstance(lfeat, _import_tfds().features.ClassLabel):
    return lfeat.num_classes, tuple(lfeat.names or ())
  dtype = np.dtype(lfeat.np_dtype)
  if dtype == np.bool_:
    return 2, ()
  if not np.issubdtype(dtype, np.integer) or tuple(getattr(lfeat, "shape", ())) != ():
    raise ValueError(f"TFDS feature {label_key!r} of {dataset!r} is {lfeat}, not one "
                     "integer class per example; set data.label_key.")
  return None, ()


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
  check_tfds_image_feature(features, image_key, dataset)
  num_classes, class_names = None, ()
  if labels:
    num_classes, class_names = tfds_label_classes(features, label_key, dataset)

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
                 cache: Union[bool, str] = False, loader: str = "memory", threads: int = 8,
                 workers: int = 0, buffer: int = 0, reference_size: int = REFERENCE_SIZE) -> Any:
  """Split `split` of the prepared TFDS dataset `dataset` in the local `data_dir`.

  `loader="memory"` (default): the split decoded once into host memory (`load_tfds_images`)
  and served by `ArraySource`, reshuffled every epoch; `cache=True` keeps the decoded (and
  resized) array in `<data_dir>/gax_cache/` (a string: that file instead), worth it where
  decoding is slow (CelebA's 163k JPEGs).

  `loader="grain"`: the split streamed from its array_record files through Grain
  (`gax.data.stream.GrainSource`), for data larger than host memory: `threads` reading and
  decoding threads, `workers` decoding processes (0: none), `buffer` examples read ahead (0:
  two steps' worth), `reference_size` examples decoded once for the evaluation. A split
  slice ("train[:50000]") takes the place of `max_examples` there.
  """
  streaming = dict(threads=threads, workers=workers, buffer=buffer,
                   reference_size=reference_size)
  if streams(loader, streaming, dict(max_examples=max_examples is not None, cache=cache),
             "slice the split instead (data.split='train[:50000]')"):
    from gax.data import stream  # pylint: disable=g-import-not-at-top  # stream imports this
    return stream.tfds_grain(
        dataset, data_dir, batch_size, n_critic, seed, split=split, image_size=image_size,
        crop=crop, image_key=image_key, label_key=label_key, labels=labels,
        **{**streaming, "buffer": buffer or None})
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


__all__ = ["tfds_prepare_instructions", "tfds_builder", "raw_records",
           "check_tfds_image_feature", "tfds_label_classes", "load_tfds_images", "tfds_dataset",
           "prepare_tfds_from_arrays", "prepare_tfds_from_folder"]
