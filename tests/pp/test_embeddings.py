from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perturbtools as pt


@pytest.fixture
def emb():
    return pd.DataFrame(np.arange(12, dtype=float).reshape(4, 3), index=["A", "B", "C", "NEW"])


def test_perturbation_embedding_mean_and_errors(emb):
    out = pt.pp.perturbation_embedding(emb, ["A", "A+B", "B+ctrl"])
    np.testing.assert_allclose(out[1], emb.loc[["A", "B"]].mean().to_numpy())
    np.testing.assert_allclose(out[2], emb.loc["B"].to_numpy())
    with pytest.raises(KeyError, match="OLD"):
        pt.pp.perturbation_embedding(emb, ["OLD"])
    aliases = pd.DataFrame({"symbol": ["NEW"], "alias": ["OLD"]})
    np.testing.assert_allclose(
        pt.pp.perturbation_embedding(emb, ["OLD"], aliases=aliases)[0], emb.loc["NEW"].to_numpy()
    )
    cover = pt.pp.embedding_coverage(emb, ["A", "OLD", "Z"], aliases=aliases)
    assert cover["covered"].tolist() == [True, True, False]
    assert cover.loc["OLD", "match"] == "NEW"


def test_add_and_get(adata, emb, tmp_path):
    pt.pp.add_gene_embedding(adata, emb, key_added="e")
    pd.testing.assert_frame_equal(pt.pp.get_gene_embedding(adata, "e"), emb.astype(np.float32).rename(columns=str))
    adata.write_h5ad(tmp_path / "x.h5ad")
    with pytest.raises(KeyError, match="add_gene_embedding"):
        pt.pp.get_gene_embedding(adata, "missing")
    bad = emb.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pt.pp.add_gene_embedding(adata, bad)


def test_read_formats(emb, tmp_path):
    emb.to_csv(tmp_path / "e.csv")
    emb.to_csv(tmp_path / "e.tsv.gz", sep="\t")
    np.savez(tmp_path / "e.npz", genes=emb.index.to_numpy(str), embedding=emb.to_numpy())
    for name in ("e.csv", "e.tsv.gz", "e.npz"):
        out = pt.pp.read_gene_embedding(tmp_path / name)
        np.testing.assert_allclose(out.to_numpy(), emb.to_numpy())
    pd.to_pickle(emb.T.to_dict(orient="list"), tmp_path / "e.pkl")
    with pytest.raises(ValueError, match="allow_pickle"):
        pt.pp.read_gene_embedding(tmp_path / "e.pkl")
    np.testing.assert_allclose(
        pt.pp.read_gene_embedding(tmp_path / "e.pkl", allow_pickle=True).to_numpy(), emb.to_numpy()
    )


def test_pca_embedding(labelled_adata):
    out = pt.pp.pca_embedding(labelled_adata, n_components=3)
    assert out.shape == (labelled_adata.n_vars, 3)


@pytest.mark.realdata
def test_go_embedding_real():
    go = pt.pp.go_embedding(n_components=16)
    assert go.shape[1] == 16 and go.shape[0] > 18000
    cover = pt.pp.embedding_coverage(go, ["MAP3K21", "IER5L", "KLF1"])
    assert cover["covered"].tolist() == [True, False, True]
    m = pt.pp.go_matrix(genes=["KLF1", "CEBPA"], drop_evidence=("IEA", "ND", "NAS"))
    assert m.matrix.shape[0] == 2 and m.matrix.sum() > 10


@pytest.mark.realdata
def test_genept_loader_real():
    g = pt.data.genept_subset()
    assert g.shape == (86, 1536)
    assert pt.pp.embedding_coverage(g, ["ctrl"])["covered"].tolist() == [False]
