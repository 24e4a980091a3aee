"""Tidy getters of results stored in AnnData."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .._keys import label_keys
from .._predictions import read_predictions
from .._validation import _check_result

if TYPE_CHECKING:
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


__all__ = ["labels_df", "predictions_df"]
