"""The one result shape of every model, and the one path that writes it into AnnData."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from ._keys import interval_key, prediction_keys

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anndata import AnnData

logger = logging.getLogger(__name__)


class Predictions(NamedTuple):
    """Predictions of one model: genes x perturbations DataFrames, ``None`` for outputs a model does not produce.

    Attributes
    ----------
    mean
        Predicted mean log expression.
    de_proba
        Probability that a gene is differentially expressed (the DE subtask).
    direction_proba
        Probability that a DEG goes up (the direction subtask; called ``up_proba`` before 0.2).
    logfc
        Predicted log2 fold change (the fold-change subtask).
    mean_var
        Predictive variance of ``mean`` (uncertainty-aware models).
    """

    mean: pd.DataFrame | None = None
    de_proba: pd.DataFrame | None = None
    direction_proba: pd.DataFrame | None = None
    logfc: pd.DataFrame | None = None
    mean_var: pd.DataFrame | None = None

    @property
    def up_proba(self) -> pd.DataFrame | None:
        """Deprecated name of :attr:`direction_proba` (until 0.3)."""
        warnings.warn("`Predictions.up_proba` is now `direction_proba`.", FutureWarning, stacklevel=2)
        return self.direction_proba

    @property
    def perturbations(self) -> list[str]:
        """Predicted perturbations."""
        return next(f for f in self if f is not None).columns.tolist()

    @classmethod
    def from_arrays(cls, var_names: pd.Index, perturbations: list[str], **arrays: np.ndarray | None) -> Predictions:
        """Build from perturbations x genes arrays."""
        return cls(
            **{
                name: None
                if a is None
                else pd.DataFrame(np.asarray(a, dtype=np.float32).T, index=var_names, columns=perturbations)
                for name, a in arrays.items()
            }
        )


def write_predictions(
    adata: AnnData,
    preds: Predictions,
    key_added: str,
    params: dict[str, Any],
    *,
    intervals: Mapping[float, tuple[pd.DataFrame, pd.DataFrame]] | None = None,
) -> None:
    """Write ``preds`` to ``adata.varm[f"{key_added}_{field}"]`` and ``params`` to ``adata.uns[key_added]``.

    ``intervals`` (level -> lower, upper frames) go to ``varm[interval_key(key_added, level, "lower" / "upper")]``
    and their levels to ``uns[key_added]["interval_levels"]``; intervals of an earlier call under the same key are
    removed.
    """
    for old in adata.uns.get(key_added, {}).get("interval_levels", []) if key_added in adata.uns else []:
        for bound in ("lower", "upper"):
            adata.varm.pop(interval_key(key_added, float(old), bound), None)
    keys = prediction_keys(key_added)
    for field, frame in zip(Predictions._fields, preds, strict=True):
        key = getattr(keys, field)
        if frame is None:
            adata.varm.pop(key, None)
            continue
        adata.varm[key] = frame.reindex(adata.var_names)
    for level, (lower, upper) in (intervals or {}).items():
        adata.varm[interval_key(key_added, level, "lower")] = lower.reindex(adata.var_names)
        adata.varm[interval_key(key_added, level, "upper")] = upper.reindex(adata.var_names)
    extra = {"interval_levels": np.array(sorted(intervals), dtype=float)} if intervals else {}
    adata.uns[key_added] = {**params, "predicted": preds.perturbations, **extra}
    logger.info("added `.varm[%r_*]` and `.uns[%r]`", key_added, key_added)


def read_intervals(adata: AnnData, key: str) -> dict[float, tuple[pd.DataFrame, pd.DataFrame]]:
    """Prediction intervals written under ``key`` (level -> lower, upper genes x perturbations frames)."""
    levels = adata.uns.get(key, {}).get("interval_levels", []) if key in adata.uns else []
    if len(levels) == 0:
        msg = f"No prediction intervals under {key!r}. Run `pt.tl.conformal_intervals(adata, ..., key_added={key!r})`."
        raise KeyError(msg)
    return {
        float(lv): (
            adata.varm[interval_key(key, float(lv), "lower")],
            adata.varm[interval_key(key, float(lv), "upper")],
        )
        for lv in levels
    }


def read_predictions(adata: AnnData, key: str) -> Predictions:
    """Read the frames a model's ``predict`` wrote under ``key``."""
    keys = prediction_keys(key)
    frames = {f: adata.varm.get(getattr(keys, f)) for f in Predictions._fields}
    if frames["direction_proba"] is None and f"{key}_up_proba" in adata.varm:  # written before 0.2
        frames["direction_proba"] = adata.varm[f"{key}_up_proba"]
    if all(v is None for v in frames.values()):
        msg = (
            f"No predictions under `adata.varm[{key!r}_*]`. Run a `pt.tl` model's `.predict(key_added={key!r})` first."
        )
        raise KeyError(msg)
    cols = next(v for v in frames.values() if v is not None).columns
    return Predictions(**{f: None if v is None else v[cols] for f, v in frames.items()})
