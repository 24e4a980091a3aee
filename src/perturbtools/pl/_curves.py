"""Curves: learning curves, few-shot curves, calibration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._utils import _new_ax

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes


def _curve(table: pd.DataFrame, x: str, hue: str, metric: str, ax: Axes | None, **kwargs: Any) -> Axes:
    import seaborn as sns

    if metric not in table.columns:
        numeric = [c for c in table.select_dtypes("number").columns if c not in (x, "fold")]
        msg = f"Metric {metric!r} not in the table; available: {numeric}."
        raise KeyError(msg)
    ax = _new_ax(ax, (5.0, 3.5))
    sns.lineplot(data=table, x=x, y=metric, hue=hue, marker="o", errorbar=("ci", 95), ax=ax, **kwargs)
    ax.grid(alpha=0.3)
    return ax


def learning_curve(
    table: pd.DataFrame, *, metric: str = "pearson_delta", ax: Axes | None = None, **kwargs: Any
) -> Axes:
    """Metric against the number of training perturbations, mean and 95% CI over folds.

    Parameters
    ----------
    table
        Output of :func:`perturbtools.bm.learning_curve`.
    metric
        Column to plot.
    ax
        Axes to draw on.
    **kwargs
        Passed to :func:`seaborn.lineplot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    ax = _curve(table, "n_train", "model", metric, ax, **kwargs)
    ax.set_xlabel("training perturbations")
    return ax


def few_shot(table: pd.DataFrame, *, metric: str = "pooled_roc_auc_de", ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Few-shot curve: metric against the number of target perturbations, per strategy, mean and 95% CI over folds.

    Parameters
    ----------
    table
        Output of :func:`perturbtools.bm.few_shot`.
    metric
        Column to plot.
    ax
        Axes to draw on.
    **kwargs
        Passed to :func:`seaborn.lineplot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    ax = _curve(table, "n", "strategy", metric, ax, **kwargs)
    ax.set_xlabel("target perturbations (shots)")
    return ax


def calibration(table: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Observed coverage of predictive intervals against their nominal level (diagonal = calibrated).

    Parameters
    ----------
    table
        Output of :func:`perturbtools.metrics.calibration` or :func:`perturbtools.metrics.interval_coverage`.
    ax
        Axes to draw on.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.errorbar`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    ax = _new_ax(ax)
    table = table if "level" in table.columns else table.reset_index()
    low = np.nan_to_num(table["coverage"] - table["coverage_ci_low"])
    high = np.nan_to_num(table["coverage_ci_high"] - table["coverage"])
    ax.errorbar(table["level"], table["coverage"], yerr=[low, high], fmt="o-", capsize=3, **kwargs)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("observed coverage")
    return ax


def reliability(table: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Reliability diagram: share of positives against mean predicted probability per bin (diagonal = calibrated).

    Parameters
    ----------
    table
        Output of :func:`perturbtools.metrics.probability_calibration`; its ECE goes in the title.
    ax
        Axes to draw on.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    ax = _new_ax(ax)
    used = table["count"] > 0
    ax.plot(table.loc[used, "confidence"], table.loc[used, "accuracy"], "o-", **kwargs)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed share of positives")
    if "ece" in table.attrs:
        ax.set_title(f"ECE {table.attrs['ece']:.3f} ({int(table['count'].sum())} entries)")
    return ax
