"""Conformal prediction intervals for any model's mean predictions, over unseen perturbations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .._predictions import write_predictions
from .._utils import _as_rng, _progress
from .._validation import _as_anndata
from ..metrics._evaluate import prediction_scores
from ..pp._split import kfold_perturbations
from ._base import LabelledData, ModelSpec, unpack_spec
from ._conformal_core import cv_plus, split_conformal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

#: nominal levels of the intervals
LEVELS = (0.5, 0.8, 0.9, 0.95)


def _fold_outputs(model, perts: list[str], data: LabelledData, scale: str | None, train: list[str]):
    """Mean predictions (perturbations x genes) and their scales from one fitted model."""
    preds = model.predict(perts, inplace=False)
    mean = prediction_scores(preds, data, perts).mean
    if scale == "posterior":
        if preds.mean_var is None:
            msg = f"`scale='posterior'` needs a model with predictive variance; {type(model).__name__} has none."
            raise ValueError(msg)
        s = np.sqrt(preds.mean_var[perts].to_numpy(np.float64).T)
    elif scale == "gene_sd":  # SD of each gene's delta over this model's training perturbations
        sd = data.delta[data.index(train)].std(axis=0)
        floor = 1e-3 * (float(np.median(sd[sd > 0])) if (sd > 0).any() else 1.0)  # genes that never varied
        s = np.broadcast_to(np.maximum(sd, floor), mean.shape)
    else:
        s = np.ones_like(mean)
    return mean, np.asarray(s, dtype=np.float64)


def conformal_intervals(
    adata: AnnData,
    model: ModelSpec,
    *,
    train: Sequence[str] | None = None,
    test: Sequence[str] | None = None,
    labels_key: str = "deg",
    levels: Sequence[float] = LEVELS,
    method: Literal["cv+", "split"] = "cv+",
    n_splits: int = 5,
    calibration_fraction: float = 0.3,
    scale: Literal["auto", "posterior", "gene_sd"] | None = "auto",
    rng: int | np.random.Generator | None = 0,
    key_added: str | None = None,
    inplace: bool = True,
    show_progress_bar: bool | None = None,
) -> dict[float, tuple[pd.DataFrame, pd.DataFrame]] | None:
    """Conformal prediction intervals of any model's predicted means for unseen perturbations.

    Perturbations are the exchangeable units: calibration perturbations are held out whole, so the intervals cover
    a new perturbation's observed mean with probability about ``level`` (marginally over perturbations, per gene).
    Conformity scores are normalised, ``|y - mu| / s``, so widths adapt per gene (and per perturbation for a GP):
    ``s`` is the GP posterior SD (``scale="posterior"``), else the SD of the gene's delta over the model's training
    perturbations (``"gene_sd"``); ``"auto"`` picks the first available; ``None`` gives the naive per-gene
    absolute-residual interval.

    ``method="cv+"`` (Barber et al. 2021): ``n_splits`` models, each fitted without one fold of ``train``, score
    their fold and predict ``test``; finite-sample coverage at least ``2 level - 1`` and about ``level`` in practice.
    ``method="split"``: one model on ``1 - calibration_fraction`` of ``train``, scores on the rest; coverage at
    least ``level``. Levels above ``n / (n + 1)`` (n calibration perturbations) give infinite bounds.

    Parameters
    ----------
    adata
        Labelled AnnData (with cells' means: label-only data have no expression to cover).
    model
        Model class or ``(cls, init_kwargs[, fit_kwargs])`` as in :func:`cross_validate`.
    train, test
        Training (and calibration) perturbations, and perturbations to predict; default: the split's ``train``
        (else all labelled ones) and ``test``.
    labels_key
        ``key_added`` of the labels.
    levels
        Nominal coverages.
    method, n_splits, calibration_fraction
        See above.
    scale
        Normalisation of the conformity scores.
    rng
        Seed of the folds / calibration split and of the models.
    key_added
        Where ``inplace=True`` writes the point predictions (the model fitted on all of ``train``) and the
        intervals (default: the model's name): ``varm[f"{key_added}_lower90"]`` etc.
    inplace
        Write into ``adata`` and return ``None`` (default, like a model's ``predict``); else return the intervals
        and leave ``adata`` unchanged (the point-prediction fit is then skipped).
    show_progress_bar
        Progress bar over fits.

    Returns
    -------
    With ``inplace=False``, ``{level: (lower, upper)}``, genes x test perturbations frames.
    """
    adata = _as_anndata(adata)
    cls, init_kwargs, fit_kwargs = unpack_spec(model)
    data = LabelledData.from_adata(adata, labels_key)
    if data.label_only:
        msg = "Conformal intervals cover predicted means; these labels have no cells (label-only data)."
        raise ValueError(msg)
    split = adata.uns.get("split", {}) if "split" in adata.uns else {}
    train = [str(p) for p in (train if train is not None else split.get("train", data.perturbations))]
    test = [str(p) for p in (test if test is not None else split.get("test", []))]
    if not test:
        msg = "No test perturbations to predict: pass `test=` (or make a split with `pt.pp.split_perturbations`)."
        raise ValueError(msg)
    if set(train) & set(test):
        msg = f"`train` and `test` overlap ({sorted(set(train) & set(test))[:5]}); calibration needs held-out units."
        raise ValueError(msg)
    seed = int(_as_rng(rng).integers(2**31))
    if scale == "auto":
        scale = "posterior" if getattr(cls, "predicts_variance", False) else "gene_sd"

    def fit(perts: list[str]):
        return cls(adata, labels_key=labels_key, **init_kwargs).fit(perts, rng=seed, **fit_kwargs)

    if method == "cv+":
        folds = list(kfold_perturbations(train, n_splits, rng=seed))
    elif method == "split":
        order = np.random.default_rng(seed).permutation(len(train))
        n_cal = max(1, round(calibration_fraction * len(train)))
        folds = [([train[i] for i in order[n_cal:]], [train[i] for i in order[:n_cal]])]
    else:
        msg = f"`method={method!r}`: use 'cv+' or 'split'."
        raise ValueError(msg)
    pred_by_fold, scale_by_fold, scores, fold_of = [], [], [], []
    for k, (fit_on, calib) in enumerate(_progress(folds, show_progress_bar=show_progress_bar, desc="conformal")):
        m = fit(fit_on)
        mean, s = _fold_outputs(m, [*calib, *test], data, scale, fit_on)
        y = data.mean[data.index(calib)]
        scores.append(np.abs(y - mean[: len(calib)]) / s[: len(calib)])
        pred_by_fold.append(mean[len(calib) :])
        scale_by_fold.append(s[len(calib) :])
        fold_of += [k] * len(calib)
    scores_all = np.vstack(scores)
    out = {}
    for level in levels:
        if method == "cv+":
            low, high = cv_plus(np.stack(pred_by_fold), np.stack(scale_by_fold), scores_all, np.array(fold_of), level)
        else:
            low, high = split_conformal(pred_by_fold[0], scale_by_fold[0], scores_all, level)
        out[float(level)] = tuple(
            pd.DataFrame(b.T.astype(np.float32), index=data.var_names, columns=test) for b in (low, high)
        )
    if not inplace:
        return out
    full = fit(train)
    preds = full.predict(test, inplace=False)
    params = {
        **full._params(),
        "conformal": {"method": method, "scale": str(scale), "n_splits": n_splits if method == "cv+" else 1,
                      "n_calibration": int(scores_all.shape[0])},
    }  # fmt: skip
    write_predictions(adata, preds, key_added or cls._default_key, params=params, intervals=out)
    return None


__all__ = ["LEVELS", "conformal_intervals"]
