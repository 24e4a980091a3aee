from __future__ import annotations

import os
import re
from typing import ClassVar

import anndata as ad
import numpy as np
import pandas as pd
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
    models = {**BASELINES, "knn": (pt.tl.KNN, {"k": 1})}
    res = pt.bm.cross_validate(labelled_adata, models, n_splits=3, show_progress_bar=False)
    assert "cv" not in labelled_adata.uns and not any(k.startswith("cv_") for k in labelled_adata.varm)
    assert pt.bm.cross_validate(labelled_adata, models, n_splits=3, inplace=True, show_progress_bar=False) is None
    assert set(res.per_perturbation["model"]) == {*BASELINES, "knn"}
    per_model = res.per_perturbation.groupby("model")["perturbation"].apply(sorted)
    assert all(p == sorted(labelled_adata.uns["deg"]["perturbations"]) for p in per_model)
    assert set(res.pooled["stratum"]) >= {"all"}
    assert {"pearson_delta", "pooled_roc_auc_de", "pooled_roc_auc_de_top40", "rank"} <= set(res.summary["metric"])
    labelled_adata.write_h5ad(tmp_path / "cv.h5ad")
    stored = pt.bm.CVResults.from_adata(ad.read_h5ad(tmp_path / "cv.h5ad"), "cv")
    pd.testing.assert_frame_equal(stored.summary, res.summary, check_dtype=False)
    with pytest.warns(FutureWarning, match="key_added=None"):
        pt.bm.cross_validate(labelled_adata, BASELINES, n_splits=3, key_added=None, show_progress_bar=False)
    with pytest.raises(ValueError, match="key_added"):
        pt.bm.cross_validate(labelled_adata, BASELINES, n_splits=3, key_added=None, inplace=True)
    # the simulator has strong program effects: structure-aware models beat the mean
    s = res.summary.set_index(["model", "metric"])["mean"]
    assert s["knn", "pearson_delta"] > s["noncontrol_mean", "pearson_delta"]


def _target_measured(adata):
    return [p for p in adata.uns["deg"]["perturbations"] if all(g in adata.var_names for g in p.split("+"))]


@pytest.mark.realdata
def test_real_papalexi_sanity(papalexi):
    a = papalexi.copy()
    res = pt.bm.cross_validate(a, BASELINES, n_splits=5, show_progress_bar=False)
    per = res.per_perturbation
    s = res.summary.set_index(["model", "metric"])["mean"]
    assert np.isnan(s["control_mean", "pearson_delta"])  # a constant prediction: no correlation to measure
    assert (
        res.summary.set_index(["model", "metric"])
        .loc[("control_mean", "pearson_delta"), "note"]
        .startswith("undefined: a constant prediction")
    )
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
    res = pt.bm.cross_validate(a, BASELINES, n_splits=3, show_progress_bar=False)
    per = res.per_perturbation
    # none of the A172 targets is among the 500 measured genes, so the CRISPR-informed mean equals the mean here
    assert _target_measured(a) == []
    wide = per.pivot_table(index="perturbation", columns="model", values="pearson_delta")
    np.testing.assert_allclose(wide["crispr_mean"], wide["noncontrol_mean"])
    assert per.loc[per["model"] == "control_mean", "pearson_delta"].isna().all()


@pytest.mark.realdata
def test_real_norman_doubles_strata(norman):
    res = pt.bm.cross_validate(norman.copy(), BASELINES, n_splits=5, show_progress_bar=False)
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
    res = pt.bm.cross_validate(labelled_adata, {"spy": _Spy}, n_splits=3, show_progress_bar=False)
    fits = [set(p) for kind, p in _Spy.calls if kind == "fit"]
    # the first prediction after each fit is the scored test fold (the second predicts the rest, only as the rank
    # metric's pool of candidate predictions)
    tests = [set(_Spy.calls[i + 1][1]) for i, (kind, _) in enumerate(_Spy.calls) if kind == "fit"]
    perts = set(labelled_adata.uns["deg"]["perturbations"])
    assert len(fits) == len(tests) == 3
    for train, test in zip(fits, tests, strict=True):
        assert not train & test, "a test perturbation was seen in training"
        assert train | test == perts
    assert set().union(*tests) == perts and sum(map(len, tests)) == len(perts)  # each tested exactly once
    for fold, test in enumerate(tests):  # the table's fold column is the fold that held it out
        got = set(res.per_perturbation.loc[res.per_perturbation["fold"] == fold, "perturbation"])
        assert got == test


def _rank_by_hand(true_q, own, pool):
    from scipy.spatial.distance import cosine

    sims = np.array([1 - cosine(true_q, x) for x in pool])
    mine = 1 - cosine(true_q, own)
    return (np.sum(sims > mine + 1e-12) + 0.5 * (np.sum(np.abs(sims - mine) <= 1e-12) - 1)) / (len(pool) - 1)


def test_rank_metric_variants_by_hand(labelled_adata):
    a = labelled_adata
    models = {"knn": (pt.tl.KNN, {"k": 1}), "mean": pt.tl.NonControlMean}
    pt.bm.cross_validate(a, models, n_splits=3, inplace=True, show_progress_bar=False)
    res = pt.bm.CVResults.from_adata(a, "cv")
    per = res.per_perturbation.set_index(["model", "perturbation"])
    perts = list(a.varm["cv_knn_mean"].columns)
    mu_c = a.var["deg_control_mean"].to_numpy()
    true = {p: a.varm["deg_mean"][p].to_numpy() - mu_c for p in perts}
    oof = {p: a.varm["cv_knn_mean"][p].to_numpy() - mu_c for p in perts}
    for fold in sorted(res.per_perturbation["fold"].unique()):
        knn = res.per_perturbation[res.per_perturbation["model"] == "knn"]
        test = list(knn.loc[knn["fold"] == fold, "perturbation"])
        train = [p for p in perts if p not in test]
        model = pt.tl.KNN(a, k=1).fit(train)  # the fold's model predicts every perturbation
        every = model.predict(perts, inplace=False).mean
        pool = [every[p].to_numpy() - mu_c for p in perts]
        for p in test:
            want_fold_model = _rank_by_hand(true[p], pool[perts.index(p)], pool)
            assert per.loc[("knn", p), "rank_fold_model"] == pytest.approx(want_fold_model)
            want_oof = _rank_by_hand(true[p], oof[p], [oof[q] for q in perts])
            assert per.loc[("knn", p), "rank_out_of_fold"] == pytest.approx(want_oof)
            fold_pool = [oof[q] for q in test]
            want_within = _rank_by_hand(true[p], oof[p], fold_pool)
            assert per.loc[("knn", p), "rank_within_fold"] == pytest.approx(want_within)
            assert per.loc[("knn", p), "rank"] == pytest.approx(want_within)  # the default
    # a constant predictor ties with every other prediction of its fold model: 0.5 whatever the fold's size
    np.testing.assert_allclose(per.loc["mean", "rank"], 0.5)
    np.testing.assert_allclose(per.loc["mean", "rank_fold_model"], 0.5)
    assert per.loc["mean", "rank_out_of_fold"].mean() > 0.55  # the out-of-fold pool's bias
    other = pt.bm.cross_validate(a, models, n_splits=3, rank="fold_model", show_progress_bar=False)
    np.testing.assert_allclose(other.per_perturbation["rank"], other.per_perturbation["rank_fold_model"])


def test_cross_validate_defaults_subset_and_progress(labelled_adata, capsys, monkeypatch):
    """Defaults: 5 folds, seed 0; ``perturbations=`` limits the units; the progress bar is named."""
    perts = labelled_adata.uns["deg"]["perturbations"]
    default = pt.bm.cross_validate(labelled_adata, {"mean": pt.tl.NonControlMean}, show_progress_bar=False)
    assert sorted(default.per_perturbation["fold"].unique()) == [0, 1, 2, 3, 4]
    for table in (default.per_perturbation, default.pooled):  # one row each, renumbered across folds
        assert table.index.equals(pd.RangeIndex(len(table)))
    explicit = pt.bm.cross_validate(labelled_adata, {"mean": pt.tl.NonControlMean}, n_splits=5, rng=0,
                                    show_progress_bar=False)  # fmt: skip
    pd.testing.assert_frame_equal(default.per_perturbation, explicit.per_perturbation)
    other = pt.bm.cross_validate(labelled_adata, {"mean": pt.tl.NonControlMean}, rng=1, show_progress_bar=False)
    assert not default.per_perturbation["perturbation"].equals(other.per_perturbation["perturbation"])  # other folds
    subset = perts[:6]
    res = pt.bm.cross_validate(labelled_adata, {"mean": pt.tl.NonControlMean}, n_splits=3, perturbations=subset,
                               show_progress_bar=True)  # fmt: skip
    assert sorted(res.per_perturbation["perturbation"]) == sorted(subset)
    assert re.search(r"(^|\r)cross-validation: ", capsys.readouterr().err)
    monkeypatch.setattr(pt.settings, "progress_bar", True)  # an explicit False wins over the setting
    pt.bm.cross_validate(labelled_adata, {"mean": pt.tl.NonControlMean}, n_splits=3, show_progress_bar=False)
    assert capsys.readouterr().err == ""


def test_cross_validate_store_messages_name_the_function(labelled_adata):
    before = set(labelled_adata.uns)
    with pytest.warns(FutureWarning, match=r"`cross_validate\(key_added=None\)` is deprecated") as record:
        res = pt.bm.cross_validate(labelled_adata, BASELINES, n_splits=3, key_added=None, show_progress_bar=False)
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampoline adds a frame between caller and function
        assert record[0].filename == __file__  # the warning points at the caller's line
    assert isinstance(res, pt.bm.CVResults) and set(labelled_adata.uns) == before  # returned, nothing stored
    with pytest.raises(ValueError, match=r"`cross_validate\(inplace=True\)` needs a `key_added`"):
        pt.bm.cross_validate(labelled_adata, BASELINES, n_splits=3, key_added=None, inplace=True)


def test_cv_results_from_adata_default_key_and_missing_results(labelled_adata):
    pt.bm.cross_validate(labelled_adata, {"mean": pt.tl.NonControlMean}, n_splits=3, inplace=True,
                         show_progress_bar=False)  # fmt: skip
    res = pt.bm.CVResults.from_adata(labelled_adata)  # key "cv" by default
    tables = {f: labelled_adata.uns["cv"][f] for f in pt.bm.CVResults._fields}  # exactly the tables, no params
    labelled_adata.uns["just_tables"] = tables
    again = pt.bm.CVResults.from_adata(labelled_adata, "just_tables")
    pd.testing.assert_frame_equal(again.summary, res.summary)
    for key in ("nope", "partial"):
        labelled_adata.uns["partial"] = {"summary": res.summary}
        with pytest.raises(KeyError, match=rf"No cross-validation results in `adata.uns\['{key}'\]`"):
            pt.bm.CVResults.from_adata(labelled_adata, key)


def test_rank_among_a_pool_in_any_order(labelled_adata):
    """``_rank_among`` finds each ranked perturbation's own prediction wherever it lies in the pool."""
    from perturbtools.bm._cross_validation import _merge_predictions, _rank_among

    data = pt.tl.LabelledData.from_adata(labelled_adata)
    perts = data.perturbations
    model = pt.tl.KNN(labelled_adata, embedding="gene_emb", k=2).fit(perts[:4])
    first, second = model.predict(perts[:5], inplace=False), model.predict(perts[5:], inplace=False)
    pool = _merge_predictions([first, second])
    assert list(pool.perturbations) == perts
    assert _merge_predictions([first]).mean.equals(first.mean)  # one part: itself
    ranked = perts[6:8]  # not the first rows of the pool
    got = _rank_among(pool, data, ranked)
    pred = pool.mean[perts].to_numpy(np.float64).T - data.control_mean
    for q, p in enumerate(ranked):
        truth = data.mean[data.index([p])[0]] - data.control_mean
        assert got[q] == pytest.approx(_rank_by_hand(truth, pred[perts.index(p)], pred), abs=1e-12), p


def test_cv_seeds_each_fold_model_and_fills_the_tables(labelled_adata):
    """Fold f's model gets seed ``fold_seed + f``; pooled rows and timings carry their model and fold."""
    import time

    a = labelled_adata
    start = time.perf_counter()
    pt.bm.cross_validate(a, {"random": pt.tl.RandomPerturbation}, n_splits=3, inplace=True, show_progress_bar=False)
    wall = time.perf_counter() - start
    res = pt.bm.CVResults.from_adata(a)
    fold_seed = a.uns["cv"]["params"]["fold_seed"]
    assert fold_seed == int(np.random.default_rng(0).integers(2**31))
    oof = a.varm["cv_random_mean"]
    for f, (train, test) in enumerate(pt.pp.kfold_perturbations(a.uns["deg"]["perturbations"], 3, rng=fold_seed)):
        by_hand = pt.tl.RandomPerturbation(a).fit(train, rng=fold_seed + f).predict(test, inplace=False).mean
        pd.testing.assert_frame_equal(oof[test], by_hand[test], check_names=False)
    assert sorted(res.pooled["fold"].unique()) == [0, 1, 2] and set(res.pooled["model"]) == {"random"}
    assert res.per_perturbation.index.equals(pd.RangeIndex(len(res.per_perturbation)))  # one row each, renumbered
    assert list(res.timings.columns) == ["model", "fold", "seconds", "n_train", "n_test"]
    for f, (train, test) in enumerate(pt.pp.kfold_perturbations(a.uns["deg"]["perturbations"], 3, rng=fold_seed)):
        rows = res.per_perturbation[res.per_perturbation["fold"] == f].set_index("perturbation")
        pd.testing.assert_series_equal(  # strata: targets unseen in this fold's training perturbations
            rows["unseen"].astype(str), pt.pp.unseen_labels(test, train).astype(str)[rows.index], check_names=False
        )
    assert res.timings["fold"].tolist() == [0, 1, 2] and (res.timings["seconds"] > 0).all()
    assert res.timings["seconds"].sum() < wall  # fit + predict of each fold, within the call's wall time
    n = len(a.uns["deg"]["perturbations"])
    assert (res.timings["n_train"] + res.timings["n_test"] == n).all()


def test_cv_inplace_records_and_pooled_summary_by_hand(labelled_adata, caplog):
    """What ``inplace=True`` records, and the pooled summary rows as fold means of the pooled table."""
    a = labelled_adata
    models = {"mean": pt.tl.NonControlMean, "knn": (pt.tl.KNN, {"k": 1})}
    with caplog.at_level("INFO", logger="perturbtools.bm._cross_validation"):
        pt.bm.cross_validate(a, models, n_splits=3, inplace=True, show_progress_bar=False)
    assert "added `.uns['cv']`" in [r.getMessage() for r in caplog.records]
    fold_seed = int(np.random.default_rng(0).integers(2**31))
    assert a.uns["cv"]["params"] == {
        "labels_key": "deg",
        "n_splits": 3,
        "fold_seed": fold_seed,
        "models": ["mean", "knn"],
    }
    perts = a.uns["deg"]["perturbations"]
    fold_of = {p: f for f, (_, test) in enumerate(pt.pp.kfold_perturbations(perts, 3, rng=fold_seed)) for p in test}
    for name in models:
        rec = a.uns[f"cv_{name}"]
        assert (rec["model"], rec["out_of_fold"], rec["labels_key"]) == (name, True, "deg")
        np.testing.assert_array_equal(rec["fold"], [fold_of[p] for p in rec["predicted"]])
    res = pt.bm.CVResults.from_adata(a)
    assert res.pooled.index.equals(pd.RangeIndex(len(res.pooled)))
    assert len(res.timings) == 6
    pooled = res.pooled[res.pooled["stratum"] == "all"]
    summary = res.summary.set_index(["model", "metric"])["mean"]
    for mask, suffix in (("all", ""), ("top40", "_top40")):
        by_fold = pooled[pooled["mask"] == mask].groupby("model")["roc_auc_de"].mean()
        for name in models:
            assert summary[name, f"pooled_roc_auc_de{suffix}"] == pytest.approx(by_fold[name], rel=1e-12)


def test_cv_reads_another_labels_key(labelled_adata):
    a = labelled_adata.copy()
    pt.pp.deg_labels(a, modality_key="perturbation_type", key_added="other")
    del a.uns["deg"]
    res = pt.bm.cross_validate(a, {"mean": pt.tl.NonControlMean}, labels_key="other", n_splits=3,
                               show_progress_bar=False)  # fmt: skip
    want = pt.bm.cross_validate(labelled_adata, {"mean": pt.tl.NonControlMean}, n_splits=3, show_progress_bar=False)
    pd.testing.assert_frame_equal(res.per_perturbation, want.per_perturbation)
