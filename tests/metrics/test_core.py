from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, r2_score, roc_auc_score

from perturbtools import metrics


def test_pearson_r2_mae_match_references():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 40)), rng.normal(size=(3, 40))
    mask = rng.random((3, 40)) < 0.5
    r = metrics.rowwise_pearson(a, b, mask)
    for i in range(3):
        assert r[i] == pytest.approx(stats.pearsonr(a[i][mask[i]], b[i][mask[i]])[0])
        assert metrics.rowwise_r2(a, b, mask)[i] == pytest.approx(r2_score(b[i][mask[i]], a[i][mask[i]]))
        assert metrics.rowwise_mae(a, b, mask)[i] == pytest.approx(np.abs(a[i] - b[i])[mask[i]].mean())


def test_pearson_constant_prediction_is_zero_constant_truth_nan():
    out = metrics.rowwise_pearson(np.zeros((1, 5)), np.arange(5.0)[None])
    assert out[0] == 0
    assert np.isnan(metrics.rowwise_pearson(np.arange(5.0)[None], np.zeros((1, 5)))[0])


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.3
    s = np.round(rng.random(200) + y * 0.3, 1)
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(metrics.roc_auc(np.ones(5, bool), np.arange(5)))


@pytest.mark.parametrize("decimals", [0, 1, 3, None])
def test_pr_auc_matches_sklearn_with_and_without_ties(decimals):
    rng = np.random.default_rng(decimals or 7)
    for n in (1, 2, 50, 300):
        y = rng.random(n) < 0.3
        s = rng.random(n) + y * 0.4
        s = s if decimals is None else np.round(s, decimals)
        if y.any():
            assert metrics.pr_auc(y, s) == pytest.approx(average_precision_score(y, s), rel=1e-12)
    assert np.isnan(metrics.pr_auc(np.zeros(5, bool), np.arange(5)))
    assert metrics.pr_auc(np.ones(4, bool), np.zeros(4)) == pytest.approx(1.0)


def test_rank_metric():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(10, 30))
    assert np.all(metrics.rank_metric(truth, truth) == 0)
    const = np.tile(rng.normal(size=30), (10, 1))
    assert np.allclose(metrics.rank_metric(const, truth), 0.45)
    shuffled = metrics.rank_metric(truth[rng.permutation(10)], truth).mean()
    assert shuffled > 0.2


def test_mean_ci():
    mean, low, high, n = metrics.mean_ci(np.array([1.0, 2.0, 3.0, np.nan]))
    assert (mean, n) == (2.0, 3)
    assert low == pytest.approx(2 - stats.t.ppf(0.975, 2) * 1 / np.sqrt(3))
