from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perturbtools as pt


def test_tidy_frames(labelled_adata):
    a = labelled_adata
    df = pt.get.labels_df(a)
    n = a.n_vars * len(a.uns["deg"]["perturbations"])
    assert len(df) == n and {"gene", "perturbation", "is_de", "fc"} <= set(df.columns)
    p, g = a.uns["deg"]["perturbations"][1], a.var_names[5]
    row = df[(df["perturbation"] == p) & (df["gene"] == g)].iloc[0]
    assert row["is_de"] == a.varm["deg_is_de"].loc[g, p] and row["fc"] == a.varm["deg_fc"].loc[g, p]
    assert df["is_de"].sum() == a.varm["deg_is_de"].to_numpy().sum()
    pt.tl.NonControlMean(a).fit().predict()
    preds = pt.get.predictions_df(a, "noncontrol_mean")
    assert len(preds) == n
    wide = preds.pivot(index="gene", columns="perturbation", values="mean").loc[
        a.var_names, a.varm["noncontrol_mean_mean"].columns
    ]
    np.testing.assert_allclose(wide.to_numpy(), a.varm["noncontrol_mean_mean"].to_numpy())


def test_cell_eval_parity(labelled_adata, tmp_path):
    """cell-eval's pearson_delta / mae / mse on the exported data equal the package's values on the same predictions."""
    cell_eval = pytest.importorskip("cell_eval")
    a = labelled_adata
    perts = a.uns["deg"]["perturbations"]
    pt.tl.KNN(a, k=2).fit(perts[:5]).predict(perts[5:])
    real, pred = pt.get.cell_eval_anndata(a, "knn")
    evaluator = cell_eval.MetricsEvaluator(
        pred, real, control_pert="control", pert_col="target", skip_de=True, outdir=str(tmp_path), num_threads=1
    )
    results, _ = evaluator.compute(profile="anndata", write_csv=False)
    theirs = pt.get.read_cell_eval(results)
    ours, _ = pt.metrics.evaluate(a, "knn")
    for metric in pt.get.CELL_EVAL_SAME:
        np.testing.assert_allclose(theirs.loc[ours.index, metric], ours[metric], rtol=1e-6, atol=1e-7)
    assert "cell_eval_discrimination_score_l1" in theirs.columns
    with pytest.raises(ValueError, match="perturbation"):
        pt.get.read_cell_eval(pd.DataFrame({"x": [1]}))
