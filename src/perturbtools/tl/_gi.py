"""Genetic interactions as a workflow: scores from data or any model, GEARS Precision@k sets, classes, intervals."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .._keys import gi_key
from .._labelled import LabelledData
from .._predictions import read_predictions
from .._utils import _progress
from .._validation import _as_anndata
from ..metrics._evaluate import prediction_scores
from ._conformal_core import calibrate_samples
from ._gi_core import PRECISION_SETS, SCORES, gi_scores_core

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)


def _single_labels(data: LabelledData) -> dict[str, str]:
    """Label of each gene's single perturbation (``"A"`` or ``"A+ctrl"``), by target gene."""
    return {t[0]: p for p in data.perturbations if len(t := data.targets(p)) == 1}


def _gi_doubles(data: LabelledData, doubles: Sequence[str] | None, available: set[str]) -> list[str]:
    """Doubles whose two singles are labelled (observed), whatever the singles' label form (``A`` or ``A+ctrl``)."""
    singles = _single_labels(data)
    out = []
    for p in doubles if doubles is not None else data.perturbations:
        genes = data.targets(p)
        if len(genes) == 2 and all(g in singles for g in genes) and p in available:
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


def _expression_scale(adata: AnnData, data: LabelledData, labels_key: str, expression: str) -> np.ndarray:
    """Per-gene divisor of the deltas: 1 (``"log_delta"``) or the control cells' SD (``"control_z"``)."""
    if expression == "log_delta":
        return np.ones(len(data.var_names))
    if expression != "control_z":
        msg = f"`expression={expression!r}` must be 'log_delta' (GEARS) or 'control_z' (Norman)."
        raise ValueError(msg)
    params = adata.uns[labels_key]["params"]
    key, layer = params["perturbation_key"], params.get("layer", "X")
    if key not in adata.obs:
        msg = f"`expression='control_z'` needs the cells: `adata.obs[{key!r}]` is missing (label-only data?)."
        raise KeyError(msg)
    X = adata.X if layer in (None, "X") else adata.layers[layer]
    rows = np.flatnonzero((adata.obs[key].astype(str) == data.control).to_numpy())
    ctrl = X[rows]
    ctrl = ctrl.toarray() if hasattr(ctrl, "toarray") else np.asarray(ctrl)
    sd = ctrl.astype(np.float64).std(axis=0, ddof=1)
    return np.where(sd > 0, sd, np.inf)  # genes constant in controls get z = 0 (and are dropped by min_mean > 0)


def _check_n_genes(n_genes: dict[str, int], min_genes: int, min_mean: float) -> None:
    low = {p: n for p, n in n_genes.items() if n < min_genes}
    if low:
        warnings.warn(
            f"GI scores of {len(low)} double(s) use fewer than `min_genes={min_genes}` genes (e.g. {dict(list(low.items())[:3])}): "
            f"Theil-Sen and distance correlations are unstable on few genes. Lower `min_mean={min_mean}` or measure more genes.",
            UserWarning,
            stacklevel=3,
        )


def gi_scores(
    adata: AnnData,
    key: str | None = None,
    *,
    labels_key: str = "deg",
    doubles: Sequence[str] | None = None,
    singles: Literal["observed", "predicted"] = "observed",
    expression: Literal["log_delta", "control_z"] = "log_delta",
    model_fit: Literal["pearson", "dcor"] = "pearson",
    min_mean: float = 0.0,
    min_genes: int = 100,
    max_subpopulation: int = 100_000,
    key_added: str | None = None,
    inplace: bool = False,
    show_progress_bar: bool | None = None,
) -> pd.DataFrame | None:
    """Genetic-interaction scores of every double whose two singles were observed (SPEC §7).

    Scores come from observed means (``key=None``) or from any model's predictions under ``key`` (doubles from the
    predictions; singles observed, or predicted with ``singles="predicted"``), through the same code path.

    Definitions (Norman et al. 2019; GEARS): ``c1, c2`` are the Theil–Sen coefficients without intercept of
    ``d_AB`` on ``[d_A, d_B]``; ``magnitude = sqrt(c1² + c2²)`` (L2 norm: a literal sum ``d_A + d_B`` has magnitude
    √2 ≈ 1.41, and the published additive doubles have median magnitude ≈ 1.07, synergy ≈ 1.39, suppressor ≈ 0.75);
    ``model_fit`` is Pearson (GEARS) or distance correlation (Norman) of the fit with ``d_AB``; ``similarity =
    dcor([d_A, d_B], d_AB)``; ``equality_of_contribution = min(dcor(d_A, d_AB), dcor(d_B, d_AB)) / max(...)``;
    ``dominance = |log10(|c1| / |c2|)|``.

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
    expression
        ``"log_delta"``: mean log expression minus the control mean (GEARS). ``"control_z"``: that delta divided by
        the control cells' SD per gene (Norman et al. z-normalise each gene to the control cells; they did so on
        UMI-normalised counts, here it is done on the labels' ``X``). Needs the cells.
    model_fit
        ``"pearson"`` (GEARS) or ``"dcor"`` (Norman) for the model-fit score.
    min_mean
        Genes with control mean above this are used (targets always excluded). GEARS uses its high-mean genes
        (2,967 of 5,045 in Norman); the default ``0`` keeps every gene expressed in the controls. The number of
        genes used is written beside every score (``n_genes``).
    min_genes
        Warn when a double is scored on fewer genes than this.
    max_subpopulation
        Theil–Sen subsets (1e5 in Norman/GEARS).
    key_added
        Where ``inplace=True`` stores the table: ``adata.uns[key_added]`` (default ``f"{key or labels_key}_gi"``).
    inplace
        Store the table and return ``None``; by default return it and leave ``adata`` unchanged.
    show_progress_bar
        Progress bar over doubles.

    Returns
    -------
    DataFrame indexed by double with ``gene_a, gene_b``, the scores ``c1, c2, magnitude, model_fit, similarity,
    equality_of_contribution, dominance`` and ``n_genes``; ``None`` with ``inplace=True``.
    """
    if singles not in ("observed", "predicted"):
        msg = f"`singles` must be 'observed' or 'predicted', not {singles!r}."
        raise ValueError(msg)
    adata = _as_anndata(adata)
    data = LabelledData.from_adata(adata, labels_key)
    scale = _expression_scale(adata, data, labels_key, expression)
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
        delta_of = {**observed, **{p: d for p, d in predicted.items() if _is_double(data, p) or singles == "predicted"}}
        if singles == "predicted":
            single = _single_labels(data)
            missing = {single[g] for p in _gi_doubles(data, doubles, available) for g in data.targets(p)} - set(
                predicted
            )
            if missing:
                msg = f"`singles='predicted'` but singles {sorted(missing)[:10]} were not predicted under {key!r}."
                raise KeyError(msg)
    todo = _gi_doubles(data, doubles, available)
    if not todo:
        n_doubles = sum(_is_double(data, p) for p in data.perturbations)
        msg = (
            f"No double with both singles observed (and, for predictions, predicted) to score: {n_doubles} labelled "
            f"double(s), {len(_single_labels(data))} labelled single(s) (delimiter {data.delimiter!r}, control "
            f"{data.control!r}). Doubles are labels such as 'A{data.delimiter}B' and singles 'A' or "
            f"'A{data.delimiter}{data.control}'; check `delimiter=`/`control=` of `pp.deg_labels`."
        )
        raise ValueError(msg)
    single = _single_labels(data)
    masks = _gene_mask(data, todo, min_mean)
    _check_n_genes({p: int(m.sum()) for p, m in masks.items()}, min_genes, min_mean)
    rows = {}
    for p in _progress(todo, show_progress_bar=show_progress_bar, desc="GI scores"):
        a, b = data.targets(p)
        m = masks[p]
        d_a, d_b, d_ab = (delta_of[q][m] / scale[m] for q in (single[a], single[b], p))
        rows[p] = {
            "gene_a": a,
            "gene_b": b,
            **gi_scores_core(d_a, d_b, d_ab, model_fit=model_fit, max_subpopulation=max_subpopulation),
            "n_genes": int(m.sum()),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "perturbation"
    if not inplace:
        return out
    adata.uns[key_added or gi_key(key or labels_key)] = out
    return None


def _is_double(data: LabelledData, perturbation: str) -> bool:
    return len(data.targets(perturbation)) == 2


def gi_precision_sets(
    scores: pd.DataFrame, *, rules: Mapping[str, tuple[str, str, float, bool]] | None = None
) -> pd.DataFrame:
    r"""GEARS' Precision@10 evaluation sets: which doubles count as "true" members of each subtype (they overlap).

    synergy: magnitude > 1.15; suppressor: magnitude < 1; additive: \|magnitude − 1\| < 0.25; redundant:
    similarity > 0.85; neomorphic: model fit < 0.88; epistasis: equality of contribution < 0.28 (GEARS' figure
    code; ``PRECISION_SETS_OLD`` holds an older evaluation's values). These define the sets that
    :func:`gi_precision_at_k` ranks against; they are not class labels (a double falls in about two sets): for one
    class per double use :class:`GIClassifier`.

    Returns
    -------
    Boolean DataFrame, one column per subtype.
    """
    rules = PRECISION_SETS if rules is None else rules
    values = scores.assign(additivity_gap=(scores["magnitude"] - 1).abs())
    ops = {">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal}
    return pd.DataFrame({name: ops[op](values[s], t) for name, (s, op, t, _) in rules.items()})


def gi_subtypes(
    scores: pd.DataFrame, *, rules: Mapping[str, tuple[str, str, float, bool]] | None = None
) -> pd.DataFrame:
    """Deprecated name of :func:`gi_precision_sets` (those sets overlap and are not classes)."""
    warnings.warn(
        "`pt.tl.gi_subtypes` is renamed `pt.tl.gi_precision_sets` (GEARS' overlapping Precision@10 sets, not "
        "classes); for one class per double use `pt.tl.GIClassifier.default().predict(scores)`.",
        DeprecationWarning,
        stacklevel=2,
    )
    return gi_precision_sets(scores, rules=rules)


def _ranking_score(scores: pd.DataFrame, subtype: str) -> pd.Series:
    score, _, _, high_first = PRECISION_SETS[subtype]
    values = (scores["magnitude"] - 1).abs() if score == "additivity_gap" else scores[score]
    return values if high_first else -values


def gi_precision_at_k(predicted: pd.DataFrame, observed: pd.DataFrame, *, k: int = 10) -> pd.Series:
    """GEARS-style Precision@k per subtype.

    The share of the ``k`` doubles ranked most typical of a subtype by ``predicted`` scores that are members of the
    subtype's set (:func:`gi_precision_sets`) by ``observed`` scores. ``k`` is capped at the number of doubles;
    ``.attrs`` holds ``k_requested``, ``k_used`` and ``n_doubles``, and a capped ``k`` is logged. With ``k_used``
    equal to the number of doubles every model selects all doubles and scores the same: compare score agreement
    (:func:`gi_score_agreement`) instead.
    """
    common = predicted.index.intersection(observed.index)
    truth = gi_precision_sets(observed.loc[common])
    k_used = min(k, len(common))
    if k_used < k:
        logger.warning("Precision@%d: k capped at %d (only %d doubles).", k, k_used, len(common))
    out = {}
    for subtype in PRECISION_SETS:
        top = _ranking_score(predicted.loc[common], subtype).sort_values(ascending=False).index[:k_used]
        out[subtype] = float(truth.loc[top, subtype].mean()) if len(top) else np.nan
    res = pd.Series(out, name=f"precision@{k_used}")
    res.attrs.update(k_requested=k, k_used=k_used, n_doubles=len(common))
    return res


def gi_score_agreement(
    predicted: pd.DataFrame, observed: pd.DataFrame, *, scores: Sequence[str] = SCORES
) -> pd.DataFrame:
    """Agreement of predicted with observed GI scores over the doubles both hold: Spearman, MAE and ``n`` per score.

    Spearman is undefined (NaN, with ``reason``) below 3 doubles or for a constant score.
    """
    from scipy.stats import spearmanr

    common = predicted.index.intersection(observed.index)
    rows = []
    for s in scores:
        if s not in predicted.columns or s not in observed.columns:
            continue
        p = predicted.loc[common, s].replace([np.inf, -np.inf], np.nan)
        o = observed.loc[common, s].replace([np.inf, -np.inf], np.nan)
        ok = p.notna() & o.notna()
        p, o = p[ok].to_numpy(), o[ok].to_numpy()
        reason = ""
        if len(p) < 3:
            reason = f"{len(p)} doubles (< 3)"
        elif np.ptp(p) == 0 or np.ptp(o) == 0:
            reason = "constant scores"
        rho = np.nan if reason else float(spearmanr(p, o).statistic)
        mae = float(np.mean(np.abs(p - o))) if len(p) else np.nan
        rows.append({"score": s, "spearman": rho, "mae": mae, "n": len(p), "reason": reason})
    return pd.DataFrame(rows).set_index("score")


def gi_interval_coverage(intervals: dict[str, pd.DataFrame], observed: pd.DataFrame) -> pd.DataFrame:
    """Share of doubles whose observed GI score lies in each method's interval, with a Clopper-Pearson 95% CI.

    Parameters
    ----------
    intervals
        ``{method: gi_intervals output}`` (long: ``perturbation, score, low, high``).
    observed
        :func:`gi_scores` of the same doubles from observed expression.

    Returns
    -------
    DataFrame indexed by (score, method): ``coverage, ci_low, ci_high, mean_width, n_doubles`` (doubles whose
    observed score and interval are finite).
    """
    from scipy.stats import binomtest

    rows = []
    for method, iv in intervals.items():
        for score, g in iv.groupby("score", sort=False):
            g = g.set_index("perturbation")
            obs = observed.loc[g.index, score].replace([np.inf, -np.inf], np.nan)
            ok = obs.notna() & g["low"].notna() & g["high"].notna()
            inside = ((obs >= g["low"]) & (obs <= g["high"]))[ok]
            n, k = int(ok.sum()), int(inside.sum())
            ci = binomtest(k, n).proportion_ci(method="exact") if n else None
            rows.append({
                "method": method, "score": score, "coverage": k / n if n else np.nan,
                "ci_low": ci.low if ci else np.nan, "ci_high": ci.high if ci else np.nan,
                "mean_width": float((g["high"] - g["low"])[ok].mean()) if n else np.nan, "n_doubles": n,
            })  # fmt: skip
    return pd.DataFrame(rows).set_index(["score", "method"]).sort_index()


def gi_accuracy(predicted: pd.Series, labels: pd.Series | Mapping[str, str]) -> pd.Series:
    """Accuracy and macro-F1 of one class per double against published classes (over the doubles both hold)."""
    from sklearn.metrics import f1_score

    labels = pd.Series(labels, dtype=object)
    common = [d for d in predicted.index if d in labels.index]
    if not common:
        msg = "No predicted double has a published label; names must match (alphabetical 'A+B')."
        raise ValueError(msg)
    y, p = labels.loc[common].astype(str), predicted.loc[common].astype(str)
    return pd.Series({
        "accuracy": float((y == p).mean()),
        "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
        "n": len(common),
    })  # fmt: skip


def _posterior_gi_draws(
    model: Any,
    doubles: Sequence[str] | None,
    *,
    n_samples: int,
    expression: str,
    model_fit: str,
    min_mean: float,
    max_subpopulation: int,
    rng: int | np.random.Generator | None,
    show_progress_bar: bool | None,
    desc: str,
    conformal: tuple[float, Mapping] | None = None,
) -> pd.DataFrame:
    """GI scores of joint posterior samples of the doubles' deltas against the observed singles.

    Long table: one row per double and sample, the scores and ``perturbation``.

    ``conformal = (level, {level: (lower, upper)})`` (:func:`~perturbtools.tl.conformal_intervals` output, genes x
    doubles) rescales the draws with :func:`calibrate_samples` first.
    """
    data = model.data_
    doubles = _gi_doubles(data, doubles, set(doubles or data.perturbations))
    if not doubles:
        msg = "No double with both singles observed to score."
        raise ValueError(msg)
    labels_key = model.data_keys_["labels_key"] if hasattr(model, "data_keys_") else "deg"
    scale = _expression_scale(model.adata, data, labels_key, expression)
    samples = model.sample(doubles, n_samples, rng=rng)  # (S, M, G)
    if conformal is not None:
        level, intervals = conformal
        if float(level) not in intervals:
            msg = (
                f"`conformal` has no {level} interval (levels {sorted(intervals)}); compute it with `levels=[{level}]`."
            )
            raise KeyError(msg)
        lower, upper = intervals[float(level)]
        missing = [d for d in doubles if d not in lower.columns]
        if missing:
            msg = f"`conformal` has no interval for {missing[:5]}; pass them as `test=` to `conformal_intervals`."
            raise KeyError(msg)
        mean_delta, var = model.predict_distribution(doubles)
        control = data.control_mean[None, :]  # intervals are on expression means; draws are deltas
        samples = calibrate_samples(
            samples, mean_delta, np.sqrt(var), lower[doubles].to_numpy(np.float64).T - control,
            upper[doubles].to_numpy(np.float64).T - control, level,
        )  # fmt: skip
    masks = _gene_mask(data, doubles, min_mean)
    observed = dict(zip(data.perturbations, data.delta, strict=True))
    single = _single_labels(data)
    frames = []
    for j, p in enumerate(_progress(doubles, show_progress_bar=show_progress_bar, desc=desc)):
        a, b = (single[g] for g in data.targets(p))
        m = masks[p]
        draws = pd.DataFrame([
            gi_scores_core(observed[a][m] / scale[m], observed[b][m] / scale[m], samples[s, j][m] / scale[m],
                           model_fit=model_fit, max_subpopulation=max_subpopulation)
            for s in range(n_samples)
        ])  # fmt: skip
        frames.append(draws.assign(perturbation=p))
    return pd.concat(frames, ignore_index=True)


def gi_intervals(
    model: Any,
    doubles: Sequence[str] | None = None,
    *,
    n_samples: int = 100,
    level: float = 0.9,
    expression: Literal["log_delta", "control_z"] = "log_delta",
    model_fit: Literal["pearson", "dcor"] = "pearson",
    min_mean: float = 0.0,
    max_subpopulation: int = 20_000,
    conformal: Mapping[float, tuple[pd.DataFrame, pd.DataFrame]] | None = None,
    rng: int | np.random.Generator | None = 0,
    show_progress_bar: bool | None = None,
) -> pd.DataFrame:
    """Intervals for GI scores from a model's posterior (e.g. :class:`~perturbtools.tl.GPModel`).

    Joint posterior samples of the doubles' deltas (``model.sample``) are scored against the observed singles
    (same definitions as :func:`gi_scores`); each score's central ``level`` interval and median over samples are
    reported.

    With ``conformal``, the output of :func:`~perturbtools.tl.conformal_intervals` for these doubles
    (``test=doubles``, ``inplace=False``, ``level`` among its levels), each double's and gene's draws are first
    moved and rescaled so that their central ``level`` interval is the conformal one (``calibrate_samples``):
    the expression uncertainty behind the GI intervals is then calibrated over held-out perturbations, not the GP's
    own posterior, which is over-confident on the real data (``benchmarks/results/conformal_coverage.csv``).

    Returns
    -------
    Long DataFrame: ``perturbation, score, median, low, high``.
    """
    draws = _posterior_gi_draws(
        model, doubles, n_samples=n_samples, expression=expression, model_fit=model_fit, min_mean=min_mean,
        max_subpopulation=max_subpopulation, rng=rng, show_progress_bar=show_progress_bar, desc="GI intervals",
        conformal=None if conformal is None else (level, conformal),
    )  # fmt: skip
    rows = []
    for p, g in draws.groupby("perturbation", sort=False):
        for score in SCORES:
            q = g[score].replace([np.inf, -np.inf], np.nan).quantile([0.5, 0.5 - level / 2, 0.5 + level / 2])
            rows.append({"perturbation": p, "score": score, "median": q.iloc[0], "low": q.iloc[1], "high": q.iloc[2]})
    return pd.DataFrame(rows)


def gi_class_proba(
    model: Any,
    doubles: Sequence[str] | None = None,
    *,
    classifier: Any = None,
    n_samples: int = 100,
    expression: Literal["log_delta", "control_z"] = "log_delta",
    model_fit: Literal["pearson", "dcor"] = "pearson",
    min_mean: float = 0.0,
    max_subpopulation: int = 20_000,
    conformal: tuple[float, Mapping[float, tuple[pd.DataFrame, pd.DataFrame]]] | None = None,
    rng: int | np.random.Generator | None = 0,
    show_progress_bar: bool | None = None,
) -> pd.DataFrame:
    """Probability of each GI class per double, carried through from a model's posterior.

    GI scores are computed for each joint posterior sample of the doubles' deltas (as in :func:`gi_intervals`),
    each sample is classified by ``classifier`` (default :meth:`GIClassifier.default`), and the share of samples per
    class is reported. This carries the posterior uncertainty of the expression into the class call. With
    ``conformal = (level, intervals)`` (``intervals`` from :func:`~perturbtools.tl.conformal_intervals`), the draws
    are calibrated first, as in :func:`gi_intervals`.

    Returns
    -------
    DataFrame doubles x classes (rows sum to 1), plus ``call`` (the most frequent class) and ``n_samples``.
    """
    from ._gi_classifier import GIClassifier

    clf = GIClassifier.default() if classifier is None else classifier
    draws = _posterior_gi_draws(
        model, doubles, n_samples=n_samples, expression=expression, model_fit=model_fit, min_mean=min_mean,
        max_subpopulation=max_subpopulation, rng=rng, show_progress_bar=show_progress_bar, desc="GI classes",
        conformal=conformal,
    )  # fmt: skip
    calls = clf.predict(draws).to_numpy()
    table = pd.crosstab(draws["perturbation"].to_numpy(), calls, normalize="index")
    table = table.reindex(columns=clf.classes_, fill_value=0.0)
    table.index.name, table.columns.name = "perturbation", None
    table = table.loc[list(dict.fromkeys(draws["perturbation"]))]
    return table.assign(call=table.idxmax(axis=1), n_samples=n_samples)
