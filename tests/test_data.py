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
