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
    assert row["roc_auc_dir"] == pytest.approx(1.0)
    assert row["pearson_fc"] == pytest.approx(1.0, abs=1e-5)
    assert row["roc_auc_de"] > 0.8
    assert per.attrs["score_sources"]["de_score"] == "|predicted mean - control mean|"


def test_probability_outputs_are_used(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    perfect = Predictions.from_arrays(
        data.var_names, data.perturbations, de_proba=data.is_de.astype(float),
        up_proba=(data.direction > 0).astype(float), logfc=np.log2(data.fc),
    )  # fmt: skip
    _, pooled = pt.metrics.evaluate_predictions(perfect, data)
    row = pooled[(pooled["stratum"] == "all") & (pooled["mask"] == "all")].iloc[0]
    assert row["roc_auc_de"] == pytest.approx(1.0) and row["pr_auc_de"] == pytest.approx(1.0)


def test_stratified_and_inplace(labelled_adata, tmp_path):
    data = LabelledData.from_adata(labelled_adata)
    singles = [p for p in data.perturbations if "+" not in p]
    pt.tl.Additive(labelled_adata).fit(singles).predict(data.perturbations)
    per, pooled = pt.metrics.evaluate(labelled_adata, "additive", inplace=True)
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
