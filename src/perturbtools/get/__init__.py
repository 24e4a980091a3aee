"""Tidy getters of results stored in AnnData."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._keys import label_keys
from .._predictions import read_predictions
from .._validation import _check_result

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData


def labels_df(adata: AnnData, key: str = "deg") -> pd.DataFrame:
    """Long table of the labels under ``key``: one row per (perturbation, gene)."""
    keys = label_keys(key)
    fields = [f for f in keys._fields if f != "control_mean"]
    _check_result(adata, keys.is_de, producer=f"pt.pp.deg_labels(adata, key_added={key!r})")
    frames = {f: adata.varm[getattr(keys, f)].stack() for f in fields}
    out = pd.DataFrame(frames)
    out.index.names = ["gene", "perturbation"]
    return out.reset_index()


def predictions_df(adata: AnnData, key: str) -> pd.DataFrame:
    """Long table of the predictions under ``key``: one row per (perturbation, gene)."""
    preds = read_predictions(adata, key)
    out = pd.DataFrame({f: v.stack() for f, v in preds._asdict().items() if v is not None})
    out.index.names = ["gene", "perturbation"]
    return out.reset_index()


def cell_eval_anndata(
    adata: AnnData,
    key: str,
    *,
    labels_key: str = "deg",
    perturbations: Sequence[str] | None = None,
    pert_col: str = "target",
) -> tuple[AnnData, AnnData]:
    """Real and predicted data in the layout `cell-eval <https://github.com/ArcInstitute/cell-eval>`_ reads.

    ``adata_real`` holds the real cells of the predicted perturbations and the control cells (``X`` = the matrix the
    labels were computed on); ``adata_pred`` holds one pseudo-cell per predicted perturbation (its predicted mean)
    and one control pseudo-cell (the real control mean), so cell-eval's pseudobulks equal the package's means.
    Both have ``obs[pert_col]``; pass ``control_pert=adata.uns[labels_key]["params"]["control"]``::

        real, pred = pt.get.cell_eval_anndata(adata, "gp")
        cell_eval.MetricsEvaluator(pred, real, control_pert="control", pert_col="target", skip_de=True)

    Returns
    -------
    ``(adata_real, adata_pred)``.
    """
    import anndata as ad
    import numpy as np

    from .._labelled import LabelledData

    data = LabelledData.from_adata(adata, labels_key)
    preds = read_predictions(adata, key)
    if preds.mean is None:
        msg = f"The predictions under {key!r} have no `mean`; cell-eval compares expression."
        raise ValueError(msg)
    perts = [p for p in (perturbations or preds.perturbations) if p in set(data.perturbations)]
    params = adata.uns[labels_key]["params"]
    labels = adata.obs[params["perturbation_key"]].astype(str).to_numpy()
    rows = np.isin(labels, [*perts, data.control])
    layer = None if params["layer"] == "X" else params["layer"]
    X = adata.X if layer is None else adata.layers[layer]
    real = ad.AnnData(
        X[rows].copy(), obs=pd.DataFrame({pert_col: labels[rows]}, index=adata.obs_names[rows]),
        var=pd.DataFrame(index=adata.var_names),
    )  # fmt: skip
    mean = np.vstack([preds.mean[perts].to_numpy(np.float32).T, data.control_mean[None].astype(np.float32)])
    pred = ad.AnnData(
        mean, obs=pd.DataFrame({pert_col: [*perts, data.control]}, index=[f"pred_{i}" for i in range(len(mean))]),
        var=pd.DataFrame(index=adata.var_names),
    )  # fmt: skip
    return real, pred


#: cell-eval columns whose definitions equal the package's (pseudobulk means, control mean of each side)
CELL_EVAL_SAME = ("pearson_delta", "mae", "mse")


def read_cell_eval(results: Any) -> pd.DataFrame:
    """cell-eval's per-perturbation results (a CSV path, a polars or pandas frame) as a pandas frame.

    Indexed by perturbation. Columns defined as here (``pearson_delta``, ``mae``, ``mse``) keep their names; the
    others are prefixed ``cell_eval_`` (their DE metrics use pdex's Mann-Whitney tests, not this package's Welch
    t-test, so they differ by definition).
    """
    if isinstance(results, str | Path):
        frame = pd.read_csv(results)
    elif hasattr(results, "to_pandas"):
        frame = results.to_pandas()
    else:
        frame = pd.DataFrame(results)
    if "perturbation" not in frame.columns:
        msg = f"Not a cell-eval results table: no `perturbation` column (columns: {list(frame.columns)[:10]})."
        raise ValueError(msg)
    frame = frame.set_index("perturbation")
    return frame.rename(columns={c: c if c in CELL_EVAL_SAME else f"cell_eval_{c}" for c in frame.columns})


__all__ = ["CELL_EVAL_SAME", "cell_eval_anndata", "labels_df", "predictions_df", "read_cell_eval"]
