"""One GI class per double: a classifier on z-scored GI scores, trained on published (curated) classes.

The published Norman 2019 classes (Fig. 4f, reused by GEARS and Scouter) are curated lists, one class per double;
they are not the output of a threshold rule. :class:`GIClassifier` learns them from the scores that
:func:`perturbtools.tl.gi_scores` computes. Fitted models are stored as JSON (no pickle).
"""

from __future__ import annotations

import json
import logging
import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from ._gi_core import PRECISION_SETS

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

GI_CLASSES = ("synergy", "suppressor", "additive", "redundant", "neomorphic", "epistasis")
#: Features the classifier reads; ``c_max`` / ``c_min`` are derived from ``c1, c2`` so that a double's class does not
#: depend on the order of its two genes.
FEATURES = ("c_max", "c_min", "magnitude", "model_fit", "similarity", "equality_of_contribution", "dominance")
_DEFAULT_FILE = "gi_classifier_default.json"


def gi_features(scores: pd.DataFrame) -> pd.DataFrame:
    """Classifier features from a scores table named as :func:`perturbtools.tl.gi_scores` names its columns.

    ``c_max = max(c1, c2)`` and ``c_min = min(c1, c2)`` (order-free); the other features are the columns themselves.
    Columns the table lacks are absent from the result; infinite values become NaN.
    """
    out = {}
    if {"c1", "c2"} <= set(scores.columns):
        c = scores[["c1", "c2"]].to_numpy(np.float64)
        out["c_max"], out["c_min"] = c.max(axis=1), c.min(axis=1)
    for name in FEATURES[2:]:
        if name in scores.columns:
            out[name] = scores[name].to_numpy(np.float64)
    feats = pd.DataFrame(out, index=scores.index)
    return feats.replace([np.inf, -np.inf], np.nan)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _tree_to_dict(tree: Any) -> dict[str, list]:
    t = tree.tree_
    value = t.value[:, 0, :]
    proba = value / value.sum(axis=1, keepdims=True)
    return {
        "children_left": t.children_left.tolist(),
        "children_right": t.children_right.tolist(),
        "feature": t.feature.tolist(),
        "threshold": t.threshold.tolist(),
        "proba": proba.tolist(),
    }


def _tree_proba(tree: Mapping[str, list], x: np.ndarray) -> np.ndarray:
    """Leaf class frequencies of a fitted tree stored as arrays (sklearn's traversal: ``x <= threshold`` goes left)."""
    left, right = np.asarray(tree["children_left"]), np.asarray(tree["children_right"])
    feature, threshold = np.asarray(tree["feature"]), np.asarray(tree["threshold"])
    proba = np.asarray(tree["proba"], dtype=np.float64)
    out = np.empty((len(x), proba.shape[1]))
    for i, row in enumerate(x):
        node = 0
        while left[node] != -1:
            node = left[node] if row[feature[node]] <= threshold[node] else right[node]
        out[i] = proba[node]
    return out


class GIClassifier:
    """Single-class GI call per double from z-scored GI scores, trained on published classes.

    Two methods: ``"logistic"`` (multinomial logistic regression, class-balanced weights, ``C=1``; the default) and
    ``"tree"`` (STAMP's refinement, SPEC §7: a decision tree, depth 6, min leaf 8, min split 8). Departures from
    SPEC §7: the default is the logistic model, not the tree (on the published Norman fits the tree's
    cross-validated macro-F1 is 0.49 against 0.83; the logistic default was chosen after an exploratory CV on the
    same labelled doubles, so its figure is somewhat optimistic), and both use balanced class weights by default
    (``class_weight=None`` gives STAMP's unweighted tree). Scores are
    z-scored with the training table's mean and SD. A feature missing from the table to classify (or NaN) is set
    to the training mean (z = 0), which for the logistic model drops its term; the features used are reported in
    ``features_used_`` and a warning names the missing ones.

    Parameters
    ----------
    method
        ``"logistic"`` or ``"tree"``.
    C
        Inverse regularisation strength of the logistic model.
    class_weight
        ``"balanced"`` (weights inversely proportional to class counts) or ``None``.
    max_depth, min_samples_leaf, min_samples_split
        Tree settings (STAMP's defaults).
    rng
        Seed of the tree.

    Examples
    --------
    >>> import perturbtools as pt
    >>> clf = pt.tl.GIClassifier.default()
    >>> clf.predict(scores)  # doctest: +SKIP
    """

    def __init__(
        self,
        method: Literal["logistic", "tree"] = "logistic",
        *,
        C: float = 1.0,
        class_weight: Literal["balanced"] | None = "balanced",
        max_depth: int = 6,
        min_samples_leaf: int = 8,
        min_samples_split: int = 8,
        rng: int = 0,
    ) -> None:
        if method not in ("logistic", "tree"):
            msg = f"`method={method!r}` must be 'logistic' or 'tree'."
            raise ValueError(msg)
        self.method = method
        self.params = {
            "C": float(C),
            "class_weight": class_weight,
            "max_depth": int(max_depth),
            "min_samples_leaf": int(min_samples_leaf),
            "min_samples_split": int(min_samples_split),
            "rng": int(rng),
        }
        self.is_fitted_ = False
        self.features_used_: list[str] = []

    # ------------------------------------------------------------------ fit
    def fit(self, scores: pd.DataFrame, labels: pd.Series | Mapping[str, str]) -> GIClassifier:
        """Fit on a scores table (rows = doubles) and one published class per double.

        Parameters
        ----------
        scores
            GI scores named as :func:`perturbtools.tl.gi_scores` names them (at least two of them).
        labels
            Class per double (index / keys matching ``scores.index``); doubles without a label are ignored.
        """
        labels = pd.Series(labels, dtype=object)
        common = [d for d in scores.index if d in labels.index]
        if len(common) < 2:
            msg = f"Only {len(common)} double(s) of `scores` have a label; label names must match `scores.index`."
            raise ValueError(msg)
        y = labels.loc[common].astype(str).to_numpy()
        if len(np.unique(y)) < 2:
            msg = f"The labels hold one class only ({y[0]!r}); a classifier needs at least two."
            raise ValueError(msg)
        feats = gi_features(scores.loc[common])
        feats = feats.loc[:, feats.notna().any()]
        if feats.shape[1] < 2:
            msg = f"`scores` holds {list(feats.columns)} of the GI scores; at least two of {list(FEATURES)} are needed."
            raise ValueError(msg)
        x = feats.to_numpy()
        self.features_ = list(feats.columns)
        self.mean_ = np.nanmean(x, axis=0)
        sd = np.nanstd(x, axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        z = self._standardise(x)
        self.classes_ = sorted(np.unique(y).tolist())
        p = self.params
        if self.method == "logistic":
            from sklearn.linear_model import LogisticRegression

            est = LogisticRegression(C=p["C"], class_weight=p["class_weight"], max_iter=10_000).fit(z, y)
            self.coef_ = est.coef_ if len(self.classes_) > 2 else np.vstack([-est.coef_, est.coef_]) / 2
            self.intercept_ = (
                est.intercept_ if len(self.classes_) > 2 else np.array([-est.intercept_[0], est.intercept_[0]]) / 2
            )
        else:
            from sklearn.tree import DecisionTreeClassifier

            est = DecisionTreeClassifier(
                max_depth=p["max_depth"],
                min_samples_leaf=p["min_samples_leaf"],
                min_samples_split=p["min_samples_split"],
                class_weight=p["class_weight"],
                random_state=p["rng"],
            ).fit(z, y)
            self.tree_ = _tree_to_dict(est)
        self.n_train_ = len(y)
        self.is_fitted_ = True
        return self

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), self.mean_, x)
        return (x - self.mean_) / self.scale_

    def _design(self, scores: pd.DataFrame) -> np.ndarray:
        if not self.is_fitted_:
            msg = "This GIClassifier is not fitted: call `.fit(scores, labels)` or use `GIClassifier.default()`."
            raise RuntimeError(msg)
        feats = gi_features(scores)
        missing = [f for f in self.features_ if f not in feats.columns or feats[f].isna().all()]
        self.features_used_ = [f for f in self.features_ if f not in missing]
        if not self.features_used_:
            msg = f"`scores` holds none of the features {self.features_}; name columns as `pt.tl.gi_scores` does."
            raise KeyError(msg)
        if missing:
            warnings.warn(
                f"GIClassifier: scores lack {missing}; they are set to the training mean. Used: {self.features_used_}.",
                UserWarning,
                stacklevel=3,
            )
        x = feats.reindex(columns=self.features_).to_numpy(np.float64)
        return self._standardise(x)

    # -------------------------------------------------------------- predict
    def predict_proba(self, scores: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities per double (rows follow ``scores.index``)."""
        z = self._design(scores)
        if self.method == "logistic":
            proba = _softmax(z @ np.asarray(self.coef_).T + np.asarray(self.intercept_))
        else:
            proba = _tree_proba(self.tree_, z)
        return pd.DataFrame(proba, index=scores.index, columns=self.classes_)

    def predict(self, scores: pd.DataFrame) -> pd.Series:
        """One class per double: the most probable one."""
        proba = self.predict_proba(scores)
        return proba.idxmax(axis=1).rename("gi_class")

    # ------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description of the fitted classifier."""
        if not self.is_fitted_:
            msg = "Fit the classifier before saving it."
            raise RuntimeError(msg)
        out: dict[str, Any] = {
            "format": "perturbtools.GIClassifier/1",
            "method": self.method,
            "params": self.params,
            "features": self.features_,
            "classes": self.classes_,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "n_train": self.n_train_,
            "meta": getattr(self, "meta_", {}),
        }
        if self.method == "logistic":
            out["coef"] = np.asarray(self.coef_).tolist()
            out["intercept"] = np.asarray(self.intercept_).tolist()
        else:
            out["tree"] = self.tree_
        return out

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> GIClassifier:
        """Rebuild a classifier written by :meth:`to_dict`."""
        if state.get("format") != "perturbtools.GIClassifier/1":
            msg = f"Not a perturbtools GIClassifier description (format {state.get('format')!r})."
            raise ValueError(msg)
        clf = cls(state["method"], **state["params"])
        clf.features_ = list(state["features"])
        clf.classes_ = list(state["classes"])
        clf.mean_ = np.asarray(state["mean"], dtype=np.float64)
        clf.scale_ = np.asarray(state["scale"], dtype=np.float64)
        clf.n_train_ = int(state["n_train"])
        clf.meta_ = dict(state.get("meta", {}))
        if clf.method == "logistic":
            clf.coef_ = np.asarray(state["coef"], dtype=np.float64)
            clf.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        else:
            clf.tree_ = dict(state["tree"])
        clf.is_fitted_ = True
        return clf

    def save(self, path: str | Path) -> None:
        """Write the classifier as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> GIClassifier:
        """Read a classifier written by :meth:`save` (JSON; nothing is unpickled)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def default(cls) -> GIClassifier:
        """The shipped classifier: multinomial logistic regression fitted on Norman et al.'s published fits.

        Trained on the Theil–Sen scores of ``regr_fits_final.csv`` (Norman 2019) for the doubles with a published
        class (``pt.data.norman2019_gi_reference``); how it was fitted and its cross-validated accuracy are in
        ``.meta_`` and ``benchmarks/results/gi_classifier_cv.csv`` (``benchmarks/bench_gi_classifier.py``).
        """
        text = resources.files("perturbtools.tl").joinpath(_DEFAULT_FILE).read_text()
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        state = f"fitted on {self.n_train_} doubles, classes {self.classes_}" if self.is_fitted_ else "not fitted"
        return f"GIClassifier(method={self.method!r}; {state})"


def threshold_classes(
    scores: pd.DataFrame, rules: Mapping[str, tuple[str, str, float, bool]] | None = None
) -> pd.Series:
    """Six-threshold baseline: the first GEARS Precision@10 set a double falls into, else ``"additive"``.

    The sets are checked in the order synergy, suppressor, additive, redundant, neomorphic, epistasis (SPEC §7).
    This is the rule that published classes are *not* made by; it is reported beside the classifier as a baseline.
    """
    from ._gi import gi_precision_sets

    sets = gi_precision_sets(scores, rules=rules)
    first = sets.idxmax(axis=1).where(sets.any(axis=1), "additive")
    return first.rename("gi_class")


class GIClassifierCV(NamedTuple):
    """Cross-validated performance of :class:`GIClassifier` and its baselines.

    ``summary``: accuracy and macro-F1 per method (mean and 2.5/97.5% quantiles over repeats); ``per_class``:
    precision, recall, F1 and support per class and method (pooled over repeats); ``confusion``: counts
    (true class x predicted class) of the first method, summed over repeats; ``predictions``: long table of every
    out-of-fold call.
    """

    summary: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    predictions: pd.DataFrame


def gi_classifier_cv(
    scores: pd.DataFrame,
    labels: pd.Series | Mapping[str, str],
    *,
    methods: Mapping[str, GIClassifier] | None = None,
    n_splits: int = 5,
    n_repeats: int = 10,
    rng: int = 0,
) -> GIClassifierCV:
    """Repeated stratified k-fold cross-validation of GI classifiers, with majority-class and threshold baselines.

    Each fold's classifier is fitted on the other folds only (z-scoring included). The baselines need no fitting
    except the majority class, taken from the training folds.

    Parameters
    ----------
    scores
        GI scores per double (``pt.tl.gi_scores`` column names).
    labels
        Published class per double.
    methods
        ``{name: unfitted GIClassifier}``; default: ``logistic`` and ``tree`` with their defaults.
    n_splits, n_repeats
        Folds (capped at the smallest class size) and repeats with reshuffled folds.
    rng
        Seed of the fold assignment.
    """
    from sklearn.metrics import f1_score, precision_recall_fscore_support
    from sklearn.model_selection import StratifiedKFold

    labels = pd.Series(labels, dtype=object)
    common = [d for d in scores.index if d in labels.index]
    y = labels.loc[common].astype(str)
    x = scores.loc[common]
    methods = dict(methods or {"logistic": GIClassifier("logistic"), "tree": GIClassifier("tree")})
    n_splits = min(n_splits, int(y.value_counts().min()))
    if n_splits < 2:
        msg = "Every class needs at least two labelled doubles for cross-validation."
        raise ValueError(msg)
    rows = []
    for rep in range(n_repeats):
        folds = StratifiedKFold(n_splits, shuffle=True, random_state=rng + rep).split(np.zeros(len(y)), y)
        for train, test in folds:
            tr, te = [common[i] for i in train], [common[i] for i in test]
            calls = {}
            for name, template in methods.items():
                clf = GIClassifier(template.method, **template.params).fit(x.loc[tr], y.loc[tr])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    calls[name] = clf.predict(x.loc[te])
            calls["majority_class"] = pd.Series(y.loc[tr].value_counts().idxmax(), index=te)
            calls["six_thresholds"] = threshold_classes(x.loc[te])
            for name, pred in calls.items():
                rows += [{"repeat": rep, "method": name, "double": d, "true": y[d], "predicted": pred[d]} for d in te]
    pred = pd.DataFrame(rows)
    summary_rows, class_rows = [], []
    classes = sorted(y.unique())
    for name, g in pred.groupby("method", sort=False):
        per_rep = g.groupby("repeat").apply(
            lambda r: pd.Series({
                "accuracy": float((r["true"] == r["predicted"]).mean()),
                "macro_f1": float(f1_score(r["true"], r["predicted"], labels=classes, average="macro", zero_division=0)),
            }),
            include_groups=False,
        )  # fmt: skip
        for metric in ("accuracy", "macro_f1"):
            v = per_rep[metric]
            summary_rows.append({
                "method": name, "metric": metric, "mean": v.mean(), "q025": v.quantile(0.025), "q975": v.quantile(0.975),
                "n_doubles": len(y), "n_splits": n_splits, "n_repeats": n_repeats,
            })  # fmt: skip
        p, r, f, s = precision_recall_fscore_support(g["true"], g["predicted"], labels=classes, zero_division=0)
        class_rows += [
            {
                "method": name,
                "class": c,
                "precision": p[i],
                "recall": r[i],
                "f1": f[i],
                "support": int(s[i]) // n_repeats,
            }
            for i, c in enumerate(classes)
        ]
    first = next(iter(methods))
    g = pred[pred["method"] == first]
    confusion = pd.crosstab(g["true"], g["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
    confusion.index.name, confusion.columns.name = "published", "predicted"
    return GIClassifierCV(pd.DataFrame(summary_rows), pd.DataFrame(class_rows), confusion, pred)


__all__ = ["FEATURES", "GI_CLASSES", "PRECISION_SETS", "GIClassifier", "gi_classifier_cv", "gi_features"]
