"""`data.loader='grain'`: a TFDS array_record split streamed through Grain (gax.data.stream).

Every example's id is written into its first pixel, so a batch says which examples it holds;
the expected ids are computed here by brute force from the position arithmetic the module
docstring states."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from gax import data, parallel, trainer
from gax.data import stream

tfds = pytest.importorskip("tensorflow_datasets")
grain = pytest.importorskip("grain")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, SHAPE = 96, (8, 8, 1)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
  """`ids`: 96 8x8 grey images whose pixel (0, 0) is the example's index, class = index % 10."""
  d = str(tmp_path_factory.mktemp("tfds"))
  images = np.random.default_rng(0).integers(0, 256, (N, *SHAPE), dtype=np.uint8)
  images[:, 0, 0, 0] = np.arange(N)
  data.prepare_tfds_from_arrays("ids", d, images, np.arange(N) % 10, num_classes=10)
  return d


def _source(toy_dir, **kw):
  options = dict(batch_size=8, n_critic=2, seed=3, dataset="ids", data_dir=toy_dir,
                 loader="grain", labels=True, threads=2)
  return data.DATASETS.build("tfds", **{**options, **kw})


def _ids(batch):
  return np.asarray(batch["x"] if isinstance(batch, dict) else batch)[..., 0, 0, 0]


def _order(seed, length):
  """The endless order by brute force: epoch e is Grain's permutation of the split for
  (seed, e), read through the shuffled, repeated MapDataset of the ids alone."""
  ds = grain.MapDataset.range(N).shuffle(seed=seed).repeat()
  return np.array([ds[i] for i in range(length)])


def test_batches_follow_the_shuffled_order_epoch_by_epoch(toy_dir):
  src = _source(toy_dir)
  assert isinstance(src, stream.GrainSource)
  assert (src.element_shape, src.num_classes, src.num_examples) == (SHAPE, 10, N)
  steps = 13  # 13 * 16 = 208 examples: two full epochs and part of a third
  got = np.stack([_ids(src.get(s)) for s in range(steps)])  # [steps, n_critic, B]
  assert got.shape == (steps, 2, 8)
  order = _order(3, steps * 16)
  np.testing.assert_array_equal(got.reshape(-1), order)  # step s: positions [16 s, 16 s + 16)
  flat = got.reshape(-1)
  for e in range(2):  # every epoch holds every example once, in a new order
    assert sorted(flat[e * N:(e + 1) * N]) == list(range(N))
  assert not np.array_equal(flat[:N], flat[N:2 * N])
  labelled = src.get(4)
  np.testing.assert_array_equal(labelled["y"], _ids(labelled) % 10)
  assert labelled["y"].dtype == np.int32 and labelled["x"].dtype == np.uint8
  # A new source of the same seed, asked for a step out of order, gives the same batch.
  np.testing.assert_array_equal(_ids(_source(toy_dir).get(9)), got[9])
  assert not np.array_equal(_ids(_source(toy_dir, seed=4).get(0)), got[0])


def test_the_iterator_state_is_the_position_of_the_step(toy_dir):
  src = _source(toy_dir, labels=False)
  assert src.iterator_state(5) == {"next_index": 5 * 16}
  # Grain's own checkpointable state, after the examples of steps 0-4, is the same number,
  # and an iterator restored from it reads step 5.
  it = iter(src._examples.to_iter_dataset())  # pylint: disable=protected-access
  for _ in range(5 * 16):
    next(it)
  assert it.get_state() == src.iterator_state(5)
  fresh = iter(src._examples.to_iter_dataset())  # pylint: disable=protected-access
  fresh.set_state(src.iterator_state(5))
  np.testing.assert_array_equal([next(fresh)[0][0, 0, 0] for _ in range(16)],
                                _ids(src.get(5)).reshape(-1))


def test_a_process_reads_only_its_rows(toy_dir):
  src = _source(toy_dir)
  whole = [_ids(src.get(s)) for s in range(3)]
  parts = []
  for p in range(2):
    rows = parallel.process_rows(8, p, 2)
    share = parallel.process_share(src, rows)
    assert isinstance(share, stream.GrainSource) and share.per_step == 2 * 4
    got = np.stack([_ids(share.get(s)) for s in range(3)])
    np.testing.assert_array_equal(got, np.stack([w[:, rows] for w in whole]))
    parts.append(got)
  # Steps 0-2 are positions 0-47 of epoch 0: 48 distinct examples, split between the two.
  assert not set(parts[0].reshape(-1)) & set(parts[1].reshape(-1))
  odd = parallel.process_share(src, [1, 3, 4])  # any subset, in the order given
  np.testing.assert_array_equal(_ids(odd.get(2)), whole[2][:, [1, 3, 4]])
  with pytest.raises(ValueError, match="rows must be a non-empty subset"):
    src.with_rows([8])


def test_worker_processes_give_the_same_batches(toy_dir):
  threads = _source(toy_dir, labels=False)
  workers = _source(toy_dir, labels=False, workers=2)
  for s in (0, 1, 7):  # consecutive, then a restart
    np.testing.assert_array_equal(workers.get(s), threads.get(s))


def test_resize_and_the_evaluation_sample(toy_dir):
  src = _source(toy_dir, image_size=16, reference_size=40)
  assert src.element_shape == (16, 16, 1) and src.get(0)["x"].shape == (2, 8, 16, 16, 1)
  ref, labels = src.reference_images, src.reference_labels
  assert ref.shape == (40, 16, 16, 1)
  # A fixed subset, the same for every seed; labels those of its examples.
  big = _source(toy_dir, reference_size=40)
  ids = big.reference_images[:, 0, 0, 0]
  other_seed = _source(toy_dir, seed=9, reference_size=40).reference_images
  assert len(set(ids)) == 40 and np.array_equal(ids, other_seed[:, 0, 0, 0])
  assert len(_source(toy_dir).reference_images) == N  # at most the split
  np.testing.assert_array_equal(big.reference_labels, ids % 10)
  assert len(labels) == 40
  assert _source(toy_dir, labels=False).reference_labels is None


def test_bad_options_are_clear_errors(toy_dir):
  with pytest.raises(ValueError, match="data.loader must be one of"):
    _source(toy_dir, loader="stream")
  with pytest.raises(ValueError, match="belong to data.loader='grain'"):
    data.DATASETS.build("tfds", batch_size=8, dataset="ids", data_dir=toy_dir, workers=2)
  with pytest.raises(ValueError, match="slice the split instead"):
    _source(toy_dir, max_examples=10)
  with pytest.raises(ValueError, match="fewer than one batch"):
    _source(toy_dir, batch_size=128)
  with pytest.raises(ValueError, match="data.workers must be an integer >= 0"):
    _source(toy_dir, workers=-1)
  with pytest.raises(FileNotFoundError):
    _source(toy_dir, dataset="absent_dataset")


def test_streaming_defaults_are_those_the_memory_loader_checks():
  import inspect  # pylint: disable=g-import-not-at-top
  for factory in (data.tfds_dataset, data.folder):
    params = inspect.signature(factory).parameters
    assert {k: params[k].default for k in data.STREAM_DEFAULTS} == data.STREAM_DEFAULTS


def _write_folder(root, n=24, sizes=((8, 8),)):
  """`n` grey PNGs in class folders a/ and b/ (id i in pixel (0, 0), class i % 2)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  for i in range(n):
    h, w = sizes[i % len(sizes)]
    im = rng.integers(0, 256, (h, w), dtype=np.uint8)
    im[0, 0] = i
    path = root / "ab"[i % 2] / f"{i:03d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(im).save(path)
  return str(root)


def test_a_folder_streams_the_files_the_memory_loader_decodes(tmp_path):
  root = _write_folder(tmp_path / "imgs")
  kw = dict(batch_size=6, seed=2, path=root, channels=1, labels=True)
  memory = data.DATASETS.build("folder", **kw)
  src = data.DATASETS.build("folder", loader="grain", threads=2, **kw)
  assert isinstance(src, stream.GrainSource)
  assert (src.element_shape, src.num_classes, src.class_names) == ((8, 8, 1), 2, ("a", "b"))
  by_id = {int(im[0, 0, 0]): im for im in memory.images}
  batches = [src.get(s) for s in range(4)]  # one epoch of the 24 files
  ids = np.concatenate([_ids(b).reshape(-1) for b in batches])
  assert sorted(ids) == list(range(24))
  for b in batches:
    for im, y in zip(b["x"][0], b["y"][0]):
      np.testing.assert_array_equal(im, by_id[int(im[0, 0, 0])])  # the same decoded pixels
      assert y == int(im[0, 0, 0]) % 2
  with pytest.raises(ValueError, match="belong to data.loader='memory'"):
    data.DATASETS.build("folder", loader="grain", cache=True, **kw)


def test_images_of_several_sizes_need_an_image_size(tmp_path):
  root = _write_folder(tmp_path / "mixed", sizes=((8, 8), (10, 6)))
  src = data.DATASETS.build("folder", batch_size=6, path=root, channels=1, loader="grain",
                            threads=2)
  with pytest.raises(ValueError, match="images have different sizes.*set data.image_size"):
    src.get(0)
  fitted = data.DATASETS.build("folder", batch_size=6, path=root, channels=1, loader="grain",
                               threads=2, image_size=4, crop=True)
  assert fitted.get(0).shape == (1, 6, 4, 4, 1)


# --- Training through the trainer: evaluation on the sample, exact resume ---------------------

def _config(toy_dir, steps):
  from experiments.configs import dcgan_digits  # pylint: disable=g-import-not-at-top
  c = dcgan_digits.get_config()
  c.data = {"name": "tfds", "dataset": "ids", "data_dir": toy_dir, "loader": "grain",
            "labels": True, "batch_size": 8, "threads": 2}
  c.model.width = 4
  c.model.conv_impl = "xla"
  c.train.update(steps=steps, log_every=1, sample_every=0, checkpoint_every=3,
                 keep_checkpoints=10, num_samples=4)
  c.eval.update(every=3, num_samples=50, classifier_steps=10, metrics=("fid",))
  return c


def _records(path):
  with open(path) as f:
    return [{k: v for k, v in json.loads(l).items() if k not in ("steps_per_sec", "elapsed_sec")}
            for l in f]


def test_trains_evaluates_and_resumes_exactly(toy_dir, tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  trainer.train(_config(toy_dir, 6), straight)
  trainer.train(_config(toy_dir, 3), resumed)
  trainer.train(_config(toy_dir, 6), resumed)
  for name in ("metrics.jsonl", "eval.jsonl"):
    a, b = _records(os.path.join(straight, name)), _records(os.path.join(resumed, name))
    assert [r["step"] for r in a] == ([1, 2, 3, 4, 5, 6] if name == "metrics.jsonl" else [3, 6])
    assert a == b, name
  assert np.isfinite(_records(os.path.join(straight, "eval.jsonl"))[-1]["fid"])


# --- Two processes under jax.distributed: disjoint shards -----------------------------------

CHILD = r"""
import os, sys
import jax
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                           process_id=int(sys.argv[2]))
import numpy as np
from gax import data, parallel
mesh = parallel.make_mesh()
rows = parallel.sharding_process_rows(parallel.batch_sharding(mesh), 8)
src = data.DATASETS.build("tfds", batch_size=8, n_critic=2, seed=3, dataset="ids",
                          data_dir=sys.argv[3], loader="grain", threads=2)
share = parallel.process_share(src, rows)
ids = np.stack([share.get(s)[..., 0, 0, 0] for s in range(3)])
np.savez(sys.argv[4], rows=rows, ids=ids, decoded=share.per_step)
"""


def test_two_processes_read_disjoint_shards_of_each_global_batch(toy_dir, tmp_path):
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  outs = [str(tmp_path / f"p{i}.npz") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, "-c", CHILD, f"localhost:{port}", str(i), toy_dir,
                             outs[i]], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for i in range(2)]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=240)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in procs] == [0, 0], "\n".join(l[-2000:] for l in logs)
  got = [np.load(o) for o in outs]
  rows = [g["rows"] for g in got]
  assert not set(rows[0]) & set(rows[1]) and sorted({*rows[0], *rows[1]}) == list(range(8))
  for g in got:  # each process decoded n_critic * 4 examples a step, not the global 16
    assert int(g["decoded"]) == 2 * 4
  # Together the two shards are exactly one process's global batches.
  whole = np.stack([_ids(_source(toy_dir, labels=False).get(s)) for s in range(3)])
  joined = np.empty_like(whole)
  for g in got:
    joined[:, :, g["rows"]] = g["ids"]
  np.testing.assert_array_equal(joined, whole)
