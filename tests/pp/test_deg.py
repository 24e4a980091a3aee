from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse, stats
from statsmodels.stats.multitest import multipletests

import perturbtools as pt
from perturbtools._keys import label_keys
from perturbtools.pp._deg_core import bh_adjust, fold_change, group_moments, welch_t


def _scanpy_frames(adata, perts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(
            adata, "perturbation", method="t-test", reference="control", use_raw=False, n_genes=adata.n_vars
        )
    r = adata.uns["rank_genes_groups"]
    out = {}
    for p in perts:
        df = pd.DataFrame({k: r[k][p] for k in ("names", "scores", "pvals", "pvals_adj", "logfoldchanges")})
        out[p] = df.set_index("names").loc[adata.var_names]
    return out


def _assert_equals_scanpy(adata):
    pt.pp.deg_labels(adata, fc_offset=0.0, min_cells=2)
    perts = list(adata.uns["deg"]["perturbations"])
    ref = _scanpy_frames(adata.copy(), perts)
    keys = label_keys("deg")
    # scanpy squares float32 input in float32; we accumulate in float64 (and match scipy in float64, below)
    rtol = 1e-7 if adata.X.dtype == np.float64 else 1e-4
    for p in perts:
        np.testing.assert_allclose(adata.varm[keys.scores][p], ref[p]["scores"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(adata.varm[keys.pvals][p], ref[p]["pvals"], rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(adata.varm[keys.pvals_adj][p], ref[p]["pvals_adj"], rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(adata.varm[keys.logfc][p], ref[p]["logfoldchanges"], rtol=1e-4, atol=1e-4)
    X = adata.X.toarray() if sparse.issparse(adata.X) else adata.X
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    exact = stats.ttest_ind(
        X[labels == perts[0]].astype(np.float64), X[labels == "control"].astype(np.float64), equal_var=False
    )
    np.testing.assert_allclose(
        adata.varm[keys.pvals][perts[0]], np.nan_to_num(exact.pvalue, nan=1.0), rtol=1e-9, atol=1e-300
    )


def test_equals_scanpy_synthetic_sparse(adata):
    _assert_equals_scanpy(adata)


def test_equals_scanpy_synthetic_dense(adata):
    adata.X = adata.X.toarray()
    _assert_equals_scanpy(adata)


@pytest.mark.realdata
def test_equals_scanpy_real_norman():
    _assert_equals_scanpy(pt.data.norman2019_subset())


@pytest.mark.realdata
def test_equals_scanpy_real_papalexi():
    _assert_equals_scanpy(pt.data.papalexi2021_lowmoi())


def test_core_matches_scipy():
    rng = np.random.default_rng(1)
    X = rng.gamma(1.0, 1.0, (50, 7))
    codes = np.repeat([0, 1, 2], [20, 12, 18])
    m = group_moments(sparse.csr_matrix(X), codes, 3)
    np.testing.assert_allclose(m.mean[1], X[20:32].mean(0))
    np.testing.assert_allclose(m.var[1], X[20:32].var(0, ddof=1))
    t, p = welch_t(m.mean[1:], m.var[1:], m.n[1:, None], m.mean[0], m.var[0], m.n[0])
    ref = stats.ttest_ind(X[20:32], X[:20], equal_var=False)
    np.testing.assert_allclose(t[0], ref.statistic)
    np.testing.assert_allclose(p[0], ref.pvalue)
    pv = rng.random((4, 30)) ** 3
    np.testing.assert_allclose(bh_adjust(pv), np.vstack([multipletests(r, method="fdr_bh")[1] for r in pv]))


def test_labels_follow_spec(adata):
    pt.pp.deg_labels(adata, pval_cutoff=0.01, fc_offset=0.1)
    keys = label_keys("deg")
    is_de, direction, fc = adata.varm[keys.is_de], adata.varm[keys.direction], adata.varm[keys.fc]
    assert (is_de == (adata.varm[keys.pvals_adj] <= 0.01)).all().all()
    assert ((direction != 0) == is_de).all().all()
    assert (direction[is_de & (fc >= 1)] == 1).sum().sum() == (is_de & (fc >= 1)).sum().sum()
    mu_c = adata.var[keys.control_mean].to_numpy()
    p = adata.uns["deg"]["perturbations"][0]
    np.testing.assert_allclose(fc[p], fold_change(adata.varm[keys.mean][p].to_numpy(), mu_c, offset=0.1), rtol=1e-5)
    top40 = adata.varm[keys.top40]
    assert (top40.sum() == 40).all()
    assert (adata.varm[keys.top20].sum() == 20).all()
    scores = adata.varm[keys.scores][p]
    assert set(scores.abs().nlargest(20).index) == set(adata.varm[keys.top20].index[adata.varm[keys.top20][p]])
    assert (adata.varm[keys.large_effect] <= adata.varm[keys.top50]).all().all()
    # the simulator's knocked-down targets must be called DEGs going down
    for target in [q for q in adata.uns["deg"]["perturbations"] if "+" not in q]:
        assert is_de.loc[target, target] and direction.loc[target, target] == -1


def test_keys_dtypes_copy_and_roundtrip(adata, tmp_path):
    before = adata.copy()
    out = pt.pp.deg_labels(adata, copy=True)
    assert set(adata.varm.keys()) == set(before.varm.keys()) and "deg" not in adata.uns
    keys = label_keys("deg")
    assert out.varm[keys.is_de].dtypes.eq(bool).all()
    assert out.varm[keys.direction].dtypes.eq(np.int8).all()
    out.write_h5ad(tmp_path / "x.h5ad")
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    for key in keys:
        if key == keys.control_mean:
            np.testing.assert_array_equal(back.var[key], out.var[key])
            continue
        pd.testing.assert_frame_equal(back.varm[key], out.varm[key])
    np.testing.assert_array_equal(back.uns["deg"]["perturbations"], out.uns["deg"]["perturbations"])
    assert back.uns["deg"]["params"]["fc_offset"] == 0.1


def test_bad_input(adata):
    with pytest.raises(KeyError, match="perturbation_key"):
        pt.pp.deg_labels(adata, "condition")
    with pytest.raises(ValueError, match="control="):
        pt.pp.deg_labels(adata, control="ctrl")
    bad = adata.copy()
    bad.X = bad.X.toarray()
    bad.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pt.pp.deg_labels(bad)
    bad.X[0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        pt.pp.deg_labels(bad)
    with pytest.warns(UserWarning, match="raw counts"):
        pt.pp.deg_labels(adata, layer="counts", copy=True)
    shallow = adata.copy()  # a shallow screen: integer counts below the old `max > 50` rule
    shallow.layers["counts"] = np.minimum(shallow.layers["counts"].toarray(), 20)
    assert shallow.layers["counts"].max() <= 20
    with pytest.warns(UserWarning, match="all sampled non-zero values are integers, up to 20"):
        pt.pp.deg_labels(shallow, layer="counts", copy=True)
    with pytest.raises(KeyError, match="layers"):
        pt.pp.deg_labels(adata, layer="nope")
    dup = adata.copy()
    dup.var_names = ["G"] * dup.n_vars
    with pytest.raises(ValueError, match="var_names_make_unique"):
        pt.pp.deg_labels(dup)
    few = adata[
        ~(
            (adata.obs["perturbation"] == adata.obs["perturbation"].cat.categories[1])
            & (np.arange(adata.n_obs) % 50 != 0)
        )
    ].copy()
    with pytest.warns(UserWarning, match="min_cells"):
        pt.pp.deg_labels(few, min_cells=5)
    with pytest.raises(ValueError, match="modality"):
        pt.pp.deg_labels(adata, modality="CRISPRz", copy=True)


def test_mudata_needs_modality(adata):
    mudata = pytest.importorskip("mudata")
    md = mudata.MuData({"rna": adata})
    with pytest.raises(TypeError, match="rna"):
        pt.pp.deg_labels(md)
    pt.pp.deg_labels(md, mod="rna")
    assert "deg_is_de" in md.mod["rna"].varm


def test_labels_per_condition_against_that_conditions_controls():
    from scipy import stats

    a = pt.data.synthetic(n_cells=800, n_genes=30, n_perturbations=4, rng=5)
    a.obs["condition"] = np.where(np.arange(a.n_obs) % 2 == 0, "stim", "unstim")
    X = a.X.toarray()
    X[(a.obs["condition"] == "stim").to_numpy()] += 0.5  # a condition effect on every cell, controls included
    a.X = X
    pt.pp.deg_labels(a, condition_key="condition")
    assert dict(a.uns["deg"]["conditions"]) == {"stim": "deg_stim", "unstim": "deg_unstim"}
    pert = next(p for p in a.uns["deg_stim"]["perturbations"])
    cond = (a.obs["condition"] == "stim").to_numpy()
    cells = X[cond & (a.obs["perturbation"] == pert).to_numpy()]
    ctrl = X[cond & (a.obs["perturbation"] == "control").to_numpy()]
    t = stats.ttest_ind(cells, ctrl, equal_var=False).statistic
    np.testing.assert_allclose(a.varm["deg_stim_scores"][pert].to_numpy(), np.nan_to_num(t), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.var["deg_stim_control_mean"], ctrl.mean(0), rtol=1e-5)
    with pytest.raises(KeyError, match="per condition"):
        pt.tl.NonControlMean(a)
    pt.tl.NonControlMean(a, labels_key="deg_unstim").fit()


def test_controls_matched_within_batch():
    from scipy import stats

    a = pt.data.synthetic(n_cells=900, n_genes=30, n_perturbations=4, rng=6)
    perts = a.obs["perturbation"].astype(str).to_numpy()
    singles = [p for p in pd.unique(perts) if p != "control"]
    # batch 0: the first two perturbations and half the controls; batch 1: the rest
    ctrl_idx = np.flatnonzero(perts == "control")
    batch = np.where(np.isin(perts, singles[:2]), "w0", "w1").astype(object)
    batch[ctrl_idx[: len(ctrl_idx) // 2]] = "w0"
    a.obs["well"] = batch
    X = a.X.toarray()
    X[(a.obs["well"] == "w0").to_numpy()] += 0.3  # a batch effect
    a.X = X
    pt.pp.deg_labels(a, batch_key="well")
    p = singles[0]
    cells = X[perts == p]
    ctrl = X[(perts == "control") & (batch == "w0")]
    t = np.nan_to_num(stats.ttest_ind(cells, ctrl, equal_var=False).statistic)
    # float32 data; moments recombined from per-batch means and variances
    np.testing.assert_allclose(a.varm["deg_scores"][p].to_numpy(), t, rtol=1e-3, atol=1e-4)
    unmatched = np.nan_to_num(stats.ttest_ind(cells, X[perts == "control"], equal_var=False).statistic)
    assert np.abs(unmatched - t).max() > 0.5  # the batch effect: matching matters here
    matched = dict(zip(a.uns["deg"]["perturbations"], a.uns["deg"]["n_control_cells_matched"], strict=True))
    assert matched[p] == len(ctrl) and matched[singles[2]] == int(((perts == "control") & (batch == "w1")).sum())
    # the expression metrics keep the mean of all controls
    np.testing.assert_allclose(a.var["deg_control_mean"], X[perts == "control"].mean(0), rtol=1e-5)


def test_fold_change_and_masks_by_hand(adata):
    """FC with the default 0.1 offset, direction and the four masks, recomputed here from the cells with scipy."""
    pt.pp.deg_labels(adata)  # defaults: fc_offset=0.1, pval_cutoff=0.01
    X = adata.X.toarray().astype(np.float64)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    ctrl = X[labels == "control"]
    for p in adata.uns["deg"]["perturbations"][:4]:
        cells = X[labels == p]
        fc = (np.expm1(cells.mean(0) + 0.1) + 1e-9) / (np.expm1(ctrl.mean(0) + 0.1) + 1e-9)
        np.testing.assert_allclose(adata.varm["deg_fc"][p], fc, rtol=1e-5)
        t = np.nan_to_num(stats.ttest_ind(cells, ctrl, equal_var=False).statistic)
        padj = multipletests(
            np.nan_to_num(stats.ttest_ind(cells, ctrl, equal_var=False).pvalue, nan=1.0), method="fdr_bh"
        )[1]
        is_de = padj <= 0.01
        np.testing.assert_array_equal(adata.varm["deg_is_de"][p], is_de)
        np.testing.assert_array_equal(adata.varm["deg_direction"][p], np.where(is_de, np.where(fc >= 1, 1, -1), 0))
        genes = adata.var_names.to_numpy()
        order = np.argsort(-t, kind="stable")
        assert set(genes[adata.varm["deg_top20"][p]]) == set(genes[np.argsort(-np.abs(t))[:20]])
        assert set(genes[adata.varm["deg_top40"][p]]) == set(genes[order[:20]]) | set(genes[order[-20:]])
        assert set(genes[adata.varm["deg_top50"][p]]) == set(genes[order[:50]])  # signed t, not |t|
        large = set(genes[order[:50]][np.abs(np.log2(fc[order[:50]])) >= 1])
        assert set(genes[adata.varm["deg_large_effect"][p]]) == large


def test_min_cells_below_two_and_missing_labels_are_errors(adata):
    with pytest.raises(ValueError, match="min_cells>=2"):
        pt.pp.deg_labels(adata, min_cells=1)
    for dtype in (object, "category"):
        bad = adata.copy()
        col = bad.obs["perturbation"].astype(object)
        col.iloc[[3, 7]] = np.nan
        bad.obs["perturbation"] = col.astype(dtype)
        with pytest.raises(ValueError, match=r"2 missing value\(s\).*notna"):
            pt.pp.deg_labels(bad)


def test_mean_from_fold_change_inverts_fold_change_with_the_default_offset():
    from perturbtools.pp._deg_core import mean_from_fold_change

    rng = np.random.default_rng(0)
    mean_c = np.r_[0.0, rng.gamma(1.0, 1.0, 50)]
    mean_p = np.r_[0.0, rng.gamma(1.0, 1.0, 50)]
    fc = (np.expm1(mean_p + 0.1) + 1e-9) / (np.expm1(mean_c + 0.1) + 1e-9)  # STAMP's FC, written out
    np.testing.assert_allclose(mean_from_fold_change(fc, mean_c), mean_p, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fold_change(mean_p, mean_c), fc, rtol=1e-12)


def test_mean_from_fold_change_floors_fold_changes_no_means_have():
    from perturbtools.pp._deg_core import mean_from_fold_change

    got = mean_from_fold_change(np.array([-1.0, 0.0]), np.array([2.0, 0.0]))
    # FC -1 of a control mean 2: fc * (expm1(2.1) + 1e-9) - 1e-9 < -1, floored at -1 + 1e-12
    assert got[0] == pytest.approx(np.log1p(-1 + 1e-12) - 0.1, rel=1e-12)
    assert got[0] == pytest.approx(np.log(1e-12) - 0.1, rel=1e-3)
    assert got[1] == pytest.approx(np.log1p(-1e-9) - 0.1, rel=1e-12)  # FC 0: not floored


def test_streamed_moments_of_empty_groups_value_range_and_progress(monkeypatch, capsys):
    """Streamed group moments: a group without cells, the stored values' range with the implicit zeros, a matrix
    without rows (no value: NaN range), and the named progress bar."""
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((40, 6)) < 0.5, 0.0, rng.uniform(0.1, 0.6, (40, 6)))
    codes = np.repeat([0, 1, -1, 0], 10)
    m = group_moments(sparse.csr_matrix(dense), codes, 3, chunk_size=7)  # group 2 has no cell
    np.testing.assert_array_equal(m.n, [20, 10, 0])
    np.testing.assert_allclose(m.mean[:2], [dense[codes == 0].mean(axis=0), dense[codes == 1].mean(axis=0)])
    assert np.isnan(m.mean[2]).all()
    assert m.value_min == 0.0 and m.value_max == pytest.approx(dense[codes >= 0].max())  # below 1
    empty = group_moments(np.zeros((0, 6)), np.zeros(0, dtype=np.int64), 2, chunk_size=7)
    np.testing.assert_array_equal(empty.n, [0, 0])
    assert np.isnan(empty.value_min) and np.isnan(empty.value_max)
    monkeypatch.setattr(pt.settings, "progress_bar", False)  # the argument overrides the setting
    capsys.readouterr()
    group_moments(sparse.csr_matrix(dense), codes, 3, chunk_size=7, show_progress_bar=True)
    err = capsys.readouterr().err
    assert "reading cells: 100%" in err and "6/6" in err and ("chunk/s" in err or "s/chunk" in err)


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
def test_backed_file_streams_to_the_in_memory_result(adata, tmp_path, fmt):
    """deg_labels / pseudobulk on `read_h5ad(backed="r")` (read in row chunks) equal the in-memory results."""
    a = adata.copy()
    a.X = {"csr": sparse.csr_matrix, "csc": sparse.csc_matrix, "dense": lambda m: m.toarray()}[fmt](a.X)
    path = tmp_path / f"screen_{fmt}.h5ad"
    a.write_h5ad(path)
    before = path.read_bytes()
    want = pt.pp.deg_labels(a, copy=True)
    backed = ad.read_h5ad(path, backed="r")
    pt.pp.deg_labels(backed, chunk_size=97)  # chunks that cut through groups
    for key in ("deg_scores", "deg_pvals_adj", "deg_fc", "deg_mean"):
        np.testing.assert_allclose(backed.varm[key].to_numpy(), want.varm[key].to_numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(backed.varm["deg_is_de"], want.varm["deg_is_de"])
    pb = pt.pp.pseudobulk(backed, chunk_size=50)
    np.testing.assert_allclose(pb.X, pt.pp.pseudobulk(a).X, rtol=1e-12)
    assert path.read_bytes() == before  # the read-only file is never written
    backed.file.close()


def test_dask_matrix_streams_and_nan_chunk_names_rows(adata):
    da = pytest.importorskip("dask.array")
    dense = adata.X.toarray()
    want = pt.pp.deg_labels(adata, copy=True)
    lazy = adata.copy()
    lazy.X = da.from_array(dense, chunks=(128, dense.shape[1]))
    pt.pp.deg_labels(lazy, chunk_size=128)
    np.testing.assert_allclose(lazy.varm["deg_scores"].to_numpy(), want.varm["deg_scores"].to_numpy(), rtol=1e-10)
    lazy.X = da.from_array(sparse.csr_matrix(dense), chunks=(128, dense.shape[1]), asarray=False)
    pt.pp.deg_labels(lazy, chunk_size=100)  # chunks of scipy.sparse matrices, as in anndata's lazily read sparse X
    np.testing.assert_allclose(lazy.varm["deg_scores"].to_numpy(), want.varm["deg_scores"].to_numpy(), rtol=1e-10)
    bad = dense.copy()
    bad[300, 2] = np.nan
    lazy.X = da.from_array(bad, chunks=(128, dense.shape[1]))
    with pytest.raises(ValueError, match=r"Rows 256-383 .* NaN"):
        pt.pp.deg_labels(lazy, chunk_size=128)


def test_dask_on_a_local_distributed_cluster(adata):
    pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    import dask.array as da

    want = pt.pp.deg_labels(adata, copy=True)
    lazy = adata.copy()
    lazy.X = da.from_array(adata.X.toarray(), chunks=(200, adata.n_vars))
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        pt.pp.deg_labels(lazy, chunk_size=200)
    np.testing.assert_allclose(lazy.varm["deg_scores"].to_numpy(), want.varm["deg_scores"].to_numpy(), rtol=1e-10)


def test_deg_counts_are_recorded_and_almost_none_warns(adata):
    out = pt.pp.deg_labels(adata, copy=True)
    np.testing.assert_array_equal(out.uns["deg"]["n_de"], out.varm["deg_is_de"].to_numpy().sum(axis=0))
    with pytest.warns(UserWarning, match=r"fewer than 5 DEGs at BH-adjusted p <= 1e-300.*pval_cutoff"):
        few = pt.pp.deg_labels(adata, pval_cutoff=1e-300, copy=True)
    assert (few.uns["deg"]["n_de"] < 5).all()


def test_counts_log_normalised_on_the_fly_equal_scanpy_normalisation(adata, tmp_path):
    """``normalize=True`` on raw counts (in memory, backed) equals labels on log1p(CP10k) written out by hand.

    The hand formula is scanpy's ``normalize_total(target_sum=1e4)`` + ``log1p`` (scanpy's own call is not used: it
    fails with numba's JIT disabled, as in the mutation run).
    """
    counts = adata.copy()
    counts.X = sparse.csr_matrix(adata.layers["counts"], dtype=np.float64)
    del counts.layers["counts"]
    ref = counts.copy()
    totals = np.asarray(counts.X.sum(axis=1)).ravel()
    ref.X = sparse.csr_matrix(np.log1p(counts.X.toarray() * (1e4 / totals)[:, None]))
    want = pt.pp.deg_labels(ref, copy=True)
    got = pt.pp.deg_labels(counts, normalize=True, chunk_size=97, copy=True)
    path = tmp_path / "counts.h5ad"
    counts.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    pt.pp.deg_labels(backed, normalize=True, chunk_size=131)
    for labels in (got, backed):
        for key in ("deg_scores", "deg_pvals_adj", "deg_fc", "deg_mean"):
            np.testing.assert_allclose(labels.varm[key].to_numpy(), want.varm[key].to_numpy(), rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(labels.varm["deg_is_de"], want.varm["deg_is_de"])
    assert got.uns["deg"]["params"]["normalize"] and not want.uns["deg"]["params"]["normalize"]
    np.testing.assert_array_equal(
        counts.X.toarray(), sparse.csr_matrix(adata.layers["counts"]).toarray()
    )  # the counts are never overwritten
    pb = pt.pp.pseudobulk(backed, normalize=True, chunk_size=64)
    np.testing.assert_allclose(pb.X, pt.pp.pseudobulk(ref).X, rtol=1e-6, atol=1e-9)
    backed.file.close()
    with pytest.warns(UserWarning, match="does not look like raw counts"):
        pt.pp.deg_labels(ref, normalize=True, copy=True)


def test_value_summary_covers_grouped_rows_in_every_representation():
    """Value range and non-finite count come from the grouped rows only, with implicit zeros, whatever the layout:
    an ignored row (code -1) holding a NaN, a huge or a negative value changes nothing."""
    rng = np.random.default_rng(4)
    dense = np.where(rng.random((30, 5)) < 0.4, 0.0, rng.uniform(1.0, 3.0, (30, 5)))
    codes = np.repeat([0, 1, 0], 10)
    codes[[3, 17]] = -1
    dense[3] = [np.nan, 900.0, -5.0, 0.0, 2.0]
    grouped = dense[codes >= 0]
    for X in (dense, sparse.csr_matrix(dense), sparse.csc_matrix(dense), sparse.coo_matrix(dense)):
        for chunk_size in (None, 7):
            m = group_moments(X, codes, 2, chunk_size=chunk_size)
            assert (m.value_min, m.value_max, m.n_nonfinite) == (0.0, grouped.max(), 0), (type(X), chunk_size)
    stored = np.where(dense == 0, 0.5, dense)  # no implicit zero left: the range starts at the smallest value
    stored[[3, 17]] = 0.0  # the ignored rows hold the only zeros: not in the range either
    for X in (stored, sparse.csr_matrix(stored), sparse.csc_matrix(stored)):
        for chunk_size in (None, 7):
            assert group_moments(X, codes, 2, chunk_size=chunk_size).value_min == 0.5, (type(X), chunk_size)
    stored[0, 2] = 0.0  # an implicit zero in a row of group 0
    for X in (stored, sparse.csr_matrix(stored), sparse.csc_matrix(stored)):
        assert group_moments(X, codes, 2).value_min == 0.0, type(X)
    for X in (dense, sparse.csr_matrix(dense), sparse.csc_matrix(dense)):  # no grouped row: no range, not 0 or inf
        for chunk_size in (None, 7):
            m = group_moments(X, np.full(len(codes), -1), 2, chunk_size=chunk_size)
            assert np.isnan(m.value_min) and np.isnan(m.value_max) and m.n_nonfinite == 0, (type(X), chunk_size)
    dense[5, 1] = np.nan  # a NaN in a grouped row counts
    for X in (dense, sparse.csc_matrix(dense)):
        assert group_moments(X, codes, 2).n_nonfinite == 1


def test_group_sums_added_in_place_equal_numpy_group_sums(adata, monkeypatch):
    """Many groups: the in-place kernel (threads split by group) gives the group sums numpy gives, with every row kept."""
    from perturbtools.pp import _deg_core

    X = sparse.csr_matrix(adata.X, dtype=np.float64)
    codes = adata.obs["perturbation"].cat.codes.to_numpy(np.int64)
    codes[::7] = -1  # ignored rows
    dense = X.toarray()
    n_groups = codes.max() + 1
    want_sum = np.vstack([dense[codes == g].sum(axis=0) for g in range(n_groups)])
    want_sq = np.vstack([(dense[codes == g] ** 2).sum(axis=0) for g in range(n_groups)])
    monkeypatch.setattr(_deg_core, "_BUFFER_BYTES", 0)  # force the in-place kernel in memory
    got = group_moments(X, codes, n_groups)
    streamed = group_moments(X, codes, n_groups, chunk_size=61)
    for m in (got, streamed):
        np.testing.assert_allclose(m.sums, want_sum, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(m.sumsq, want_sq, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(m.n, np.bincount(codes[codes >= 0], minlength=n_groups))
        assert m.value_min == 0.0 and m.value_max == pytest.approx(dense[codes >= 0].max())
    full = sparse.csr_matrix(dense + 0.25)  # every entry stored: the range is that of the values, not of implicit 0s
    m = group_moments(full, codes, n_groups, chunk_size=61)
    assert m.value_min == pytest.approx(dense[codes >= 0].min() + 0.25)
    for n_threads in (1, 3):  # threads split the groups by g % n_threads: each group added exactly once
        sums, sumsq = np.zeros_like(want_sum), np.zeros_like(want_sq)
        _deg_core._csr_group_sums_into(X.indptr, X.indices, X.data, codes, sums, sumsq, n_threads)
        np.testing.assert_allclose(sums, want_sum, rtol=1e-12, atol=1e-12)
    inf = X.copy()
    inf.data[inf.indptr[130]] = np.inf  # row 130 (not an ignored row): a stored infinite value
    with pytest.raises(ValueError, match=r"Rows 122-182 .* 1 NaN or infinite"):
        group_moments(inf, codes, n_groups, chunk_size=61)
    lean = group_moments(X, codes, n_groups, chunk_size=61, keep_sums=False)  # means / variances made in place
    assert lean.sums is None and lean.sumsq is None
    np.testing.assert_array_equal(lean.mean, streamed.mean)
    np.testing.assert_array_equal(lean.var, streamed.var)
    n = np.bincount(codes[codes >= 0], minlength=n_groups)
    np.testing.assert_allclose(
        lean.var[n > 1], [dense[codes == g].var(axis=0, ddof=1) for g in np.flatnonzero(n > 1)], atol=1e-12
    )


def test_statistics_in_blocks_equal_all_at_once(adata):
    """Label statistics computed a few perturbations at a time are those of one pass over all of them."""
    from perturbtools.pp._deg_core import collect_label_blocks, iter_label_statistics

    def label_statistics(m, rows, control, block):
        return collect_label_blocks(iter_label_statistics(m, rows, control, block=block), len(rows), m.mean.shape[1])

    codes = adata.obs["perturbation"].cat.codes.to_numpy(np.int64)
    m = group_moments(adata.X, codes, codes.max() + 1)
    ctrl = list(adata.obs["perturbation"].cat.categories).index("control")
    rows = np.array([g for g in range(len(m.n)) if g != ctrl])
    control = (m.mean[ctrl], m.var[ctrl], m.n[ctrl])
    whole = label_statistics(m, rows, control, block=len(rows))
    blocks = label_statistics(m, rows, control, block=3)
    for key in whole:
        np.testing.assert_array_equal(blocks[key], whole[key], err_msg=key)
    t, _ = welch_t(m.mean[rows[-1]], m.var[rows[-1]], m.n[rows[-1]], *control)
    np.testing.assert_allclose(blocks["scores"][-1], t, rtol=1e-6)  # the last block holds the last perturbation


def test_welch_t_of_constant_genes_equals_scipy_without_warnings():
    """Genes constant in both groups: t = +-inf and p = 0 when the constants differ (as scipy, whose df is then 1),
    t = 0 and p = 1 when they are equal (scipy: NaN, scanpy: 0 and 1); no division warning reaches the user."""
    a = np.array([[1.0, 2.0, 0.5], [1.0, 2.0, 0.7], [1.0, 2.0, 0.9]])
    b = np.array([[3.0, 2.0, 0.1], [3.0, 2.0, 0.4], [3.0, 2.0, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.ttest_ind(a, b, equal_var=False)
    assert np.isneginf(ref.statistic[0]) and np.isnan(ref.statistic[1])  # the cases this test is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t, p = welch_t(a.mean(0), a.var(0, ddof=1), 3, b.mean(0), b.var(0, ddof=1), 3)
    np.testing.assert_allclose(t, np.nan_to_num(ref.statistic, nan=0.0, neginf=-np.inf))
    np.testing.assert_allclose(p, np.nan_to_num(ref.pvalue, nan=1.0))
    np.testing.assert_array_equal(p[:2], [0.0, 1.0])


def test_two_sided_p_on_threads_equals_scipy(monkeypatch):
    """Large tables take the threaded path (row chunks); every p-value is still scipy's ``2 * t.sf(|t|, df)``."""
    import os

    from perturbtools.pp._deg_core import _two_sided_p

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    rng = np.random.default_rng(0)
    t = rng.normal(0, 3, (6, 40_000))
    df = rng.uniform(1, 60, t.shape)
    np.testing.assert_allclose(_two_sided_p(df, t), 2 * stats.t.sf(np.abs(t), df), rtol=1e-10, atol=1e-300)


def test_label_statistics_by_hand_per_row_controls_in_blocks():
    """iter_label_statistics' defaults (0.1 FC offset, BH p <= 0.05) and per-perturbation controls taken block by
    block, against scipy's Welch test and BH on the cells; p_adj equal to the cutoff is a DEG, FC = 1 goes up."""
    from perturbtools.pp._deg_core import collect_label_blocks, iter_label_statistics

    rng = np.random.default_rng(5)
    n_genes, shifts = 8, (0.0, 0.6, 1.2, 1.8, 2.4)
    groups = [rng.normal(1.0 + s * (np.arange(n_genes) % 2), 0.5, (12, n_genes)) for s in shifts]
    controls = [rng.normal(1.0 + 0.2 * i, 0.5, (15, n_genes)) for i in range(len(shifts))]  # each its own control
    X = np.vstack(groups)
    m = group_moments(X, np.repeat(np.arange(len(groups)), 12), len(groups))
    rows = np.arange(len(groups))
    control = (
        np.array([c.mean(0) for c in controls]),
        np.array([c.var(0, ddof=1) for c in controls]),
        np.full((len(groups), 1), 15.0),
    )
    out = collect_label_blocks(iter_label_statistics(m, rows, control, block=2), len(rows), n_genes)
    for i, (cells, ctrl) in enumerate(zip(groups, controls, strict=True)):
        ref = stats.ttest_ind(cells, ctrl, equal_var=False)
        padj = multipletests(ref.pvalue, method="fdr_bh")[1]
        fc = (np.expm1(cells.mean(0) + 0.1) + 1e-9) / (np.expm1(ctrl.mean(0) + 0.1) + 1e-9)
        np.testing.assert_allclose(out["scores"][i], ref.statistic, rtol=1e-5)
        np.testing.assert_allclose(out["pvals_adj"][i], padj, rtol=1e-9)
        np.testing.assert_allclose(out["fc"][i], fc, rtol=1e-6)
        np.testing.assert_array_equal(out["is_de"][i], padj <= 0.05)
        np.testing.assert_array_equal(out["direction"][i], np.where(padj <= 0.05, np.where(fc >= 1, 1, -1), 0))
    assert 0 < out["is_de"].sum() < out["is_de"].size  # both calls occur

    # boundaries: a gene constant and equal in both groups has p_adj = 1 and FC = 1; with the cutoff at 1 it is a
    # DEG (p_adj <= cutoff) going up (FC >= 1)
    same = group_moments(np.ones((4, 1)), np.array([0, 0, 1, 1]), 2)
    flat = next(iter_label_statistics(same, np.array([0]), (same.mean[1], same.var[1], same.n[1]), pval_cutoff=1.0))[2]
    assert flat["pvals_adj"][0, 0] == 1.0 and flat["fc"][0, 0] == 1.0
    assert flat["is_de"][0, 0] and flat["direction"][0, 0] == 1

    # raw counts: expm1 of a mean of 800 overflows to an infinite FC without a warning (the caller already warned)
    big = group_moments(np.array([[800.0], [802.0], [1.0], [2.0]]), np.array([0, 0, 1, 1]), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = next(iter_label_statistics(big, np.array([0]), (big.mean[1], big.var[1], big.n[1])))[2]
    assert np.isposinf(raw["fc"][0, 0]) and raw["direction"][0, 0] == 1


def test_bh_adjust_of_one_family_and_of_float32_p_values_equals_statsmodels():
    """A 1-D vector is one family; float32 p-values are adjusted in float64 (to statsmodels' 1e-12)."""
    pv = np.random.default_rng(2).random(40) ** 3
    ref = multipletests(pv, method="fdr_bh")[1]
    np.testing.assert_allclose(bh_adjust(pv), ref, rtol=1e-12)
    p32 = pv.astype(np.float32)
    adj32 = bh_adjust(p32)
    assert adj32.dtype == np.float64
    np.testing.assert_allclose(adj32, multipletests(p32.astype(np.float64), method="fdr_bh")[1], rtol=1e-12)


def test_group_sums_over_row_chunks_on_threads_equal_numpy(monkeypatch):
    """Thousands of CSR rows are split into row chunks (one per thread, at most rows // 1000): each row is added once,
    and every non-finite value is counted."""
    from perturbtools.pp import _deg_core

    monkeypatch.setattr(_deg_core.numba, "get_num_threads", lambda: 3)
    rng = np.random.default_rng(8)
    dense = np.where(rng.random((2_500, 6)) < 0.5, 0.0, rng.uniform(0.5, 2.0, (2_500, 6)))
    codes = rng.integers(-1, 4, 2_500)  # 2.5 chunks' worth of rows: 2 chunks
    grouped = dense[codes >= 0]
    for buffer_bytes in (_deg_core._BUFFER_BYTES, 0):  # per-chunk buffers; too large for them: added in place
        monkeypatch.setattr(_deg_core, "_BUFFER_BYTES", buffer_bytes)
        m = group_moments(sparse.csr_matrix(dense), codes, 4)
        np.testing.assert_allclose(m.sums, [dense[codes == g].sum(0) for g in range(4)], rtol=1e-12)
        np.testing.assert_allclose(m.sumsq, [(dense[codes == g] ** 2).sum(0) for g in range(4)], rtol=1e-12)
        np.testing.assert_array_equal(m.n, np.bincount(codes[codes >= 0], minlength=4))
        np.testing.assert_allclose(m.var, [dense[codes == g].var(0, ddof=1) for g in range(4)], rtol=1e-9)
        assert (m.value_min, m.value_max, m.n_nonfinite) == (0.0, grouped.max(), 0)
        lean = group_moments(sparse.csr_matrix(dense), codes, 4, keep_sums=False)
        assert lean.sums is None and lean.sumsq is None
        np.testing.assert_allclose(lean.var, m.var, rtol=1e-12)
        broken = dense.copy()
        rows = np.flatnonzero(codes >= 0)[[10, 10, 1_900]]
        broken[rows, [0, 3, 1]] = [np.nan, np.inf, np.nan]  # two in one row, one far away
        assert group_moments(sparse.csr_matrix(broken), codes, 4).n_nonfinite == 3


def test_top_masks_equal_argsort_selections_on_many_rows():
    """Top 20 by |t|, 20 highest and lowest t, 50 highest t on 3,000 random rows of 2,000 genes (selection boundaries
    vary row to row), and the large-effect cut |log2 FC| >= 1 at its boundary."""
    from perturbtools.pp._deg_core import top_masks

    rng = np.random.default_rng(1)
    t = rng.normal(size=(3_000, 2_000))
    logfc = np.zeros_like(t)
    top20, top40, top50, large = top_masks(t, logfc)

    def mask(idx):
        out = np.zeros(t.shape, dtype=bool)
        np.put_along_axis(out, idx, True, axis=1)
        return out

    order = np.argsort(-t, axis=1)
    np.testing.assert_array_equal(top20, mask(np.argsort(-np.abs(t), axis=1)[:, :20]))
    np.testing.assert_array_equal(top40, mask(order[:, :20]) | mask(order[:, -20:]))
    np.testing.assert_array_equal(top50, mask(order[:, :50]))
    assert not large.any()
    small_t = np.arange(60.0)[None, ::-1]  # the 50 highest t are the first 50 genes
    small_fc = np.zeros((1, 60))
    small_fc[0, :6] = [1.0, -1.0, 1.5, -0.999, 0.5, 2.0]
    small_fc[0, 55] = 3.0  # outside the top 50
    assert np.flatnonzero(top_masks(small_t, small_fc)[3][0]).tolist() == [0, 1, 2, 5]


def test_group_moments_trailing_empty_group_lean_sums_and_float32_squares():
    """In memory (CSR kernel; sparse product for CSC and dense): a trailing empty group and trailing ignored rows keep
    the shapes, ``keep_sums=False`` drops the sums, float32 values are squared in float64, and the value range takes
    the implicit zeros only where there are some."""
    rng = np.random.default_rng(9)
    vals = rng.uniform(0.1, 0.45, (40, 5)).astype(np.float32)
    dense = np.where(rng.random((40, 5)) < 0.3, np.float32(0), vals)
    codes = np.repeat([0, 1, 2, -1], 10)  # group 3 has no cell; the last 10 rows are ignored
    want = dense.astype(np.float64)
    for X in (sparse.csr_matrix(dense), sparse.csc_matrix(dense), dense):
        m = group_moments(X, codes, 4)
        np.testing.assert_array_equal(m.n, [10, 10, 10, 0])
        np.testing.assert_allclose(m.sums[:3], [want[codes == g].sum(0) for g in range(3)], rtol=1e-12)
        np.testing.assert_allclose(m.sumsq[:3], [(want[codes == g] ** 2).sum(0) for g in range(3)], rtol=1e-12)
        assert np.isnan(m.mean[3]).all() and (m.sums[3] == 0).all()
        assert (m.value_min, m.value_max) == (0.0, float(dense[:30].max()))  # below 0.5: the range is the data's
        lean = group_moments(X, codes, 4, keep_sums=False)
        assert lean.sums is None and lean.sumsq is None
        np.testing.assert_array_equal(lean.mean[:3], m.mean[:3])
        np.testing.assert_allclose(lean.var[:3], [want[codes == g].var(0, ddof=1) for g in range(3)], rtol=1e-9)
    for X in (sparse.csr_matrix(vals), vals):  # every value stored: no implicit zero in the range
        assert group_moments(X, codes, 4).value_min == float(vals[:30].min())


def test_lean_moments_of_more_groups_than_one_block_equal_numpy():
    """``keep_sums=False`` turns the sums into means and variances in blocks of 256 groups: 300 groups cross one."""
    rng = np.random.default_rng(10)
    X = rng.normal(2.0, 1.0, (900, 3))
    codes = np.repeat(np.arange(300), 3)
    lean = group_moments(X, codes, 300, keep_sums=False)
    np.testing.assert_allclose(lean.mean, X.reshape(300, 3, 3).mean(1), rtol=1e-12)
    np.testing.assert_allclose(lean.var, X.reshape(300, 3, 3).var(1, ddof=1), rtol=1e-9)
