"""Plotting: every function takes ``ax=`` where it draws one panel and returns the Axes (or Figure)."""

from __future__ import annotations

from ._curves import calibration, few_shot, learning_curve, reliability
from ._gi import attributions, gi_confusion, gi_precision, gi_scores
from ._metrics import deg_counts, metrics, model_scatter, prediction_scatter

__all__ = [
    "attributions",
    "calibration",
    "deg_counts",
    "few_shot",
    "gi_confusion",
    "gi_precision",
    "gi_scores",
    "learning_curve",
    "metrics",
    "model_scatter",
    "prediction_scatter",
    "reliability",
]
