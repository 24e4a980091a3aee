"""Metrics: one evaluation path for every model (SPEC §6)."""

from ._core import mean_ci, pr_auc, rank_metric, roc_auc, rowwise_mae, rowwise_pearson, rowwise_r2
from ._evaluate import (
    EXPRESSION_METRICS,
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
    "SUBTASK_METRICS",
    "calibration",
    "compare",
    "evaluate",
    "evaluate_predictions",
    "mean_ci",
    "pr_auc",
    "prediction_scores",
    "rank_metric",
    "roc_auc",
    "rowwise_mae",
    "rowwise_pearson",
    "rowwise_r2",
    "summarize",
]
