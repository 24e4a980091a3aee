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
    classes: pd.Series | None = None,
    x: str = "magnitude",
    y: str = "model_fit",
    annotate: bool = True,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """GI score scatter (magnitude vs model fit by default), coloured by one class per double if given.

    Parameters
    ----------
    scores
        Output of :func:`perturbtools.tl.gi_scores`.
    classes
        One class per double (e.g. ``pt.tl.GIClassifier.default().predict(scores)`` or published labels).
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

    hue = None if classes is None else classes.reindex(scores.index).fillna("unlabelled").rename("class")
    ax = _new_ax(ax, (5.0, 4.0))
    sns.scatterplot(x=scores[x], y=scores[y], hue=hue, ax=ax, **kwargs)
    if annotate:
        for name, row in scores.iterrows():
            ax.annotate(str(name), (row[x], row[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if x == "magnitude":
        ax.axvline(1.0, color="grey", lw=0.7, ls="--")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    return ax


def gi_confusion(confusion: pd.DataFrame, *, normalize: bool = True, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Confusion matrix of GI classes (published in rows, predicted in columns), as a heatmap.

    Parameters
    ----------
    confusion
        Counts, e.g. ``pt.tl.gi_classifier_cv(...).confusion``.
    normalize
        Colour by the share of each published class (rows sum to 1); the cells show the counts.
    ax
        Axes to draw on.
    **kwargs
        Passed to :func:`seaborn.heatmap`.

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` drawn on.
    """
    import seaborn as sns

    values = confusion.div(confusion.sum(axis=1).replace(0, 1), axis=0) if normalize else confusion
    ax = _new_ax(ax, (5.5, 4.5))
    sns.heatmap(values, annot=confusion.to_numpy(), fmt="d", cmap="Blues", vmin=0, ax=ax, **kwargs)
    ax.set_ylabel(confusion.index.name or "published")
    ax.set_xlabel(confusion.columns.name or "predicted")
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
