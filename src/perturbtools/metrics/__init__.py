"""Metrics: one evaluation path for every model (SPEC §6)."""

from __future__ import annotations

from ._core import mean_ci, pr_auc, rank_metric, roc_auc, rowwise_mae, rowwise_pearson, rowwise_r2
from ._distribution import distribution_distances, energy_distance, mmd
from ._evaluate import (
    EXPRESSION_METRICS,
    KEY_METRICS,
    PLOT_METRICS,
    SUBTASK_METRICS,
    calibration,
    compare,
    evaluate,
    evaluate_predictions,
    prediction_scores,
    summarize,
)

__all__ = [
    "EXPRESSION_METRICS",
    "KEY_METRICS",
    "PLOT_METRICS",
    "SUBTASK_METRICS",
    "calibration",
    "compare",
    "distribution_distances",
    "energy_distance",
    "evaluate",
    "evaluate_predictions",
    "mean_ci",
    "mmd",
    "pr_auc",
    "prediction_scores",
    "rank_metric",
    "roc_auc",
    "rowwise_mae",
    "rowwise_pearson",
    "rowwise_r2",
    "summarize",
]
