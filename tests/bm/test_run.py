"""Smoke test of the whole main job in quick mode on the real data: every dataset and section runs and reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import perturbtools as pt


@pytest.mark.realdata
@pytest.mark.filterwarnings("default::UserWarning")  # the real subsets warn (e.g. A172 has no DEG): shown, not fatal
def test_the_whole_main_job_in_quick_mode(tmp_path):
    cfg = pt.bm.BenchmarkConfig(
        quick=True, perturbnet=False, text_embedding=False, n_splits=2,
        extra={"models": ["noncontrol_mean", "knn1_go", "gp_go", "stamp_go"]},
    )  # fmt: skip
    table = pt.run_benchmark("all", tmp_path, config=cfg)
    report = (tmp_path / "report.md").read_text()
    for heading in ("## norman2019_k562", "## glioma_A172", "## glioma_U87MG", "## papalexi2021_thp1",
                    "genetic interactions", "Few-shot K562", "## Replogle 2022 K562 -> RPE1", "Total run time"):  # fmt: skip
        assert heading in report, heading
    datasets = {"norman2019_k562", "glioma_A172", "glioma_T98G", "glioma_U87MG", "papalexi2021_thp1"}
    assert set(table["dataset"]) == datasets
    assert set(table["model"]) == {"noncontrol_mean", "knn1_go", "gp_go", "stamp_go"}
    written = pd.read_csv(tmp_path / "metrics.csv")
    assert len(written) == len(table)
    # the report's rank is the within-fold one: the non-control mean, a constant predictor, scores exactly 0.5
    rank = table[(table["model"] == "noncontrol_mean") & (table["metric"] == "rank")]["mean"]
    assert (rank == 0.5).all()
    for stem in datasets:
        assert (tmp_path / f"{stem}.h5ad").exists()
    for csv in ("few_shot.csv", "replogle2022_few_shot.csv", "replogle2022_cv.csv"):
        assert (tmp_path / csv).exists(), csv
    assert (tmp_path / "figures" / "papalexi2021_thp1_learning_curve.png").exists()
    # the few-shot intervals are percentile bootstraps over knockdowns (seeded like the config), so within [0, 1]
    few = pd.read_csv(tmp_path / "replogle2022_few_shot.csv").set_index(["strategy", "n"])
    per = pd.read_csv(tmp_path / "replogle2022_few_shot_per_knockdown.csv")
    for (strategy, n), g in per.groupby(["strategy", "n"]):
        v = g["pr_auc_de"].dropna().to_numpy()
        boot = v[np.random.default_rng(cfg.seed).integers(0, len(v), size=(2000, len(v)))].mean(axis=1)
        expected = np.quantile(boot, [0.025, 0.975])
        got = few.loc[(strategy, n), ["pr_auc_de_ci_low", "pr_auc_de_ci_high"]].to_numpy(dtype=float)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        assert 0 <= got[0] <= got[1] <= 1
