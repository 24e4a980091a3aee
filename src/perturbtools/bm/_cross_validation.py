"""K-fold cross-validation over perturbations: every model on the same folds, one tidy table."""

from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import pandas as pd

from .._keys import cv_prediction_key
from .._utils import _as_rng, _progress
from .._validation import _as_anndata
from ..metrics._core import rank_metric
from ..metrics._evaluate import evaluate_predictions, prediction_scores, summarize
from ..pp._split import kfold_perturbations
from ..tl._base import LabelledData, ModelSpec, Predictions, unpack_spec, write_predictions

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)


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

    With ``inplace=True``, each model's out-of-fold predictions (every perturbation predicted by the model that did
    not see it) are written to ``adata.varm[f"{key_added}_{model}_*"]``, so GI scores and plots work on them, and the
    tables to ``adata.uns[key_added]``; :meth:`from_adata` reads the tables back.
    """

    per_perturbation: pd.DataFrame
    pooled: pd.DataFrame
    summary: pd.DataFrame
    timings: pd.DataFrame

    @classmethod
    def from_adata(cls, adata: AnnData, key: str = "cv") -> CVResults:
        """The tables :func:`cross_validate` stored with ``inplace=True, key_added=key``."""
        if key not in adata.uns or not set(cls._fields) <= set(adata.uns[key]):
            msg = f"No cross-validation results in `adata.uns[{key!r}]`; run `pt.bm.cross_validate(..., inplace=True)`."
            raise KeyError(msg)
        return cls(*(adata.uns[key][f] for f in cls._fields))


def _setup(adata, models, labels_key, perturbations, n_splits, rng):
    """Shared start of the protocols: labels, a seed drawn from ``rng``, k folds over perturbations, model specs.

    Each model class's ``fold_independent_setup`` runs here, once (:meth:`~perturbtools.tl.PerturbationModel.fold_independent_setup`).
    """
    adata = _as_anndata(adata)
    data = LabelledData.from_adata(adata, labels_key)
    perts = list(perturbations) if perturbations is not None else list(data.perturbations)
    seed = int(_as_rng(rng).integers(2**31))
    folds = list(kfold_perturbations(perts, n_splits, rng=seed))
    specs = {}
    for name, spec in models.items():
        cls, init_kwargs, fit_kwargs = unpack_spec(spec)
        if hasattr(cls, "fold_independent_setup"):  # label-free work (e.g. PerturbNet's scVI) once, not per fold
            init_kwargs, fit_kwargs = cls.fold_independent_setup(
                adata, init_kwargs, fit_kwargs, labels_key=labels_key, seed=seed
            )
        specs[name] = (cls, init_kwargs, fit_kwargs)
    return adata, data, seed, folds, specs


def _fit_evaluate(spec, adata, data, train, test, *, labels_key, seed, model=None, keep=None, rank_pool=None):
    """Fit one model on ``train`` (or use a given fitted ``model``), predict ``test``, evaluate.

    ``keep``, a list, receives the predictions. With ``rank_pool`` (perturbations), ``rank_fold_model`` ranks each test
    perturbation among the same model's predictions for every perturbation of the pool.
    """
    cls, init_kwargs, fit_kwargs = spec
    start = time.perf_counter()
    if model is None:
        model = cls(adata, labels_key=labels_key, **init_kwargs)
        model.fit(train, rng=seed, **fit_kwargs)
    preds = model.predict(test, inplace=False)
    elapsed = time.perf_counter() - start
    if keep is not None:
        keep.append(preds)
    per, pooled = evaluate_predictions(preds, data, test, train=train)
    if rank_pool is not None and "rank" in per:
        per["rank_within_fold"] = per["rank"]
        others = [p for p in rank_pool if p not in set(test)]
        pool = _merge_predictions([preds, model.predict(others, inplace=False)]) if others else preds
        per["rank_fold_model"] = _rank_among(pool, data, list(per.index))
    return per, pooled, elapsed


def _rank_among(pool: Predictions, data: LabelledData, perturbations: list[str]) -> np.ndarray:
    """Rank metric of ``perturbations`` among the predictions of every perturbation in ``pool``."""
    perts = list(pool.perturbations)
    s = prediction_scores(pool, data, perts)
    truth = data.mean[data.index(perturbations)] - data.control_mean
    own = [perts.index(p) for p in perturbations]
    return rank_metric(s.mean - data.control_mean, truth, own=own)


def _merge_predictions(parts: list[Predictions]) -> Predictions:
    """One :class:`Predictions` from the predictions of disjoint perturbation sets (e.g. out-of-fold)."""
    return Predictions(
        *(
            None if parts[0][i] is None else pd.concat([p[i] for p in parts], axis=1)
            for i in range(len(Predictions._fields))
        )
    )


def _oof_rank(preds: Predictions, data: LabelledData) -> pd.Series:
    """Rank metric of every out-of-fold prediction among all out-of-fold predictions."""
    perts = [p for p in preds.perturbations if p in set(data.perturbations)]
    return pd.Series(_rank_among(preds, data, perts), index=perts)


def cross_validate(
    adata: AnnData,
    models: Mapping[str, ModelSpec],
    *,
    labels_key: str = "deg",
    n_splits: int = 5,
    perturbations: Sequence[str] | None = None,
    rng: int | np.random.Generator | None = 0,
    key_added: str | None = "cv",
    inplace: bool = False,
    rank: Literal["within_fold", "fold_model", "out_of_fold"] = "within_fold",
    show_progress_bar: bool | None = None,
) -> CVResults | None:
    """K-fold cross-validation over perturbations, several models, one tidy table.

    Every model sees the same folds; a perturbation (single or combination) is tested exactly once.

    The rank metric needs a set of N predictions to rank a perturbation's own prediction among.
    ``rank="within_fold"`` (default): among the held-out predictions of the fold's test perturbations, all made by
    one model that saw none of them; the denominator is N - 1, so a constant or random predictor scores 0.5 whatever
    the fold's size. ``"fold_model"``: the fold's model predicts every perturbation and the held-out prediction is
    ranked among those N; the pool then holds *in-sample* predictions of the training perturbations, which favours
    models that reproduce their training data. ``"out_of_fold"``: among the out-of-fold predictions of all
    perturbations; these come from different models, some trained on the perturbation being ranked, which biases
    the metric against the model (the non-control mean scores about 0.8 instead of 0.5). All three are reported
    (``rank_within_fold``, ``rank_fold_model``, ``rank_out_of_fold``); ``rank`` is the chosen one.

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
        Where ``inplace=True`` stores the results (``None`` is deprecated: it meant ``inplace=False``).
    inplace
        Store the tables in ``adata.uns[key_added]`` and the out-of-fold predictions in
        ``adata.varm[f"{key_added}_{model}_*"]``, and return ``None``; by default return the results and leave
        ``adata`` unchanged.
    rank
        Which rank metric the ``rank`` column holds (see above).
    show_progress_bar
        Show a progress bar over (model, fold); default ``pt.settings.progress_bar``.

    Returns
    -------
    :class:`CVResults`; with ``inplace=True``, ``None`` and ``adata.uns[key_added] = {"per_perturbation", "pooled",
    "summary", "timings", "params"}`` (read back with :meth:`CVResults.from_adata`).
    """
    inplace = _store(key_added, inplace, "cross_validate")
    adata, data, fold_seed, folds, specs = _setup(adata, models, labels_key, perturbations, n_splits, rng)
    per_rows, pooled_rows, times = [], [], []
    oof: dict[str, list] = {name: [] for name in specs}
    tasks = [(name, f) for name in specs for f in range(len(folds))]
    for name, fold in _progress(tasks, show_progress_bar=show_progress_bar, desc="cross-validation"):
        train, test = folds[fold]
        per, pooled, elapsed = _fit_evaluate(
            specs[name], adata, data, train, test, labels_key=labels_key, seed=fold_seed + fold, keep=oof[name],
            rank_pool=[p for f in folds for p in f[1]],
        )  # fmt: skip
        per_rows.append(per.reset_index().assign(model=name, fold=fold))
        pooled_rows.append(pooled.assign(model=name, fold=fold))
        times.append({"model": name, "fold": fold, "seconds": elapsed, "n_train": len(train), "n_test": len(test)})
    per_df = pd.concat(per_rows, ignore_index=True)
    merged_oof = {name: _merge_predictions(parts) for name, parts in oof.items()}
    if "rank" in per_df:
        for name, merged in merged_oof.items():
            rows = per_df["model"] == name
            per_df.loc[rows, "rank_out_of_fold"] = per_df.loc[rows, "perturbation"].map(_oof_rank(merged, data))
        per_df["rank"] = per_df[f"rank_{rank}"]
    pooled_df = pd.concat(pooled_rows, ignore_index=True)
    per_df, pooled_df = _front(per_df, ["model", "fold"]), _front(pooled_df, ["model", "fold"])
    summary = summarize(per_df.drop(columns=["fold"]), by="model")
    pooled_all = pooled_df[(pooled_df["stratum"] == "all")].copy()
    pooled_all = pooled_all.assign(model=pooled_all["model"] + "|" + pooled_all["mask"])
    pooled_summary = summarize(pooled_all.drop(columns=["fold"]), by="model")
    pooled_summary[["model", "mask"]] = pooled_summary["model"].str.split("|", expand=True)
    pooled_summary["metric"] = (
        "pooled_" + pooled_summary["metric"] + np.where(pooled_summary["mask"] == "top40", "_top40", "")
    )
    summary = pd.concat([summary, pooled_summary.drop(columns=["mask"])], ignore_index=True)
    results = CVResults(per_df, pooled_df, summary, pd.DataFrame(times))
    if not inplace:
        return results
    fold_of = {p: f for f, (_, test) in enumerate(folds) for p in test}
    for name, merged in merged_oof.items():
        params = {
            "model": name,
            "out_of_fold": True,
            "labels_key": labels_key,
            "fold": np.array([fold_of[p] for p in merged.perturbations]),
        }
        write_predictions(adata, merged, cv_prediction_key(key_added, name), params=params)
    adata.uns[key_added] = {
        **{k: _h5ad_safe(v) for k, v in results._asdict().items()},
        "params": {"labels_key": labels_key, "n_splits": n_splits, "fold_seed": fold_seed, "models": list(specs)},
    }
    logger.info("added `.uns[%r]`", key_added)
    return None


def _store(key_added: str | None, inplace: bool, function: str) -> bool:
    """Whether to store, honouring the deprecated ``key_added=None`` (which used to mean "store nothing")."""
    if key_added is not None:
        return inplace
    if inplace:
        msg = f"`{function}(inplace=True)` needs a `key_added` to store under."
        raise ValueError(msg)
    warnings.warn(
        f"`{function}(key_added=None)` is deprecated: results are stored only with `inplace=True` (the default "
        "stores nothing); drop `key_added=None`.",
        FutureWarning,
        stacklevel=3,
    )
    return False


def _front(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return df[cols + [c for c in df.columns if c not in cols]]


def _h5ad_safe(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].astype(str)
    return out.reset_index(drop=True)
