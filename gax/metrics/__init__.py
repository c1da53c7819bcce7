"""Evaluation metrics.

Toy data: `mode_coverage` (VEEGAN / PacGAN). Images, all batched and jit-compiled on top of a
pluggable `FeatureExtractor` (`gax.metrics.features`): FID (`gax.metrics.fid`), KID (`.kid`),
the Inception Score (`.inception_score`), improved precision/recall (`.precision_recall`) and
density/coverage (`.density_coverage`), and for conditional models intra-class FID and the
accuracy of samples (`.conditional`), each from features or from images (`*_from_images`). Feature networks: the FID Inception-v3
from a local weight file (`inception_v3_from_file`) or a small classifier trained on the
dataset itself (`gax.metrics.classifier`).
"""

from gax.metrics.classifier import (Classifier, SmallCNN, digits_classifier, load_classifier,
                                    save_classifier, train_classifier)
from gax.metrics.features import (FEATURE_EXTRACTORS, FeatureExtractor, InceptionV3,
                                  compute_features, inception_v3_from_file,
                                  inception_v3_from_variables, inception_variables_from_torch,
                                  iter_features, make_feature_extractor)
from gax.metrics.conditional import class_feature_stats, intra_class_fid, sample_accuracy
from gax.metrics.density_coverage import (DensityCoverage, density_coverage_from_features,
                                          density_coverage_from_images)
from gax.metrics.fid import (FeatureStats, feature_statistics, fid_from_features, fid_from_images,
                             fid_from_stats, frechet_distance)
from gax.metrics.inception_score import (inception_score_from_images, inception_score_from_logits,
                                         inception_score_from_probs)
from gax.metrics.kid import kid_from_features, kid_from_images, polynomial_mmd2_unbiased
from gax.metrics.mode_coverage import mode_coverage
from gax.metrics.precision_recall import (PrecisionRecall, precision_recall_from_features,
                                          precision_recall_from_images)

__all__ = [
    "Classifier",
    "DensityCoverage",
    "density_coverage_from_features",
    "density_coverage_from_images",
    "FEATURE_EXTRACTORS",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionV3",
    "PrecisionRecall",
    "SmallCNN",
    "class_feature_stats",
    "compute_features",
    "digits_classifier",
    "feature_statistics",
    "fid_from_features",
    "fid_from_images",
    "fid_from_stats",
    "frechet_distance",
    "inception_score_from_images",
    "inception_score_from_logits",
    "inception_score_from_probs",
    "inception_v3_from_file",
    "inception_v3_from_variables",
    "inception_variables_from_torch",
    "intra_class_fid",
    "iter_features",
    "kid_from_features",
    "kid_from_images",
    "load_classifier",
    "make_feature_extractor",
    "mode_coverage",
    "polynomial_mmd2_unbiased",
    "precision_recall_from_features",
    "precision_recall_from_images",
    "sample_accuracy",
    "save_classifier",
    "train_classifier",
]
