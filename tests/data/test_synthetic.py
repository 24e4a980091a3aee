from __future__ import annotations

import numpy as np
import pytest

import perturbtools as pt


def test_shapes_and_ground_truth():
    a = pt.data.synthetic(n_cells=500, n_genes=40, n_perturbations=5, n_doubles=4, rng=3)
    assert a.shape == (500, 40)
    assert a.obs["perturbation"].nunique() == 1 + 5 + 4
    truth = a.varm["synthetic_effect"]
    assert truth.shape == (40, 9)
    inter = a.uns["synthetic"]["interactions"]
    assert len(inter) == 4 and set(inter["interaction"]) <= set(pt.data.INTERACTIONS)
    counts = a.layers["counts"]
    assert np.allclose(counts.data % 1, 0)
    # reproducible
    b = pt.data.synthetic(n_cells=500, n_genes=40, n_perturbations=5, n_doubles=4, rng=3)
    assert (a.X != b.X).nnz == 0


def test_crispra_raises_target():
    a = pt.data.synthetic(n_cells=800, n_genes=50, n_perturbations=4, modality="CRISPRa", rng=0)
    pt.pp.deg_labels(a)
    for p in a.uns["deg"]["perturbations"]:
        assert a.varm["deg_direction"].loc[p, p] == 1


def test_too_many_perturbations():
    with pytest.raises(ValueError, match="n_genes"):
        pt.data.synthetic(n_genes=5, n_perturbations=6)


def test_write_synthetic_h5ad_streams_a_screen_to_disk(tmp_path):
    """More perturbations than genes, random cell order, log1p(CP10k) rows, knocked-down targets."""
    import anndata as ad
    from scipy import sparse

    path = tmp_path / "screen.h5ad"
    pt.data.write_synthetic_h5ad(path, 3000, 40, 60, chunk_size=700, control_fraction=0.1, library_size=5000, rng=1)
    a = ad.read_h5ad(path)
    assert a.shape == (3000, 40) and sparse.isspmatrix_csr(a.X) and a.X.dtype == np.float32
    counts = a.obs["perturbation"].value_counts()
    assert counts["control"] == 300 and len(counts) == 61 and set(counts.drop("control")) <= {45, 44}
    assert sum(c.startswith("U") for c in counts.index) == 20  # 60 targets, 40 measured genes: 20 unmeasured
    np.testing.assert_allclose(np.expm1(a.X.toarray().astype(np.float64)).sum(axis=1), 1e4, rtol=1e-4)
    assert (a.obs["perturbation"].to_numpy()[:300] != "control").any()  # cells are shuffled, not in blocks
    labels = a.obs["perturbation"].astype(str).to_numpy()
    X = a.X.toarray()
    targets = [g for g in a.var_names if g in counts.index]
    assert len(targets) == 40
    lower = [
        X[labels == g, list(a.var_names).index(g)].mean() < X[labels == "control", list(a.var_names).index(g)].mean()
        for g in targets
    ]
    assert np.mean(lower) > 0.9  # CRISPRi: the target's own expression is x0.1
