from __future__ import annotations

import numpy as np
import pytest

import perturbtools as pt

pytestmark = pytest.mark.realdata


def test_devel_standardised():
    a = pt.data.perturbench_devel()
    assert a.shape == (5961, 500)
    assert "control" in a.obs["perturbation"].cat.categories
    k = pt.data.norman2019_subset()
    assert set(k.obs["cell_type"]) == {"k562"}
    assert sum("+" in p for p in k.obs["perturbation"].cat.categories) == 15
    with pytest.raises(ValueError, match="cell_type"):
        pt.data.perturbench_devel("HeLa")


def test_papalexi_counts_and_log():
    a = pt.data.papalexi2021_lowmoi()
    assert a.n_obs == 16192 and a.n_vars == 299
    assert np.allclose(a.layers["counts"].data % 1, 0)
    assert a.X.max() < 15
    assert (a.obs["perturbation"] == "control").sum() == 1923


def test_splits_and_texts():
    s = pt.data.published_splits("norman")
    assert {k: len(v) for k, v in s.items()} == {"train": 139, "val": 31, "test": 107}
    texts = pt.data.gene_summaries()
    assert len(texts) == 1915 and texts["KLF1"].startswith("Gene Symbol KLF1")
