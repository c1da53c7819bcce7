"""Evaluating a run's generator: periodically during training and from saved checkpoints.

An `Evaluator` is built from a config's `eval` section (`EvalSettings`) and the run's data
source, and scores a generator state against the real data:

* 2D Gaussian mixtures (`ring`, `grid`): `gax.metrics.mode_coverage` of `MIXTURE_SAMPLES` =
  2500 samples, the protocol of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018):
  `modes_covered`, `hq_fraction`, `reverse_kl`.
* Stacked digits (`data.name="stacked_digits"`): the image metrics below with the
  `gax.metrics.stacked.stacked_extractor` of a digits classifier, plus the 1000-mode count of
  Metz et al. 2017 / VEEGAN / PacGAN: `modes_covered` and `reverse_kl` over the digit triples
  (the papers count 25,600 samples: set `eval.num_samples` to match).
* Images: FID (Heusel et al. 2017) always, and on request (`eval.metrics`) KID (Bińkowski et
  al. 2018), the Inception Score (Salimans et al. 2016) and improved precision/recall
  (Kynkäänniemi et al. 2019), from `num_samples` generated images. The feature network
  (`eval.features`) is either
    "classifier": a small CNN trained by gax on the run's own real images and labels
      (`gax.metrics.classifier`; for the digits dataset `digits_classifier`), or
    "inception_v3": the FID Inception-v3 with the weights of a local file
      (`eval.inception_path`, see `gax.metrics.features.INCEPTION_WEIGHTS_HELP`).

Generated images are quantised to uint8 as a saved PNG would be (the real images are uint8
too) before the feature network sees them. Sample i of an evaluation uses the latent drawn
with `fold_in(key, i)` (and class `i mod num_classes` for a conditional GAN), so an evaluation
is a function of the generator, `seed` and `num_samples` (and, only for a generator with noise
or dropout layers at sampling time, `batch_size`): `experiments/evaluate.py` with the run's
settings reproduces the trainer's records.

Files an evaluation keeps in the work directory, so that every evaluation of a run uses the
same network and the same real-data statistics:

  eval_classifier.npz            the "classifier" feature network (`eval.classifier_path`
                                 points elsewhere, e.g. at a file shared between runs)
  eval_reference_<features>.npz  mean/covariance of the real images' features (all images,
                                 at most `MAX_REFERENCE_IMAGES`), and the features of up to
                                 `MAX_REFERENCE_FEATURES` of them for KID and precision/recall;
                                 recomputed when the feature network's weights change

FID, KID and IS values computed with a "classifier" are only comparable between evaluations
that use the same classifier file; FID is also biased upwards at small sample counts, so
compare values at equal `num_samples` only.

`BestCheckpoint` keeps the `GANState` of the best evaluation so far (`eval.best_metric`,
compared in the direction of `METRIC_DIRECTIONS`) in `<workdir>/best/`, with `best.json`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from gax import checks, rejection
from gax import conv as conv_lib
from gax.checkpoint import Checkpointer
from gax.data import MixtureSource
from gax.metrics import classifier as classifier_lib
from gax.metrics import conditional as conditional_lib
from gax.metrics import features as features_lib
from gax.metrics import stacked as stacked_lib
from gax.metrics.fid import FeatureStats, fid_from_stats
from gax.metrics.inception_score import inception_score_from_logits
from gax.metrics.kid import kid_from_features
from gax.metrics.mode_coverage import mode_coverage
from gax.metrics.density_coverage import density_coverage_from_features
from gax.metrics.precision_recall import precision_recall_from_features
from gax.steps import BATCH_STATS, GAN, generate_indexed, sampling_params, standing_player

EVAL_FILE = "eval.jsonl"
OFFLINE_EVAL_FILE = "eval_offline.jsonl"
BEST_DIR = "best"
BEST_FILE = "best.json"
CLASSIFIER_FILE = "eval_classifier.npz"
REFERENCE_FILE = "eval_reference_{features}.npz"
REFERENCE_FORMAT = "gax.evaluation.reference/1"

MIXTURE_SAMPLES = 2500  # the VEEGAN / PacGAN protocol
MAX_REFERENCE_IMAGES = 50000  # real images in the reference statistics
MAX_REFERENCE_FEATURES = 10000  # real features kept for KID and precision/recall
KID_SUBSET_SIZE = 1000  # as in Bińkowski et al.'s code (smaller when fewer samples)
KID_SUBSETS = 100
IS_SPLITS = 10  # as in Salimans et al.'s code

FEATURES = ("classifier", "inception_v3")
IMAGE_METRICS = ("fid", "kid", "is", "pr", "dc", "intra_fid", "accuracy")  # eval.metrics;
# "pr" = precision and recall, "dc" = density and coverage; for conditional GANs "intra_fid"
# (FID per class, averaged) and "accuracy" (the classifier's accuracy on the samples' classes,
# the result "class_accuracy")
MIXTURE_RESULTS = ("modes_covered", "hq_fraction", "reverse_kl")
DRS_PREFIX = "drs_"  # results of the samples kept by discriminator rejection sampling
DRS_RESULTS = tuple(DRS_PREFIX + m for m in MIXTURE_RESULTS)
CALIBRATION_BATCH = 500  # real and generated points per step of DRS's D calibration
STACKED_RESULTS = ("modes_covered", "reverse_kl")  # of the 1000 stacked-digits modes
STACKED_DATASETS = ("stacked_digits", "stacked_mnist")

# Which way is better, for every metric `eval.best_metric` can name.
METRIC_DIRECTIONS = {
    "fid": "min",  # Fréchet distance to the real features
    "kid": "min",  # squared MMD to the real features
    "is": "max",  # Inception Score: confident and diverse predictions
    "precision": "max",  # fraction of samples on the real manifold
    "recall": "max",  # fraction of real data on the samples' manifold
    # Density: real k-NN balls per sample over k (about 1 when the distributions agree, above
    # where samples crowd dense real regions); coverage: fraction of real balls with a sample.
    "density": "max",
    "coverage": "max",
    "intra_fid": "min",  # FID between each class's real images and samples, averaged
    "class_accuracy": "max",  # samples the classifier puts in the class they were made for
    "modes_covered": "max",
    "hq_fraction": "max",
    "reverse_kl": "min",
    **{DRS_PREFIX + m: d for m, d in (("modes_covered", "max"), ("hq_fraction", "max"),
                                      ("reverse_kl", "min"))},
}
BEST_AUTO, BEST_NONE = "auto", "none"

INCEPTION_PATH_HELP = (
    "eval.features='inception_v3' needs the local Inception-v3 weight file: set "
    "config.eval.inception_path (experiments/evaluate.py: --inception_path), or use "
    "eval.features='classifier'.")


# ------------------------------------------------------------------------------------------
# Settings.


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The `eval` section of a config.

  Attributes:
    every: steps between evaluations during training; 0: at every `train.sample_every`;
      negative: never (the final step is evaluated too, as samples are).
    num_samples: generated images per image evaluation (mixtures always use 2500).
    metrics: image metrics, a subset of `IMAGE_METRICS` (a comma-separated string works
      too); FID is always computed.
    features: the feature network, "classifier" or "inception_v3".
    inception_path: the local Inception-v3 `.npz` ("inception_v3" only).
    classifier_path: the classifier `.npz`; "" is `<workdir>/eval_classifier.npz`. Made (from
      the run's labelled real data) when absent, loaded when present.
    classifier_steps: training steps of a classifier made here.
    best_metric: the metric whose best value's state is kept in `<workdir>/best/`: a key of
      `METRIC_DIRECTIONS`; "auto": "fid" for images, "modes_covered" for mixtures; "none": keep
      no best checkpoint.
    seed: seeds the generated samples (and KID's subsets).
    batch_size: generated images per generator call and feature-network call.
    drs: mixtures only: also score 2500 samples filtered by discriminator rejection sampling
      (`gax.rejection`, Azadi et al. 2019), as the `drs_*` results.
    drs_gamma: DRS's fixed shift gamma of the acceptance logit (0: exact rejection sampling).
    drs_percentile: when > 0, gamma is this percentile of each batch's acceptance logits
      instead (the DRS paper's practice).
    drs_burn_in: samples drawn to estimate D's largest logit before DRS keeps any.
    drs_max_draws: samples DRS may draw after the burn-in; fewer than 2500 accepted by then
      (an acceptance below 2500 / drs_max_draws) is logged and recorded as `drs_error`, with
      NaN `drs_*` results.
    drs_calibrate_steps: when > 0, DRS first trains a copy of D this many steps against the
      final G (`gax.rejection.calibrate_discriminator`, batches of 500 real and 500 generated
      points); the run's own D is unchanged. The result records the calibration loss's mean
      over its first and last 100 steps (`drs_calibration_loss_start`, `_end`).
    drs_calibrate_lr: the calibration's Adam learning rate.
    standing_stats: when > 0, before sampling, G's batch-norm running statistics are
      recomputed for the params it samples with from this many train-mode batches of
      `batch_size` (`gax.steps.standing_statistics`; BigGAN's "standing statistics"). Use it
      with `tricks.g_ema` on a batch-norm G, whose running statistics follow the trained
      params, not their average. The run's state is not changed. 0: off.
  """

  every: int = 0
  num_samples: int = 1000
  metrics: Tuple[str, ...] = ("fid",)
  features: str = "classifier"
  inception_path: str = ""
  classifier_path: str = ""
  classifier_steps: int = 1000
  best_metric: str = BEST_AUTO
  seed: int = 0
  batch_size: int = 100
  drs: bool = False
  drs_gamma: float = 0.0
  drs_percentile: float = 0.0
  drs_burn_in: int = 10000
  drs_max_draws: int = 2_000_000
  drs_calibrate_steps: int = 0
  drs_calibrate_lr: float = 1e-4
  standing_stats: int = 0

  @classmethod
  def from_config(cls, section: Any = None, **overrides: Any) -> "EvalSettings":
    """Settings from a (partial) `eval` section (dict or ConfigDict; missing keys take their
    defaults) and `overrides` (None values ignored), checked: an unknown key is a `KeyError`
    naming the known ones, a bad value a `ValueError` naming the key."""
    given = dict(_as_plain_dict(section))
    given.update({k: v for k, v in overrides.items() if v is not None})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given) - set(known))
    if unknown:
      hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(
          k, known, n=1)) else repr(k) for k in unknown]
      raise KeyError(f"Unknown eval config keys: {', '.join(hints)}; known: {sorted(known)}.")
    # Integer settings and their lower bounds (None: any integer; `every` < 0 turns it off).
    for key, minimum in (("every", None), ("seed", None), ("num_samples", 10),
                         ("classifier_steps", 1), ("batch_size", 1), ("drs_burn_in", 1),
                         ("drs_max_draws", MIXTURE_SAMPLES), ("drs_calibrate_steps", 0),
                         ("standing_stats", 0)):
      if key in given:
        given[key] = checks.integer(given[key], f"config.eval.{key}", minimum)
    if "metrics" in given:
      given["metrics"] = _parse_metrics(given["metrics"])
    s = cls(**given)
    if s.features not in FEATURES:
      raise ValueError(f"config.eval.features={s.features!r}; choose one of {FEATURES}.")
    if s.best_metric not in (BEST_AUTO, BEST_NONE, *METRIC_DIRECTIONS):
      raise ValueError(f"config.eval.best_metric={s.best_metric!r}; choose {BEST_AUTO!r}, "
                       f"{BEST_NONE!r} or one of {sorted(METRIC_DIRECTIONS)}.")
    if not isinstance(s.drs, bool):
      raise ValueError(f"config.eval.drs must be True or False, got {s.drs!r}.")
    if not (isinstance(s.drs_gamma, (int, float)) and math.isfinite(s.drs_gamma)):
      raise ValueError(f"config.eval.drs_gamma must be a finite number, got {s.drs_gamma!r}.")
    if not (isinstance(s.drs_percentile, (int, float)) and 0 <= s.drs_percentile <= 100):
      raise ValueError("config.eval.drs_percentile must be in [0, 100] (0: use drs_gamma), "
                       f"got {s.drs_percentile!r}.")
    if not (isinstance(s.drs_calibrate_lr, (int, float)) and 0 < s.drs_calibrate_lr < math.inf):
      raise ValueError("config.eval.drs_calibrate_lr must be a positive number, got "
                       f"{s.drs_calibrate_lr!r}.")
    if s.drs_calibrate_steps and not s.drs:
      raise ValueError(f"config.eval.drs_calibrate_steps={s.drs_calibrate_steps} calibrates "
                       "D for DRS; it needs config.eval.drs=True.")
    if s.drs_percentile and s.drs_gamma:
      raise ValueError(f"config.eval.drs_gamma={s.drs_gamma} and drs_percentile="
                       f"{s.drs_percentile}: set one of them.")
    for key in ("inception_path", "classifier_path"):
      if not isinstance(getattr(s, key), str):
        raise ValueError(f"config.eval.{key} must be a path string, got {getattr(s, key)!r}.")
    return s

  def interval(self, sample_every: int) -> int:
    """Steps between evaluations during training (0: none)."""
    if self.every < 0:
      return 0
    return int(self.every) if self.every else max(int(sample_every), 0)


def eval_config_defaults() -> Dict[str, Any]:
  """The `eval` section of `gax.builders.base_config`: `EvalSettings`' defaults."""
  return dataclasses.asdict(EvalSettings())


def _as_plain_dict(section: Any) -> Mapping[str, Any]:
  if section is None:
    return {}
  return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def _parse_metrics(metrics: Any) -> Tuple[str, ...]:
  if isinstance(metrics, str):
    metrics = [metrics]
  # "fid,kid" and ("fid", "kid") alike (a command-line override may give ("fid,kid",)).
  metrics = [m.strip().lower() for item in metrics for m in str(item).split(",") if m.strip()]
  bad = sorted(set(metrics) - set(IMAGE_METRICS))
  if bad:
    raise ValueError(f"config.eval.metrics: unknown {bad}; choose from {IMAGE_METRICS} "
                     "(fid is always computed; pr = precision and recall, dc = density and "
                     "coverage).")
  return tuple(m for m in IMAGE_METRICS if m == "fid" or m in metrics)


# ------------------------------------------------------------------------------------------
# Sampling.

_GENERATORS: Dict[Tuple[int, int, bool], Tuple[GAN, Any]] = {}


def _generator_fn(gan: GAN, batch_size: int, quantize: bool):
  """jit `(g, key, start) -> batch_size samples`, sample `start + j` from latent
  `fold_in(key_z, start + j)`; cached per GAN object."""
  cache_key = (id(gan), batch_size, quantize)
  if cache_key in _GENERATORS and _GENERATORS[cache_key][0] is gan:
    return _GENERATORS[cache_key][1]

  @functools.partial(jax.jit, compiler_options=conv_lib.compiler_options())
  def gen(g, key, start):
    x = generate_indexed(gan, g, key, start, batch_size)
    if quantize:  # as a PNG stores it: [-1, 1] -> uint8
      x = jnp.clip(jnp.round((x.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(jnp.uint8)
    return x

  if len(_GENERATORS) > 16:
    _GENERATORS.clear()
  _GENERATORS[cache_key] = (gan, gen)
  return gen


def generate_samples(gan: GAN, state: Any, key: jax.Array, num: int, batch_size: int = 100,
                     quantize: bool = False) -> Iterator[np.ndarray]:
  """Yields `num` samples of G (eval mode, EMA weights when kept) in NumPy batches of up to
  `batch_size`: float32, or with `quantize` uint8 images (`round((x + 1) * 127.5)`).

  Sample i has latent `gan.latent(fold_in(key_z, i))` and, for a conditional GAN, class
  `i mod num_classes`, whatever the batch size.
  """
  gen = _generator_fn(gan, int(batch_size), quantize)
  for start in range(0, num, batch_size):
    x = np.asarray(gen(state.g, key, jnp.int32(start)))
    yield x[:num - start] if num - start < batch_size else x


_WARNED_STANDING_STATS: List[bool] = []  # once per process


def with_standing_statistics(gan: GAN, state: Any, settings: EvalSettings) -> Any:
  """`state` with G's batch-norm statistics recomputed for its sampling params when
  `settings.standing_stats` > 0 (`gax.steps.standing_player`, keyed by `settings.seed`);
  otherwise `state` itself."""
  if not settings.standing_stats:
    g = state.g
    if (not _WARNED_STANDING_STATS and isinstance(g.model_state, Mapping)
        and g.model_state.get(BATCH_STATS) and sampling_params(g) is not g.params):
      _WARNED_STANDING_STATS.append(True)
      logging.warning("Evaluation samples G's EMA with the batch-norm running statistics of "
                      "the trained params; eval.standing_stats=16 recomputes them for the "
                      "EMA (gax.steps.standing_statistics).")
    return state
  return state.replace(g=standing_player(gan, state.g, jax.random.PRNGKey(settings.seed),
                                         settings.standing_stats, max(settings.batch_size, 2)))


# ------------------------------------------------------------------------------------------
# Evaluators.


def _is_finite_number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Evaluator:
  """Scores generator states of one run; build with `Evaluator.from_config`.

  Attributes:
    settings: the `EvalSettings`.
    best_metric: the metric `BestCheckpoint` follows, or None.
    metrics: the result keys `evaluate` produces that `METRIC_DIRECTIONS` ranks.
  """

  kind = ""
  settings: EvalSettings
  metrics: Tuple[str, ...] = ()

  def evaluate(self, gan: GAN, state: Any) -> Dict[str, Any]:
    """The metrics of `state`'s generator, a JSON-serialisable dict."""
    raise NotImplementedError

  def describe(self, result: Mapping[str, Any]) -> str:
    """A one-line summary of a result, for the log."""
    raise NotImplementedError

  @property
  def best_metric(self) -> Optional[str]:
    return resolve_best_metric(self.settings, self.metrics, self.kind)

  @staticmethod
  def from_config(config: Any, source: Any, workdir: str, **overrides: Any) -> "Evaluator":
    """The evaluator of a run with `config` on `source` (its data source), keeping its
    classifier and reference statistics in `workdir`.

    Args:
      config: the run's config; its `eval` section (absent: defaults) gives the settings.
      source: the run's data source (`gax.builders.build_data`).
      workdir: the run's work directory.
      **overrides: `EvalSettings` fields that replace the config's (None: keep).

    Raises:
      FileNotFoundError: "inception_v3" without an existing `inception_path`.
      ValueError: "classifier" on unlabelled data without a classifier file; a best metric
        the evaluation does not compute; images a feature network cannot take.
    """
    section = config.get("eval") if hasattr(config, "get") else None
    settings = EvalSettings.from_config(section, **overrides)
    if isinstance(source, MixtureSource):
      if settings.drs:
        rejection.check_loss(config.get("loss") if hasattr(config, "get") else None,
                             "config.eval.drs")
      resolve_best_metric(settings, MIXTURE_RESULTS + (DRS_RESULTS if settings.drs else ()),
                          "mixture")  # checked before any work
      return ModeCoverageEvaluator(settings, source)
    if settings.drs:
      raise ValueError("config.eval.drs scores the 2D mixtures only; for other data draw DRS "
                       "samples with gax.rejection.rejection_sample.")
    name = _dataset_name(config, tfds=False)
    stacked = name in STACKED_DATASETS
    resolve_best_metric(settings, image_results(settings.metrics, stacked), "images")
    digits = {"digits": "digits", "stacked_digits": "digits", "mnist": "mnist",
              "stacked_mnist": "mnist"}.get(name, "")
    mnist_path = str(_as_plain_dict(config.data).get("path", "")) if digits == "mnist" else ""
    return ImageEvaluator(settings, source, workdir, dataset=_dataset_name(config),
                          digits=digits, stacked=stacked, mnist_path=mnist_path)


def unlabelled_default(config: Any, source: Any, workdir: str) -> Optional[str]:
  """Why the default image evaluation cannot run on this data, or None when it can: the
  default features are a classifier trained on the run's labelled images (`eval.features=
  "classifier"`), so data without labels (a `folder` or `array` run with `data.labels` off),
  no classifier file given or cached, and not one of the digit sets (which bring their own
  classifier) leave it nothing to train. `gax.trainer` then turns evaluation off with this
  notice when `eval.every` is 0 (evaluate with the samples, the default) and keeps the error
  when `eval.every` asks for evaluations explicitly."""
  if isinstance(source, MixtureSource) or _has_labels(source):
    return None
  section = config.get("eval") if hasattr(config, "get") else None
  settings = EvalSettings.from_config(section)
  if settings.features != "classifier":
    return None
  path = settings.classifier_path or os.path.join(workdir, CLASSIFIER_FILE)
  name = _dataset_name(config, tfds=False)
  if os.path.isfile(path) or name in ("digits", "mnist", *STACKED_DATASETS):
    return None
  return (f"the {_dataset_name(config)!r} data has no labels, and the default FID features "
          "(eval.features='classifier') are a classifier trained on them. To evaluate, set "
          "eval.features='inception_v3' with eval.inception_path, or eval.classifier_path, "
          "or data.labels=True if the data have labels")


def _dataset_name(config: Any, tfds: bool = True) -> str:
  """The data's name: `data.name`, or (with `tfds`) a TFDS source's `data.dataset`."""
  try:
    data = _as_plain_dict(config.data)
  except (AttributeError, KeyError):
    return "data"
  return str((tfds and data.get("dataset")) or data.get("name") or "data")


def image_results(metrics: Sequence[str], stacked: bool = False) -> Tuple[str, ...]:
  """The ranked result keys of image `metrics` ("pr" gives precision and recall), and with
  `stacked` (stacked-digits data) the mode count's `STACKED_RESULTS`."""
  keys = {"pr": ("precision", "recall"), "dc": ("density", "coverage"),
          "accuracy": ("class_accuracy",)}
  return tuple(m for name in _parse_metrics(metrics) for m in keys.get(name, (name,))) + (
      STACKED_RESULTS if stacked else ())


def resolve_best_metric(settings: EvalSettings, produced: Sequence[str],
                        kind: str) -> Optional[str]:
  """The metric `eval.best_metric` names for an evaluation producing `produced`, or None for
  "none"; a metric the evaluation does not compute is a ValueError."""
  name = settings.best_metric
  if name == BEST_NONE:
    return None
  if name == BEST_AUTO:
    return "modes_covered" if kind == "mixture" else "fid"
  if name not in produced:
    group = {"precision": "pr", "recall": "pr", "density": "dc", "coverage": "dc"}.get(name)
    hint = (f"; add {group or name!r} to eval.metrics"
            if kind == "images" and name in METRIC_DIRECTIONS and name not in MIXTURE_RESULTS
            else "")
    raise ValueError(f"config.eval.best_metric={name!r} is not computed for this run's data "
                     f"({kind}: {list(produced)}){hint}.")
  return name


class ModeCoverageEvaluator(Evaluator):
  """Mode coverage of 2500 samples of a 2D Gaussian mixture (VEEGAN / PacGAN)."""

  kind = "mixture"

  def __init__(self, settings: EvalSettings, source: MixtureSource):
    self.settings = settings
    self.source = source
    self.centers = np.asarray(source.centers)
    self.std = float(source.std)

  @property
  def metrics(self) -> Tuple[str, ...]:
    return MIXTURE_RESULTS + (DRS_RESULTS if self.settings.drs else ())

  def evaluate(self, gan: GAN, state: Any) -> Dict[str, Any]:
    s = self.settings
    key = jax.random.PRNGKey(s.seed)
    state = with_standing_statistics(gan, state, s)
    pts = np.concatenate(list(generate_samples(gan, state, key, MIXTURE_SAMPLES,
                                               max(s.batch_size, 500))))
    result = {**mode_coverage(pts, self.centers, self.std), "num_samples": MIXTURE_SAMPLES}
    if s.drs:
      result.update(self._drs(gan, state, key))
    return result

  def _drs(self, gan: GAN, state: Any, key: jax.Array) -> Dict[str, Any]:
    """The `drs_*` results (see `EvalSettings.drs`); a DRS that fails is recorded as
    `drs_error` with NaN results, so that training goes on."""
    s, out = self.settings, {}
    try:
      if s.drs_calibrate_steps:
        size = rejection.whole_packs(gan, CALIBRATION_BATCH)
        real = lambda i: self.source.sample(np.random.default_rng([s.seed, 1, i]), size)
        state, loss = rejection.calibrate_discriminator(
            gan, state, real, jax.random.fold_in(key, 2), steps=s.drs_calibrate_steps,
            batch_size=size, learning_rate=s.drs_calibrate_lr)
        out[DRS_PREFIX + "calibration_loss_start"] = float(loss[:100].mean())
        out[DRS_PREFIX + "calibration_loss_end"] = float(loss[-100:].mean())
      drs = rejection.rejection_sample(
          gan, state, jax.random.fold_in(key, 1), MIXTURE_SAMPLES,
          batch_size=max(s.batch_size, 1000), burn_in=s.drs_burn_in, gamma=s.drs_gamma,
          percentile=s.drs_percentile or None, max_draws=s.drs_max_draws)
    except (RuntimeError, FloatingPointError) as e:  # recorded, and training goes on
      logging.warning("Discriminator rejection sampling failed: %s", e)
      return {**out, **{k: float("nan") for k in DRS_RESULTS}, DRS_PREFIX + "error": str(e)}
    out.update({DRS_PREFIX + k: v for k, v in
                mode_coverage(drs.samples, self.centers, self.std).items() if k != "modes"})
    out[DRS_PREFIX + "acceptance"] = drs.acceptance
    return out

  def describe(self, result: Mapping[str, Any]) -> str:
    text = (f"modes covered {result['modes_covered']}/{result['modes']}, high-quality "
            f"{100 * result['hq_fraction']:.1f}%, reverse KL {result['reverse_kl']:.3f}")
    if DRS_PREFIX + "calibration_loss_end" in result:
      text += (f"; D calibrated (loss {result['drs_calibration_loss_start']:.3f} -> "
               f"{result['drs_calibration_loss_end']:.3f})")
    if DRS_PREFIX + "error" in result:
      text += "; DRS failed: " + result[DRS_PREFIX + "error"]
    elif DRS_PREFIX + "acceptance" in result:
      text += (f"; DRS (acceptance {result['drs_acceptance']:.3f}): modes covered "
               f"{result['drs_modes_covered']}, high-quality "
               f"{100 * result['drs_hq_fraction']:.1f}%, reverse KL "
               f"{result['drs_reverse_kl']:.3f}")
    return text


class ImageEvaluator(Evaluator):
  """FID (and KID, IS, precision/recall, density/coverage; for a conditional GAN intra-class
  FID and sample accuracy) of generated images against the run's real images.

  Attributes:
    extractor: the `FeatureExtractor`.
    reference: `FeatureStats` of the real images' features.
    reference_features: float32 `[M, F]` features of up to `MAX_REFERENCE_FEATURES` real
      images (a fixed random subset when there are more).
    classifier_path: the classifier file ("classifier" features), else None.
    reference_path: the cached reference statistics.
    num_classes: the data's classes, with "intra_fid" or "accuracy" (else 0).
    class_reference: with "intra_fid", one `FeatureStats` per class of the real images
      (`source.images` with `source.labels`), computed at construction, not cached.
  """

  kind = "images"

  def __init__(self, settings: EvalSettings, source: Any, workdir: str, dataset: str = "data",
               digits: str = "", stacked: bool = False, mnist_path: str = ""):
    self.settings = settings
    images = getattr(source, "images", None)
    if images is None and getattr(source, "reference_images", None) is None:
      raise ValueError(f"Image evaluation needs the real images of the data source "
                       f"({type(source).__name__} has neither .images nor .reference_images).")
    self.metrics = image_results(settings.metrics, stacked)
    self.stacked = stacked
    self.classifier_path: Optional[str] = None
    if settings.features == "inception_v3":
      self.extractor, fingerprint = _inception(settings.inception_path)
    else:
      self.classifier_path = os.path.abspath(
          settings.classifier_path or os.path.join(workdir, CLASSIFIER_FILE))
      self.extractor, fingerprint = _classifier(self.classifier_path, source, dataset, digits,
                                                settings.classifier_steps, stacked, mnist_path)
    reference = getattr(source, "reference_images", None)
    images = images if reference is None else reference
    self.extractor.check_images(images[:1])
    if "is" in settings.metrics and not self.extractor.num_classes:
      raise ValueError(f"eval.metrics has 'is' but {self.extractor.name} has no logits.")
    self.reference_path = os.path.join(workdir,
                                       REFERENCE_FILE.format(features=settings.features))
    self.reference, self.reference_features = _reference(
        self.reference_path, self.extractor, fingerprint, images, settings.batch_size)
    self.num_classes = 0
    self.class_reference: Optional[List[FeatureStats]] = None
    if {"intra_fid", "accuracy"} & set(settings.metrics):
      self._check_conditional_source(source, settings.metrics)
      self.num_classes = int(source.num_classes)
    if "intra_fid" in settings.metrics:
      real, real_labels = labelled_images(source)
      feats, _ = features_lib.compute_features(self.extractor, real, settings.batch_size)
      self.class_reference = conditional_lib.class_feature_stats(
          feats, np.asarray(real_labels), self.num_classes)

  def _check_conditional_source(self, source: Any, metrics: Sequence[str]) -> None:
    asked = ", ".join(m for m in ("intra_fid", "accuracy") if m in metrics)
    if not _has_labels(source) or not getattr(source, "num_classes", 0):
      raise ValueError(f"eval.metrics {asked} score a conditional GAN by class and need the "
                       f"real images' labels: train on labelled data (data.labels=True); "
                       f"{type(source).__name__} has none.")
    if "accuracy" in metrics and self.extractor.num_classes != source.num_classes:
      raise ValueError(f"eval.metrics accuracy needs a feature network whose logits are the "
                       f"data's {source.num_classes} classes; {self.extractor.name} has "
                       f"{self.extractor.num_classes}.")

  def evaluate(self, gan: GAN, state: Any, num_samples: Optional[int] = None) -> Dict[str, Any]:
    s = self.settings
    n = int(num_samples or s.num_samples)
    want = set(s.metrics)
    by_class = bool(want & {"intra_fid", "accuracy"})
    if by_class and (not gan.conditional or gan.num_classes != self.num_classes):
      raise ValueError(f"eval.metrics intra_fid and accuracy score a conditional GAN of the "
                       f"data's {self.num_classes} classes; this GAN has conditioning="
                       f"{gan.conditioning!r}, num_classes={gan.num_classes}.")
    state = with_standing_statistics(gan, state, s)
    stats = FeatureStats()
    feats: List[np.ndarray] = []
    logits: List[np.ndarray] = []
    for batch in generate_samples(gan, state, jax.random.PRNGKey(s.seed), n, s.batch_size,
                                  quantize=True):
      f, l = features_lib.compute_features(self.extractor, batch, s.batch_size)
      stats.update(f)
      if want & {"kid", "pr", "dc", "intra_fid"}:
        feats.append(f)
      if want & {"is", "accuracy"} or self.stacked:
        logits.append(l)
    result: Dict[str, Any] = {"fid": fid_from_stats(self.reference, stats)}
    fake = np.concatenate(feats) if feats else None
    real = self.reference_features[:n]
    if "kid" in want:
      size = min(KID_SUBSET_SIZE, len(real), n)
      result["kid"], result["kid_std"] = kid_from_features(real, fake, KID_SUBSETS, size,
                                                           seed=s.seed)
    if "is" in want:
      result["is"], result["is_std"] = inception_score_from_logits(
          np.concatenate(logits), splits=min(IS_SPLITS, n))
    if "pr" in want:
      result["precision"], result["recall"] = precision_recall_from_features(real, fake)
    if "dc" in want:
      result["density"], result["coverage"] = density_coverage_from_features(real, fake)
    if by_class:  # sample i was generated for class i mod K (`generate_samples`)
      made_for = np.arange(n) % self.num_classes
      if "intra_fid" in want:
        result["intra_fid"], _ = conditional_lib.intra_class_fid(self.class_reference, fake,
                                                                 made_for)
      if "accuracy" in want:
        result["class_accuracy"] = conditional_lib.sample_accuracy(np.concatenate(logits),
                                                                   made_for)
    if self.stacked:
      modes = stacked_lib.mode_statistics_from_logits(np.concatenate(logits))
      result.update(modes_covered=modes["modes"], modes=stacked_lib.NUM_MODES,
                    reverse_kl=modes["reverse_kl"])
    result.update(num_samples=n, features=self.extractor.name)
    return result

  def describe(self, result: Mapping[str, Any]) -> str:
    parts = [f"FID {result['fid']:.4f}"]
    if "kid" in result:
      parts.append(f"KID {result['kid']:.5f}±{result['kid_std']:.5f}")
    if "is" in result:
      parts.append(f"IS {result['is']:.3f}±{result['is_std']:.3f}")
    if "precision" in result:
      parts.append(f"precision {result['precision']:.3f} recall {result['recall']:.3f}")
    if "density" in result:
      parts.append(f"density {result['density']:.3f} coverage {result['coverage']:.3f}")
    if "intra_fid" in result:
      parts.append(f"intra-FID {result['intra_fid']:.4f}")
    if "class_accuracy" in result:
      parts.append(f"accuracy {result['class_accuracy']:.3f}")
    if "modes_covered" in result:
      parts.append(f"modes {result['modes_covered']}/{result['modes']}, reverse KL "
                   f"{result['reverse_kl']:.3f}")
    return f"{', '.join(parts)} ({result['num_samples']} samples, {result['features']})"


def _fingerprint(variables: Mapping[str, Any]) -> str:
  """A short hash of a network's weights (names, shapes, dtypes and values)."""
  h = hashlib.sha256()
  flat = traverse_util.flatten_dict(jax.device_get(dict(variables)), sep="/")
  for k in sorted(flat):
    a = np.ascontiguousarray(flat[k])
    h.update(f"{k}:{a.dtype}:{a.shape};".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def _inception(path: str) -> Tuple[features_lib.FeatureExtractor, str]:
  if not path:
    raise FileNotFoundError(f"{INCEPTION_PATH_HELP}\n{features_lib.INCEPTION_WEIGHTS_HELP}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No Inception-v3 weight file at {path!r} (config.eval."
                            f"inception_path / --inception_path).\n"
                            f"{features_lib.INCEPTION_WEIGHTS_HELP}")
  variables, _ = features_lib.load_variables(path)
  return features_lib.inception_v3_from_variables(variables), _fingerprint(variables)


def _has_labels(source: Any) -> bool:
  return (getattr(source, "labels", None) is not None
          or getattr(source, "reference_labels", None) is not None)


def labelled_images(source: Any) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """The real images a source trains on and their labels (None without): `source.images`
  and `source.labels` when it holds them in memory; for a streaming source
  (`gax.data.GrainSource`), its fixed decoded sample `reference_images` and
  `reference_labels`."""
  images = getattr(source, "images", None)
  if images is not None:
    return images, getattr(source, "labels", None)
  return source.reference_images, getattr(source, "reference_labels", None)


def _classifier(path: str, source: Any, dataset: str, digits: str, steps: int,
                stacked: bool = False,
                mnist_path: str = "") -> Tuple[features_lib.FeatureExtractor, str]:
  """The classifier at `path`, or when absent one trained (and saved there) on `source`'s
  images and labels. For `digits="digits"` (sklearn's) a classifier of all 1797 digits
  (`digits_classifier`), whose labels the source may not carry; for `digits="mnist"` one of
  the 4000 MNIST training digits (`mnist_classifier`; its accuracy on the 1000 held-out
  digits is logged); for stacked data that digit classifier applied to every channel
  (`gax.metrics.stacked.stacked_extractor`)."""
  real, real_labels = labelled_images(source)
  shape = tuple(int(d) for d in real.shape[1:])

  def digit_classifier():
    t0 = time.time()
    existed = os.path.isfile(path)
    if digits == "mnist":
      clf = classifier_lib.mnist_classifier(shape[0], steps=steps, cache_path=path,
                                            path=mnist_path)
      accuracy = f", {classifier_lib.mnist_test_accuracy(clf, mnist_path):.4f} on the " \
                 "1000 held-out MNIST digits"
    else:
      clf = classifier_lib.digits_classifier(shape[0], steps=steps, cache_path=path)
      accuracy = ""
    logging.info("Evaluation: digit classifier %s %s %s (%.1fs%s)", clf.name,
                 "from" if existed else "trained, saved to", path, time.time() - t0, accuracy)
    return clf

  if stacked:
    clf = digit_classifier()
    return stacked_lib.stacked_extractor(clf), _fingerprint(clf.variables)
  if digits and shape[0] == shape[1] and shape[2] == 1:
    clf = digit_classifier()
    return clf.extractor(), _fingerprint(clf.variables)
  if os.path.isfile(path):
    clf = classifier_lib.load_classifier(path)
    logging.info("Evaluation: classifier %s from %s", clf.name, path)
  else:
    t0 = time.time()
    labels = real_labels
    if labels is None:
      raise ValueError(
          f"eval.features='classifier' trains its feature network on the run's labelled real "
          f"images, but the {dataset!r} data has no labels (config.data.labels is off or the "
          f"dataset has none). Use eval.features='inception_v3' with eval.inception_path (a "
          f"local weight file); or set config.data.labels=True if the dataset has labels (an "
          f"unconditional model ignores them); or point eval.classifier_path at a classifier "
          f"file trained elsewhere (gax.metrics.classifier.save_classifier); or train without "
          f"evaluation, eval.every=-1.")
    clf = classifier_lib.train_classifier(real, labels, source.num_classes or None,
                                          steps=steps, name=f"{dataset}{shape[0]}")
    classifier_lib.save_classifier(path, clf)
    logging.info("Evaluation: trained classifier %s (%d steps, %.1fs), saved to %s", clf.name,
                 steps, time.time() - t0, path)
  if tuple(clf.image_shape) != shape:
    raise ValueError(f"The classifier at {path!r} takes {tuple(clf.image_shape)} images, the "
                     f"run's data are {shape}; point eval.classifier_path at one for this data.")
  return clf.extractor(), _fingerprint(clf.variables)


def _reference(path: str, extractor: features_lib.FeatureExtractor, fingerprint: str,
               images: np.ndarray, batch_size: int) -> Tuple[FeatureStats, np.ndarray]:
  """The real images' `FeatureStats` and some of their features, from the cache at `path` when
  it was made by the same network (same weights) from as many images, else computed and
  cached."""
  n = min(len(images), MAX_REFERENCE_IMAGES)
  meta = {"format": REFERENCE_FORMAT, "features": extractor.name, "fingerprint": fingerprint,
          "num_images": n, "image_shape": [int(d) for d in images.shape[1:]]}
  if os.path.isfile(path):
    with np.load(path, allow_pickle=False) as z:
      old = json.loads(str(z["meta"])) if "meta" in z.files else None
      if old == meta:
        return (FeatureStats(int(z["count"]), np.asarray(z["mean"], np.float64),
                             np.asarray(z["scatter"], np.float64)),
                np.asarray(z["features"], np.float32))
    logging.warning("Evaluation: %s was computed with another feature network or data (%s, "
                    "now %s); recomputing it.", path, old, meta)
  t0 = time.time()
  # All images, or a fixed random subset of MAX_REFERENCE_IMAGES; the first
  # MAX_REFERENCE_FEATURES of that order keep their features.
  order = (np.arange(n) if n == len(images) else
           np.sort(np.random.default_rng(0).permutation(len(images))[:n]))
  order = np.random.default_rng(1).permutation(order)
  stats = FeatureStats()
  kept: List[np.ndarray] = []
  chunk = max(batch_size, 1000)
  for start in range(0, n, chunk):
    f, _ = features_lib.compute_features(extractor, images[order[start:start + chunk]],
                                         batch_size)
    stats.update(f)
    if start < MAX_REFERENCE_FEATURES:
      kept.append(f[:MAX_REFERENCE_FEATURES - start])
  feats = np.concatenate(kept)
  tmp = path + ".tmp"
  with open(tmp, "wb") as fh:
    np.savez(fh, count=np.int64(stats.count), mean=stats.mean, scatter=stats.scatter,
             features=feats, meta=np.asarray(json.dumps(meta, sort_keys=True)))
  os.replace(tmp, path)
  logging.info("Evaluation: reference statistics of %d real images (%s) in %.1fs, cached in %s",
               n, extractor.name, time.time() - t0, path)
  return stats, feats


# ------------------------------------------------------------------------------------------
# The best checkpoint.


def is_better(metric: str, value: float, than: float) -> bool:
  """Whether `value` of `metric` is strictly better than `than` (`METRIC_DIRECTIONS`)."""
  return value < than if METRIC_DIRECTIONS[metric] == "min" else value > than


def read_jsonl(path: str) -> List[Dict[str, Any]]:
  """The records of a JSON-lines file ([] when there is none)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def read_best(workdir: str) -> Optional[Dict[str, Any]]:
  """The `best.json` of a work directory, or None."""
  path = os.path.join(workdir, BEST_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


class BestCheckpoint:
  """Keeps the state of the best evaluation of a run in `<workdir>/best/` (one Orbax
  checkpoint) and `<workdir>/best.json` (`{"metric", "value", "step", "direction", ...}`).

  A result is the new best when its metric is strictly better (ties keep the earlier step)
  than every earlier comparable record: one with the same `num_samples` and `features`, since
  FID of other sample counts or feature networks is another scale. The earlier records are
  those of `eval.jsonl` given at construction (on a resumed run, the records up to the
  restored step; later ones were dropped with the steps that are redone) plus those passed
  to `update` since, so the resumed run makes the choices the uninterrupted run made. The
  state is on disk before `best.json` names it. A `best.json` naming a step after the
  restored one (an evaluation whose regular checkpoint the crash prevented) is left with its
  checkpoint until the redone evaluation of that step, or a better one, replaces it.
  """

  def __init__(self, workdir: str, metric: str, records: Sequence[Mapping[str, Any]] = (),
               write_record: bool = True):
    if metric not in METRIC_DIRECTIONS:
      raise ValueError(f"Unknown best metric {metric!r}; choose one of "
                       f"{sorted(METRIC_DIRECTIONS)}.")
    self.workdir = workdir
    self.metric = metric
    self.directory = os.path.join(workdir, BEST_DIR)
    self._records = [dict(r) for r in records]
    self._ckpt: Optional[Checkpointer] = None
    # False on the processes other than 0 of a multi-process run: they take part in the
    # (collective) Orbax save of the best state but leave best.json to process 0.
    self.write_record = write_record

  def _comparable(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (a.get("num_samples") == b.get("num_samples")
            and a.get("features") == b.get("features"))

  def best_record(self, like: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """The best record so far (comparable to `like`, when given); the earliest of ties."""
    best = None
    for r in self._records:
      v = r.get(self.metric)
      if not _is_finite_number(v) or (like is not None and not self._comparable(r, like)):
        continue
      if best is None or is_better(self.metric, v, best[self.metric]):
        best = r
    return best

  def update(self, step: int, result: Mapping[str, Any], state: Any) -> bool:
    """Records the evaluation of `state` at `step`; saves it when it is the new best."""
    value = result.get(self.metric)
    prev = self.best_record(like=result)
    record = {"step": int(step), **result}
    self._records.append(record)
    if not _is_finite_number(value):
      return False
    if prev is not None and not is_better(self.metric, value, prev[self.metric]):
      return False
    if self._ckpt is None:
      self._ckpt = Checkpointer(self.directory, max_to_keep=1)
    if step in self._ckpt.all_steps():  # the redone evaluation of a resumed run
      self._ckpt.delete(step)
    self._ckpt.save(step, state)
    self._ckpt.wait()
    best = {"metric": self.metric, "value": float(value), "step": int(step),
            "direction": METRIC_DIRECTIONS[self.metric],
            "checkpoint": os.path.join(BEST_DIR, str(int(step))),
            **{k: result[k] for k in ("num_samples", "features") if k in result}}
    if not self.write_record:
      return True
    path = os.path.join(self.workdir, BEST_FILE)
    with open(path + ".tmp", "w") as f:
      json.dump(best, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
    return True

  def close(self) -> None:
    if self._ckpt is not None:
      self._ckpt.close()
      self._ckpt = None


__all__ = ["EVAL_FILE", "OFFLINE_EVAL_FILE", "BEST_DIR", "BEST_FILE", "CLASSIFIER_FILE",
           "REFERENCE_FILE", "REFERENCE_FORMAT", "MIXTURE_SAMPLES", "MAX_REFERENCE_IMAGES",
           "MAX_REFERENCE_FEATURES", "KID_SUBSET_SIZE", "KID_SUBSETS", "IS_SPLITS", "FEATURES",
           "IMAGE_METRICS", "MIXTURE_RESULTS", "DRS_PREFIX", "DRS_RESULTS", "CALIBRATION_BATCH",
           "STACKED_RESULTS", "STACKED_DATASETS", "METRIC_DIRECTIONS", "INCEPTION_PATH_HELP",
           "EvalSettings", "eval_config_defaults", "unlabelled_default", "labelled_images",
           "generate_samples", "with_standing_statistics",
           "Evaluator", "image_results", "resolve_best_metric", "ModeCoverageEvaluator",
           "ImageEvaluator", "is_better", "read_jsonl", "read_best", "BestCheckpoint"]
