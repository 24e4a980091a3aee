"""Noise ceiling: what a technical replicate of the data scores on every metric (split-half, Spearman-Brown)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._labelled import LabelledData
from .._predictions import Predictions
from .._utils import _as_rng, _progress
from .._validation import _as_anndata, _check_result
from ._evaluate import evaluate_predictions

if TYPE_CHECKING:
    from anndata import AnnData

#: correlations: the half-sample value r is stepped up to the full sample by Spearman-Brown, 2r / (1 + r)
CORRELATION_METRICS = ("pearson", "pearson_delta", "pearson_de", "pearson_de_delta", "pearson_fc", "de_spearman_lfc")
#: errors between two half-sample means have 4x the variance of a full-sample mean's error about the truth
ERROR_SCALE = {"mse": 1 / 4, "mse_fc": 1 / 4, "mae": 1 / 2, "mae_de": 1 / 2}
R2_METRICS = ("r2_hvg", "r2_top50", "r2_large_effect")


def spearman_brown(r: np.ndarray | float, factor: float = 2.0) -> np.ndarray | float:
    """Reliability of a measure ``factor`` times as long: ``factor r / (1 + (factor - 1) r)``."""
    return factor * np.asarray(r) / (1 + (factor - 1) * np.asarray(r))


def _corrected(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        base = col.removesuffix("_top40")
        if base in CORRELATION_METRICS:
            out[col] = spearman_brown(out[col].astype(float))
        elif base in ERROR_SCALE:
            out[col] = out[col].astype(float) * ERROR_SCALE[base]
        elif base in R2_METRICS:
            out[col] = 1 - (1 - out[col].astype(float)) / 4
    return out


def _halves(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random half (boolean) of the cells of every label, the extra cell of odd groups going to the other half."""
    first = np.zeros(labels.size, dtype=bool)
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        first[rng.permutation(idx)[: idx.size // 2]] = True
    return first


def noise_ceiling(
    adata: AnnData,
    *,
    labels_key: str = "deg",
    n_repeats: int = 5,
    rng: int | np.random.Generator | None = 0,
    show_progress_bar: bool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Noise ceiling of every metric of :func:`evaluate_predictions`, from split-half technical replicates.

    The cells of every perturbation *and* of the controls are split at random into two halves; both halves are
    labelled exactly as ``labels_key`` was (same test, cutoff, offset, layer), and half A's deltas, placed on half B's
    control mean, are scored as a "prediction" of half B. This is repeated ``n_repeats`` times and averaged.

    A half has half the cells, so its values are stepped up to the full sample where a correction applies:
    correlations (Pearson, Spearman) by Spearman-Brown ``2r / (1 + r)``; MSE by 1/4 and MAE by 1/2 (the difference
    of two half-sample means has 4x the variance of a full-sample mean about its expectation); R² as
    ``1 - (1 - R²) / 4``. AUCs, precision/overlap and the rank metric have no such correction and are reported
    as measured on halves (a conservative ceiling). Perturbations with fewer than 4 cells are left out.

    Parameters
    ----------
    adata
        AnnData with cells, labelled by :func:`perturbtools.pp.deg_labels` under ``labels_key``.
    labels_key
        ``key_added`` of the labels.
    n_repeats
        Random splits averaged.
    rng
        Seed or generator of the splits.
    show_progress_bar
        Progress bar over repeats.

    Returns
    -------
    ``(per_perturbation, pooled)`` with the columns of :func:`evaluate_predictions`, averaged over repeats and
    corrected as above; ``per_perturbation.attrs["n_repeats"]``.
    """
    from ..pp._deg import deg_labels

    adata = _as_anndata(adata)
    _check_result(adata, labels_key, slot="uns", producer=f"pt.pp.deg_labels(adata, key_added={labels_key!r})")
    params = dict(adata.uns[labels_key]["params"])
    if "condition" in params or adata.uns[labels_key].get("label_only"):
        msg = f"`{labels_key}` holds labels without cells (or per condition); a noise ceiling needs the cells."
        raise ValueError(msg)
    key = params["perturbation_key"]
    layer = None if params["layer"] == "X" else params["layer"]
    wanted = [str(p) for p in adata.uns[labels_key]["perturbations"]]
    labels = adata.obs[key].astype(str).to_numpy()
    keep = np.isin(labels, [*wanted, params["control"]])
    counts = pd.Series(labels[keep]).value_counts()
    perts = [p for p in wanted if counts.get(p, 0) >= 4]
    rng = _as_rng(rng)
    per_runs, pooled_runs = [], []
    kwargs = {"perturbation_key": key, "control": params["control"], "delimiter": params["delimiter"], "layer": layer,
              "pval_cutoff": params["pval_cutoff"], "fc_offset": params["fc_offset"], "min_cells": 2,
              "batch_key": params.get("batch_key"), "key_added": "half", "copy": True}  # fmt: skip
    cells = adata[np.isin(labels, [*perts, params["control"]])]
    cell_labels = cells.obs[key].astype(str).to_numpy()
    for _ in _progress(range(n_repeats), show_progress_bar=show_progress_bar, desc="noise ceiling"):
        first = _halves(cell_labels, rng)
        with warnings.catch_warnings():  # raw-count and min_cells warnings were given when the labels were made
            warnings.simplefilter("ignore", UserWarning)
            half_a = LabelledData.from_adata(deg_labels(cells[first].copy(), **kwargs), "half")
            half_b = LabelledData.from_adata(deg_labels(cells[~first].copy(), **kwargs), "half")
        both = [p for p in perts if p in set(half_a.perturbations) & set(half_b.perturbations)]
        mean = half_a.mean[half_a.index(both)] - half_a.control_mean + half_b.control_mean
        preds = Predictions.from_arrays(half_b.var_names, both, mean=mean)
        per, pooled = evaluate_predictions(preds, half_b, both)
        per_runs.append(per.drop(columns=["unseen"]))
        pooled_runs.append(pooled.set_index(["stratum", "mask"]))
    per = _corrected(pd.concat(per_runs).groupby(level=0).mean())
    pooled = _corrected(pd.concat(pooled_runs).groupby(level=[0, 1]).mean()).reset_index()
    per.attrs["n_repeats"] = n_repeats
    per.attrs["ceiling"] = "split-half technical replicate, Spearman-Brown / variance corrected (see noise_ceiling)"
    return per, pooled


def ceiling_summary(per_perturbation: pd.DataFrame, pooled: pd.DataFrame) -> pd.Series:
    """One ceiling value per metric name of a CV summary (``pooled_*`` from the pooled table, stratum ``all``)."""
    values = per_perturbation.select_dtypes("number").mean()
    rows = pooled[pooled["stratum"] == "all"]
    for _, row in rows.iterrows():
        suffix = "_top40" if row["mask"] == "top40" else ""
        for col in rows.select_dtypes("number").columns:
            values[f"pooled_{col}{suffix}"] = row[col]
    return values.drop(labels=[c for c in values.index if c.startswith(("n_", "pooled_n_"))], errors="ignore")


def normalised_scores(summary: pd.DataFrame, ceiling: pd.Series, *, baseline: str) -> pd.DataFrame:
    """Add ``ceiling`` and ``normalised = (model - baseline) / (ceiling - baseline)`` to a CV summary.

    0 is the named ``baseline`` model, 1 the noise ceiling (works for errors too: the signs cancel). Undefined (NaN)
    where the ceiling equals the baseline or either is missing. ``attrs["baseline"]`` names the baseline.
    """
    if baseline not in set(summary["model"]):
        msg = f"Baseline {baseline!r} not in the summary; models: {sorted(summary['model'].unique())}."
        raise KeyError(msg)
    out = summary.copy()
    base = out[out["model"] == baseline].set_index("metric")["mean"]
    out["ceiling"] = out["metric"].map(ceiling)
    b = out["metric"].map(base)
    gap = out["ceiling"] - b
    out["normalised"] = np.where(np.abs(gap) > 1e-12, (out["mean"] - b) / gap, np.nan)
    out.attrs["baseline"] = baseline
    return out
