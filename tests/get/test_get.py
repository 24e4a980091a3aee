from __future__ import annotations

import numpy as np

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
