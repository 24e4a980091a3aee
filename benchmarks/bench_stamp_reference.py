"""STAMP training speed, peak memory and subtask metrics vs the reference implementation (PyPI ``cell-stamp`` 0.1.2).

The reference pins old packages, so it runs from its own venv::

    python3 -m venv /tmp/stampvenv && /tmp/stampvenv/bin/pip install torch==2.13.0 \
        && /tmp/stampvenv/bin/pip install --no-deps cell-stamp==0.1.2 \
        && /tmp/stampvenv/bin/pip install "scanpy<1.12" "anndata<0.13" joblib pyyaml scikit-learn matplotlib
    python benchmarks/bench_stamp_reference.py --reference-python /tmp/stampvenv/bin/python

Both sides get the same data, gene embedding, train/val/test perturbations, epochs, batch size (64) and learning rate
(1e-4, the reference's), on CPU, each in its own subprocess (peak RSS is its own), for ``--seeds`` training seeds
(alternating the two). The CSV has the means over seeds (and the metric SDs); per-seed rows go to
stamp_reference_runs.csv. The reference needs every target
gene among the output genes, which the real devel / Papalexi files do not satisfy, so the data are simulated
(``pt.data.synthetic``). Predictions of both are scored by ``pt.metrics.evaluate_predictions``.
Writes benchmarks/results/stamp_reference.csv.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
WORK = HERE / "results" / "cache" / "stamp_ref"


def make_data(n_genes: int, n_perts: int, d: int):
    import perturbtools as pt

    a = pt.data.synthetic(n_cells=40 * n_perts, n_genes=n_genes, n_perturbations=n_perts, n_doubles=n_perts // 5, rng=0)
    pt.pp.deg_labels(a)
    base = a.uns["synthetic"]["gene_embedding"].to_numpy()
    proj = np.random.default_rng(1).normal(size=(base.shape[1], d)) / np.sqrt(base.shape[1])
    emb = pd.DataFrame(np.tanh(base @ proj), index=a.var_names)
    perts = list(a.uns["deg"]["perturbations"])
    order = np.random.default_rng(2).permutation(len(perts))
    n_test, n_val = len(perts) // 5, len(perts) // 10
    split = {"test": [perts[i] for i in order[:n_test]], "val": [perts[i] for i in order[n_test : n_test + n_val]],
             "train": [perts[i] for i in order[n_test + n_val :]]}  # fmt: skip
    return a, emb, split


def write_reference_inputs(a, emb, split) -> None:
    import anndata as ad
    import joblib
    from scipy import sparse

    WORK.mkdir(parents=True, exist_ok=True)
    joblib.dump(emb.to_numpy(np.float32), WORK / "emb.pkl")
    for part, perts in split.items():
        lv1 = a.varm["deg_is_de"][perts].to_numpy().T.astype(np.float32)
        lv2 = (a.varm["deg_direction"][perts].to_numpy().T > 0).astype(np.float32)
        lv3 = a.varm["deg_fc"][perts].to_numpy().T.astype(np.float32) * lv1
        out = ad.AnnData(
            X=sparse.csr_matrix(lv1),
            obs=pd.DataFrame(index=[p.replace("+", ",") for p in perts]),
            var=pd.DataFrame(index=a.var_names),
        )
        for k, v in (("level1", lv1), ("level2", lv2), ("level3", lv3)):
            out.layers[k] = sparse.csr_matrix(v)
        out.write_h5ad(WORK / f"{part}.h5ad")


def run_reference(epochs: int, n_genes: int, d: int, seed: int = 0) -> dict:
    import torch

    torch.set_num_threads(torch.get_num_threads())
    from stamp.STAMP import STAMP

    out = WORK / "ref_out"
    out.mkdir(exist_ok=True)
    config = {
        "dataset": {"Training_dataset": str(WORK / "train.h5ad"), "Validation_dataset": str(WORK / "val.h5ad"), "Gene_embedding": str(WORK / "emb.pkl")},
        "Train": {
            "output_dir": str(out),
            "Model_Parameter": {"device": "cpu", "First_level": {"in_features": d, "out_features": n_genes},
                                "Second_level": {"hid1_features_2": 128, "hid2_features_2": 64, "hid3_features_2": 32},
                                "Third_level": {"in_feature_3": 32, "hid1_features_3": 16, "hid2_features_3": 8}},
            "Trainer_parameter": {"random_seed": seed, "learning_rate": 1e-4, "epoch": epochs},
            "Sampling": {"batch_size": 64, "sample_shuffle": True},
        },
        "Inference": {"Sampling": {"batch_size": 64, "sample_shuffle": False}},
    }  # fmt: skip
    model = STAMP(config)
    start = time.perf_counter()
    model.train()
    seconds = time.perf_counter() - start
    model.prediction(str(WORK / "test.h5ad"))
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "pred": str(out / "output_test.h5ad"),
    }


def run_ours(epochs: int, n_genes: int, d: int, seed: int = 0, accelerator: str = "cpu") -> dict:
    import perturbtools as pt

    a, emb, split = make_data(n_genes, N_PERTS, d)
    model = pt.tl.STAMP(a, embedding=emb)
    start = time.perf_counter()
    model.fit(
        split["train"],
        val_perturbations=split["val"],
        max_epochs=epochs,
        batch_size=64,
        lr=1e-4,
        accelerator=accelerator,
        show_progress_bar=False,
        rng=seed,
    )
    seconds = time.perf_counter() - start
    pred = model.predict(split["test"], inplace=False)
    path = WORK / f"ours_pred_{seed}.npz"
    np.savez(path, de=pred.de_proba.to_numpy(), up=pred.direction_proba.to_numpy(), logfc=pred.logfc.to_numpy())
    return {
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "pred": str(path),
    }


N_PERTS = 300


def _worker(python: str, worker: str, common: list[str], seed: int) -> dict:
    out = subprocess.run(
        [python, __file__, "--worker", worker, "--seed", str(seed), *common],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        print(out.stderr[-3000:])
        raise SystemExit(1)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _predictions(name: str, r: dict, a, test: list[str]):
    from perturbtools.tl import Predictions

    frame = lambda m: pd.DataFrame(m, index=a.var_names, columns=test)
    if name == "ours":
        z = np.load(r["pred"])
        return Predictions(de_proba=frame(z["de"]), direction_proba=frame(z["up"]), logfc=frame(z["logfc"]))
    import anndata as ad

    o = ad.read_h5ad(r["pred"])
    return Predictions(de_proba=frame(o.layers["level1"].T), direction_proba=frame(o.layers["level2"].T),
                       logfc=frame(np.log2(np.maximum(o.layers["level3"].T, 1e-12))))  # fmt: skip


METRICS = ("roc_auc_de", "pr_auc_de", "roc_auc_direction", "pr_auc_direction", "pearson_fc", "mse_fc")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-python", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per implementation (same data and split)")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["reference", "ours"])
    args = parser.parse_args()
    if args.worker == "reference":
        print(json.dumps(run_reference(args.epochs, args.n_genes, args.dim, args.seed)))
        return
    if args.worker == "ours":
        print(json.dumps(run_ours(args.epochs, args.n_genes, args.dim, args.seed)))
        return

    import perturbtools as pt
    from perturbtools.tl import LabelledData

    a, emb, split = make_data(args.n_genes, N_PERTS, args.dim)
    write_reference_inputs(a, emb, split)
    common = ["--epochs", str(args.epochs), "--n-genes", str(args.n_genes), "--dim", str(args.dim)]
    data = LabelledData.from_adata(a)
    test = split["test"]
    runs = [("ours", sys.executable)] + ([("reference", args.reference_python)] if args.reference_python else [])
    rows = []
    for seed in range(args.seeds):
        for name, python in runs:  # alternate, so slow drift in machine load hits both alike
            r = _worker(python, name, common, seed)
            _, pooled = pt.metrics.evaluate_predictions(
                _predictions(name, r, a, test), data, test, train=split["train"]
            )
            p = pooled[(pooled["stratum"] == "all") & (pooled["mask"] == "all")].iloc[0]
            rows.append({"implementation": name, "seed": seed, "train_seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
                         "epochs": args.epochs, "n_genes": args.n_genes, "dim": args.dim, **{m: p[m] for m in METRICS}})  # fmt: skip
            print(rows[-1], flush=True)
    runs_df = pd.DataFrame(rows)
    df = runs_df.drop(columns="seed").groupby("implementation").mean()
    df.insert(0, "n_seeds", runs_df.groupby("implementation").size())
    for m in METRICS:
        df[f"{m}_sd"] = runs_df.groupby("implementation")[m].std()
    if "reference" in df.index:
        df.loc["ours", "speedup_vs_reference"] = df.loc["reference", "train_seconds"] / df.loc["ours", "train_seconds"]
        df.loc["ours", "memory_ratio_vs_reference"] = df.loc["reference", "peak_rss_mb"] / df.loc["ours", "peak_rss_mb"]
    print(df.round(4).to_string())
    (HERE / "results").mkdir(exist_ok=True)
    df.to_csv(HERE / "results" / "stamp_reference.csv")
    runs_df.to_csv(HERE / "results" / "stamp_reference_runs.csv", index=False)


if __name__ == "__main__":
    main()
