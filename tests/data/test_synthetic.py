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
