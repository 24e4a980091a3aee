from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perturbtools as pt
from perturbtools.tl import LabelledData


def _mean(model, perts):
    return model.predict(perts, inplace=False).mean[perts].to_numpy().T


def test_noncontrol_is_cell_weighted(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    train = data.perturbations[:5]
    m = pt.tl.NonControlMean(labelled_adata).fit(train)
    cells = labelled_adata[labelled_adata.obs["perturbation"].isin(train)]
    np.testing.assert_allclose(_mean(m, ["X"])[0], np.asarray(cells.X.mean(axis=0)).ravel(), rtol=1e-5)


def test_control_mean(labelled_adata):
    m = pt.tl.ControlMean(labelled_adata).fit()
    ctrl = labelled_adata[labelled_adata.obs["perturbation"] == "control"]
    np.testing.assert_allclose(_mean(m, ["A"])[0], np.asarray(ctrl.X.mean(axis=0)).ravel(), rtol=1e-5)


def test_crispr_informed(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    target = data.perturbations[0]
    m = pt.tl.CrisprInformedMean(labelled_adata).fit(data.perturbations[1:])
    base = pt.tl.NonControlMean(labelled_adata).fit(data.perturbations[1:])
    got, ref = _mean(m, [target])[0], _mean(base, [target])[0]
    pos = labelled_adata.var_names.get_loc(target)
    assert got[pos] == 0
    np.testing.assert_allclose(np.delete(got, pos), np.delete(ref, pos))
    act = pt.tl.CrisprInformedMean(labelled_adata, modality="CRISPRa").fit(data.perturbations[1:])
    assert _mean(act, [target])[0][pos] == pytest.approx(2 * ref[pos], rel=1e-6)


def test_crispr_informed_needs_modality(adata):
    pt.pp.deg_labels(adata)
    m = pt.tl.CrisprInformedMean(adata).fit()
    with pytest.raises(ValueError, match="modality of"):
        m.predict(inplace=False)


def test_crispr_informed_uses_each_perturbations_own_modality(adata):
    singles = [p for p in adata.obs["perturbation"].cat.categories if p != "control" and "+" not in p]
    crispra = set(singles[:2])
    adata.obs["perturbation_type"] = [
        "CRISPRa" if p in crispra else "CRISPRi" for p in adata.obs["perturbation"].astype(str)
    ]
    pt.pp.deg_labels(adata, modality_key="perturbation_type")
    m = pt.tl.CrisprInformedMean(adata).fit()  # mixed-modality training data work
    base = pt.tl.NonControlMean(adata).fit()
    for target in singles[:4]:
        pos = adata.var_names.get_loc(target)
        expected = (2.0 if target in crispra else 0.0) * _mean(base, [target])[0][pos]
        assert _mean(m, [target])[0][pos] == pytest.approx(expected, rel=1e-6), target


def test_additive_doubles(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    double = next(p for p in data.perturbations if "+" in p)
    a, b = double.split("+")
    m = pt.tl.Additive(labelled_adata).fit([a, b])
    want = data.control_mean + data.delta[data.index([a])[0]] + data.delta[data.index([b])[0]]
    np.testing.assert_allclose(_mean(m, [double])[0], want, rtol=1e-5)
    # unseen single falls back to the non-control mean of training
    other = next(p for p in data.perturbations if "+" not in p and p not in (a, b))
    base = pt.tl.NonControlMean(labelled_adata).fit([a, b])
    np.testing.assert_allclose(_mean(m, [other]), _mean(base, [other]), rtol=1e-6)


def test_knn_k1_copies_nearest_delta(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    singles = [p for p in data.perturbations if "+" not in p]
    emb = labelled_adata.uns["gene_emb"].copy()
    emb.loc[singles[1]] = emb.loc[singles[0]] + 1e-3  # make singles[0] the nearest to singles[1]
    m = pt.tl.KNN(labelled_adata, embedding=emb, k=1).fit(singles[:1] + singles[2:])
    want = data.mean[data.index([singles[0]])[0]]
    np.testing.assert_allclose(_mean(m, [singles[1]])[0], want, rtol=1e-5)
    m5 = pt.tl.KNN(labelled_adata, embedding=emb, k=5).fit(singles[:1] + singles[2:])
    got5 = _mean(m5, [singles[1]])[0]
    assert not np.allclose(got5, want)


def test_knn_missing_gene_is_an_error(labelled_adata):
    emb = labelled_adata.uns["gene_emb"].iloc[:3]
    with pytest.raises(KeyError, match="no embedding"):
        pt.tl.KNN(labelled_adata, embedding=emb).fit()


def test_linear_matches_closed_form(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    singles = [p for p in data.perturbations if "+" not in p]
    train, test = singles[:4], singles[4:]
    m = pt.tl.Linear(labelled_adata, n_components=3, ridge=0.1).fit(train)
    Y = data.mean[data.index(train)].T
    b = Y.mean(1, keepdims=True)
    G = np.linalg.svd(Y - b, full_matrices=False)[0][:, :3]
    pos = [labelled_adata.var_names.get_loc(g) for g in train]
    P = G[pos]
    W = np.linalg.inv(G.T @ G + 0.1 * np.eye(3)) @ G.T @ (Y - b) @ P @ np.linalg.inv(P.T @ P + 0.1 * np.eye(3))
    q = labelled_adata.var_names.get_loc(test[0])
    np.testing.assert_allclose(_mean(m, [test[0]])[0], b.ravel() + G @ W @ G[q], rtol=1e-6)
    double = f"{test[0]}+{train[0]}"
    want = _mean(m, [test[0]])[0] + _mean(m, [train[0]])[0] - data.control_mean
    np.testing.assert_allclose(_mean(m, [double])[0], want, rtol=1e-6)


def test_random_perturbation_is_a_training_profile(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    m = pt.tl.RandomPerturbation(labelled_adata).fit(data.perturbations[:4])
    out = _mean(m, data.perturbations[4:])
    train = data.mean[data.index(data.perturbations[:4])]
    for row in out:
        assert np.isclose(train, row, rtol=1e-5).all(axis=1).any()


def test_knn_weights_by_hand(labelled_adata):
    """k = 3 with weights exp(-d_i) / sum_j exp(-d_j) over Euclidean distances of mean target embeddings."""
    data = LabelledData.from_adata(labelled_adata)
    emb = labelled_adata.uns["gene_emb"]
    singles = [p for p in data.perturbations if "+" not in p]
    query, train = singles[0], singles[1:]
    m = pt.tl.KNN(labelled_adata, embedding="gene_emb", k=3).fit(train)
    d = np.array([np.linalg.norm(emb.loc[query].to_numpy() - emb.loc[t].to_numpy()) for t in train])
    nearest = np.argsort(d)[:3]
    w = np.exp(-d[nearest]) / np.exp(-d[nearest]).sum()
    delta = np.stack([data.mean[data.index([train[i]])[0]] - data.control_mean for i in nearest])
    np.testing.assert_allclose(_mean(m, [query])[0], data.control_mean + w @ delta, rtol=1e-6)
    equal = pt.tl.KNN(labelled_adata, embedding="gene_emb", k=3, weighted=False).fit(train)
    np.testing.assert_allclose(_mean(equal, [query])[0], data.control_mean + delta.mean(0), rtol=1e-6)
    double = next(p for p in data.perturbations if "+" in p)  # a combination: the mean of its targets' rows
    x = emb.loc[double.split("+")].to_numpy().mean(0)
    d2 = np.array([np.linalg.norm(x - emb.loc[t].to_numpy()) for t in train])
    n2 = np.argsort(d2)[:3]
    w2 = np.exp(-d2[n2]) / np.exp(-d2[n2]).sum()
    delta2 = np.stack([data.mean[data.index([train[i]])[0]] - data.control_mean for i in n2])
    np.testing.assert_allclose(_mean(m, [double])[0], data.control_mean + w2 @ delta2, rtol=1e-6)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (pt.tl.CrisprInformedMean, {}),
        (pt.tl.KNN, {"embedding": "gene_emb", "k": 2}),
        (pt.tl.Linear, {"n_components": 3, "embedding": "gene_emb"}),
        (pt.tl.EmbeddingRidge, {"embedding": "gene_emb", "n_components": 4}),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_baselines_read_another_labels_key(labelled_adata, relabelled, cls, kwargs):
    """``labels_key=`` reaches the labels (a model that ignored it would look for ``deg``)."""
    data = LabelledData.from_adata(labelled_adata)
    train, test = data.perturbations[:6], data.perturbations[6:]
    want = _mean(cls(labelled_adata, **kwargs).fit(train), test)
    other = relabelled()
    model = cls(other, labels_key="other", **kwargs).fit(train)
    np.testing.assert_allclose(_mean(model, test), want, rtol=1e-6)
    model.predict(test)
    params = other.uns[cls._default_key]["params"]
    ridge = cls is pt.tl.EmbeddingRidge  # a PCA-reduced input records a list of keys
    assert {k: params[k] for k in kwargs} == {k: [v] if ridge and k == "embedding" else v for k, v in kwargs.items()}


def test_embedding_ridge_matches_sklearn(labelled_adata):
    """PCA inputs of the z-scored embedding, ridge with intercept: scikit-learn's Ridge on the same inputs."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    emb = pd.DataFrame(rng.normal(size=(labelled_adata.n_vars, 64)), index=labelled_adata.var_names)
    data = LabelledData.from_adata(labelled_adata)
    train, test = data.perturbations[:6], data.perturbations[6:]
    z = (emb - emb.mean()) / emb.std(ddof=0) / np.sqrt(emb.shape[1])

    def inputs(k):
        pcs = pd.DataFrame(PCA(n_components=k, svd_solver="full").fit_transform(z), index=emb.index)
        return lambda perts: np.stack([pcs.loc[p.split("+")].to_numpy().mean(0) for p in perts])

    for kwargs, k, alpha in (({}, 50, 1.0), ({"n_components": 5, "alpha": 3.0}, 5, 3.0)):  # defaults: 50 PCs, alpha 1
        x = inputs(k)
        ridge = Ridge(alpha=alpha).fit(x(train), data.delta[data.index(train)])
        model = pt.tl.EmbeddingRidge(labelled_adata, embedding=emb, **kwargs).fit(train)
        np.testing.assert_allclose(_mean(model, test), data.control_mean + ridge.predict(x(test)), rtol=1e-5, atol=1e-6)


def _closed_form_linear(data, train, P_rows, k, lam):
    Y = data.mean[data.index(train)].T
    b = Y.mean(1, keepdims=True)
    G = np.linalg.svd(Y - b, full_matrices=False)[0][:, :k]
    P = P_rows(G)
    W = np.linalg.inv(G.T @ G + lam * np.eye(k)) @ G.T @ (Y - b) @ P @ np.linalg.inv(P.T @ P + lam * np.eye(P.shape[1]))
    return b.ravel(), G, W


def test_linear_defaults_embedding_variant_and_fallback(labelled_adata):
    """Defaults k = 10, λ = 0.1 (capped at the number of singles); ``embedding=`` rows as P; no row: predict b."""
    a = labelled_adata
    data = LabelledData.from_adata(a)
    singles = [p for p in data.perturbations if "+" not in p]
    train, test = singles[:5], singles[5]
    pos = [a.var_names.get_loc(g) for g in train]
    b, G, W = _closed_form_linear(data, train, lambda G: G[pos], 5, 0.1)  # min(10, 5 singles) components
    q = a.var_names.get_loc(test)
    np.testing.assert_allclose(_mean(pt.tl.Linear(a).fit(train), [test])[0], b + G @ W @ G[q], rtol=1e-6)

    emb = a.uns["gene_emb"].drop(index=test).astype(np.float32)  # the test target has no row: predicted as b
    model = pt.tl.Linear(a, n_components=3, ridge=0.5, embedding=emb).fit(train)
    b, G, W = _closed_form_linear(data, train, lambda G: emb.loc[train].to_numpy(np.float64), 3, 0.5)
    assert model.n_fallback_ == 0
    other = next(p for p in a.var_names if p not in singles)  # an unperturbed gene with a row
    want = b + G @ W @ emb.loc[other].to_numpy(np.float64)  # float32 rows enter in float64
    np.testing.assert_allclose(_mean(model, [other])[0], want.astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(_mean(model, [test])[0], b, rtol=1e-6)
    assert model.n_fallback_ == 1
    _mean(model, [test, f"{test}+{other}"])
    assert model.n_fallback_ == 3


def test_linear_without_usable_singles_predicts_the_training_mean(labelled_adata, caplog):
    a = labelled_adata
    data = LabelledData.from_adata(a)
    singles = [p for p in data.perturbations if "+" not in p]
    emb = a.uns["gene_emb"].drop(index=singles)  # no training single has an embedding row
    with caplog.at_level("WARNING", logger="perturbtools.tl._baselines"):
        model = pt.tl.Linear(a, embedding=emb).fit(singles)
    assert "no training single" in caplog.text
    b = data.mean[data.index(singles)].mean(0)
    other = next(p for p in a.var_names if p not in singles)
    np.testing.assert_allclose(_mean(model, [other])[0], b, rtol=1e-6)
    doubles = [p for p in data.perturbations if "+" in p]
    only_doubles = pt.tl.Linear(a).fit(doubles)  # no single at all: b is the control mean
    np.testing.assert_allclose(_mean(only_doubles, [singles[0]])[0], data.control_mean, rtol=1e-6)


def test_crispr_informed_falls_back_to_the_training_modality(labelled_adata, tmp_path):
    """An unlabelled perturbation takes the one modality of training (``unknown`` ones aside); mixed training: error."""
    a = labelled_adata
    data = LabelledData.from_adata(a)
    a.uns["deg"]["modality"] = ["unknown", *a.uns["deg"]["modality"][1:]]  # e.g. merged label tables
    unseen = next(p for p in a.var_names if p not in data.perturbations)  # not in the labels
    model = pt.tl.CrisprInformedMean(a).fit()
    base = _mean(pt.tl.NonControlMean(a).fit(), [unseen])[0]
    pos = a.var_names.get_loc(unseen)
    got = _mean(model, [unseen])[0]
    assert got[pos] == 0.0 and base[pos] != 0.0  # CRISPRi: x 0
    np.testing.assert_allclose(np.delete(got, pos), np.delete(base, pos), rtol=1e-6)
    model.save(tmp_path / "m")
    np.testing.assert_allclose(_mean(pt.tl.CrisprInformedMean.load(tmp_path / "m", a), [unseen]), [got], rtol=1e-6)
    a.uns["deg"]["modality"] = ["CRISPRa", *a.uns["deg"]["modality"][1:]]
    mixed = pt.tl.CrisprInformedMean(a).fit()
    with pytest.raises(ValueError, match="unknown or mixed"):
        mixed.predict([unseen], inplace=False)
    first = data.perturbations[0]  # its own modality (CRISPRa) still applies
    assert _mean(mixed, [first])[0][a.var_names.get_loc(first)] == pytest.approx(
        2 * base[a.var_names.get_loc(first)], rel=1e-6
    )


def test_additive_save_load_keeps_singles_with_a_slash_in_the_name(tmp_path):
    a = pt.data.synthetic(n_cells=600, n_genes=60, n_perturbations=6, n_doubles=3, rng=0)
    double = next(p for p in a.obs["perturbation"].cat.categories if "+" in p)
    g = double.split("+")[0]
    a.var_names = [f"{v}/x" if v == g else v for v in a.var_names]
    a.obs["perturbation"] = a.obs["perturbation"].cat.rename_categories(lambda p: p.replace(g, f"{g}/x"))
    pt.pp.deg_labels(a, modality_key="perturbation_type")
    double = double.replace(g, f"{g}/x")
    singles = double.split("+")
    model = pt.tl.Additive(a).fit(singles)
    data = LabelledData.from_adata(a)
    want = data.control_mean + data.delta[data.index(singles)].sum(0)
    np.testing.assert_allclose(_mean(model, [double])[0], want, rtol=1e-5)
    model.save(tmp_path / "m")
    np.testing.assert_allclose(_mean(pt.tl.Additive.load(tmp_path / "m", a), [double])[0], want, rtol=1e-5)


def test_random_perturbation_replays_its_seed(labelled_adata):
    """The model draws one seed below 2**31 from ``rng``; each predicted label gets a training profile from it."""
    data = LabelledData.from_adata(labelled_adata)
    train, test = data.perturbations[:4], data.perturbations[4:]
    got = _mean(pt.tl.RandomPerturbation(labelled_adata).fit(train, rng=5), test)
    seed = int(np.random.default_rng(5).integers(2**31))
    pick = np.random.default_rng(seed).integers(len(train), size=len(test))
    np.testing.assert_allclose(got, data.mean[data.index(train)][pick], rtol=1e-6)


def test_knn_ties_go_to_the_earlier_training_perturbation():
    """Equal distances: the nearest are taken in training order (a stable sort), whatever their number."""
    from perturbtools.tl._baselines import knn_weights

    rng = np.random.default_rng(0)
    train = rng.integers(0, 3, size=(100, 1)).astype(float)  # distances 0, 1, 2 to the query, many tied
    nn, w = knn_weights(np.zeros((1, 1)), train, 5)
    np.testing.assert_array_equal(nn[0], np.flatnonzero(train[:, 0] == 0)[:5])
    np.testing.assert_allclose(w, np.full((1, 5), 0.2))


def test_knn_default_is_one_neighbour(labelled_adata):
    data = LabelledData.from_adata(labelled_adata)
    train, test = data.perturbations[:6], data.perturbations[6:]
    default = _mean(pt.tl.KNN(labelled_adata, embedding="gene_emb").fit(train), test)
    np.testing.assert_allclose(default, _mean(pt.tl.KNN(labelled_adata, embedding="gene_emb", k=1).fit(train), test))
    assert not np.allclose(default, _mean(pt.tl.KNN(labelled_adata, embedding="gene_emb", k=2).fit(train), test))


def test_knn_weights_stay_finite_far_from_every_neighbour():
    """Weights are a softmax of -distance per query: defined however far the query lies (no underflow to 0 / 0)."""
    from scipy.special import softmax

    from perturbtools.tl._baselines import knn_weights

    train = np.array([[0.0], [1.0], [3.0], [1000.0], [1002.0]])
    query = np.array([[0.5], [2000.0]])  # the second lies about 1,000 from its nearest neighbours
    nn, w = knn_weights(query, train, 2)
    np.testing.assert_array_equal(nn, [[0, 1], [4, 3]])
    d = np.abs(query - train[nn][..., 0])
    np.testing.assert_allclose(w, softmax(-d, axis=1), rtol=1e-12)


def test_linear_default_ten_components():
    a = pt.data.synthetic(n_cells=900, n_genes=60, n_perturbations=14, rng=1)
    pt.pp.deg_labels(a)
    data = LabelledData.from_adata(a)
    train, test = data.perturbations[:13], data.perturbations[13]
    pos = [a.var_names.get_loc(g) for g in train]
    b, G, W = _closed_form_linear(data, train, lambda G: G[pos], 10, 0.1)
    q = a.var_names.get_loc(test)
    np.testing.assert_allclose(_mean(pt.tl.Linear(a).fit(train), [test])[0], b + G @ W @ G[q], rtol=1e-6)
