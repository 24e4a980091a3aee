"""Resampling statistics over perturbations: bootstrap intervals, paired tests, Holm correction, the E-test.

Numeric cores (arrays in, numbers out); every function is deterministic under its ``rng`` seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.distance import cdist

from .._utils import _as_rng

if TYPE_CHECKING:
    from collections.abc import Callable


def bootstrap_ci(
    values: np.ndarray,
    *,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    rng: int | np.random.Generator | None = 0,
) -> tuple[float, float, float, int]:
    """Percentile bootstrap interval of ``statistic`` over the finite ``values`` (units, e.g. perturbations).

    The interval lies within the range of the bootstrap statistics, so a bounded metric (AUC, proportion) keeps its
    bounds. Returns ``(estimate, low, high, n)``; the interval is NaN with fewer than 2 finite values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = v.size
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    estimate = float(statistic(v))
    if n < 2:
        return estimate, np.nan, np.nan, n
    idx = _as_rng(rng).integers(0, n, size=(n_boot, n))
    boot = np.array([statistic(v[i]) for i in idx]) if statistic is not np.mean else v[idx].mean(axis=1)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return estimate, float(low), float(high), n


def _paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        msg = f"Paired values need the same shape; got {a.shape} and {b.shape}."
        raise ValueError(msg)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep] - b[keep]


def paired_permutation_test(
    a: np.ndarray, b: np.ndarray, *, n_perm: int = 10000, rng: int | np.random.Generator | None = 0
) -> float:
    """Two-sided paired permutation (sign-flip) test of mean(a - b) = 0 over units finite in both.

    Each permutation flips the sign of every difference with probability 1/2; the p-value is
    ``(1 + #{|mean*| >= |mean|}) / (1 + n_perm)`` (never 0). NaN with fewer than 2 pairs.
    """
    d = _paired(a, b)
    if d.size < 2:
        return np.nan
    observed = abs(d.mean())
    signs = _as_rng(rng).choice([-1.0, 1.0], size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_perm))


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    rng: int | np.random.Generator | None = 0,
) -> tuple[float, float, float, int]:
    """Percentile bootstrap interval of mean(a - b) over units resampled in pairs: ``(mean, low, high, n)``."""
    return bootstrap_ci(_paired(a, b), n_boot=n_boot, level=level, rng=rng)


def holm(pvalues: np.ndarray, *, sidak: bool = False) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error); NaN p-values stay NaN and do not count.

    ``sidak=True`` gives Holm-Šidák (``1 - (1 - p)^(m - i)`` per step, as scPerturb's E-test uses).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    steps = m - np.arange(m)
    raw = 1 - (1 - p[order]) ** steps if sidak else steps * p[order]
    out[order] = np.minimum(np.maximum.accumulate(raw), 1.0)
    return out


def e_distance(x: np.ndarray, y: np.ndarray) -> float:
    """E-distance of scPerturb: ``2 mean d(X, Y) - mean d(X, X') - mean d(Y, Y')`` with squared Euclidean ``d``.

    Within-sample means exclude the diagonal (U-statistics), as in ``scperturb.edist``.
    """
    dxy = cdist(x, y, "sqeuclidean").mean()
    dxx = cdist(x, x, "sqeuclidean")
    dyy = cdist(y, y, "sqeuclidean")
    nx, ny = len(x), len(y)
    within_x = dxx.sum() / (nx * (nx - 1)) if nx > 1 else 0.0
    within_y = dyy.sum() / (ny * (ny - 1)) if ny > 1 else 0.0
    return float(2 * dxy - within_x - within_y)


def etest(
    x: np.ndarray, y: np.ndarray, *, n_perm: int = 1000, rng: int | np.random.Generator | None = 0
) -> tuple[float, float]:
    """E-test (scPerturb): E-distance of ``x`` and ``y`` and its permutation p-value.

    Cells are relabelled at random between the two samples ``n_perm`` times; ``p = (1 + #{E* >= E}) / (1 + n_perm)``.
    Returns ``(e_distance, p)``.
    """
    rng = _as_rng(rng)
    z = np.vstack([x, y])
    d = cdist(z, z, "sqeuclidean")
    nx, ny = len(x), len(y)

    def stat(in_x: np.ndarray) -> float:
        dx, dy = d[np.ix_(in_x, in_x)], d[np.ix_(~in_x, ~in_x)]
        return 2 * d[np.ix_(in_x, ~in_x)].mean() - dx.sum() / (nx * (nx - 1)) - dy.sum() / (ny * (ny - 1))

    labels = np.r_[np.ones(nx, bool), np.zeros(ny, bool)]
    observed = stat(labels)
    null = np.array([stat(rng.permutation(labels)) for _ in range(n_perm)])
    return float(observed), float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_perm))
