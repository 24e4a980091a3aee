"""One evaluation path for every model: expression metrics, subtask metrics, rank metric, strata, CIs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from .._keys import SUBTASKS
from .._labelled import LabelledData
from .._predictions import read_intervals, read_predictions
from ..pp._deg_core import MIN_POSITIVES, fold_change, mean_from_fold_change
from ..pp._split import unseen_labels
from ._core import (
    de_overlap,
    direction_agreement,
    expected_calibration_error,
    mean_ci,
    pr_auc,
    rank_metric,
    reliability,
    roc_auc,
    rowwise_mae,
    rowwise_pearson,
    rowwise_r2,
    spearman_on,
)
from ._resampling import bootstrap_ci, holm, paired_bootstrap, paired_permutation_test

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

    from .._predictions import Predictions

EXPRESSION_METRICS = (
    "pearson", "pearson_delta", "pearson_de", "pearson_de_delta", "mae", "mae_de", "mse",
    "r2_hvg", "r2_top50", "r2_large_effect", "rank",
)  # fmt: skip
#: the headline metrics of reports (per perturbation, then pooled over entries)
KEY_METRICS = (
    "pearson_delta", "pearson_de_delta", "mae_de", "r2_top50", "rank",
    "pooled_roc_auc_de", "pooled_pr_auc_de", "pooled_roc_auc_direction", "pooled_pearson_fc", "pooled_roc_auc_de_top40",
)  # fmt: skip
#: the default panels of ``pt.pl.metrics``
PLOT_METRICS = (
    "pearson_delta",
    "pearson_de_delta",
    "pooled_roc_auc_de",
    "pooled_roc_auc_direction",
    "pooled_pearson_fc",
    "rank",
)
#: cell-eval-style DE overlap at these k (``None``: the number of true DEGs)
DE_OVERLAP_KS = (20, 50, 100, None)
DE_OVERLAP_METRICS = (
    *(f"{m}_at_{'n_de' if k is None else k}" for m in ("overlap", "precision") for k in DE_OVERLAP_KS),
    "de_direction_match", "de_spearman_lfc",
)  # fmt: skip
SUBTASK_METRICS = tuple(m for subtask in SUBTASKS.values() for m in subtask.metrics)
#: counts of what a row was computed from; not metrics, so never summarised
COUNT_COLUMNS = ("n_de", "n_up", "n_down", "n_entries", "n_perturbations")


def undefined_reason(metric: str) -> str:
    """Why ``metric`` can be undefined (NaN) for a row: the rule :func:`evaluate_predictions` applies."""
    base = metric.removeprefix("pooled_").removesuffix("_top40")
    if base in SUBTASKS["de"].metrics:
        return "fewer than `min_positives` DEGs (or non-DEGs) among the scored entries"
    if base in SUBTASKS["direction"].metrics:
        return "fewer than `min_positives` up- or down-regulated DEGs"
    if base == "pearson_fc":
        return "fewer than `min_positives` DEGs, or a constant predicted or true FC (no correlation to measure)"
    if base == "mse_fc" or base in DE_OVERLAP_METRICS:
        return "fewer than `min_positives` DEGs"
    if base.startswith("rank"):
        return "fewer than 2 predictions to rank among"
    if base.startswith("pearson"):
        return "a constant prediction or truth (no correlation to measure, e.g. the control mean), or < 2 genes"
    if base.startswith("r2"):
        return "a constant truth or fewer than 2 genes in the mask"
    return "not computable for these rows"


def _enforce_minimums(table: pd.DataFrame, n_de, n_non_de, n_up, n_down, min_positives: int, suffix: str = "") -> None:
    """Set to NaN (in place) the DE, direction and FC metrics of rows with fewer than ``min_positives`` positives."""
    few_de = (np.asarray(n_de) < min_positives) | (np.asarray(n_non_de) < min_positives)
    few_dir = (np.asarray(n_up) < min_positives) | (np.asarray(n_down) < min_positives)
    few_fc = np.asarray(n_de) < min_positives
    for names, rows in (
        (SUBTASKS["de"].metrics, few_de),
        (SUBTASKS["direction"].metrics, few_dir),
        (SUBTASKS["fc"].metrics, few_fc),
    ):
        for name in names:
            if name + suffix in table:
                table.loc[rows, name + suffix] = np.nan
    if not suffix:
        for name in DE_OVERLAP_METRICS:
            if name in table:
                table.loc[few_fc, name] = np.nan


class Scores(NamedTuple):
    """What is scored for one model (perturbations x genes), and where each score came from."""

    mean: np.ndarray
    de_score: np.ndarray
    direction_score: np.ndarray
    fc: np.ndarray
    sources: dict[str, str]


def prediction_scores(preds: Predictions, data: LabelledData, perturbations: Sequence[str]) -> Scores:
    """Scores for every subtask and the expression metrics, whatever a model outputs.

    Missing outputs are derived, so every model gets every metric:

    - DE score: ``de_proba`` if predicted, else the ranking score ``|mean - mu_c|``;
    - direction score: ``direction_proba`` if predicted, else ``mean - mu_c``;
    - fold change: ``2 ** logfc`` if predicted, else STAMP's FC of the predicted mean (clipped at 0, as log1p data);
    - mean: predicted if given, else ``mu_c + de_proba * (mean implied by FC - mu_c)`` (expected value).
    """
    perts = list(perturbations)
    mu_c = data.control_mean

    def get(frame):
        return None if frame is None else frame[perts].to_numpy(np.float64).T

    mean, de, up, logfc = get(preds.mean), get(preds.de_proba), get(preds.direction_proba), get(preds.logfc)
    sources = {}
    if mean is None:
        if logfc is None:
            msg = "Predictions need at least a `mean` or a `logfc` frame."
            raise ValueError(msg)
        implied = mean_from_fold_change(2.0**logfc, mu_c, offset=data.fc_offset)
        weight = 1.0 if de is None else de
        mean = mu_c + weight * (implied - mu_c)
        sources["mean"] = "mu_c + de_proba * (mean implied by predicted FC - mu_c)"
    else:
        sources["mean"] = "predicted"
    delta = mean - mu_c
    sources["de_score"] = "predicted de_proba" if de is not None else "|predicted mean - control mean|"
    sources["direction_score"] = "predicted direction_proba" if up is not None else "predicted mean - control mean"
    sources["fc"] = "2 ** predicted logfc" if logfc is not None else "fold change of predicted mean"
    return Scores(
        mean=mean,
        de_score=np.abs(delta) if de is None else de,
        direction_score=delta if up is None else up,
        fc=fold_change(np.maximum(mean, 0.0), mu_c, offset=data.fc_offset) if logfc is None else 2.0**logfc,
        sources=sources,
    )


def _subtask_rowwise(y_de, y_up, true_fc, s: Scores, mask):
    out = {k: np.full(len(y_de), np.nan) for k in SUBTASK_METRICS}
    for i in range(len(y_de)):
        m = mask[i]
        out["roc_auc_de"][i] = roc_auc(y_de[i][m], s.de_score[i][m])
        out["pr_auc_de"][i] = pr_auc(y_de[i][m], s.de_score[i][m])
        d = m & y_de[i]
        out["roc_auc_direction"][i] = roc_auc(y_up[i][d], s.direction_score[i][d])
        out["pr_auc_direction"][i] = pr_auc(y_up[i][d], s.direction_score[i][d])
        if d.sum() >= 2:
            out["pearson_fc"][i] = rowwise_pearson(s.fc[i][d][None], true_fc[i][d][None])[0]
        if d.any():
            out["mse_fc"][i] = float(np.mean((true_fc[i][d] - s.fc[i][d]) ** 2))
    return out


def _de_overlap_rowwise(y_de, true_direction, true_abs_t, true_fc, s: Scores) -> dict[str, np.ndarray]:
    """cell-eval-style DE-overlap metrics per perturbation, from the package's own labels (see ``DE_OVERLAP_METRICS``)."""
    out = {k: np.full(len(y_de), np.nan) for k in DE_OVERLAP_METRICS}
    # the predicted direction: the sign of the predicted change, or of direction_proba - 1/2 for a model that predicts it
    up_sign = (
        s.direction_score - 0.5
        if s.sources.get("direction_score") == "predicted direction_proba"
        else s.direction_score
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        true_lfc, pred_lfc = np.log2(true_fc), np.log2(s.fc)
    for i in range(len(y_de)):
        order = np.argsort(-np.asarray(s.de_score[i], dtype=np.float64), kind="stable")  # one sort for every k
        for k in DE_OVERLAP_KS:
            name = "n_de" if k is None else k
            out[f"overlap_at_{name}"][i], out[f"precision_at_{name}"][i] = de_overlap(
                y_de[i], true_abs_t[i], s.de_score[i], k=k, pred_order=order
            )
        out["de_direction_match"][i] = direction_agreement(true_direction[i], up_sign[i])
        out["de_spearman_lfc"][i] = spearman_on(y_de[i] & np.isfinite(pred_lfc[i]), true_lfc[i], pred_lfc[i])
    return out


def _pooled(y_de, y_up, true_fc, s: Scores, mask) -> dict[str, float]:
    d = mask & y_de
    n_de, _, n_up, n_down = _class_counts(y_de, y_up, mask)
    out = {
        "roc_auc_de": roc_auc(y_de[mask], s.de_score[mask]),
        "pr_auc_de": pr_auc(y_de[mask], s.de_score[mask]),
        "roc_auc_direction": roc_auc(y_up[d], s.direction_score[d]),
        "pr_auc_direction": pr_auc(y_up[d], s.direction_score[d]),
        "pearson_fc": rowwise_pearson(s.fc[d][None], true_fc[d][None])[0] if d.sum() >= 2 else np.nan,
        "mse_fc": float(np.mean((true_fc[d] - s.fc[d]) ** 2)) if d.any() else np.nan,
        "n_entries": int(mask.sum()),
        "n_de": int(n_de),
        "n_up": int(n_up),
        "n_down": int(n_down),
    }
    return out


def _class_counts(y_de, y_up, mask, axis=None):
    """DEGs, non-DEGs, up- and down-regulated DEGs among the ``mask`` entries (per row with ``axis=1``)."""
    d = mask & y_de
    return d.sum(axis=axis), (mask & ~y_de).sum(axis=axis), (d & y_up).sum(axis=axis), (d & ~y_up).sum(axis=axis)


def evaluate_predictions(
    preds: Predictions,
    data: LabelledData,
    perturbations: Sequence[str] | None = None,
    *,
    train: Sequence[str] | None = None,
    min_positives: int = MIN_POSITIVES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate predictions against labels.

    Parameters
    ----------
    preds
        A model's predictions.
    data
        Labels (``LabelledData.from_adata``).
    perturbations
        Perturbations to score (predicted and labelled); default: all predicted ones that have labels.
    train
        Training perturbations, to stratify by how many target genes were unseen.
    min_positives
        A metric computed from fewer positives is undefined (NaN; the reason is
        :func:`undefined_reason`): DE AUCs need this many DEGs and non-DEGs among the scored entries, direction AUCs
        this many up- and down-regulated DEGs, FC and DE-overlap metrics this many DEGs. Applies per perturbation
        and to the pooled entries alike.

    Returns
    -------
    ``(per_perturbation, pooled)``: one row per perturbation with the expression metrics of SPEC §6 and the subtask
    metrics per perturbation (suffix ``_top40`` on the top-40 mask); and pooled subtask metrics over all
    (perturbation, gene) entries, one row per stratum (``"all"``, ``"1/1 unseen"``, ``"0/2 unseen"``, …) and mask.
    The control is the mean of the real control cells the labels were computed from. Both tables count the
    positives they were computed from (``n_de``, ``n_up``, ``n_down``).
    """
    labelled = set(data.perturbations)
    perts = [p for p in (perturbations or preds.perturbations) if p in labelled]
    if not perts:
        msg = "None of the predicted perturbations has labels to score against."
        raise ValueError(msg)
    if data.label_only or (preds.mean is None and preds.logfc is None):  # DE probabilities only: subtask 1 (and 2)
        return _evaluate_labels_only(preds, data, perts, train, min_positives)
    idx = data.index(perts)
    s = prediction_scores(preds, data, perts)
    mu, mu_c = data.mean[idx], data.control_mean
    y_de, y_up = data.is_de[idx], data.direction[idx] > 0
    true_fc, top20, top40 = data.fc[idx], data.top20[idx], data.top40[idx]
    hvg = np.broadcast_to(data.hvg, mu.shape)
    full = np.ones(mu.shape, dtype=bool)

    per = pd.DataFrame(index=pd.Index(perts, name="perturbation"))
    per["pearson"] = rowwise_pearson(s.mean, mu)
    per["pearson_delta"] = rowwise_pearson(s.mean - mu_c, mu - mu_c)
    per["pearson_de"] = rowwise_pearson(s.mean, mu, top20)
    per["pearson_de_delta"] = rowwise_pearson(s.mean - mu_c, mu - mu_c, top20)
    per["mae"] = rowwise_mae(s.mean, mu)
    per["mae_de"] = rowwise_mae(s.mean, mu, top20)
    per["mse"] = ((s.mean - mu) ** 2).mean(axis=1)
    per["r2_hvg"] = rowwise_r2(s.mean, mu, hvg)
    per["r2_top50"] = rowwise_r2(s.mean, mu, data.top50[idx])
    per["r2_large_effect"] = rowwise_r2(s.mean, mu, data.large_effect[idx])
    per["rank"] = rank_metric(s.mean - mu_c, mu - mu_c)
    for suffix, mask in (("", full), ("_top40", top40)):
        for name, values in _subtask_rowwise(y_de, y_up, true_fc, s, mask).items():
            per[name + suffix] = values
    for name, values in _de_overlap_rowwise(y_de, data.direction[idx], np.abs(data.scores[idx]), true_fc, s).items():
        per[name] = values
    counts = {suffix: _class_counts(y_de, y_up, mask, axis=1) for suffix, mask in (("", full), ("_top40", top40))}
    for suffix, (n_de, n_non_de, n_up, n_down) in counts.items():
        _enforce_minimums(per, n_de, n_non_de, n_up, n_down, min_positives, suffix)
    per["n_de"], _, per["n_up"], per["n_down"] = counts[""]
    strata = unseen_labels(perts, train, control=data.control, delimiter=data.delimiter) if train is not None else None
    per["unseen"] = strata.astype(str).to_numpy() if strata is not None else "n/a"

    rows = []
    groups = [("all", np.ones(len(perts), dtype=bool))]
    if strata is not None:
        groups += [(g, (strata == g).to_numpy()) for g in sorted(strata.astype(str).unique())]
    for stratum, sel in groups:
        for mask_name, mask in (("all", full), ("top40", top40)):
            if sel.all() and stratum != "all":  # one stratum holds every perturbation: the same as "all"
                same = next(r for r in rows if r["stratum"] == "all" and r["mask"] == mask_name)
                rows.append(same | {"stratum": stratum})
                continue
            rows.append({"stratum": stratum, "mask": mask_name, "n_perturbations": int(sel.sum()),
                         **_pooled(y_de[sel], y_up[sel], true_fc[sel], Scores(s.mean[sel], s.de_score[sel], s.direction_score[sel], s.fc[sel], s.sources), mask[sel])})  # fmt: skip
    pooled = pd.DataFrame(rows)
    _enforce_minimums(pooled, pooled["n_de"], pooled["n_entries"] - pooled["n_de"], pooled["n_up"],
                      pooled["n_down"], min_positives)  # fmt: skip
    for frame in (per, pooled):
        frame.attrs["control"] = "mean of the real control cells the labels were computed from"
        frame.attrs["score_sources"] = s.sources
    return per, pooled


def evaluate(
    adata: AnnData,
    key: str,
    *,
    labels_key: str = "deg",
    perturbations: Sequence[str] | None = None,
    min_positives: int = MIN_POSITIVES,
    inplace: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Evaluate the predictions a model wrote under ``key`` against the labels under ``labels_key``.

    Parameters
    ----------
    adata
        AnnData with labels (:func:`perturbtools.pp.deg_labels`) and predictions (a ``pt.tl`` model's ``predict``).
    key
        ``key_added`` of the predictions.
    labels_key
        ``key_added`` of the labels.
    perturbations
        Perturbations to score; default: every predicted one with labels.
    min_positives
        Fewest positives a DE, direction or FC metric is computed from (see :func:`evaluate_predictions`).
    inplace
        Store both tables in ``adata.uns[key]["metrics"]`` / ``["pooled_metrics"]`` and return ``None``; by default
        return them and leave ``adata`` unchanged.

    Returns
    -------
    ``(per_perturbation, pooled)`` as in :func:`evaluate_predictions`, stratified by the training perturbations
    recorded in ``adata.uns[key]``; ``None`` with ``inplace=True``.
    """
    data = LabelledData.from_adata(adata, labels_key)
    preds = read_predictions(adata, key)
    train = adata.uns.get(key, {}).get("train_perturbations")
    train = None if train is None else [str(p) for p in train]
    per, pooled = evaluate_predictions(preds, data, perturbations, train=train, min_positives=min_positives)
    if not inplace:
        return per, pooled
    adata.uns[key]["metrics"] = per.reset_index()
    adata.uns[key]["pooled_metrics"] = pooled
    return None


def summarize(
    per_perturbation: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    level: float = 0.95,
    ci: Literal["bootstrap", "t"] = "bootstrap",
    n_boot: int = 2000,
    rng: int = 0,
) -> pd.DataFrame:
    """Mean and ``level`` interval of every numeric metric over the rows (perturbations or folds), optionally per group.

    ``ci="bootstrap"`` (default): percentile bootstrap over rows, ``n_boot`` resamples seeded by ``rng``; the
    interval stays within the metric's range (AUCs, proportions). ``ci="t"``: the t-interval of the mean.

    Undefined rows (NaN: too few DEGs, one prediction, ...) are left out and counted. A metric with no defined row
    has no mean; one with a single defined row (e.g. one fold) has no interval. The ``note`` column says so, with
    the reason (:func:`undefined_reason`).

    Returns
    -------
    Long DataFrame with columns ``[*by, "metric", "mean", "ci_low", "ci_high", "n", "n_undefined", "note"]``.
    """
    by = [by] if isinstance(by, str) else list(by or [])
    numeric = [
        c for c in per_perturbation.select_dtypes("number").columns if c not in by and c not in ("fold", *COUNT_COLUMNS)
    ]
    groups = per_perturbation.groupby(by, observed=True, sort=True) if by else [((), per_perturbation)]
    rows = []
    for name, frame in groups:
        keys = dict(zip(by, name if isinstance(name, tuple) else (name,), strict=True))
        for metric in numeric:
            values = frame[metric].to_numpy()
            mean, low, high, n = (
                bootstrap_ci(values, n_boot=n_boot, level=level, rng=rng)
                if ci == "bootstrap"
                else mean_ci(values, level)
            )
            rows.append({**keys, "metric": metric, "mean": mean, "ci_low": low, "ci_high": high, "n": n,
                         "n_undefined": len(values) - n, "note": _summary_note(metric, n, len(values))})  # fmt: skip
    out = pd.DataFrame(rows)
    out.attrs["ci"] = f"{level:.0%} {'percentile bootstrap' if ci == 'bootstrap' else 't-interval'} over rows"
    return out


def _summary_note(metric: str, n: int, n_rows: int) -> str:
    """Why a summary row lacks a mean or an interval, or how many rows it left out; empty when all are defined."""
    if n == 0:
        return f"undefined: {undefined_reason(metric)} in all {n_rows} rows"
    parts = []
    if n < n_rows:
        parts.append(f"{n_rows - n} of {n_rows} rows undefined ({undefined_reason(metric)})")
    if n == 1:
        parts.append("one defined row: no interval")
    return "; ".join(parts)


def compare(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """Paired comparison of one metric between two models over the same units (perturbations or folds).

    Returns
    -------
    ``mean_difference`` (a - b), its 95% CI, the paired t-test and Wilcoxon signed-rank p-values, and ``n``.
    """
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1).dropna()
    diff = (both["a"] - both["b"]).to_numpy()
    mean, low, high, n = mean_ci(diff)
    t_p = float(stats.ttest_rel(both["a"], both["b"]).pvalue) if n > 1 and np.ptp(diff) > 0 else np.nan
    w_p = float(stats.wilcoxon(diff).pvalue) if n > 1 and np.any(diff != 0) else np.nan
    return {"mean_difference": mean, "ci_low": low, "ci_high": high, "ttest_p": t_p, "wilcoxon_p": w_p, "n": n}


def compare_models(
    per_perturbation: pd.DataFrame,
    model_a: str,
    model_b: str,
    *,
    metrics: Sequence[str] | None = None,
    n_perm: int = 10000,
    n_boot: int = 2000,
    level: float = 0.95,
    rng: int = 0,
) -> pd.DataFrame:
    """Paired comparison of two models over the same perturbations, for several metrics, Holm-corrected.

    Per metric: the mean difference ``a - b`` over perturbations scored for both, its paired percentile-bootstrap
    interval, the two-sided paired permutation (sign-flip) p-value, and Holm's adjustment across the metrics
    compared. Deterministic under ``rng``.

    Parameters
    ----------
    per_perturbation
        Long table with ``model``, ``perturbation`` and metric columns (e.g. ``cross_validate(...).per_perturbation``).
    model_a, model_b
        Models to compare.
    metrics
        Metric columns; default: the per-perturbation ones of ``KEY_METRICS`` present in the table.

    Returns
    -------
    DataFrame indexed by metric: ``mean_a, mean_b, mean_difference, ci_low, ci_high, permutation_p, holm_p, n``.
    """
    for model in (model_a, model_b):
        if model not in set(per_perturbation["model"]):
            msg = f"Model {model!r} not in the table; models: {sorted(per_perturbation['model'].unique())}."
            raise KeyError(msg)
    metrics = list(metrics) if metrics is not None else [m for m in KEY_METRICS if m in per_perturbation.columns]
    rows = {}
    for metric in metrics:
        wide = per_perturbation.pivot_table(index="perturbation", columns="model", values=metric, aggfunc="mean")
        wide = wide.reindex(columns=[model_a, model_b])  # a model with no defined value keeps its (NaN) column
        a, b = wide[model_a].to_numpy(np.float64), wide[model_b].to_numpy(np.float64)
        diff, low, high, n = paired_bootstrap(a, b, n_boot=n_boot, level=level, rng=rng)
        both = np.isfinite(a) & np.isfinite(b)
        rows[metric] = {
            "mean_a": float(np.mean(a[both])) if n else np.nan, "mean_b": float(np.mean(b[both])) if n else np.nan,
            "mean_difference": diff, "ci_low": low, "ci_high": high,
            "permutation_p": paired_permutation_test(a, b, n_perm=n_perm, rng=rng), "n": n,
        }  # fmt: skip
    out = pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")
    out.insert(out.columns.get_loc("permutation_p") + 1, "holm_p", holm(out["permutation_p"].to_numpy()))
    return out


def calibration(
    adata: AnnData,
    key: str,
    *,
    labels_key: str = "deg",
    levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    perturbations: Sequence[str] | None = None,
    expressed_only: bool = True,
    n_boot: int = 2000,
    rng: int = 0,
) -> pd.DataFrame:
    """Coverage of central Gaussian predictive intervals on held-out perturbations (needs ``{key}_mean_var``).

    For each level, the share of (perturbation, gene) entries whose observed mean lies in the central interval
    ``mean ± z_{(1+level)/2} * sqrt(mean_var)``. A calibrated model has coverage close to the level. Genes never
    expressed are left out as in :func:`interval_coverage` (``expressed_only``).

    Returns
    -------
    DataFrame with columns ``level, coverage, coverage_ci_low, coverage_ci_high`` (95% percentile bootstrap over
    perturbations, within [0, 1]), ``n_entries`` and ``n_genes_excluded``.
    """
    data = LabelledData.from_adata(adata, labels_key)
    preds = read_predictions(adata, key)
    if preds.mean_var is None or preds.mean is None:
        msg = f"`adata.varm[{key + '_mean_var'!r}]` not found: calibration needs a model with predictive variance (e.g. GPModel)."
        raise KeyError(msg)
    labelled = set(data.perturbations)
    perts = [p for p in (perturbations or preds.perturbations) if p in labelled]
    idx = data.index(perts)
    genes = expressed_genes(data) if expressed_only else np.ones(len(data.var_names), dtype=bool)
    mean = preds.mean[perts].to_numpy(np.float64).T[:, genes]
    sd = np.sqrt(preds.mean_var[perts].to_numpy(np.float64).T[:, genes])
    z = np.abs(data.mean[idx][:, genes] - mean) / np.where(sd > 0, sd, np.nan)
    scored = np.isfinite(z)
    rows = []
    for level in levels:
        inside = z <= stats.norm.ppf(0.5 + level / 2)
        per = inside.sum(axis=1) / np.maximum(scored.sum(axis=1), 1)
        _m, low, high, _ = bootstrap_ci(per[scored.any(axis=1)], n_boot=n_boot, rng=rng)
        rows.append(
            {
                "level": level,
                "coverage": float(inside.sum() / scored.sum()) if scored.any() else np.nan,
                "coverage_ci_low": low,
                "coverage_ci_high": high,
                "n_entries": int(scored.sum()),
                "n_genes_excluded": int((~genes).sum()),
            }
        )
    return pd.DataFrame(rows)


def interval_coverage(
    adata: AnnData,
    key: str,
    *,
    labels_key: str = "deg",
    perturbations: Sequence[str] | None = None,
    expressed_only: bool = True,
    n_boot: int = 2000,
    rng: int = 0,
) -> pd.DataFrame:
    """Coverage and width of the prediction intervals written under ``key`` (e.g. by ``pt.tl.conformal_intervals``).

    Per level: the share of (perturbation, gene) entries whose observed mean lies in ``[lower, upper]``, its 95%
    percentile-bootstrap interval over perturbations (the exchangeable units), the mean and median width of the
    finite intervals and the number of infinite ones.

    ``expressed_only`` (default) scores only genes expressed somewhere in the labelled data (:func:`expressed_genes`):
    a gene with mean 0 in the controls and every perturbation is predicted exactly by any model, so its entries are
    covered by a zero-width interval at every level and would inflate coverage (half the genes of the K562 subset
    are never expressed in K562). The number left out is in ``n_genes_excluded``.

    Returns
    -------
    DataFrame indexed by level: ``coverage, coverage_ci_low, coverage_ci_high, mean_width, median_width, n_infinite,
    n_entries, n_perturbations, n_genes_excluded``.
    """
    data = LabelledData.from_adata(adata, labels_key)
    intervals = read_intervals(adata, key)
    genes = expressed_genes(data) if expressed_only else np.ones(len(data.var_names), dtype=bool)
    rows = {}
    for level, (lower, upper) in intervals.items():
        perts = [p for p in (perturbations or lower.columns) if p in set(data.perturbations)]
        y = data.mean[data.index(perts)][:, genes]
        lo, hi = (frame[perts].to_numpy(np.float64).T[:, genes] for frame in (lower, upper))
        inside = (y >= lo) & (y <= hi)
        width = hi - lo
        finite = np.isfinite(width)
        _, low, high, n = bootstrap_ci(inside.mean(axis=1), n_boot=n_boot, rng=rng)
        rows[level] = {
            "coverage": float(inside.mean()), "coverage_ci_low": low, "coverage_ci_high": high,
            "mean_width": float(width[finite].mean()) if finite.any() else np.inf,
            "median_width": float(np.median(width[finite])) if finite.any() else np.inf,
            "n_infinite": int((~finite).sum()), "n_entries": int(inside.size), "n_perturbations": n,
            "n_genes_excluded": int((~genes).sum()),
        }  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("level")


def expressed_genes(data: LabelledData) -> np.ndarray:
    """Genes with a non-zero mean in the controls or in any labelled perturbation (boolean mask over genes)."""
    return (data.control_mean != 0) | (data.mean != 0).any(axis=0)


def probability_calibration(
    adata: AnnData,
    key: str,
    *,
    labels_key: str = "deg",
    subtask: Literal["de", "direction"] = "de",
    perturbations: Sequence[str] | None = None,
    n_bins: int = 10,
) -> pd.DataFrame:
    """Reliability table and expected calibration error of a model's DE or direction probabilities.

    DE: ``de_proba`` against the DEG labels over all entries; direction: ``direction_proba`` against up-regulation over the
    true DEGs. The ECE is in ``attrs["ece"]``.

    Returns
    -------
    One row per probability bin: ``bin_low, bin_high, confidence, accuracy, count``.
    """
    data = LabelledData.from_adata(adata, labels_key)
    preds = read_predictions(adata, key)
    frame = preds.de_proba if subtask == "de" else preds.direction_proba
    if frame is None:
        msg = f"The predictions under {key!r} have no `{'de_proba' if subtask == 'de' else 'direction_proba'}`."
        raise KeyError(msg)
    perts = [p for p in (perturbations or preds.perturbations) if p in set(data.perturbations)]
    idx = data.index(perts)
    proba = frame[perts].to_numpy(np.float64).T
    if subtask == "de":
        y, keep = data.is_de[idx], np.ones(proba.shape, dtype=bool)
    else:
        y, keep = data.direction[idx] > 0, data.is_de[idx]
    table = pd.DataFrame(reliability(y[keep], proba[keep], n_bins))
    table.attrs["ece"] = expected_calibration_error(y[keep], proba[keep], n_bins)
    table.attrs["n_entries"] = int(keep.sum())
    return table


def _evaluate_labels_only(
    preds: Predictions, data: LabelledData, perts: list[str], train, min_positives: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subtask metrics from DE probabilities: DE always; direction and FC only where labels and predictions exist.

    Used on label-only data (no cells) and for models that predict DE probabilities only (the label models) on any
    data. Expression metrics are undefined without predicted means and are not reported. A model's DE score is its
    ``de_proba`` (models that predict only expression cannot be scored on label-only data).
    """
    if preds.de_proba is None:
        msg = "Label-only data (no cells) can score DE probabilities only; these predictions have no `de_proba`."
        raise ValueError(msg)
    idx = data.index(perts)
    de = preds.de_proba[perts].to_numpy(np.float64).T
    up = None if preds.direction_proba is None else preds.direction_proba[perts].to_numpy(np.float64).T
    fc = None if preds.logfc is None else 2.0 ** preds.logfc[perts].to_numpy(np.float64).T
    sources = {"de_score": "predicted de_proba"}
    if up is not None:
        sources["direction_score"] = "predicted direction_proba"
    if fc is not None:
        sources["fc"] = "2 ** predicted logfc"
    s = Scores(np.full_like(de, np.nan), de, up if up is not None else np.full_like(de, np.nan),
               fc if fc is not None else np.full_like(de, np.nan), sources)  # fmt: skip
    y_de, y_up, true_fc = data.is_de[idx], data.direction[idx] > 0, data.fc[idx]
    full = np.ones(de.shape, dtype=bool)
    drop = [
        m
        for m, ok in (
            ("direction", data.subtasks["direction"] and up is not None),
            ("fc", data.subtasks["fc"] and fc is not None),
        )
        if not ok
    ]
    per = pd.DataFrame(index=pd.Index(perts, name="perturbation"))
    for name, values in _subtask_rowwise(y_de, y_up, true_fc, s, full).items():
        if not any(name.endswith(d) for d in drop):
            per[name] = values
    _enforce_minimums(per, *_class_counts(y_de, y_up, full, axis=1), min_positives)
    per["n_de"] = y_de.sum(axis=1)
    strata = unseen_labels(perts, train, control=data.control, delimiter=data.delimiter) if train is not None else None
    per["unseen"] = strata.astype(str).to_numpy() if strata is not None else "n/a"
    pooled = {k: v for k, v in _pooled(y_de, y_up, true_fc, s, full).items() if not any(k.endswith(d) for d in drop)}
    pooled_df = pd.DataFrame([{"stratum": "all", "mask": "all", "n_perturbations": len(perts), **pooled}])
    _enforce_minimums(pooled_df, pooled_df["n_de"], pooled_df["n_entries"] - pooled_df["n_de"], pooled_df["n_up"],
                      pooled_df["n_down"], min_positives)  # fmt: skip
    for frame in (per, pooled_df):
        frame.attrs["score_sources"] = sources
        frame.attrs["undefined"] = {f"*_{d}": "no such labels on label-only data" for d in drop} | {
            "expression metrics": "label-only data have no cells"
            if data.label_only
            else "the predictions have no mean or fold change (a DE-probability model)"
        }
    return per, pooled_df
