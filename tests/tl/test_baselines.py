from __future__ import annotations

import numpy as np
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
