from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

import perturbtools as pt

BASELINES = {
    "control_mean": pt.tl.ControlMean,
    "noncontrol_mean": pt.tl.NonControlMean,
    "crispr_mean": pt.tl.CrisprInformedMean,
    "random": pt.tl.RandomPerturbation,
    "additive": pt.tl.Additive,
    "linear": pt.tl.Linear,
}


def test_cv_tables(labelled_adata, tmp_path):
    res = pt.tl.cross_validate(
        labelled_adata, {**BASELINES, "knn": (pt.tl.KNN, {"k": 1})}, n_splits=3, show_progress_bar=False
    )
    assert set(res.per_perturbation["model"]) == {*BASELINES, "knn"}
    per_model = res.per_perturbation.groupby("model")["perturbation"].apply(sorted)
    assert all(p == sorted(labelled_adata.uns["deg"]["perturbations"]) for p in per_model)
    assert set(res.pooled["stratum"]) >= {"all"}
    assert {"pearson_delta", "pooled_roc_auc_de", "pooled_roc_auc_de_top40", "rank"} <= set(res.summary["metric"])
    labelled_adata.write_h5ad(tmp_path / "cv.h5ad")
    # the simulator has strong program effects: structure-aware models beat the mean
    s = res.summary.set_index(["model", "metric"])["mean"]
    assert s["knn", "pearson_delta"] > s["noncontrol_mean", "pearson_delta"]


def _target_measured(adata):
    return [p for p in adata.uns["deg"]["perturbations"] if all(g in adata.var_names for g in p.split("+"))]


@pytest.mark.realdata
def test_real_papalexi_sanity(papalexi):
    a = papalexi.copy()
    res = pt.tl.cross_validate(a, BASELINES, n_splits=5, show_progress_bar=False, key_added=None)
    per = res.per_perturbation
    s = res.summary.set_index(["model", "metric"])["mean"]
    assert abs(s["control_mean", "pearson_delta"]) < 1e-9
    measured = _target_measured(a)
    assert len(measured) >= 8
    wide = per[per["perturbation"].isin(measured)].pivot_table(
        index="perturbation", columns="model", values="pearson_delta"
    )
    assert (wide["crispr_mean"] - wide["noncontrol_mean"]).mean() > 0.05
    assert s["noncontrol_mean", "pearson_delta"] > s["random", "pearson_delta"]


@pytest.mark.realdata
def test_real_glioma_crispri_sanity():
    a = pt.data.perturbench_devel("A172")
    pt.pp.deg_labels(a, modality_key="perturbation_type")
    res = pt.tl.cross_validate(a, BASELINES, n_splits=3, show_progress_bar=False, key_added=None)
    per = res.per_perturbation
    # none of the A172 targets is among the 500 measured genes, so the CRISPR-informed mean equals the mean here
    assert _target_measured(a) == []
    wide = per.pivot_table(index="perturbation", columns="model", values="pearson_delta")
    np.testing.assert_allclose(wide["crispr_mean"], wide["noncontrol_mean"])
    assert np.allclose(per.loc[per["model"] == "control_mean", "pearson_delta"], 0)


@pytest.mark.realdata
def test_real_norman_doubles_strata(norman):
    res = pt.tl.cross_validate(norman.copy(), BASELINES, n_splits=5, show_progress_bar=False, key_added=None)
    strata = set(res.pooled["stratum"])
    assert "all" in strata and any("/2 unseen" in s for s in strata)
    s = res.summary.set_index(["model", "metric"])["mean"]
    assert s["additive", "pearson_delta"] > s["random", "pearson_delta"]


class _Spy(pt.tl.NonControlMean):
    """NonControlMean that records what it was trained on and asked to predict."""

    calls: ClassVar[list] = []

    def _fit(self, train, *, rng, **kwargs):
        _Spy.calls.append(("fit", list(train)))
        super()._fit(train, rng=rng, **kwargs)

    def _predict(self, perturbations, *args, **kwargs):
        _Spy.calls.append(("predict", list(perturbations)))
        return super()._predict(perturbations, *args, **kwargs)


def test_cv_folds_are_disjoint_at_the_cross_validate_level(labelled_adata):
    _Spy.calls = []
    res = pt.tl.cross_validate(labelled_adata, {"spy": _Spy}, n_splits=3, show_progress_bar=False)
    fits = [set(p) for kind, p in _Spy.calls if kind == "fit"]
    tests = [set(p) for kind, p in _Spy.calls if kind == "predict"]
    perts = set(labelled_adata.uns["deg"]["perturbations"])
    assert len(fits) == len(tests) == 3
    for train, test in zip(fits, tests, strict=True):
        assert not train & test, "a test perturbation was seen in training"
        assert train | test == perts
    assert set().union(*tests) == perts and sum(map(len, tests)) == len(perts)  # each tested exactly once
    for fold, test in enumerate(tests):  # the table's fold column is the fold that held it out
        got = set(res.per_perturbation.loc[res.per_perturbation["fold"] == fold, "perturbation"])
        assert got == test
