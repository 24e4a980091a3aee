from __future__ import annotations

import perturbtools as pt


def test_tidy_frames(labelled_adata):
    df = pt.get.labels_df(labelled_adata)
    n = labelled_adata.n_vars * len(labelled_adata.uns["deg"]["perturbations"])
    assert len(df) == n and {"gene", "perturbation", "is_de", "fc"} <= set(df.columns)
    pt.tl.NonControlMean(labelled_adata).fit().predict()
    assert len(pt.get.predictions_df(labelled_adata, "noncontrol_mean")) == n
