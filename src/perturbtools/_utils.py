"""Small shared helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData


def _as_rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng(rng)


def _torch_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


def _get_matrix(adata: AnnData, layer: str | None = None):
    return adata.X if layer is None else adata.layers[layer]


def _to_dense(X) -> np.ndarray:
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


def _progress(iterable, *, show_progress_bar: bool | None, **kwargs):
    from tqdm.auto import tqdm

    from ._settings import settings

    show = settings.progress_bar if show_progress_bar is None else show_progress_bar
    return tqdm(iterable, disable=not show, **kwargs)


def log1p_cp10k(counts, target_sum: float = 1e4):
    """``log1p(counts / rowsum * target_sum)`` row by row (scanpy's ``normalize_total`` then ``log1p``), in float64.

    Rows are independent, so a matrix can be normalised in row chunks with the same result. Empty rows stay zero.
    Sparse input gives CSR, dense gives an ndarray.
    """
    size = np.asarray(counts.sum(axis=1)).ravel()  # in the counts' dtype, as before 0.2 (same bits)
    scale = np.divide(target_sum, size, out=np.zeros_like(size, dtype=np.float64), where=size > 0)
    if sparse.issparse(counts):
        X = sparse.csr_matrix(sparse.diags(scale) @ counts, dtype=np.float64)
        X.data = np.log1p(X.data)
        return X
    return np.log1p(np.asarray(counts) * scale[:, None])


def log_normalise(adata: AnnData) -> None:
    """Keep counts in ``layers['counts']`` and put log1p(CP10k) into ``X``."""
    counts = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.layers["counts"] = counts
    adata.X = sparse.csr_matrix(log1p_cp10k(counts), dtype=np.float32)
    adata.uns["log1p"] = {"base": None}
