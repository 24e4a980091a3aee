from __future__ import annotations

import pandas as pd
import pytest

import perturbtools as pt
from perturbtools.bm._recipes import _models


def _cfg(**kwargs):
    return pt.bm.BenchmarkConfig(quick=True, **kwargs)


def test_model_list_is_data_and_needs_decide_what_runs():
    go = pd.DataFrame([[0.0]], index=["A"])
    cfg = _cfg()
    with_go, skipped = _models(cfg, {"go": go}, counts=True, perturbnet=True)
    assert list(with_go) == [r.name for r in pt.bm.MODELS if "text" not in r.needs]  # report order = recipe order
    assert set(skipped) == {"knn1_text", "gp_text", "gp_go_text"}
    assert all("text embedding" in reason for reason in skipped.values())
    none, skipped = _models(cfg, {}, counts=True, perturbnet=True)
    assert set(none) == {"control_mean", "noncontrol_mean", "crispr_informed_mean", "random_perturbation",
                         "additive", "linear"}  # fmt: skip
    assert "GO embedding" in skipped["gp_go"]
    # the budgets come from the config; PerturbNet gets pseudo-counts on data without counts
    cls, init, fit = with_go["stamp_go"]
    assert cls is pt.tl.STAMP and init == {"embedding": "emb_go"}
    assert fit == {"max_epochs": cfg.stamp_epochs, "lr": cfg.stamp_lr, "show_progress_bar": False}
    _, init_counts, _ = with_go["perturbnet_go"]
    _, init_log, _ = _models(cfg, {"go": go}, counts=False, perturbnet=True)[0]["perturbnet_go"]
    assert "pseudo_counts" not in init_counts and init_log["pseudo_counts"] is True
    off, skipped = _models(_cfg(perturbnet=False), {"go": go}, counts=True, perturbnet=False)
    assert "perturbnet_go" not in off and "switched off" in skipped["perturbnet_go"]


def test_model_selection_by_name():
    cfg = _cfg(extra={"models": ["noncontrol_mean", "knn1_go"]})
    models, _ = _models(cfg, {"go": pd.DataFrame([[0.0]], index=["A"])}, counts=False, perturbnet=False)
    assert list(models) == ["noncontrol_mean", "knn1_go"]
    with pytest.raises(ValueError, match="Unknown model names \\['nope'\\]"):
        _models(_cfg(extra={"models": ["nope"]}), {}, counts=False, perturbnet=False)


def test_dataset_recipes_name_loaders_that_exist():
    for recipes in pt.bm.DATASETS.values():
        for recipe in recipes:
            assert callable(getattr(pt.data, recipe.loader))
            assert set(recipe.sections) <= {"gi", "perturbnet_distributions", "learning_curve"}


def test_old_tl_names_still_work_with_a_future_warning():
    with pytest.warns(FutureWarning, match="moved to `pt.bm.cross_validate`"):
        assert pt.tl.cross_validate is pt.bm.cross_validate
    with pytest.warns(FutureWarning, match="pt.bm.few_shot"):
        assert pt.tl.few_shot is pt.bm.few_shot
