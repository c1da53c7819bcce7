"""Pluggable feature networks for the image metrics (FID, KID, IS, precision/recall).

A `FeatureExtractor` maps a batch of images `[B, H, W, C]` (uint8 in [0, 255], or float in
[-1, 1] as gax generators emit them) to features `[B, F]` and, when the network classifies,
logits `[B, K]` (what the Inception Score needs). Its `fn` is jit-compiled once per extractor;
`iter_features` and `compute_features` feed it fixed-size batches (the last one padded), so a
whole evaluation runs one compiled program per input dtype.

Two extractors ship with gax, neither downloading anything:

* `inception_v3_from_file(path)`: the Inception-v3 of FID (Szegedy et al. 2016, "Rethinking
  the Inception architecture for computer vision"; used for FID by Heusel et al. 2017), in the
  variant of pytorch-fid (Seitzer 2020), which ports the TensorFlow FID graph: 2048-d pool3
  features and 1008 logits. The weights come from a local `.npz` file that the user makes
  once, see `INCEPTION_WEIGHTS_HELP` and `inception_variables_from_torch`.
* `gax.metrics.classifier`: a small CNN trained by gax on the dataset itself (e.g. the
  sklearn digits), the offline analogue of the "MNIST FID" of papers that score digit GANs
  with a LeNet-style classifier's features.

Weight files (`save_variables` / `load_variables`) are plain `.npz` archives, one array per
leaf of the Flax variables, keyed by its path joined with "/" (e.g.
`params/Mixed_5b/branch1x1/conv/kernel`, `batch_stats/Mixed_5b/branch1x1/bn/mean`), plus an
optional JSON string under `__config__`. They load with `allow_pickle=False`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gax import checks
from gax.registry import Registry

Array = Union[np.ndarray, jax.Array]
Images = Union[Array, Iterable[Array]]
FeatureFn = Callable[[jax.Array], Tuple[jax.Array, Optional[jax.Array]]]

FEATURE_EXTRACTORS: Registry = Registry("feature extractor")

CONFIG_KEY = "__config__"


def to_unit_range(images: jax.Array) -> jax.Array:
  """uint8 images in [0, 255] -> float32 in [-1, 1]; float images pass through as float32
  (they are taken to be in [-1, 1] already, the range of a tanh generator)."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) * (2.0 / 255.0) - 1.0
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"Images must be uint8 in [0, 255] or float in [-1, 1], got dtype "
                     f"{images.dtype}.")
  return images.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """A named, jit-compiled feature network.

  Attributes:
    name: what the features are, e.g. "inception_v3" or "classifier:digits16"; metrics
      computed with different extractors are not comparable.
    fn: jit-compiled `images [B, H, W, C] (uint8 or float in [-1, 1]) -> (features [B, F],
      logits [B, K] or None)`.
    feature_dim: F.
    num_classes: K, or 0 when `fn` returns no logits (no Inception Score then).
    image_shape: the `(H, W, C)` the network was built for, or None when `fn` resizes any
      input itself. Only H and W are enforced.
    channels: the input channel counts accepted (`make_feature_extractor` converts grey to
      RGB by repetition and RGB to grey by averaging, as the network needs).
  """

  name: str
  fn: FeatureFn
  feature_dim: int
  num_classes: int = 0
  image_shape: Optional[Tuple[int, int, int]] = None
  channels: Tuple[int, ...] = (1, 3)

  def check_images(self, images: Array) -> None:
    """Raises a ValueError unless `images` is a batch this extractor takes."""
    if images.ndim != 4:
      raise ValueError(f"{self.name}: images must be [B, H, W, C], got shape {images.shape}.")
    if images.shape[-1] not in self.channels:
      raise ValueError(f"{self.name}: images must have C in {self.channels} channels, got "
                       f"shape {images.shape}.")
    if self.image_shape is not None and tuple(images.shape[1:3]) != tuple(self.image_shape[:2]):
      raise ValueError(
          f"{self.name}: takes {self.image_shape[0]}x{self.image_shape[1]} images, got "
          f"{images.shape[1]}x{images.shape[2]} (shape {images.shape}); resize them first "
          "(gax.data.resize_images) or use a feature network trained at that size.")

  def __call__(self, images: Array) -> Tuple[jax.Array, Optional[jax.Array]]:
    """`(features [B, F], logits [B, K] or None)` of one batch."""
    self.check_images(images)
    features, logits = self.fn(jnp.asarray(images))
    chex.assert_shape(features, (images.shape[0], self.feature_dim))
    return features, logits


ApplyFn = Callable[[Any, jax.Array], Tuple[jax.Array, Optional[jax.Array]]]


def make_feature_extractor(name: str, apply_fn: ApplyFn, variables: Any, feature_dim: int,
                           num_classes: int = 0, image_shape: Optional[Tuple[int, int, int]] = None,
                           channels: int = 3) -> FeatureExtractor:
  """Wraps `apply_fn(variables, x float32 [B, H, W, channels] in [-1, 1]) -> (features,
  logits or None)` as a `FeatureExtractor`.

  The variables are an argument of the compiled function, not constants baked into it (which
  would make compiling a 24M-parameter network slow), so `fn` is `jit(apply)` partially
  applied to them; the jitted function is cached per `(apply_fn, channels)`, so extractors
  that share an `apply_fn` (e.g. the same network with other weights) share its compilations.
  Inputs are scaled with `to_unit_range`; grey inputs are repeated to 3 channels when the
  network takes 3, and RGB inputs averaged when it takes 1.
  """
  fn = functools.partial(_jitted_features(apply_fn, channels), variables)
  return FeatureExtractor(name=name, fn=fn, feature_dim=feature_dim, num_classes=num_classes,
                          image_shape=image_shape)


@functools.lru_cache(maxsize=None)
def _jitted_features(apply_fn: ApplyFn, channels: int) -> Callable[..., Any]:

  def features(variables, images):
    x = to_unit_range(images)
    if x.shape[-1] != channels:
      x = (jnp.repeat(x, channels, axis=-1) if x.shape[-1] == 1 else
           jnp.mean(x, axis=-1, keepdims=True))
    feats, logits = apply_fn(variables, x)
    return feats.astype(jnp.float32), None if logits is None else logits.astype(jnp.float32)

  return jax.jit(features)


def _chunks(data: Images, batch_size: int) -> Iterator[Array]:
  if isinstance(data, (np.ndarray, jax.Array)):
    data = [data]
  for chunk in data:
    for start in range(0, len(chunk), batch_size):
      yield chunk[start:start + batch_size]


def iter_features(extractor: FeatureExtractor, data: Images,
                  batch_size: int = 100) -> Iterator[Tuple[jax.Array, Optional[jax.Array]]]:
  """Yields `(features [b, F], logits [b, K] or None)` batch by batch, on the device.

  Args:
    extractor: the feature network.
    data: images `[N, H, W, C]` (NumPy or JAX), or an iterable of such arrays, e.g. a
      generator of generator-sample batches; every array is cut into `batch_size` pieces.
    batch_size: the compiled batch size; a shorter piece is padded (with its last image) to
      it and the padding rows dropped from the output, so `extractor.fn` compiles once.
  """
  checks.integer(batch_size, "batch_size")
  for x in _chunks(data, batch_size):
    n = len(x)
    if n == 0:
      continue
    extractor.check_images(x)
    xp = np if isinstance(x, np.ndarray) else jnp
    if n < batch_size:
      x = xp.concatenate([x, xp.repeat(x[-1:], batch_size - n, axis=0)])
    feats, logits = extractor(x)
    if n < batch_size:
      feats = feats[:n]
      logits = None if logits is None else logits[:n]
    yield feats, logits


def compute_features(extractor: FeatureExtractor, data: Images,
                     batch_size: int = 100) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """All features `[N, F]` (and logits `[N, K]` or None) of `data` as float32 NumPy arrays;
  see `iter_features`."""
  feats, logits = [], []
  for f, l in iter_features(extractor, data, batch_size):
    feats.append(np.asarray(f))
    if l is not None:
      logits.append(np.asarray(l))
  if not feats:
    raise ValueError(f"{extractor.name}: no images to compute features of.")
  return np.concatenate(feats), (np.concatenate(logits) if logits else None)


# ------------------------------------------------------------------------------------------
# Weight files.


def save_variables(path: str, variables: Mapping[str, Any],
                   config: Optional[Mapping[str, Any]] = None) -> None:
  """Writes Flax `variables` (and a JSON-serialisable `config`) to the `.npz` at `path`."""
  flat = traverse_util.flatten_dict(jax.device_get(dict(variables)), sep="/")
  arrays = {k: np.asarray(v) for k, v in flat.items()}
  if config is not None:
    arrays[CONFIG_KEY] = np.asarray(json.dumps(dict(config), sort_keys=True))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:  # np.savez(path) would append ".npz" to other suffixes.
    np.savez(f, **arrays)


def load_variables(path: str) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
  """`(variables, config or None)` from a file written by `save_variables`."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No weight file at {path!r}.")
  with np.load(path, allow_pickle=False) as z:
    flat = {k: z[k] for k in z.files}
  config = flat.pop(CONFIG_KEY, None)
  config = None if config is None else json.loads(str(config))
  return traverse_util.unflatten_dict(flat, sep="/"), config


def check_variables(variables: Mapping[str, Any], expected: Mapping[str, Any], what: str) -> None:
  """Raises a ValueError naming the missing, unexpected and misshapen leaves of `variables`
  against the shapes (arrays or `ShapeDtypeStruct`s) of `expected`."""
  got = traverse_util.flatten_dict(dict(variables), sep="/")
  want = traverse_util.flatten_dict(dict(expected), sep="/")
  missing = sorted(set(want) - set(got))
  unexpected = sorted(set(got) - set(want))
  misshapen = [f"{k}: {tuple(np.shape(got[k]))} != {tuple(want[k].shape)}"
               for k in sorted(set(got) & set(want)) if np.shape(got[k]) != tuple(want[k].shape)]
  problems = []
  for label, items in (("missing", missing), ("unexpected", unexpected),
                       ("wrong shape", misshapen)):
    if items:
      more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
      problems.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
  if problems:
    raise ValueError(f"{what}: the weights do not fit the network; " + "; ".join(problems) + ".")


# ------------------------------------------------------------------------------------------
# Inception-v3, FID variant.

INCEPTION_FEATURE_DIM = 2048
INCEPTION_NUM_CLASSES = 1008
INCEPTION_MIN_SIZE = 75

INCEPTION_WEIGHTS_HELP = """\
gax never downloads weights. Make the Inception-v3 weight file once, on any machine with
PyTorch, from pytorch-fid's port of the TensorFlow FID Inception network
(pt_inception-2015-12-05-6726825d.pth, from the "fid_weights" release of
github.com/mseitzer/pytorch-fid):

  import numpy as np, torch
  from gax.metrics.features import inception_variables_from_torch, save_variables
  sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu")
  save_variables("fid_inception_v3.npz",
                 inception_variables_from_torch({k: v.numpy() for k, v in sd.items()}))

The .npz holds one float32 array per Flax variable of gax.metrics.features.InceptionV3, keyed
"params/<module path>/kernel" etc. (see gax.metrics.features.save_variables)."""


def _pairs(p: Tuple[int, int]) -> Tuple[Tuple[int, int], Tuple[int, int]]:
  return ((p[0], p[0]), (p[1], p[1]))


class BasicConv2d(nn.Module):
  """Convolution without bias -> batch norm (eps 1e-3, running statistics) -> ReLU, with
  PyTorch-style symmetric `padding` `(ph, pw)`."""

  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Tuple[int, int] = (0, 0)
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=_pairs(self.padding),
                use_bias=False, precision=self.precision, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  # FID variant: padding excluded from the average (TensorFlow's behaviour).
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


class InceptionA(nn.Module):
  """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""

  pool_features: int
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = functools.partial(BasicConv2d, precision=self.precision)
    b1 = c(64, (1, 1), name="branch1x1")(x)
    b5 = c(48, (1, 1), name="branch5x5_1")(x)
    b5 = c(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = c(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = c(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = c(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = c(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 480 + C_in channels."""

  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = functools.partial(BasicConv2d, precision=self.precision)
    b3 = c(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
    bd = c(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = c(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = c(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
    bp = nn.max_pool(x, (3, 3), (2, 2))
    return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
  """17x17 block with factorised 7x7 convolutions (1x7 and 7x1) -> 768 channels."""

  channels_7x7: int
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    b1 = c(192, (1, 1), name="branch1x1")(x)
    b7 = c(c7, (1, 1), name="branch7x7_1")(x)
    b7 = c(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = c(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = c(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = c(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = c(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = c(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = c(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 512 + C_in."""

  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = functools.partial(BasicConv2d, precision=self.precision)
    b3 = c(192, (1, 1), name="branch3x3_1")(x)
    b3 = c(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
    b7 = c(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = c(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = c(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
    bp = nn.max_pool(x, (3, 3), (2, 2))
    return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
  """8x8 block with expanded filter banks -> 2048 channels. `pool` is "avg" in Mixed_7b and
  "max" in Mixed_7c: the TensorFlow FID graph max-pools there (pytorch-fid's FIDInceptionE_2).
  """

  pool: str = "avg"
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = functools.partial(BasicConv2d, precision=self.precision)
    b1 = c(320, (1, 1), name="branch1x1")(x)
    b3 = c(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([c(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          c(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = c(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = c(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([c(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          c(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.pool == "avg":
      bp = _avg_pool_3x3(x)
    elif self.pool == "max":
      bp = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    else:
      raise ValueError(f"InceptionE pool must be 'avg' or 'max', got {self.pool!r}.")
    bp = c(192, (1, 1), name="branch_pool")(bp)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """The FID Inception-v3: images `[B, H, W, 3]` in [-1, 1] (H, W >= 75; 299 is standard) ->
  `(pool3 features [B, 2048], logits [B, num_classes])`.

  Module and parameter names follow torchvision's / pytorch-fid's `Inception3` (Conv2d_1a_3x3,
  ..., Mixed_7c, fc), so converted PyTorch weights map one to one. Inference only: batch norm
  uses its running statistics (the `batch_stats` collection) and there is no dropout or
  auxiliary head. Differences from torchvision's ImageNet Inception-v3 that make it the
  TensorFlow FID graph: average pools exclude padding, Mixed_7c max-pools, 1008 classes.
  """

  num_classes: int = INCEPTION_NUM_CLASSES
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, jax.Array]:
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, 3)
    if min(x.shape[1:3]) < INCEPTION_MIN_SIZE:
      raise ValueError(f"InceptionV3 needs images of at least {INCEPTION_MIN_SIZE}x"
                       f"{INCEPTION_MIN_SIZE}, got {x.shape}.")
    c = functools.partial(BasicConv2d, precision=self.precision)
    p = self.precision
    x = c(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
    x = c(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = c(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = nn.max_pool(x, (3, 3), (2, 2))
    x = c(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = c(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = nn.max_pool(x, (3, 3), (2, 2))
    x = InceptionA(32, precision=p, name="Mixed_5b")(x)
    x = InceptionA(64, precision=p, name="Mixed_5c")(x)
    x = InceptionA(64, precision=p, name="Mixed_5d")(x)
    x = InceptionB(precision=p, name="Mixed_6a")(x)
    x = InceptionC(128, precision=p, name="Mixed_6b")(x)
    x = InceptionC(160, precision=p, name="Mixed_6c")(x)
    x = InceptionC(160, precision=p, name="Mixed_6d")(x)
    x = InceptionC(192, precision=p, name="Mixed_6e")(x)
    x = InceptionD(precision=p, name="Mixed_7a")(x)
    x = InceptionE("avg", precision=p, name="Mixed_7b")(x)
    x = InceptionE("max", precision=p, name="Mixed_7c")(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, precision=p, name="fc")(pool3)
    return pool3, logits


@functools.lru_cache(maxsize=None)
def inception_v3_variable_shapes() -> Dict[str, Any]:
  """The `ShapeDtypeStruct`s of `InceptionV3` variables (`params`, `batch_stats`), traced
  without computing anything."""
  x = jax.ShapeDtypeStruct((1, INCEPTION_MIN_SIZE, INCEPTION_MIN_SIZE, 3), jnp.float32)
  return jax.eval_shape(InceptionV3().init, jax.random.key(0), x)


def inception_variables_from_torch(state_dict: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """Flax `InceptionV3` variables from a PyTorch `state_dict` of pytorch-fid's FID Inception
  (`{name: tensor.numpy()}`).

  Convolution weights `[O, I, kh, kw]` become kernels `[kh, kw, I, O]`, `fc.weight` is
  transposed, batch-norm `weight`/`bias` become `scale`/`bias` and `running_mean`/`running_var`
  go to `batch_stats` as `mean`/`var`. `num_batches_tracked` and an `AuxLogits` head (present
  in torchvision's checkpoints) are dropped. The result is checked against the network.
  """
  params: Dict[str, np.ndarray] = {}
  stats: Dict[str, np.ndarray] = {}
  rename = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
  for name, value in state_dict.items():
    value = np.asarray(value, np.float32)
    parts = name.split(".")
    if parts[-1] == "num_batches_tracked" or parts[0] == "AuxLogits":
      continue
    if parts[-2:] == ["conv", "weight"]:
      params["/".join(parts[:-1] + ["kernel"])] = value.transpose(2, 3, 1, 0)
    elif len(parts) >= 2 and parts[-2] == "bn" and parts[-1] in rename:
      dest = stats if parts[-1].startswith("running_") else params
      dest["/".join(parts[:-1] + [rename[parts[-1]]])] = value
    elif name == "fc.weight":
      params["fc/kernel"] = value.T
    elif name == "fc.bias":
      params["fc/bias"] = value
    else:
      raise ValueError(f"Unexpected entry {name!r} in the Inception state dict.")
  variables = {"params": traverse_util.unflatten_dict(params, sep="/"),
               "batch_stats": traverse_util.unflatten_dict(stats, sep="/")}
  check_variables(variables, inception_v3_variable_shapes(), "inception_variables_from_torch")
  return variables


def inception_v3_from_variables(variables: Mapping[str, Any], image_size: Optional[int] = 299,
                                precision: Any = "highest",
                                name: str = "inception_v3") -> FeatureExtractor:
  """The FID Inception-v3 `FeatureExtractor` with the given Flax variables.

  Args:
    variables: `{"params": ..., "batch_stats": ...}` of `InceptionV3`.
    image_size: inputs are resized to `image_size` x `image_size` (bilinear, half-pixel
      centres, no antialiasing: PyTorch's `F.interpolate(..., mode="bilinear")` as in
      pytorch-fid) unless already that size; None takes them as they come (>= 75x75).
      Grey images are repeated to 3 channels.
    precision: matmul/convolution precision; "highest" keeps float32 accuracy on GPUs (TF32)
      and TPUs (bfloat16 passes) so features do not depend on the accelerator.
    name: the extractor's name.
  """
  check_variables(variables, inception_v3_variable_shapes(), name)
  variables = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), dict(variables))
  if image_size is not None and image_size < INCEPTION_MIN_SIZE:
    raise ValueError(f"image_size must be >= {INCEPTION_MIN_SIZE} or None, got {image_size}.")
  return make_feature_extractor(name, _inception_apply(image_size, precision), variables,
                                INCEPTION_FEATURE_DIM, INCEPTION_NUM_CLASSES, channels=3)


@functools.lru_cache(maxsize=None)
def _inception_apply(image_size: Optional[int], precision: Any) -> ApplyFn:
  model = InceptionV3(precision=precision)

  def apply(variables, x):
    if image_size is not None and x.shape[1:3] != (image_size, image_size):
      x = jax.image.resize(x, (x.shape[0], image_size, image_size, x.shape[3]), "bilinear",
                           antialias=False)
    return model.apply(variables, x)

  return apply


@FEATURE_EXTRACTORS.register("inception_v3")
def inception_v3_from_file(path: str, image_size: Optional[int] = 299,
                           precision: Any = "highest") -> FeatureExtractor:
  """The FID Inception-v3 `FeatureExtractor` (pool3 features, 2048-d; 1008 logits for IS)
  with the weights of the local `.npz` at `path` (see `INCEPTION_WEIGHTS_HELP`).

  Raises:
    FileNotFoundError: no file at `path`; the message says how to make one.
    ValueError: the file's arrays do not fit the network.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No Inception-v3 weight file at {path!r}.\n{INCEPTION_WEIGHTS_HELP}")
  variables, _ = load_variables(path)
  return inception_v3_from_variables(variables, image_size, precision,
                                     name="inception_v3")


__all__ = ["FEATURE_EXTRACTORS", "CONFIG_KEY", "to_unit_range", "FeatureExtractor",
           "make_feature_extractor", "iter_features", "compute_features", "save_variables",
           "load_variables", "check_variables", "INCEPTION_FEATURE_DIM",
           "INCEPTION_NUM_CLASSES", "INCEPTION_MIN_SIZE", "INCEPTION_WEIGHTS_HELP",
           "BasicConv2d", "InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE",
           "InceptionV3", "inception_v3_variable_shapes", "inception_variables_from_torch",
           "inception_v3_from_variables", "inception_v3_from_file"]
