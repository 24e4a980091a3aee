"""Builds docs/benchmarks.md from the CSVs that the scripts in benchmarks/ wrote (numbers generated, not typed)."""

from __future__ import annotations


import pandas as pd
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

SECTIONS = [
    (
        "deg_labels.csv",
        "Subtask labels vs scanpy",
        '`python benchmarks/bench_deg_labels.py` — `pt.pp.deg_labels` against `scanpy.tl.rank_genes_groups(method="t-test")` on the same synthetic input (warm-up call excluded, peak = traced allocations during the call). 2 CPU cores.',
    ),
    (
        "scale_deg_labels.csv",
        "Subtask labels at genome scale, streamed from disk, vs crispyx",
        '`python benchmarks/bench_scale.py --crispyx-python ...` — synthetic screens from `pt.data.write_synthetic_h5ad` (CSR float32 log1p CP10k, cells in random order, 6.6 GB at 1M cells) read with `anndata.read_h5ad(path, backed="r")`, 10,000 cells per chunk; crispyx 0.2.2 `t_test` in its own venv on the same file with its expression filters off; each run in a fresh process after a warm-up call; peak RSS = the process\'s `VmHWM`, imports included. `max_abs_t_diff_backed_vs_memory`: streamed against in-memory t statistics where the file fits; `max_abs_t_diff_vs_crispyx`: over every perturbation and gene. 2 CPU cores. Three perturbtools runs per file: labels returned in memory (`perturbtools_backed_*`; the 12 genes x perturbations result tables are 3.0 GB at 10,000 perturbations x 8,000 genes) and written block by block to an h5ad file with `deg_labels(..., out=path)` (`perturbtools_out_*`, the like-for-like comparison with crispyx, which writes its results to disk too; `speedup_vs_crispyx_out`). With `out=` the float64 group sums (1.2 GiB at 10,000 groups x 8,000 genes) and the imports (0.3 GiB) set the memory floor; neither grows with the number of cells. '
        "A third run (`perturbtools_out_2passes_*`) holds the sums of half the perturbations at a time "
        "(`perturbations_per_pass`), reading the file twice: at 1M cells the peak drops from 2,006 MiB to 1,482 MiB "
        "for 72 s instead of 68 s, with identical t statistics.",
    ),
    (
        "model_cost.csv",
        "Model cost at genome scale",
        "`python benchmarks/bench_model_cost.py` — synthetic labelled data (perturbations x 8,000 genes, tables in the dtypes `pt.pp.deg_labels` writes), 80% of the perturbations train and 20% are predicted; each (size, model) in a fresh process; `peak_rss_mb` = the process's `VmHWM` with the data included (`data_rss_mb` once they are built); `gp_cv5` is the GP's 5-fold `bm.cross_validate` (its `fit_s` is the whole CV). 2 CPU cores, no GPU. Goal: GP 5-fold CV at 5,000 perturbations under 600 s: 253 s, met since the GP fits its kernel hyperparameters on at most 2,000 training perturbations (`max_fit_perturbations`; the posterior conditions on all) and the CV's evaluation sorts each prediction once. Before those changes the same CV took 744 s (fit alone 83 s per fold, evaluation about 60 s per fold). The 500-5,000 `gp` and `gp_cv5` rows are from that run, the `knn` rows at 5,000 and 10,000 from a run after its distances became a pairwise `cdist` (before: 2.8 s predict and 5.3 GB peak at 5,000, 12.3 s and 14.1 GB at 10,000, from a queries x training x d difference array), the other rows from earlier runs of the same script.",
    ),
    (
        "slow_models_cv.csv",
        "Cross-validation time of the trained models on real data",
        "`python benchmarks/bench_slow_models.py --per-fold-scvi` — 5-fold CV over the perturbations with GO terms, the main job's budgets: the GP on GO; STAMP 150 epochs at lr 1e-3 (the reference architecture); PerturbNet (Papalexi only, it needs counts) with scVI 25 epochs trained once for all folds (`fold_independent_setup`: scVI sees every cell and no label) and the cINN early-stopped (at most 50 epochs, patience 5 on held-out training cells, lr 1e-3, batch 128). `perturbnet_go_per_fold_scvi` is the earlier protocol, scVI trained again in every fold. The GP and STAMP CVs are timed three times (median; `cv_seconds_all`), PerturbNet once. 2 CPU cores. Goals: PerturbNet under 600 s, met; STAMP within 5x the GP, not met (13x on Papalexi, 18x on K562): the GP's fit is closed-form (about 0.1 s per fold) while STAMP's 150 epochs of a 3.3M-parameter DE head take about 2 s per fold.",
    ),
    (
        "perturbnet_cv_folds.csv",
        "PerturbNet's training budget per fold",
        "Same run. Per fold: cINN epochs run, epoch of the lowest validation NLL (1-based), whether early stopping ended training before 50 epochs, the lowest validation NLL, and the lowest within the first 8 epochs (the main job's earlier fixed budget). In every fold the early-stopped budget reaches a lower validation NLL than 8 epochs did. Validation NLLs are comparable within a protocol only (each scVI model has its own latent space).",
    ),
    (
        "cinn_threads.csv",
        "PerturbNet's cINN on one or two torch threads",
        "`python benchmarks/bench_cinn_threads.py` — seconds per cINN epoch on the Papalexi screen (about 13k training cells, 20 blocks, batch 128), mean of 2 fits, alone and with one other process keeping a core busy. 2 CPU cores. The cINN's layers are tiny: a second thread gains nothing alone and spin-waits when a core is taken, so `PerturbNet.fit` trains the cINN on one thread (`tl._torch.torch_threads`).",
    ),
    (
        "real_cv_baselines.csv",
        "Baselines on real data",
        "`python benchmarks/bench_real_cv.py` — 5-fold CV over perturbations on the Norman 2019 K562 subset and Papalexi 2021 THP-1 knockouts; perturbations with GO terms.",
    ),
    (
        "stamp_reference.csv",
        "STAMP vs the reference implementation",
        "`python benchmarks/bench_stamp_reference.py --reference-python ...` — PyPI `cell-stamp` 0.1.2 in its own venv; same simulated data, embedding, split, epochs, batch 64, lr 1e-4, CPU (2 cores), each side in its own process; means over training seeds (`n_seeds`, metric SDs in the `_sd` columns; per-seed rows in `stamp_reference_runs.csv`); subtask metrics from the one evaluation path.",
    ),
    (
        "gp_speed.csv",
        "GP at the paper's scale",
        "`python benchmarks/bench_gp_speed.py` — 5-fold CV, 1,800 perturbations x 2,000 genes (synthetic), 2 CPU cores; goal: under 60 s. The `fold_fit_*` columns time one fold's hyperparameter fit with the profiled likelihood and analytic gradient against plain autograd through the Cholesky (the way gpytorch fits), which reaches the same optimum.",
    ),
    (
        "perturbnet_throughput.csv",
        "PerturbNet throughput",
        "`python benchmarks/bench_perturbnet_throughput.py` — cINN training and generation (decode included), cells/s, CPU.",
    ),
    (
        "conformal_coverage.csv",
        "Conformal prediction intervals on held-out perturbations",
        "`python benchmarks/bench_conformal.py` — CV+ (5 inner folds on the training perturbations) nested in 5-fold CV over perturbations; coverage pooled over held-out (perturbation, gene) entries of the genes expressed in the dataset (`n_genes_excluded` never-expressed genes left out); goal |coverage - nominal| <= 0.03. `share_zero`: entries whose observed mean is exactly 0 (57% on the K562 subset, 1.7% on Papalexi); their conformity scores tie, and with ties conformal coverage is only a lower bound, hence the K562 over-coverage; `coverage_nonzero` is the coverage over the other entries.",
    ),
    (
        "probability_calibration.csv",
        "Calibration of DE probabilities (Replogle 2022 DEG sets)",
        "`python benchmarks/bench_probability_calibration.py` — 5-fold CV over knockdowns per line; post-hoc calibrators fitted on inner out-of-fold probabilities of the training knockdowns only; ECE (10 bins), Brier and AUROC pooled over held-out (knockdown, gene) entries. With 0.6-0.7% positive entries the ECE of any predictor near the base rate is small, so the goal ECE <= 0.03 says little here.",
    ),
]


def _md(df: pd.DataFrame) -> str:
    df = df.copy()
    for c in df.select_dtypes("number").columns:
        df[c] = df[c].map(lambda v: f"{v:.4g}")
    cols = list(df.columns)
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(rows)


def write_page(results: Path, out: Path) -> None:
    parts = [
        "# Benchmarks\n",
        "Every table on this page is read from `benchmarks/results/*.csv`, written by the script named above it.\n",
    ]
    for name, title, how in SECTIONS:
        path = results / name
        parts.append(f"## {title}\n\n{how}\n")
        parts.append(_md(pd.read_csv(path)) + "\n" if path.exists() else "_Not run yet: no results file._\n")
    report = results / "report" / "report.md"
    if report.exists():
        parts.append(
            "## Full benchmark report\n\nThe report written by `perturbtools benchmark` on the real data is in `benchmarks/results/report/report.md`.\n"
        )
    out.write_text("\n".join(parts))
