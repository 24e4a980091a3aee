"""Genetic interactions as a workflow: scores from data or any model, subtypes, Precision@k, decision tree, intervals."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._keys import gi_key
from .._labelled import LabelledData
from .._predictions import read_predictions
from .._utils import _progress
from .._validation import _as_anndata
from ..metrics._evaluate import prediction_scores
from ._gi_core import SCORES, SUBTYPE_RULES, gi_scores_core

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)


def _gi_doubles(data: LabelledData, doubles: Sequence[str] | None, available: set[str]) -> list[str]:
    """Doubles whose two singles are labelled (observed)."""
    out = []
    for p in doubles if doubles is not None else data.perturbations:
        genes = data.targets(p)
        if len(genes) == 2 and all(g in set(data.perturbations) for g in genes) and p in available:
            out.append(p)
    return out


def _gene_mask(data: LabelledData, doubles: Sequence[str], min_mean: float) -> dict[str, np.ndarray]:
    """Genes used for each double: control mean above ``min_mean``, the double's targets excluded."""
    base = data.control_mean > min_mean
    pos = {g: i for i, g in enumerate(data.var_names)}
    masks = {}
    for p in doubles:
        m = base.copy()
        for g in data.targets(p):
            if g in pos:
                m[pos[g]] = False
        masks[p] = m
    return masks


def gi_scores(
    adata: AnnData,
    key: str | None = None,
    *,
    labels_key: str = "deg",
    doubles: Sequence[str] | None = None,
    singles: Literal["observed", "predicted"] = "observed",
    model_fit: Literal["pearson", "dcor"] = "pearson",
    min_mean: float = 0.1,
    max_subpopulation: int = 100_000,
    key_added: str | None = None,
    show_progress_bar: bool | None = None,
) -> pd.DataFrame:
    """Genetic-interaction scores of every double whose two singles were observed (SPEC §7).

    Scores come from observed means (``key=None``) or from any model's predictions under ``key`` (doubles from the
    predictions; singles observed, or predicted with ``singles="predicted"``).

    Parameters
    ----------
    adata
        AnnData labelled by :func:`perturbtools.pp.deg_labels` (and with predictions under ``key``).
    key
        ``key_added`` of a model's predictions; ``None`` for the observed data.
    labels_key
        ``key_added`` of the labels.
    doubles
        Doubles to score; default: every labelled double whose singles are labelled (and predicted, for ``key``).
    singles
        Where the singles' deltas come from when scoring predictions.
    model_fit
        ``"pearson"`` (GEARS) or ``"dcor"`` (Norman) for the model-fit score.
    min_mean
        Genes with control mean log expression above this are used (targets always excluded).
    max_subpopulation
        Theil–Sen subsets (1e5 in Norman/GEARS).
    key_added
        Store the table in ``adata.uns[key_added]`` (default ``f"{key or labels_key}_gi"``).
    show_progress_bar
        Progress bar over doubles.

    Returns
    -------
    DataFrame indexed by double with ``gene_a, gene_b`` and the scores ``c1, c2, magnitude, model_fit,
    similarity, equality_of_contribution, dominance`` (see :func:`perturbtools.tl.gi_scores_core`).
    """
    adata = _as_anndata(adata)
    data = LabelledData.from_adata(adata, labels_key)
    if key is None:
        available = set(data.perturbations)
        delta_of = dict(zip(data.perturbations, data.delta, strict=True))
    else:
        preds = read_predictions(adata, key)
        available = set(preds.perturbations) & set(data.perturbations)
        pred_perts = [p for p in preds.perturbations if p in set(data.perturbations)]
        mean = prediction_scores(preds, data, pred_perts).mean
        predicted = dict(zip(pred_perts, mean - data.control_mean, strict=True))
        observed = dict(zip(data.perturbations, data.delta, strict=True))
        delta_of = {**observed, **{p: d for p, d in predicted.items() if "+" in p or singles == "predicted"}}
        if singles == "predicted":
            missing = {g for p in _gi_doubles(data, doubles, available) for g in data.targets(p)} - set(predicted)
            if missing:
                msg = f"`singles='predicted'` but singles {sorted(missing)[:10]} were not predicted under {key!r}."
                raise KeyError(msg)
    todo = _gi_doubles(data, doubles, available)
    if not todo:
        msg = "No double with both singles observed (and, for predictions, predicted) to score."
        raise ValueError(msg)
    masks = _gene_mask(data, todo, min_mean)
    rows = {}
    for p in _progress(todo, show_progress_bar=show_progress_bar, desc="GI scores"):
        a, b = data.targets(p)
        m = masks[p]
        rows[p] = {
            "gene_a": a,
            "gene_b": b,
            **gi_scores_core(
                delta_of[a][m], delta_of[b][m], delta_of[p][m], model_fit=model_fit, max_subpopulation=max_subpopulation
            ),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "perturbation"
    adata.uns[key_added or gi_key(key or labels_key)] = out
    return out


def gi_subtypes(scores: pd.DataFrame, *, rules: dict[str, tuple[str, str, float, bool]] | None = None) -> pd.DataFrame:
    r"""Subtype calls with the GEARS thresholds (a double can carry several).

    synergy: magnitude > 1.15; suppressor: magnitude < 1; additive: \\|magnitude − 1\\| < 0.25; redundant:
    similarity > 0.85; neomorphic: model fit < 0.88; epistasis: equality of contribution < 0.28. Note that with
    ``magnitude = sqrt(c1² + c2²)`` a plain sum ``d_A + d_B`` has magnitude √2 and is called a synergy; "additive"
    here means a combined magnitude close to that of one single.

    Returns
    -------
    Boolean DataFrame, one column per subtype.
    """
    rules = SUBTYPE_RULES if rules is None else rules
    values = scores.assign(additivity_gap=(scores["magnitude"] - 1).abs())
    return pd.DataFrame({name: values[s] > t if op == ">" else values[s] < t for name, (s, op, t, _) in rules.items()})


def _ranking_score(scores: pd.DataFrame, subtype: str) -> pd.Series:
    score, _, _, high_first = SUBTYPE_RULES[subtype]
    values = (scores["magnitude"] - 1).abs() if score == "additivity_gap" else scores[score]
    return values if high_first else -values


def gi_precision_at_k(predicted: pd.DataFrame, observed: pd.DataFrame, *, k: int = 10) -> pd.Series:
    """Precision@k per subtype.

    The share of the ``k`` doubles ranked most typical of a subtype by ``predicted`` scores that are true members by
    ``observed`` scores (``k`` capped at the number of doubles).
    """
    common = predicted.index.intersection(observed.index)
    truth = gi_subtypes(observed.loc[common])
    out = {}
    for subtype in SUBTYPE_RULES:
        top = _ranking_score(predicted.loc[common], subtype).sort_values(ascending=False).index[: min(k, len(common))]
        out[subtype] = float(truth.loc[top, subtype].mean()) if len(top) else np.nan
    return pd.Series(out, name=f"precision@{k}")


class GIClassifier:
    """STAMP's refinement: a decision tree on z-scored GI scores from true expression, applied to predicted scores.

    One multi-output tree (depth 6, min leaf 8, min split 8 by default) predicts every subtype call at once.

    Parameters
    ----------
    max_depth, min_samples_leaf, min_samples_split
        Tree settings (STAMP's defaults).
    rng
        Seed of the tree.
    """

    features = ("magnitude", "model_fit", "similarity", "equality_of_contribution", "dominance")

    def __init__(
        self, *, max_depth: int = 6, min_samples_leaf: int = 8, min_samples_split: int = 8, rng: int = 0
    ) -> None:
        from sklearn.tree import DecisionTreeClassifier

        self.tree_ = DecisionTreeClassifier(
            max_depth=max_depth,
            min_samples_leaf=min_samples_leaf,
            min_samples_split=min_samples_split,
            random_state=rng,
        )

    def _z(self, scores: pd.DataFrame) -> np.ndarray:
        x = scores[list(self.features)].replace([np.inf, -np.inf], np.nan).to_numpy(np.float64)
        x = np.where(np.isnan(x), self.mean_, x)
        return (x - self.mean_) / self.scale_

    def fit(self, observed: pd.DataFrame) -> GIClassifier:
        """Fit on scores from true expression; targets are their threshold calls."""
        x = observed[list(self.features)].replace([np.inf, -np.inf], np.nan).to_numpy(np.float64)
        self.mean_ = np.nanmean(x, axis=0)
        sd = np.nanstd(x, axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        self.subtypes_ = list(SUBTYPE_RULES)
        self.tree_.fit(self._z(observed), gi_subtypes(observed)[self.subtypes_].to_numpy())
        return self

    def predict(self, scores: pd.DataFrame) -> pd.DataFrame:
        """Subtype calls (bool DataFrame) for scores from predicted expression."""
        pred = self.tree_.predict(self._z(scores))
        return pd.DataFrame(pred.astype(bool), index=scores.index, columns=self.subtypes_)


def gi_accuracy(predicted_calls: pd.DataFrame, observed: pd.DataFrame) -> pd.Series:
    """Accuracy per subtype of predicted calls against the calls from observed scores."""
    common = predicted_calls.index.intersection(observed.index)
    truth = gi_subtypes(observed.loc[common])
    return (predicted_calls.loc[common, truth.columns] == truth).mean().rename("accuracy")


def gi_intervals(
    model: Any,
    doubles: Sequence[str] | None = None,
    *,
    n_samples: int = 100,
    level: float = 0.9,
    model_fit: Literal["pearson", "dcor"] = "pearson",
    min_mean: float = 0.1,
    max_subpopulation: int = 20_000,
    rng: int | np.random.Generator | None = 0,
    show_progress_bar: bool | None = None,
) -> pd.DataFrame:
    """Intervals for GI scores from a model's posterior (e.g. :class:`~perturbtools.tl.GPModel`).

    Joint posterior samples of the doubles' deltas (``model.sample``) are scored against the observed singles;
    each score's central ``level`` interval and median over samples are reported.

    Returns
    -------
    Long DataFrame: ``perturbation, score, median, low, high``.
    """
    data = model.data_
    doubles = _gi_doubles(data, doubles, set(doubles or data.perturbations))
    if not doubles:
        msg = "No double with both singles observed to score."
        raise ValueError(msg)
    samples = model.sample(doubles, n_samples, rng=rng)  # (S, M, G)
    masks = _gene_mask(data, doubles, min_mean)
    observed = dict(zip(data.perturbations, data.delta, strict=True))
    rows = []
    for j, p in enumerate(_progress(doubles, show_progress_bar=show_progress_bar, desc="GI intervals")):
        a, b = data.targets(p)
        m = masks[p]
        draws = pd.DataFrame([
            gi_scores_core(observed[a][m], observed[b][m], samples[s, j][m], model_fit=model_fit, max_subpopulation=max_subpopulation)
            for s in range(n_samples)
        ])  # fmt: skip
        for score in SCORES:
            q = draws[score].replace([np.inf, -np.inf], np.nan).quantile([0.5, 0.5 - level / 2, 0.5 + level / 2])
            rows.append({"perturbation": p, "score": score, "median": q.iloc[0], "low": q.iloc[1], "high": q.iloc[2]})
    return pd.DataFrame(rows)
