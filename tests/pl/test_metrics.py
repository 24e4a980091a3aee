from __future__ import annotations

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import perturbtools as pt


@pytest.fixture
def cv(labelled_adata):
    models = {"noncontrol_mean": pt.tl.NonControlMean, "knn": (pt.tl.KNN, {"k": 1})}
    return pt.bm.cross_validate(labelled_adata, models, n_splits=3, show_progress_bar=False)


def test_metrics_plot(cv):
    fig = pt.pl.metrics(cv.summary, ["pearson_delta"])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    want = cv.summary[cv.summary["metric"] == "pearson_delta"].set_index("model")
    models = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(models) == ["knn", "noncontrol_mean"]
    for model, bar in zip(models, ax.containers, strict=True):  # one point per model at its mean, CI as the bar
        x = bar.lines[0].get_xdata()[0]
        low, high = (cap.get_xdata()[0] for cap in bar.lines[1])
        assert (x, low, high) == pytest.approx(tuple(want.loc[model, ["mean", "ci_low", "ci_high"]]))
    with pytest.raises(KeyError, match="available"):
        pt.pl.metrics(cv.summary, ["nope"])


def test_model_scatter(cv):
    ax = pt.pl.model_scatter(cv.per_perturbation, "noncontrol_mean", "knn")
    assert isinstance(ax, Axes)
    wide = cv.per_perturbation.pivot_table(index="perturbation", columns="model", values="pearson_delta")
    xy = np.vstack([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(np.sort(xy[:, 0]), np.sort(wide["noncontrol_mean"]))
    np.testing.assert_allclose(np.sort(xy[:, 1]), np.sort(wide["knn"]))
    wins = int((wide["knn"] > wide["noncontrol_mean"]).sum())
    assert ax.get_title() == f"knn better on {wins}/{len(wide)}"


def test_prediction_scatter_and_deg_counts(labelled_adata):
    pt.tl.KNN(labelled_adata, k=1).fit().predict()
    a = labelled_adata
    p = a.uns["deg"]["perturbations"][0]
    ax = pt.pl.prediction_scatter(a, p, key="knn")
    assert isinstance(ax, Axes)
    xy = np.vstack([c.get_offsets() for c in ax.collections])
    observed = a.varm["deg_mean"][p] - a.var["deg_control_mean"]
    predicted = a.varm["knn_mean"][p] - a.var["deg_control_mean"]
    np.testing.assert_allclose(np.sort(xy[:, 0]), np.sort(observed), rtol=1e-6)
    np.testing.assert_allclose(np.sort(xy[:, 1]), np.sort(predicted), rtol=1e-6)
    with pytest.raises(KeyError, match="predicted"):
        pt.pl.prediction_scatter(labelled_adata, "nope", key="knn")
    ax = pt.pl.deg_counts(a)
    heights = {}
    for patch, label in zip(ax.patches, [t.get_text() for t in ax.get_xticklabels()] * 2, strict=True):
        heights.setdefault(label, []).append(patch.get_height())
    direction = a.varm["deg_direction"]
    for q, (up, down) in heights.items():
        assert (up, down) == ((direction[q] > 0).sum(), -(direction[q] < 0).sum())


def test_metrics_plot_shows_ceiling_and_normalised_scores(cv):
    summary = cv.summary.copy()
    summary["ceiling"] = summary["metric"].map({"pearson_delta": 0.9})
    summary["normalised"] = np.where(summary["model"] == "knn", 0.25, 0.0)
    ax = pt.pl.metrics(summary, ["pearson_delta"]).axes[0]
    ceiling = [line for line in ax.lines if line.get_label() == "noise ceiling"]
    assert len(ceiling) == 1 and tuple(ceiling[0].get_xdata()) == (0.9, 0.9)
    assert sorted(t.get_text() for t in ax.texts) == ["0.00", "0.25"]


def test_metrics_plot_draws_an_undefined_panel_with_its_reason(cv):
    summary = cv.summary.copy()
    rows = summary["metric"] == "pooled_roc_auc_direction"
    summary.loc[rows, ["mean", "ci_low", "ci_high"]] = np.nan
    summary.loc[rows, "note"] = "undefined: fewer than `min_positives` up- or down-regulated DEGs in all 3 rows"
    fig = pt.pl.metrics(summary, ["pearson_delta", "pooled_roc_auc_direction"])
    ax = fig.axes[1]
    assert ax.get_title() == "pooled_roc_auc_direction" and not ax.containers  # no points drawn
    text = " ".join(t.get_text() for t in ax.texts).replace("\n", " ")
    assert "fewer than `min_positives` up- or down-regulated DEGs" in text
