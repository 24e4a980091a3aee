"""`deg_labels(..., out=path)`: labels written to an h5ad file a block of perturbations at a time."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import perturbtools as pt
from perturbtools._keys import label_keys
from perturbtools.pp import _deg


def test_file_reads_back_as_the_in_memory_labels(adata, tmp_path, monkeypatch):
    """Backed input, blocks of 4 perturbations (3 blocks, the last one short): every table, var and uns as in memory."""
    monkeypatch.setattr(_deg, "STAT_BLOCK", 4)
    want = pt.pp.deg_labels(adata, modality="CRISPRa", copy=True)
    adata.write_h5ad(tmp_path / "screen.h5ad")
    backed = ad.read_h5ad(tmp_path / "screen.h5ad", backed="r")
    out = tmp_path / "labels.h5ad"
    assert pt.pp.deg_labels(backed, modality="CRISPRa", chunk_size=97, out=out, show_progress_bar=False) is None
    assert not any(k.startswith("deg") for k in [*backed.varm, *backed.uns, *backed.var])  # input left unchanged
    got = ad.read_h5ad(out)
    assert got.n_obs == 0
    assert list(got.var_names) == list(adata.var_names)
    keys = label_keys("deg")
    assert len(want.uns["deg"]["perturbations"]) == 9  # 9 perturbations: blocks 0-3, 4-7, 8
    for name in ("mean", "scores", "pvals", "pvals_adj", "fc", "logfc", "is_de", "direction",
                 "top20", "top40", "top50", "large_effect"):  # fmt: skip
        key = getattr(keys, name)
        pd.testing.assert_frame_equal(got.varm[key], want.varm[key], check_exact=True, obj=key)
    np.testing.assert_array_equal(got.var[keys.control_mean], want.var[keys.control_mean])
    for field, value in want.uns["deg"].items():
        if isinstance(value, dict):
            assert got.uns["deg"][field] == value
        else:
            np.testing.assert_array_equal(got.uns["deg"][field], value, err_msg=field)
    np.testing.assert_array_equal(got.uns["deg"]["n_de"], want.varm[keys.is_de].sum(axis=0).to_numpy())
    backed.file.close()


@pytest.mark.parametrize("per_pass", [2, 4])
@pytest.mark.parametrize("to_file", [True, False])
def test_perturbations_per_pass_gives_the_same_labels(adata, tmp_path, monkeypatch, per_pass, to_file):
    """Sums of `per_pass` perturbations (+ control) at a time, one read each: every table and n_de as in one pass."""
    want = pt.pp.deg_labels(adata, modality="CRISPRa", copy=True)
    monkeypatch.setattr(_deg, "STAT_BLOCK", 3)  # blocks of statistics straddle the passes
    reads = []
    group_moments = _deg.group_moments
    monkeypatch.setattr(
        _deg, "group_moments", lambda X, codes, n, **kw: reads.append(n) or group_moments(X, codes, n, **kw)
    )
    adata.write_h5ad(tmp_path / "screen.h5ad")
    backed = ad.read_h5ad(tmp_path / "screen.h5ad", backed="r")
    out = tmp_path / "labels.h5ad"
    kw = {"out": out} if to_file else {"copy": True}
    source = backed if to_file else adata  # a backed AnnData cannot be copied: in memory, streamed in chunks
    got = pt.pp.deg_labels(source, modality="CRISPRa", chunk_size=97, perturbations_per_pass=per_pass,
                           show_progress_bar=False, **kw)  # fmt: skip
    got = ad.read_h5ad(out) if to_file else got
    n_perts = len(want.uns["deg"]["perturbations"])
    assert reads == [min(per_pass, n_perts - lo) + 1 for lo in range(0, n_perts, per_pass)]  # 9 perts: 5 or 3 reads
    keys = label_keys("deg")
    for name in ("mean", "scores", "pvals", "pvals_adj", "fc", "logfc", "is_de", "direction",
                 "top20", "top40", "top50", "large_effect"):  # fmt: skip
        key = getattr(keys, name)
        pd.testing.assert_frame_equal(got.varm[key], want.varm[key], check_exact=True, obj=key)
    np.testing.assert_array_equal(got.var[keys.control_mean], want.var[keys.control_mean])
    np.testing.assert_array_equal(got.uns["deg"]["n_de"], want.uns["deg"]["n_de"])
    backed.file.close()


def test_perturbations_per_pass_bad_values(adata):
    with pytest.raises(ValueError, match="perturbations_per_pass=0"):
        pt.pp.deg_labels(adata, perturbations_per_pass=0, copy=True)
    adata.obs["batch"] = np.repeat(["a", "b"], adata.n_obs // 2)
    with pytest.raises(ValueError, match="does not combine with `batch_key`"):
        pt.pp.deg_labels(adata, perturbations_per_pass=2, batch_key="batch", copy=True)
    assert "deg" not in adata.uns  # nothing written on error


def test_models_fit_on_the_label_file(labelled_adata, tmp_path):
    """The file is a labelled AnnData: a baseline fitted on it predicts what it predicts from the in-memory labels."""
    out = tmp_path / "labels.h5ad"
    pt.pp.deg_labels(labelled_adata, modality_key="perturbation_type", out=out, show_progress_bar=False)
    perts = list(labelled_adata.uns["deg"]["perturbations"])
    want = pt.tl.NonControlMean(labelled_adata).fit(perts[:6]).predict(perts[6:], inplace=False)
    got = pt.tl.NonControlMean(ad.read_h5ad(out)).fit(perts[:6]).predict(perts[6:], inplace=False)
    for field in ("mean", "logfc", "de_proba"):
        if getattr(want, field) is not None:
            pd.testing.assert_frame_equal(getattr(got, field), getattr(want, field), obj=field)
    assert want.mean is not None


def test_failed_write_leaves_no_file(adata, tmp_path, monkeypatch):
    out = tmp_path / "labels.h5ad"

    def fail(self, lo, values):
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr(_deg.LabelFileWriter, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        pt.pp.deg_labels(adata, out=out, show_progress_bar=False)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


def test_bad_out_is_a_clear_error(adata, tmp_path):
    with pytest.raises(ValueError, match=r"ending in '\.h5ad'"):
        pt.pp.deg_labels(adata, out=tmp_path / "labels.zarr")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pt.pp.deg_labels(adata, out=tmp_path / "missing" / "labels.h5ad")
    with pytest.raises(ValueError, match="condition_key"):
        pt.pp.deg_labels(adata, out=tmp_path / "labels.h5ad", condition_key="perturbation_type")
    slash = adata.copy()
    slash.obs["perturbation"] = slash.obs["perturbation"].cat.rename_categories(lambda c: c.replace("+", "/"))
    with pytest.raises(ValueError, match="cannot be h5ad column names"):
        pt.pp.deg_labels(slash, out=tmp_path / "labels.h5ad", delimiter="/")
    assert list(tmp_path.iterdir()) == []


def test_more_than_5000_perturbations_fit_in_the_column_order(tmp_path):
    """Past HDF5's 64 kB attribute limit (6,000 long names): the file still reads back with every column in order."""
    from perturbtools.pp._label_file import LabelFileWriter

    perts = [f"PERTURBATION_{i:05d}+LONG_TARGET_NAME" for i in range(6_000)]
    var = pd.DataFrame({"deg_control_mean": np.float32([1.0, 2.0])}, index=["g1", "g2"])
    writer = LabelFileWriter(tmp_path / "labels.h5ad", var, perts, {"scores": "deg_scores"})
    values = np.arange(12_000, dtype=np.float32).reshape(6_000, 2)
    for lo in range(0, 6_000, 2_500):
        writer.write(lo, {"scores": values[lo : lo + 2_500]})
    writer.close("deg", {"perturbations": perts})
    got = ad.read_h5ad(tmp_path / "labels.h5ad")
    assert list(got.varm["deg_scores"].columns) == perts
    np.testing.assert_array_equal(got.varm["deg_scores"].to_numpy(), values.T)


def test_failed_close_leaves_no_file(adata, tmp_path, monkeypatch):
    """A failure while recording `uns` (after every table is written) drops the unfinished file too."""
    import anndata.io

    def fail(*args, **kwargs):
        msg = "cannot encode uns"
        raise TypeError(msg)

    monkeypatch.setattr(anndata.io, "write_elem", fail)
    with pytest.raises(TypeError, match="cannot encode uns"):
        pt.pp.deg_labels(adata, out=tmp_path / "labels.h5ad", show_progress_bar=False)
    assert list(tmp_path.iterdir()) == []
