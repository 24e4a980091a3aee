"""Mean expression per perturbation (cells -> perturbations)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import PERTURBATION_KEY
from .._utils import _get_matrix, log1p_cp10k
from .._validation import _as_anndata, _check_layer, _check_obs_key
from ._deg_core import group_moments

if TYPE_CHECKING:
    from collections.abc import Sequence


def pseudobulk(
    adata: AnnData,
    perturbation_key: str = PERTURBATION_KEY,
    *,
    layer: str | None = None,
    normalize: bool = False,
    func: Literal["mean", "sum"] = "mean",
    groupby: Sequence[str] = (),
    mod: str | None = None,
    chunk_size: int | None = None,
    show_progress_bar: bool | None = None,
) -> AnnData:
    """Aggregate cells into one profile per perturbation.

    Parameters
    ----------
    adata
        Annotated data (cells x genes).
    perturbation_key
        Column of ``adata.obs`` with perturbation labels.
    layer
        Layer to aggregate instead of ``.X``.
    normalize
        Log-normalise raw counts on the fly, chunk by chunk, as in :func:`perturbtools.pp.deg_labels`.
    func
        ``"mean"`` (for log data) or ``"sum"`` (for counts).
    groupby
        Further ``obs`` columns to split by (e.g. ``["cell_type"]``).
    mod
        Modality of a MuData to use.
    chunk_size, show_progress_bar
        Streaming of a backed or dask matrix in row chunks, as in :func:`perturbtools.pp.deg_labels`.

    Returns
    -------
    A new AnnData: ``obs`` = groups with their labels and ``n_cells``, ``X`` = aggregated expression (dense float64),
    ``var`` copied.
    """
    adata = _as_anndata(adata, mod=mod)
    cols = [perturbation_key, *groupby]
    for col in cols:
        _check_obs_key(adata, col)
    _check_layer(adata, layer)
    keys = adata.obs[cols].astype(str)
    groups = keys.drop_duplicates().sort_values(cols).reset_index(drop=True)
    index = pd.MultiIndex.from_frame(groups)
    codes = index.get_indexer(pd.MultiIndex.from_frame(keys))
    moments = group_moments(
        _get_matrix(adata, layer), codes, len(groups), chunk_size=chunk_size, show_progress_bar=show_progress_bar,
        transform=log1p_cp10k if normalize else None,
    )  # fmt: skip
    X = moments.mean if func == "mean" else moments.mean * moments.n[:, None]
    obs = groups.copy()
    obs["n_cells"] = moments.n.astype(int)
    obs.index = ["_".join(row) for row in groups.to_numpy()] if groupby else groups[perturbation_key].to_numpy()
    obs.index = obs.index.astype(str)
    for col in cols:
        obs[col] = pd.Categorical(obs[col])
    return AnnData(X=np.asarray(X), obs=obs, var=adata.var.copy())
