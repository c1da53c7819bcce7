"""Evaluation metrics."""

from gax.metrics.mode_coverage import mode_coverage

__all__ = ["mode_coverage"]
