"""Numeric core of conformal prediction intervals over exchangeable units (perturbations). No AnnData."""

from __future__ import annotations

import numpy as np
from scipy import stats


def _rank(level: float, n: int, upper: bool) -> int:
    """1-based order statistic of n calibration values for a ``level`` interval (``n + 1`` means unbounded)."""
    alpha = 1 - level
    return int(np.ceil((1 - alpha) * (n + 1))) if upper else int(np.floor(alpha * (n + 1)))


def split_conformal(
    pred: np.ndarray, scale: np.ndarray, scores: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Split-conformal interval ``pred ± scale * q`` per gene.

    Parameters
    ----------
    pred, scale
        Point predictions and scales of the test perturbations (Q x G).
    scores
        Normalised conformity scores ``|y - pred| / scale`` of the n calibration perturbations (n x G).
    level
        Nominal coverage; ``q`` is the ``ceil(level (n + 1))``-th smallest score per gene (infinite if that exceeds
        n, i.e. too few calibration perturbations for the level).
    """
    n = scores.shape[0]
    k = _rank(level, n, upper=True)
    q = np.full(scores.shape[1], np.inf) if k > n else np.sort(scores, axis=0)[k - 1]
    return pred - scale * q, pred + scale * q


def cv_plus(
    pred_by_fold: np.ndarray,
    scale_by_fold: np.ndarray,
    scores: np.ndarray,
    fold_of: np.ndarray,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """CV+ interval (Barber et al. 2021) per test perturbation and gene, with normalised conformity scores.

    For calibration perturbation i in fold k(i), ``scores[i] = |y_i - mu_{-k(i)}(i)| / s_{-k(i)}(i)``. The interval
    of a test perturbation is ``[q_lo{mu_{-k(i)} - s_{-k(i)} R_i}, q_hi{mu_{-k(i)} + s_{-k(i)} R_i}]`` over i, where
    ``mu_{-k}, s_{-k}`` are the prediction and scale of the model fitted without fold k; ``q_lo`` is the
    ``floor(alpha (n + 1))``-th smallest value and ``q_hi`` the ``ceil((1 - alpha)(n + 1))``-th (infinite bounds
    where the calibration set is too small for the level).

    Parameters
    ----------
    pred_by_fold, scale_by_fold
        Predictions and scales of the test perturbations by each fold's model (K x Q x G).
    scores
        Normalised conformity scores of the n calibration perturbations (n x G).
    fold_of
        Fold of each calibration perturbation (n,), indexing the first axis of ``pred_by_fold``.
    level
        Nominal coverage.
    """
    n = scores.shape[0]
    mu = pred_by_fold[fold_of]  # n x Q x G
    half = scale_by_fold[fold_of] * scores[:, None, :]
    k_lo, k_hi = _rank(level, n, upper=False), _rank(level, n, upper=True)
    shape = mu.shape[1:]
    low = np.full(shape, -np.inf) if k_lo < 1 else np.partition(mu - half, k_lo - 1, axis=0)[k_lo - 1]
    high = np.full(shape, np.inf) if k_hi > n else np.partition(mu + half, k_hi - 1, axis=0)[k_hi - 1]
    return low, high


def calibrate_samples(
    samples: np.ndarray,
    mean: np.ndarray,
    sd: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    level: float,
) -> np.ndarray:
    """Posterior draws moved and rescaled per entry so that their central ``level`` interval is ``[lower, upper]``.

    ``samples`` ``(S, M, G)`` are draws of a Gaussian posterior with marginal ``mean`` and ``sd`` ``(M, G)``; each
    entry's draws become ``centre + (draw - mean) * half / (z sd)``, with ``centre, half`` the midpoint and half-width
    of ``[lower, upper]`` and ``z`` the standard normal ``(1 + level) / 2`` quantile. The marginals then have the
    given (e.g. conformal) interval; the posterior's correlations across perturbations are kept.
    """
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        msg = (
            f"The calibrated {level:.0%} intervals have infinite bounds: too few calibration perturbations for this "
            "level. Use a lower `level` or more training perturbations."
        )
        raise ValueError(msg)
    z = stats.norm.ppf(0.5 + level / 2)
    factor = (upper - lower) / 2 / (z * np.maximum(sd, 1e-12))
    return (lower + upper)[None] / 2 + (samples - mean[None]) * factor[None]
