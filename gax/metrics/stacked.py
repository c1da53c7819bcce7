"""Stacked-digits mode count: 1000 modes, one per triple of digits stacked as R, G, B.

Stacked MNIST (Metz et al. 2017, Unrolled GAN; Srivastava et al. 2017, VEEGAN; Lin et al.
2018, PacGAN) stacks three digit images as the channels of one colour image, giving
10^3 = 1000 modes. A sample's mode is found by classifying each channel with a pretrained
digit classifier: mode = 100 * d_R + 10 * d_G + d_B. The papers report

  modes:      the number of the 1000 modes that hold at least one sample (`min_count=1`);
  reverse KL: KL(q || p) between the distribution q of the samples over the 1000 modes (the
              empirical histogram) and the uniform p of the data, in nats. This is the
              direction the papers mean by "KL" on Stacked MNIST (the model's mode
              distribution against the data's) and the convention of
              `gax.metrics.mode_coverage`: 0 when samples spread evenly, log(1000) ~ 6.91
              when they all fall in one mode. Empty modes contribute 0 (0 log 0 = 0).

Here the digits are sklearn's (`gax.data.stacked_digits`), and the classifier is
`gax.metrics.classifier.digits_classifier` (`digits_channel_classifier`). The papers use
25,600 samples (25.6 per mode); with fewer, even perfect samples leave modes empty.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gax.metrics.features import FeatureExtractor, make_feature_extractor

NUM_DIGITS = 10
NUM_MODES = NUM_DIGITS ** 3

Classify = Callable[[np.ndarray], np.ndarray]


def mode_ids(images: np.ndarray, classify: Classify) -> np.ndarray:
  """Mode ids int64 `[N]` in [0, 1000) of stacked images `[N, S, S, 3]`.

  `classify` gets all 3N channels at once as single-channel images `[3N, S, S, 1]` (the dtype
  of `images`, e.g. uint8 or float in [-1, 1]; channel 0 of every image first, then channel 1,
  then 2) and returns their digits `[3N]` in [0, 10).
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"stacked images must be [N, S, S, 3], got {images.shape}.")
  n = len(images)
  channels = np.concatenate([images[..., c:c + 1] for c in range(3)], axis=0)
  digits = np.asarray(classify(channels)).astype(np.int64).reshape(-1)
  if digits.shape != (3 * n,):
    raise ValueError(f"classify must return one class per channel image, [{3 * n}]; got "
                     f"{digits.shape}.")
  if n and (digits.min() < 0 or digits.max() >= NUM_DIGITS):
    raise ValueError(f"classify must return digits in [0, {NUM_DIGITS}), got "
                     f"[{digits.min()}, {digits.max()}].")
  d = digits.reshape(3, n)
  return 100 * d[0] + 10 * d[1] + d[2]


def mode_statistics(ids: np.ndarray, min_count: int = 1) -> Dict[str, Any]:
  """`modes`, `reverse_kl` and `num_samples` of mode ids `[N]` (see the module docstring)."""
  ids = np.asarray(ids, np.int64).reshape(-1)
  if not len(ids):
    raise ValueError("stacked_mode_count needs at least one sample.")
  counts = np.bincount(ids, minlength=NUM_MODES)
  if len(counts) != NUM_MODES:
    raise ValueError(f"mode ids must lie in [0, {NUM_MODES}), got max {ids.max()}.")
  q = counts / counts.sum()
  nz = q > 0
  return {
      "modes": int(np.sum(counts >= min_count)),
      "reverse_kl": float(np.sum(q[nz] * np.log(q[nz] * NUM_MODES))),
      "num_samples": int(len(ids)),
  }


def stacked_mode_count(images: np.ndarray, classify: Classify,
                       min_count: int = 1) -> Dict[str, Any]:
  """Mode count and reverse KL of stacked-digit samples.

  Args:
    images: `[N, S, S, 3]`, uint8 or float in [-1, 1] (whatever `classify` accepts).
    classify: single-channel digit images `[M, S, S, 1]` -> predicted digits `[M]`, e.g.
      `digits_channel_classifier(S)`.
    min_count: samples a mode needs to count as covered (1, as in the papers).

  Returns:
    dict with `modes` (covered modes of 1000), `reverse_kl` (KL(samples || uniform), nats) and
    `num_samples` (N).
  """
  return mode_statistics(mode_ids(images, classify), min_count)


def digits_channel_classifier(image_size: int = 16, cache_path: Optional[str] = None,
                              steps: int = 1000, seed: int = 0,
                              batch_size: int = 500) -> Classify:
  """A `classify` function for `stacked_mode_count`: the predictions of
  `gax.metrics.classifier.digits_classifier(image_size, steps, seed, cache_path)`.

  Use the same `cache_path` for every evaluation, so all scores come from the same network.
  """
  from gax.metrics.classifier import digits_classifier  # pylint: disable=g-import-not-at-top

  clf = digits_classifier(image_size, steps=steps, seed=seed, cache_path=cache_path)

  def classify(images: np.ndarray) -> np.ndarray:
    return clf.predict(images, batch_size)

  return classify


@functools.lru_cache(maxsize=None)
def _stacked_apply(channel_apply: Callable[..., Any]) -> Callable[..., Any]:
  """`(variables, x [B, S, S, 3]) -> (features [B, 3F], logits [B, 1000])` of a per-channel
  digit classifier `channel_apply(variables, x [M, S, S, 1]) -> (features, logits [M, 10])`."""

  def apply(variables, x):
    b = x.shape[0]
    channels = jnp.moveaxis(x, -1, 0).reshape(3 * b, *x.shape[1:3], 1)  # R of all, G, B
    feats, logits = channel_apply(variables, channels)
    feats = jnp.moveaxis(feats.reshape(3, b, -1), 0, 1).reshape(b, -1)
    lp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(3, b, NUM_DIGITS)
    # log p(triple) = log p_R(d_R) + log p_G(d_G) + log p_B(d_B), flattened as 100 d_R + 10 d_G
    # + d_B: its argmax is the triple of the per-channel argmaxes (`mode_ids`).
    joint = lp[0][:, :, None, None] + lp[1][:, None, :, None] + lp[2][:, None, None, :]
    return feats, joint.reshape(b, NUM_MODES)

  return apply


def stacked_extractor(classifier: Any) -> FeatureExtractor:
  """The feature network of stacked-digit images built from a single-digit `classifier`
  (`gax.metrics.classifier.Classifier` on `[S, S, 1]` digits with 10 classes).

  Features: the classifier's features of the R, G and B channels, concatenated (`3 F`).
  Logits: the log-probabilities of the 1000 digit triples under independent per-channel
  predictions, index `100 d_R + 10 d_G + d_B`, so `argmax` is the mode of `mode_ids` and the
  Inception Score is taken over the 1000 modes.
  """
  h, w, c = classifier.image_shape
  if c != 1 or classifier.model.num_classes != NUM_DIGITS:
    raise ValueError(f"stacked_extractor needs a single-channel 10-digit classifier, got "
                     f"{classifier.name} on {classifier.image_shape} images with "
                     f"{classifier.model.num_classes} classes.")
  from gax.metrics.classifier import apply_fn  # pylint: disable=g-import-not-at-top

  m = classifier.model
  channel_apply = apply_fn(m.num_classes, tuple(m.widths), m.hidden)
  return make_feature_extractor(
      f"stacked:classifier:{classifier.name}", _stacked_apply(channel_apply),
      classifier.variables, 3 * classifier.model.hidden, NUM_MODES, image_shape=(h, w, 3),
      channels=3)


def mode_statistics_from_logits(logits: np.ndarray) -> Dict[str, Any]:
  """`mode_statistics` of the argmax modes of `stacked_extractor` logits `[N, 1000]`."""
  logits = np.asarray(logits)
  if logits.ndim != 2 or logits.shape[1] != NUM_MODES:
    raise ValueError(f"stacked logits must be [N, {NUM_MODES}], got {logits.shape}.")
  return mode_statistics(np.argmax(logits, axis=-1))


__all__ = ["NUM_DIGITS", "NUM_MODES", "mode_ids", "mode_statistics", "stacked_mode_count",
           "digits_channel_classifier", "stacked_extractor", "mode_statistics_from_logits"]
