from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import perturbtools as pt  # noqa: E402
from perturbtools.tl._stamp import STAMPModule, stamp_losses  # noqa: E402

FAST = {"max_epochs": 3, "show_progress_bar": False}


def _batch(b=4, g=12, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    is_de = (torch.rand(b, g, generator=gen) < 0.3).float()
    up = (torch.rand(b, g, generator=gen) < 0.5).float() * is_de
    fc = torch.rand(b, g, generator=gen) + 0.5
    return torch.randn(b, d, generator=gen), torch.randn(g, d, generator=gen), is_de, up, fc


@pytest.mark.parametrize("gene_specific", [False, True])
def test_module_shapes_and_one_step_lowers_loss(gene_specific):
    x, emb, is_de, up, fc = _batch()
    torch.manual_seed(0)
    m = STAMPModule(emb, hidden1=(16, 16), dropout1=0.0, gene_specific=gene_specific)
    out = m(x)
    assert {k: v.shape for k, v in out.items()} == dict.fromkeys(("de_logit", "direction_logit", "log_fc"), (4, 12))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    before = stamp_losses(m(x), is_de, up, fc)["total"]
    for _ in range(5):
        opt.zero_grad()
        loss = stamp_losses(m(x), is_de, up, fc)["total"]
        loss.backward()
        opt.step()
    assert torch.isfinite(before) and loss < before


def test_split_first_layer_equals_concatenation():
    x, emb, *_ = _batch()
    m = STAMPModule(emb, hidden1=(8, 8))
    W = torch.cat([m.w_pert.weight, m.w_gene.weight], dim=1)
    concat = torch.cat([x[:, None, :].expand(-1, 12, -1), emb[None].expand(4, -1, -1)], dim=-1)
    ref = concat @ W.T + m.w_gene.bias
    got = m.w_pert(x)[:, None, :] + m.w_gene(emb)[None]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gene_specific", [False, True])
def test_entries_forward_and_losses_equal_dense(gene_specific):
    """Heads 2-3 evaluated only at the DEGs give the dense values there, the same losses and the same gradients."""
    x, emb, is_de, up, fc = _batch()
    torch.manual_seed(0)
    m = STAMPModule(emb, hidden1=(8, 8), gene_specific=gene_specific)
    entries = is_de.nonzero(as_tuple=True)
    dense, sparse = m(x), m(x, entries=entries)
    for k in ("direction_logit", "log_fc"):
        torch.testing.assert_close(sparse[k], dense[k][entries])
    ld, ls = stamp_losses(dense, is_de, up, fc), stamp_losses(sparse, is_de, up, fc)
    for k in ld:
        torch.testing.assert_close(ls[k], ld[k])
    gd = torch.autograd.grad(ld["total"], list(m.parameters()), allow_unused=True)
    gs = torch.autograd.grad(ls["total"], list(m.parameters()), allow_unused=True)
    for a, b in zip(gd, gs, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_split_first_layer_initialised_like_the_concatenated_layer():
    d = 50
    m = STAMPModule(torch.zeros(3, d))
    bound = (2 * d) ** -0.5
    for p in (m.w_pert.weight, m.w_gene.weight, m.w_gene.bias):
        top = p.detach().abs().max().item()
        assert 0.9 * bound < top <= bound


def test_losses_match_reference_weights():
    x, emb, is_de, up, fc = _batch()
    m = STAMPModule(emb, hidden1=(8, 8), dropout1=0.0)
    out = m(x)
    n, n_de = is_de.numel(), is_de.sum()
    w1 = is_de * ((n - n_de) / n_de) / 4 + 1
    ref1 = torch.nn.functional.binary_cross_entropy(torch.sigmoid(out["de_logit"]), is_de, weight=w1)
    n_up = (is_de * up).sum()
    w2 = is_de * up * (n_de / n_up) + is_de * (1 - up) * (n_de / (n_de - n_up))
    ref2 = (
        torch.nn.functional.binary_cross_entropy(torch.sigmoid(out["direction_logit"]), up, weight=w2, reduction="sum")
        / w2.sum()
    )
    ref3 = (is_de * (torch.exp(out["log_fc"]) - fc) ** 2).sum() / n_de
    got = stamp_losses(out, is_de, up, fc)
    torch.testing.assert_close(got["l1"], ref1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["l2"], ref2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["l3"], ref3, rtol=1e-5, atol=1e-6)


def test_fit_predict_save_load_deterministic(labelled_adata, tmp_path):
    a = pt.tl.STAMP(labelled_adata, hidden1=(32, 32)).fit(**FAST)
    b = pt.tl.STAMP(labelled_adata, hidden1=(32, 32)).fit(**FAST)
    pa, pb = a.predict(inplace=False), b.predict(inplace=False)
    pd.testing.assert_frame_equal(pa.de_proba, pb.de_proba)
    assert set(a.history_.columns) >= {"train_l1", "val_l1", "val_l3"}
    a.save(tmp_path / "s")
    loaded = pt.tl.STAMP.load(tmp_path / "s", labelled_adata)
    for field in ("de_proba", "direction_proba", "logfc"):
        pd.testing.assert_frame_equal(getattr(loaded.predict(inplace=False), field), getattr(pa, field))
    assert not list((tmp_path / "s").glob("*.pt*"))  # numpy + json only, no pickle
    a.predict()
    per, pooled = pt.metrics.evaluate(labelled_adata, "stamp")
    assert per.attrs["score_sources"]["de_score"] == "predicted de_proba"
    assert np.isfinite(pooled["roc_auc_de"].iloc[0])


def test_model_selection_restores_best_epoch(labelled_adata):
    m = pt.tl.STAMP(labelled_adata, hidden1=(32, 32)).fit(max_epochs=8, lr=5e-2, show_progress_bar=False)
    h = m.history_
    from perturbtools.tl._stamp._module import stamp_losses as losses

    val = m.val_perturbations_
    with torch.no_grad():
        out = m.module_(torch.from_numpy(m._embed(val)))
        got = losses(out, *(torch.from_numpy(t) for t in m._targets(val)))
    assert float(got["l3"]) == pytest.approx(h["val_l3"].min(), rel=1e-4)


def test_missing_embeddings(labelled_adata):
    emb = labelled_adata.uns["gene_emb"]
    p = labelled_adata.uns["deg"]["perturbations"][0]
    with pytest.raises(KeyError, match="no embedding"):
        pt.tl.STAMP(labelled_adata, embedding=emb.drop(index=p), hidden1=(8, 8)).fit(**FAST)
    with pytest.raises(KeyError, match="missing_output_genes"):
        pt.tl.STAMP(labelled_adata, embedding=emb.iloc[:-3].copy(), missing_output_genes="error")
    m = pt.tl.STAMP(labelled_adata, embedding=emb.drop(index=emb.index[-1]), hidden1=(8, 8))
    assert (~m.coverage_["covered"]).sum() == 1


def _target_line(src):
    """A second labelled 'cell line' with the source's genes and gene embedding."""
    tgt = pt.data.synthetic(n_cells=600, n_genes=60, n_perturbations=8, rng=5)
    tgt.var_names = src.var_names
    pt.pp.deg_labels(tgt)
    pt.pp.add_gene_embedding(tgt, src.uns["gene_emb"])
    return tgt


def test_few_shot_transfer(labelled_adata):
    src = labelled_adata
    tgt = _target_line(src)
    table = pt.bm.few_shot(
        src, tgt, (pt.tl.STAMP, {"hidden1": (16, 16)}, FAST), shots=(0, 2, 4), n_splits=2,
        baselines={"noncontrol_mean": pt.tl.NonControlMean}, show_progress_bar=False,
    )  # fmt: skip
    assert set(table["strategy"]) == {"pretrained", "scratch", "noncontrol_mean"}
    assert set(table.loc[table["strategy"] == "pretrained", "n"]) == {0, 2, 4}
    assert 0 not in set(table.loc[table["strategy"] == "scratch", "n"])
    import matplotlib.axes

    assert isinstance(pt.pl.few_shot(table), matplotlib.axes.Axes)


@pytest.mark.gpu
def test_stamp_cuda(labelled_adata):
    m = pt.tl.STAMP(labelled_adata, hidden1=(32, 32)).fit(accelerator="cuda", **FAST)
    assert m.predict(inplace=False).de_proba.notna().all().all()


class _CountingSTAMP(pt.tl.STAMP):
    """STAMP that records how many perturbations each fit actually trained on."""

    sizes: ClassVar[list] = []

    def _fit(self, train, **kwargs):
        super()._fit(train, **kwargs)
        _CountingSTAMP.sizes.append(len(self.train_perturbations_))


def test_few_shot_n_shots_train_on_n_perturbations(labelled_adata):
    src = labelled_adata
    tgt = _target_line(src)
    _CountingSTAMP.sizes = []
    pt.bm.few_shot(src, tgt, (_CountingSTAMP, {"hidden1": (8, 8)}, FAST), shots=(0, 2, 3), n_splits=2,
                   show_progress_bar=False)  # fmt: skip
    pretrain, rest = _CountingSTAMP.sizes[0], _CountingSTAMP.sizes[1:]
    assert pretrain < len(src.uns["deg"]["perturbations"])  # pretraining keeps its validation hold-out
    assert sorted(rest) == [2, 2, 2, 2, 3, 3, 3, 3]  # 2 folds x (fine-tuned, scratch) x shots 2 and 3, none n - 1


def test_validation_without_degs_keeps_heads_2_3_of_the_last_epoch(labelled_adata):
    data = pt.tl.LabelledData.from_adata(labelled_adata)
    no_de = labelled_adata.copy()
    val = data.perturbations[:2]
    for key, value in (("deg_is_de", False), ("deg_direction", 0)):
        frame = no_de.varm[key].copy()
        frame[val] = value
        no_de.varm[key] = frame
    train = data.perturbations[2:]
    with pytest.warns(UserWarning, match="validation perturbation\\(s\\) have no DEG"):
        m = pt.tl.STAMP(no_de, hidden1=(16, 16)).fit(train, val_perturbations=val, max_epochs=4, lr=5e-2,
                                                     show_progress_bar=False)  # fmt: skip
    last = pt.tl.STAMP(no_de, hidden1=(16, 16))
    last.fit(train, val_perturbations=[], max_epochs=4, lr=5e-2, show_progress_bar=False)  # no selection at all
    for name, value in m.module_.state_dict().items():
        if not name.startswith("head1."):  # heads 2-3 and the shared layers: the last epoch, not epoch 0
            torch.testing.assert_close(value, last.module_.state_dict()[name])


def test_training_on_labels_without_degs_warns_naming_labels_and_threshold(labelled_adata):
    no_de = labelled_adata.copy()
    for key, value in (("deg_is_de", False), ("deg_direction", 0)):
        no_de.varm[key] = no_de.varm[key].map(lambda _, v=value: v)
    stamp_kwargs = {"max_epochs": 1, "val_perturbations": [], "show_progress_bar": False}
    for model, kwargs in ((pt.tl.STAMP(no_de, hidden1=(16, 16)), stamp_kwargs), (pt.tl.FrequencyPrior(no_de), {})):
        with pytest.warns(UserWarning, match=r"none of the \d+ training perturbations has a DEG.*'deg'.*p <= 0.01"):
            model.fit(**kwargs)
    with warnings.catch_warnings():  # labels with DEGs: no such warning
        warnings.simplefilter("error")
        pt.tl.FrequencyPrior(labelled_adata).fit()
