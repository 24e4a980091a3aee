from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

torch = pytest.importorskip("torch")
pytest.importorskip("scvi")

import perturbtools as pt  # noqa: E402
from perturbtools.pp._gene_embeddings import GOMatrix  # noqa: E402
from perturbtools.tl._perturbnet import ConditionalINN, GenotypeVAEModule  # noqa: E402

FAST = {"scvi_epochs": 2, "max_epochs": 3, "lr": 1e-3, "show_progress_bar": False}


def test_cinn_is_invertible_and_learns():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(256, 6, generator=gen) * 2 + 1
    c = torch.randn(256, 3, generator=gen)
    flow = ConditionalINN(6, 3, n_blocks=4)
    flow.train()
    v, logdet = flow(z, c)  # initialises ActNorm
    flow.eval()
    torch.testing.assert_close(flow.inverse(flow(z, c)[0], c), z, rtol=1e-4, atol=1e-4)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    before = flow.nll(z, c).item()
    flow.train()
    for _ in range(30):
        opt.zero_grad()
        loss = flow.nll(z, c)
        loss.backward()
        opt.step()
    assert loss.item() < before


def test_genotype_vae_module():
    x = (torch.rand(16, 30) < 0.2).float()
    m = GenotypeVAEModule(30, n_latent=4, hidden=(16, 8))
    out = m(x)
    assert out["mu"].shape == (16, 4) and torch.isfinite(out["loss"])


@pytest.fixture
def counts_adata():
    a = pt.data.synthetic(n_cells=700, n_genes=50, n_perturbations=6, n_doubles=2, rng=0)
    pt.pp.deg_labels(a)
    pt.pp.add_gene_embedding(a, a.uns["synthetic"]["gene_embedding"])
    return a


def _toy_go(genes, rng=0):
    rng = np.random.default_rng(rng)
    mat = sparse.csr_matrix(rng.random((len(genes), 40)) < 0.15)
    return GOMatrix(mat, pd.Index(genes), pd.Index([f"GO:{i:07d}" for i in range(40)]))


def test_perturbnet_embedding_fit_sample_predict_save_load(counts_adata, tmp_path):
    perts = counts_adata.uns["deg"]["perturbations"]
    threads = torch.get_num_threads()
    m = pt.tl.PerturbNet(counts_adata, representation="embedding", embedding="gene_emb", n_blocks=4).fit(
        perts[2:], **FAST
    )
    assert torch.get_num_threads() == threads  # the cINN's one training thread is the fit's business only
    gen = m.sample(perts[:2], n_cells=30)
    assert gen.shape == (60, counts_adata.n_vars) and "X_scVI" in gen.obsm and "counts" in gen.layers
    assert np.allclose(gen.layers["counts"].data % 1, 0)
    # library sizes of the training perturbations' cells only (held-out cells were seen by scVI, never used here)
    labels = counts_adata.obs["perturbation"].astype(str).to_numpy()
    counts = counts_adata.layers["counts"][np.isin(labels, perts[2:])]
    np.testing.assert_allclose(m.log_library_, np.log(np.maximum(np.asarray(counts.sum(1)).ravel(), 1)), rtol=1e-6)
    m.predict(perts[:2])
    per, _ = pt.metrics.evaluate(counts_adata, "perturbnet")
    assert per["r2_hvg"].notna().all()
    dist = pt.metrics.distribution_distances(counts_adata, gen, n_pcs=5)
    assert (dist["n_generated"] == 30).all() and (
        dist["n_real"] == [(counts_adata.obs["perturbation"] == p).sum() for p in dist.index]
    ).all()
    m.save(tmp_path / "pn")
    loaded = pt.tl.PerturbNet.load(tmp_path / "pn", counts_adata)
    pd.testing.assert_frame_equal(loaded.predict(perts[:2], inplace=False).mean, counts_adata.varm["perturbnet_mean"])


def test_perturbnet_genotype_vae_and_ig(counts_adata):
    gv = pt.tl.GenotypeVAE(_toy_go(counts_adata.var_names)).fit(n_doubles=200, max_epochs=2, show_progress_bar=False)
    perts = counts_adata.uns["deg"]["perturbations"]
    m = pt.tl.PerturbNet(counts_adata, genotype_vae=gv, n_blocks=3).fit(perts[1:], **FAST)
    ig = m.integrated_gradients(perts[0], state_key="perturbation", target=perts[1], n_noise=8, n_steps=64)
    assert len(ig) == 40 and ig.index.is_unique and (np.diff(ig.abs().to_numpy()) <= 0).all()
    # completeness: the attributions add up to f(input) - f(all-zero baseline) (Sundararajan et al. 2017); the toy
    # model moves the score little (1e-6 to 1e-5 depending on float reduction order), float32 resolution is ~3e-8
    gap = ig.attrs["score"] - ig.attrs["baseline_score"]
    assert abs(ig.sum() - gap) <= 0.1 * abs(gap) + 1e-7
    # IG = (x - baseline) x mean gradient: a GO term the perturbed gene lacks (x = 0) gets exactly nothing
    go_vector = gv.vectors([m.data_.targets(perts[0])])[0]
    absent = [t for t, x in zip(gv.go.terms, go_vector, strict=True) if x == 0]
    assert 0 < len(absent) < 40 and (ig[absent] == 0).all() and (ig.drop(absent) != 0).any()
    import matplotlib.axes

    assert isinstance(pt.pl.attributions(ig), matplotlib.axes.Axes)


def test_pseudo_counts_for_log_data(counts_adata):
    del counts_adata.layers["counts"]
    with pytest.raises(KeyError, match="pseudo_counts"):
        pt.tl.PerturbNet(counts_adata, representation="embedding", embedding="gene_emb")
    perts = counts_adata.uns["deg"]["perturbations"]
    m = pt.tl.PerturbNet(
        counts_adata,
        representation="embedding",
        embedding="gene_emb",
        counts_layer=None,
        pseudo_counts=True,
        n_blocks=2,
    )
    m.fit(perts[1:], **FAST)
    assert m.predict([perts[0]], inplace=False).mean.notna().all().all()


def test_bad_representation(counts_adata):
    with pytest.raises(ValueError, match="embedding="):
        pt.tl.PerturbNet(counts_adata, representation="embedding")
    with pytest.raises(ValueError, match="representation"):
        pt.tl.PerturbNet(counts_adata, representation="smiles")


def test_genotype_vae_missing_gene():
    gv = pt.tl.GenotypeVAE(_toy_go(["A", "B"]))
    with pytest.raises(KeyError, match="no GO annotation"):
        gv.vectors([["C"]])
    aliased = pt.tl.GenotypeVAE(_toy_go(["A", "B"]), aliases=pd.DataFrame({"symbol": ["A"], "alias": ["OLD_A"]}))
    np.testing.assert_array_equal(aliased.vectors([["OLD_A"]]), aliased.vectors([["A"]]))


def test_plugin_encoder(counts_adata):
    def encoder(targets):  # e.g. a protein-sequence or SMILES model; here a deterministic toy
        return np.array([[len(t), sum(map(len, t)), ord(t[0][0]) % 7] for t in targets], dtype=np.float32)

    perts = counts_adata.uns["deg"]["perturbations"]
    m = pt.tl.PerturbNet(counts_adata, representation=encoder, n_blocks=2).fit(perts[1:], **FAST)
    assert m.representations(perts[:2]).shape == (2, 3)
    assert m.predict([perts[0]], inplace=False).mean.notna().all().all()

    def bad(targets):
        return np.zeros(3)

    with pytest.raises(ValueError, match="encoder returned"):
        pt.tl.PerturbNet(counts_adata, representation=bad).representations(perts[:2])


def test_scvi_decoder_embedding(counts_adata):
    from perturbtools import _scvi

    model = _scvi.train_scvi(counts_adata, max_epochs=1)
    emb = pt.pp.scvi_embedding(model)
    weight = model.module.decoder.px_scale_decoder[0].weight.detach().cpu().numpy()  # genes x hidden
    assert list(emb.index) == list(counts_adata.var_names) and emb.shape == weight.shape
    np.testing.assert_array_equal(emb.to_numpy(), weight.astype(np.float32))


def test_latents_only_without_decoder(counts_adata, tmp_path):
    """Precomputed `obsm['X_scVI']`, no scVI model: nearest-cell decoding from control and training cells only."""
    perts = list(counts_adata.uns["deg"]["perturbations"])
    with pytest.raises(KeyError, match="X_scVI"):
        pt.tl.PerturbNet(counts_adata, representation="embedding", embedding="gene_emb", latent_key="X_scVI")
    counts_adata.obsm["X_scVI"] = np.full((counts_adata.n_obs, 3), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="finite"):
        pt.tl.PerturbNet(counts_adata, representation="embedding", embedding="gene_emb", latent_key="X_scVI")
    # latents that separate perturbations: the truth is recoverable through the nearest cells
    labels = counts_adata.obs["perturbation"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    counts_adata.obsm["X_scVI"] = pd.get_dummies(labels).to_numpy(np.float32) * 3 + 0.1 * rng.normal(
        size=(counts_adata.n_obs, len(set(labels)))
    ).astype(np.float32)
    before = counts_adata.copy()
    m = pt.tl.PerturbNet(
        counts_adata, representation="embedding", embedding="gene_emb", latent_key="X_scVI", n_blocks=2, n_neighbors=5
    )
    held_out = perts[:2]
    m.fit(perts[2:], **FAST)
    assert m.scvi_model_ is None
    ref_labels = set(labels[m.reference_cells_])
    assert not ref_labels & set(held_out) and "control" in ref_labels
    gen = m.sample(held_out, n_cells=20)
    assert gen.shape == (40, counts_adata.n_vars) and "counts" not in gen.layers and "X_scVI" in gen.obsm
    X = counts_adata.X.toarray() if hasattr(counts_adata.X, "toarray") else counts_adata.X
    assert gen.X.min() >= X.min() - 1e-6 and gen.X.max() <= X.max() + 1e-6  # averages of real cells
    m.predict(held_out)
    assert counts_adata.varm["perturbnet_mean"].notna().all().all()
    assert set(before.obsm) <= set(counts_adata.obsm) and before.n_obs == counts_adata.n_obs
    m.save(tmp_path / "pn_latent")
    loaded = pt.tl.PerturbNet.load(tmp_path / "pn_latent", counts_adata)
    pd.testing.assert_frame_equal(loaded.predict(held_out, inplace=False).mean, counts_adata.varm["perturbnet_mean"])


def test_cross_validation_trains_scvi_once(counts_adata, monkeypatch):
    """scVI sees no label, so the folds share one model: one training for 3 folds, and reproducible results."""
    from perturbtools import _scvi

    calls = []
    train = _scvi.train_scvi
    monkeypatch.setattr(_scvi, "train_scvi", lambda *a, **k: calls.append(k) or train(*a, **k))
    spec = {"pn": (pt.tl.PerturbNet, {"representation": "embedding", "embedding": "gene_emb", "n_blocks": 2}, FAST)}
    perts = list(counts_adata.uns["deg"]["perturbations"])
    first = pt.bm.cross_validate(counts_adata, spec, perturbations=perts, n_splits=3, rng=0)
    assert len(calls) == 1 and calls[0]["max_epochs"] == FAST["scvi_epochs"]
    again = pt.bm.cross_validate(counts_adata, spec, perturbations=perts, n_splits=3, rng=0)
    pd.testing.assert_frame_equal(first.per_perturbation, again.per_perturbation)
    # a given scVI model is used as it is
    given = {
        "pn": (pt.tl.PerturbNet, {**spec["pn"][1], "scvi_model": _scvi.train_scvi(counts_adata, max_epochs=1)}, FAST)
    }
    pt.bm.cross_validate(counts_adata, given, perturbations=perts, n_splits=3, rng=0)
    assert len(calls) == 3  # the two trainings of this test, none in the folds
