"""Genetic-interaction plots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._utils import _new_ax

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes


def gi_scores(
    scores: pd.DataFrame,
    *,
    x: str = "magnitude",
    y: str = "model_fit",
    annotate: bool = True,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """GI score scatter (magnitude vs model fit by default), coloured by the first subtype call of each double.

    Parameters
    ----------
    scores
        Output of :func:`perturbtools.tl.gi_scores`.
    x, y
        Score columns on the axes.
    annotate
        Label points with the double's name.
    ax
        Axes to draw on.
    **kwargs
        Passed to :func:`seaborn.scatterplot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    import seaborn as sns

    from ..tl._gi import gi_subtypes

    calls = gi_subtypes(scores)
    label = calls.apply(lambda r: "+".join(c for c in calls.columns if r[c]) or "none", axis=1)
    ax = _new_ax(ax, (5.0, 4.0))
    sns.scatterplot(x=scores[x], y=scores[y], hue=label.rename("subtypes"), ax=ax, **kwargs)
    if annotate:
        for name, row in scores.iterrows():
            ax.annotate(str(name), (row[x], row[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axvline(1.0, color="grey", lw=0.7, ls="--")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    return ax


def gi_precision(table: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Per-subtype Precision@k across models (grouped bars).

    Parameters
    ----------
    table
        DataFrame with one column per model and one row per subtype (e.g. ``pd.concat`` of
        :func:`perturbtools.tl.gi_precision_at_k` outputs, ``axis=1``).
    ax
        Axes to draw on.
    **kwargs
        Passed to :func:`seaborn.barplot`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    import seaborn as sns

    long = table.rename_axis("subtype").reset_index().melt(id_vars="subtype", var_name="model", value_name="precision")
    ax = _new_ax(ax, (6.0, 3.5))
    sns.barplot(data=long, x="subtype", y="precision", hue="model", ax=ax, **kwargs)
    ax.set_ylim(0, 1.05)
    return ax


def attributions(
    values: pd.Series, *, n_top: int = 15, labels: dict[str, str] | None = None, ax: Axes | None = None, **kwargs: Any
) -> Axes:
    """Top attributions (e.g. :meth:`perturbtools.tl.PerturbNet.integrated_gradients`) as horizontal bars.

    Parameters
    ----------
    values
        Attributions indexed by feature (GO term or dimension).
    n_top
        Number of features by absolute attribution.
    labels
        Display names for features (e.g. GO term names).
    ax
        Axes to draw on.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.barh`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    top = values.reindex(values.abs().sort_values(ascending=False).index).iloc[:n_top][::-1]
    names = [labels.get(i, i) if labels else i for i in top.index]
    ax = _new_ax(ax, (5.0, 0.3 * len(top) + 1))
    ax.barh(names, top.to_numpy(), color=["tab:red" if v > 0 else "tab:blue" for v in top], **kwargs)
    ax.set_xlabel("attribution")
    ax.set_title(str(values.name or ""))
    return ax
