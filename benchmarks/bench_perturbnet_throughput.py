"""PerturbNet throughput on the real Papalexi counts: cINN training (cells/s per epoch) and generation incl. scVI
decoding (cells/s). CPU by default; pass ``--accelerator cuda`` on a GPU machine.

    PERTURBTOOLS_DATA_DIR=../shared/data python benchmarks/bench_perturbnet_throughput.py

Writes benchmarks/results/perturbnet_throughput.csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import perturbtools as pt

OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    import torch

    pt.settings.progress_bar = False
    a = pt.data.papalexi2021_lowmoi()
    pt.pp.deg_labels(a)
    pt.pp.add_gene_embedding(a, pt.pp.go_embedding(n_components=64), key_added="go")
    perts = [p for p in a.uns["deg"]["perturbations"] if p in a.uns["go"].index]
    from perturbtools import _scvi

    start = time.perf_counter()
    scvi_model = _scvi.train_scvi(a, layer="counts", max_epochs=args.epochs, accelerator=args.accelerator)
    scvi_s = time.perf_counter() - start
    model = pt.tl.PerturbNet(a, scvi_model=scvi_model, representation="embedding", embedding="go")
    start = time.perf_counter()
    model.fit(perts, max_epochs=args.epochs, lr=1e-3, early_stopping_patience=None, accelerator=args.accelerator)
    flow_s = time.perf_counter() - start
    n_cells_train = int(a.obs["perturbation"].isin(perts).sum() * 0.9)
    start = time.perf_counter()
    gen = model.sample(perts[:10], n_cells=2000)
    sample_s = time.perf_counter() - start
    row = {"device": args.accelerator, "torch_threads": torch.get_num_threads(), "scvi_epochs": args.epochs, "scvi_cells_per_s": a.n_obs * args.epochs / scvi_s,
           "cinn_epochs": args.epochs, "cinn_train_cells_per_s": n_cells_train * args.epochs / flow_s, "generated_cells": gen.n_obs, "generate_cells_per_s": gen.n_obs / sample_s}  # fmt: skip
    print(pd.Series(row).to_string())
    OUT.mkdir(exist_ok=True)
    pd.DataFrame([row]).to_csv(
        OUT / f"perturbnet_throughput{'' if args.accelerator == 'cpu' else '_' + args.accelerator}.csv", index=False
    )


if __name__ == "__main__":
    main()
