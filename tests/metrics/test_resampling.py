from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from perturbtools import metrics


def test_bootstrap_ci_against_scipy_percentile_and_range():
    rng = np.random.default_rng(0)
    x = rng.random(40)
    est, low, high, n = metrics.bootstrap_ci(x, n_boot=4000, rng=1)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=1).confidence_interval
    assert (est, n) == (pytest.approx(x.mean()), 40)
    assert low == pytest.approx(ref.low, abs=0.01) and high == pytest.approx(ref.high, abs=0.01)
    auc = np.r_[np.ones(9), 0.8]  # a bounded metric near its bound: the interval stays within [0, 1]
    _, lo, hi, _ = metrics.bootstrap_ci(auc, rng=0)
    assert 0.8 <= lo <= hi <= 1.0
    assert metrics.bootstrap_ci(x, rng=3) == metrics.bootstrap_ci(x, rng=3)  # deterministic under a seed
    assert np.isnan(metrics.bootstrap_ci(np.array([0.5, np.nan]))[1])  # one value: no interval


def test_paired_permutation_test_exact_enumeration():
    d = np.array([0.3, -0.1, 0.4, 0.2, 0.25, -0.05])
    # all 2^6 sign flips by hand: the exact two-sided p-value
    signs = np.array(np.meshgrid(*[[-1, 1]] * 6)).reshape(6, -1).T
    exact = np.mean(np.abs((signs * d).mean(1)) >= abs(d.mean()) - 1e-12)
    p = metrics.paired_permutation_test(d, np.zeros(6), n_perm=20000, rng=0)
    assert p == pytest.approx(exact, abs=0.01)
    assert metrics.paired_permutation_test(d, d, n_perm=100) == 1.0
    assert np.isnan(metrics.paired_permutation_test(np.array([1.0]), np.array([0.0])))


def test_paired_bootstrap_resamples_pairs():
    rng = np.random.default_rng(2)
    a = rng.normal(size=30)
    b = a - 0.5 + rng.normal(scale=0.01, size=30)  # b is a shifted copy: the paired interval is narrow
    mean, low, high, n = metrics.paired_bootstrap(a, b, rng=0)
    assert mean == pytest.approx(np.mean(a - b)) and n == 30 and high - low < 0.02


def test_holm_and_holm_sidak_match_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan, 0.001])
    ok = np.isfinite(p)
    np.testing.assert_allclose(metrics.holm(p)[ok], multipletests(p[ok], method="holm")[1])
    np.testing.assert_allclose(metrics.holm(p, sidak=True)[ok], multipletests(p[ok], method="holm-sidak")[1])
    assert np.isnan(metrics.holm(p)[4])


def test_e_distance_by_hand_and_etest():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.3, 1, size=(15, 3))

    def mean_sq(a, b, same):
        vals = [np.sum((a[i] - b[j]) ** 2) for i in range(len(a)) for j in range(len(b)) if not (same and i == j)]
        return np.mean(vals)

    want = 2 * mean_sq(x, y, False) - mean_sq(x, x, True) - mean_sq(y, y, True)
    assert metrics.e_distance(x, y) == pytest.approx(want, rel=1e-10)
    e, p = metrics.etest(x, y, n_perm=200, rng=0)
    assert e == pytest.approx(want, rel=1e-10) and 0 < p <= 1
    far = rng.normal(5, 1, size=(15, 3))
    assert metrics.etest(x, far, n_perm=200, rng=0)[1] == pytest.approx(1 / 201)  # no relabelling beats it
