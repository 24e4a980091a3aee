from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perturbtools as pt
from perturbtools.tl._conformal_core import cv_plus, split_conformal


def test_split_conformal_quantile_by_hand():
    rng = np.random.default_rng(0)
    scores = rng.random((19, 3))
    pred, scale = np.zeros((2, 3)), np.full((2, 3), 2.0)
    low, high = split_conformal(pred, scale, scores, 0.9)
    k = int(np.ceil(0.9 * 20))  # the 18th smallest of 19 scores
    np.testing.assert_allclose(high[0], 2 * np.sort(scores, axis=0)[k - 1])
    np.testing.assert_allclose(low, -high)
    assert np.isinf(split_conformal(pred, scale, scores, 0.97)[1]).all()  # 0.97 > 19/20: unbounded


@pytest.mark.parametrize("method", ["split", "cv+"])
def test_coverage_on_exchangeable_data_is_nominal(method):
    """Simulated exchangeable units: the mean predictor's conformal intervals cover at the nominal level."""
    rng = np.random.default_rng(1)
    n, q, reps, k = 79, 25, 400, 5
    covered = {lv: [] for lv in (0.5, 0.8, 0.9)}
    for _ in range(reps):
        y = rng.standard_t(5, size=(n + q, 1)) * 2 + 1
        calib, test = y[:n], y[n:]
        if method == "split":
            fit, cal = calib[:40], calib[40:]
            scores = np.abs(cal - fit.mean(0))
            for lv in covered:
                lo, hi = split_conformal(np.full((q, 1), fit.mean()), np.ones((q, 1)), scores, lv)
                covered[lv].append(np.mean((test >= lo) & (test <= hi)))
        else:
            folds = np.arange(n) % k
            mus = np.stack([calib[folds != f].mean(0) for f in range(k)])  # K x 1
            scores = np.abs(calib - mus[folds])
            pred = np.repeat(mus[:, None, :], q, axis=1)  # K x Q x 1
            for lv in covered:
                lo, hi = cv_plus(pred, np.ones_like(pred), scores, folds, lv)
                covered[lv].append(np.mean((test >= lo) & (test <= hi)))
    n_cal = 39 if method == "split" else n
    for lv, values in covered.items():
        # split: exactly ceil(lv (n + 1)) / (n + 1) in expectation; CV+: about lv (Monte-Carlo SE ~ 0.005)
        want = np.ceil(lv * (n_cal + 1)) / (n_cal + 1) if method == "split" else lv
        assert np.mean(values) == pytest.approx(want, abs=0.02), (lv, np.mean(values))


def test_tied_scores_make_coverage_a_lower_bound():
    """Exchangeable but zero-inflated outcomes (like a gene no cell of most perturbations expresses): the scores of
    the zeros tie, so split-conformal coverage exceeds nominal; over the non-zero entries it falls below."""
    rng = np.random.default_rng(2)
    n, q, reps = 59, 40, 600
    inside, nonzero = [], []
    for _ in range(reps):
        y = np.where(rng.random((n + q, 1)) < 0.6, 0.0, rng.exponential(1.0, (n + q, 1)))
        calib, test = y[:n], y[n:]
        mu = 0.2  # a fixed prediction: the scores of every zero equal 0.2
        lo, hi = split_conformal(np.full((q, 1), mu), np.ones((q, 1)), np.abs(calib - mu), 0.5)
        inside.append((test >= lo) & (test <= hi))
        nonzero.append(test != 0)
    inside, nonzero = np.concatenate(inside), np.concatenate(nonzero)
    assert inside.mean() > 0.5 + 1 / (n + 1) + 0.05  # above the no-ties upper bound level + 1 / (n + 1)
    assert inside[nonzero].mean() < 0.5


@pytest.fixture
def many_perts():
    a = pt.data.synthetic(n_cells=3000, n_genes=60, n_perturbations=48, rng=3)
    pt.pp.deg_labels(a)
    pt.pp.add_gene_embedding(a, a.uns["synthetic"]["gene_embedding"], key_added="gene_emb")
    return a


def test_conformal_intervals_in_anndata_and_coverage_by_hand(many_perts):
    a = many_perts
    perts = a.uns["deg"]["perturbations"]
    train, test = perts[:36], perts[36:]
    before = set(a.varm)
    out = pt.tl.conformal_intervals(a, pt.tl.NonControlMean, train=train, test=test, n_splits=4, inplace=False,
                                    show_progress_bar=False)  # fmt: skip
    assert set(out) == {0.5, 0.8, 0.9, 0.95} and set(a.varm) == before  # inplace=False leaves adata alone
    assert pt.tl.conformal_intervals(a, pt.tl.NonControlMean, train=train, test=test, n_splits=4,
                                     show_progress_bar=False) is None  # fmt: skip
    assert "noncontrol_mean_lower90" in a.varm
    pd.testing.assert_frame_equal(a.varm["noncontrol_mean_lower90"][test], out[0.9][0], check_names=False)
    lo, hi = a.varm["noncontrol_mean_lower90"][test].to_numpy(), a.varm["noncontrol_mean_upper90"][test].to_numpy()
    assert (lo <= a.varm["noncontrol_mean_mean"][test].to_numpy() + 1e-6).all() and (hi >= lo).all()
    y = a.varm["deg_mean"][test].to_numpy()
    cov = pt.metrics.interval_coverage(a, "noncontrol_mean", n_boot=200)
    assert cov.loc[0.9, "coverage"] == pytest.approx(np.mean((y >= lo) & (y <= hi)))
    assert cov.loc[0.9, "mean_width"] == pytest.approx(np.mean(hi - lo), rel=1e-5)
    assert cov.loc[0.9, "coverage_ci_low"] <= cov.loc[0.9, "coverage"] <= cov.loc[0.9, "coverage_ci_high"] <= 1
    assert (cov["coverage"].diff().dropna() >= 0).all() and cov.loc[0.9, "coverage"] > 0.7
    # a gene never expressed anywhere is predicted exactly and covered at every level: left out by default
    b = a.copy()
    dead = b.var_names[:5]
    for key in ("deg_mean", "noncontrol_mean_mean", "noncontrol_mean_lower50", "noncontrol_mean_upper50"):
        frame = b.varm[key].copy()
        frame.loc[dead] = 0.0
        b.varm[key] = frame
    b.var.loc[dead, "deg_control_mean"] = 0.0
    keep = ~b.var_names.isin(dead)
    yb = b.varm["deg_mean"][test].to_numpy()
    lo50, hi50 = (b.varm[f"noncontrol_mean_{bound}50"][test].to_numpy() for bound in ("lower", "upper"))
    inside = (yb >= lo50) & (yb <= hi50)
    cov_b = pt.metrics.interval_coverage(b, "noncontrol_mean", n_boot=50)
    assert cov_b.loc[0.5, "n_genes_excluded"] == 5
    assert cov_b.loc[0.5, "coverage"] == pytest.approx(inside[keep].mean())
    all_genes = pt.metrics.interval_coverage(b, "noncontrol_mean", expressed_only=False, n_boot=50)
    assert all_genes.loc[0.5, "coverage"] == pytest.approx(inside.mean())
    assert all_genes.loc[0.5, "coverage"] > cov_b.loc[0.5, "coverage"]  # the dead genes are always "covered"
    with pytest.raises(ValueError, match="overlap"):
        pt.tl.conformal_intervals(a, pt.tl.NonControlMean, train=train, test=train[:2])
    pt.tl.NonControlMean(a).fit(train).predict(test)  # a plain predict under the same key drops stale intervals
    assert "noncontrol_mean_lower90" not in a.varm
    with pytest.raises(KeyError, match="conformal_intervals"):
        pt.metrics.interval_coverage(a, "noncontrol_mean")


def test_gp_posterior_normalised_intervals_are_adaptive(many_perts):
    a = many_perts
    perts = a.uns["deg"]["perturbations"]
    pt.tl.conformal_intervals(a, (pt.tl.GPModel, {"n_components": 6}), train=perts[:36], test=perts[36:],
                              n_splits=4, show_progress_bar=False)  # fmt: skip
    assert a.uns["gp"]["conformal"]["scale"] == "posterior"
    width = (a.varm["gp_upper90"] - a.varm["gp_lower90"])[perts[36:]].to_numpy()
    assert np.std(width, axis=0).mean() > 0  # widths differ between genes: normalised by the posterior SD


def test_ece_reliability_and_calibrators_by_hand():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    p = np.array([0.95, 0.05, 0.65, 0.55, 0.45, 0.15, 0.99, 0.91])
    r = pt.metrics.reliability(y, p, n_bins=2)  # bins [0, .5) and [.5, 1]
    np.testing.assert_allclose(r["count"], [3, 5])
    np.testing.assert_allclose(r["confidence"], [(0.05 + 0.45 + 0.15) / 3, (0.95 + 0.65 + 0.55 + 0.99 + 0.91) / 5])
    np.testing.assert_allclose(r["accuracy"], [0, 4 / 5])
    want = 3 / 8 * abs(0 - 0.65 / 3) + 5 / 8 * abs(0.8 - 4.05 / 5)
    assert pt.metrics.expected_calibration_error(y, p, n_bins=2) == pytest.approx(want)
    rng = np.random.default_rng(0)
    true_p = rng.random(20000)
    labels = rng.random(20000) < true_p
    overconfident = 1 / (1 + np.exp(-3 * np.log(true_p / (1 - true_p))))  # logit x 3
    assert pt.metrics.expected_calibration_error(labels, overconfident) > 0.08
    temp = pt.tl.ProbabilityCalibrator("temperature").fit(overconfident[:10000], labels[:10000])
    assert temp.temperature_ == pytest.approx(3.0, rel=0.1)
    for method in ("temperature", "isotonic"):
        cal = pt.tl.ProbabilityCalibrator(method).fit(overconfident[:10000], labels[:10000])
        assert pt.metrics.expected_calibration_error(labels[10000:], cal.transform(overconfident[10000:])) < 0.03
    with pytest.raises(ValueError, match="both classes"):
        pt.tl.ProbabilityCalibrator().fit(np.array([0.2, 0.3]), np.array([0, 0]))
    with pytest.raises(RuntimeError, match="fit"):
        pt.tl.ProbabilityCalibrator().transform(p)


def test_probability_calibration_of_a_model(many_perts):
    a = many_perts
    perts = a.uns["deg"]["perturbations"]
    pt.tl.GPModel(a, n_components=6).fit(perts[:36]).predict(perts[36:])
    table = pt.metrics.probability_calibration(a, "gp")
    y = a.varm["deg_is_de"][perts[36:]].to_numpy().ravel()
    p = a.varm["gp_de_proba"][perts[36:]].to_numpy().ravel()
    assert table.attrs["ece"] == pytest.approx(pt.metrics.expected_calibration_error(y, p))
    direction = pt.metrics.probability_calibration(a, "gp", subtask="direction")
    assert direction.attrs["n_entries"] == y.sum()
    import matplotlib.axes

    ax = pt.pl.reliability(table)
    assert isinstance(ax, matplotlib.axes.Axes) and ax.get_title().startswith(f"ECE {table.attrs['ece']:.3f}")
