"""The command line end to end on a user-format file (non-default columns, guides, two conditions, raw counts)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import perturbtools as pt
from perturbtools.__main__ import main


def _user_file(path, rng=0):
    """A screen as a user brings it: `sgRNA` guide labels (2 per target), control `NT`, stim/unstim, counts in X."""
    parts = []
    for i, cond in enumerate(("stim", "unstim")):
        a = pt.data.synthetic(n_cells=900, n_genes=60, n_perturbations=6, rng=rng + i)
        gen = np.random.default_rng(i)
        guide = [("NT" if p == "control" else f"{p}_{gen.integers(1, 3)}") for p in a.obs["perturbation"].astype(str)]
        obs = pd.DataFrame({"sgRNA": guide, "condition": cond, "well": [f"w{cond}{j % 3}" for j in range(a.n_obs)]},
                           index=[f"{cond}_{c}" for c in a.obs_names])  # fmt: skip
        parts.append(ad.AnnData(X=a.layers["counts"].copy(), obs=obs, var=pd.DataFrame(index=a.var_names)))
    full = ad.concat(parts)
    full.write_h5ad(path)
    return full


def test_cli_check_and_quick_benchmark_on_a_user_file(tmp_path, capsys):
    path = tmp_path / "my_screen.h5ad"
    original = _user_file(path)
    args = ["--perturbation-key", "sgRNA", "--control", "NT", "--collapse-guides", "--condition-key", "condition",
            "--batch-key", "well", "--modality", "crispri", "--no-text", "--no-perturbnet", "--quiet"]  # fmt: skip
    assert main(["check", str(path), *args]) == 0
    out = capsys.readouterr().out
    assert "my_screen_stim: 900 cells x 60 genes, 6 perturbations" in out
    assert "Guides collapsed to targets" in out and "raw counts" in out
    assert "skipped knn1_go" in out  # synthetic gene names have no GO annotation: skipped with a reason, no crash
    rc = main(["benchmark", "--dataset", str(path), "--out", str(tmp_path / "out"), "--quick", "--n-splits", "3",
               "--models", "noncontrol_mean,control_mean,linear,knn1_go", *args])  # fmt: skip
    assert rc == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## my_screen_stim" in report and "## my_screen_unstim" in report
    assert "models skipped" in report and "knn1_go" in report
    assert "tested against the control cells of its own batches of `obs['well']`" in report
    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert set(metrics["model"]) == {"noncontrol_mean", "control_mean", "linear"}
    # 6 targets per condition (guides collapsed), not 12 guide labels
    h5 = ad.read_h5ad(tmp_path / "out" / "my_screen_stim.h5ad")
    assert len(h5.uns["deg"]["perturbations"]) == 6
    assert h5.uns["deg"]["params"]["batch_key"] == "well" and len(h5.uns["deg"]["n_control_cells_matched"]) == 6
    # the input file is unchanged
    again = ad.read_h5ad(path)
    np.testing.assert_array_equal(again.X.toarray() if hasattr(again.X, "toarray") else again.X,
                                  original.X.toarray() if hasattr(original.X, "toarray") else original.X)  # fmt: skip


def test_cli_names_the_option_to_fix(tmp_path, capsys):
    path = tmp_path / "s.h5ad"
    _user_file(path)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "`obs['perturbation']` not found" in err and "--perturbation-key" in err and "sgRNA" in err
    assert main(["check", str(path), "--perturbation-key", "sgRNA"]) == 2
    assert "--control" in capsys.readouterr().err


def test_design_check_warns_on_confounded_controls():
    a = pt.data.synthetic(n_cells=300, n_genes=20, n_perturbations=3, rng=0)
    a.obs["well"] = np.where(a.obs["perturbation"] == "control", "ctrl_well", "pert_well")
    with pytest.warns(UserWarning, match=r"No control cell shares a batch of `adata.obs\['well'\]`"):
        table = pt.pp.check_design(a, "well")
    assert table.loc["ctrl_well", "n_perturbed"] == 0 and table.loc["pert_well", "n_control"] == 0


def test_guides_and_counts_detection():
    targets = pt.pp.guide_targets(["ZAP70_1", "ZAP70_2", "NKX2-1", "control", "CD3E_sg3", "STAT2g2", "SMG1"])
    assert targets.to_dict() == {"ZAP70_1": "ZAP70", "ZAP70_2": "ZAP70", "NKX2-1": "NKX2-1", "control": "control",
                                 "CD3E_sg3": "CD3E", "STAT2g2": "STAT2", "SMG1": "SMG1"}  # fmt: skip
    assert pt.pp.looks_guide_level(["A_1", "A_2", "B_1", "B_2", "control"])
    assert not pt.pp.looks_guide_level(["A", "B", "NKX2-1", "control"])
    assert pt.pp.looks_like_counts(np.array([[0, 3, 1], [2, 0, 7]], dtype=float))[0]
    assert not pt.pp.looks_like_counts(np.log1p(np.array([[0, 3, 1], [2, 0, 7]], dtype=float)))[0]


def test_cli_embeddings_option_skips_go_models_with_a_reason(tmp_path, capsys):
    path = tmp_path / "s.h5ad"
    _user_file(path)
    args = [
        "--perturbation-key",
        "sgRNA",
        "--control",
        "NT",
        "--collapse-guides",
        "--embeddings",
        "text",
        "--no-perturbnet",
        "--quiet",
    ]
    assert main(["check", str(path), *args]) == 0
    out = capsys.readouterr().out
    assert "skipped knn1_go: the GO embedding was not requested (`--embeddings`)" in out
    with pytest.raises(SystemExit, match="unknown"):
        main(["check", str(path), "--embeddings", "go,esm"])


def test_guide_agreement_by_hand():
    a = pt.data.synthetic(n_cells=600, n_genes=30, n_perturbations=3, rng=3)
    gen = np.random.default_rng(0)
    a.obs["guide"] = [p if p == "control" else f"{p}_{gen.integers(1, 3)}" for p in a.obs["perturbation"].astype(str)]
    table = pt.pp.guide_agreement(a, "guide")
    target = table.index[0]
    X = a.X.toarray()
    ctrl = X[(a.obs["perturbation"] == "control").to_numpy()].mean(0)
    d1 = X[(a.obs["guide"] == f"{target}_1").to_numpy()].mean(0) - ctrl
    d2 = X[(a.obs["guide"] == f"{target}_2").to_numpy()].mean(0) - ctrl
    assert table.loc[target, "mean_pearson"] == pytest.approx(np.corrcoef(d1, d2)[0, 1], rel=1e-6)
    assert table.loc[target, "n_guides"] == 2
