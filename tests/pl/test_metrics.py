from __future__ import annotations

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import perturbtools as pt


@pytest.fixture
def cv(labelled_adata):
    models = {"noncontrol_mean": pt.tl.NonControlMean, "knn": (pt.tl.KNN, {"k": 1})}
    return pt.tl.cross_validate(labelled_adata, models, n_splits=3, show_progress_bar=False)


def test_metrics_plot(cv):
    fig = pt.pl.metrics(cv.summary)
    assert isinstance(fig, Figure)
    with pytest.raises(KeyError, match="available"):
        pt.pl.metrics(cv.summary, ["nope"])


def test_model_scatter(cv):
    assert isinstance(pt.pl.model_scatter(cv.per_perturbation, "noncontrol_mean", "knn"), Axes)


def test_prediction_scatter_and_deg_counts(labelled_adata):
    pt.tl.KNN(labelled_adata, k=1).fit().predict()
    p = labelled_adata.uns["deg"]["perturbations"][0]
    assert isinstance(pt.pl.prediction_scatter(labelled_adata, p, key="knn"), Axes)
    with pytest.raises(KeyError, match="predicted"):
        pt.pl.prediction_scatter(labelled_adata, "nope", key="knn")
    assert isinstance(pt.pl.deg_counts(labelled_adata), Axes)
