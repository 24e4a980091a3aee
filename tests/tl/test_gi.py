from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import TheilSenRegressor

import perturbtools as pt
from perturbtools.tl._gi_core import SCORES


def test_theil_sen_equals_sklearn_exhaustive():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    y = X @ [0.8, -0.4] + rng.standard_t(2, size=120)
    ref = TheilSenRegressor(fit_intercept=False, max_subpopulation=100_000, random_state=1000).fit(X, y).coef_
    np.testing.assert_allclose(pt.tl.theil_sen(X, y), ref, rtol=1e-10)


def test_theil_sen_subsampled_is_close():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1500, 2))
    y = X @ [1.0, 0.5] + 0.05 * rng.normal(size=1500)
    np.testing.assert_allclose(pt.tl.theil_sen(X, y, max_subpopulation=5000), [1.0, 0.5], atol=0.02)


def test_distance_correlation_matches_dcor():
    dcor = pytest.importorskip("dcor")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(80, 2)), rng.normal(size=80)
    y = y + x[:, 0] ** 2
    assert pt.tl.distance_correlation(x, y) == pytest.approx(dcor.distance_correlation(x, y), rel=1e-10)


def _constructed(kind, rng, n=400):
    d_a = rng.normal(size=n)
    d_b = rng.normal(size=n)
    if kind == "additive":  # combined magnitude of one single (see gi_subtypes)
        d_ab = (d_a + d_b) / np.sqrt(2)
    elif kind == "synergy":
        d_ab = 1.5 * (d_a + d_b)
    elif kind == "suppressor":
        d_ab = 0.3 * (d_a + d_b)
    elif kind == "epistasis":
        d_ab = d_a + 0.02 * d_b
    elif kind == "redundant":
        d_b = d_a + 0.1 * rng.normal(size=n)
        d_ab = 0.5 * (d_a + d_b)
    else:  # neomorphic: a new programme on top of the sum
        d_ab = d_a + d_b + 3 * rng.normal(size=n)
    return d_a, d_b, d_ab + 0.02 * rng.normal(size=n)


@pytest.mark.parametrize("kind", ["additive", "synergy", "suppressor", "epistasis", "redundant", "neomorphic"])
def test_constructed_doubles_are_called(kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    scores = pd.DataFrame([pt.tl.gi_scores_core(*_constructed(kind, rng))], index=[kind])
    calls = pt.tl.gi_subtypes(scores).loc[kind]
    # the GEARS bands overlap (additive |m - 1| < 0.25 includes suppressor m < 1), so only clear contradictions are excluded
    assert calls[kind], scores.round(3).to_dict("records")
    exclusive = {"synergy": ["suppressor", "additive"], "suppressor": ["synergy", "additive"], "additive": ["synergy", "neomorphic", "epistasis"],
                 "epistasis": ["neomorphic", "synergy"], "redundant": ["neomorphic", "epistasis"], "neomorphic": ["redundant", "epistasis"]}  # fmt: skip
    assert not calls[exclusive[kind]].any(), calls.to_dict()


def test_precision_and_tree():
    rng = np.random.default_rng(3)
    kinds = ["additive", "synergy", "suppressor", "epistasis", "redundant", "neomorphic"] * 8
    rows = {
        f"{k}{i}": pt.tl.gi_scores_core(*_constructed(k, rng, n=150), max_subpopulation=3000)
        for i, k in enumerate(kinds)
    }
    observed = pd.DataFrame.from_dict(rows, orient="index")
    prec = pt.tl.gi_precision_at_k(observed, observed, k=10)
    members = pt.tl.gi_subtypes(observed).sum()
    # ranking by the true scores puts every member first: precision is capped only by the number of members
    np.testing.assert_allclose(prec, np.minimum(members, 10) / 10)
    shuffled = observed.sample(frac=1, random_state=0).set_axis(observed.index)
    assert pt.tl.gi_precision_at_k(shuffled, observed, k=10).mean() < 1
    clf = pt.tl.GIClassifier().fit(observed)
    acc = pt.tl.gi_accuracy(clf.predict(observed), observed)
    assert (acc > 0.8).all()


def test_gi_from_data_and_predictions(tmp_path):
    a = pt.data.synthetic(n_cells=1500, n_genes=80, n_perturbations=6, n_doubles=6, rng=1)
    pt.pp.deg_labels(a)
    obs = pt.tl.gi_scores(a, show_progress_bar=False)
    assert len(obs) == 6 and set(SCORES) <= set(obs.columns)
    singles = [p for p in a.uns["deg"]["perturbations"] if "+" not in p]
    doubles = list(obs.index)
    pt.tl.Additive(a).fit(singles).predict(singles + doubles)
    pred = pt.tl.gi_scores(a, "additive", show_progress_bar=False)
    # the additive model predicts d_A + d_B: the fit is exact, c1 = c2 = 1
    np.testing.assert_allclose(pred[["c1", "c2"]].to_numpy(), 1, atol=1e-6)
    assert "additive_gi" in a.uns and "deg_gi" in a.uns
    a.write_h5ad(tmp_path / "gi.h5ad")
    import matplotlib.axes

    assert isinstance(pt.pl.gi_scores(obs), matplotlib.axes.Axes)


@pytest.mark.realdata
def test_gi_real_norman(norman):
    gi = pt.tl.gi_scores(norman.copy(), show_progress_bar=False)
    assert set(gi.index) == {"KLF1+MAP2K6", "KLF1+TGFBR2", "MAP2K3+MAP2K6", "MAP2K3+SLC38A2", "MAPK1+TGFBR2"}
    assert np.isfinite(gi[["magnitude", "model_fit", "similarity"]].to_numpy()).all()


def test_gi_intervals_from_gp():
    pytest.importorskip("torch")
    a = pt.data.synthetic(n_cells=2000, n_genes=60, n_perturbations=10, n_doubles=8, rng=4)
    pt.pp.deg_labels(a)
    pt.pp.add_gene_embedding(a, a.uns["synthetic"]["gene_embedding"])
    perts = a.uns["deg"]["perturbations"]
    doubles = [p for p in perts if "+" in p][:2]
    m = pt.tl.GPModel(a, n_components=6).fit([p for p in perts if p not in doubles])
    iv = pt.tl.gi_intervals(m, doubles, n_samples=20, max_subpopulation=2000, show_progress_bar=False)
    assert set(iv["perturbation"]) == set(doubles)
    assert (iv["low"] <= iv["median"]).all() and (iv["median"] <= iv["high"]).all()
