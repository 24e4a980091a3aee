"""5-fold CV over perturbations of every baseline on the real K562 (Norman 2019 subset) and Papalexi 2021 data.

    PERTURBTOOLS_DATA_DIR=../shared/data python benchmarks/bench_real_cv.py

Writes benchmarks/results/real_cv_baselines.csv (mean and 95% CI per model and metric) and prints a table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import perturbtools as pt

OUT = Path(__file__).parent / "results"
METRICS = list(pt.metrics.KEY_METRICS)


def main() -> None:
    pt.settings.progress_bar = False
    go = pt.pp.go_embedding(n_components=64)
    baselines = {
        "control_mean": pt.tl.ControlMean,
        "noncontrol_mean": pt.tl.NonControlMean,
        "crispr_informed_mean": pt.tl.CrisprInformedMean,
        "random_perturbation": pt.tl.RandomPerturbation,
        "additive": pt.tl.Additive,
        "linear": pt.tl.Linear,
        "linear_go": (pt.tl.Linear, {"embedding": "go"}),
        "knn1_go": (pt.tl.KNN, {"embedding": "go", "k": 1}),
        "knn5_go": (pt.tl.KNN, {"embedding": "go", "k": 5}),
    }
    rows = []
    for name, adata in (
        ("norman2019_k562", pt.data.norman2019_subset()),
        ("papalexi2021_thp1", pt.data.papalexi2021_lowmoi()),
    ):
        pt.pp.deg_labels(adata, modality_key="perturbation_type")
        pt.pp.add_gene_embedding(adata, go, key_added="go")
        perts = [
            p for p in adata.uns["deg"]["perturbations"] if all(g in go.index for g in pt.pp.parse_perturbation(p))
        ]
        res = pt.bm.cross_validate(adata, baselines, perturbations=perts, n_splits=5, rng=0)
        s = res.summary[res.summary["metric"].isin(METRICS)].assign(dataset=name, n_perturbations=len(perts))
        rows.append(s)
        print(f"\n{name} ({len(perts)} perturbations with GO terms)")
        print(s.pivot(index="model", columns="metric", values="mean")[METRICS].round(3).to_string())
    OUT.mkdir(exist_ok=True)
    pd.concat(rows).to_csv(OUT / "real_cv_baselines.csv", index=False)


if __name__ == "__main__":
    main()
