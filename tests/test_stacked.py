"""Stacked digits dataset and the 1000-mode count (gax.metrics.stacked)."""

import functools
import os

import jax
import numpy as np
import pytest

from experiments.configs import dcgan_stacked_digits
from gax import data, evaluation, trainer
from gax.metrics import classifier, stacked


@functools.lru_cache(maxsize=None)
def _digit_lookup(image_size):
  """bytes of a resized digit image -> its label (every image is unambiguous)."""
  images, labels = data.load_digits_images()
  images = data.resize_images(images, image_size)
  table = {}
  for im, lab in zip(images, labels):
    key = im[..., 0].tobytes()
    assert table.setdefault(key, int(lab)) == int(lab)
  return table


def _oracle(image_size):
  table = _digit_lookup(image_size)
  return lambda ims: np.array([table[im[..., 0].tobytes()] for im in np.asarray(ims)])


def test_dataset_shape_deterministic_and_labels():
  a = data.DATASETS.build("stacked_digits", batch_size=8, n_critic=2, seed=3, num_examples=600,
                          image_size=16, labels=True)
  b = data.DATASETS.build("stacked_digits", batch_size=8, n_critic=2, seed=3, num_examples=600,
                          image_size=16, labels=True)
  c = data.DATASETS.build("stacked_digits", batch_size=8, seed=4, num_examples=600)
  assert a.images.shape == (600, 16, 16, 3) and a.images.dtype == np.uint8
  assert a.num_classes == 1000 and a.labels.dtype == np.int32
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, b.labels)
  assert not np.array_equal(a.images, c.images)
  assert c.num_classes == 0
  batch = a.get(5)
  assert batch["x"].shape == (2, 8, 16, 16, 3) and batch["y"].shape == (2, 8)
  np.testing.assert_array_equal(batch["x"], b.get(5)["x"])
  # Every channel is a real digit image; the label is 100 d_R + 10 d_G + d_B.
  table = _digit_lookup(16)
  digits = np.array([[table[im[..., ch].tobytes()] for ch in range(3)] for im in a.images])
  np.testing.assert_array_equal(a.labels, digits @ np.array([100, 10, 1]))
  assert len(np.unique(a.labels)) > 400  # 600 draws spread over 1000 modes


def test_dataset_image_size_and_errors():
  x, y = data.stacked_digits_images(10, image_size=8, seed=0)
  assert x.shape == (10, 8, 8, 3) and y.shape == (10,)
  with pytest.raises(ValueError):
    data.stacked_digits_images(0)
  with pytest.raises(ValueError):
    data.DATASETS.build("stacked_digits", batch_size=4, num_examples=10, labels="yes")


def test_oracle_mode_count_on_real_data():
  x, y = data.stacked_digits_images(25600, 16, seed=0)
  res = stacked.stacked_mode_count(x, _oracle(16))
  counts = np.bincount(y, minlength=1000)
  q = counts / counts.sum()
  expected_kl = sum(p * np.log(p * 1000) for p in q if p > 0)
  assert res["modes"] == len(np.unique(y))
  assert res["num_samples"] == 25600
  np.testing.assert_allclose(res["reverse_kl"], expected_kl, rtol=1e-9)
  assert res["reverse_kl"] < 0.05
  # A higher threshold can only cover fewer modes.
  assert stacked.stacked_mode_count(x, _oracle(16), min_count=30)["modes"] < res["modes"]


def test_collapsed_samples():
  x, _ = data.stacked_digits_images(1, 16, seed=1)
  res = stacked.stacked_mode_count(np.repeat(x, 500, axis=0), _oracle(16))
  assert res["modes"] == 1 and res["num_samples"] == 500
  np.testing.assert_allclose(res["reverse_kl"], np.log(1000), rtol=1e-12)


def test_channel_order_and_validation():
  # Channel 0 is the hundreds digit: a classifier answering by the channel's mean value.
  x = np.zeros((2, 4, 4, 3), np.uint8)
  x[0] = [1, 2, 3]
  x[1] = [9, 0, 5]
  classify = lambda ims: ims[:, 0, 0, 0].astype(int)
  np.testing.assert_array_equal(stacked.mode_ids(x, classify), [123, 905])
  with pytest.raises(ValueError):
    stacked.stacked_mode_count(x[..., :1], classify)
  with pytest.raises(ValueError):
    stacked.stacked_mode_count(x, lambda ims: np.full(len(ims), 10))
  with pytest.raises(ValueError):
    stacked.stacked_mode_count(x, lambda ims: np.zeros(1, int))


def test_trained_classifier_covers_real_modes():
  x, _ = data.stacked_digits_images(25600, 16, seed=0)
  classify = stacked.digits_channel_classifier(16, steps=300)
  res = stacked.stacked_mode_count(x, classify)
  assert res["modes"] > 900, res
  assert res["reverse_kl"] < 0.1, res
  # Float images in [-1, 1] give the same modes as uint8.
  sub = x[:200]
  np.testing.assert_array_equal(stacked.mode_ids(sub.astype(np.float32) / 127.5 - 1, classify),
                                stacked.mode_ids(sub, classify))


# ------------------------------------------------------------------------------------------
# The stacked feature network and the trainer's stacked-digits evaluation.


@functools.lru_cache(maxsize=None)
def _small_digits_classifier():
  return classifier.digits_classifier(8, steps=60)


def test_stacked_extractor_is_the_per_channel_classifier():
  clf = _small_digits_classifier()
  x, _ = data.stacked_digits_images(37, 8, seed=5)
  ext = stacked.stacked_extractor(clf)
  feats, logits = ext(x)
  assert feats.shape == (37, 3 * clf.model.hidden) and logits.shape == (37, 1000)
  # Reference: the plain classifier on each channel separately.
  single = clf.extractor()
  per_channel = [single(x[..., c:c + 1]) for c in range(3)]
  np.testing.assert_allclose(feats, np.concatenate([np.asarray(f) for f, _ in per_channel], -1),
                             rtol=1e-5, atol=1e-5)
  logp = [np.asarray(jax.nn.log_softmax(l, axis=-1)) for _, l in per_channel]
  i, r, g, b = 4, 7, 0, 9
  np.testing.assert_allclose(logits[i, 100 * r + 10 * g + b],
                             logp[0][i, r] + logp[1][i, g] + logp[2][i, b], rtol=1e-5)
  np.testing.assert_allclose(np.exp(np.asarray(logits, np.float64)).sum(-1), 1.0, rtol=1e-4)
  # argmax over the 1000 modes == the mode of the per-channel predictions.
  np.testing.assert_array_equal(np.argmax(logits, -1),
                                stacked.mode_ids(x, lambda ims: clf.predict(ims)))
  with pytest.raises(ValueError, match="single-channel 10-digit"):
    stacked.stacked_extractor(classifier.train_classifier(x, np.arange(37) % 3, steps=1))


def test_training_on_stacked_digits_counts_modes_and_keeps_the_most(tmp_path):
  c = dcgan_stacked_digits.get_config()
  c.data.update(image_size=8, batch_size=8, num_examples=300)
  c.model.width = 4
  c.train.update(steps=4, log_every=4, sample_every=0, checkpoint_every=2, num_samples=4)
  c.eval.update(every=2, num_samples=200, classifier_steps=60)
  workdir = str(tmp_path)
  trainer.train(c, workdir)
  records = evaluation.read_jsonl(os.path.join(workdir, "eval.jsonl"))
  assert [r["step"] for r in records] == [2, 4]
  best = evaluation.read_best(workdir)
  counts = [r["modes_covered"] for r in records]
  assert best["metric"] == "modes_covered" and best["value"] == max(counts)
  # Independently: the classifier the run saved, applied channel by channel to the samples of
  # the last state, through stacked_mode_count.
  clf = classifier.load_classifier(os.path.join(workdir, "eval_classifier.npz"))
  _, gan, state = trainer.restore_run(workdir, step=4)
  images = np.concatenate(list(evaluation.generate_samples(
      gan, state, jax.random.PRNGKey(c.eval.seed), 200, c.eval.batch_size, quantize=True)))
  want = stacked.stacked_mode_count(images, lambda ims: clf.predict(ims))
  assert records[-1]["modes_covered"] == want["modes"]
  np.testing.assert_allclose(records[-1]["reverse_kl"], want["reverse_kl"], rtol=1e-9)
  assert records[-1]["modes"] == 1000 and np.isfinite(records[-1]["fid"])
