"""5-fold CV time of the trained models on the real data, as the main job runs them: PerturbNet, STAMP and the GP.

    PERTURBTOOLS_DATA_DIR=../shared/data python benchmarks/bench_slow_models.py [--per-fold-scvi]

On the Papalexi 2021 THP-1 screen (16,192 cells, raw counts) and the Norman 2019 K562 subset, with the main job's
budgets (``perturbtools benchmark``): STAMP 150 epochs at lr 1e-3, the GP on GO, PerturbNet (Papalexi only: it
needs counts) with scVI 25 epochs trained once for all folds and its cINN early-stopped (at most 50 epochs, patience
5 on held-out training cells, lr 1e-3, batch 128). For each PerturbNet fold the script records the epochs run, the
epoch of lowest validation NLL, and the lowest validation NLL within the first 8 epochs (the main job's earlier
fixed budget) next to the early-stopped one. ``--per-fold-scvi`` also times the earlier protocol, which trained scVI
again in every fold. The GP and STAMP CVs are timed ``--repeats`` times (median reported; PerturbNet once).

Writes ``benchmarks/results/slow_models_cv.csv`` (dataset, model, seconds, ratio to the GP) and
``benchmarks/results/perturbnet_cv_folds.csv`` (per fold).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

import perturbtools as pt

OUT = Path(__file__).parent / "results"
STAMP_FIT = {"max_epochs": 150, "lr": 1e-3, "show_progress_bar": False}
PERTURBNET_INIT = {"representation": "embedding", "embedding": "go", "n_blocks": 20}
PERTURBNET_FIT = {"scvi_epochs": 25, "max_epochs": 50, "lr": 1e-3, "show_progress_bar": False}
OLD_BUDGET = 8  # cINN epochs of the main job before early stopping became its budget


class _RecordedPerturbNet(pt.tl.PerturbNet):
    """PerturbNet that keeps each fold's training history and cINN time (benchmark only)."""

    histories: ClassVar[list] = []

    def _fit(self, train, **kwargs):
        start = time.perf_counter()
        super()._fit(train, **kwargs)
        self.histories.append((self.history_, time.perf_counter() - start))


class _PerFoldScviPerturbNet(_RecordedPerturbNet):
    """The earlier protocol: every fold trains its own scVI."""

    @classmethod
    def fold_independent_setup(cls, adata, init_kwargs, fit_kwargs, *, labels_key, seed):
        return init_kwargs, fit_kwargs


def _data(name: str, go: pd.DataFrame):
    adata = pt.data.papalexi2021_lowmoi() if name == "papalexi2021_thp1" else pt.data.norman2019_subset()
    pt.pp.deg_labels(adata, modality_key="perturbation_type")
    pt.pp.add_gene_embedding(adata, go, key_added="go")
    perts = [p for p in adata.uns["deg"]["perturbations"] if all(g in go.index for g in pt.pp.parse_perturbation(p))]
    return adata, perts


def _cv_seconds(adata, perts, name, spec) -> float:
    start = time.perf_counter()
    pt.bm.cross_validate(adata, {name: spec}, perturbations=perts, n_splits=5, rng=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-fold-scvi", action="store_true", help="also time the earlier per-fold scVI protocol")
    parser.add_argument("--repeats", type=int, default=3, help="timings of the GP and STAMP CVs (median reported)")
    parser.add_argument("--no-perturbnet", action="store_true", help="time the GP and STAMP only (keeps other rows)")
    args = parser.parse_args()
    pt.settings.progress_bar = False
    go = pt.pp.go_embedding(n_components=64)
    rows, folds = [], []
    for dataset in ("papalexi2021_thp1", "norman2019_k562"):
        adata, perts = _data(dataset, go)
        specs = {
            "gp_go": (pt.tl.GPModel, {"embedding": "go"}),
            "stamp_go": (pt.tl.STAMP, {"embedding": "go"}, STAMP_FIT),
        }
        if dataset == "papalexi2021_thp1" and not args.no_perturbnet:
            specs["perturbnet_go"] = (_RecordedPerturbNet, PERTURBNET_INIT, PERTURBNET_FIT)
            if args.per_fold_scvi:
                specs["perturbnet_go_per_fold_scvi"] = (_PerFoldScviPerturbNet, PERTURBNET_INIT, PERTURBNET_FIT)
        for model, spec in specs.items():
            _RecordedPerturbNet.histories.clear()
            repeats = 1 if model.startswith("perturbnet") else args.repeats
            times = [_cv_seconds(adata, perts, model, spec) for _ in range(repeats)]
            seconds = float(np.median(times))
            rows.append({"dataset": dataset, "model": model, "n_cells": adata.n_obs, "n_perturbations": len(perts),
                         "cv_seconds": seconds, "repeats": repeats, "cv_seconds_all": " ".join(f"{t:.2f}" for t in times)})  # fmt: skip
            print(f"{dataset} {model}: 5-fold CV {seconds:.1f} s", flush=True)
            for fold, (hist, fit_seconds) in enumerate(_RecordedPerturbNet.histories):
                folds.append({
                    "dataset": dataset, "model": model, "fold": fold, "fit_seconds": fit_seconds,
                    "epochs_run": len(hist), "best_epoch": int(hist["val_loss"].idxmin()) + 1,
                    "stopped_early": len(hist) < PERTURBNET_FIT["max_epochs"],
                    "best_val_nll": float(hist["val_loss"].min()),
                    f"best_val_nll_first_{OLD_BUDGET}_epochs": float(hist["val_loss"].iloc[:OLD_BUDGET].min()),
                })  # fmt: skip
    table = pd.DataFrame(rows).assign(cpu_threads=os.cpu_count())
    OUT.mkdir(exist_ok=True)
    path = OUT / "slow_models_cv.csv"
    if path.exists():  # a partial run replaces only the rows it measured
        old = pd.read_csv(path)
        ran = set(zip(table["dataset"], table["model"], strict=True))
        keep = [(d, m) not in ran for d, m in zip(old["dataset"], old["model"], strict=True)]
        table = pd.concat([old[keep], table], ignore_index=True)
    gp = table[table["model"] == "gp_go"].set_index("dataset")["cv_seconds"]
    table["ratio_to_gp"] = table["cv_seconds"] / table["dataset"].map(gp)
    table.to_csv(path, index=False)
    if folds:
        pd.DataFrame(folds).to_csv(OUT / "perturbnet_cv_folds.csv", index=False)
    print(table.round(2).to_string(index=False))
    print(pd.DataFrame(folds).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
