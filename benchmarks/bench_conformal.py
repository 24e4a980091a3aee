"""Coverage and width of conformal prediction intervals on held-out perturbations of the real data.

For each dataset (Norman 2019 K562 subset, Papalexi 2021 THP-1): 5-fold CV over perturbations; in each outer fold,
`pt.tl.conformal_intervals` (CV+, 5 inner folds on the training perturbations only) gives intervals for the held-out
perturbations, for the GP on GO (normalised by its posterior SD), the non-control mean (normalised by the per-gene
SD of training deltas), and the naive per-gene absolute-residual interval of the same non-control mean
(``scale=None``). The GP's own Gaussian posterior intervals are scored beside them. Coverage is pooled over every
held-out (perturbation, gene) entry of the five folds, over the genes expressed in the dataset (never-expressed genes
are predicted exactly and covered at every level; `n_genes_excluded`); widths are mean widths of the finite intervals.
``share_zero`` is the share of those entries whose observed mean is exactly 0 (no cell of the perturbation expresses
the gene): their conformity scores tie, and with ties conformal coverage is only bounded below, so
``coverage_nonzero`` (over the entries with a non-zero observed mean) is reported beside ``coverage``.

    PERTURBTOOLS_DATA_DIR=../shared/data python benchmarks/bench_conformal.py

Writes ``benchmarks/results/conformal_coverage.csv`` and prints a markdown table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import perturbtools as pt

LEVELS = (0.5, 0.8, 0.9, 0.95)
OUT = Path(__file__).parent / "results" / "conformal_coverage.csv"


def _datasets():
    norman = pt.data.norman2019_subset()
    pt.pp.deg_labels(norman, modality_key="perturbation_type")
    pap = pt.data.papalexi2021_lowmoi()
    pt.pp.deg_labels(pap, modality="knockout")
    return {"norman2019_k562": norman, "papalexi2021_thp1": pap}


def _coverage(y, lo, hi):
    inside = (y >= lo) & (y <= hi)
    width = hi - lo
    return inside, np.where(np.isfinite(width), width, np.nan)


def run(seed: int = 0) -> pd.DataFrame:
    """Every dataset, model and level: pooled coverage and mean width over the held-out entries."""
    go = pt.pp.go_embedding()
    rows = []
    for name, adata in _datasets().items():
        pt.pp.add_gene_embedding(adata, go, key_added="emb_go")
        emb = adata.uns["emb_go"]
        perts = [p for p in adata.uns["deg"]["perturbations"] if all(g in emb.index for g in p.split("+"))]
        folds = list(pt.pp.kfold_perturbations(perts, 5, rng=seed))
        specs = {
            "gp_go (posterior-normalised)": ((pt.tl.GPModel, {"embedding": "emb_go"}), "auto"),
            "noncontrol_mean (gene-SD-normalised)": (pt.tl.NonControlMean, "auto"),
            "noncontrol_mean (naive residual)": (pt.tl.NonControlMean, None),
        }
        acc = {(m, lv): ([], []) for m in [*specs, "gp_go (Gaussian posterior)"] for lv in LEVELS}
        nonzero = []
        # genes never expressed in this dataset are predicted exactly by every model: covered at every level by a
        # zero-width interval, they would inflate coverage (250 of the 500 genes of the K562 subset), so they are
        # left out, as `pt.metrics.interval_coverage` does by default
        genes = pt.metrics.expressed_genes(pt.tl.LabelledData.from_adata(adata))
        start = time.perf_counter()
        for train, test in folds:
            y = adata.varm["deg_mean"][test].to_numpy(np.float64)[genes]
            nonzero.append((y != 0).ravel())
            for label, (spec, scale) in specs.items():
                out = pt.tl.conformal_intervals(adata, spec, train=train, test=test, scale=scale, rng=seed,
                                                inplace=False, show_progress_bar=False)  # fmt: skip
                for lv in LEVELS:
                    inside, width = _coverage(y, out[lv][0][test].to_numpy()[genes], out[lv][1][test].to_numpy()[genes])
                    acc[label, lv][0].append(inside.ravel())
                    acc[label, lv][1].append(width.ravel())
            gp = pt.tl.GPModel(adata, embedding="emb_go").fit(train).predict(test, inplace=False)
            mu, sd = gp.mean[test].to_numpy(np.float64)[genes], np.sqrt(gp.mean_var[test].to_numpy(np.float64))[genes]
            for lv in LEVELS:
                z = stats.norm.ppf(0.5 + lv / 2)
                inside, width = _coverage(y, mu - z * sd, mu + z * sd)
                acc["gp_go (Gaussian posterior)", lv][0].append(inside.ravel())
                acc["gp_go (Gaussian posterior)", lv][1].append(width.ravel())
        seconds = time.perf_counter() - start
        nz = np.concatenate(nonzero)
        for (model, lv), (inside, width) in acc.items():
            inside, width = np.concatenate(inside), np.concatenate(width)
            rows.append({
                "dataset": name, "model": model, "level": lv, "coverage": inside.mean(),
                "coverage_nonzero": inside[nz].mean(), "share_zero": 1 - nz.mean(),
                "abs_error": abs(inside.mean() - lv), "mean_width": np.nanmean(width),
                "n_infinite": int(np.isnan(width).sum()), "n_entries": inside.size, "n_perturbations": len(perts),
                "n_genes_excluded": int((~genes).sum()),
                "seconds_all_models": round(seconds, 1),
            })  # fmt: skip
    return pd.DataFrame(rows)


def main() -> int:
    """Run and write the CSV."""
    table = run()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT, index=False)
    wide = table.pivot_table(index=["dataset", "model"], columns="level", values=["coverage", "mean_width"])
    print(wide.round(3).to_markdown() if hasattr(wide, "to_markdown") else wide.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
