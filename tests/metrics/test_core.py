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
    # float32 predictions and truths (as stored in varm) are correlated in float64
    a32, b32 = (a + 1000).astype(np.float32), (b + 1000).astype(np.float32)
    want = [stats.pearsonr(x.astype(np.float64), y.astype(np.float64))[0] for x, y in zip(a32, b32, strict=True)]
    np.testing.assert_allclose(metrics.rowwise_pearson(a32, b32), want, rtol=1e-12)


def test_pearson_of_a_constant_side_is_undefined():
    assert np.isnan(metrics.rowwise_pearson(np.zeros((1, 5)), np.arange(5.0)[None])[0])  # constant prediction
    assert np.isnan(metrics.rowwise_pearson(np.arange(5.0)[None], np.zeros((1, 5)))[0])  # constant truth
    assert np.isnan(metrics.rowwise_pearson(np.arange(5.0)[None], np.arange(5.0)[None], np.eye(1, 5, dtype=bool))[0])
    assert metrics.rowwise_pearson(np.arange(5.0)[None], -np.arange(5.0)[None])[0] == pytest.approx(-1.0)


def test_pearson_and_r2_small_scales_round_off_and_two_entries():
    rng = np.random.default_rng(8)
    a, b = 0.01 * rng.normal(size=(2, 30)), 0.01 * rng.normal(size=(2, 30))  # sums of squares << 1 are fine
    want_r = [stats.pearsonr(x, y)[0] for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(metrics.rowwise_pearson(a, b), want_r, rtol=1e-12)
    np.testing.assert_allclose(metrics.rowwise_pearson(b, a), want_r, rtol=1e-12)
    want_r2 = [r2_score(y, x) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(metrics.rowwise_r2(a, b), want_r2, rtol=1e-12)  # no mask: every entry
    np.testing.assert_allclose(metrics.rowwise_r2(a, b, np.ones(a.shape, int)), want_r2, rtol=1e-12)  # a 0/1 mask
    # a side that is constant up to round-off (sum of squares below 1e-24, or 1e-12 for R²'s truth) is undefined
    flat = 1.0 + 1e-14 * rng.normal(size=(1, 30))
    assert np.isnan(metrics.rowwise_pearson(flat, b[:1])[0]) and np.isnan(metrics.rowwise_pearson(b[:1], flat)[0])
    assert np.isnan(metrics.rowwise_r2(b[:1], 1.0 + 1e-8 * rng.normal(size=(1, 30)))[0])
    # two entries are enough: a correlation of +-1, an R² by hand
    assert metrics.rowwise_pearson(np.array([[1.0, 2.0]]), np.array([[5.0, 3.0]]))[0] == pytest.approx(-1.0)
    assert metrics.rowwise_r2(np.array([[1.0, 2.0]]), np.array([[0.0, 2.0]]))[0] == pytest.approx(1 - 1 / 2)


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
    assert np.allclose(metrics.rank_metric(const, truth), 0.5)  # ties with all 9 others, counted half: 4.5 / 9
    worst = -truth  # own prediction anti-correlated: every other prediction is closer
    assert np.allclose(metrics.rank_metric(worst, truth), 1.0)
    assert np.isnan(metrics.rank_metric(truth[:1], truth[:1])).all()  # one prediction: nothing to rank among


def test_mean_ci():
    mean, low, high, n = metrics.mean_ci(np.array([1.0, 2.0, 3.0, np.nan]))
    assert (mean, n) == (2.0, 3)
    assert low == pytest.approx(2 - stats.t.ppf(0.975, 2) * 1 / np.sqrt(3))


def _rank_by_hand(pred, true):
    """Wu et al.'s rank metric with an explicit loop: share of the n - 1 other predictions closer (cosine) to q's truth
    than q's own."""
    from scipy.spatial.distance import cosine

    n = len(true)
    out = np.zeros(n)
    for q in range(n):
        sims = [1 - cosine(true[q], pred[j]) if pred[j].any() else 0.0 for j in range(n)]  # zero: similarity 0
        out[q] = (sum(s > sims[q] for s in sims) + 0.5 * (sum(s == sims[q] for s in sims) - 1)) / (n - 1)
    return out


def test_rank_metric_by_hand():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(9, 25))
    pred = truth + rng.normal(scale=1.5, size=truth.shape)
    np.testing.assert_allclose(metrics.rank_metric(pred, truth), _rank_by_hand(pred, truth), atol=1e-12)
    tied = pred.copy()
    tied[4] = tied[2]  # two identical predictions: a tie counts half
    np.testing.assert_allclose(metrics.rank_metric(tied, truth), _rank_by_hand(tied, truth), atol=1e-12)


def test_rank_metric_scale_free_zero_rows_and_two_predictions():
    rng = np.random.default_rng(5)
    truth = rng.normal(size=(6, 20))
    pred = truth + rng.normal(size=truth.shape)
    # cosine ignores scale: deltas of norm << 1, each row scaled differently, rank as the unscaled ones
    scales = np.array([0.001, 0.5, 0.002, 0.9, 0.01, 0.3])[:, None]
    np.testing.assert_allclose(metrics.rank_metric(scales * pred, 0.01 * truth), _rank_by_hand(pred, truth), atol=1e-12)
    # an all-zero prediction has similarity 0 to every truth (not NaN, not left over memory)
    zero = pred.copy()
    zero[3] = 0
    np.testing.assert_allclose(metrics.rank_metric(zero, truth), _rank_by_hand(zero, truth), atol=1e-12)
    # two predictions are enough to rank: the own one is closer (0) or farther (1) than the other
    np.testing.assert_array_equal(metrics.rank_metric(truth[:2], truth[:2]), [0.0, 0.0])
    np.testing.assert_array_equal(metrics.rank_metric(truth[[1, 0]], truth[:2]), [1.0, 1.0])
    # float32 deltas pointing the same way (x3) tie exactly, as in float64: a tie counts half
    v = rng.normal(size=(3, 20)).astype(np.float32)
    same_way = np.stack([v[0], 3 * v[0], v[2]])
    got = metrics.rank_metric(same_way, v)
    assert got[0] == pytest.approx(0.5 / 2)


def test_roc_auc_of_integer_labels_and_mae_of_an_empty_mask_row():
    rng = np.random.default_rng(6)
    y = (rng.random(60) < 0.3).astype(int)  # 0/1 labels as integers select positives, they do not index ranks
    s = rng.random(60) + 0.3 * y
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    a, b = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    mask = np.array([[True, False, True, False, False], [False] * 5])
    mae = metrics.rowwise_mae(a, b, mask)  # an empty row is undefined, silently (no RuntimeWarning)
    assert mae[0] == pytest.approx(np.abs(a[0] - b[0])[[0, 2]].mean()) and np.isnan(mae[1])


def test_energy_distance_and_mmd_by_hand(dcor):
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 3)), rng.normal(0.7, 1.2, size=(25, 3))
    energy = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()  # V-statistics (diagonals included)
    assert metrics.energy_distance(x, y) == pytest.approx(energy, rel=1e-10)
    if dcor is not None:
        assert metrics.energy_distance(x, y) == pytest.approx(dcor.energy_distance(x, y), rel=1e-10)
    z = np.vstack([x, y])
    d = cdist(z, z)
    bw = np.median(d[np.triu_indices(len(z), 1)])
    k = np.exp(-(d**2) / (2 * bw**2))
    want = k[:30, :30].mean() + k[30:, 30:].mean() - 2 * k[:30, 30:].mean()
    assert metrics.mmd(x, y) == pytest.approx(want, rel=1e-10)
    assert metrics.mmd(x, y, bandwidth=0.5) == pytest.approx(
        np.exp(-cdist(x, x, "sqeuclidean") / 0.5).mean() + np.exp(-cdist(y, y, "sqeuclidean") / 0.5).mean()
        - 2 * np.exp(-cdist(x, y, "sqeuclidean") / 0.5).mean(), rel=1e-10
    )  # fmt: skip


def test_distribution_distances_use_the_given_control_label():
    import anndata as ad
    import pandas as pd
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 1, (40, 6)), rng.normal(1, 1, (40, 6))])
    obs = pd.DataFrame({"perturbation": ["ctrl"] * 40 + ["A"] * 40}, index=[f"c{i}" for i in range(80)])
    real = ad.AnnData(X, obs=obs)
    gen = ad.AnnData(
        rng.normal(1, 1, (40, 6)), obs=pd.DataFrame({"perturbation": ["A"] * 40}, index=[f"g{i}" for i in range(40)])
    )
    out = metrics.distribution_distances(real, gen, control="ctrl", n_pcs=6, max_cells=100).loc["A"]
    pca = PCA(n_components=6).fit(X)  # all 80 real cells fit the PCA; 6 of 6 components: distances are Euclidean ones
    want = metrics.energy_distance(pca.transform(X[40:]), pca.transform(X[:40]))
    assert out["control_energy"] == pytest.approx(want, rel=1e-8)
    assert out["energy"] == pytest.approx(metrics.energy_distance(X[40:], gen.X), rel=1e-8)
    assert np.isnan(metrics.distribution_distances(real, gen, n_pcs=6).loc["A", "control_energy"])  # no 'control'


def test_de_overlap_direction_and_spearman_by_hand():
    true_de = np.array([1, 1, 1, 0, 0, 1, 0, 0], bool)
    true_t = np.array([5.0, 3.0, 9.0, 1.0, 0.5, 4.0, 0.1, 2.0])
    pred = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.0, 0.6])
    # predicted top 3: genes 0, 2, 3; true top 3 by |t| among DEGs: 2, 0, 5
    assert metrics.de_overlap(true_de, true_t, pred, k=3) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    # k = number of true DEGs (4): predicted top 4 = 0, 2, 3, 7 -> 2 of the 4 DEGs
    assert metrics.de_overlap(true_de, true_t, pred, k=None) == (pytest.approx(2 / 4), pytest.approx(2 / 4))
    # k larger than the DEGs: overlap over min(k, n_true), precision over k
    ov, prec = metrics.de_overlap(true_de, true_t, pred, k=6)  # pred top 6: 0,2,3,7,5,4
    assert (ov, prec) == (pytest.approx(3 / 4), pytest.approx(3 / 6))
    assert all(np.isnan(metrics.de_overlap(np.zeros(8, bool), true_t, pred, k=3)))
    direction = np.array([1, -1, 1, 0, 0, -1, 0, 0])
    delta = np.array([0.2, 0.1, 0.3, -9, 9, -0.4, 0, 0])
    assert metrics.direction_agreement(direction, delta) == pytest.approx(3 / 4)
    lfc_true, lfc_pred = np.array([1.0, -2, 3, 0, 0, -1, 0, 0]), np.array([0.5, -1, 2, 7, 7, 0.1, 7, 7])
    want = stats.spearmanr(lfc_true[true_de], lfc_pred[true_de]).statistic
    assert metrics.spearman_on(true_de, lfc_true, lfc_pred) == pytest.approx(want)
    # a 0/1 integer mask (labels as stored in varm) selects entries, it does not index positions 0 and 1
    other = np.array([0.5, -1, 2, 7, 7, 3, 7, 7])
    want_other = stats.spearmanr(lfc_true[true_de], other[true_de]).statistic  # 0.4
    assert metrics.spearman_on(true_de.astype(int), lfc_true, other) == pytest.approx(want_other)
    # defined from 3 entries on, undefined below
    three = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    want3 = stats.spearmanr(lfc_true[three], lfc_pred[three]).statistic
    assert metrics.spearman_on(three, lfc_true, lfc_pred) == pytest.approx(want3)
    assert np.isnan(metrics.spearman_on(three & (np.arange(8) < 2), lfc_true, lfc_pred))
    # undefined when either side is constant over the mask (scipy would warn and return NaN)
    assert np.isnan(metrics.spearman_on(true_de, np.ones(8), lfc_pred))
    assert np.isnan(metrics.spearman_on(true_de, lfc_true, np.full(8, 2.0)))


def test_de_overlap_orders_random_ties_by_gene_order():
    # three score levels over 100 genes: many ties, which numpy's default (unstable) sort orders differently
    rng = np.random.default_rng(7)
    pred, true_t = rng.integers(0, 3, 100).astype(float), rng.integers(0, 3, 100).astype(float)
    true_de = rng.random(100) < 0.4
    k = 10
    pred_top = sorted(range(100), key=lambda i: -pred[i])[:k]  # Python's sort is stable: ties in gene order
    true_top = sorted(np.flatnonzero(true_de), key=lambda i: -true_t[i])[:k]
    want = (len(set(pred_top) & set(true_top)) / k, true_de[pred_top].sum() / k)
    assert metrics.de_overlap(true_de, true_t, pred, k=k) == pytest.approx(want)


def test_mean_ci_edge_cases():
    assert metrics.mean_ci(np.array([np.nan]))[3] == 0 and np.isnan(metrics.mean_ci(np.array([]))[0])
    mean, low, high, n = metrics.mean_ci(np.array([2, 4], dtype=np.int64))  # integers are averaged as floats
    assert (mean, n) == (3.0, 2) and low == pytest.approx(
        3 - stats.t.ppf(0.975, 1) * np.std([2, 4], ddof=1) / np.sqrt(2)
    )
    assert metrics.mean_ci(np.array([5.0]))[:2] == (5.0, pytest.approx(np.nan, nan_ok=True))
    _, low90, _, _ = metrics.mean_ci(np.array([1.0, 2.0, 4.0]), level=0.9)
    assert low90 == pytest.approx(7 / 3 - stats.t.ppf(0.95, 2) * np.std([1, 2, 4], ddof=1) / np.sqrt(3))


def test_distribution_distances_in_twenty_pcs_by_hand():
    import anndata as ad
    import pandas as pd
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(6)
    X = np.vstack([rng.normal(0, 1, (60, 30)), rng.normal(0.5, 1, (50, 30))])
    obs = pd.DataFrame({"perturbation": ["control"] * 60 + ["A"] * 50}, index=[f"c{i}" for i in range(110)])
    real = ad.AnnData(X, obs=obs)
    G = rng.normal(0.4, 1.1, (45, 30))
    gen = ad.AnnData(G, obs=pd.DataFrame({"perturbation": ["A"] * 45}, index=[f"g{i}" for i in range(45)]))
    out = metrics.distribution_distances(real, gen).loc["A"]  # defaults: 20 PCs of the real cells, 500 cells max
    pca = PCA(n_components=20).fit(X)
    r, g, c = pca.transform(X[60:]), pca.transform(G), pca.transform(X[:60])
    assert out["energy"] == pytest.approx(metrics.energy_distance(r, g), rel=1e-6)
    assert out["mmd"] == pytest.approx(metrics.mmd(r, g), rel=1e-6)
    assert out["control_mmd"] == pytest.approx(metrics.mmd(r, c), rel=1e-6)
    assert (out["n_real"], out["n_generated"]) == (50, 45)
    few = metrics.distribution_distances(real, gen, max_cells=10).loc["A"]
    assert (few["n_real"], few["n_generated"]) == (10, 10)
    assert metrics.mmd(np.zeros((3, 2)), np.zeros((2, 2))) == 0.0  # all distances 0: the bandwidth falls back to 1


def test_mean_ci_is_scipys_t_interval():
    """Both ends of the interval, the count, and a single value (no interval), against scipy."""
    v = np.array([0.3, 1.1, 0.7, 2.0, np.inf, 1.4])
    finite = v[np.isfinite(v)]
    low, high = stats.t.interval(0.8, len(finite) - 1, loc=finite.mean(), scale=stats.sem(finite))
    assert metrics.mean_ci(v, level=0.8) == (pytest.approx(finite.mean()), pytest.approx(low), pytest.approx(high), 5)
    mean, low1, high1, n1 = metrics.mean_ci(np.array([np.nan, 7.0]))
    assert (mean, n1) == (7.0, 1) and np.isnan(low1) and np.isnan(high1)


def test_de_overlap_breaks_ties_by_gene_order():
    """All predictions tied: the predicted top k are the first k genes; tied true scores: the first DEGs."""
    n = 200  # long enough that an unstable sort reorders ties
    true_de = np.zeros(n, bool)
    true_de[[3, 10, 150, 199]] = True
    pred = np.zeros(n)
    # pred top 5 = genes 0-4 (one DEG, gene 3); true top 2 of the tied DEGs = genes 3 and 10
    assert metrics.de_overlap(true_de, np.ones(n), pred, k=5) == (pytest.approx(1 / 4), pytest.approx(1 / 5))
    assert metrics.de_overlap(true_de, np.ones(n), pred, k=2) == (pytest.approx(0 / 2), pytest.approx(0 / 2))
    pred[[150, 199, 3]] = 1.0  # pred top 2 = genes 3 and 150 (gene order among the tied 1.0s)
    assert metrics.de_overlap(true_de, np.ones(n), pred, k=2) == (pytest.approx(1 / 2), pytest.approx(2 / 2))
    assert metrics.de_overlap(true_de, np.ones(n), pred, k=3) == (pytest.approx(2 / 3), pytest.approx(3 / 3))
    shared = np.argsort(-pred, kind="stable")  # a precomputed order (shared between k) gives the same result
    assert metrics.de_overlap(true_de, np.ones(n), pred, k=3, pred_order=shared) == metrics.de_overlap(
        true_de, np.ones(n), pred, k=3
    )


def test_reliability_bins_by_hand():
    """Equal-width bins, left-closed (the last closed), NaN entries dropped, empty bins NaN; ECE from them."""
    p = np.array([0.0, 0.05, 0.1, 0.15, 0.5, 0.95, 1.0, np.nan, 0.3])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, np.nan])
    r = metrics.reliability(y, p, n_bins=10)
    np.testing.assert_allclose(r["bin_low"], np.arange(10) / 10)
    np.testing.assert_allclose(r["bin_high"], np.arange(1, 11) / 10)
    np.testing.assert_array_equal(r["count"], [2, 2, 0, 0, 0, 1, 0, 0, 0, 2])
    np.testing.assert_allclose(r["confidence"][[0, 1, 5, 9]], [0.025, 0.125, 0.5, 0.975])
    np.testing.assert_allclose(r["accuracy"][[0, 1, 5, 9]], [0.5, 0.5, 1.0, 1.0])
    assert np.isnan(r["confidence"][[2, 3, 4, 6, 7, 8]]).all() and np.isnan(r["accuracy"][2])
    want = (2 * abs(0.5 - 0.025) + 2 * abs(0.5 - 0.125) + 1 * abs(1 - 0.5) + 2 * abs(1 - 0.975)) / 7
    assert metrics.expected_calibration_error(y, p, n_bins=10) == pytest.approx(want)
    assert metrics.expected_calibration_error(np.array([1.0]), np.array([0.8])) == pytest.approx(0.2)
    assert np.isnan(metrics.expected_calibration_error(np.array([np.nan]), np.array([0.4])))
    r5 = metrics.reliability(np.array([1, 0, 1]), np.array([0.19, 0.2, 0.99]), n_bins=5)
    np.testing.assert_array_equal(r5["count"], [1, 1, 0, 0, 1])
    assert len(metrics.reliability(y, p)["count"]) == 10  # ten bins by default
    # round-off just outside [0, 1] (e.g. from a calibrator) lands in the end bins
    edge = metrics.reliability(np.array([0.0, 1.0]), np.array([-1e-12, 1 + 1e-12]), n_bins=4)
    np.testing.assert_array_equal(edge["count"], [1, 0, 0, 1])


def test_mean_ci_averages_float32_in_float64():
    """Metric arrays stored as float32 are averaged in float64 (numpy's float32 mean is off in the 8th digit)."""
    v = np.random.default_rng(0).normal(0.5, 0.2, 10_000).astype(np.float32)
    exact = v.astype(np.float64)
    low, high = stats.t.interval(0.95, v.size - 1, loc=exact.mean(), scale=stats.sem(exact))
    mean, lo, hi, n = metrics.mean_ci(v)
    assert abs(float(v.mean()) - exact.mean()) > 1e-9  # the float32 mean differs: the test can tell them apart
    np.testing.assert_allclose([mean, lo, hi], [exact.mean(), low, high], rtol=1e-13)
