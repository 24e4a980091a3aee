"""Model cost curves at genome scale: time and peak memory vs number of training perturbations, 8,000 genes.

Synthetic labelled data (the low-rank model of ``bench_gp_speed.labelled``, varm tables in the dtypes
``pt.pp.deg_labels`` writes) at 500 / 2,000 / 5,000 / 10,000 perturbations x 8,000 genes; 80% of the perturbations
train, 20% are predicted. Each (size, model) runs in a fresh process: ``fit_s`` and ``predict_s`` are the model's
own calls, ``peak_rss_mb`` the process's ``VmHWM`` (imports and the labelled data included; ``data_rss_mb`` is the
resident set once the data are built). Models: non-control mean, kNN and the linear model on a gene embedding, the GP
(50 PCs of the embedding; kernel hyperparameters fitted on at most 2,000 training perturbations, the posterior on all),
one STAMP epoch; plus the GP's 5-fold CV (``bm.cross_validate``, evaluation included). Nothing builds a cells x genes
matrix: the models see perturbations x genes only.

    python benchmarks/bench_model_cost.py                  # all sizes (about 40 min on 2 cores)
    python benchmarks/bench_model_cost.py --sizes 500 2000

Writes ``benchmarks/results/model_cost.csv`` (rows of sizes and models not rerun are kept); goal: GP 5-fold CV at
5,000 perturbations under 10 minutes on 2 CPU
cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_scale import rss_mb  # benchmarks/ is on the path when a script there runs

HERE = Path(__file__).parent
N_GENES = 8_000
MODELS = ["non_control_mean", "knn", "linear", "gp", "stamp_1_epoch", "gp_cv5"]


def labelled(n_perts: int, n_genes: int = N_GENES, d: int = 64, rng: int = 0):
    """Labelled AnnData from a low-rank model of deltas; targets may be unmeasured genes (more perturbations than genes)."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    from scipy import stats

    from perturbtools._keys import label_keys
    from perturbtools.pp._deg_core import LABEL_DTYPES, bh_adjust, fold_change, top_masks

    rng = np.random.default_rng(rng)
    genes = [f"G{i}" for i in range(n_genes)]
    named = genes + [f"U{i}" for i in range(max(0, n_perts - n_genes))]
    emb = rng.normal(size=(len(named), d)).astype(np.float32)
    targets = rng.choice(len(named), n_perts, replace=False)
    W = (rng.normal(size=(d, n_genes)) / np.sqrt(d)).astype(np.float32)
    mu_c = rng.gamma(1.0, 1.0, n_genes).astype(np.float32)
    perts = [named[i] for i in targets]
    keys = label_keys("deg")
    out = {name: np.empty((n_perts, n_genes), dtype=dtype) for name, dtype in LABEL_DTYPES.items()}
    for lo in range(0, n_perts, 1000):  # in blocks: float64 temporaries stay 1000 x genes
        sl = slice(lo, lo + 1000)
        delta = np.tanh(emb[targets[sl]] @ W) * 0.5 + 0.1 * rng.normal(size=(len(targets[sl]), n_genes))
        mean = np.maximum(mu_c + delta, 0)
        t = (mean - mu_c) / 0.05
        p = 2 * stats.norm.sf(np.abs(t))
        padj = bh_adjust(p)
        fc = fold_change(mean, mu_c)
        masks = top_masks(t, np.log2(fc))
        is_de = padj <= 0.01
        block = {"mean": mean, "scores": t, "pvals": p, "pvals_adj": padj, "fc": fc, "logfc": np.log2(fc),
                 "is_de": is_de, "direction": np.sign(mean - mu_c) * is_de,
                 **dict(zip(("top20", "top40", "top50", "large_effect"), masks, strict=True))}  # fmt: skip
        for name, value in block.items():
            out[name][sl] = value
    a = ad.AnnData(np.zeros((2, n_genes), dtype=np.float32), var=pd.DataFrame(index=genes))
    for name, value in out.items():
        a.varm[getattr(keys, name)] = pd.DataFrame(value.T, index=genes, columns=perts)
    a.var[keys.control_mean] = mu_c
    a.uns["deg"] = {"params": {"perturbation_key": "perturbation", "control": "control", "delimiter": "+", "fc_offset": 0.1},
                    "perturbations": perts, "n_cells": np.full(n_perts, 100), "modality": ["CRISPRi"] * n_perts}  # fmt: skip
    a.uns["gene_emb"] = pd.DataFrame(emb, index=named)
    return a


def _worker(n_perts: int, model: str) -> None:
    import numpy as np
    import torch

    import perturbtools as pt

    a = labelled(n_perts)
    data_rss = rss_mb("VmRSS")
    perts = list(a.uns["deg"]["perturbations"])
    order = np.random.default_rng(0).permutation(len(perts))
    train = [perts[i] for i in order[: int(0.8 * len(perts))]]
    test = [perts[i] for i in order[int(0.8 * len(perts)) :]]
    row = {"n_perturbations": n_perts, "n_genes": a.n_vars, "model": model, "torch_threads": torch.get_num_threads()}
    if model == "gp_cv5":
        start = time.perf_counter()
        pt.bm.cross_validate(
            a, {"gp": (pt.tl.GPModel, {"n_components": 50})}, n_splits=5, rng=0, show_progress_bar=False
        )
        row |= {"fit_s": time.perf_counter() - start, "predict_s": 0.0}
    else:
        make = {
            "non_control_mean": lambda: pt.tl.NonControlMean(a),
            "knn": lambda: pt.tl.KNN(a),
            "linear": lambda: pt.tl.Linear(a, embedding="gene_emb"),
            "gp": lambda: pt.tl.GPModel(a, n_components=50),
            "stamp_1_epoch": lambda: pt.tl.STAMP(a),
        }[model]
        m = make()
        fit_kw = {"max_epochs": 1, "show_progress_bar": False, "accelerator": "cpu"} if model == "stamp_1_epoch" else {}
        start = time.perf_counter()
        m.fit(train, **fit_kw)
        row["fit_s"] = time.perf_counter() - start
        start = time.perf_counter()
        m.predict(test, inplace=False)
        row["predict_s"] = time.perf_counter() - start
    row |= {"data_rss_mb": data_rss, "peak_rss_mb": rss_mb()}
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2_000, 5_000, 10_000])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--worker", nargs=2)
    args = parser.parse_args()
    if args.worker:
        _worker(int(args.worker[0]), args.worker[1])
        return
    import pandas as pd

    rows = []
    for n in args.sizes:
        for model in args.models:
            out = subprocess.run([sys.executable, __file__, "--worker", str(n), model], capture_output=True, text=True)
            if out.returncode:
                rows.append({"n_perturbations": n, "model": model, "error": out.stderr.strip().splitlines()[-1][:200]})
            else:
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    path = HERE / "results" / "model_cost.csv"
    if path.exists():  # keep the points not rerun: a run of one size or model replaces only its own rows
        old = pd.read_csv(path).drop(columns="goal_met", errors="ignore")
        rerun = old.set_index(["n_perturbations", "model"]).index.isin(df.set_index(["n_perturbations", "model"]).index)
        df = pd.concat([old[~rerun], df], ignore_index=True)
        df = df.sort_values(["n_perturbations", "model"], key=lambda c: c.map(MODELS.index) if c.name == "model" else c)
    df["goal_met"] = df.apply(
        lambda r: r["fit_s"] < 600 if r["model"] == "gp_cv5" and r["n_perturbations"] == 5_000 else pd.NA, axis=1
    )
    df.to_csv(path, index=False)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
