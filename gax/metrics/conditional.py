"""Metrics of class-conditional generation: intra-class FID and the accuracy of samples.

* Intra-class FID (Miyato & Koyama 2018, sec. 5.1, "intra-FID"): the FID between the real
  images of class c and the samples generated for class c, for every class, averaged over the
  classes. An unconditional FID can be low while G draws the wrong class for every label;
  intra-FID cannot.
* Sample accuracy (the "classification accuracy score" in its simplest form, as Odena et al.
  2017, sec. 4.1, report for AC-GAN): the fraction of samples that the evaluation's classifier
  assigns to the class they were generated for.

Both work on features and logits computed elsewhere (`gax.metrics.features`): the real
images' features come once per class as `FeatureStats`, the samples' as arrays with their
labels.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from gax.metrics.fid import FeatureStats, fid_from_stats


def _check_labels(labels: np.ndarray, n: int, num_classes: int, what: str) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{what}: labels must be integers of shape ({n},), got {labels.dtype} "
                     f"{labels.shape}.")
  if n and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"{what}: labels must lie in [0, {num_classes}), got "
                     f"[{labels.min()}, {labels.max()}].")
  return labels


def class_feature_stats(features: np.ndarray, labels: np.ndarray,
                        num_classes: int) -> List[FeatureStats]:
  """One `FeatureStats` per class of `features` `[N, F]` with int `labels` `[N]`."""
  if features.ndim != 2:
    raise ValueError(f"class_feature_stats: features must be [N, F], got {features.shape}.")
  labels = _check_labels(labels, len(features), num_classes, "class_feature_stats")
  return [FeatureStats().update(features[labels == c]) for c in range(num_classes)]


def intra_class_fid(real: Sequence[FeatureStats], fake_features: np.ndarray,
                    fake_labels: np.ndarray) -> Tuple[float, np.ndarray]:
  """`(mean over classes, per-class FID [K])` of the samples `fake_features` `[N, F]`, made for
  classes `fake_labels` `[N]`, against the real classes' statistics `real` (K of them)."""
  k = len(real)
  fake_labels = _check_labels(fake_labels, len(fake_features), k, "intra_class_fid")
  counts = np.bincount(fake_labels, minlength=k)
  short = [c for c in range(k) if counts[c] < 2 or real[c].count < 2]
  if short:
    raise ValueError(f"intra_class_fid needs >= 2 real and >= 2 generated examples of every "
                     f"class; classes {short} have too few (generated {counts[short].tolist()}, "
                     f"real {[real[c].count for c in short]}). Generate more samples.")
  per_class = np.array([fid_from_stats(real[c], FeatureStats().update(
      fake_features[fake_labels == c])) for c in range(k)])
  return float(per_class.mean()), per_class


def sample_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """The fraction of samples whose classifier logits `[N, K]` put the largest value on the
  class `labels` `[N]` they were generated for."""
  if logits.ndim != 2:
    raise ValueError(f"sample_accuracy: logits must be [N, K], got {logits.shape}.")
  labels = _check_labels(labels, len(logits), logits.shape[1], "sample_accuracy")
  return float(np.mean(np.argmax(logits, axis=-1) == labels))


__all__ = ["class_feature_stats", "intra_class_fid", "sample_accuracy"]
