"""Data sources: determinism, sampling without replacement, shapes, and clear errors."""

import numpy as np
import pytest

from gax import data


def test_ring_and_grid_centres():
  ring = data.ring_centers(8, 2.0)
  np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0, rtol=1e-6)
  np.testing.assert_allclose(ring[2], [0.0, 2.0], atol=1e-6)
  grid = data.grid_centers(5, 2.0)
  assert grid.shape == (25, 2)
  assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_mixture_source_is_deterministic_in_the_step_and_has_the_mixture_statistics():
  src = data.DATASETS.build("ring", batch_size=4000, n_critic=2, seed=3)
  a, b = src.get(7), src.get(7)
  assert a.shape == (2, 4000, 2) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(src.get(8), a)
  x = a.reshape(-1, 2)
  nearest = np.argmin(((x[:, None] - src.centers[None]) ** 2).sum(-1), 1)
  resid = x - src.centers[nearest]
  np.testing.assert_allclose(resid.std(0), 0.02, rtol=0.05)
  np.testing.assert_allclose(np.bincount(nearest, minlength=8) / len(x), 1 / 8, atol=0.02)


def test_array_source_visits_every_example_once_per_epoch_and_reshuffles():
  images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
  src = data.ArraySource(images, batch_size=2, n_critic=1, seed=0)
  # 5 steps of 2 = one epoch; steps 5..9 the next epoch in another order.
  epoch0 = np.concatenate([src.get(s).ravel() for s in range(5)])
  epoch1 = np.concatenate([src.get(s).ravel() for s in range(5, 10)])
  assert sorted(epoch0) == sorted(epoch1) == list(range(10))
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(src.get(3), data.ArraySource(images, 2, 1, 0).get(3))


def test_array_source_batches_straddle_epoch_boundaries():
  images = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1)
  src = data.ArraySource(images, batch_size=2, n_critic=2, seed=1)  # 4 per step, N = 5
  seen = np.concatenate([src.get(s).ravel() for s in range(5)])  # 20 = 4 epochs
  for e in range(4):
    assert sorted(seen[5 * e:5 * e + 5]) == list(range(5))


def test_digits_are_real_uint8_images_with_labels():
  images, labels = data.load_digits_images()
  assert images.shape == (1797, 8, 8, 1) and images.dtype == np.uint8
  assert images.max() == 255 and images.min() == 0
  assert sorted(set(labels.tolist())) == list(range(10))
  src = data.DATASETS.build("digits", batch_size=16, n_critic=1, image_size=16)
  assert src.get(0).shape == (1, 16, 16, 16, 1)


def test_array_dataset_from_npy_and_npz(tmp_path):
  imgs = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
  np.save(tmp_path / "a.npy", imgs)
  np.savez(tmp_path / "b.npz", images=imgs, labels=np.arange(12))
  a = data.DATASETS.build("array", batch_size=4, path=str(tmp_path / "a.npy"))
  b = data.DATASETS.build("array", batch_size=4, path=str(tmp_path / "b.npz"), key="images")
  np.testing.assert_array_equal(a.get(1), b.get(1))
  with pytest.raises(ValueError, match="set data.key"):
    data.load_array_images(str(tmp_path / "b.npz"))


def test_missing_and_malformed_datasets_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist.*numpy.save"):
    data.load_array_images(str(tmp_path / "nope.npy"))
  np.save(tmp_path / "f.npy", np.zeros((4, 8, 8, 1), np.float32))
  with pytest.raises(ValueError, match="must be uint8"):
    data.load_array_images(str(tmp_path / "f.npy"))
  (tmp_path / "junk.npy").write_bytes(b"not numpy")
  with pytest.raises(ValueError, match="Could not read"):
    data.load_array_images(str(tmp_path / "junk.npy"))
  with pytest.raises(ValueError, match="fewer than one batch"):
    data.ArraySource(np.zeros((3, 4, 4, 1), np.uint8), batch_size=8)


def test_prefetch_yields_steps_in_order_and_surfaces_errors():
  src = data.DATASETS.build("ring", batch_size=2)
  got = list(data.prefetch(src, 3, 7))
  assert [s for s, _ in got] == [3, 4, 5, 6]
  np.testing.assert_array_equal(got[1][1], src.get(4))

  class Broken:
    def get(self, step):
      if step == 2:
        raise OSError("disk gone")
      return np.zeros(1)

  with pytest.raises(OSError, match="disk gone"):
    list(data.prefetch(Broken(), 0, 5))
  # size 0: the same batches, fetched in the caller's thread, and the same error.
  inline = list(data.prefetch(src, 3, 7, 0))
  assert [s for s, _ in inline] == [3, 4, 5, 6]
  for (_, a), (_, b) in zip(inline, got):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(OSError, match="disk gone"):
    list(data.prefetch(Broken(), 0, 5, 0))
  with pytest.raises(ValueError, match="size"):
    list(data.prefetch(src, 0, 5, -1))
  # The in-memory sources are fetched inline by the train loop; anything else by a thread.
  images = np.zeros((8, 4, 4, 1), np.uint8)
  assert data.fetch_size(src) == 0 and data.fetch_size(data.ArraySource(images, 2)) == 0
  assert data.fetch_size(Broken()) == 2


def _write_images(root, arrays, names):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  for im, name in zip(arrays, names):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(path)


def test_folder_with_class_subdirectories_reads_images_and_labels(tmp_path):
  rng = np.random.default_rng(0)
  imgs = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
  names = ["dog/a.png", "cat/b.png", "dog/c.bmp", "cat/sub/d.png", "cat/e.PNG", "dog/f.tiff"]
  _write_images(tmp_path / "imgs", imgs, names)
  (tmp_path / "imgs" / "cat" / "notes.txt").write_text("not an image")
  (tmp_path / "imgs" / ".hidden").mkdir()
  src = data.DATASETS.build("folder", batch_size=3, path=str(tmp_path / "imgs"), labels=True)
  assert src.class_names == ("cat", "dog") and src.num_classes == 2
  order = np.argsort(names)  # files in sorted path order; classes by sorted name
  np.testing.assert_array_equal(src.images, imgs[order])
  np.testing.assert_array_equal(src.labels, [0, 0, 0, 1, 1, 1])
  batch = src.get(4)
  assert batch["x"].shape == (1, 3, 8, 8, 3) and batch["y"].dtype == np.int32
  again = data.DATASETS.build("folder", batch_size=3, path=str(tmp_path / "imgs"), labels=True)
  np.testing.assert_array_equal(again.get(4)["x"], batch["x"])
  plain = data.DATASETS.build("folder", batch_size=3, path=str(tmp_path / "imgs"))
  assert isinstance(plain.get(0), np.ndarray) and plain.num_classes == 0


def test_folder_grey_rgb_resize_and_crop(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(1)
  rgb = rng.integers(0, 256, (3, 12, 8, 3), dtype=np.uint8)  # 8 wide, 12 high
  _write_images(tmp_path, rgb, ["0.png", "1.png", "2.png"])
  grey, _, _ = data.load_folder_images(str(tmp_path), channels=1)
  want = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])[..., None]
  np.testing.assert_array_equal(grey, want)
  cropped, _, _ = data.load_folder_images(str(tmp_path), crop=True)
  np.testing.assert_array_equal(cropped, rgb[:, 2:10])  # the middle 8x8
  small, _, _ = data.load_folder_images(str(tmp_path), image_size=4, crop=True)
  np.testing.assert_array_equal(small, data.resize_images(rgb[:, 2:10], 4))
  _write_images(tmp_path, rng.integers(0, 256, (1, 5, 5, 1), dtype=np.uint8), ["3.png"])
  mixed, _, _ = data.load_folder_images(str(tmp_path), image_size=6)  # grey file read as RGB
  assert mixed.shape == (4, 6, 6, 3)


def test_folder_cache_is_reused_until_the_files_change(tmp_path, monkeypatch):
  imgs = np.random.default_rng(2).integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
  _write_images(tmp_path / "imgs", imgs, ["x/0.png", "x/1.png", "y/2.png", "y/3.png"])
  kw = dict(batch_size=2, path=str(tmp_path / "imgs"), labels=True, cache=True)
  first = data.DATASETS.build("folder", **kw)
  caches = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npz")
  assert caches == ["imgs.gax-orig-c3-labels.npz"]
  real = data.load_folder_images
  monkeypatch.setattr(data.files, "load_folder_images", lambda *a, **k: pytest.fail("not cached"))
  second = data.DATASETS.build("folder", **kw)
  np.testing.assert_array_equal(second.images, first.images)
  np.testing.assert_array_equal(second.labels, first.labels)
  assert second.class_names == ("x", "y")
  _write_images(tmp_path / "imgs", imgs[:1], ["y/4.png"])  # a new file: decoded again
  calls = []
  monkeypatch.setattr(data.files, "load_folder_images",
                      lambda *a, **k: calls.append(1) or real(*a, **k))
  third = data.DATASETS.build("folder", **kw)
  assert calls and len(third.images) == 5
  own = tmp_path / "elsewhere.npz"
  data.DATASETS.build("folder", **{**kw, "cache": str(own)})
  assert own.exists()


def test_folder_errors_are_clear(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.DATASETS.build("folder", batch_size=1, path=str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="No image files"):
    data.DATASETS.build("folder", batch_size=1, path=str(tmp_path / "empty"))
  with pytest.raises(ValueError, match="data.path is empty"):
    data.DATASETS.build("folder", batch_size=1)
  imgs = np.zeros((2, 4, 4, 3), np.uint8)
  _write_images(tmp_path / "top", imgs, ["a.png", "cls/b.png"])
  with pytest.raises(ValueError, match="one subdirectory per class.*'a.png'"):
    data.DATASETS.build("folder", batch_size=1, path=str(tmp_path / "top"), labels=True)
  _write_images(tmp_path / "mixed", [imgs[0], np.zeros((5, 4, 3), np.uint8)], ["a.png", "b.png"])
  with pytest.raises(ValueError, match="different sizes.*4x4.*4x5.*image_size"):
    data.DATASETS.build("folder", batch_size=1, path=str(tmp_path / "mixed"))
  _write_images(tmp_path / "bad", imgs[:1], ["a.png"])
  (tmp_path / "bad" / "b.jpg").write_bytes(b"not a jpeg")
  with pytest.raises(ValueError, match="Could not read image file .*b.jpg"):
    data.DATASETS.build("folder", batch_size=1, path=str(tmp_path / "bad"))
  with pytest.raises(ValueError, match="channels must be 1"):
    data.DATASETS.build("folder", batch_size=1, path=str(tmp_path / "top"), channels=4)
  with pytest.raises(ValueError, match="image_size must be"):
    data.DATASETS.build("folder", batch_size=1, path=str(tmp_path / "top"), image_size=-3)
