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
