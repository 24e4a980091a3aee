"""Curves over training size: learning curves within a dataset, few-shot transfer across cell lines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._utils import _as_rng, _progress
from ..metrics._evaluate import COUNT_COLUMNS, SUBTASK_METRICS
from ..pp._split import kfold_perturbations
from ..tl._base import FineTunable, LabelledData, ModelSpec, unpack_spec
from ._cross_validation import _fit_evaluate, _front, _h5ad_safe, _setup, _store

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anndata import AnnData


def _curve_rows(per: pd.DataFrame, pooled: pd.DataFrame, **keys: Any) -> dict[str, Any]:
    """One row of a curve: per-perturbation means and the pooled subtask metrics (stratum ``all``)."""
    row = dict(keys)
    numeric = per.select_dtypes("number").drop(columns=list(COUNT_COLUMNS), errors="ignore")
    row |= numeric.mean().to_dict()
    for _, r in pooled[pooled["stratum"] == "all"].iterrows():
        suffix = "" if r["mask"] == "all" else "_top40"
        row |= {
            f"pooled_{m}{suffix}": r[m]
            for m in SUBTASK_METRICS
            if m in r.index  # label-only data have no direction / FC metrics
        }
    return row


def learning_curve(
    adata: AnnData,
    models: Mapping[str, ModelSpec],
    *,
    train_sizes: Sequence[int],
    labels_key: str = "deg",
    n_splits: int = 5,
    perturbations: Sequence[str] | None = None,
    rng: int | np.random.Generator | None = 0,
    key_added: str | None = "learning_curve",
    inplace: bool = False,
    show_progress_bar: bool | None = None,
) -> pd.DataFrame | None:
    """Performance against the number of training perturbations, repeated over folds.

    In each of ``n_splits`` folds the test perturbations are fixed; for every size ``n`` a random subset of ``n``
    training perturbations (nested: smaller subsets are prefixes of larger ones) is used to fit each model.

    Parameters
    ----------
    adata
        Labelled AnnData.
    models
        As in :func:`cross_validate`.
    train_sizes
        Numbers of training perturbations; sizes larger than a fold's training set are skipped.
    labels_key, n_splits, perturbations, rng, show_progress_bar
        As in :func:`cross_validate`.
    key_added, inplace
        ``inplace=True`` stores the table in ``adata.uns[key_added]["table"]`` and returns ``None``; by default the
        table is returned and ``adata`` left unchanged.

    Returns
    -------
    Tidy DataFrame, one row per (model, fold, n_train): mean per-perturbation metrics and pooled subtask metrics
    over that fold's test perturbations; ``None`` with ``inplace=True``.
    """
    inplace = _store(key_added, inplace, "learning_curve")
    adata, data, seed, folds, specs = _setup(adata, models, labels_key, perturbations, n_splits, rng)
    tasks = [
        (f, n, name)
        for f in range(len(folds))
        for n in sorted(set(train_sizes))
        for name in specs
        if n <= len(folds[f][0])
    ]
    orders = {f: np.random.default_rng(seed + f).permutation(len(folds[f][0])) for f in range(len(folds))}
    rows = []
    for fold, n, name in _progress(tasks, show_progress_bar=show_progress_bar, desc="learning curve"):
        train_all, test = folds[fold]
        train = [train_all[i] for i in orders[fold][:n]]
        per, pooled, elapsed = _fit_evaluate(
            specs[name], adata, data, train, test, labels_key=labels_key, seed=seed + fold
        )
        rows.append(_curve_rows(per, pooled, model=name, fold=fold, n_train=n, seconds=elapsed))
    out = pd.DataFrame(rows)
    if not inplace:
        return out
    adata.uns[key_added] = {
        "table": _h5ad_safe(out),
        "params": {"labels_key": labels_key, "n_splits": n_splits, "seed": seed},
    }
    return None


def few_shot(
    source: AnnData,
    target: AnnData,
    model: ModelSpec,
    *,
    shots: Sequence[int] = (0, 2, 4, 6, 8, 10, 15, 20, 25, 30, 40),
    baselines: Mapping[str, ModelSpec] | None = None,
    labels_key: str = "deg",
    source_labels_key: str | None = None,
    n_splits: int = 5,
    finetune_kwargs: Mapping[str, Any] | None = None,
    source_perturbations: Sequence[str] | None = None,
    perturbations: Sequence[str] | None = None,
    return_per_perturbation: bool = False,
    rng: int | np.random.Generator | None = 0,
    show_progress_bar: bool | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Few-shot transfer to a target dataset (e.g. another cell line): scratch vs pretrained-then-fine-tuned.

    The model is pretrained once on every labelled perturbation of ``source``. For each of ``n_splits`` folds over
    the target's perturbations (test set fixed) and each ``n`` in ``shots``, ``n`` target training perturbations are
    drawn (nested) and the model is (a) trained from scratch on them and (b) copied from the pretrained model and
    fine-tuned on them; ``n = 0`` is the zero-shot prediction of (b) and is undefined for (a). ``baselines`` are
    trained from scratch on the same ``n`` as reference lines (``n >= 1``, and ``n = 0`` for baselines that need no
    target training, such as :class:`~perturbtools.tl.SourceRanking`). Shots larger than a fold's training set
    are skipped. Both AnnData need the same genes and labels under ``labels_key``. All ``n`` shots are trained on:
    a model that holds out validation perturbations for model selection (STAMP) gets ``val_perturbations=[]``
    (the last epoch is kept) unless ``fit_kwargs`` / ``finetune_kwargs`` say otherwise.

    Parameters
    ----------
    source, target
        Labelled AnnData with identical ``var_names``.
    model
        A model class with ``from_pretrained`` and ``fine_tune`` (e.g. :class:`~perturbtools.tl.STAMP`), or
        ``(cls, init_kwargs[, fit_kwargs])``.
    shots
        Numbers of target training perturbations.
    baselines
        Extra models trained from scratch on the target shots.
    labels_key, n_splits, rng, show_progress_bar
        As in :func:`cross_validate` (``labels_key``: the target's labels).
    source_labels_key
        Labels key of ``source`` (default ``labels_key``). With labels per condition
        (``pt.pp.deg_labels(condition_key=...)``), ``few_shot(adata, adata, labels_key="deg_stim",
        source_labels_key="deg_unstim")`` transfers between conditions like between cell lines.
    finetune_kwargs
        Training arguments for fine-tuning (default: the model's ``fit_kwargs``).
    source_perturbations
        Perturbations of ``source`` to pretrain on (default: all labelled ones).
    perturbations
        Perturbations of ``target`` to split into folds (default: all labelled ones).
    return_per_perturbation
        Also return the metrics of every test perturbation (for paired tests between strategies).

    Returns
    -------
    Tidy DataFrame, one row per (strategy, fold, n): strategy ``"scratch"``, ``"pretrained"`` or a baseline name,
    with mean per-perturbation metrics and pooled subtask metrics on the fold's target test perturbations. With
    ``return_per_perturbation=True``, ``(table, per_perturbation)``: one row per (strategy, fold, n, perturbation).
    """
    if list(source.var_names) != list(target.var_names):
        msg = (
            "`source` and `target` must have the same `var_names` in the same order; subset both to shared genes first."
        )
        raise ValueError(msg)
    spec = unpack_spec(model)
    cls, init_kwargs, fit_kwargs = spec
    if not issubclass(cls, FineTunable):
        msg = f"{cls.__name__} cannot be fine-tuned (not a `pt.tl.FineTunable`); use e.g. `pt.tl.STAMP`."
        raise TypeError(msg)
    finetune_kwargs = dict(fit_kwargs if finetune_kwargs is None else finetune_kwargs)
    rng = _as_rng(rng)
    seed = int(rng.integers(2**31))
    pretrained = cls(source, labels_key=source_labels_key or labels_key, **init_kwargs).fit(
        source_perturbations, rng=seed, **fit_kwargs
    )
    data = LabelledData.from_adata(target, labels_key)
    folds = list(kfold_perturbations(list(perturbations or data.perturbations), n_splits, rng=seed))
    base_specs = {name: unpack_spec(s) for name, s in (baselines or {}).items()}
    tasks = [(f, n) for f in range(len(folds)) for n in sorted(set(shots)) if n <= len(folds[f][0])]
    rows, per_rows = [], []

    def record(per, pooled, strategy, fold, n):
        rows.append(_curve_rows(per, pooled, strategy=strategy, fold=fold, n=n))
        per_rows.append(per.reset_index().assign(strategy=strategy, fold=fold, n=n))

    # n shots train on all n target perturbations: none is held out for model selection
    all_shots = {"val_perturbations": []} if cls.selects_on_validation else {}
    scratch_spec = (cls, init_kwargs, {**all_shots, **fit_kwargs})
    for fold, n in _progress(tasks, show_progress_bar=show_progress_bar, desc="few-shot"):
        train_all, test = folds[fold]
        order = np.random.default_rng(seed + fold).permutation(len(train_all))
        train = [train_all[i] for i in order[:n]]
        tuned = cls.from_pretrained(pretrained, target, labels_key=labels_key)
        if n:
            tuned.fine_tune(train, rng=seed + fold, **{**all_shots, **finetune_kwargs})
        per, pooled, _ = _fit_evaluate(spec, target, data, train, test, labels_key=labels_key, seed=seed, model=tuned)
        record(per, pooled, "pretrained", fold, n)
        if n:
            per, pooled, _ = _fit_evaluate(
                scratch_spec, target, data, train, test, labels_key=labels_key, seed=seed + fold
            )
            record(per, pooled, "scratch", fold, n)
        for name, bspec in base_specs.items():
            if n == 0 and bspec[0].needs_training:
                continue
            per, pooled, _ = _fit_evaluate(bspec, target, data, train, test, labels_key=labels_key, seed=seed + fold)
            record(per, pooled, name, fold, n)
    out = pd.DataFrame(rows)
    if return_per_perturbation:
        return out, _front(pd.concat(per_rows, ignore_index=True), ["strategy", "fold", "n"])
    return out
