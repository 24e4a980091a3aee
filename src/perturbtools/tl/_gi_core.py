"""Numeric core of genetic-interaction scores (Norman et al. 2019; GEARS). Arrays in, numbers out."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

_EPS = np.finfo(float).eps

SCORES = ("c1", "c2", "magnitude", "model_fit", "similarity", "equality_of_contribution", "dominance")

# GEARS' Precision@10 evaluation sets (its figure code): (score, comparison, threshold, ranking direction for
# Precision@k: True = highest first). These define the "true" set of each subtype for ranking; they overlap and are
# not class labels (see GIClassifier for one class per double).
PRECISION_SETS: dict[str, tuple[str, str, float, bool]] = {
    "synergy": ("magnitude", ">", 1.15, True),
    "suppressor": ("magnitude", "<", 1.0, False),
    "additive": ("additivity_gap", "<", 0.25, False),
    "redundant": ("similarity", ">", 0.85, True),
    "neomorphic": ("model_fit", "<", 0.88, False),
    "epistasis": ("equality_of_contribution", "<", 0.28, False),
}
# An older GEARS evaluation's values (synergy > 1, additive <= 0.3, neomorphic < 0.85, redundant dcor > 0.8,
# epistasis dominance > 0.25); suppressor keeps magnitude < 1.
PRECISION_SETS_OLD: dict[str, tuple[str, str, float, bool]] = {
    "synergy": ("magnitude", ">", 1.0, True),
    "suppressor": ("magnitude", "<", 1.0, False),
    "additive": ("additivity_gap", "<=", 0.3, False),
    "redundant": ("similarity", ">", 0.8, True),
    "neomorphic": ("model_fit", "<", 0.85, False),
    "epistasis": ("dominance", ">", 0.25, True),
}
SUBTYPE_RULES = PRECISION_SETS  # old name, kept for one release


def _spatial_median(points: np.ndarray, max_iter: int = 1000, tol: float = 1e-3) -> np.ndarray:
    """Spatial (L1) median by the modified Weiszfeld iteration, as in scikit-learn's Theil–Sen."""
    tol **= 2
    old = points.mean(axis=0)
    for _ in range(max_iter):
        diff = points - old
        norm = np.sqrt((diff**2).sum(axis=1))
        mask = norm >= _EPS
        in_points = int(mask.sum() < len(points))
        inv = 1.0 / norm[mask][:, None]
        quotient = np.linalg.norm((diff[mask] * inv).sum(axis=0))
        if quotient > _EPS:
            direction = (points[mask] * inv).sum(axis=0) / inv.sum()
        else:
            direction, quotient = 1.0, 1.0
        new = max(0.0, 1.0 - in_points / quotient) * direction + min(1.0, in_points / quotient) * old
        if ((old - new) ** 2).sum() < tol:
            return new
        old = new
    return old


def theil_sen(
    X: np.ndarray, y: np.ndarray, *, max_subpopulation: int = 100_000, rng: int | np.random.Generator = 1000
) -> np.ndarray:
    """Theil–Sen regression without intercept: spatial median of the exact fits to subsets of ``n_features`` rows.

    Equals :class:`sklearn.linear_model.TheilSenRegressor` (``fit_intercept=False``) when all subsets are used
    (``C(n, p) <= max_subpopulation``); otherwise ``max_subpopulation`` random subsets. Vectorised: every subset's
    least-squares fit is one batched pseudo-inverse.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = X.shape
    if comb(n, p) <= max_subpopulation:
        idx = np.array(list(combinations(range(n), p)))
    else:
        idx = _random_subsets(np.random.default_rng(rng), n, p, max_subpopulation)
    A = X[idx]  # (k, p, p)
    b = y[idx]  # (k, p)
    weights = np.einsum("kij,kj->ki", np.linalg.pinv(A), b)
    return _spatial_median(weights)


def _random_subsets(gen: np.random.Generator, n: int, p: int, k: int) -> np.ndarray:
    out = gen.integers(0, n, size=(k, p))
    for col in range(1, p):  # redraw duplicates within a subset
        while True:
            dup = (out[:, [col]] == out[:, :col]).any(axis=1)
            if not dup.any():
                break
            out[dup, col] = gen.integers(0, n, size=int(dup.sum()))
    return out


def distance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Distance correlation (biased V-statistic, as ``dcor.distance_correlation``) of samples in rows."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)

    def centred(z):
        d = np.sqrt(np.maximum(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1), 0))
        return d - d.mean(axis=0) - d.mean(axis=1)[:, None] + d.mean()

    a, b = centred(x), centred(y)
    dcov2 = (a * b).mean()
    denom = np.sqrt((a * a).mean() * (b * b).mean())
    return float(np.sqrt(max(dcov2, 0) / denom)) if denom > 0 else 0.0


def gi_scores_core(
    d_a: np.ndarray,
    d_b: np.ndarray,
    d_ab: np.ndarray,
    *,
    model_fit: str = "pearson",
    max_subpopulation: int = 100_000,
    rng: int | np.random.Generator = 1000,
) -> dict[str, float]:
    """GI scores of one double from the deltas of its singles and of the double (same genes).

    ``c1, c2``: Theil–Sen fit of ``d_ab`` on ``[d_a, d_b]`` without intercept; ``magnitude = sqrt(c1² + c2²)``;
    ``model_fit``: Pearson (GEARS) or distance correlation (Norman) of the fit with ``d_ab``; ``similarity =
    dcor([d_a, d_b], d_ab)``; ``equality_of_contribution = min(dcor(d_a, d_ab), dcor(d_b, d_ab)) / max(...)``;
    ``dominance = |log10(|c1| / |c2|)|``.
    """
    X = np.column_stack([d_a, d_b])
    c1, c2 = theil_sen(X, d_ab, max_subpopulation=max_subpopulation, rng=rng)
    fitted = X @ np.array([c1, c2])
    if model_fit == "pearson":
        fit = float(np.corrcoef(fitted, d_ab)[0, 1]) if np.std(fitted) > 0 and np.std(d_ab) > 0 else 0.0
    elif model_fit == "dcor":
        fit = distance_correlation(fitted, d_ab)
    else:
        msg = f"`model_fit={model_fit!r}` must be 'pearson' (GEARS) or 'dcor' (Norman)."
        raise ValueError(msg)
    dcor_a, dcor_b = distance_correlation(d_a, d_ab), distance_correlation(d_b, d_ab)
    top = max(dcor_a, dcor_b)
    with np.errstate(divide="ignore"):
        dominance = float(np.abs(np.log10(np.abs(c1) / np.abs(c2)))) if c2 != 0 else np.inf
    return {
        "c1": float(c1),
        "c2": float(c2),
        "magnitude": float(np.hypot(c1, c2)),
        "model_fit": fit,
        "similarity": distance_correlation(X, d_ab),
        "equality_of_contribution": min(dcor_a, dcor_b) / top if top > 0 else np.nan,
        "dominance": dominance,
    }
