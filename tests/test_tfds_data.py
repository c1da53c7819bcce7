"""TFDS datasets from a local data_dir: a dataset written here with TFDS's own builder machinery
is read back through `tfds.builder(name, data_dir=...)`, exactly as users' prepared datasets
are, with no network (any connection attempt fails these tests) and no TensorFlow."""

import importlib.util
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from gax import data

tfds = pytest.importorskip("tensorflow_datasets")


def _no_network(*args, **kwargs):
  raise AssertionError(f"network access attempted: {args}")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  monkeypatch.setattr(socket.socket, "connect", _no_network)
  monkeypatch.setattr(socket.socket, "connect_ex", _no_network)
  monkeypatch.setattr(socket, "create_connection", _no_network)
  monkeypatch.setattr(socket, "getaddrinfo", _no_network)


def _toy(n=40, shape=(8, 8, 3), seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, *shape), dtype=np.uint8), (np.arange(n) % 2).astype(np.int32)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
  """A 40-image, 2-class TFDS dataset 'toy' (train) plus a 10x6 non-square 'toy_wide'."""
  d = str(tmp_path_factory.mktemp("tfds"))
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(socket.socket, "connect", _no_network)
    mp.setattr(socket, "create_connection", _no_network)
    mp.setattr(socket, "getaddrinfo", _no_network)
    images, labels = _toy()
    data.prepare_tfds_from_arrays("toy", d, images, labels, class_names=["cat", "dog"])
    wide, _ = _toy(12, (10, 6, 3), seed=1)
    data.prepare_tfds_from_arrays("toy_wide", d, {"train": wide, "test": wide[:4]})
  return d


def test_missing_catalogue_dataset_is_a_fast_clear_error(tmp_path):
  t0 = time.perf_counter()
  with pytest.raises(FileNotFoundError) as e:
    data.DATASETS.build("tfds", batch_size=8, dataset="mnist", data_dir=str(tmp_path))
  assert time.perf_counter() - t0 < 5.0
  msg = str(e.value)
  assert "not prepared" in msg and "never downloads" in msg
  assert f"tfds build mnist --data_dir={tmp_path} --file_format=array_record" in msg
  assert "download_and_prepare()" in msg and "copy the folder" in msg
  assert list(tmp_path.iterdir()) == []  # nothing written, nothing fetched


def test_other_missing_or_bad_dataset_names_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="(?s)not a dataset of TFDS.s catalogue.*prepare_tfds"):
    data.tfds_builder("my_faces", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="(?s)does not exist.*tfds build cifar10"):
    data.tfds_builder("cifar10", str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="(?s)does not exist.*not a dataset of TFDS"):
    data.tfds_builder("my_faces", str(tmp_path / "nope"))
  with pytest.raises(ValueError, match="data_dir is empty"):
    data.tfds_builder("mnist", "")
  with pytest.raises(ValueError, match="data.dataset is empty"):
    data.DATASETS.build("tfds", batch_size=8, data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="namespaced"):
    data.tfds_builder("huggingface:mnist", str(tmp_path))


def test_local_dataset_round_trips_images_and_labels_exactly(toy_dir):
  images, labels = _toy()
  builder = tfds.builder("toy", data_dir=toy_dir)  # what users (and gax) open
  assert builder.is_prepared()
  got, y, num_classes, class_names = data.load_tfds_images("toy", toy_dir, labels=True)
  np.testing.assert_array_equal(got, images)
  np.testing.assert_array_equal(y, labels)
  assert (num_classes, class_names) == (2, ("cat", "dog"))
  got, y, *_ = data.load_tfds_images("toy", toy_dir, split="train[:10]")
  np.testing.assert_array_equal(got, images[:10])
  assert y is None
  got, *_ = data.load_tfds_images("toy", toy_dir, max_examples=7)
  np.testing.assert_array_equal(got, images[:7])


def test_tfds_source_batches_are_those_of_the_arrays_and_deterministic(toy_dir):
  images, labels = _toy()
  src = data.DATASETS.build("tfds", batch_size=8, n_critic=2, seed=5, dataset="toy",
                            data_dir=toy_dir, labels=True)
  assert src.num_classes == 2 and src.class_names == ("cat", "dog")
  ref = data.ArraySource(images, 8, 2, seed=5, labels=labels)
  for step in (0, 2, 3, 11):  # 16 per step, 40 examples: steps straddle epochs
    a, b = src.get(step), ref.get(step)
    assert a["x"].shape == (2, 8, 8, 8, 3) and a["x"].dtype == np.uint8
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["y"], b["y"])
  again = data.DATASETS.build("tfds", batch_size=8, n_critic=2, seed=5, dataset="toy",
                              data_dir=toy_dir, labels=True)
  np.testing.assert_array_equal(again.get(7)["x"], src.get(7)["x"])
  plain = data.DATASETS.build("tfds", batch_size=8, dataset="toy", data_dir=toy_dir)
  assert isinstance(plain.get(0), np.ndarray) and plain.num_classes == 0


def test_resize_and_center_crop(toy_dir):
  images, _ = _toy()
  small = data.DATASETS.build("tfds", batch_size=4, dataset="toy", data_dir=toy_dir,
                              image_size=4)
  np.testing.assert_array_equal(small.images, data.resize_images(images, 4))
  wide, _ = _toy(12, (10, 6, 3), seed=1)
  got, *_ = data.load_tfds_images("toy_wide", toy_dir, image_size=4, crop=True)
  want = np.stack([data.fit_array(im, 4, True) for im in wide])
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(data.fit_array(wide[0], None, True), wide[0][2:8])  # 6x6 middle
  got, *_ = data.load_tfds_images("toy_wide", toy_dir, split="test")
  np.testing.assert_array_equal(got, wide[:4])


def test_catalogue_builder_reads_a_locally_prepared_dataset(tmp_path):
  """A dataset named like a catalogue entry ('mnist', 3.0.1, its features) is opened by TFDS's
  own MNIST builder class: the path a real `tfds build mnist` output takes."""
  images = np.random.default_rng(2).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
  labels = np.arange(20) % 10
  builder = data.tfds._image_builder_class()(  # pylint: disable=protected-access
      name="mnist", version="3.0.1", splits={"train": (images, labels)}, class_names=None,
      num_classes=10, description="stand-in", data_dir=str(tmp_path),
      file_format="array_record")
  builder.download_and_prepare()
  opened = data.tfds_builder("mnist", str(tmp_path))
  assert type(opened).__name__ == "MNIST"
  src = data.DATASETS.build("tfds", batch_size=5, dataset="mnist", data_dir=str(tmp_path),
                            labels=True, image_size=32)
  assert src.num_classes == 10 and src.element_shape == (32, 32, 1)
  np.testing.assert_array_equal(src.labels, labels)
  np.testing.assert_array_equal(src.images, data.resize_images(images, 32))


def test_feature_keys_are_checked(toy_dir):
  with pytest.raises(KeyError, match="no feature 'img'.*image_key"):
    data.load_tfds_images("toy", toy_dir, image_key="img")
  with pytest.raises(KeyError, match="no feature 'label'"):
    data.load_tfds_images("toy_wide", toy_dir, labels=True)


def test_cache_is_reused(toy_dir, monkeypatch):
  first = data.DATASETS.build("tfds", batch_size=4, dataset="toy", data_dir=toy_dir,
                              labels=True, cache=True)
  monkeypatch.setattr(data.tfds, "load_tfds_images", lambda *a, **k: pytest.fail("cache not used"))
  second = data.DATASETS.build("tfds", batch_size=4, dataset="toy", data_dir=toy_dir,
                               labels=True, cache=True)
  np.testing.assert_array_equal(second.images, first.images)
  np.testing.assert_array_equal(second.labels, first.labels)
  assert (second.num_classes, second.class_names) == (2, ("cat", "dog"))


# Run in a child process in which TensorFlow cannot be imported, as on a machine without it
# (.ci/run installs it for the test below; marking it None in sys.modules would not do, since
# TFDS then takes it for loaded).
NO_TENSORFLOW_CHECK = r"""
import importlib.util, sys
def hidden(name):
  return name == "tensorflow" or name.startswith("tensorflow.")
class NoTensorFlow:  # `import tensorflow` fails ...
  def find_spec(self, name, path=None, target=None):
    if hidden(name):
      raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoTensorFlow())
find_spec = importlib.util.find_spec  # ... and probing for it (etils does) finds nothing
importlib.util.find_spec = lambda name, *a, **k: None if hidden(name) else find_spec(name, *a, **k)
import pytest
import tensorflow_datasets as tfds
from gax import data
# As if the dataset were stored in a format without random access (TFDS's default tfrecord).
tfds.core.file_adapters.FileFormat.with_random_access = classmethod(lambda cls: [])
with pytest.raises(ImportError, match="pip install tensorflow.*array_record"):
  data.load_tfds_images("toy", sys.argv[1])
assert "tensorflow" not in sys.modules
print("NO TENSORFLOW OK")
"""


def _run_child(script, *args):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", script, *args], cwd=root, capture_output=True,
                       text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


def test_tfrecord_datasets_without_tensorflow_name_the_package(toy_dir):
  assert "NO TENSORFLOW OK" in _run_child(NO_TENSORFLOW_CHECK, toy_dir)


# TFRecord (TFDS's default format, what `tfds build` writes unless told otherwise) is read
# through TensorFlow's tf.data. The check runs in a child process so that TensorFlow is never
# imported by the test workers, which keep exercising the TensorFlow-free path above.
TFRECORD_CHECK = r"""
import socket, sys
import numpy as np
def no_network(*args, **kwargs):
  raise AssertionError(f"network access attempted: {args}")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = no_network
from gax import data
import tensorflow_datasets as tfds
d = sys.argv[1]
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
labels = (np.arange(30) % 3).astype(np.int32)
data.prepare_tfds_from_arrays("toy_tfrecord", d, images, labels, file_format="tfrecord")
builder = tfds.builder("toy_tfrecord", data_dir=d)
formats = {str(getattr(f, "value", f)) for f in builder.info.available_file_formats()}
assert formats == {"tfrecord"}, formats
got, y, num_classes, _ = data.load_tfds_images("toy_tfrecord", d, labels=True)
np.testing.assert_array_equal(got, images)
np.testing.assert_array_equal(y, labels)
assert num_classes == 3
src = data.DATASETS.build("tfds", batch_size=5, dataset="toy_tfrecord", data_dir=d,
                          labels=True, max_examples=20)
batch = src.get(0)
assert batch["x"].shape == (1, 5, 8, 8, 3) and batch["x"].dtype == np.uint8
for im, label in zip(batch["x"][0], batch["y"][0]):
  (i,) = [i for i in range(20) if (images[i] == im).all()]
  assert labels[i] == label
assert "tensorflow" in sys.modules  # tf.data did the reading
print("TFRECORD OK")
"""


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="TensorFlow is not installed (.ci/run installs tensorflow-cpu)")
def test_tfrecord_datasets_are_read_through_tensorflow(tmp_path):
  assert "TFRECORD OK" in _run_child(TFRECORD_CHECK, str(tmp_path))



def test_prepare_refuses_catalogue_names_and_existing_datasets(toy_dir, tmp_path):
  images, labels = _toy(8)
  with pytest.raises(ValueError, match="catalogue"):
    data.prepare_tfds_from_arrays("mnist", str(tmp_path), images)
  with pytest.raises(ValueError, match="snake_case"):
    data.prepare_tfds_from_arrays("My Data", str(tmp_path), images)
  with pytest.raises(FileExistsError, match="overwrite=True"):
    data.prepare_tfds_from_arrays("toy", toy_dir, images, labels)
  with pytest.raises(ValueError, match="must be uint8"):
    data.prepare_tfds_from_arrays("floats", str(tmp_path), images.astype(np.float32))
  data.prepare_tfds_from_arrays("mine", str(tmp_path), images)
  data.prepare_tfds_from_arrays("mine", str(tmp_path), images[::-1], overwrite=True)
  got, *_ = data.load_tfds_images("mine", str(tmp_path))
  np.testing.assert_array_equal(got, images[::-1])


def test_prepare_from_folder_keeps_class_names(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  images, labels = _toy(6)
  for i, (im, y) in enumerate(zip(images, labels)):
    (tmp_path / "imgs" / ["ant", "bee"][y]).mkdir(parents=True, exist_ok=True)
    Image.fromarray(im).save(tmp_path / "imgs" / ["ant", "bee"][y] / f"{i}.png")
  data.prepare_tfds_from_folder("bugs", str(tmp_path / "tfds"), str(tmp_path / "imgs"),
                                labels=True)
  src = data.DATASETS.build("tfds", batch_size=2, dataset="bugs",
                            data_dir=str(tmp_path / "tfds"), labels=True)
  assert src.class_names == ("ant", "bee")
  order = np.argsort([f"{['ant', 'bee'][y]}/{i}.png" for i, y in enumerate(labels)])
  np.testing.assert_array_equal(src.images, images[order])
  np.testing.assert_array_equal(src.labels, labels[order])


def test_benchmark_source_reports_rates():
  images = np.zeros((64, 64, 64, 3), np.uint8)
  stats = data.benchmark_source(data.ArraySource(images, batch_size=16), steps=3, warmup=1)
  assert stats["batch_mb"] == pytest.approx(16 * 64 * 64 * 3 / 1e6)
  assert stats["batches_per_s"] > 0 and stats["examples_per_s"] == pytest.approx(
      16 * stats["batches_per_s"])
