"""Speed and peak memory of `pt.pp.deg_labels` vs `scanpy.tl.rank_genes_groups(method="t-test")`.

Same synthetic input at growing sizes (up to 200k cells x 2,000 genes x 500 perturbations); each tool runs in its own
subprocess after one warm-up call (imports, numba JIT), and its peak memory is the peak of allocations traced during
the call (tracemalloc; numpy/scipy buffers included). Also checks that both give the same scores. Writes a CSV and prints a table.

    python benchmarks/bench_deg_labels.py            # all sizes
    python benchmarks/bench_deg_labels.py --quick    # two small sizes
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

SIZES = [(10_000, 2_000, 50), (50_000, 2_000, 200), (200_000, 2_000, 500)]
QUICK = [(5_000, 500, 20), (20_000, 1_000, 80)]
HERE = Path(__file__).parent


def _make(n_cells, n_genes, n_perts, path):
    import perturbtools as pt

    if path.exists():
        return
    a = pt.data.synthetic(n_cells=n_cells, n_genes=n_genes, n_perturbations=n_perts, control_fraction=0.05, rng=0)
    del a.layers["counts"]
    del a.uns["synthetic"]
    del a.varm["synthetic_effect"]
    a.write_h5ad(path)


def _run(tool: str, path: str) -> None:
    import warnings

    import anndata as ad
    import numpy as np

    a = ad.read_h5ad(path)
    first3 = a.obs.groupby("perturbation", observed=True).cumcount().to_numpy() < 3
    warm = a[first3].copy()  # one warm-up call each (3 cells per group): imports and numba JIT are not timed
    if tool == "perturbtools":
        import perturbtools as pt

        pt.pp.deg_labels(warm, min_cells=2)
    else:
        import scanpy as sc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.tl.rank_genes_groups(warm, "perturbation", method="t-test", reference="control", use_raw=False)
    del warm
    tracemalloc.start()
    start = time.perf_counter()
    if tool == "perturbtools":
        pt.pp.deg_labels(a, min_cells=2)
        scores = a.varm["deg_scores"]
        first = sorted(scores.columns)[0]  # the same group scanpy reports first
        out = scores[first].to_numpy(np.float64)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.tl.rank_genes_groups(
                a, "perturbation", method="t-test", reference="control", use_raw=False, n_genes=a.n_vars
            )
        r = a.uns["rank_genes_groups"]
        first = sorted(r["names"].dtype.names)[0]
        order = {g: i for i, g in enumerate(r["names"][first])}
        out = np.asarray(r["scores"][first], dtype=np.float64)[[order[g] for g in a.var_names]]
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "peak_mb": peak / 2**20,
                "rss_mb": rss / 1024,
                "first": str(first),
                "scores": out.tolist(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=2)
    args = parser.parse_args()
    if args.worker:
        _run(*args.worker)
        return
    import numpy as np
    import pandas as pd

    rows = []
    cache = HERE / "results" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for n_cells, n_genes, n_perts in QUICK if args.quick else SIZES:
        path = cache / f"deg_{n_cells}_{n_genes}_{n_perts}.h5ad"
        _make(n_cells, n_genes, n_perts, path)
        res = {}
        for tool in ("perturbtools", "scanpy"):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", tool, str(path)], capture_output=True, text=True, check=True
            )
            res[tool] = json.loads(out.stdout.strip().splitlines()[-1])
        same = res["perturbtools"]["first"] == res["scanpy"]["first"]
        diff = (
            float(np.max(np.abs(np.array(res["perturbtools"]["scores"]) - np.array(res["scanpy"]["scores"]))))
            if same
            else np.nan
        )
        rows.append({
            "n_cells": n_cells, "n_genes": n_genes, "n_perturbations": n_perts,
            "perturbtools_s": res["perturbtools"]["seconds"], "scanpy_s": res["scanpy"]["seconds"],
            "speedup": res["scanpy"]["seconds"] / res["perturbtools"]["seconds"],
            "perturbtools_peak_alloc_mb": res["perturbtools"]["peak_mb"], "scanpy_peak_alloc_mb": res["scanpy"]["peak_mb"],
            "memory_ratio": res["scanpy"]["peak_mb"] / res["perturbtools"]["peak_mb"],
            "perturbtools_max_rss_mb": res["perturbtools"]["rss_mb"], "scanpy_max_rss_mb": res["scanpy"]["rss_mb"],
            "max_abs_score_diff": diff,
        })  # fmt: skip
        print(pd.DataFrame(rows).tail(1).to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    name = "deg_labels_quick.csv" if args.quick else "deg_labels.csv"
    df.to_csv(HERE / "results" / name, index=False)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
