from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import perturbtools as pt
from perturbtools._keys import prediction_keys

BASELINES = [
    (pt.tl.ControlMean, {}),
    (pt.tl.NonControlMean, {}),
    (pt.tl.CrisprInformedMean, {}),
    (pt.tl.RandomPerturbation, {}),
    (pt.tl.Additive, {}),
    (pt.tl.KNN, {"k": 5}),
    (pt.tl.Linear, {"n_components": 3}),
    (pt.tl.Linear, {"n_components": 3, "embedding": "gene_emb"}),
    (pt.tl.EmbeddingRidge, {"n_components": 5}),
]


#: the other families, with small training budgets: (class, init kwargs, fit kwargs)
FAMILIES = [
    *((cls, kwargs, {}) for cls, kwargs in BASELINES),
    (pt.tl.FrequencyPrior, {}, {}),
    (pt.tl.KNNLabels, {"embedding": "gene_emb"}, {}),
    (pt.tl.EmbeddingLogistic, {"embedding": "gene_emb"}, {}),
    ("STAMP", {"embedding": "gene_emb", "hidden1": (16, 16)}, {"max_epochs": 3, "show_progress_bar": False}),
    ("GPModel", {"embedding": "gene_emb"}, {}),
    ("PerturbNet", {"representation": "embedding", "embedding": "gene_emb", "n_blocks": 2},
     {"scvi_epochs": 1, "max_epochs": 1, "show_progress_bar": False}),
]  # fmt: skip


def models():
    """Every model family, torch ones included (they load lazily from ``pt.tl``)."""
    return [(getattr(pt.tl, cls) if isinstance(cls, str) else cls, init, fit) for cls, init, fit in FAMILIES]


@pytest.mark.parametrize(("cls", "kwargs", "fit_kwargs"), models(), ids=lambda x: getattr(x, "__name__", ""))
def test_fit_predict_save_load(labelled_adata, tmp_path, cls, kwargs, fit_kwargs):
    pt.pp.split_perturbations(labelled_adata, test_size=0.3, val_size=0.0)
    split = labelled_adata.uns["split"]
    model = cls(labelled_adata, **kwargs).fit(**fit_kwargs)
    assert model.train_perturbations_ == split["train"] or cls.__name__ == "STAMP"  # STAMP holds out validation
    assert set(model.train_perturbations_) <= set(split["train"])
    model.predict()
    preds = model.predict(inplace=False)
    field = "mean" if preds.mean is not None else "de_proba"  # label models predict DE probabilities only
    key = getattr(prediction_keys(cls._default_key), field)
    frame = labelled_adata.varm[key]
    assert frame.shape == (labelled_adata.n_vars, len(split["test"]))
    assert list(frame.columns) == split["test"]
    assert labelled_adata.uns[cls._default_key]["model"] == cls.__name__
    pd.testing.assert_frame_equal(getattr(preds, field), frame)
    model.save(tmp_path / "m")
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m")
    loaded = cls.load(tmp_path / "m", labelled_adata)
    reloaded = getattr(loaded.predict(inplace=False), field)
    if cls.__name__ == "PerturbNet":  # predictions are means of sampled cells: equal up to the sampling seed
        np.testing.assert_allclose(reloaded.to_numpy(), getattr(preds, field).to_numpy(), rtol=0, atol=0.5)
    else:
        pd.testing.assert_frame_equal(reloaded, getattr(preds, field))
    labelled_adata.write_h5ad(tmp_path / "x.h5ad")
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    pd.testing.assert_frame_equal(back.varm[key], frame)
    per, _ = pt.metrics.evaluate(back, cls._default_key)
    assert len(per) == len(split["test"])


def test_predict_before_fit(labelled_adata):
    with pytest.raises(RuntimeError, match="fit"):
        pt.tl.NonControlMean(labelled_adata).predict()


def test_missing_labels(adata):
    with pytest.raises(KeyError, match="deg_labels"):
        pt.tl.NonControlMean(adata)


def test_load_checks_class_and_genes(labelled_adata, tmp_path):
    pt.tl.NonControlMean(labelled_adata).fit().save(tmp_path / "m")
    with pytest.raises(TypeError, match="NonControlMean"):
        pt.tl.ControlMean.load(tmp_path / "m", labelled_adata)
    other = labelled_adata[:, ::-1].copy()
    with pytest.raises(ValueError, match="var_names"):
        pt.tl.NonControlMean.load(tmp_path / "m", other)


def test_unlabelled_training_perturbation(labelled_adata):
    with pytest.raises(KeyError, match="no labels"):
        pt.tl.NonControlMean(labelled_adata).fit(["NOT_A_PERT"])


def test_input_not_modified_by_inplace_false(labelled_adata):
    before = set(labelled_adata.varm.keys()), set(labelled_adata.uns.keys())
    pt.tl.NonControlMean(labelled_adata).fit().predict(inplace=False)
    assert (set(labelled_adata.varm.keys()), set(labelled_adata.uns.keys())) == before
    assert np.isfinite(labelled_adata.varm["deg_mean"].to_numpy()).all()


def test_empty_split_part_is_an_error_not_everything(labelled_adata):
    perts = list(labelled_adata.uns["deg"]["perturbations"])
    labelled_adata.uns["split"] = {"train": perts, "val": [], "test": []}
    m = pt.tl.NonControlMean(labelled_adata).fit()  # the split's train set
    assert m.train_perturbations_ == perts
    with pytest.raises(ValueError, match=r"test set of the split .* is empty"):
        m.predict()
    labelled_adata.uns["split"] = {"train": [], "val": [], "test": perts}
    with pytest.raises(ValueError, match=r"train set of the split .* is empty"):
        pt.tl.NonControlMean(labelled_adata).fit()


def test_public_fit_signatures_are_explicit_and_share_one_vocabulary():
    """scvi-tools style: every family documents its training arguments in its public ``fit``, with one set of names."""
    import inspect

    shared = {"max_epochs", "lr", "batch_size", "early_stopping_patience", "accelerator", "show_progress_bar"}
    for name in ("STAMP", "GPModel", "PerturbNet"):
        cls = getattr(pt.tl, name)
        params = inspect.signature(cls.fit).parameters
        assert "train_kwargs" not in params and "kwargs" not in params, name
        assert not {"patience", "max_iter", "epochs", "n_epochs"} & set(params), name
        assert "max_epochs" in params, name
        for arg in set(params) & shared:  # each shared argument is documented in the public docstring
            assert f"\n        {arg}" in cls.fit.__doc__ or f", {arg}" in cls.fit.__doc__, (name, arg)


def test_capability_mixins():
    assert issubclass(pt.tl.STAMP, pt.tl.FineTunable) and not issubclass(pt.tl.GPModel, pt.tl.FineTunable)
    assert issubclass(pt.tl.PerturbNet, pt.tl.Generative) and not issubclass(pt.tl.STAMP, pt.tl.Generative)
    a = pt.data.synthetic(n_cells=300, n_genes=30, n_perturbations=4, rng=0)
    pt.pp.deg_labels(a)
    with pytest.raises(TypeError, match=r"not a `pt\.tl\.FineTunable`"):
        pt.bm.few_shot(a, a.copy(), pt.tl.NonControlMean, shots=[0], show_progress_bar=False)
