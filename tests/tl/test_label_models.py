from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import perturbtools as pt


def _label_lines(n_perts=24, n_genes=60, rng=0):
    """Two label-only 'cell lines' sharing genes, with correlated DEG sets and a gene embedding."""
    gen = np.random.default_rng(rng)
    genes = [f"G{i:03d}" for i in range(n_genes)]
    base = gen.random(n_genes) ** 3
    perts = genes[:n_perts]
    lines = []
    shared = {p: gen.random(n_genes) < base * 0.8 for p in perts}
    for _ in range(2):
        sets = {}
        for p in perts:
            own = gen.random(n_genes) < base * 0.4
            mask = shared[p] | own
            order = np.argsort(-(mask + gen.random(n_genes) * 0.5))
            sets[p] = [genes[i] for i in order[: max(int(mask.sum()), 2)]]
        lines.append(pt.pp.labels_from_de_table(sets, genes=genes, direction="up"))
    emb = pd.DataFrame(gen.normal(size=(n_genes, 5)), index=genes)
    for a in lines:
        pt.pp.add_gene_embedding(a, emb)
    return lines[0], lines[1]


def test_frequency_prior_by_hand():
    _, b = _label_lines()
    perts = list(b.uns["deg"]["perturbations"])
    m = pt.tl.FrequencyPrior(b, pseudocount=0.5).fit(perts[:10])
    pred = m.predict(perts[10:12], inplace=False).de_proba
    y = b.varm["deg_is_de"][perts[:10]].to_numpy()
    np.testing.assert_allclose(pred[perts[10]], (y.sum(1) + 0.5) / 11, rtol=1e-6)


def test_source_ranking_and_combination_by_hand():
    a, b = _label_lines()
    perts = list(b.uns["deg"]["perturbations"])
    copy = pt.tl.SourceRanking(b, source=a).fit([])  # no target training needed
    pct = rankdata(a.varm["deg_scores"][perts[3]].to_numpy()) / a.n_vars
    np.testing.assert_allclose(copy.predict([perts[3]], inplace=False).de_proba[perts[3]], pct, rtol=1e-6)
    combo = pt.tl.PriorSourceCombination(b, source=a).fit(perts[:10])
    freq = (b.varm["deg_is_de"][perts[:10]].to_numpy().sum(1) + 0.5) / 11
    expected = 0.5 * rankdata(freq) / b.n_vars + 0.5 * pct
    np.testing.assert_allclose(combo.predict([perts[3]], inplace=False).de_proba[perts[3]], expected, rtol=1e-6)


def test_label_stacking_equals_sklearn_on_leave_one_out_features():
    a, b = _label_lines()
    perts = list(b.uns["deg"]["perturbations"])
    train = perts[:8]
    m = pt.tl.LabelStacking(b, source=a).fit(train)
    y = b.varm["deg_is_de"][train].to_numpy().T
    loo = (y.sum(0)[None] - y + 0.5) / (len(train) - 1 + 1.0)
    src = np.stack([rankdata(a.varm["deg_scores"][p].to_numpy()) / a.n_vars for p in train])
    sf = a.varm["deg_is_de"].to_numpy().mean(1)
    sf = (sf * a.varm["deg_is_de"].shape[1] + 0.5) / (a.varm["deg_is_de"].shape[1] + 1.0)
    logit = lambda p: np.log(p / (1 - p))
    x = np.stack([logit(loo), src, np.broadcast_to(logit(sf), src.shape)], -1).reshape(-1, 3)
    ref = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x, y.reshape(-1))
    np.testing.assert_allclose(m.coef_, ref.coef_[0], rtol=1e-4)


def test_knn_labels_weights():
    _, b = _label_lines()
    perts = list(b.uns["deg"]["perturbations"])
    m = pt.tl.KNNLabels(b, k=2, prior_weight=0.0).fit(perts[:6])
    emb = b.varm["gene_emb"] if "gene_emb" in b.varm else None
    e = pt.pp.get_gene_embedding(b, "gene_emb")
    q, t = e.loc[perts[7]].to_numpy(), e.loc[perts[:6]].to_numpy()
    d = np.sqrt(((t - q) ** 2).sum(1))
    nn = np.argsort(d)[:2]
    w = np.exp(-(d[nn] - d[nn].min()))
    w /= w.sum()
    expected = (w[:, None] * b.varm["deg_is_de"][[perts[i] for i in nn]].to_numpy().T).sum(0)
    np.testing.assert_allclose(m.predict([perts[7]], inplace=False).de_proba[perts[7]], expected, rtol=1e-6)
    del emb


def test_expression_models_refuse_label_only_data():
    _, b = _label_lines()
    with pytest.raises(ValueError, match="no cells"):
        pt.tl.NonControlMean(b)


def test_cross_validate_on_label_only_data_scores_de_only():
    _, b = _label_lines()
    pt.bm.cross_validate(b, {"prior": pt.tl.FrequencyPrior, "knn": pt.tl.KNNLabels}, n_splits=3, inplace=True)
    res = pt.bm.CVResults.from_adata(b, "cv")
    assert set(res.per_perturbation.columns) >= {"roc_auc_de", "pr_auc_de"}
    assert not any(c.startswith(("pearson", "roc_auc_direction", "mae")) for c in res.per_perturbation.columns)
    # per-perturbation AUROC equals sklearn on the out-of-fold probabilities
    row = res.per_perturbation[res.per_perturbation.model == "knn"].iloc[0]
    p = row["perturbation"]
    proba = b.varm["cv_knn_de_proba"][p]
    assert row["roc_auc_de"] == pytest.approx(roc_auc_score(b.varm["deg_is_de"][p], proba))


def test_stamp_on_labels_and_documented_transfer_path():
    pytest.importorskip("torch")
    k562, rpe1 = _label_lines()
    perts = list(rpe1.uns["deg"]["perturbations"])
    model = pt.tl.STAMP(k562, hidden1=(32, 32)).fit(max_epochs=3, show_progress_bar=False)
    assert np.isfinite(model.history_["train_l1"]).all()
    tuned = pt.tl.STAMP.from_pretrained(model, rpe1).fine_tune(perts[:5], max_epochs=2, show_progress_bar=False)
    proba = tuned.predict(perts[5:], inplace=False).de_proba
    assert proba.shape == (rpe1.n_vars, len(perts) - 5) and ((proba >= 0) & (proba <= 1)).all().all()


def test_few_shot_on_labels_runs_source_baseline_at_zero_shots():
    pytest.importorskip("torch")
    k562, rpe1 = _label_lines()
    out, per = pt.bm.few_shot(
        k562, rpe1, (pt.tl.STAMP, {"hidden1": (16, 16)}, {"max_epochs": 2, "show_progress_bar": False}), shots=(0, 4),
        baselines={"prior": pt.tl.FrequencyPrior, "copy": (pt.tl.SourceRanking, {"source": k562})}, n_splits=2,
        return_per_perturbation=True, show_progress_bar=False,
    )  # fmt: skip
    got = set(zip(out["strategy"], out["n"], strict=True))
    assert ("copy", 0) in got and ("prior", 0) not in got and ("scratch", 4) in got
    # every target perturbation is tested once per (strategy, n)
    assert per.groupby(["strategy", "n"])["perturbation"].nunique().eq(24).all()


def test_embedding_logistic_equals_sklearn_per_gene():
    _, b = _label_lines()
    perts = list(b.uns["deg"]["perturbations"])
    train = perts[:16]
    m = pt.tl.EmbeddingLogistic(b, C=0.5, n_components=3, max_iter=2000).fit(train)
    x = m._design(train)
    y = b.varm["deg_is_de"][train].to_numpy().T
    # sklearn's L2 logistic (penalty ||w||^2 / (2C), intercept unpenalised) on the same design, gene by gene
    for g in np.flatnonzero((y.sum(0) > 0) & (y.sum(0) < len(train)))[:3]:
        ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x, y[:, g])
        np.testing.assert_allclose(m.coef_[:, g], ref.coef_[0], atol=2e-4)
        np.testing.assert_allclose(m.intercept_[g], ref.intercept_[0], atol=2e-4)
    assert m.predict(perts[16:], inplace=False).de_proba.shape == (b.n_vars, len(perts) - 16)


def test_few_shot_between_conditions_of_one_anndata():
    pytest.importorskip("torch")
    a = pt.data.synthetic(n_cells=1200, n_genes=40, n_perturbations=8, rng=2)
    a.obs["condition"] = np.where(np.arange(a.n_obs) % 2 == 0, "stim", "unstim")
    pt.pp.deg_labels(a, condition_key="condition")
    pt.pp.add_gene_embedding(a, a.uns["synthetic"]["gene_embedding"])
    out = pt.bm.few_shot(
        a, a, (pt.tl.STAMP, {"hidden1": (16, 16)}, {"max_epochs": 2, "show_progress_bar": False}), shots=(0, 2),
        labels_key="deg_stim", source_labels_key="deg_unstim", n_splits=2, show_progress_bar=False,
    )  # fmt: skip
    assert set(out["strategy"]) == {"pretrained", "scratch"} and set(out["n"]) == {0, 2}
