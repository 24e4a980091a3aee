"""Plots of evaluation results: metrics across models, predicted vs observed, model vs model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._keys import label_keys
from .._predictions import read_predictions
from ..metrics._evaluate import PLOT_METRICS
from ._utils import _new_ax

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def metrics(
    summary: pd.DataFrame,
    metrics: Sequence[str] = PLOT_METRICS,
    *,
    models: Sequence[str] | None = None,
    ncols: int = 3,
    **kwargs: Any,
) -> Figure:
    """Per-subtask / per-metric comparison of models: mean with 95% CI, one panel per metric.

    With a ``ceiling`` column (:func:`perturbtools.metrics.normalised_scores`) each panel shows the noise ceiling as a
    dotted line and each model's normalised score ``(model - baseline) / (ceiling - baseline)`` beside its point.

    Parameters
    ----------
    summary
        ``CVResults.summary`` (or :func:`perturbtools.metrics.summarize` output) with columns
        ``model, metric, mean, ci_low, ci_high`` (optionally ``ceiling``, ``normalised``).
    metrics
        Metrics to show, one panel each.
    models
        Models in display order (default: as in ``summary``).
    ncols
        Panels per row.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.errorbar`.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    missing = [m for m in metrics if m not in set(summary["metric"])]
    if missing:
        msg = f"Metrics {missing} not in the summary; available: {sorted(summary['metric'].unique())}."
        raise KeyError(msg)
    models = list(models) if models is not None else list(dict.fromkeys(summary["model"]))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(
        nrows,
        min(ncols, len(metrics)),
        figsize=(3.6 * min(ncols, len(metrics)), 0.35 * len(models) * nrows + 1.2 * nrows),
        squeeze=False,
    )
    palette = dict(zip(models, sns.color_palette("tab10", len(models)), strict=False))
    for ax, metric in zip(axes.ravel(), metrics, strict=False):
        sub = summary[summary["metric"] == metric].set_index("model").reindex(models)
        y = np.arange(len(models))
        if not np.isfinite(sub["mean"]).any():
            _undefined_panel(ax, metric, sub)
            continue
        for i, model in enumerate(models):
            row = sub.loc[model]
            low = row["mean"] - row["ci_low"] if np.isfinite(row["ci_low"]) else 0
            high = row["ci_high"] - row["mean"] if np.isfinite(row["ci_high"]) else 0
            ax.errorbar(row["mean"], y[i], xerr=[[low], [high]], fmt="o", color=palette[model], capsize=3, **kwargs)
            if "normalised" in sub.columns and np.isfinite(row["normalised"]):
                ax.annotate(f"{row['normalised']:.2f}", (row["mean"], y[i]), xytext=(0, 6), textcoords="offset points",
                            ha="center", fontsize=7, color=palette[model])  # fmt: skip
        if "ceiling" in sub.columns and np.isfinite(sub["ceiling"]).any():
            ax.axvline(float(sub["ceiling"].dropna().iloc[0]), color="black", ls=":", lw=1, label="noise ceiling")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_yticks(y, models)
        ax.invert_yaxis()
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
        undefined = [m for m in models if not np.isfinite(sub.loc[m, "mean"])]
        if undefined:
            ax.set_xlabel(f"undefined for {', '.join(undefined)}", fontsize=7)
    for ax in axes.ravel()[len(metrics) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _undefined_panel(ax: Axes, metric: str, sub: pd.DataFrame) -> None:
    """A panel saying why ``metric`` is undefined for every model, instead of an empty axis."""
    import textwrap

    from ..metrics._evaluate import undefined_reason

    notes = sub["note"].dropna() if "note" in sub else pd.Series(dtype=str)
    reason = notes.iloc[0] if len(notes) and notes.iloc[0] else f"undefined: {undefined_reason(metric)}"
    ax.text(0.5, 0.5, textwrap.fill(reason, 38), ha="center", va="center", fontsize=8, transform=ax.transAxes)
    ax.set_title(metric)
    ax.set_xticks([])
    ax.set_yticks([])


def prediction_scatter(
    adata: AnnData,
    perturbation: str,
    *,
    key: str,
    labels_key: str = "deg",
    delta: bool = True,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Predicted vs observed expression change of one perturbation, DEGs highlighted.

    Parameters
    ----------
    adata
        AnnData with labels and predictions under ``key``.
    perturbation
        Perturbation to show.
    key
        ``key_added`` of a model's predictions.
    labels_key
        ``key_added`` of the labels.
    delta
        Show changes against the control mean instead of means.
    ax
        Axes to draw on.
    **kwargs
        Passed to :func:`seaborn.scatterplot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    import seaborn as sns

    from .._labelled import LabelledData
    from ..metrics._evaluate import prediction_scores

    data = LabelledData.from_adata(adata, labels_key)
    preds = read_predictions(adata, key)
    if perturbation not in preds.perturbations:
        msg = f"{perturbation!r} was not predicted under {key!r}; predicted: {preds.perturbations[:10]}."
        raise KeyError(msg)
    row = data.index([perturbation])[0]
    pred = prediction_scores(preds, data, [perturbation]).mean[0]
    obs = data.mean[row]
    if delta:
        pred, obs = pred - data.control_mean, obs - data.control_mean
    frame = pd.DataFrame({"observed": obs, "predicted": pred, "DEG": np.where(data.is_de[row], "DEG", "other")})
    ax = _new_ax(ax)
    sns.scatterplot(
        data=frame.sort_values("DEG", ascending=False),
        x="observed",
        y="predicted",
        hue="DEG",
        hue_order=["other", "DEG"],
        s=12,
        ax=ax,
        **kwargs,
    )
    lim = np.nanmax(np.abs(frame[["observed", "predicted"]].to_numpy())) * 1.05
    ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.8, ls="--")
    ax.set_title(f"{perturbation} ({key})")
    ax.set_xlabel("observed " + ("Δ" if delta else "mean"))
    ax.set_ylabel("predicted " + ("Δ" if delta else "mean"))
    return ax


def model_scatter(
    per_perturbation: pd.DataFrame,
    model_x: str,
    model_y: str,
    *,
    metric: str = "pearson_delta",
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Per-perturbation metric of one model against another (points above the diagonal favour ``model_y``).

    Parameters
    ----------
    per_perturbation
        ``CVResults.per_perturbation``.
    model_x, model_y
        Models on the axes.
    metric
        Metric to compare.
    ax
        Axes to draw on.
    **kwargs
        Passed to :func:`seaborn.scatterplot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    import seaborn as sns

    wide = per_perturbation.pivot_table(index="perturbation", columns="model", values=metric)
    for m in (model_x, model_y):
        if m not in wide.columns:
            msg = f"Model {m!r} not in the results; models: {list(wide.columns)}."
            raise KeyError(msg)
    hue = per_perturbation.drop_duplicates("perturbation").set_index("perturbation")["unseen"].reindex(wide.index)
    ax = _new_ax(ax)
    sns.scatterplot(x=wide[model_x], y=wide[model_y], hue=hue, ax=ax, **kwargs)
    lo = np.nanmin(wide[[model_x, model_y]].to_numpy())
    hi = np.nanmax(wide[[model_x, model_y]].to_numpy())
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"{model_x} {metric}")
    ax.set_ylabel(f"{model_y} {metric}")
    wins = int((wide[model_y] > wide[model_x]).sum())
    ax.set_title(f"{model_y} better on {wins}/{wide[[model_x, model_y]].dropna().shape[0]}")
    return ax


def deg_counts(adata: AnnData, *, labels_key: str = "deg", ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Number of up- and down-regulated DEGs per perturbation (bars).

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    from .._validation import _check_result

    key = label_keys(labels_key).direction
    _check_result(adata, key, producer=f"pt.pp.deg_labels(adata, key_added={labels_key!r})")
    direction = adata.varm[key]
    frame = pd.DataFrame({"up": (direction > 0).sum(), "down": -(direction < 0).sum()})
    frame = frame.loc[(frame["up"] - frame["down"]).sort_values(ascending=False).index]
    ax = _new_ax(ax, (max(4.0, 0.22 * len(frame)), 3.0))
    ax.bar(frame.index, frame["up"], color="tab:red", label="up", **kwargs)
    ax.bar(frame.index, frame["down"], color="tab:blue", label="down", **kwargs)
    ax.tick_params(axis="x", rotation=90)
    ax.set_ylabel("DEGs")
    ax.legend()
    return ax
