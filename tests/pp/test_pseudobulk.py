from __future__ import annotations

import numpy as np

import perturbtools as pt


def test_pseudobulk_means(adata):
    pb = pt.pp.pseudobulk(adata)
    p = pb.obs_names[1]
    cells = adata[adata.obs["perturbation"] == p]
    np.testing.assert_allclose(pb[p].X.ravel(), np.asarray(cells.X.mean(axis=0)).ravel(), rtol=1e-6)
    assert pb.obs.loc[p, "n_cells"] == cells.n_obs
    summed = pt.pp.pseudobulk(adata, layer="counts", func="sum")
    np.testing.assert_allclose(summed[p].X.ravel(), np.asarray(cells.layers["counts"].sum(axis=0)).ravel(), rtol=1e-6)


def test_pseudobulk_groupby(adata):
    adata.obs["rep"] = np.where(np.arange(adata.n_obs) % 2, "r1", "r2")
    pb = pt.pp.pseudobulk(adata, groupby=["rep"])
    assert pb.n_obs == 2 * adata.obs["perturbation"].nunique()
    assert pb.obs["n_cells"].sum() == adata.n_obs
