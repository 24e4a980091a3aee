"""Numeric core of the subtask labels: grouped moments, Welch t-test, BH, fold changes. No AnnData."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import sparse, special

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator


class GroupMoments(NamedTuple):
    """Per-group cell count, mean, unbiased variance and the sums behind them (groups x genes); a value summary."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    sums: np.ndarray | None = None
    sumsq: np.ndarray | None = None
    value_min: float = np.nan
    value_max: float = np.nan
    n_nonfinite: int = 0


#: fewest positives (DEGs; up- and down-regulated DEGs) a DE, direction or FC metric is computed from, and below
#: which ``deg_labels`` counts a perturbation as having almost no DEGs
MIN_POSITIVES = 5


def _add_row_py(indptr, indices, data, row, g, sums, sumsq, lo, hi, nonfinite):
    """Add CSR row ``row`` and its squares to row ``g`` of ``sums`` / ``sumsq``; the updated value range and NaN count."""
    for k in range(indptr[row], indptr[row + 1]):
        v = np.float64(data[k])
        if not np.isfinite(v):
            nonfinite += 1
        lo = min(lo, v)
        hi = max(hi, v)
        sums[g, indices[k]] += v
        sumsq[g, indices[k]] += v * v
    return lo, hi, nonfinite


def _csr_group_sums_py(indptr, indices, data, codes, n_groups, n_cols, n_chunks):
    """Group sums and sums of squares of CSR rows in one pass, accumulating in float64 (one buffer per chunk)."""
    n_rows = len(indptr) - 1
    sums = np.zeros((n_chunks, n_groups, n_cols))
    sumsq = np.zeros((n_chunks, n_groups, n_cols))
    vmin = np.full(n_chunks, np.inf)
    vmax = np.full(n_chunks, -np.inf)
    bad = np.zeros(n_chunks, dtype=np.int64)
    bounds = np.linspace(0, n_rows, n_chunks + 1).astype(np.int64)
    for c in _prange(n_chunks):
        lo, hi, nonfinite = np.inf, -np.inf, 0
        for row in range(bounds[c], bounds[c + 1]):
            if codes[row] >= 0:
                lo, hi, nonfinite = _add_row(
                    indptr, indices, data, row, codes[row], sums[c], sumsq[c], lo, hi, nonfinite
                )
        vmin[c], vmax[c], bad[c] = lo, hi, nonfinite
    return sums.sum(axis=0), sumsq.sum(axis=0), vmin.min(), vmax.max(), bad.sum()


def _csr_group_sums_into_py(indptr, indices, data, codes, sums, sumsq, n_threads):
    """Add CSR rows and their squares to ``sums`` / ``sumsq`` (groups x genes, float64) in place.

    Thread ``t`` takes the groups ``g`` with ``g % n_threads == t``, so threads never share an output row and no
    per-thread buffer is needed. Returns the smallest and largest stored value and the number of non-finite ones.
    """
    n_rows = len(indptr) - 1
    vmin = np.full(n_threads, np.inf)
    vmax = np.full(n_threads, -np.inf)
    bad = np.zeros(n_threads, dtype=np.int64)
    for t in _prange(n_threads):
        lo, hi, nonfinite = np.inf, -np.inf, 0
        for row in range(n_rows):
            if codes[row] >= 0 and codes[row] % n_threads == t:
                lo, hi, nonfinite = _add_row(indptr, indices, data, row, codes[row], sums, sumsq, lo, hi, nonfinite)
        vmin[t], vmax[t], bad[t] = lo, hi, nonfinite
    return vmin.min(), vmax.max(), bad.sum()


try:  # numba ships with scanpy; fall back to the sparse product without it
    import numba

    _prange = numba.prange
    _add_row = numba.njit(cache=True)(_add_row_py)
    _csr_group_sums = numba.njit(parallel=True, cache=True)(_csr_group_sums_py)
    _csr_group_sums_into = numba.njit(parallel=True, cache=True)(_csr_group_sums_into_py)
except ImportError:  # pragma: no cover
    _prange = range
    _add_row = _add_row_py
    _csr_group_sums = _csr_group_sums_into = None

#: per-thread sum buffers larger than this (bytes) make the in-memory path add into the outputs in place instead
_BUFFER_BYTES = 256 * 2**20


#: rows per chunk when ``X`` is read from disk (backed h5ad) or is a dask array
CHUNK_SIZE = 10_000


def in_memory(X) -> bool:
    """Whether ``X`` is an in-memory matrix (numpy or scipy.sparse) rather than a backed or lazy (dask) one."""
    return isinstance(X, np.ndarray) or sparse.issparse(X)


def group_moments(
    X,
    codes: np.ndarray,
    n_groups: int,
    *,
    chunk_size: int | None = None,
    show_progress_bar: bool | None = None,
    transform: Callable | None = None,
    keep_sums: bool = True,
) -> GroupMoments:
    """Means and unbiased variances of the rows of ``X`` grouped by ``codes`` in one pass of group sums.

    Rows with a negative code are ignored; sums accumulate in float64. ``X`` may be dense or sparse in memory (CSR is
    read in place, no copy), a backed h5ad matrix (``anndata.read_h5ad(path, backed="r").X``) or a dask array: those
    are read in row chunks of ``chunk_size`` (default ``CHUNK_SIZE``), so memory holds one chunk plus the
    ``2 x groups x genes`` float64 sums. ``keep_sums=False`` turns the sums into the means and variances in place
    (``sums`` / ``sumsq`` are then ``None``), halving that footprint. A chunk with NaN or infinite values raises an error naming its rows.
    ``transform`` (a row-wise function, e.g. :func:`~perturbtools._utils.log1p_cp10k`) is applied to each chunk
    as it is read, so ``X`` is always streamed then.
    """
    if sparse.issparse(X) and X.format not in ("csr", "csc"):  # COO, DIA, ...: no row slices
        X = X.tocsr()
    if in_memory(X) and chunk_size is None and transform is None:
        return _group_moments_in_memory(X, codes, n_groups, keep_sums=keep_sums)
    return _group_moments_streamed(
        X, codes, n_groups, chunk_size or CHUNK_SIZE, show_progress_bar, transform, keep_sums=keep_sums
    )


def _group_moments_streamed(X, codes, n_groups, chunk_size, show_progress_bar, transform, *, keep_sums) -> GroupMoments:
    from .._utils import _progress

    n_rows, n_cols = X.shape
    sums, sumsq = np.zeros((n_groups, n_cols)), np.zeros((n_groups, n_cols))
    vmin, vmax = np.inf, -np.inf
    starts = range(0, n_rows, chunk_size)
    for start in _progress(starts, show_progress_bar=show_progress_bar, desc="reading cells", unit="chunk"):
        stop = min(start + chunk_size, n_rows)
        block = X[start:stop]
        if hasattr(block, "compute"):  # dask: runs on whatever scheduler is active (a distributed Client too)
            block = block.compute()
        if transform is not None:
            block = transform(block)
        lo, hi, n_bad = _add_group_sums(block, codes[start:stop], sums, sumsq)
        if n_bad:
            msg = f"Rows {start}-{stop - 1} of the matrix contain {n_bad} NaN or infinite values; remove or impute them first."
            raise ValueError(msg)
        if np.isfinite(lo):
            vmin, vmax = min(vmin, lo), max(vmax, hi)
    n = np.bincount(codes[codes >= 0], minlength=n_groups).astype(np.float64)
    return _moments(n, sums, sumsq, in_place=not keep_sums)._replace(
        value_min=_finite_or_nan(vmin), value_max=_finite_or_nan(vmax)
    )


def _finite_or_nan(value: float) -> float:
    """``value`` as a float; NaN for the infinite start of a running min / max that saw no value."""
    return float(value) if np.isfinite(value) else np.nan


def _has_implicit_zeros(X: sparse.csr_matrix, codes: np.ndarray) -> bool:
    """Whether the grouped rows (``codes >= 0``) of CSR ``X`` leave an entry unstored, i.e. hold an implicit zero."""
    grouped = codes >= 0
    return int(np.diff(X.indptr)[grouped].sum()) < int(grouped.sum()) * X.shape[1]


def _add_group_sums(block, codes: np.ndarray, sums: np.ndarray, sumsq: np.ndarray) -> tuple[float, float, int]:
    """Add one chunk's group sums and sums of squares to ``sums`` / ``sumsq`` in place; its value range and NaN count."""
    if sparse.issparse(block) and block.format == "csr" and _csr_group_sums_into is not None:
        lo, hi, n_bad = _csr_group_sums_into(
            block.indptr, block.indices, block.data, codes.astype(np.int64), sums, sumsq, numba.get_num_threads()
        )
        if _has_implicit_zeros(block, codes):
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        return lo, hi, int(n_bad)
    part = _group_moments_in_memory(block, codes, sums.shape[0])
    sums += part.sums
    sumsq += part.sumsq
    return part.value_min, part.value_max, part.n_nonfinite


def _group_moments_in_memory(X, codes: np.ndarray, n_groups: int, *, keep_sums: bool = True) -> GroupMoments:
    if sparse.issparse(X) and X.format == "csr" and _csr_group_sums is not None:
        n_chunks = max(1, min(numba.get_num_threads(), X.shape[0] // 1000 or 1))
        if n_chunks > 1 and 16 * n_chunks * n_groups * X.shape[1] > _BUFFER_BYTES:  # many groups: add in place
            sums, sumsq = np.zeros((n_groups, X.shape[1])), np.zeros((n_groups, X.shape[1]))
            vmin, vmax, bad = _add_group_sums(X, codes, sums, sumsq)
        else:
            sums, sumsq, vmin, vmax, bad = _csr_group_sums(
                X.indptr, X.indices, X.data, codes.astype(np.int64), n_groups, X.shape[1], n_chunks
            )
            if _has_implicit_zeros(X, codes):
                vmin, vmax = min(vmin, 0.0), max(vmax, 0.0)
        n = np.bincount(codes[codes >= 0], minlength=n_groups).astype(np.float64)
        return _moments(n, sums, sumsq, in_place=not keep_sums)._replace(
            value_min=_finite_or_nan(vmin), value_max=_finite_or_nan(vmax), n_nonfinite=int(bad)
        )
    keep = codes >= 0
    rows = codes[keep]
    cols = np.flatnonzero(keep)
    indicator = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_groups, X.shape[0]))
    n = np.asarray(indicator.sum(axis=1)).ravel()
    grouped = keep.all()  # the value summary covers the grouped rows only, as the CSR kernels do
    if sparse.issparse(X):
        X = sparse.csr_matrix(X)
        sums = (indicator @ X).toarray()
        sq = X.copy()
        sq.data = np.square(sq.data, dtype=np.float64)
        sumsq = (indicator @ sq).toarray()
        rows_kept = X if grouped else X[cols]
        values = rows_kept.data
        if rows_kept.nnz < rows_kept.shape[0] * rows_kept.shape[1]:  # implicit zeros
            values = np.append(values, 0.0)
    else:
        X = np.asarray(X)
        values = X if grouped else X[cols]
        sums = np.asarray(indicator @ X, dtype=np.float64)
        sumsq = np.asarray(indicator @ np.square(X, dtype=np.float64))
    finite = np.isfinite(values)
    n_bad = int(values.size - finite.sum())
    vmin = float(values[finite].min()) if finite.any() else np.nan
    vmax = float(values[finite].max()) if finite.any() else np.nan
    return _moments(n, sums, sumsq, in_place=not keep_sums)._replace(value_min=vmin, value_max=vmax, n_nonfinite=n_bad)


def _moments(n: np.ndarray, sums: np.ndarray, sumsq: np.ndarray, *, in_place: bool = False) -> GroupMoments:
    """Means and unbiased variances from group sums; ``in_place`` turns ``sums`` / ``sumsq`` into them (no copy)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if not in_place:
            mean = sums / n[:, None]
            var = (sumsq / n[:, None] - mean**2) * (n / (n - 1))[:, None]
            return GroupMoments(n, mean, var, sums, sumsq)
        mean, var = np.divide(sums, n[:, None], out=sums), np.divide(sumsq, n[:, None], out=sumsq)
        for lo in range(0, len(n), 256):  # mean**2 in blocks: no groups x genes temporary
            var[lo : lo + 256] -= mean[lo : lo + 256] ** 2
        var *= (n / (n - 1))[:, None]
    return GroupMoments(n, mean, var)


def welch_t(mean1, var1, n1, mean2, var2, n2) -> tuple[np.ndarray, np.ndarray]:
    """Welch's t statistic and two-sided p-value (as ``scipy.stats.ttest_ind_from_stats(equal_var=False)``).

    Counts broadcast against the means: pass ``n[:, None]`` for per-group counts.

    NaN scores (both groups constant) are set to 0 and NaN p-values to 1, as scanpy does.
    """
    vn1 = var1 / n1
    vn2 = var2 / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        se2 = vn1 + vn2
        t = (mean1 - mean2) / np.sqrt(se2)
        df = se2**2 / (vn1**2 / (n1 - 1) + vn2**2 / (n2 - 1))
    df = np.where(np.isnan(df), 1.0, df)
    p = _two_sided_p(np.broadcast_to(df, np.shape(t)), np.asarray(t))
    t = np.where(np.isnan(t), 0.0, t)
    p = np.where(np.isnan(p), 1.0, p)
    return t, p


def _two_sided_p(df: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``2 * stdtr(df, -|t|)`` evaluated in row chunks on threads (scipy's ufuncs release the GIL)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty(t.shape, dtype=np.float64)
    n_threads = min(os.cpu_count() or 1, 8)
    if t.ndim < 2 or t.size < 200_000 or n_threads == 1:
        return 2 * special.stdtr(df, -np.abs(t))
    chunks = np.array_split(np.arange(t.shape[0]), n_threads)

    def work(rows):
        out[rows] = 2 * special.stdtr(df[rows], -np.abs(t[rows]))

    with ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(work, chunks))
    return out


def bh_adjust(pvals: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjustment along the last axis (each row its own family)."""
    pvals = np.asarray(pvals, dtype=np.float64)
    m = pvals.shape[-1]
    order = np.argsort(pvals, axis=-1, kind="mergesort")
    ranked = np.take_along_axis(pvals, order, axis=-1) * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[..., ::-1], axis=-1)[..., ::-1]
    out = np.empty_like(ranked)
    np.put_along_axis(out, order, np.minimum(ranked, 1.0), axis=-1)
    return out


def fold_change(mean_p: np.ndarray, mean_c: np.ndarray, *, offset: float = 0.1) -> np.ndarray:
    """STAMP's fold change ``(expm1(mu_p + offset) + 1e-9) / (expm1(mu_c + offset) + 1e-9)``."""
    return (np.expm1(mean_p + offset) + 1e-9) / (np.expm1(mean_c + offset) + 1e-9)


def mean_from_fold_change(fc: np.ndarray, mean_c: np.ndarray, *, offset: float = 0.1) -> np.ndarray:
    """Invert :func:`fold_change` for the perturbed mean.

    A predicted fold change that no pair of means has (negative, at or below about ``-1 / expm1(mean_c + offset)``)
    gives the floor ``log(1e-12) - offset`` instead of NaN.
    """
    inner = np.maximum(fc * (np.expm1(mean_c + offset) + 1e-9) - 1e-9, -1 + 1e-12)
    return np.log1p(inner) - offset


def top_masks(scores: np.ndarray, logfc: np.ndarray, *, n_top40: int = 20, n_top20: int = 20, n_top50: int = 50):
    """Evaluation masks from t-scores (perturbations x genes).

    Returns ``top20`` (first 20 by |t|), ``top40`` (20 highest and 20 lowest t), ``top50`` (50 highest t) and
    ``large_effect`` (top50 with |log2 FC| >= 1).
    """
    n_genes = scores.shape[1]

    def mask_of(idx):
        m = np.zeros(scores.shape, dtype=bool)
        np.put_along_axis(m, idx, True, axis=1)
        return m

    def first(values, k):
        k = min(k, n_genes)
        return (
            np.argpartition(-values, k - 1, axis=1)[:, :k]
            if k < n_genes
            else np.tile(np.arange(n_genes), (len(values), 1))
        )

    top20 = mask_of(first(np.abs(scores), n_top20))
    top40 = mask_of(first(scores, n_top40)) | mask_of(first(-scores, n_top40))
    top50 = mask_of(first(scores, n_top50))
    large = top50 & (np.abs(logfc) >= 1)
    return top20, top40, top50, large


#: perturbations whose statistics are computed at a time: bounds the float64 temporaries to block x genes
STAT_BLOCK = 128

#: label statistics and the dtype each is kept in
LABEL_DTYPES = {"mean": np.float32, "scores": np.float32, "pvals": np.float64, "pvals_adj": np.float64,
                "fc": np.float32, "logfc": np.float32, "is_de": bool, "direction": np.int8,
                "top20": bool, "top40": bool, "top50": bool, "large_effect": bool}  # fmt: skip


def collect_label_blocks(
    blocks: Iterable[tuple[int, int, dict[str, np.ndarray]]], n_rows: int, n_genes: int
) -> dict[str, np.ndarray]:
    """Blocks ``(lo, hi, {name: block x genes})`` of :func:`iter_label_statistics` as ``n_rows x n_genes`` tables."""
    out = {key: np.empty((n_rows, n_genes), dtype=dtype) for key, dtype in LABEL_DTYPES.items()}
    for lo, hi, values in blocks:
        for key, value in values.items():
            out[key][lo:hi] = value
    return out


def iter_label_statistics(
    moments: GroupMoments,
    rows: np.ndarray,
    control: tuple[np.ndarray, np.ndarray, np.ndarray | float],
    *,
    fc_offset: float = 0.1,
    pval_cutoff: float = 0.05,
    block: int = STAT_BLOCK,
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Welch t, BH-adjusted p, fold change, DE call, direction and masks of the groups ``rows`` vs a control.

    ``control`` is ``(mean, var, n)`` of the control: one row for all groups, or one row per group in ``rows``
    (batch-matched controls, with ``n`` of shape ``(len(rows), 1)``). Yields ``(lo, hi, {name: block x genes})``,
    ``block`` groups (rows ``lo:hi`` of ``rows``) at a time, each table already in its ``LABEL_DTYPES`` dtype; the
    float64 temporaries stay ``block x genes``, so a caller that writes each block away (to a file) never holds all
    perturbations x genes. :func:`collect_label_blocks` gathers the blocks into whole tables.
    """
    mean_c, var_c, n_c = control
    per_row = np.ndim(mean_c) == 2
    for lo in range(0, len(rows), block):
        hi = min(lo + block, len(rows))
        idx = rows[lo:hi]
        mc, vc, nc = (mean_c[lo:hi], var_c[lo:hi], n_c[lo:hi]) if per_row else (mean_c, var_c, n_c)
        mean_p = moments.mean[idx]
        scores, pvals = welch_t(mean_p, moments.var[idx], moments.n[idx][:, None], mc, vc, nc)
        pvals_adj = bh_adjust(pvals)
        with np.errstate(over="ignore"):  # raw counts (already warned about) overflow expm1
            fc = fold_change(mean_p, mc, offset=fc_offset)
            logfc = np.log2(fc)
        is_de = pvals_adj <= pval_cutoff
        masks = top_masks(scores, logfc)
        values = {"mean": mean_p, "scores": scores, "pvals": pvals, "pvals_adj": pvals_adj, "fc": fc, "logfc": logfc,
                  "is_de": is_de, "direction": np.where(is_de, np.where(fc >= 1, 1, -1), 0),
                  **dict(zip(("top20", "top40", "top50", "large_effect"), masks, strict=True))}  # fmt: skip
        with np.errstate(over="ignore"):
            yield lo, hi, {key: value.astype(LABEL_DTYPES[key], copy=False) for key, value in values.items()}
