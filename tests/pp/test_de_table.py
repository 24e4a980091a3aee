from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

import perturbtools as pt


def test_scanpy_export_roundtrip(adata):
    import scanpy as sc

    a = adata.copy()
    sc.tl.rank_genes_groups(a, "perturbation", method="t-test", reference="control")
    df = sc.get.rank_genes_groups_df(a, group=None)
    lab = pt.pp.labels_from_de_table(df, pval_cutoff=0.01)
    assert lab.n_obs == 0 and set(lab.var_names) == set(a.var_names)
    assert lab.uns["deg"]["params"]["columns"]["pvals_adj"] == "pvals_adj"
    for p in ["P00", "P01+P02"] if "P01+P02" in df["group"].unique() else [df["group"].iloc[0]]:
        rows = df[df["group"] == p].set_index("names")
        np.testing.assert_array_equal(lab.varm["deg_is_de"].loc[rows.index, p], rows["pvals_adj"] <= 0.01)
        de = rows["pvals_adj"] <= 0.01
        np.testing.assert_array_equal(
            lab.varm["deg_direction"].loc[rows.index[de], p], np.sign(rows["logfoldchanges"][de]).astype(int)
        )
        np.testing.assert_allclose(lab.varm["deg_fc"].loc[rows.index, p], 2.0 ** rows["logfoldchanges"], rtol=1e-5)
        # top-20: the 20 genes with the largest |t| (scanpy's scores)
        top20 = set(rows["scores"].abs().sort_values(ascending=False).index[:20])
        assert set(lab.varm["deg_top20"].index[lab.varm["deg_top20"][p]]) == top20
    # the same DE calls as the package's own t-test labels (both are scanpy's Welch t-test + BH)
    pt.pp.deg_labels(a)
    common = list(a.uns["deg"]["perturbations"])
    pd.testing.assert_frame_equal(
        lab.varm["deg_is_de"].loc[a.var_names, common], a.varm["deg_is_de"][common], check_names=False
    )


def test_deseq2_style_table():
    table = pd.DataFrame({
        "contrast": ["A", "A", "A", "B", "B", "B"],
        "gene": ["g1", "g2", "g3", "g1", "g2", "g3"],
        "baseMean": [10.0, 5, 2, 10, 5, 2],
        "log2FoldChange": [1.5, -2.0, 0.1, -0.5, 3.0, 0.0],
        "lfcSE": [0.2] * 6,
        "stat": [7.5, -10.0, 0.5, -2.5, 15.0, 0.0],
        "pvalue": [1e-8, 1e-12, 0.6, 0.01, 1e-20, 1.0],
        "padj": [1e-7, 1e-11, 0.7, 0.02, 1e-19, 1.0],
    })  # fmt: skip
    lab = pt.pp.labels_from_de_table(table, pval_cutoff=0.01)
    assert list(lab.uns["deg"]["perturbations"]) == ["A", "B"]
    assert lab.varm["deg_is_de"]["A"].tolist() == [True, True, False]
    assert lab.varm["deg_is_de"]["B"].tolist() == [False, True, False]  # padj 0.02 > 0.01 is not a DEG
    assert lab.varm["deg_direction"]["A"].tolist() == [1, -1, 0]
    np.testing.assert_allclose(lab.varm["deg_fc"]["B"], [2**-0.5, 8.0, 1.0])
    np.testing.assert_allclose(lab.varm["deg_scores"]["A"], [7.5, -10.0, 0.5])
    assert lab.uns["deg"]["subtasks"] == {"expression": False, "de": True, "direction": True, "fc": True}
    assert np.isnan(lab.varm["deg_mean"].to_numpy()).all()  # no cells: means are missing, not invented
    data = pt.tl.LabelledData.from_adata(lab)
    assert data.label_only and data.is_de.sum() == 3


def test_gene_sets_leave_direction_and_fc_undefined(caplog):
    sets = {"A": ["g3", "g1"], "B": ["g2"], "A+B": ["g1", "g2", "g4"]}
    lab = pt.pp.labels_from_de_table(sets, genes=["g1", "g2", "g3", "g4", "g5"], direction="up")
    assert lab.varm["deg_is_de"]["A"].tolist() == [True, False, True, False, False]
    sub = lab.uns["deg"]["subtasks"]
    assert not sub["direction"] and not sub["fc"] and sub["de"]
    assert np.isnan(lab.varm["deg_fc"].to_numpy()).all()
    # scores: minus the rank (g3 first), unlisted genes below every listed one
    s = lab.varm["deg_scores"]["A"]
    assert s["g3"] > s["g1"] > s["g2"] == s["g4"] == s["g5"]
    assert list(lab.uns["deg"]["n_de"]) == [2, 1, 3]
    with caplog.at_level("WARNING"):
        pt.pp.labels_from_de_table({"A": ["g1", "zzz"]}, genes=["g1", "g2"])
    assert "outside `genes`" in caplog.text


def test_bad_tables():
    with pytest.raises(KeyError, match="perturbation and a gene column"):
        pt.pp.labels_from_de_table(pd.DataFrame({"x": [1], "y": [2]}))
    with pytest.raises(ValueError, match="twice"):
        pt.pp.labels_from_de_table(pd.DataFrame({"perturbation": ["A", "A"], "gene": ["g", "g"]}))
    with pytest.raises(KeyError, match="no adjusted p-value"):
        pt.pp.labels_from_de_table(pd.DataFrame({"perturbation": ["A"], "gene": ["g"]}), significant="pvals_adj")
    with pytest.raises(KeyError, match="'padj_x'"):
        pt.pp.labels_from_de_table(pd.DataFrame({"perturbation": ["A"], "gene": ["g"]}), pvals_adj_col="padj_x")


@pytest.mark.realdata
def test_replogle_degsets_loader(tmp_path):
    k562, rpe1 = pt.data.replogle2022_degsets()
    assert list(k562.var_names) == list(rpe1.var_names) and k562.n_vars == 7225
    raw = json.load(gzip.open(pt.data.fetch("replogle2022_degsets"), "rt"))
    kds = sorted(raw["k562"])
    assert list(k562.uns["deg"]["perturbations"]) == kds and len(kds) == 351
    for kd in kds[:5]:
        assert set(rpe1.varm["deg_is_de"].index[rpe1.varm["deg_is_de"][kd]]) == set(raw["rpe1"][kd]["up"])
        scores = k562.varm["deg_scores"][kd]
        assert list(scores.sort_values(ascending=False).index[:50]) == raw["k562"][kd]["up_full"][:50]
    assert k562.uns["deg"]["subtasks"]["direction"] is False
    # any file of the same format
    small = {line: {kd: raw[line][kd] for kd in kds[:3]} for line in ("k562", "rpe1")}
    path = tmp_path / "small.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(small, fh)
    a, b = pt.data.replogle2022_degsets(path)
    assert list(a.uns["deg"]["perturbations"]) == kds[:3] and list(a.var_names) == list(b.var_names)
    k562.write_h5ad(tmp_path / "k.h5ad")  # label-only data survive h5ad


def test_direction_of_a_deg_with_zero_or_missing_log_fold_change():
    """A DEG with log2 FC exactly 0 goes up (FC >= 1, as ``deg_labels`` calls it), not nowhere; a DEG whose log2 FC
    is missing has an unknown direction (0), and a gene that is not a DEG has none."""
    table = pd.DataFrame({
        "group": ["A"] * 5,
        "names": ["g1", "g2", "g3", "g4", "g5"],
        "logfoldchanges": [0.0, -0.3, np.nan, 2.0, 0.0],
        "pvals_adj": [1e-4, 1e-4, 1e-4, 1e-4, 0.5],
    })  # fmt: skip
    lab = pt.pp.labels_from_de_table(table, pval_cutoff=0.01)
    assert lab.varm["deg_is_de"]["A"].tolist() == [True, True, True, True, False]
    assert lab.varm["deg_direction"]["A"].tolist() == [1, -1, 0, 1, 0]
