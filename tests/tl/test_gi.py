from __future__ import annotations

import os
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import TheilSenRegressor

import perturbtools as pt
from perturbtools.tl._gi_core import SCORES


def test_theil_sen_equals_sklearn_exhaustive():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    y = X @ [0.8, -0.4] + rng.standard_t(2, size=120)
    ref = TheilSenRegressor(fit_intercept=False, max_subpopulation=100_000, random_state=1000).fit(X, y).coef_
    np.testing.assert_allclose(pt.tl.theil_sen(X, y), ref, rtol=1e-10)


def test_theil_sen_defaults_and_precision():
    """Subsampling defaults: 100,000 subsets, seed 1000; fits in float64 whatever the input dtype."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(500, 2))  # C(500, 2) = 124,750 subsets: subsampled
    y = X @ [0.3, -0.6] + rng.standard_t(2, size=500)
    default = pt.tl.theil_sen(X, y)
    np.testing.assert_allclose(default, pt.tl.theil_sen(X, y, max_subpopulation=100_000, rng=1000), rtol=1e-12)
    assert not np.allclose(default, pt.tl.theil_sen(X, y, max_subpopulation=100_001, rng=1000), rtol=1e-12)
    X32, y32 = X[:100].astype(np.float32), y[:100].astype(np.float32)
    ref = pt.tl.theil_sen(X32.astype(np.float64), y32.astype(np.float64))
    np.testing.assert_allclose(pt.tl.theil_sen(X32, y32), ref, rtol=1e-12)


def test_theil_sen_is_exhaustive_up_to_max_subpopulation():
    """All C(n, p) subsets are used when their number equals ``max_subpopulation`` (as in scikit-learn)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 2))  # C(5, 2) = 10 subsets
    y = X @ [1.0, -2.0] + rng.standard_t(2, size=5)
    ref = TheilSenRegressor(fit_intercept=False, max_subpopulation=10, random_state=0).fit(X, y).coef_
    np.testing.assert_allclose(pt.tl.theil_sen(X, y, max_subpopulation=10), ref, rtol=1e-10)


def test_theil_sen_subsampled_is_close():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1500, 2))
    y = X @ [1.0, 0.5] + 0.05 * rng.normal(size=1500)
    np.testing.assert_allclose(pt.tl.theil_sen(X, y, max_subpopulation=5000), [1.0, 0.5], atol=0.02)


@pytest.mark.parametrize(
    "case",
    [
        "random",
        "mean_is_a_point",
        "mean_is_a_point_off_balance",
        "mean_is_a_point_not_the_median",
        "symmetric_pair",
        "few_iterations",
        "tight_tol",
    ],
)
def test_spatial_median_equals_sklearn(case):
    """The modified Weiszfeld iteration against scikit-learn's own (``_theil_sen._spatial_median``)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model._theil_sen import _spatial_median as sk_spatial_median

    from perturbtools.tl._gi_core import _spatial_median

    rng = np.random.default_rng(6)
    points = rng.standard_t(1.5, size=(200, 2))
    kwargs = {"max_iter": 1000, "tol": 1e-3}
    if case == "mean_is_a_point":  # the start (the mean) is a sample: the in-point branch of the step
        points = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0], [3.0, 1.0], [-3.0, -1.0]])
        points += [2.0, 3.0]  # unit vectors sum to 0: the step keeps the start, which must not be the origin
    elif case == "mean_is_a_point_off_balance":  # the start is a sample, unit vectors sum to norm 0.68 (0 < q < 1)
        points = np.array([[-2, 4], [-2, -2], [2, 1], [-4, -4], [-1, 3], [7, -2], [0, 0]], dtype=float) + np.array(
            [2.0, 3.0]
        )
    elif case == "mean_is_a_point_not_the_median":  # unit vectors sum to norm 1.87 > 1: the step leaves the sample
        points = np.array([[2, 2], [2, 1], [-1, 4], [4, 2], [-1, 0], [-6, -9], [0, 0]], dtype=float) + np.array(
            [2.0, 3.0]
        )
    elif case == "symmetric_pair":  # the start is no sample and the unit vectors cancel: scikit-learn's fallback step
        points = np.array([[-1.0, 0.0], [-1.0, -1.0]])  # and the fallback step starts a cycle: 1,000 iterations run
    elif case == "few_iterations":
        kwargs = {"max_iter": 2, "tol": 1e-12}
    elif case == "tight_tol":
        kwargs = {"max_iter": 1000, "tol": 1e-9}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, ref = sk_spatial_median(points, **kwargs)
    np.testing.assert_allclose(_spatial_median(points, **kwargs), ref, rtol=1e-12, atol=1e-15)
    if case in ("random", "symmetric_pair"):  # defaults: 1,000 iterations at most (the pair never converges), tol 1e-3
        np.testing.assert_allclose(_spatial_median(points), ref, rtol=1e-12)


def test_random_subsets_are_distinct_and_uniform():
    """Theil-Sen's random subsets: no index twice in a subset, every ordered pair equally likely (chi-square)."""
    from scipy.stats import chisquare

    from perturbtools.tl._gi_core import _random_subsets

    out = _random_subsets(np.random.default_rng(0), 3, 2, 6000)
    assert out.shape == (6000, 2) and (out[:, 0] != out[:, 1]).all()
    pairs = pd.Series(list(map(tuple, out.tolist()))).value_counts()
    assert sorted(pairs.index) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert chisquare(pairs.to_numpy()).pvalue > 1e-3
    triples = _random_subsets(np.random.default_rng(1), 5, 3, 2000)
    assert all(len(set(r)) == 3 for r in triples.tolist()) and set(np.unique(triples)) == set(range(5))


def test_theil_sen_defaults_of_gi_scores():
    """gi_scores_core fits with Theil-Sen's documented defaults (100,000 random subsets, seed 1000) when subsampling."""
    rng = np.random.default_rng(3)
    d_a, d_b = rng.normal(size=500), rng.normal(size=500)  # C(500, 2) = 124,750 subsets: more than the default cap
    d_ab = 0.7 * d_a + 0.2 * d_b + rng.standard_t(2, size=500)
    ref = pt.tl.theil_sen(np.column_stack([d_a, d_b]), d_ab, max_subpopulation=100_000, rng=1000)
    got = pt.tl.gi_scores_core(d_a, d_b, d_ab)
    np.testing.assert_allclose([got["c1"], got["c2"]], ref, rtol=1e-12)
    assert not np.allclose(ref, pt.tl.theil_sen(np.column_stack([d_a, d_b]), d_ab, rng=1001), rtol=1e-12)
    # a caller's subsampling settings reach the fit
    ref = pt.tl.theil_sen(np.column_stack([d_a, d_b]), d_ab, max_subpopulation=3000, rng=7)
    got = pt.tl.gi_scores_core(d_a, d_b, d_ab, max_subpopulation=3000, rng=7)
    np.testing.assert_allclose([got["c1"], got["c2"]], ref, rtol=1e-12)


def test_model_fit_is_zero_when_a_side_is_flat():
    """Pearson model fit is 0 (not NaN) when the fitted values or the double's delta are constant."""
    rng = np.random.default_rng(4)
    d = rng.normal(size=60)
    zero = np.zeros(60)
    assert pt.tl.gi_scores_core(zero, zero, d)["model_fit"] == 0.0  # singles without effect: the fit is flat
    flat_double = pt.tl.gi_scores_core(1 + 0.3 * d, 1 - 0.3 * d, np.ones(60))
    assert flat_double["magnitude"] > 0 and flat_double["model_fit"] == 0.0  # the fit varies, the double does not


def test_dcor_model_fit_and_dominance_of_a_silent_single():
    """Norman's model fit: distance correlation of the Theil-Sen fit with the double; dominance inf when c1 = 0."""
    rng = np.random.default_rng(5)
    d_a, d_b = rng.normal(size=80), rng.normal(size=80)
    d_ab = 0.6 * d_a + 0.9 * d_b + 0.3 * rng.normal(size=80)
    got = pt.tl.gi_scores_core(d_a, d_b, d_ab, model_fit="dcor")
    fitted = np.column_stack([d_a, d_b]) @ [got["c1"], got["c2"]]
    assert got["model_fit"] == pytest.approx(pt.tl.distance_correlation(fitted, d_ab), rel=1e-12)
    assert got["model_fit"] != pytest.approx(pt.tl.gi_scores_core(d_a, d_b, d_ab)["model_fit"], rel=1e-6)
    with pytest.raises(ValueError, match="'pearson' \\(GEARS\\) or 'dcor'"):
        pt.tl.gi_scores_core(d_a, d_b, d_ab, model_fit="spearman")
    silent = pt.tl.gi_scores_core(np.zeros(80), d_b, 0.5 * d_b)  # no divide-by-zero warning for log10(0)
    assert silent["c1"] == 0 and silent["dominance"] == np.inf


def _distance_correlation_by_hand(x, y):
    """Székely's V-statistic distance correlation from double-centred distance matrices (scipy cdist)."""
    from scipy.spatial.distance import cdist

    def centred(z):
        z = np.asarray(z, np.float64).reshape(len(z), -1)
        d = cdist(z, z)
        return d - d.mean(0) - d.mean(1)[:, None] + d.mean()

    a, b = centred(x), centred(y)
    dvar = (a * a).mean() * (b * b).mean()
    return 0.0 if dvar == 0 else float(np.sqrt((a * b).mean() / np.sqrt(dvar)))


def test_distance_correlation_matches_dcor(dcor):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(80, 2)), rng.normal(size=80)
    y = y + x[:, 0] ** 2
    y2 = np.column_stack([y, rng.normal(size=80)])  # multivariate on both sides
    for a, b in ((x, y), (np.ones(80), y), (x, y2)):
        assert pt.tl.distance_correlation(a, b) == pytest.approx(_distance_correlation_by_hand(a, b), rel=1e-10)
    assert pt.tl.distance_correlation(np.ones(80), y) == 0.0
    # computed in float64 whatever the input precision
    x32, y32 = x.astype(np.float32), y2.astype(np.float32)
    ref = _distance_correlation_by_hand(x32.astype(np.float64), y32.astype(np.float64))
    assert pt.tl.distance_correlation(x32, y32) == pytest.approx(ref, rel=1e-12)
    if dcor is not None:
        assert pt.tl.distance_correlation(x, y2) == pytest.approx(dcor.distance_correlation(x, y2), rel=1e-10)


def _constructed(kind, rng, n=400):
    d_a = rng.normal(size=n)
    d_b = rng.normal(size=n)
    if kind == "additive":  # combined magnitude of one single (see gi_subtypes)
        d_ab = (d_a + d_b) / np.sqrt(2)
    elif kind == "synergy":
        d_ab = 1.5 * (d_a + d_b)
    elif kind == "suppressor":
        d_ab = 0.3 * (d_a + d_b)
    elif kind == "epistasis":
        d_ab = d_a + 0.02 * d_b
    elif kind == "redundant":
        d_b = d_a + 0.1 * rng.normal(size=n)
        d_ab = 0.5 * (d_a + d_b)
    else:  # neomorphic: a new programme on top of the sum
        d_ab = d_a + d_b + 3 * rng.normal(size=n)
    return d_a, d_b, d_ab + 0.02 * rng.normal(size=n)


@pytest.mark.parametrize("kind", ["additive", "synergy", "suppressor", "epistasis", "redundant", "neomorphic"])
def test_constructed_doubles_are_called(kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    scores = pd.DataFrame([pt.tl.gi_scores_core(*_constructed(kind, rng))], index=[kind])
    calls = pt.tl.gi_precision_sets(scores).loc[kind]
    # the GEARS bands overlap (additive |m - 1| < 0.25 includes suppressor m < 1), so only clear contradictions are excluded
    assert calls[kind], scores.round(3).to_dict("records")
    exclusive = {"synergy": ["suppressor", "additive"], "suppressor": ["synergy", "additive"], "additive": ["synergy", "neomorphic", "epistasis"],
                 "epistasis": ["neomorphic", "synergy"], "redundant": ["neomorphic", "epistasis"], "neomorphic": ["redundant", "epistasis"]}  # fmt: skip
    assert not calls[exclusive[kind]].any(), calls.to_dict()


def test_precision_at_k_against_hand_ranking():
    rng = np.random.default_rng(3)
    kinds = ["additive", "synergy", "suppressor", "epistasis", "redundant", "neomorphic"] * 4
    rows = {
        f"{k}{i}": pt.tl.gi_scores_core(*_constructed(k, rng, n=150), max_subpopulation=3000)
        for i, k in enumerate(kinds)
    }
    observed = pd.DataFrame.from_dict(rows, orient="index")
    prec = pt.tl.gi_precision_at_k(observed, observed, k=10)
    members = pt.tl.gi_precision_sets(observed).sum()
    # ranking by the true scores puts every member first: precision is capped only by the number of members
    np.testing.assert_allclose(prec, np.minimum(members, 10) / 10)
    # hand computation for synergy with shuffled predictions: top-10 by predicted magnitude, share with magnitude > 1.15
    shuffled = observed.sample(frac=1, random_state=0).set_axis(observed.index)
    top = shuffled["magnitude"].sort_values(ascending=False).index[:10]
    assert pt.tl.gi_precision_at_k(shuffled, observed, k=10)["synergy"] == pytest.approx(
        (observed.loc[top, "magnitude"] > 1.15).mean()
    )
    pd.testing.assert_series_equal(pt.tl.gi_precision_at_k(shuffled, observed), pt.tl.gi_precision_at_k(shuffled, observed, k=10))  # fmt: skip
    capped = pt.tl.gi_precision_at_k(observed.iloc[:4], observed.iloc[:4], k=10)
    assert capped.attrs == {"k_requested": 10, "k_used": 4, "n_doubles": 4} and capped.name == "precision@4"


def test_precision_sets_thresholds_by_hand():
    scores = pd.DataFrame(
        {"magnitude": [1.2, 0.9, 1.1, 1.15], "model_fit": [0.95, 0.87, 0.9, 0.88], "similarity": [0.5, 0.9, 0.86, 0.85],
         "equality_of_contribution": [0.9, 0.1, 0.5, 0.28], "dominance": [0.1, 0.3, 0.2, 0.26]},
        index=list("abcd"),
    )  # fmt: skip
    sets = pt.tl.gi_precision_sets(scores)
    expected = {
        "synergy": [True, False, False, False],  # magnitude > 1.15 (strict)
        "suppressor": [False, True, False, False],  # magnitude < 1
        "additive": [True, True, True, True],  # |magnitude - 1| < 0.25
        "redundant": [False, True, True, False],  # similarity > 0.85 (strict)
        "neomorphic": [False, True, False, False],  # model fit < 0.88 (strict)
        "epistasis": [False, True, False, False],  # equality < 0.28 (strict)
    }
    pd.testing.assert_frame_equal(sets, pd.DataFrame(expected, index=list("abcd")))
    old = pt.tl.gi_precision_sets(scores, rules=pt.tl._gi_core.PRECISION_SETS_OLD)
    assert old["synergy"].tolist() == [True, False, True, True]  # magnitude > 1
    assert old["epistasis"].tolist() == [False, True, False, True]  # dominance > 0.25
    assert old["additive"].tolist() == [True, True, True, True]  # |magnitude - 1| <= 0.3
    # first set in SPEC order, else additive
    assert pt.tl.threshold_classes(scores).tolist() == ["synergy", "suppressor", "additive", "additive"]
    with pytest.warns(DeprecationWarning, match="gi_precision_sets") as rec:
        old_name = pt.tl.gi_subtypes(scores, rules=pt.tl._gi_core.PRECISION_SETS_OLD)
    pd.testing.assert_frame_equal(old_name, old)
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampoline adds a frame between caller and function
        assert rec[0].filename == __file__  # the warning points at the caller's line


def test_score_agreement_against_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(5)
    obs = pd.DataFrame(rng.normal(size=(7, 2)), columns=["magnitude", "model_fit"], index=[f"d{i}" for i in range(7)])
    pred = obs + rng.normal(scale=0.5, size=obs.shape)
    agree = pt.tl.gi_score_agreement(pred.iloc[::-1], obs)
    assert agree.loc["magnitude", "spearman"] == pytest.approx(spearmanr(pred["magnitude"], obs["magnitude"]).statistic)
    assert agree.loc["model_fit", "mae"] == pytest.approx(np.mean(np.abs(pred["model_fit"] - obs["model_fit"])))
    few = pt.tl.gi_score_agreement(pred.iloc[:2], obs)
    assert np.isnan(few.loc["magnitude", "spearman"]) and few.loc["magnitude", "reason"] == "2 doubles (< 3)"


def test_gi_from_data_and_predictions(tmp_path):
    a = pt.data.synthetic(n_cells=1500, n_genes=80, n_perturbations=6, n_doubles=6, rng=1)
    pt.pp.deg_labels(a)
    obs = pt.tl.gi_scores(a, min_genes=10, show_progress_bar=False)
    assert len(obs) == 6 and set(SCORES) <= set(obs.columns)
    # genes used: expressed in the controls (control mean > 0), the double's two targets excluded
    expressed = a.var["deg_control_mean"].to_numpy() > 0
    for p, row in obs.iterrows():
        targets = a.var_names.isin(p.split("+"))
        assert row["n_genes"] == int((expressed & ~targets).sum())
    singles = [p for p in a.uns["deg"]["perturbations"] if "+" not in p]
    doubles = list(obs.index)
    pt.tl.Additive(a).fit(singles).predict(singles + doubles)
    pred = pt.tl.gi_scores(a, "additive", min_genes=10, show_progress_bar=False)
    # the additive model predicts d_A + d_B: the fit is exact, c1 = c2 = 1
    np.testing.assert_allclose(pred[["c1", "c2"]].to_numpy(), 1, atol=1e-6)
    assert "additive_gi" not in a.uns and "deg_gi" not in a.uns  # returned, not stored, by default
    assert pt.tl.gi_scores(a, "additive", min_genes=10, inplace=True, show_progress_bar=False) is None
    pd.testing.assert_frame_equal(a.uns["additive_gi"], pred)
    a.write_h5ad(tmp_path / "gi.h5ad")
    import matplotlib.axes

    ax = pt.pl.gi_scores(obs, classes=pd.Series("synergy", index=obs.index[:2]))
    assert isinstance(ax, matplotlib.axes.Axes)
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["synergy", "unlabelled"]


@pytest.mark.realdata
def test_gi_real_norman(norman, dcor):
    gi = pt.tl.gi_scores(norman.copy(), show_progress_bar=False)
    assert set(gi.index) == {"KLF1+MAP2K6", "KLF1+TGFBR2", "MAP2K3+MAP2K6", "MAP2K3+SLC38A2", "MAPK1+TGFBR2"}
    data = pt.tl.LabelledData.from_adata(norman)
    for double in gi.index:  # log deltas on genes expressed in control, targets left out; by hand
        a, b = double.split("+")
        keep = (data.control_mean > 0) & ~np.isin(norman.var_names, [a, b])

        def delta(p, keep=keep):
            return (data.mean[data.index([p])[0]] - data.control_mean)[keep]

        X, y = np.column_stack([delta(a), delta(b)]), delta(double)
        coef = TheilSenRegressor(fit_intercept=False, max_subpopulation=100_000, random_state=0).fit(X, y).coef_
        assert gi.loc[double, "n_genes"] == keep.sum()
        assert gi.loc[double, "magnitude"] == pytest.approx(np.hypot(*coef), rel=1e-9)
        assert gi.loc[double, "similarity"] == pytest.approx(_distance_correlation_by_hand(X, y), rel=1e-9)
        if dcor is not None:
            assert gi.loc[double, "similarity"] == pytest.approx(dcor.distance_correlation(X, y), rel=1e-9)


def test_gi_intervals_from_gp():
    pytest.importorskip("torch")
    a = pt.data.synthetic(n_cells=2000, n_genes=60, n_perturbations=10, n_doubles=8, rng=4)
    pt.pp.deg_labels(a)
    pt.pp.add_gene_embedding(a, a.uns["synthetic"]["gene_embedding"])
    perts = a.uns["deg"]["perturbations"]
    doubles = [p for p in perts if "+" in p][:2]
    m = pt.tl.GPModel(a, n_components=6).fit([p for p in perts if p not in doubles])
    iv = pt.tl.gi_intervals(m, doubles, n_samples=20, max_subpopulation=2000, show_progress_bar=False)
    assert set(iv["perturbation"]) == set(doubles)
    # by hand: score each joint posterior draw against the observed singles, then the 5% / 50% / 95% quantiles
    from perturbtools.tl._gi_core import gi_scores_core

    draws = m.sample(doubles, 20, rng=0)
    ctrl = a.var["deg_control_mean"].to_numpy()
    for j, p in enumerate(doubles):
        keep = (ctrl > 0) & ~a.var_names.isin(p.split("+"))
        d = {g: a.varm["deg_mean"][g].to_numpy()[keep] - ctrl[keep] for g in p.split("+")}
        mags = [gi_scores_core(*d.values(), draws[s, j][keep], max_subpopulation=2000)["magnitude"] for s in range(20)]
        row = iv[(iv["perturbation"] == p) & (iv["score"] == "magnitude")].iloc[0]
        np.testing.assert_allclose(row[["low", "median", "high"]].to_numpy(float), np.quantile(mags, [0.05, 0.5, 0.95]))


def test_calibrate_samples_moves_each_marginal_to_the_given_interval():
    """Draws of N(mean, sd) rescaled to a given central interval: empirical quantiles match; correlations kept."""
    from scipy import stats

    from perturbtools.tl._conformal_core import calibrate_samples

    rng = np.random.default_rng(7)
    mean, sd = np.array([[0.5, -1.0], [2.0, 0.0]]), np.array([[1.0, 0.2], [0.5, 3.0]])
    lower, upper = np.array([[-2.0, -1.5], [1.0, -1.0]]), np.array([[4.0, -0.2], [2.0, 5.0]])
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])  # correlated across the two perturbations
    z = np.einsum("ij,sjg->sig", np.linalg.cholesky(cov), rng.standard_normal((200_000, 2, 2)))
    draws = mean[None] + sd[None] * z
    out = calibrate_samples(draws, mean, sd, lower, upper, 0.8)
    q = np.quantile(out, [0.1, 0.9], axis=0)
    np.testing.assert_allclose(q[0], lower, atol=0.03 * (upper - lower).max())
    np.testing.assert_allclose(q[1], upper, atol=0.03 * (upper - lower).max())
    # by hand for one entry: centre + (x - mean) * half-width / (z_0.9 sd)
    expect = (lower[1, 0] + upper[1, 0]) / 2 + (draws[:, 1, 0] - 2.0) * 0.5 / (stats.norm.ppf(0.9) * 0.5)
    np.testing.assert_allclose(out[:, 1, 0], expect, rtol=1e-12)
    np.testing.assert_allclose(np.corrcoef(out[:, 0, 1], out[:, 1, 1])[0, 1], 0.8, atol=0.01)
    with pytest.raises(ValueError, match="too few calibration perturbations"):
        calibrate_samples(draws, mean, sd, np.full((2, 2), -np.inf), upper, 0.95)


def test_gi_intervals_with_conformal_intervals():
    """The posterior's own interval as the 'conformal' one changes nothing; a twice as wide one widens the GI's."""
    pytest.importorskip("torch")
    from scipy import stats

    a = pt.data.synthetic(n_cells=2000, n_genes=60, n_perturbations=10, n_doubles=8, rng=4)
    pt.pp.deg_labels(a)
    pt.pp.add_gene_embedding(a, a.uns["synthetic"]["gene_embedding"])
    perts = a.uns["deg"]["perturbations"]
    doubles = [p for p in perts if "+" in p][:2]
    m = pt.tl.GPModel(a, n_components=6).fit([p for p in perts if p not in doubles])
    mu, var = m.predict_distribution(doubles)
    ctrl = a.var["deg_control_mean"].to_numpy()[None, :]
    z = stats.norm.ppf(0.95)

    def frames(k):
        lo, hi = ctrl + mu - k * z * np.sqrt(var), ctrl + mu + k * z * np.sqrt(var)
        return {0.9: tuple(pd.DataFrame(b.T, index=a.var_names, columns=doubles) for b in (lo, hi))}

    kw = {"n_samples": 20, "max_subpopulation": 2000, "show_progress_bar": False}
    plain = pt.tl.gi_intervals(m, doubles, **kw)
    same = pt.tl.gi_intervals(m, doubles, conformal=frames(1.0), **kw)
    pd.testing.assert_frame_equal(plain, same, rtol=1e-6)
    wide = pt.tl.gi_intervals(m, doubles, conformal=frames(2.0), **kw).set_index(["perturbation", "score"])
    plain = plain.set_index(["perturbation", "score"])
    mag = (slice(None), "magnitude")
    assert ((wide.loc[mag, "high"] - wide.loc[mag, "low"]) > (plain.loc[mag, "high"] - plain.loc[mag, "low"])).all()
    with pytest.raises(KeyError, match=r"no 0\.9 interval"):
        pt.tl.gi_intervals(m, doubles, level=0.9, conformal={0.8: frames(1.0)[0.9]}, **kw)
    with pytest.raises(KeyError, match="no interval for"):
        pt.tl.gi_intervals(m, doubles, conformal={0.9: tuple(f[[doubles[0]]] for f in frames(1.0)[0.9])}, **kw)
    proba = pt.tl.gi_class_proba(m, doubles, conformal=(0.9, frames(1.0)), **kw)
    pd.testing.assert_frame_equal(proba, pt.tl.gi_class_proba(m, doubles, **kw))


def test_gi_interval_coverage_by_hand():
    from scipy.stats import beta

    iv = pd.DataFrame({
        "perturbation": ["A+B", "A+C", "B+C", "A+B", "A+C", "B+C"],
        "score": ["magnitude"] * 3 + ["model_fit"] * 3,
        "low": [0.9, 1.2, 0.5, 0.1, 0.5, np.nan], "high": [1.1, 1.5, 0.7, 0.9, 0.8, 0.9],
    })  # fmt: skip
    observed = pd.DataFrame({"magnitude": [1.0, 1.1, 0.7], "model_fit": [0.95, 0.5, 0.2]}, index=["A+B", "A+C", "B+C"])
    out = pt.tl.gi_interval_coverage({"m": iv}, observed)
    mag, fit = out.loc[("magnitude", "m")], out.loc[("model_fit", "m")]
    assert mag["coverage"] == pytest.approx(2 / 3) and mag["n_doubles"] == 3  # 1.0 in, 1.1 below 1.2, 0.7 on the edge
    assert mag["ci_low"] == pytest.approx(beta.ppf(0.025, 2, 2)) and mag["ci_high"] == pytest.approx(
        beta.ppf(0.975, 3, 1)
    )
    assert mag["mean_width"] == pytest.approx((0.2 + 0.3 + 0.2) / 3)
    assert fit["coverage"] == pytest.approx(0.5) and fit["n_doubles"] == 2  # B+C has no finite interval


def _doubles_with_deltas(c, rng, n_genes=300):
    """A labelled synthetic AnnData whose double's mean is set to control + c1 d_A + c2 d_B exactly."""
    a = pt.data.synthetic(n_cells=1200, n_genes=n_genes, n_perturbations=4, n_doubles=2, rng=7)
    pt.pp.deg_labels(a)
    double = next(p for p in a.uns["deg"]["perturbations"] if "+" in p)
    ga, gb = double.split("+")
    mean = a.varm["deg_mean"]
    ctrl = a.var["deg_control_mean"].to_numpy(np.float64)
    d_ab = c[0] * (mean[ga].to_numpy(np.float64) - ctrl) + c[1] * (mean[gb].to_numpy(np.float64) - ctrl)
    mean[double] = (ctrl + d_ab).astype(mean[double].dtype)
    a.varm["deg_mean"] = mean
    return a, double


@pytest.mark.parametrize("expression", ["log_delta", "control_z"])
def test_gi_scores_recover_constructed_coefficients(expression):
    a, double = _doubles_with_deltas((0.7, 1.3), np.random.default_rng(0))
    out = pt.tl.gi_scores(a, doubles=[double], expression=expression, min_genes=10, show_progress_bar=False)
    row = out.loc[double]
    np.testing.assert_allclose([row["c1"], row["c2"]], [0.7, 1.3], rtol=1e-4)  # float32 storage of the means
    assert row["magnitude"] == pytest.approx(np.hypot(0.7, 1.3), rel=1e-4)
    assert row["dominance"] == pytest.approx(abs(np.log10(0.7 / 1.3)), rel=1e-3)
    assert row["model_fit"] == pytest.approx(1.0, abs=1e-6)


def test_gi_scores_control_z_divides_by_control_sd():
    a = pt.data.synthetic(n_cells=1500, n_genes=80, n_perturbations=6, n_doubles=6, rng=1)
    pt.pp.deg_labels(a)
    out = pt.tl.gi_scores(a, expression="control_z", min_genes=10, show_progress_bar=False)
    double = out.index[0]
    ga, gb = double.split("+")
    X = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    pert = a.obs["perturbation"].astype(str).to_numpy()
    sd = X[pert == "control"].std(axis=0, ddof=1)
    ctrl = X[pert == "control"].mean(axis=0)
    keep = (a.var["deg_control_mean"].to_numpy() > 0) & ~a.var_names.isin([ga, gb]) & (sd > 0)
    z = {p: ((X[pert == p].mean(axis=0) - ctrl) / np.where(sd > 0, sd, 1))[keep] for p in (ga, gb, double)}
    ref = pt.tl.gi_scores_core(z[ga], z[gb], z[double])
    np.testing.assert_allclose(
        out.loc[double, ["c1", "c2", "similarity"]].to_numpy(float),
        [ref["c1"], ref["c2"], ref["similarity"]],
        rtol=1e-3,
    )  # means stored as float32
    with pytest.raises(ValueError, match="log_delta"):
        pt.tl.gi_scores(a, expression="zscore", show_progress_bar=False)


def test_gi_scores_warn_on_few_genes():
    a = pt.data.synthetic(n_cells=800, n_genes=40, n_perturbations=4, n_doubles=2, rng=2)
    pt.pp.deg_labels(a)
    with pytest.warns(UserWarning, match="min_genes=100"):
        pt.tl.gi_scores(a, show_progress_bar=False)


@pytest.mark.realdata
@pytest.mark.parametrize("table", ["scouter", "norman"])
def test_published_scores_reproduced_from_constructed_deltas(table):
    """Deltas built as d_AB = c1 d_A + c2 d_B with the published c1, c2 give back the published magnitude/dominance."""
    ref = pt.data.norman2019_gi_reference()
    if table == "scouter":
        pub = pd.read_csv(pt.data.fetch("norman2019_gi_scores_scouter")).set_index("perturbation")
        cols = {"c1": "c1", "c2": "c2", "magnitude": "mag", "dominance": "dominance"}
    else:
        pub = ref.fits
        cols = {"c1": "ts_coef_first", "c2": "ts_coef_second", "magnitude": "ts_norm2", "dominance": "abs_log_ts_ratio"}
    rng = np.random.default_rng(0)
    for name in pub.index[:5]:
        c1, c2 = pub.loc[name, cols["c1"]], pub.loc[name, cols["c2"]]
        d_a, d_b = rng.normal(size=500), rng.normal(size=500)
        got = pt.tl.gi_scores_core(d_a, d_b, c1 * d_a + c2 * d_b)
        for ours, theirs in cols.items():
            assert got[ours] == pytest.approx(pub.loc[name, theirs], rel=1e-8, abs=1e-10), (name, ours)
    # the loader's column mapping: magnitude is the L2 norm of (c1, c2), as in both published tables
    np.testing.assert_allclose(ref.scores["magnitude"], np.hypot(ref.scores["c1"], ref.scores["c2"]), rtol=1e-10)


def test_singles_labelled_a_plus_ctrl_and_another_delimiter_score_the_same():
    a = pt.data.synthetic(n_cells=1500, n_genes=80, n_perturbations=6, n_doubles=4, rng=1)
    want = pt.tl.gi_scores(pt.pp.deg_labels(a, copy=True), min_genes=10, show_progress_bar=False)
    ctrl = a.copy()  # singles as 'A+ctrl' (Norman's / GEARS' convention)
    ctrl.obs["perturbation"] = [
        p if p == "control" or "+" in p else f"{p}+control" for p in ctrl.obs["perturbation"].astype(str)
    ]
    got = pt.tl.gi_scores(pt.pp.deg_labels(ctrl, copy=True), min_genes=10, show_progress_bar=False)
    pd.testing.assert_frame_equal(got, want)
    under = a.copy()  # another delimiter
    under.obs["perturbation"] = under.obs["perturbation"].astype(str).str.replace("+", "_", regex=False)
    got = pt.tl.gi_scores(pt.pp.deg_labels(under, delimiter="_", copy=True), min_genes=10, show_progress_bar=False)
    pd.testing.assert_frame_equal(got.set_axis(want.index), want)
    with pytest.raises(
        ValueError, match=r"0 labelled double\(s\), 10 labelled single\(s\) \(delimiter '\+'.*check `delimiter=`"
    ):
        pt.tl.gi_scores(pt.pp.deg_labels(under, copy=True), min_genes=10, show_progress_bar=False)


def test_gi_scores_core_seeded_and_constant_double():
    from perturbtools.tl._gi_core import gi_scores_core

    rng = np.random.default_rng(0)
    d_a, d_b = rng.normal(size=80), rng.normal(size=80)
    d_ab = 0.8 * d_a + 1.2 * d_b + rng.normal(scale=0.3, size=80)
    one = gi_scores_core(d_a, d_b, d_ab, max_subpopulation=200, rng=5)
    assert one == gi_scores_core(d_a, d_b, d_ab, max_subpopulation=200, rng=5)  # subsampled Theil-Sen is seeded
    flat = gi_scores_core(d_a, d_b, np.zeros(80), max_subpopulation=200, rng=5)
    assert flat["model_fit"] == 0.0  # a constant double: no correlation to measure, reported as 0


def _labelled_doubles(rng=1, n_genes=80, n_doubles=6, key_added="deg"):
    """Labelled synthetic doubles; the labels' control mean is set to 0 for genes 0-4 and to 0.5 for genes 5-9 (the
    simulator's control means are all above 1), so that ``min_mean`` selects genes."""
    a = pt.data.synthetic(n_cells=1500, n_genes=n_genes, n_perturbations=6, n_doubles=n_doubles, rng=rng)
    pt.pp.deg_labels(a, key_added=key_added)
    ctrl = a.var[f"{key_added}_control_mean"].to_numpy().copy()
    ctrl[:5], ctrl[5:10] = 0.0, 0.5
    a.var[f"{key_added}_control_mean"] = ctrl
    return a


def _control_sd(a):
    """SD (ddof 1, float64) of each gene over the control cells of ``X``."""
    X = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    return X[a.obs["perturbation"].astype(str).to_numpy() == "control"].astype(np.float64).std(axis=0, ddof=1)


def _observed_delta(a, p, keep, labels_key="deg"):
    ctrl = a.var[f"{labels_key}_control_mean"].to_numpy(np.float64)
    return (a.varm[f"{labels_key}_mean"][p].to_numpy(np.float64) - ctrl)[keep]


def test_gi_scores_of_written_predictions_with_observed_or_predicted_singles():
    """Deltas of predictions (predicted mean - control mean) for doubles, and for singles with singles='predicted'."""
    from perturbtools._predictions import Predictions, write_predictions

    a = _labelled_doubles()
    perts = list(a.uns["deg"]["perturbations"])
    doubles = [p for p in perts if "+" in p]
    singles = [p for p in perts if "+" not in p]
    rng = np.random.default_rng(3)
    ctrl = a.var["deg_control_mean"].to_numpy(np.float64)
    predicted = {p: (ctrl + rng.normal(scale=0.5, size=a.n_vars)).astype(np.float32) for p in singles + doubles[:3]}
    preds = Predictions.from_arrays(a.var_names, list(predicted), mean=np.stack(list(predicted.values())))
    write_predictions(a, preds, "toy", {})
    kw = {"min_genes": 10, "max_subpopulation": 500, "show_progress_bar": False}
    expressed = ctrl > 0
    pd.testing.assert_frame_equal(pt.tl.gi_scores(a, "toy", **kw), pt.tl.gi_scores(a, "toy", singles="observed", **kw))
    for singles_from in ("observed", "predicted"):
        out = pt.tl.gi_scores(a, "toy", singles=singles_from, **kw)
        assert list(out.index) == doubles[:3]  # only the predicted doubles are scored
        for p in doubles[:3]:
            ga, gb = p.split("+")
            keep = expressed & ~a.var_names.isin([ga, gb])

            def d(q, keep=keep, singles_from=singles_from):
                if q in doubles or singles_from == "predicted":
                    return (predicted[q].astype(np.float64) - ctrl)[keep]
                return _observed_delta(a, q, keep)

            ref = pt.tl.gi_scores_core(d(ga), d(gb), d(p), max_subpopulation=500)
            np.testing.assert_allclose(out.loc[p, list(ref)].to_numpy(float), list(ref.values()), rtol=1e-9)
            assert out.loc[p, "n_genes"] == keep.sum()
    partial = Predictions.from_arrays(a.var_names, doubles[:3], mean=np.stack([predicted[p] for p in doubles[:3]]))
    write_predictions(a, partial, "doubles_only", {})
    with pytest.raises(KeyError, match="were not predicted under 'doubles_only'"):
        pt.tl.gi_scores(a, "doubles_only", singles="predicted", **kw)
    # only the requested doubles need predicted singles
    first = doubles[0].split("+")
    some = Predictions.from_arrays(a.var_names, [*first, *doubles[:3]], mean=np.stack([predicted[p] for p in [*first, *doubles[:3]]]))  # fmt: skip
    write_predictions(a, some, "some_singles", {})
    out = pt.tl.gi_scores(a, "toy", singles="predicted", **kw)
    one = pt.tl.gi_scores(a, "some_singles", singles="predicted", doubles=[doubles[0]], **kw)
    pd.testing.assert_frame_equal(one, out.loc[[doubles[0]]])
    with pytest.raises(KeyError, match="were not predicted under 'some_singles'"):
        pt.tl.gi_scores(a, "some_singles", singles="predicted", **kw)
    with pytest.raises(ValueError, match="`singles` must be 'observed' or 'predicted', not 'model'"):
        pt.tl.gi_scores(a, "toy", singles="model", **kw)


def test_gi_scores_passes_its_options_to_the_scores():
    a = _labelled_doubles()
    double = next(p for p in a.uns["deg"]["perturbations"] if "+" in p)
    ga, gb = double.split("+")
    ctrl = a.var["deg_control_mean"].to_numpy()
    keep = (ctrl > 0.5) & ~a.var_names.isin([ga, gb])
    deltas = [_observed_delta(a, q, keep) for q in (ga, gb, double)]
    out = pt.tl.gi_scores(
        a, doubles=[double], model_fit="dcor", min_mean=0.5, max_subpopulation=40, min_genes=5, show_progress_bar=False
    )
    ref = pt.tl.gi_scores_core(*deltas, model_fit="dcor", max_subpopulation=40)
    assert list(out.index) == [double] and out.index.name == "perturbation"  # only the listed doubles
    assert out.loc[double, ["gene_a", "gene_b"]].tolist() == [ga, gb]
    assert out.loc[double, "n_genes"] == keep.sum() == 80 - 10 - 2  # genes 0-9 not above 0.5, the two targets
    np.testing.assert_allclose(out.loc[double, list(ref)].to_numpy(float), list(ref.values()), rtol=1e-9)
    assert out.loc[double, "model_fit"] != pytest.approx(
        pt.tl.gi_scores_core(*deltas, model_fit="pearson", max_subpopulation=40)["model_fit"]
    )


def test_gi_scores_default_subsets_and_model_fit():
    """Defaults: 100,000 Theil-Sen subsets (more genes than that many pairs: subsampled) and a Pearson model fit."""
    from scipy.stats import pearsonr

    a = _labelled_doubles(n_genes=480, n_doubles=2, key_added="lab")
    double = next(p for p in a.uns["lab"]["perturbations"] if "+" in p)
    ga, gb = double.split("+")
    keep = (a.var["lab_control_mean"].to_numpy() > 0) & ~a.var_names.isin([ga, gb])
    assert keep.sum() == 480 - 5 - 2  # min_mean 0: genes 0-4 (control mean 0) and the targets left out
    assert keep.sum() * (keep.sum() - 1) / 2 > 100_000
    d_a, d_b, d_ab = (_observed_delta(a, q, keep, "lab") for q in (ga, gb, double))
    out = pt.tl.gi_scores(a, doubles=[double], labels_key="lab", show_progress_bar=False).loc[double]
    ref = pt.tl.gi_scores_core(d_a, d_b, d_ab, model_fit="pearson", max_subpopulation=100_000)
    np.testing.assert_allclose(out[list(ref)].to_numpy(float), list(ref.values()), rtol=1e-9)
    other = pt.tl.gi_scores_core(d_a, d_b, d_ab, model_fit="pearson", max_subpopulation=99_999)
    assert abs(other["c1"] - ref["c1"]) > 5e-6  # the number of subsets matters here
    X = np.column_stack([d_a, d_b])
    assert out["model_fit"] == pytest.approx(pearsonr(X @ out[["c1", "c2"]].to_numpy(float), d_ab).statistic, rel=1e-5)


def test_gi_scores_keys_and_missing_cells():
    a = _labelled_doubles()
    kw = {"min_genes": 10, "max_subpopulation": 200, "show_progress_bar": False}
    want = pt.tl.gi_scores(a, **kw)
    assert pt.tl.gi_scores(a, inplace=True, **kw) is None
    pd.testing.assert_frame_equal(a.uns["deg_gi"], want)
    pt.tl.gi_scores(a, inplace=True, key_added="mine", **kw)
    pd.testing.assert_frame_equal(a.uns["mine"], want)
    label_only = a.copy()
    del label_only.obs["perturbation"]
    pd.testing.assert_frame_equal(pt.tl.gi_scores(label_only, **kw), want)  # log deltas need no cells
    with pytest.raises(KeyError, match=r"adata.obs\['perturbation'\]` is missing"):
        pt.tl.gi_scores(label_only, expression="control_z", **kw)
    z = pt.tl.gi_scores(a, expression="control_z", **kw)
    del a.uns["deg"]["params"]["layer"]  # labels written before the layer was recorded: X
    pd.testing.assert_frame_equal(pt.tl.gi_scores(a, expression="control_z", **kw), z)


def test_gi_scores_progress_bar(monkeypatch, capsys):
    a = _labelled_doubles(n_doubles=2)
    monkeypatch.setattr(pt.settings, "progress_bar", False)  # the argument overrides the setting
    capsys.readouterr()
    pt.tl.gi_scores(a, min_genes=10, max_subpopulation=100, show_progress_bar=True)
    assert "GI scores: 100%" in capsys.readouterr().err


def test_gi_scores_control_z_reads_the_labels_layer_and_zeroes_constant_genes():
    a = pt.data.synthetic(n_cells=1500, n_genes=80, n_perturbations=6, n_doubles=6, rng=1)
    X = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    pert = a.obs["perturbation"].astype(str).to_numpy()
    X[:, 5] = np.where(pert == "control", 1.0, X[:, 5])  # constant in the controls, expressed
    a.layers["logs"] = X.copy()
    a.X = np.zeros_like(X)
    pt.pp.deg_labels(a, layer="logs")
    kw = {"min_genes": 10, "max_subpopulation": 200, "show_progress_bar": False}
    out = pt.tl.gi_scores(a, expression="control_z", **kw)
    double = out.index[0]
    ga, gb = double.split("+")
    sd = X[pert == "control"].astype(np.float64).std(axis=0, ddof=1)
    keep = (a.var["deg_control_mean"].to_numpy() > 0) & ~a.var_names.isin([ga, gb])
    assert keep[5] and sd[5] == 0
    z = {p: (_observed_delta(a, p, keep) / np.where(sd > 0, sd, np.inf)[keep]) for p in (ga, gb, double)}
    assert z[double][: keep[:5].sum() + 1][-1] == 0  # the constant gene enters with z = 0
    ref = pt.tl.gi_scores_core(z[ga], z[gb], z[double], max_subpopulation=200)
    np.testing.assert_allclose(out.loc[double, list(ref)].to_numpy(float), list(ref.values()), rtol=1e-9)
    assert out.loc[double, "n_genes"] == keep.sum()


def test_gi_few_genes_warning_counts_only_doubles_below_min_genes():
    a = _labelled_doubles(n_doubles=2)
    n = pt.tl.gi_scores(a, min_genes=1, show_progress_bar=False)["n_genes"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pt.tl.gi_scores(a, min_genes=int(n.min()), show_progress_bar=False)  # n_genes == min_genes: no warning
    below = int((n < n.max()).sum()) if n.nunique() > 1 else len(n)
    with pytest.warns(
        UserWarning,
        match=rf"GI scores of {below} double\(s\) use fewer than `min_genes={n.max() + (n.nunique() == 1)}`",
    ) as rec:
        pt.tl.gi_scores(a, min_genes=int(n.max() + (n.nunique() == 1)), show_progress_bar=False)
    assert "Lower `min_mean=0.0`" in str(rec[0].message)
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampoline adds a frame between caller and function
        assert rec[0].filename == __file__  # the warning points at the caller's line


def test_precision_sets_take_any_rule_and_operator():
    scores = pd.DataFrame({"magnitude": [0.5, 1.0, 1.5], "model_fit": [0.2, 0.5, 0.9]}, index=list("abc"))
    rules = {"ge": ("magnitude", ">=", 1.0, True), "le": ("model_fit", "<=", 0.5, False), "gap": ("additivity_gap", "<", 0.5, False)}  # fmt: skip
    sets = pt.tl.gi_precision_sets(scores, rules=rules)
    expected = pd.DataFrame({"ge": [False, True, True], "le": [True, True, False], "gap": [False, True, False]}, index=list("abc"))  # fmt: skip
    pd.testing.assert_frame_equal(sets, expected)


def test_precision_at_k_ranks_typical_doubles_first_and_warns_when_capped(caplog):
    scores = pd.DataFrame(
        {"magnitude": [0.8, 1.05, 1.3, 0.95], "model_fit": [0.95, 0.8, 0.9, 0.99], "similarity": [0.9, 0.5, 0.7, 0.95],
         "equality_of_contribution": [0.1, 0.5, 0.9, 0.2], "dominance": [0.3, 0.1, 0.2, 0.4]},
        index=list("abcd"),
    )  # fmt: skip
    truth = pt.tl.gi_precision_sets(scores)
    with caplog.at_level("WARNING", logger="perturbtools.tl._gi"):
        prec = pt.tl.gi_precision_at_k(scores, scores, k=2)
    assert not caplog.records
    # by hand, the two most typical per subtype: synergy high magnitude (c, b); suppressor low magnitude (a, d);
    # additive small |magnitude - 1| (b, d); redundant high similarity (d, a); neomorphic low model fit (b, c);
    # epistasis low equality (a, d)
    top = {"synergy": "cb", "suppressor": "ad", "additive": "bd", "redundant": "da", "neomorphic": "bc", "epistasis": "ad"}  # fmt: skip
    for subtype, pair in top.items():
        assert prec[subtype] == pytest.approx(truth.loc[list(pair), subtype].mean()), subtype
    with caplog.at_level("WARNING", logger="perturbtools.tl._gi"):
        capped = pt.tl.gi_precision_at_k(scores, scores, k=10)
    assert [r.getMessage() for r in caplog.records] == ["Precision@10: k capped at 4 (only 4 doubles)."]
    assert capped.name == "precision@4"
    none = pt.tl.gi_precision_at_k(scores, scores.set_axis(list("wxyz")), k=2)
    assert none.isna().all() and none.attrs["n_doubles"] == 0


def test_score_agreement_skips_missing_scores_and_infinite_values():
    from scipy.stats import spearmanr

    obs = pd.DataFrame({"magnitude": [1.0, 2.0, 3.0, 4.0, 5.0], "dominance": [0.1, np.inf, 0.3, -np.inf, 0.5]}, index=list("abcde"))  # fmt: skip
    pred = pd.DataFrame({"magnitude": [1.5, 1.0, 3.5, 4.5, -np.inf], "dominance": [0.2] * 5}, index=list("abcde"))
    out = pt.tl.gi_score_agreement(pred, obs, scores=["magnitude", "dominance", "model_fit"])
    assert list(out.index) == ["magnitude", "dominance"]  # model_fit is in neither table
    mag = out.loc["magnitude"]
    assert mag["n"] == 4 and mag["reason"] == ""  # e dropped (infinite prediction)
    assert mag["spearman"] == pytest.approx(spearmanr([1.5, 1.0, 3.5, 4.5], [1, 2, 3, 4]).statistic)
    assert mag["mae"] == pytest.approx(np.mean([0.5, 1.0, 0.5, 0.5]))
    dom = out.loc["dominance"]
    assert dom["n"] == 3 and dom["reason"] == "constant scores" and np.isnan(dom["spearman"])  # b, d infinite
    assert dom["mae"] == pytest.approx(np.mean([0.1, 0.1, 0.3]))
    const_obs = pt.tl.gi_score_agreement(pred.assign(dominance=[0.1, 0.2, 0.3, 0.4, 0.5]), obs.assign(dominance=0.4))
    assert const_obs.loc["dominance", "reason"] == "constant scores"
    one_side = pt.tl.gi_score_agreement(pred.assign(similarity=0.5), obs)  # similarity only predicted: skipped
    assert "similarity" not in one_side.index
    empty = pt.tl.gi_score_agreement(pred, obs.set_axis(list("vwxyz")), scores=["magnitude"])
    assert empty.loc["magnitude", "n"] == 0 and np.isnan(empty.loc["magnitude", "mae"])
    assert empty.loc["magnitude", "reason"] == "0 doubles (< 3)"
    three = pt.tl.gi_score_agreement(pred.iloc[:3], obs, scores=["magnitude"])
    assert three.loc["magnitude", "reason"] == "" and three.loc["magnitude", "n"] == 3


def test_interval_coverage_without_finite_doubles_is_undefined():
    iv = pd.DataFrame({"perturbation": ["A+B", "A+C", "B+C"], "score": ["magnitude"] * 3, "low": [np.nan, 0.5, -np.inf], "high": [1.0, np.inf, 2.0]})  # fmt: skip
    observed = pd.DataFrame({"magnitude": [1.0, np.inf, -np.inf]}, index=["A+B", "A+C", "B+C"])
    row = pt.tl.gi_interval_coverage({"m": iv}, observed).loc[("magnitude", "m")]
    assert row["n_doubles"] == 0
    assert row[["coverage", "ci_low", "ci_high", "mean_width"]].isna().all()


def test_gi_accuracy_against_sklearn():
    from sklearn.metrics import f1_score

    labels = {"A+B": "synergy", "A+C": "additive", "B+C": "suppressor", "C+D": "additive", "X+Y": "synergy"}
    predicted = pd.Series({"A+B": "synergy", "A+C": "synergy", "B+C": "suppressor", "C+D": "additive", "D+E": "additive"})  # fmt: skip
    out = pt.tl.gi_accuracy(predicted, labels)
    y = ["synergy", "additive", "suppressor", "additive"]
    p = ["synergy", "synergy", "suppressor", "additive"]
    assert out["accuracy"] == pytest.approx(0.75) and out["n"] == 4
    assert out["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    with warnings.catch_warnings():  # a class that is never predicted scores F1 0, without a warning
        warnings.simplefilter("error")
        never = pt.tl.gi_accuracy(pd.Series({"A+B": "synergy", "A+C": "synergy"}), labels)
    assert never["macro_f1"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="No predicted double has a published label"):
        pt.tl.gi_accuracy(pd.Series({"P+Q": "synergy"}), labels)


class _FixedPosterior:
    """A model whose posterior draws are given (no GP): the GI workflow around ``sample`` checked by hand."""

    def __init__(self, adata, draws_of, labels_key=None):
        self.adata = adata
        if labels_key is not None:  # a duck-typed model without ``data_keys_`` has its labels under "deg"
            self.data_keys_ = {"labels_key": labels_key}
        self.data_ = pt.tl.LabelledData.from_adata(adata, labels_key or "deg")
        self.draws_of, self.calls = draws_of, []

    def sample(self, doubles, n_samples, rng=None):
        self.calls.append({"doubles": list(doubles), "n_samples": n_samples, "rng": rng})
        return np.stack([self.draws_of[p][:n_samples] for p in doubles], axis=1)

    def predict_distribution(self, doubles):
        draws = np.stack([self.draws_of[p] for p in doubles])
        return draws.mean(axis=1), draws.var(axis=1)


def _posterior_of(a, labels_key=None, n=100, scale=0.3):
    data = pt.tl.LabelledData.from_adata(a, labels_key or "deg")
    doubles = [p for p in data.perturbations if "+" in p]
    rng = np.random.default_rng(0)
    draws = {p: data.delta[data.index([p])[0]] + rng.normal(scale=scale, size=(n, a.n_vars)) for p in doubles}
    return _FixedPosterior(a, draws, labels_key), doubles


class _ScoreRecorder:
    """Stands in for ``gi_scores_core``: records what it is given, returns scores with some infinite values."""

    def __init__(self):
        self.calls = []

    def __call__(self, d_a, d_b, d_ab, **kwargs):
        i = len(self.calls)
        self.calls.append({"d_a": d_a, "d_b": d_b, "d_ab": d_ab, **kwargs})
        scores = {s: float(np.sin(i + k)) for k, s in enumerate(SCORES)}
        scores["magnitude"] = 1 + float(np.cos(i))
        if i % 7 == 3:
            scores.update(dominance=np.inf, similarity=-np.inf)
        return scores


class _MagnitudeClassifier:
    classes_ = ("strong", "weak", "never")

    def predict(self, scores):
        return pd.Series(np.where(scores["magnitude"] > 1, "strong", "weak"), index=scores.index)


def test_gi_intervals_and_class_proba_of_given_draws_by_hand():
    """Each draw scored against the observed singles (control-z, dcor, min_mean), then quantiles / class shares."""
    from perturbtools.tl._gi_core import gi_scores_core

    a = _labelled_doubles(n_doubles=4, key_added="lab")
    model, doubles = _posterior_of(a, "lab", n=12)
    doubles = doubles[:2]
    data = model.data_
    sd = _control_sd(a)
    kw = {"n_samples": 12, "max_subpopulation": 300, "show_progress_bar": False}
    iv = pt.tl.gi_intervals(
        model, doubles[::-1], level=0.8, expression="control_z", model_fit="dcor", min_mean=0.2, **kw
    )
    assert list(dict.fromkeys(iv["perturbation"])) == doubles[::-1]
    scores = {}
    for p in doubles:
        ga, gb = p.split("+")
        keep = (data.control_mean > 0.2) & ~a.var_names.isin([ga, gb])
        scale = np.where(sd > 0, sd, np.inf)[keep]
        d_a, d_b = (data.delta[data.index([g])[0]][keep] / scale for g in (ga, gb))
        scores[p] = pd.DataFrame([
            gi_scores_core(d_a, d_b, model.draws_of[p][s][keep] / scale, model_fit="dcor", max_subpopulation=300)
            for s in range(12)
        ])  # fmt: skip
        for score in SCORES:
            row = iv[(iv["perturbation"] == p) & (iv["score"] == score)].iloc[0]
            np.testing.assert_allclose(
                row[["low", "median", "high"]].to_numpy(float), np.quantile(scores[p][score], [0.1, 0.5, 0.9]),
                rtol=1e-9,
            )  # fmt: skip
    clf = pt.tl.GIClassifier.default()
    proba = pt.tl.gi_class_proba(model, doubles[::-1], classifier=clf, model_fit="dcor", min_mean=0.2, expression="control_z", **kw)  # fmt: skip
    assert list(proba.index) == doubles[::-1] and list(proba.columns) == [*clf.classes_, "call", "n_samples"]
    for p in doubles:
        calls = pd.Series(clf.predict(scores[p]).to_numpy())
        share = calls.value_counts(normalize=True).reindex(clf.classes_, fill_value=0.0)
        np.testing.assert_allclose(proba.loc[p, clf.classes_].to_numpy(float), share.to_numpy(), atol=1e-12)
        assert proba.loc[p, "call"] == share.idxmax() and proba.loc[p, "n_samples"] == 12
    with pytest.raises(ValueError, match="No double with both singles observed to score"):
        pt.tl.gi_intervals(model, ["not+adouble"], **kw)


def test_gi_posterior_workflow_defaults_and_wiring(monkeypatch, capsys):
    """Defaults (all doubles, 100 draws, seed 0, 20,000 subsets, Pearson, min_mean 0, labels 'deg' for a model
    without ``data_keys_``), infinite scores left out of the quantiles, classes of each draw, progress bars."""
    import perturbtools.tl._gi as gi_module

    a = _labelled_doubles(n_doubles=4)
    model, doubles = _posterior_of(a)
    singles = pt.tl._gi._single_labels(model.data_)
    doubles = [p for p in doubles if all(g in singles for g in p.split("+"))]
    assert len(doubles) >= 2
    recorder = _ScoreRecorder()
    monkeypatch.setattr(gi_module, "gi_scores_core", recorder)
    iv = pt.tl.gi_intervals(model, show_progress_bar=False)
    assert model.calls == [{"doubles": doubles, "n_samples": 100, "rng": 0}]
    assert len(recorder.calls) == 100 * len(doubles)
    assert {(c["max_subpopulation"], c["model_fit"]) for c in recorder.calls} == {(20_000, "pearson")}
    replay = _ScoreRecorder()
    for j, p in enumerate(doubles):
        ga, gb = p.split("+")
        keep = (model.data_.control_mean > 0) & ~a.var_names.isin([ga, gb])
        assert len(recorder.calls[100 * j]["d_a"]) == keep.sum() == 80 - 5 - 2
        np.testing.assert_array_equal(recorder.calls[100 * j + 5]["d_ab"], model.draws_of[p][5][keep])
        np.testing.assert_array_equal(recorder.calls[100 * j]["d_a"], _observed_delta(a, ga, keep))
        draws = pd.DataFrame([replay(None, None, None) for _ in range(100)])
        for score in SCORES:
            finite = draws[score][np.isfinite(draws[score])]
            row = iv[(iv["perturbation"] == p) & (iv["score"] == score)].iloc[0]
            np.testing.assert_allclose(row[["low", "median", "high"]].to_numpy(float), np.quantile(finite, [0.05, 0.5, 0.95]))  # fmt: skip
    recorder.calls.clear()
    model.calls.clear()
    proba = pt.tl.gi_class_proba(model, classifier=_MagnitudeClassifier(), show_progress_bar=False)
    assert model.calls == [{"doubles": doubles, "n_samples": 100, "rng": 0}]
    assert {(c["max_subpopulation"], c["model_fit"]) for c in recorder.calls} == {(20_000, "pearson")}
    strong = np.array([1 + np.cos(i) > 1 for i in range(100 * len(doubles))]).reshape(len(doubles), 100).mean(axis=1)
    expected = pd.DataFrame(
        {"strong": strong, "weak": 1 - strong, "never": 0.0, "call": np.where(strong >= 0.5, "strong", "weak"), "n_samples": 100},
        index=pd.Index(doubles, name="perturbation"),
    )  # fmt: skip
    pd.testing.assert_frame_equal(proba, expected, check_dtype=False)
    # control z with the labels under "deg", read by a model without data_keys_
    recorder.calls.clear()
    pt.tl.gi_intervals(model, doubles[:1], n_samples=2, expression="control_z", show_progress_bar=False)
    sd = _control_sd(a)
    ga, gb = doubles[0].split("+")
    keep = (model.data_.control_mean > 0) & ~a.var_names.isin([ga, gb])
    np.testing.assert_allclose(recorder.calls[0]["d_a"], _observed_delta(a, ga, keep) / sd[keep], rtol=1e-12)
    monkeypatch.setattr(pt.settings, "progress_bar", False)  # the argument overrides the setting
    capsys.readouterr()
    pt.tl.gi_intervals(model, doubles[:1], n_samples=2, show_progress_bar=True)
    assert "GI intervals: 100%" in capsys.readouterr().err
    pt.tl.gi_class_proba(model, doubles[:1], n_samples=2, show_progress_bar=True)
    assert "GI classes: 100%" in capsys.readouterr().err


def test_gi_class_proba_calibrates_the_draws_with_conformal_intervals(monkeypatch):
    """With ``conformal=(level, intervals)`` the classified draws are ``calibrate_samples`` of the posterior draws."""
    import perturbtools.tl._gi as gi_module
    from perturbtools.tl._conformal_core import calibrate_samples

    a = _labelled_doubles(n_doubles=4)
    model, doubles = _posterior_of(a, n=10)
    double = doubles[0]
    ctrl = model.data_.control_mean
    mean, var = model.predict_distribution([double])
    lower = pd.DataFrame((ctrl + 3 * mean[0] - 1.0)[:, None], index=a.var_names, columns=[double])
    upper = pd.DataFrame((ctrl + 3 * mean[0] + 1.0)[:, None], index=a.var_names, columns=[double])
    recorder = _ScoreRecorder()
    monkeypatch.setattr(gi_module, "gi_scores_core", recorder)
    pt.tl.gi_class_proba(model, [double], n_samples=10, conformal=(0.8, {0.8: (lower, upper)}), show_progress_bar=False)
    samples = model.sample([double], 10)
    want = calibrate_samples(samples, mean, np.sqrt(var), (lower.to_numpy().T - ctrl), (upper.to_numpy().T - ctrl), 0.8)
    ga, gb = double.split("+")
    keep = (ctrl > 0) & ~a.var_names.isin([ga, gb])
    for s in range(10):
        np.testing.assert_allclose(recorder.calls[s]["d_ab"], want[s, 0][keep], rtol=1e-12)
    assert not np.allclose(recorder.calls[0]["d_ab"], samples[0, 0][keep])
