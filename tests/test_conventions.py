"""The one store-or-return rule, checked over every public function and method.

* Annotators (``pp``) take ``copy``: they write into ``adata`` and return ``None``, or return an annotated copy.
* Tools with a result of their own take ``inplace``: ``inplace=True`` writes under ``key_added`` and returns
  ``None``; ``inplace=False`` returns the result and leaves ``adata`` unchanged.
* Everything else computes a new object and takes neither (``pseudobulk``, ``few_shot``, ``PerturbNet.sample``).
"""

from __future__ import annotations

import inspect

import pytest

import perturbtools as pt

MODULES = ("pp", "tl", "bm", "metrics", "get", "pl", "data")
#: constructors: ``key_added`` names the labels inside the new AnnData they return
BUILDS_NEW_OBJECT = {"pp.labels_from_de_table"}


def _public_callables():
    for modname in MODULES:
        mod = getattr(pt, modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                yield f"{modname}.{name}", obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and inspect.isfunction(member):
                        yield f"{modname}.{name}.{attr}", member


def test_store_or_return_signatures():
    seen = 0
    for name, func in _public_callables():
        params = inspect.signature(func).parameters
        assert not {"copy", "inplace"} <= set(params), f"{name} takes both `copy` and `inplace`"
        if "key_added" in params and name not in BUILDS_NEW_OBJECT:
            assert {"copy", "inplace"} & set(params), f"{name} stores under `key_added` without `copy` / `inplace`"
            seen += 1
        if "copy" in params:
            assert name.startswith("pp."), f"{name}: only annotators (pp) take `copy`; tools take `inplace`"
    assert seen >= 10


def _snapshot(adata):
    keys = {slot: set(getattr(adata, slot).keys()) for slot in ("obs", "var", "varm", "obsm", "layers")}
    keys["uns"] = {(k, *(v if isinstance(v, dict) else ())) for k, v in adata.uns.items()}
    return keys


@pytest.mark.parametrize("call", ["predict", "evaluate", "learning_curve", "split_perturbations"])
def test_inplace_false_or_copy_leaves_adata_unchanged_and_inplace_returns_none(labelled_adata, call):
    a = labelled_adata
    perts = list(a.uns["deg"]["perturbations"])
    model = pt.tl.NonControlMean(a).fit(perts[:5])
    if call == "evaluate":
        model.predict(perts[5:])
    before = _snapshot(a)
    runs = {
        "predict": lambda **kw: model.predict(perts[5:], **kw),
        "evaluate": lambda **kw: pt.metrics.evaluate(a, "noncontrol_mean", **kw),
        "learning_curve": lambda **kw: pt.bm.learning_curve(
            a, {"mean": pt.tl.NonControlMean}, train_sizes=[5], n_splits=2, show_progress_bar=False, **kw
        ),
        "split_perturbations": lambda **kw: pt.pp.split_perturbations(a, **kw),
    }
    kept, stored = ({"copy": True}, {}) if call.startswith("split") else ({"inplace": False}, {"inplace": True})
    assert runs[call](**kept) is not None
    assert _snapshot(a) == before
    assert runs[call](**stored) is None
    assert _snapshot(a) != before


def test_one_vocabulary_for_the_three_subtasks(labelled_adata):
    from perturbtools._keys import SUBTASKS, LabelKeys, PredictionKeys

    assert set(SUBTASKS) == {"de", "direction", "fc"}
    a = labelled_adata
    perts = list(a.uns["deg"]["perturbations"])
    pt.tl.KNN(a).fit(perts[:5]).predict(perts[5:])
    per, pooled = pt.metrics.evaluate(a, "knn", min_positives=1)
    for name, subtask in SUBTASKS.items():
        assert subtask.label in LabelKeys._fields and subtask.prediction in PredictionKeys._fields
        for metric in subtask.metrics:
            assert metric.endswith(f"_{name}") and metric in per and f"{metric}_top40" in per and metric in pooled
    old = [c for c in (*per, *pooled) if c.endswith(("_dir", "_dir_top40")) or c.startswith("up_")]
    assert not old, old


def test_predictions_written_under_the_old_direction_name_are_read(labelled_adata):
    a = labelled_adata
    perts = list(a.uns["deg"]["perturbations"])
    pt.tl.GPModel(a, n_components=4).fit(perts[:5], max_epochs=5).predict(perts[5:])
    a.varm["gp_up_proba"] = a.varm.pop("gp_direction_proba")
    preds = pt.tl.read_predictions(a, "gp")
    assert preds.direction_proba is not None
    with pytest.warns(FutureWarning, match="direction_proba"):
        assert preds.up_proba is preds.direction_proba
