"""Numeric cores of the metrics: arrays in (perturbations x genes), arrays out. No AnnData."""

from __future__ import annotations

import numpy as np
from scipy import stats


def rowwise_pearson(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of each row of ``a`` (prediction) with the same row of ``b`` (truth), over ``mask`` entries.

    Undefined (NaN) when either side is constant (a correlation of 0 / 0: e.g. the control mean's Pearson delta) or
    with fewer than 2 entries.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m = np.ones(a.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    n = m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ma = np.where(m, a, 0).sum(axis=1) / n
        mb = np.where(m, b, 0).sum(axis=1) / n
        da = np.where(m, a - ma[:, None], 0)
        db = np.where(m, b - mb[:, None], 0)
        ss_a = (da**2).sum(axis=1)
        ss_b = (db**2).sum(axis=1)
        r = (da * db).sum(axis=1) / np.sqrt(ss_a * ss_b)
    return np.where((ss_a > 1e-24) & (ss_b > 1e-24) & (n >= 2), r, np.nan)


def rowwise_r2(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of each row over ``mask`` entries."""
    m = np.ones(true.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    n = m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mt = np.where(m, true, 0).sum(axis=1) / n
        ss_res = np.where(m, (true - pred) ** 2, 0).sum(axis=1)
        ss_tot = np.where(m, (true - mt[:, None]) ** 2, 0).sum(axis=1)
        r2 = 1 - ss_res / ss_tot
    return np.where((ss_tot > 1e-12) & (n >= 2), r2, np.nan)


def rowwise_mae(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean absolute error of each row over ``mask`` entries."""
    err = np.abs(pred - true)
    if mask is None:
        return err.mean(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(mask, err, 0).sum(axis=1) / mask.sum(axis=1)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC by the Mann–Whitney rank statistic (ties count half); NaN with a single class."""
    y = np.asarray(y, dtype=bool).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    n_pos = y.sum()
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.nan
    ranks = stats.rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision–recall curve: average precision, equal to :func:`sklearn.metrics.average_precision_score`.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds in decreasing order (tied scores form one
    threshold); NaN without positives. Computed directly (one sort) rather than through scikit-learn, whose input
    validation dominated per-perturbation evaluation.
    """
    y = np.asarray(y, dtype=bool).ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        return np.nan
    score = np.asarray(score, dtype=np.float64).ravel()
    order = np.argsort(-score, kind="mergesort")
    s_sorted = score[order]
    # last index of each run of tied scores
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tps = np.cumsum(y[order])[last]
    precision = tps / (last + 1)
    recall_step = np.diff(tps, prepend=0) / n_pos
    return float(np.sum(recall_step * precision))


def rank_metric(pred_delta: np.ndarray, true_delta: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
    """Rank metric of Wu et al. (0 best, 0.5 for a constant or random predictor, 1 worst).

    For each true perturbation q (rows of ``true_delta``), the share of the *other* N - 1 predictions (rows of
    ``pred_delta``) closer (cosine of deltas) to q's truth than q's own prediction ``pred_delta[own[q]]``, ties
    counted half. The denominator N - 1 (Wu et al. divide by N) makes a constant predictor score exactly 0.5 whatever
    N is. Undefined (NaN) with fewer than two predictions. ``own`` defaults to ``arange`` (prediction i is truth i's).
    """

    def unit(x):  # in float64 throughout, so that the 1e-12 tie tolerance holds for float32 deltas too
        x = np.asarray(x, dtype=np.float64)
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norm > 0, norm, 1.0)  # an all-zero row stays 0

    own = np.arange(len(true_delta)) if own is None else np.asarray(own)
    if len(pred_delta) < 2:
        return np.full(len(own), np.nan)
    sim = unit(true_delta) @ unit(pred_delta).T  # true q x prediction j
    mine = sim[np.arange(len(own)), own][:, None]
    tol = 1e-12
    ties = (np.abs(sim - mine) <= tol).sum(axis=1) - 1
    return ((sim > mine + tol).sum(axis=1) + 0.5 * ties) / (sim.shape[1] - 1)


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and t-interval of finite ``values``: ``(mean, low, high, n)``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    mean = float(v.mean())
    if n == 1:
        return mean, np.nan, np.nan, 1
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half, n


def de_overlap(
    true_de: np.ndarray,
    true_rank_score: np.ndarray,
    pred_score: np.ndarray,
    *,
    k: int | None,
    pred_order: np.ndarray | None = None,
) -> tuple[float, float]:
    """Overlap and precision at ``k`` of the predicted DEG ranking against the true DEGs of one perturbation.

    The predicted top ``k`` are the ``k`` genes with the highest ``pred_score``; the true top ``k`` are the true
    DEGs with the highest ``true_rank_score`` (at most ``k``). ``overlap = |pred top k ∩ true top k| / min(k,
    n_true)`` (cell-eval's ``overlap_at_N``) and ``precision = |pred top k ∩ true DEGs| / k`` (``precision_at_N``).
    ``k=None`` uses the number of true DEGs. Both NaN without true DEGs. Ties are broken by gene order (stable).
    ``pred_order`` (``np.argsort(-pred_score, kind="stable")``) shares one sort between several ``k``.
    """
    true_de = np.asarray(true_de, dtype=bool)
    n_true = int(true_de.sum())
    if n_true == 0:
        return np.nan, np.nan
    k = n_true if k is None else min(int(k), true_de.size)
    if pred_order is None:
        pred_order = np.argsort(-np.asarray(pred_score, dtype=np.float64), kind="stable")
    pred_top = pred_order[:k]
    de_idx = np.flatnonzero(true_de)
    true_top = de_idx[np.argsort(-np.asarray(true_rank_score, dtype=np.float64)[de_idx], kind="stable")[:k]]
    overlap = np.intersect1d(pred_top, true_top).size / min(k, n_true)
    precision = true_de[pred_top].sum() / k
    return float(overlap), float(precision)


def direction_agreement(true_direction: np.ndarray, pred_delta: np.ndarray) -> float:
    """Share of true DEGs (``true_direction != 0``) whose predicted change has the same sign; NaN without DEGs."""
    d = np.asarray(true_direction)
    de = d != 0
    if not de.any():
        return np.nan
    return float(np.mean(np.sign(np.asarray(pred_delta, dtype=np.float64)[de]) == d[de]))


def spearman_on(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of ``a`` and ``b`` over ``mask`` entries; NaN with fewer than 3 entries or a constant side."""
    m = np.asarray(mask, dtype=bool)
    if m.sum() < 3:
        return np.nan
    x, y = np.asarray(a, dtype=np.float64)[m], np.asarray(b, dtype=np.float64)[m]
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(stats.spearmanr(x, y).statistic)


def reliability(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability diagram data: equal-width probability bins on [0, 1] (the last bin closed).

    Returns ``{"bin_low", "bin_high", "confidence" (mean probability), "accuracy" (share of positives), "count"}``
    per bin; empty bins hold NaN. Round-off just outside [0, 1] falls into the end bins.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(proba, dtype=np.float64).ravel()
    keep = np.isfinite(p) & np.isfinite(y)
    y, p = y[keep], p[keep]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore"):  # empty bins: 0 / 0
        conf = np.bincount(idx, weights=p, minlength=n_bins) / count
        acc = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"bin_low": edges[:-1], "bin_high": edges[1:], "confidence": conf, "accuracy": acc, "count": count}


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """ECE: ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over equal-width bins; NaN without entries."""
    r = reliability(y, proba, n_bins)
    n = r["count"].sum()
    if n == 0:
        return np.nan
    used = r["count"] > 0
    return float(np.sum(r["count"][used] / n * np.abs(r["accuracy"][used] - r["confidence"][used])))
