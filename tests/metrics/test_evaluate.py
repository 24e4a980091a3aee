from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perturbtools as pt
from perturbtools.tl import LabelledData, Predictions


def _oracle(adata):
    data = LabelledData.from_adata(adata)
    return data, Predictions.from_arrays(data.var_names, data.perturbations, mean=data.mean)


def test_oracle_is_perfect(labelled_adata):
    data, preds = _oracle(labelled_adata)
    per, pooled = pt.metrics.evaluate_predictions(preds, data)
    assert np.allclose(per["pearson_delta"], 1, atol=1e-5)
    assert np.allclose(per["mae"], 0, atol=1e-5)
    assert (per["rank"] == 0).all()
    row = pooled[(pooled["stratum"] == "all") & (pooled["mask"] == "all")].iloc[0]
    assert row["roc_auc_direction"] == pytest.approx(1.0)
    assert row["pearson_fc"] == pytest.approx(1.0, abs=1e-5)
    assert row["roc_auc_de"] > 0.8
    assert per.attrs["score_sources"]["de_score"] == "|predicted mean - control mean|"


def test_probability_outputs_are_used(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    perfect = Predictions.from_arrays(
        data.var_names, data.perturbations, de_proba=data.is_de.astype(float),
        direction_proba=(data.direction > 0).astype(float), logfc=np.log2(data.fc),
    )  # fmt: skip
    _, pooled = pt.metrics.evaluate_predictions(perfect, data)
    row = pooled[(pooled["stratum"] == "all") & (pooled["mask"] == "all")].iloc[0]
    assert row["roc_auc_de"] == pytest.approx(1.0) and row["pr_auc_de"] == pytest.approx(1.0)


def test_stratified_and_inplace(labelled_adata, tmp_path):
    data = LabelledData.from_adata(labelled_adata)
    singles = [p for p in data.perturbations if "+" not in p]
    pt.tl.Additive(labelled_adata).fit(singles).predict(data.perturbations)
    before = set(labelled_adata.uns["additive"])
    per, pooled = pt.metrics.evaluate(labelled_adata, "additive")
    assert set(labelled_adata.uns["additive"]) == before  # inplace=False (default) leaves adata alone
    assert pt.metrics.evaluate(labelled_adata, "additive", inplace=True) is None
    assert set(per.loc[[p for p in data.perturbations if "+" in p], "unseen"]) == {"0/2 unseen"}
    assert {"all", "0/1 unseen", "0/2 unseen"} <= set(pooled["stratum"])
    assert isinstance(labelled_adata.uns["additive"]["metrics"], pd.DataFrame)
    labelled_adata.write_h5ad(tmp_path / "e.h5ad")


def test_summarize_and_compare():
    df = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 4, "x": [1.0, 2, 3, 4, 1.5, 2.5, 3.5, 4.5]})
    s = pt.metrics.summarize(df, by="model")
    assert s.set_index("model").loc["a", "mean"] == 2.5
    c = pt.metrics.compare(df["x"][:4].reset_index(drop=True), df["x"][4:].reset_index(drop=True))
    assert c["mean_difference"] == pytest.approx(-0.5)
    assert np.isnan(c["ttest_p"])  # constant difference: the paired t-test is undefined


def test_needs_predictions(labelled_adata):
    with pytest.raises(KeyError, match="predict"):
        pt.metrics.evaluate(labelled_adata, "nothing")


def test_every_metric_at_evaluate_level_by_hand(labelled_adata):
    """Which mask feeds which metric: each per-perturbation and pooled value recomputed with scipy / sklearn."""
    from scipy import stats
    from sklearn.metrics import average_precision_score, r2_score, roc_auc_score

    a = labelled_adata
    rng = np.random.default_rng(0)
    a.var["highly_variable"] = rng.random(a.n_vars) < 0.5
    data = LabelledData.from_adata(a)
    mu_c = a.var["deg_control_mean"].to_numpy()
    truth = a.varm["deg_mean"].to_numpy().T
    pred = np.maximum(truth + rng.normal(scale=0.3, size=truth.shape), 0)
    preds = Predictions.from_arrays(data.var_names, data.perturbations, mean=pred)
    per, pooled = pt.metrics.evaluate_predictions(preds, data, min_positives=1)  # the formulas, without the minimum

    def fc(m):
        return (np.expm1(m + 0.1) + 1e-9) / (np.expm1(mu_c + 0.1) + 1e-9)

    vm = {k: a.varm[f"deg_{k}"] for k in ("is_de", "direction", "top20", "top40", "top50", "large_effect", "fc")}
    hvg = a.var["highly_variable"].to_numpy()
    for i, p in enumerate(data.perturbations):
        row, y, t = per.loc[p], pred[i], truth[i]
        top20, top50 = vm["top20"][p].to_numpy(), vm["top50"][p].to_numpy()
        assert row["pearson"] == pytest.approx(stats.pearsonr(y, t)[0])
        assert row["pearson_delta"] == pytest.approx(stats.pearsonr(y - mu_c, t - mu_c)[0])
        assert row["pearson_de_delta"] == pytest.approx(stats.pearsonr((y - mu_c)[top20], (t - mu_c)[top20])[0])
        assert row["pearson_de"] == pytest.approx(stats.pearsonr(y[top20], t[top20])[0])
        assert row["mae"] == pytest.approx(np.abs(y - t).mean())
        assert row["mae_de"] == pytest.approx(np.abs(y - t)[top20].mean())
        assert row["mse"] == pytest.approx(((y - t) ** 2).mean())
        assert row["r2_hvg"] == pytest.approx(r2_score(t[hvg], y[hvg]))
        assert row["r2_top50"] == pytest.approx(r2_score(t[top50], y[top50]))
        large = vm["large_effect"][p].to_numpy()
        if large.sum() >= 2:
            assert row["r2_large_effect"] == pytest.approx(r2_score(t[large], y[large]))
        is_de = vm["is_de"][p].to_numpy()
        assert row["roc_auc_de"] == pytest.approx(roc_auc_score(is_de, np.abs(y - mu_c)))
        assert row["pr_auc_de"] == pytest.approx(average_precision_score(is_de, np.abs(y - mu_c)))
        top40 = vm["top40"][p].to_numpy()
        if 0 < is_de[top40].sum() < top40.sum():
            assert row["roc_auc_de_top40"] == pytest.approx(roc_auc_score(is_de[top40], np.abs(y - mu_c)[top40]))
        up = vm["direction"][p].to_numpy()[is_de] > 0
        if 0 < up.sum() < up.size:
            assert row["roc_auc_direction"] == pytest.approx(roc_auc_score(up, (y - mu_c)[is_de]))
        if is_de.sum() >= 2:
            assert row["pearson_fc"] == pytest.approx(stats.pearsonr(vm["fc"][p].to_numpy()[is_de], fc(y)[is_de])[0])
            assert row["mse_fc"] == pytest.approx(((vm["fc"][p].to_numpy() - fc(y))[is_de] ** 2).mean())
    # pooled over every (perturbation, gene) entry
    all_de = vm["is_de"].to_numpy().T
    row = pooled[(pooled["stratum"] == "all") & (pooled["mask"] == "all")].iloc[0]
    assert row["roc_auc_de"] == pytest.approx(roc_auc_score(all_de.ravel(), np.abs(pred - mu_c).ravel()))
    assert row["pr_auc_de"] == pytest.approx(average_precision_score(all_de.ravel(), np.abs(pred - mu_c).ravel()))
    all_up = vm["direction"].to_numpy().T[all_de] > 0
    assert row["roc_auc_direction"] == pytest.approx(roc_auc_score(all_up, (pred - mu_c)[all_de]))
    true_fc = vm["fc"].to_numpy().T
    assert row["pearson_fc"] == pytest.approx(stats.pearsonr(true_fc[all_de], fc(pred)[all_de])[0])
    assert row["n_de"] == all_de.sum()
    t40 = vm["top40"].to_numpy().T
    row40 = pooled[(pooled["stratum"] == "all") & (pooled["mask"] == "top40")].iloc[0]
    assert row40["roc_auc_de"] == pytest.approx(roc_auc_score(all_de[t40], np.abs(pred - mu_c)[t40]))


def test_de_overlap_columns_at_evaluate_level_by_hand(labelled_adata):
    from scipy import stats

    a = labelled_adata
    data = LabelledData.from_adata(a)
    rng = np.random.default_rng(1)
    truth = a.varm["deg_mean"].to_numpy().T
    pred = np.maximum(truth + rng.normal(scale=0.3, size=truth.shape), 0)
    per, _ = pt.metrics.evaluate_predictions(
        Predictions.from_arrays(data.var_names, data.perturbations, mean=pred), data, min_positives=1
    )
    mu_c = a.var["deg_control_mean"].to_numpy()
    for i, p in enumerate(data.perturbations):
        is_de = a.varm["deg_is_de"][p].to_numpy()
        n_de = int(is_de.sum())
        if n_de < 3:
            continue
        delta = pred[i] - mu_c
        top_pred = set(np.argsort(-np.abs(delta), kind="stable")[:50])
        de_idx = np.flatnonzero(is_de)
        t = np.abs(a.varm["deg_scores"][p].to_numpy())
        top_true = set(de_idx[np.argsort(-t[de_idx], kind="stable")[:50]])
        assert per.loc[p, "overlap_at_50"] == pytest.approx(len(top_pred & top_true) / min(50, n_de))
        assert per.loc[p, "precision_at_50"] == pytest.approx(len(top_pred & set(de_idx)) / 50)
        direction = a.varm["deg_direction"][p].to_numpy()
        assert per.loc[p, "de_direction_match"] == pytest.approx(np.mean(np.sign(delta[is_de]) == direction[is_de]))
        fc = (np.expm1(pred[i] + 0.1) + 1e-9) / (np.expm1(mu_c + 0.1) + 1e-9)
        want = stats.spearmanr(a.varm["deg_logfc"][p].to_numpy()[is_de], np.log2(fc)[is_de]).statistic
        assert per.loc[p, "de_spearman_lfc"] == pytest.approx(want)


def test_compare_models_paired_and_holm_corrected():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    perts = [f"p{i}" for i in range(25)]
    a = pd.DataFrame({"model": "a", "perturbation": perts, "pearson_delta": rng.random(25), "rank": rng.random(25)})
    b = a.assign(model="b", pearson_delta=a["pearson_delta"] - 0.2 + rng.normal(scale=0.05, size=25),
                 rank=a["rank"] + rng.normal(scale=0.05, size=25))  # fmt: skip
    b.loc[3, "rank"] = np.nan  # scored for one model only: left out of that metric's pairs
    table = pt.metrics.compare_models(pd.concat([a, b]), "a", "b", n_perm=4000)
    d = (a["pearson_delta"] - b["pearson_delta"]).to_numpy()
    assert table.loc["pearson_delta", "mean_difference"] == pytest.approx(d.mean())
    assert table.loc["pearson_delta", "n"] == 25 and table.loc["rank", "n"] == 24
    assert table.loc["pearson_delta", "ci_low"] < d.mean() < table.loc["pearson_delta", "ci_high"]
    assert table.loc["pearson_delta", "permutation_p"] == pytest.approx(1 / 4001)  # a clear shift
    np.testing.assert_allclose(table["holm_p"], multipletests(table["permutation_p"], method="holm")[1])
    with pytest.raises(KeyError, match="nope"):
        pt.metrics.compare_models(a, "a", "nope")


def test_metrics_from_too_few_positives_are_undefined_with_reason(labelled_adata):
    """A DE / direction / FC metric from fewer than ``min_positives`` positives is NaN, and the summary says why."""
    a = labelled_adata
    data = LabelledData.from_adata(a)
    truth = a.varm["deg_mean"].to_numpy().T
    preds = Predictions.from_arrays(data.var_names, data.perturbations, mean=truth)
    is_de = a.varm["deg_is_de"].to_numpy().T
    up = (a.varm["deg_direction"].to_numpy().T > 0) & is_de
    down = is_de & ~up
    m = int(np.median(is_de.sum(axis=1))) + 1  # leaves some perturbations below, some at or above the minimum
    per, pooled = pt.metrics.evaluate_predictions(preds, data, min_positives=m)
    few_de = is_de.sum(axis=1) < m
    assert few_de.any() and (~few_de).any()
    np.testing.assert_array_equal(per["roc_auc_de"].isna().to_numpy(), few_de)
    np.testing.assert_array_equal(per["pearson_fc"].isna().to_numpy(), few_de)
    np.testing.assert_array_equal(per["overlap_at_20"].isna().to_numpy(), few_de)
    few_dir = (up.sum(axis=1) < m) | (down.sum(axis=1) < m)
    np.testing.assert_array_equal(per["roc_auc_direction"].isna().to_numpy(), few_dir)
    np.testing.assert_array_equal(per["n_up"].to_numpy(), up.sum(axis=1))
    assert per["pearson_delta"].notna().all()  # expression metrics need no DEGs
    # pooled: the minimum applies to the pooled entries
    row = pooled[(pooled["stratum"] == "all") & (pooled["mask"] == "all")].iloc[0]
    assert np.isfinite(row["roc_auc_de"]) == (is_de.sum() >= m)
    too_many = int(is_de.sum()) + 1
    _, none = pt.metrics.evaluate_predictions(preds, data, min_positives=too_many)
    assert none[["roc_auc_de", "pr_auc_de", "pearson_fc"]].isna().all().all()
    # the summary counts and explains the undefined rows
    summary = pt.metrics.summarize(per.assign(model="truth"), by="model").set_index("metric")
    assert summary.loc["roc_auc_de", "n_undefined"] == few_de.sum()
    assert summary.loc["roc_auc_de", "n"] == (~few_de).sum()
    assert "DEGs" in summary.loc["roc_auc_de", "note"] and "min_positives" in summary.loc["roc_auc_de", "note"]
    assert summary.loc["pearson_delta", "note"] == ""
    all_nan = pt.metrics.summarize(per.assign(model="truth", roc_auc_de=np.nan), by="model").set_index("metric")
    assert np.isnan(all_nan.loc["roc_auc_de", "mean"]) and all_nan.loc["roc_auc_de", "note"].startswith("undefined")
    one = pt.metrics.summarize(per.iloc[:1].assign(model="truth"), by="model").set_index("metric")
    assert np.isnan(one.loc["pearson_delta", "ci_low"]) and "no interval" in one.loc["pearson_delta", "note"]


def test_a_jurkat_like_screen_with_almost_no_degs_reports_undefined(labelled_adata):
    """The issue's case: a handful of DEG entries, all one gene. No AUC of 1.000 and no +-1 correlation from them."""
    a = labelled_adata.copy()
    is_de = np.zeros((a.n_vars, len(a.uns["deg"]["perturbations"])), dtype=bool)
    is_de[0, :3] = True  # 3 DEG entries, all gene 0
    a.varm["deg_is_de"] = pd.DataFrame(is_de, index=a.var_names, columns=a.varm["deg_is_de"].columns)
    a.varm["deg_direction"] = pd.DataFrame(
        is_de.astype(np.int8), index=a.var_names, columns=a.varm["deg_is_de"].columns
    )
    data = LabelledData.from_adata(a)
    preds = Predictions.from_arrays(data.var_names, data.perturbations, mean=data.mean)
    per, pooled = pt.metrics.evaluate_predictions(preds, data)
    for table in (per, pooled):
        assert table[["roc_auc_de", "pr_auc_de", "roc_auc_direction", "pearson_fc", "mse_fc"]].isna().all().all()


def _percentile_bootstrap(values, n_boot, seed=0, level=0.95):
    """The textbook percentile bootstrap of the mean (numpy only), to pin the CIs below."""
    v = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))
    return tuple(np.quantile(v[idx].mean(axis=1), [(1 - level) / 2, (1 + level) / 2]))


def test_compare_against_scipy():
    """Rows with a NaN on either side are dropped; t-interval of the mean difference, paired t-test, Wilcoxon."""
    from scipy import stats

    a = pd.Series([1.0, 2.5, 3.0, np.nan, 5.2, 0.3, 2.2])
    b = pd.Series([0.5, 2.0, 3.4, 1.0, 4.0, np.nan, 2.9])
    keep = a.notna() & b.notna()
    diff = (a - b)[keep].to_numpy()
    half = stats.t.ppf(0.975, diff.size - 1) * diff.std(ddof=1) / np.sqrt(diff.size)
    c = pt.metrics.compare(a, b)
    assert c["n"] == 5 and c["mean_difference"] == pytest.approx(diff.mean())
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert c["ttest_p"] == pytest.approx(stats.ttest_rel(a[keep], b[keep]).pvalue)
    assert c["wilcoxon_p"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    two = pt.metrics.compare(pd.Series([1.0, 2.0]), pd.Series([0.5, 2.5]))  # the smallest n with both tests
    assert two["ttest_p"] == pytest.approx(stats.ttest_rel([1.0, 2.0], [0.5, 2.5]).pvalue)
    assert two["wilcoxon_p"] == pytest.approx(stats.wilcoxon([0.5, -0.5]).pvalue)
    shifted = pt.metrics.compare(pd.Series([1.0, 2.0, 3.0]), pd.Series([0.5, 1.5, 2.5]))  # constant difference 0.5
    assert np.isnan(shifted["ttest_p"]) and shifted["wilcoxon_p"] == pytest.approx(stats.wilcoxon([0.5] * 3).pvalue)
    same = pt.metrics.compare(pd.Series([1.0, 2.0, 3.0]), pd.Series([1.0, 2.0, 3.0]))
    assert np.isnan(same["ttest_p"]) and np.isnan(same["wilcoxon_p"]) and same["mean_difference"] == 0
    one = pt.metrics.compare(pd.Series([1.0, np.nan]), pd.Series([0.0, 1.0]))
    assert one["n"] == 1 and one["mean_difference"] == 1.0
    assert all(np.isnan(one[k]) for k in ("ci_low", "ci_high", "ttest_p", "wilcoxon_p"))


def _with_intervals(adata, key, perts, rng, labels_key="lab"):
    """Write a mean, a predictive variance, probabilities and 50%/90% float32 intervals for ``perts`` under ``key``.

    The first perturbation has three genes with zero variance, the third none with a positive one (nothing to score)
    and the fourth one; the second has two infinite intervals.
    """
    from perturbtools._predictions import write_predictions

    truth = adata.varm[f"{labels_key}_mean"][perts].to_numpy().T
    mean = (truth + rng.normal(scale=0.4, size=truth.shape)).astype(np.float32)
    var = rng.uniform(0.05, 0.4, size=truth.shape).astype(np.float32)
    var[0, :3] = 0.0  # a zero variance: no interval to score
    var[2] = 0.0
    var[3, 1:] = 0.0
    preds = Predictions.from_arrays(adata.var_names, perts, mean=mean, mean_var=var,
                                    de_proba=rng.uniform(size=truth.shape), direction_proba=rng.uniform(size=truth.shape))  # fmt: skip
    intervals = {}
    for level, half in ((0.5, 0.3), (0.9, 0.9)):
        hw = half * np.sqrt(var.astype(np.float64))
        hw[1, :2] = np.inf  # infinite intervals are covered and counted
        intervals[level] = tuple(pd.DataFrame((mean + sign * hw).T.astype(np.float32), index=adata.var_names, columns=perts) for sign in (-1, 1))  # fmt: skip
    write_predictions(adata, preds, key, {}, intervals=intervals)
    return mean.astype(np.float64), var.astype(np.float64)


def test_calibration_and_interval_coverage_by_hand(relabelled):
    """Coverage, CIs over perturbations, widths and counts of both interval metrics, recomputed with numpy / scipy."""
    from scipy import stats

    from perturbtools._keys import interval_key

    a = relabelled("lab")
    perts = list(a.uns["lab"]["perturbations"])[:8]
    mean, var = _with_intervals(a, "m", perts, np.random.default_rng(1))
    dead = a.var_names[-3:]  # never expressed: left out by default
    for frame_key in ("lab_mean", "m_mean"):
        frame = a.varm[frame_key].copy()
        frame.loc[dead] = 0.0
        a.varm[frame_key] = frame
    a.var.loc[a.var_names[-4:], "lab_control_mean"] = 0.0  # the fourth last is expressed under perturbation: kept
    truth = a.varm["lab_mean"][perts].to_numpy().T
    genes = ~a.var_names.isin(dead)
    mean[:, ~genes] = 0.0
    sd = np.sqrt(var)

    def by_hand(rows, keep, level, n_boot=2000, seed=0):
        t, m, s = truth[rows][:, keep], mean[rows][:, keep], sd[rows][:, keep]
        scored = s > 0
        inside = scored & (np.abs(t - m) <= stats.norm.ppf(0.5 + level / 2) * s)
        used = scored.any(axis=1)
        per = inside.sum(axis=1)[used] / scored.sum(axis=1)[used]
        ci = _percentile_bootstrap(per, n_boot, seed) if used.sum() > 1 else (np.nan, np.nan)
        return (inside.sum() / scored.sum() if scored.any() else np.nan), ci, scored.sum()

    cal = pt.metrics.calibration(a, "m", labels_key="lab")  # defaults: 4 levels, 2,000 resamples, seed 0
    assert list(cal["level"]) == [0.5, 0.8, 0.9, 0.95]
    for _, row in cal.iterrows():
        coverage, ci, n = by_hand(slice(None), genes, row["level"])
        assert row["coverage"] == pytest.approx(coverage)
        assert (row["coverage_ci_low"], row["coverage_ci_high"]) == pytest.approx(ci)
        assert row["n_entries"] == n and row["n_genes_excluded"] == 3
    sub = pt.metrics.calibration(a, "m", labels_key="lab", levels=(0.8,), perturbations=perts[2:6],
                                 expressed_only=False, n_boot=50, rng=4)  # fmt: skip
    coverage, ci, n = by_hand(slice(2, 6), slice(None), 0.8, 50, 4)
    assert len(sub) == 1 and sub.loc[0, "coverage"] == pytest.approx(coverage)
    assert (sub.loc[0, "coverage_ci_low"], sub.loc[0, "coverage_ci_high"]) == pytest.approx(ci)
    assert sub.loc[0, "n_entries"] == n and sub.loc[0, "n_genes_excluded"] == 0
    nothing = pt.metrics.calibration(a, "m", labels_key="lab", perturbations=[perts[2]], n_boot=20)  # no variance
    assert nothing["coverage"].isna().all() and (nothing["n_entries"] == 0).all()

    cov = pt.metrics.interval_coverage(a, "m", labels_key="lab")
    assert list(cov.index) == [0.5, 0.9] and cov.index.name == "level"
    for level in (0.5, 0.9):
        lo, hi = (
            a.varm[interval_key("m", level, bound)][perts].to_numpy(np.float64).T[:, genes]
            for bound in ("lower", "upper")
        )
        y = truth[:, genes]
        inside = (y >= lo) & (y <= hi)
        width = (hi - lo)[np.isfinite(hi - lo)]  # float32 bounds, widths in float64
        row = cov.loc[level]
        assert row["coverage"] == pytest.approx(inside.mean())
        assert (row["coverage_ci_low"], row["coverage_ci_high"]) == pytest.approx(
            _percentile_bootstrap(inside.mean(axis=1), 2000)
        )
        assert row["mean_width"] == pytest.approx(width.mean(), rel=1e-12)
        assert row["median_width"] == pytest.approx(np.median(width), rel=1e-12)
        assert row["n_infinite"] == 2 and row["n_entries"] == inside.size
        assert row["n_perturbations"] == 8 and row["n_genes_excluded"] == 3
    some = pt.metrics.interval_coverage(a, "m", labels_key="lab", perturbations=[perts[1], perts[4], "not_one"],
                                        expressed_only=False, n_boot=20, rng=3)  # fmt: skip
    lo, hi = (a.varm[interval_key("m", 0.5, bound)][[perts[1], perts[4]]].to_numpy().T for bound in ("lower", "upper"))
    inside = (truth[[1, 4]] >= lo) & (truth[[1, 4]] <= hi)
    assert some.loc[0.5, "coverage"] == pytest.approx(inside.mean()) and some.loc[0.5, "n_perturbations"] == 2
    assert (some.loc[0.5, "coverage_ci_low"], some.loc[0.5, "coverage_ci_high"]) == pytest.approx(
        _percentile_bootstrap(inside.mean(axis=1), 20, seed=3)
    )
    for level in (0.5, 0.9):  # every interval infinite: widths are infinite, not NaN
        for bound, sign in (("lower", -1), ("upper", 1)):
            a.varm[interval_key("m", level, bound)].loc[:, :] = sign * np.inf
    inf = pt.metrics.interval_coverage(a, "m", labels_key="lab", n_boot=20)
    assert (inf["mean_width"] == np.inf).all() and (inf["median_width"] == np.inf).all()
    assert (inf["coverage"] == 1.0).all() and (inf["n_infinite"] == inf["n_entries"]).all()


def test_calibration_needs_a_predictive_variance(labelled_adata):
    a = labelled_adata.copy()
    perts = list(a.uns["deg"]["perturbations"])[:4]
    pt.tl.NonControlMean(a).fit(perts).predict(perts)
    with pytest.raises(KeyError, match=r"`adata.varm\['noncontrol_mean_mean_var'\]` not found"):
        pt.metrics.calibration(a, "noncontrol_mean")
    from perturbtools._predictions import write_predictions

    var_only = Predictions.from_arrays(a.var_names, perts, mean_var=np.ones((4, a.n_vars)), de_proba=np.zeros((4, a.n_vars)))  # fmt: skip
    write_predictions(a, var_only, "var_only", {})
    with pytest.raises(KeyError, match=r"`adata.varm\['var_only_mean_var'\]` not found"):  # a variance without a mean
        pt.metrics.calibration(a, "var_only")


def test_probability_calibration_by_hand(relabelled):
    """DE probabilities against the DEG labels on every entry; direction probabilities against up-regulation on DEGs."""
    a = relabelled("lab")
    perts = list(a.uns["lab"]["perturbations"])[:8]
    _with_intervals(a, "m", perts, np.random.default_rng(2))

    def by_hand(y, p, n_bins):
        edges = np.linspace(0, 1, n_bins + 1)
        b = np.minimum((p * n_bins).astype(int), n_bins - 1)
        count = np.bincount(b, minlength=n_bins)
        acc = np.array([y[b == i].mean() if count[i] else np.nan for i in range(n_bins)])
        conf = np.array([p[b == i].mean() if count[i] else np.nan for i in range(n_bins)])
        used = count > 0
        ece = np.sum(count[used] / count.sum() * np.abs(acc[used] - conf[used]))
        return edges, acc, conf, count, ece

    is_de = a.varm["lab_is_de"][perts].to_numpy().T
    up = a.varm["lab_direction"][perts].to_numpy().T > 0
    for subtask, y, p, keep in (
        ("de", is_de, a.varm["m_de_proba"][perts].to_numpy().T, np.ones_like(is_de)),
        ("direction", up, a.varm["m_direction_proba"][perts].to_numpy().T, is_de),
    ):
        for n_bins in (10, 4):
            table = pt.metrics.probability_calibration(a, "m", labels_key="lab", subtask=subtask, n_bins=n_bins) if n_bins != 10 else (
                pt.metrics.probability_calibration(a, "m", labels_key="lab", subtask=subtask))  # fmt: skip
            edges, acc, conf, count, ece = by_hand(y[keep].astype(float), p[keep].astype(np.float64), n_bins)
            np.testing.assert_allclose(table["bin_low"], edges[:-1])
            np.testing.assert_allclose(table["count"], count)
            np.testing.assert_allclose(table["accuracy"], acc)
            np.testing.assert_allclose(table["confidence"], conf)
            assert table.attrs["ece"] == pytest.approx(ece) and table.attrs["n_entries"] == keep.sum()
    one = pt.metrics.probability_calibration(a, "m", labels_key="lab", perturbations=[perts[3]])
    assert one.attrs["n_entries"] == a.n_vars
    assert one.attrs["ece"] == pytest.approx(by_hand(is_de[3].astype(float), a.varm["m_de_proba"][perts[3]].to_numpy(), 10)[-1])  # fmt: skip
    pt.tl.NonControlMean(a, labels_key="lab").fit(perts).predict(perts)
    with pytest.raises(KeyError, match="The predictions under 'noncontrol_mean' have no `de_proba`"):
        pt.metrics.probability_calibration(a, "noncontrol_mean", labels_key="lab")
    with pytest.raises(KeyError, match="have no `direction_proba`"):
        pt.metrics.probability_calibration(a, "noncontrol_mean", labels_key="lab", subtask="direction")


def test_compare_models_defaults_by_hand():
    """Defaults (2,000 paired resamples, 10,000 sign flips, seed 0), the means over pairs, columns and one-sided NaNs."""
    rng = np.random.default_rng(5)
    perts = [f"p{i:02d}" for i in range(12)]  # sorted, as the paired values are (by perturbation)
    a = pd.DataFrame({"model": "a", "perturbation": perts, "rank": rng.random(12), "mae_de": rng.random(12)})
    b = a.assign(model="b", rank=a["rank"] + rng.normal(scale=0.2, size=12), mae_de=np.nan)
    a.loc[2, "rank"] = np.nan  # left out of the pairs: the means are over the pairs, not over each model's rows
    table = pt.metrics.compare_models(pd.concat([a, b]), "a", "b")
    assert list(table.index) == ["mae_de", "rank"] and table.index.name == "metric"  # KEY_METRICS order
    assert list(table.columns) == ["mean_a", "mean_b", "mean_difference", "ci_low", "ci_high", "permutation_p",
                                   "holm_p", "n"]  # fmt: skip
    keep = a["rank"].notna().to_numpy()
    ra, rb = a["rank"].to_numpy()[keep], b["rank"].to_numpy()[keep]
    d = ra - rb
    row = table.loc["rank"]
    assert (row["mean_a"], row["mean_b"], row["n"]) == pytest.approx((ra.mean(), rb.mean(), 11))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(_percentile_bootstrap(d, 2000))
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(10000, d.size))
    p = (1 + np.sum(np.abs((signs * d).mean(axis=1)) >= abs(d.mean()) - 1e-12)) / 10001
    assert row["permutation_p"] == pytest.approx(p) and row["holm_p"] == pytest.approx(p)  # the only p-value
    assert table.loc["mae_de", ["mean_a", "mean_b", "mean_difference", "permutation_p"]].isna().all()
    assert table.loc["mae_de", "n"] == 0
    seeded = pt.metrics.compare_models(pd.concat([a, b]), "a", "b", metrics=["rank"], n_perm=500, n_boot=300,
                                       level=0.8, rng=7)  # fmt: skip
    assert list(seeded.index) == ["rank"]
    assert (seeded.loc["rank", "ci_low"], seeded.loc["rank", "ci_high"]) == pytest.approx(
        _percentile_bootstrap(d, 300, seed=7, level=0.8)
    )
    signs = np.random.default_rng(7).choice([-1.0, 1.0], size=(500, d.size))
    p = (1 + np.sum(np.abs((signs * d).mean(axis=1)) >= abs(d.mean()) - 1e-12)) / 501
    assert seeded.loc["rank", "permutation_p"] == pytest.approx(p)


def _deseq2_labels(n_perts=6, n_genes=40, rng=0):
    """Label-only data (no cells) from a DESeq2-style table: DE, direction and fold change per (contrast, gene)."""
    gen = np.random.default_rng(rng)
    perts, genes = [f"P{i}" for i in range(n_perts)], [f"g{j:02d}" for j in range(n_genes)]
    lfc = gen.normal(scale=1.5, size=(n_perts, n_genes))
    padj = np.where(gen.random((n_perts, n_genes)) < 0.35, 1e-4, 0.5)
    table = pd.DataFrame({
        "contrast": np.repeat(perts, n_genes), "gene": np.tile(genes, n_perts), "log2FoldChange": lfc.ravel(),
        "stat": (lfc * 3).ravel(), "pvalue": padj.ravel() / 10, "padj": padj.ravel(),
    })  # fmt: skip
    return pt.pp.labels_from_de_table(table, pval_cutoff=0.01)


def test_label_only_evaluation_by_hand():
    """On label-only data every subtask metric is recomputed with sklearn / numpy, per perturbation and pooled."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    lab = _deseq2_labels()
    data = LabelledData.from_adata(lab)
    perts = list(data.perturbations)
    gen = np.random.default_rng(1)
    shape = data.is_de.shape
    de, up, logfc = gen.random(shape), gen.random(shape), gen.normal(size=shape)
    preds = Predictions.from_arrays(data.var_names, perts, de_proba=de, direction_proba=up, logfc=logfc)
    de, up, logfc = (np.asarray(x, dtype=np.float32).astype(np.float64) for x in (de, up, logfc))
    y, pos = data.is_de, data.direction > 0
    fc = 2.0**logfc
    per, pooled = pt.metrics.evaluate_predictions(preds, data, train=[*perts[:2], "P9"], min_positives=1)
    for i, p in enumerate(perts):
        d = y[i]
        row = per.loc[p]
        assert row["roc_auc_de"] == pytest.approx(roc_auc_score(y[i], de[i]))
        assert row["pr_auc_de"] == pytest.approx(average_precision_score(y[i], de[i]))
        assert row["roc_auc_direction"] == pytest.approx(roc_auc_score(pos[i][d], up[i][d]))
        assert row["pr_auc_direction"] == pytest.approx(average_precision_score(pos[i][d], up[i][d]))
        assert row["pearson_fc"] == pytest.approx(np.corrcoef(fc[i][d], data.fc[i][d])[0, 1], rel=1e-12)
        assert row["mse_fc"] == pytest.approx(np.mean((data.fc[i][d] - fc[i][d]) ** 2), rel=1e-12)  # in float64
        assert row["n_de"] == d.sum()
    assert per.index.name == "perturbation"
    assert per.attrs["score_sources"] == pooled.attrs["score_sources"] == {
        "de_score": "predicted de_proba", "direction_score": "predicted direction_proba", "fc": "2 ** predicted logfc",
    }  # fmt: skip
    assert list(per["unseen"]) == ["0/1 unseen"] * 2 + ["1/1 unseen"] * 4
    assert len(pooled) == 1
    row = pooled.iloc[0]
    assert (row["stratum"], row["mask"], row["n_perturbations"], row["n_entries"]) == ("all", "all", 6, y.size)
    assert row["roc_auc_de"] == pytest.approx(roc_auc_score(y.ravel(), de.ravel()))
    assert row["roc_auc_direction"] == pytest.approx(roc_auc_score(pos[y], up[y]))
    assert row["pr_auc_direction"] == pytest.approx(average_precision_score(pos[y], up[y]))
    assert row["mse_fc"] == pytest.approx(np.mean((data.fc[y] - fc[y]) ** 2), rel=1e-12)
    assert row["pearson_fc"] == pytest.approx(np.corrcoef(fc[y], data.fc[y])[0, 1])
    assert (row["n_de"], row["n_up"], row["n_down"]) == (y.sum(), (y & pos).sum(), (y & ~pos).sum())
    assert (
        per.attrs["undefined"] == pooled.attrs["undefined"] == {"expression metrics": "label-only data have no cells"}
    )
    no_train, _ = pt.metrics.evaluate_predictions(preds, data)
    assert (no_train["unseen"] == "n/a").all()

    only_de = Predictions.from_arrays(data.var_names, perts, de_proba=de)  # direction and FC undefined: left out
    per_de, pooled_de = pt.metrics.evaluate_predictions(only_de, data)
    assert [c for c in per_de.columns if c not in ("n_de", "unseen")] == ["roc_auc_de", "pr_auc_de"]
    assert {"roc_auc_de", "pr_auc_de", "n_entries", "n_de"} <= set(pooled_de.columns)
    assert not any(c.endswith(("direction", "fc")) for c in pooled_de.columns)
    assert per_de.attrs["undefined"] == {
        "*_direction": "no such labels on label-only data", "*_fc": "no such labels on label-only data",
        "expression metrics": "label-only data have no cells",
    }  # fmt: skip
    np.testing.assert_allclose(per_de["roc_auc_de"], per["roc_auc_de"])
    assert per_de.attrs["score_sources"] == {"de_score": "predicted de_proba"}
    with pytest.raises(ValueError, match="Label-only data \\(no cells\\) can score DE probabilities only"):
        pt.metrics.evaluate_predictions(Predictions.from_arrays(data.var_names, perts, direction_proba=up), data)


def test_label_only_minimums_per_row_and_pooled():
    """Each row and the pooled entries are judged on their own counts: 5 DEGs (3 up, 2 down) and 1 non-DEG per
    perturbation, so 10 DEGs (6 up, 4 down) and 2 non-DEGs pooled."""
    table = pd.DataFrame({
        "contrast": np.repeat(["A", "B"], 6), "gene": [f"g{j}" for j in range(6)] * 2,
        "log2FoldChange": [1.0, -1, 2, -2, 1.5, 0.3] * 2, "stat": [3.0] * 12,
        "pvalue": [1e-5] * 5 + [0.5] + [1e-5] * 5 + [0.5], "padj": [1e-4] * 5 + [0.9] + [1e-4] * 5 + [0.9],
    })  # fmt: skip
    data = LabelledData.from_adata(pt.pp.labels_from_de_table(table, pval_cutoff=0.01))
    gen = np.random.default_rng(0)
    preds = Predictions.from_arrays(data.var_names, ["A", "B"], de_proba=gen.random((2, 6)),
                                    direction_proba=gen.random((2, 6)), logfc=gen.normal(size=(2, 6)))  # fmt: skip
    per, pooled = pt.metrics.evaluate_predictions(preds, data, min_positives=2)
    assert per[["roc_auc_de", "pr_auc_de"]].isna().all().all()  # 1 non-DEG per row
    assert np.isfinite(pooled.loc[0, "roc_auc_de"])  # 2 non-DEGs pooled: enough at min_positives=2
    assert per[["roc_auc_direction", "pearson_fc"]].notna().all().all()  # 2 down-regulated: enough
    per, pooled = pt.metrics.evaluate_predictions(preds, data, min_positives=3)
    assert np.isnan(pooled.loc[0, "roc_auc_de"]) and np.isnan(pooled.loc[0, "pr_auc_de"])
    assert per[["roc_auc_direction", "pr_auc_direction"]].isna().all().all()  # 2 down per row
    assert np.isfinite(pooled.loc[0, "roc_auc_direction"])  # 4 down pooled
    assert per["pearson_fc"].notna().all()  # 5 DEGs per row


def test_fc_metrics_from_two_degs_and_from_none():
    """Two DEGs give a Pearson FC of +-1 when the caller allows it (min_positives=1); no DEG gives undefined FC
    metrics without a warning."""
    table = pd.DataFrame({
        "contrast": ["A"] * 4 + ["B"] * 4, "gene": ["g0", "g1", "g2", "g3"] * 2,
        "log2FoldChange": [1.0, 2.0, 0.1, 0.2, 0.1, 0.2, 0.3, 0.4], "stat": [3.0] * 8,
        "pvalue": [1e-5, 1e-5, 0.5, 0.5] + [0.5] * 4, "padj": [1e-4, 1e-4, 0.9, 0.9] + [0.9] * 4,
    })  # fmt: skip
    data = LabelledData.from_adata(pt.pp.labels_from_de_table(table, pval_cutoff=0.01))
    logfc = np.array([[3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # A: predicted FCs fall where the true ones rise
    preds = Predictions.from_arrays(data.var_names, ["A", "B"], de_proba=np.full((2, 4), 0.5), logfc=logfc)
    per, pooled = pt.metrics.evaluate_predictions(preds, data, min_positives=1)
    assert per.loc["A", "pearson_fc"] == pytest.approx(-1.0)
    assert pooled.loc[0, "pearson_fc"] == pytest.approx(-1.0)  # the same two DEGs pooled
    assert per.loc["A", "mse_fc"] == pytest.approx(((2 - 8) ** 2 + (4 - 2) ** 2) / 2)  # true FCs 2, 4; predicted 8, 2
    assert np.isnan(per.loc["B", "pearson_fc"]) and np.isnan(per.loc["B", "mse_fc"])
    only_b, pooled_b = pt.metrics.evaluate_predictions(preds, data, ["B"], min_positives=0)  # no DEG at all
    assert np.isnan(pooled_b.loc[0, "pearson_fc"]) and np.isnan(pooled_b.loc[0, "mse_fc"])
    assert np.isnan(only_b.loc["B", "mse_fc"])


def test_de_overlap_metrics_need_degs_in_the_row(labelled_adata):
    """The DE-overlap metrics of a perturbation with fewer DEGs than min_positives are undefined; the others stay."""
    data = LabelledData.from_adata(labelled_adata)
    preds = Predictions.from_arrays(data.var_names, data.perturbations, mean=data.mean + 0.1)
    n_de = data.is_de.sum(axis=1)
    cut = int(np.median(n_de))
    per, _ = pt.metrics.evaluate_predictions(preds, data, min_positives=cut)
    few = n_de < cut
    assert few.any() and (~few).any()
    assert per.loc[few, "overlap_at_20"].isna().all() and per.loc[few, "de_spearman_lfc"].isna().all()
    assert per.loc[~few, "overlap_at_20"].notna().all()
    with pytest.raises(ValueError, match="None of the predicted perturbations has labels to score against"):
        pt.metrics.evaluate_predictions(preds, data, ["not_labelled"])


def test_a_de_probability_model_on_data_with_cells_is_scored_on_the_subtasks(labelled_adata):
    """A model with DE (and direction) probabilities only gets subtask metrics on data with cells, and says why the
    expression metrics are missing."""
    from sklearn.metrics import roc_auc_score

    data = LabelledData.from_adata(labelled_adata)
    perts = list(data.perturbations)
    gen = np.random.default_rng(2)
    de, up = gen.random(data.is_de.shape), gen.random(data.is_de.shape)
    preds = Predictions.from_arrays(data.var_names, perts, de_proba=de, direction_proba=up)
    per, pooled = pt.metrics.evaluate_predictions(preds, data, min_positives=1)
    assert "pearson_delta" not in per and "roc_auc_direction" in per and "pearson_fc" not in per
    assert per.attrs["undefined"] == {
        "*_fc": "no such labels on label-only data",
        "expression metrics": "the predictions have no mean or fold change (a DE-probability model)",
    }  # fmt: skip
    y, pos = data.is_de, data.direction > 0
    up32 = up.astype(np.float32).astype(np.float64)
    i = int(np.argmax([min((y[k] & pos[k]).sum(), (y[k] & ~pos[k]).sum()) for k in range(len(perts))]))
    assert per.iloc[i]["roc_auc_direction"] == pytest.approx(roc_auc_score(pos[i][y[i]], up32[i][y[i]]))
    assert pooled.loc[0, "n_up"] == (y & pos).sum()


def test_undefined_reasons_per_metric_family():
    """The reason a metric can be undefined, for per-perturbation, pooled and top-40 names alike."""
    de = "fewer than `min_positives` DEGs (or non-DEGs) among the scored entries"
    direction = "fewer than `min_positives` up- or down-regulated DEGs"
    want = {
        "roc_auc_de": de, "pooled_pr_auc_de_top40": de, "roc_auc_direction_top40": direction,
        "pooled_pr_auc_direction": direction,
        "pearson_fc": "fewer than `min_positives` DEGs, or a constant predicted or true FC (no correlation to measure)",
        "pooled_pearson_fc_top40": "fewer than `min_positives` DEGs, or a constant predicted or true FC (no correlation to measure)",
        "mse_fc": "fewer than `min_positives` DEGs", "pooled_mse_fc": "fewer than `min_positives` DEGs",
        "overlap_at_20": "fewer than `min_positives` DEGs", "de_spearman_lfc": "fewer than `min_positives` DEGs",
        "rank": "fewer than 2 predictions to rank among",
        "pearson_delta": "a constant prediction or truth (no correlation to measure, e.g. the control mean), or < 2 genes",
        "pearson_de_delta": "a constant prediction or truth (no correlation to measure, e.g. the control mean), or < 2 genes",
        "r2_top50": "a constant truth or fewer than 2 genes in the mask",
        "mae_de": "not computable for these rows", "energy_distance": "not computable for these rows",
    }  # fmt: skip
    assert {m: pt.metrics.undefined_reason(m) for m in want} == want


def test_evaluate_reads_its_options_and_the_recorded_training_set(relabelled):
    """`evaluate` passes labels_key, perturbations and min_positives through, stratifies by the recorded training
    perturbations (none recorded: 'n/a') and stores both tables with inplace=True."""
    a = relabelled("lab")
    data = LabelledData.from_adata(a, "lab")
    singles = [p for p in data.perturbations if "+" not in p]
    pt.tl.Additive(a, labels_key="lab").fit(singles).predict(data.perturbations)
    from perturbtools._predictions import read_predictions

    want_per, want_pooled = pt.metrics.evaluate_predictions(
        read_predictions(a, "additive"), data, data.perturbations[2:], train=singles, min_positives=2
    )
    per, pooled = pt.metrics.evaluate(a, "additive", labels_key="lab", perturbations=data.perturbations[2:], min_positives=2)  # fmt: skip
    pd.testing.assert_frame_equal(per, want_per)
    pd.testing.assert_frame_equal(pooled, want_pooled)
    assert pt.metrics.evaluate(a, "additive", labels_key="lab", inplace=True) is None
    pd.testing.assert_frame_equal(a.uns["additive"]["pooled_metrics"], pt.metrics.evaluate(a, "additive", labels_key="lab")[1])  # fmt: skip
    del a.uns["additive"]  # predictions without their record: nothing to stratify by
    per, _ = pt.metrics.evaluate(a, "additive", labels_key="lab")
    assert (per["unseen"] == "n/a").all()


def test_summarize_defaults_by_hand():
    """Default: 95% percentile bootstrap over rows, 2,000 resamples, seed 0; `by` as a string or a list; t-intervals."""
    from scipy import stats

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"model": ["a"] * 6 + ["b"] * 6, "fold": [0, 1, 2] * 4, "x": rng.random(12)})
    x = df["x"].to_numpy()
    s = pt.metrics.summarize(df)
    assert list(s["metric"]) == ["x"] and s.attrs["ci"] == "95% percentile bootstrap over rows"
    assert (s.loc[0, "ci_low"], s.loc[0, "ci_high"]) == pytest.approx(_percentile_bootstrap(x, 2000))
    by_str, by_list = pt.metrics.summarize(df, by="model"), pt.metrics.summarize(df, by=["model"])
    pd.testing.assert_frame_equal(by_str, by_list)
    row = by_str.set_index("model").loc["b"]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(_percentile_bootstrap(x[6:], 2000))
    t = pt.metrics.summarize(df, by="model", ci="t", level=0.9).set_index("model").loc["a"]
    half = stats.t.ppf(0.95, 5) * x[:6].std(ddof=1) / np.sqrt(6)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((x[:6].mean() - half, x[:6].mean() + half))


def test_label_only_strata_use_the_labels_control_and_delimiter():
    """Unseen-target strata of label-only data read the labels' own delimiter and control label."""
    sets = {"A": ["g1"], "B": ["g2"], "A_B": ["g1", "g3"], "C_scramble": ["g4"], "A_C": ["g2", "g4"]}
    lab = pt.pp.labels_from_de_table(
        sets, genes=[f"g{j}" for j in range(6)], direction="up", delimiter="_", control="scramble"
    )
    data = LabelledData.from_adata(lab)
    perts = list(data.perturbations)
    preds = Predictions.from_arrays(data.var_names, perts, de_proba=np.random.default_rng(0).random((len(perts), 6)))
    per, _ = pt.metrics.evaluate_predictions(preds, data, train=["A", "B"], min_positives=1)
    assert per["unseen"].to_dict() == {"A": "0/1 unseen", "B": "0/1 unseen", "A_B": "0/2 unseen", "C_scramble": "1/1 unseen",
                                       "A_C": "1/2 unseen"}  # fmt: skip


def test_scores_derived_from_what_a_model_predicts(relabelled):
    """prediction_scores by hand: the mean implied by a predicted FC (weighted by de_proba), the FC of a predicted
    mean at the labels' own offset, predicted scores used as given, and where each came from."""
    from perturbtools.metrics._evaluate import prediction_scores

    a = relabelled("lab")
    pt.pp.deg_labels(a, modality_key="perturbation_type", key_added="lab", fc_offset=0.5)
    data = LabelledData.from_adata(a, "lab")
    perts = list(data.perturbations)[:5]
    gen = np.random.default_rng(0)
    shape = (len(perts), a.n_vars)
    mean, de, up, logfc = (gen.random(shape) * 2, gen.random(shape), gen.random(shape), gen.normal(size=shape))
    f32 = lambda x: np.asarray(x, dtype=np.float32).astype(np.float64)  # the frames are stored as float32
    mu_c = data.control_mean
    implied = np.log1p(2.0 ** f32(logfc) * (np.expm1(mu_c + 0.5) + 1e-9) - 1e-9) - 0.5  # FC inverted by hand
    for given, want_mean, sources in (
        ({"logfc": logfc}, implied, "mu_c + de_proba * (mean implied by predicted FC - mu_c)"),
        ({"logfc": logfc, "de_proba": de}, mu_c + f32(de) * (implied - mu_c), "mu_c + de_proba * (mean implied by predicted FC - mu_c)"),
        ({"mean": mean}, f32(mean), "predicted"),
    ):  # fmt: skip
        s = prediction_scores(Predictions.from_arrays(data.var_names, perts, **given), data, perts)
        np.testing.assert_allclose(s.mean, want_mean, rtol=1e-10, atol=1e-12)
        assert s.sources["mean"] == sources
    s = prediction_scores(Predictions.from_arrays(data.var_names, perts, mean=mean), data, perts)
    np.testing.assert_allclose(s.de_score, np.abs(f32(mean) - mu_c), rtol=1e-12)
    np.testing.assert_allclose(s.direction_score, f32(mean) - mu_c, rtol=1e-12)
    want_fc = (np.expm1(np.maximum(f32(mean), 0) + 0.5) + 1e-9) / (np.expm1(mu_c + 0.5) + 1e-9)
    np.testing.assert_allclose(s.fc, want_fc, rtol=1e-12)
    assert s.sources == {"mean": "predicted", "de_score": "|predicted mean - control mean|",
                         "direction_score": "predicted mean - control mean", "fc": "fold change of predicted mean"}  # fmt: skip
    full = prediction_scores(
        Predictions.from_arrays(data.var_names, perts, mean=mean, de_proba=de, direction_proba=up, logfc=logfc), data, perts
    )  # fmt: skip
    np.testing.assert_allclose(full.de_score, f32(de), rtol=1e-12)
    np.testing.assert_allclose(full.direction_score, f32(up), rtol=1e-12)
    np.testing.assert_allclose(full.fc, 2.0 ** f32(logfc), rtol=1e-12)
    assert full.sources == {"mean": "predicted", "de_score": "predicted de_proba",
                            "direction_score": "predicted direction_proba", "fc": "2 ** predicted logfc"}  # fmt: skip
    with pytest.raises(ValueError, match="Predictions need at least a `mean` or a `logfc` frame"):
        prediction_scores(Predictions.from_arrays(data.var_names, perts, de_proba=de), data, perts)


def test_de_overlap_direction_and_ties_at_evaluate_level(labelled_adata):
    """The direction of a model with direction_proba is the sign of proba - 1/2; tied DE scores are ranked stably
    (first gene first); a predicted FC of 0 (log FC -inf) is left out of the LFC Spearman without a warning."""
    from scipy import stats

    data = LabelledData.from_adata(labelled_adata)
    perts = list(data.perturbations)
    gen = np.random.default_rng(1)
    shape = data.is_de.shape
    de = np.round(gen.random(shape), 1)  # many ties
    up = gen.random(shape)
    logfc = gen.normal(size=shape)
    logfc[:, :3] = -np.inf
    mean = data.control_mean + gen.normal(size=shape)
    preds = Predictions.from_arrays(data.var_names, perts, mean=mean, de_proba=de, direction_proba=up, logfc=logfc)
    per, _ = pt.metrics.evaluate_predictions(preds, data, min_positives=1)
    de32, up32 = de.astype(np.float32).astype(np.float64), up.astype(np.float32).astype(np.float64)
    for i, p in enumerate(perts):
        d = data.direction[i]
        if not (d != 0).any():
            continue
        assert per.loc[p, "de_direction_match"] == pytest.approx(np.mean(np.sign(up32[i] - 0.5)[d != 0] == d[d != 0]))
        n_de = int(data.is_de[i].sum())
        true_top = set(np.argsort(-np.abs(data.scores[i]), kind="stable")[:20]) & set(np.flatnonzero(data.is_de[i]))
        pred_top = set(np.argsort(-de32[i], kind="stable")[:20])  # stable: ties keep gene order
        assert per.loc[p, "precision_at_20"] == pytest.approx(len(pred_top & set(np.flatnonzero(data.is_de[i]))) / 20)
        if n_de >= 3 and len(true_top):
            keep = data.is_de[i] & np.isfinite(logfc[i])
            if keep.sum() >= 3:
                want = stats.spearmanr(np.log2(data.fc[i][keep]), logfc[i][keep].astype(np.float32)).statistic
                assert per.loc[p, "de_spearman_lfc"] == pytest.approx(want, rel=1e-6)


def test_summarize_groups_notes_and_options(monkeypatch):
    """Groups sorted and only those observed; each option reaches the bootstrap; the note says what is undefined."""
    from perturbtools.metrics import _evaluate

    model = pd.Categorical(["b", "b", "a", "a", "a"], categories=["c", "b", "a"])
    df = pd.DataFrame({"model": model, "x": [1.0, np.nan, 2.0, np.nan, np.nan], "y": [1.0, 2.0, 3.0, 4.0, 5.0]})
    s = pt.metrics.summarize(df, by="model", n_boot=50)
    assert list(s["model"]) == ["b", "b", "a", "a"]  # category order, unused "c" left out
    notes = s.set_index(["model", "metric"])["note"]
    reason = pt.metrics.undefined_reason("x")
    assert notes[("b", "x")] == f"1 of 2 rows undefined ({reason}); one defined row: no interval"
    assert notes[("a", "x")] == f"2 of 3 rows undefined ({reason}); one defined row: no interval"
    assert notes[("a", "y")] == ""
    none = pt.metrics.summarize(df.assign(x=np.nan), n_boot=50).set_index("metric")
    assert none.loc["x", "note"] == f"undefined: {reason} in all 5 rows"
    unsorted = pd.DataFrame({"model": ["b", "a", "b", "a"], "y": [1.0, 2.0, 3.0, 4.0]})
    assert list(pt.metrics.summarize(unsorted, by="model", n_boot=20)["model"]) == ["a", "b"]
    t = pt.metrics.summarize(unsorted, ci="t", level=0.9)
    assert t.attrs["ci"] == "90% t-interval over rows"
    calls = []
    real = _evaluate.bootstrap_ci
    monkeypatch.setattr(_evaluate, "bootstrap_ci", lambda v, **kw: calls.append(kw) or real(v, **kw))
    pt.metrics.summarize(unsorted)
    pt.metrics.summarize(unsorted, n_boot=30, level=0.8, rng=5)
    assert calls == [{"n_boot": 2000, "level": 0.95, "rng": 0}, {"n_boot": 30, "level": 0.8, "rng": 5}]


def test_interval_metrics_pass_their_resampling_options(labelled_adata, monkeypatch):
    """Default labels key, 2,000 resamples and seed 0 reach the bootstrap of both coverage metrics; bounds count as
    inside (closed intervals)."""
    from perturbtools._keys import interval_key
    from perturbtools.metrics import _evaluate

    a = labelled_adata.copy()
    perts = list(a.uns["deg"]["perturbations"])[:6]
    _with_intervals(a, "m", perts, np.random.default_rng(3), labels_key="deg")
    calls = []
    real = _evaluate.bootstrap_ci
    monkeypatch.setattr(_evaluate, "bootstrap_ci", lambda v, **kw: calls.append(kw) or real(v, **kw))
    pt.metrics.interval_coverage(a, "m")
    pt.metrics.calibration(a, "m", levels=(0.5,))
    assert calls == [{"n_boot": 2000, "rng": 0}] * 3
    calls.clear()
    pt.metrics.interval_coverage(a, "m", n_boot=40, rng=2)
    pt.metrics.calibration(a, "m", levels=(0.5,), n_boot=40, rng=2)
    assert calls == [{"n_boot": 40, "rng": 2}] * 3
    table = pt.metrics.probability_calibration(a, "m")  # default labels key
    assert table.attrs["n_entries"] == a.n_vars * len(perts)
    truth = a.varm["deg_mean"]
    for bound in ("lower", "upper"):  # zero-width intervals at the truth: every entry inside
        a.varm[interval_key("m", 0.5, bound)] = truth.copy()
    cov = pt.metrics.interval_coverage(a, "m", n_boot=20)
    assert cov.loc[0.5, "coverage"] == 1.0 and cov.loc[0.5, "mean_width"] == 0.0


def test_pooled_strata_counts_and_minimums_by_hand(labelled_adata):
    """Pooled rows per unseen-target stratum, computed on that stratum's perturbations; a stratum holding every
    perturbation repeats the 'all' rows; per-row counts; strata read the labels' control and delimiter; the pooled
    DE metrics need `min_positives` non-DEGs; the top-40 minimums use the top-40 counts."""
    from dataclasses import replace

    from sklearn.metrics import roc_auc_score

    from perturbtools.pp._split import unseen_labels

    data = LabelledData.from_adata(labelled_adata)
    perts = list(data.perturbations)
    gen = np.random.default_rng(4)
    de = gen.random(data.is_de.shape)
    preds = Predictions.from_arrays(data.var_names, perts, mean=data.mean + gen.normal(scale=0.2, size=data.mean.shape),
                                    de_proba=de)  # fmt: skip
    de = de.astype(np.float32).astype(np.float64)
    singles = [p for p in perts if "+" not in p]
    per, pooled = pt.metrics.evaluate_predictions(preds, data, train=singles[:3], min_positives=1)
    assert (
        per.attrs["control"]
        == pooled.attrs["control"]
        == "mean of the real control cells the labels were computed from"
    )
    y = data.is_de
    np.testing.assert_array_equal(per["n_de"], y.sum(axis=1))
    np.testing.assert_array_equal(per["n_up"], (y & (data.direction > 0)).sum(axis=1))
    np.testing.assert_array_equal(per["n_down"], (y & (data.direction < 0)).sum(axis=1))
    strata = unseen_labels(perts, singles[:3], control=data.control, delimiter=data.delimiter).astype(str)
    assert sorted(set(pooled["stratum"])) == sorted({"all", *strata})
    for g in set(strata):
        sel = (strata == g).to_numpy()
        row = pooled[(pooled["stratum"] == g) & (pooled["mask"] == "all")].iloc[0]
        assert row["n_perturbations"] == sel.sum() and row["n_entries"] == y[sel].size
        assert row["roc_auc_de"] == pytest.approx(roc_auc_score(y[sel].ravel(), de[sel].ravel()))
        top = pooled[(pooled["stratum"] == g) & (pooled["mask"] == "top40")].iloc[0]
        assert top["n_entries"] == data.top40[sel].sum()
    _, unseen_all = pt.metrics.evaluate_predictions(preds, data, singles, train=["not_a_gene"], min_positives=1)
    strata_all = set(unseen_all["stratum"]) - {"all"}
    for stratum in strata_all:
        same = unseen_all[unseen_all["stratum"] == stratum].drop(columns="stratum").reset_index(drop=True)
        pd.testing.assert_frame_equal(same, unseen_all[unseen_all["stratum"] == "all"].drop(columns="stratum").reset_index(drop=True))  # fmt: skip
    assert strata_all == {"1/1 unseen"} and len(unseen_all) == 4
    # other delimiter and control: the labels' own, not the defaults
    first = singles[0]
    other = replace(data, delimiter="_", control=first)
    per_other, _ = pt.metrics.evaluate_predictions(preds, other, train=singles[1:2], min_positives=1)
    want = unseen_labels(perts, singles[1:2], control=first, delimiter="_").astype(str)
    assert per_other["unseen"].tolist() == want.tolist() and want[first] == "0/0 unseen"
    # almost every entry a DEG: 2 non-DEGs pooled are too few at min_positives=3
    is_de = np.ones_like(y)
    is_de[0, :2] = False
    _, crowded = pt.metrics.evaluate_predictions(preds, replace(data, is_de=is_de), min_positives=3)
    assert crowded[["roc_auc_de", "pr_auc_de"]].isna().all().all()
    # per-row minimums on the top-40 mask use the top-40 counts; DE-overlap minimums the full counts
    in_top = (y & data.top40).sum(axis=1)
    i = int(np.argmax(y.sum(axis=1) - in_top))
    cut = int(y[i].sum())
    assert in_top[i] < cut
    per_cut, _ = pt.metrics.evaluate_predictions(preds, data, min_positives=cut)
    assert np.isnan(per_cut.iloc[i]["pearson_fc_top40"]) and np.isfinite(per_cut.iloc[i]["pearson_fc"])
    assert np.isfinite(per_cut.iloc[i]["overlap_at_20"])
