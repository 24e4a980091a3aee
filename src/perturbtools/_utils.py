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
