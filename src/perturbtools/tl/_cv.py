"""K-fold cross-validation over perturbations for several models in one run."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from .._utils import _as_rng, _progress
from .._validation import _as_anndata
from ..metrics._evaluate import evaluate_predictions, summarize
from ..pp._split import kfold_perturbations
from ._base import LabelledData

if TYPE_CHECKING:
    from anndata import AnnData

    from ._base import PerturbationModel

logger = logging.getLogger(__name__)

ModelSpec = type | tuple[type, Mapping[str, Any]] | tuple[type, Mapping[str, Any], Mapping[str, Any]]


class CVResults(NamedTuple):
    """Tidy results of :func:`cross_validate`.

    Attributes
    ----------
    per_perturbation
        One row per (model, fold, perturbation): expression and per-perturbation subtask metrics, ``unseen`` stratum.
    pooled
        One row per (model, fold, stratum, mask): subtask metrics pooled over (perturbation, gene) entries.
    summary
        Per model and metric: mean and 95% CI over perturbations (``per_perturbation``) or folds (``pooled``, stratum
        ``all``, prefixed ``pooled_``).
    timings
        Seconds of fit + predict per (model, fold).
    """

    per_perturbation: pd.DataFrame
    pooled: pd.DataFrame
    summary: pd.DataFrame
    timings: pd.DataFrame


def _unpack(spec: ModelSpec) -> tuple[type, dict, dict]:
    if isinstance(spec, type):
        return spec, {}, {}
    cls, *rest = spec
    return cls, dict(rest[0]) if rest else {}, dict(rest[1]) if len(rest) > 1 else {}


def cross_validate(
    adata: AnnData,
    models: Mapping[str, ModelSpec],
    *,
    labels_key: str = "deg",
    n_splits: int = 5,
    perturbations: Sequence[str] | None = None,
    rng: int | np.random.Generator | None = 0,
    key_added: str | None = "cv",
    show_progress_bar: bool | None = None,
) -> CVResults:
    """K-fold cross-validation over perturbations, several models, one tidy table.

    Every model sees the same folds; a perturbation (single or combination) is tested exactly once.

    Parameters
    ----------
    adata
        AnnData labelled by :func:`perturbtools.pp.deg_labels` (and with whatever embeddings the models need).
    models
        ``{name: Model}``, ``{name: (Model, init_kwargs)}`` or ``{name: (Model, init_kwargs, fit_kwargs)}``.
    labels_key
        ``key_added`` of the labels.
    n_splits
        Number of folds.
    perturbations
        Perturbations to cross-validate over; default: all labelled ones.
    rng
        Seed or :class:`numpy.random.Generator` for folds and models; ``0`` by default so results reproduce.
    key_added
        Store the tables in ``adata.uns[key_added]``; ``None`` stores nothing.
    show_progress_bar
        Show a progress bar over (model, fold); default ``pt.settings.progress_bar``.

    Returns
    -------
    :class:`CVResults`; with ``key_added``, also ``adata.uns[key_added] = {"per_perturbation", "pooled", "summary",
    "timings", "params"}``.
    """
    adata = _as_anndata(adata)
    data = LabelledData.from_adata(adata, labels_key)
    perts = list(perturbations) if perturbations is not None else list(data.perturbations)
    rng = _as_rng(rng)
    fold_seed = int(rng.integers(2**31))
    folds = list(kfold_perturbations(perts, n_splits, rng=fold_seed))
    specs = {name: _unpack(spec) for name, spec in models.items()}
    per_rows, pooled_rows, times = [], [], []
    tasks = [(name, f) for name in specs for f in range(len(folds))]
    for name, fold in _progress(tasks, show_progress_bar=show_progress_bar, desc="cross-validation"):
        cls, init_kwargs, fit_kwargs = specs[name]
        train, test = folds[fold]
        start = time.perf_counter()
        model: PerturbationModel = cls(adata, labels_key=labels_key, **init_kwargs)
        model.fit(train, rng=fold_seed + fold, **fit_kwargs)
        preds = model.predict(test, inplace=False)
        elapsed = time.perf_counter() - start
        per, pooled = evaluate_predictions(preds, data, test, train=train)
        per_rows.append(per.reset_index().assign(model=name, fold=fold))
        pooled_rows.append(pooled.assign(model=name, fold=fold))
        times.append({"model": name, "fold": fold, "seconds": elapsed, "n_train": len(train), "n_test": len(test)})
    per_df = pd.concat(per_rows, ignore_index=True)
    pooled_df = pd.concat(pooled_rows, ignore_index=True)
    order = ["model", "fold"]
    per_df = per_df[order + [c for c in per_df.columns if c not in order]]
    pooled_df = pooled_df[order + [c for c in pooled_df.columns if c not in order]]
    summary = summarize(per_df.drop(columns=["fold"]), by="model")
    pooled_all = pooled_df[(pooled_df["stratum"] == "all")].copy()
    pooled_all = pooled_all.assign(model=pooled_all["model"] + "|" + pooled_all["mask"])
    pooled_summary = summarize(pooled_all.drop(columns=["fold", "n_entries", "n_de", "n_perturbations"]), by="model")
    pooled_summary[["model", "mask"]] = pooled_summary["model"].str.split("|", expand=True)
    pooled_summary["metric"] = "pooled_" + pooled_summary["metric"] + np.where(pooled_summary["mask"] == "top40", "_top40", "")
    summary = pd.concat([summary, pooled_summary.drop(columns=["mask"])], ignore_index=True)
    results = CVResults(per_df, pooled_df, summary, pd.DataFrame(times))
    if key_added is not None:
        adata.uns[key_added] = {
            **{k: _h5ad_safe(v) for k, v in results._asdict().items()},
            "params": {"labels_key": labels_key, "n_splits": n_splits, "fold_seed": fold_seed, "models": list(specs)},
        }
        logger.info("added `.uns[%r]`", key_added)
    return results


def _h5ad_safe(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].astype(str)
    return out.reset_index(drop=True)
