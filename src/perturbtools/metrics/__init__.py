"""Metrics: one evaluation path for every model (SPEC §6)."""

from __future__ import annotations

from ._ceiling import ceiling_summary, noise_ceiling, normalised_scores, spearman_brown
from ._core import (
    de_overlap,
    direction_agreement,
    mean_ci,
    pr_auc,
    rank_metric,
    roc_auc,
    rowwise_mae,
    rowwise_pearson,
    rowwise_r2,
    spearman_on,
)
from ._distribution import distribution_distances, energy_distance, mmd
from ._evaluate import (
    DE_OVERLAP_METRICS,
    EXPRESSION_METRICS,
    KEY_METRICS,
    PLOT_METRICS,
    SUBTASK_METRICS,
    calibration,
    compare,
    compare_models,
    evaluate,
    evaluate_predictions,
    prediction_scores,
    summarize,
)
from ._resampling import bootstrap_ci, e_distance, etest, holm, paired_bootstrap, paired_permutation_test

__all__ = [
    "DE_OVERLAP_METRICS",
    "EXPRESSION_METRICS",
    "KEY_METRICS",
    "PLOT_METRICS",
    "SUBTASK_METRICS",
    "bootstrap_ci",
    "calibration",
    "ceiling_summary",
    "compare",
    "compare_models",
    "de_overlap",
    "direction_agreement",
    "distribution_distances",
    "e_distance",
    "energy_distance",
    "etest",
    "evaluate",
    "evaluate_predictions",
    "holm",
    "mean_ci",
    "mmd",
    "noise_ceiling",
    "normalised_scores",
    "paired_bootstrap",
    "paired_permutation_test",
    "pr_auc",
    "prediction_scores",
    "rank_metric",
    "roc_auc",
    "rowwise_mae",
    "rowwise_pearson",
    "rowwise_r2",
    "spearman_brown",
    "spearman_on",
    "summarize",
]
