"""Input validators: each error names the key and the fix."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData


def _as_anndata(adata: Any, *, mod: str | None = None) -> AnnData:
    """Return an AnnData, picking modality ``mod`` from a MuData."""
    from anndata import AnnData

    if isinstance(adata, AnnData):
        return adata
    if hasattr(adata, "mod") and isinstance(adata.mod, dict):
        if mod is None:
            msg = f"Got a MuData with modalities {list(adata.mod)}; pass one of them, e.g. `mdata.mod[{next(iter(adata.mod))!r}]`."
            raise TypeError(msg)
        if mod not in adata.mod:
            msg = f"Modality {mod!r} not in the MuData; choose one of {list(adata.mod)}."
            raise KeyError(msg)
        return adata.mod[mod]
    msg = f"Expected an AnnData, got {type(adata).__name__}."
    raise TypeError(msg)


def _check_obs_key(adata: AnnData, key: str) -> None:
    if key not in adata.obs.columns:
        msg = (
            f"`adata.obs[{key!r}]` not found. Available columns: {list(adata.obs.columns)}. "
            "Pass the column that holds perturbation labels as `perturbation_key=`."
        )
        raise KeyError(msg)
    missing = adata.obs[key].isna().to_numpy()
    if missing.any():
        rows = adata.obs_names[missing][:5].tolist()
        msg = (
            f"`adata.obs[{key!r}]` has {int(missing.sum())} missing value(s) (e.g. cells {rows}); they would be "
            f"dropped or read as the label 'nan'. Label them, or keep only labelled cells: "
            f"`adata = adata[adata.obs[{key!r}].notna()].copy()`."
        )
        raise ValueError(msg)


def _check_control(adata: AnnData, key: str, control: str) -> None:
    values = adata.obs[key]
    if not (values == control).any():
        cats = list(pd.unique(values.astype(str)))[:20]
        msg = (
            f"`control={control!r}` not found in `adata.obs[{key!r}]` (no control cells). "
            f"Values include {cats}; pass the control label as `control=` (e.g. 'ctrl', 'non-targeting')."
        )
        raise ValueError(msg)


def _check_unique_var_names(adata: AnnData) -> None:
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        msg = f"`adata.var_names` are not unique (e.g. {dup}). Run `adata.var_names_make_unique()` first."
        raise ValueError(msg)


def _check_layer(adata: AnnData, layer: str | None) -> None:
    if layer is not None and layer not in adata.layers:
        msg = f"`adata.layers[{layer!r}]` not found. Available layers: {list(adata.layers)}; or pass `layer=None` for `.X`."
        raise KeyError(msg)


def _check_values(
    X: np.ndarray | sparse.spmatrix,
    *,
    where: str,
    expect_log: bool = True,
    summary: tuple[float, float, int] | None = None,
) -> None:
    """Fail on NaN/inf/negative values; warn when data look like raw counts but log data are expected, or the reverse.

    ``summary = (min, max, n_nonfinite)`` of the values, when already computed in another pass over ``X``.
    """
    if not (isinstance(X, np.ndarray) or sparse.issparse(X)):  # backed or dask: judge the first rows
        X = X[: min(X.shape[0], 2000)]
        X = X.compute() if hasattr(X, "compute") else X
    data = X.data if sparse.issparse(X) else np.asarray(X)
    if data.size == 0:
        return
    if summary is None:
        finite = np.isfinite(data)
        summary = (
            (data[finite].min(), data[finite].max(), int(data.size - finite.sum()))
            if finite.any()
            else (0, 0, data.size)
        )
    vmin, vmax, n_bad = summary
    if n_bad:
        msg = f"{where} contains {n_bad} NaN or infinite values. Remove or impute them (e.g. `np.nan_to_num`) first."
        raise ValueError(msg)
    if vmin < 0:
        msg = f"{where} contains negative values; expected non-negative log1p-normalised expression. Did you pass scaled data? Use the unscaled layer via `layer=`."
        raise ValueError(msg)
    sample = data.ravel()[: min(data.size, 10000)]
    nonzero = sample[sample != 0]
    integers = nonzero.size > 0 and bool(np.allclose(nonzero % 1, 0))
    # log1p(CP10k) values are (almost) never all integers: integers are counts however small the maximum (a shallow
    # screen can have max < 50)
    if expect_log and integers and vmax > 1:
        warnings.warn(
            f"{where} looks like raw counts (all sampled non-zero values are integers, up to {vmax:.0f}); labels assume "
            "log-normalised data. Run `sc.pp.normalize_total(adata, target_sum=1e4); sc.pp.log1p(adata)` first "
            "(keep the counts in `adata.layers['counts']`).",
            UserWarning,
            stacklevel=3,
        )
    if not expect_log and nonzero.size > 0 and not integers:
        warnings.warn(
            f"{where} does not look like raw counts (sampled non-zero values are not all integers) but "
            "`normalize=True` log-normalises it as counts; pass `normalize=False` for log-normalised data.",
            UserWarning,
            stacklevel=3,
        )


def _check_result(adata: AnnData, key: str, *, slot: str = "varm", producer: str) -> None:
    store = getattr(adata, slot)
    if key not in store:
        msg = f"`adata.{slot}[{key!r}]` not found. Run `{producer}` first."
        raise KeyError(msg)


def _check_fitted(model: Any) -> None:
    if not getattr(model, "is_fitted_", False):
        msg = f"This {type(model).__name__} is not fitted yet. Call `.fit()` first."
        raise RuntimeError(msg)
