from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import perturbtools as pt


def test_spearman_brown():
    assert pt.metrics.spearman_brown(0.5) == pytest.approx(2 * 0.5 / 1.5)
    assert pt.metrics.spearman_brown(0.5, 3) == pytest.approx(1.5 / 2)


def test_noise_ceiling_by_hand(labelled_adata):
    a = labelled_adata
    per, pooled = pt.metrics.noise_ceiling(a, n_repeats=1, rng=0)
    # the documented split: per label (sorted), a random permutation of its cells; the first half is half A
    rng = np.random.default_rng(0)
    labels = a.obs["perturbation"].astype(str).to_numpy()
    first = np.zeros(a.n_obs, bool)
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        first[rng.permutation(idx)[: idx.size // 2]] = True
    X = a.X.toarray().astype(np.float64)
    ctrl_a, ctrl_b = X[first & (labels == "control")].mean(0), X[~first & (labels == "control")].mean(0)
    for p in a.uns["deg"]["perturbations"][:4]:
        d_a = X[first & (labels == p)].mean(0) - ctrl_a
        d_b = X[~first & (labels == p)].mean(0) - ctrl_b
        r = stats.pearsonr(d_a, d_b)[0]
        assert per.loc[p, "pearson_delta"] == pytest.approx(2 * r / (1 + r), rel=1e-4)
        assert per.loc[p, "mse"] == pytest.approx(np.mean((d_a - d_b) ** 2) / 4, rel=1e-4)
    assert set(pooled["stratum"]) == {"all"}
    # a model can be compared with the ceiling: the oracle-like split-half scores higher than the mean baseline
    res = pt.bm.cross_validate(a, {"noncontrol_mean": pt.tl.NonControlMean, "knn": (pt.tl.KNN, {"k": 1})},
                               n_splits=3, show_progress_bar=False)  # fmt: skip
    ceiling = pt.metrics.ceiling_summary(per, pooled)
    out = pt.metrics.normalised_scores(res.summary, ceiling, baseline="noncontrol_mean")
    row = out.set_index(["model", "metric"]).loc[("knn", "pearson_delta")]
    base = res.summary.set_index(["model", "metric"]).loc[("noncontrol_mean", "pearson_delta"), "mean"]
    assert row["ceiling"] == pytest.approx(per["pearson_delta"].mean())
    assert row["normalised"] == pytest.approx((row["mean"] - base) / (row["ceiling"] - base))
    assert (out.loc[out["model"] == "noncontrol_mean", "normalised"].dropna() == 0).all()
    with pytest.raises(KeyError, match="Baseline"):
        pt.metrics.normalised_scores(res.summary, ceiling, baseline="nope")
    assert isinstance(out, pd.DataFrame)
