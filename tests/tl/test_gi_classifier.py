from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import perturbtools as pt
from perturbtools.tl._gi_classifier import FEATURES

CLASSES = ["additive", "neomorphic", "synergy"]


def _scores(n_per_class=12, rng=0, sep=3.0):
    gen = np.random.default_rng(rng)
    centres = {"additive": (1.0, 1.0), "synergy": (1.5, 1.4), "neomorphic": (0.6, 0.2)}
    rows, labels = {}, {}
    for cls, (c, fit) in centres.items():
        for i in range(n_per_class):
            c1, c2 = c + gen.normal(scale=0.1 / sep), c + gen.normal(scale=0.1 / sep)
            rows[f"{cls}{i}"] = {"c1": c1, "c2": c2, "magnitude": np.hypot(c1, c2), "model_fit": fit + gen.normal(scale=0.05),
                                 "similarity": 0.8 + gen.normal(scale=0.05), "equality_of_contribution": 0.7 + gen.normal(scale=0.1),
                                 "dominance": abs(np.log10(abs(c1 / c2)))}  # fmt: skip
            labels[f"{cls}{i}"] = cls
    return pd.DataFrame.from_dict(rows, orient="index"), pd.Series(labels)


def _z(scores, ref):
    f = pt.tl.gi_features(ref)
    mu, sd = f.mean().to_numpy(), f.std(ddof=0).to_numpy()
    return (pt.tl.gi_features(scores).to_numpy() - mu) / sd


def test_features_are_order_free():
    scores, _ = _scores()
    swapped = scores.rename(columns={"c1": "c2", "c2": "c1"})
    pd.testing.assert_frame_equal(pt.tl.gi_features(scores), pt.tl.gi_features(swapped))
    assert list(pt.tl.gi_features(scores).columns) == list(FEATURES)
    np.testing.assert_allclose(pt.tl.gi_features(scores)["c_max"], np.maximum(scores["c1"], scores["c2"]))


def test_logistic_equals_sklearn_on_zscores():
    scores, labels = _scores(sep=0.5)
    clf = pt.tl.GIClassifier("logistic").fit(scores, labels)
    ref = LogisticRegression(C=1.0, class_weight="balanced", max_iter=10_000).fit(
        _z(scores, scores), labels.loc[scores.index]
    )
    test, _ = _scores(rng=1, sep=0.5)
    np.testing.assert_allclose(clf.predict_proba(test).to_numpy(), ref.predict_proba(_z(test, scores)), atol=1e-6)
    assert list(clf.predict(test)) == list(ref.predict(_z(test, scores)))


def test_tree_equals_sklearn_and_json_roundtrip(tmp_path):
    scores, labels = _scores(sep=0.5)
    clf = pt.tl.GIClassifier("tree", min_samples_leaf=2, min_samples_split=2, class_weight=None).fit(scores, labels)
    ref = DecisionTreeClassifier(max_depth=6, min_samples_leaf=2, min_samples_split=2, random_state=0).fit(
        _z(scores, scores), labels.loc[scores.index]
    )
    test, _ = _scores(rng=2, sep=0.5)
    np.testing.assert_allclose(clf.predict_proba(test).to_numpy(), ref.predict_proba(_z(test, scores)))
    clf.save(tmp_path / "gi.json")
    json.loads((tmp_path / "gi.json").read_text())  # plain JSON, nothing pickled
    back = pt.tl.GIClassifier.load(tmp_path / "gi.json")
    pd.testing.assert_frame_equal(back.predict_proba(test), clf.predict_proba(test))


def test_missing_columns_are_named_and_imputed():
    scores, labels = _scores()
    clf = pt.tl.GIClassifier().fit(scores, labels)
    partial = scores.drop(columns=["similarity", "dominance"])
    with pytest.warns(UserWarning, match=r"lack \['similarity', 'dominance'\]"):
        proba = clf.predict_proba(partial)
    assert "similarity" not in clf.features_used_ and "magnitude" in clf.features_used_
    # imputing the training mean (z = 0) drops the missing features' terms from the logistic model
    z = _z(scores, scores)
    z[:, [FEATURES.index("similarity"), FEATURES.index("dominance")]] = 0
    logits = z @ np.asarray(clf.coef_).T + clf.intercept_
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(proba.to_numpy(), expected / expected.sum(1, keepdims=True), atol=1e-10)
    with pytest.raises(KeyError, match="none of the features"):
        clf.predict(pd.DataFrame({"foo": [1.0]}))


def test_bad_fit_inputs():
    scores, labels = _scores()
    with pytest.raises(ValueError, match="one class"):
        pt.tl.GIClassifier().fit(scores, pd.Series("synergy", index=scores.index))
    with pytest.raises(ValueError, match="have a label"):
        pt.tl.GIClassifier().fit(scores, pd.Series({"x+y": "synergy"}))
    with pytest.raises(RuntimeError, match="not fitted"):
        pt.tl.GIClassifier().predict(scores)
    with pytest.raises(ValueError, match="'logistic' or 'tree'"):
        pt.tl.GIClassifier("svm")


def test_cv_is_disjoint_and_baselines_by_hand():
    scores, labels = _scores(n_per_class=10)
    cv = pt.tl.gi_classifier_cv(scores, labels, n_repeats=2, rng=0)
    pred = cv.predictions
    # every double is predicted exactly once per repeat and method: test folds partition the doubles
    counts = pred.groupby(["repeat", "method"])["double"].agg(lambda d: (len(d), d.nunique()))
    assert all(c == (30, 30) for c in counts)
    # majority class of the training folds: classes are balanced 10/10/10, so a test fold's own class is never the
    # strict majority of its training folds; accuracy of the majority baseline is computed by hand from the calls
    maj = pred[pred.method == "majority_class"]
    acc = cv.summary.set_index(["method", "metric"]).loc[("majority_class", "accuracy"), "mean"]
    assert acc == pytest.approx(
        maj.groupby("repeat").apply(lambda g: (g.true == g.predicted).mean(), include_groups=False).mean()
    )
    assert cv.summary.set_index(["method", "metric"]).loc[("logistic", "accuracy"), "mean"] == pytest.approx(1.0)
    assert int(cv.confusion.to_numpy().sum()) == 2 * 30 and (np.diag(cv.confusion) == 20).all()
    thr = pred[pred.method == "six_thresholds"].drop_duplicates("double").set_index("double")["predicted"]
    pd.testing.assert_series_equal(
        thr.sort_index(), pt.tl.threshold_classes(scores).loc[thr.index].sort_index(), check_names=False
    )


def test_default_classifier_is_shipped_as_json():
    clf = pt.tl.GIClassifier.default()
    assert clf.method == "logistic" and clf.features_ == list(FEATURES)
    assert set(clf.classes_) == {"synergy", "suppressor", "additive", "redundant", "neomorphic", "epistasis"}
    assert clf.meta_["cv_macro_f1"] >= 0.7


@pytest.mark.realdata
def test_default_classifier_matches_a_refit_on_the_reference():
    ref = pt.data.norman2019_gi_reference()
    labelled = [d for d in ref.labels.index if d in ref.scores.index]
    refit = pt.tl.GIClassifier().fit(ref.scores.loc[labelled], ref.labels.loc[labelled])
    shipped = pt.tl.GIClassifier.default()
    pd.testing.assert_frame_equal(shipped.predict_proba(ref.scores), refit.predict_proba(ref.scores), atol=1e-8)


@pytest.mark.realdata
def test_cross_validated_macro_f1_on_published_scores():
    ref = pt.data.norman2019_gi_reference()
    labels = ref.labels.loc[[d for d in ref.labels.index if d in ref.scores.index]]
    cv = pt.tl.gi_classifier_cv(ref.scores, labels, n_repeats=3, rng=0)
    s = cv.summary.set_index(["method", "metric"])["mean"]
    assert s["logistic", "macro_f1"] >= 0.7
    assert s["logistic", "macro_f1"] > s["six_thresholds", "macro_f1"] > s["majority_class", "macro_f1"]


def test_class_proba_from_gp_posterior():
    pytest.importorskip("torch")
    a = pt.data.synthetic(n_cells=2000, n_genes=60, n_perturbations=10, n_doubles=8, rng=4)
    pt.pp.deg_labels(a)
    pt.pp.add_gene_embedding(a, a.uns["synthetic"]["gene_embedding"])
    perts = a.uns["deg"]["perturbations"]
    doubles = [p for p in perts if "+" in p][:2]
    m = pt.tl.GPModel(a, n_components=6).fit([p for p in perts if p not in doubles])
    clf = pt.tl.GIClassifier.default()
    proba = pt.tl.gi_class_proba(
        m, doubles, classifier=clf, n_samples=10, max_subpopulation=2000, show_progress_bar=False
    )
    assert list(proba.index) == doubles
    np.testing.assert_allclose(proba[clf.classes_].sum(axis=1), 1.0)
    # shares are counts of sampled calls / n: multiples of 1/10
    np.testing.assert_allclose((proba[clf.classes_] * 10) % 1, 0, atol=1e-9)
    assert (proba["call"] == proba[clf.classes_].idxmax(axis=1)).all()


def test_confusion_plot_shows_counts():
    conf = pd.DataFrame(
        [[3, 1], [0, 4]], index=pd.Index(["a", "b"], name="published"), columns=pd.Index(["a", "b"], name="predicted")
    )
    ax = pt.pl.gi_confusion(conf)
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "3", "4"]
    assert ax.get_ylabel() == "published"
