"""Few-shot K562 -> RPE1 and within-line CV on the 351 Replogle 2022 knockdowns (published up-regulated DEG sets).

    PERTURBTOOLS_DATA_DIR=../shared/data python benchmarks/bench_replogle_transfer.py [--quick]

The same code the main job runs (`perturbtools.bm._run.replogle_transfer`); the committed tables come from the main
job (`perturbtools benchmark`, in benchmarks/results/report/replogle2022_*.csv). This script writes them, alone, to
benchmarks/results/:
- replogle2022_few_shot.csv: per (strategy, n) mean AUROC / average precision over test knockdowns with 95% CIs,
  and the paired difference to the RPE1 frequency prior (Wilcoxon and t-test p)
- replogle2022_few_shot_per_knockdown.csv: every test knockdown's metrics (for other paired tests)
- replogle2022_cv.csv: 5-fold CV within each line per embedding; replogle2022_coverage.csv: embedding coverage
- replogle_report/report.md and figures: the report section
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import perturbtools as pt
from perturbtools.bm._report import Report
from perturbtools.bm._run import BenchmarkConfig, replogle_transfer

OUT = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-text", action="store_true")
    args = parser.parse_args()
    pt.settings.progress_bar = False
    cfg = BenchmarkConfig(quick=args.quick)
    embeddings = {"go": pt.pp.go_embedding(n_components=64, rng=cfg.seed)}
    if not args.no_text:
        embeddings["text"] = pt.pp.text_embedding(show_progress_bar=False)
    start = time.perf_counter()
    report = Report(OUT / "replogle_report")
    tables = replogle_transfer(cfg, embeddings=embeddings, report=report)
    for key, frame in tables.items():
        frame.to_csv(OUT / f"replogle2022_{key}.csv", index=False)
    (OUT / "replogle_report" / "report.md").write_text("\n".join(report.sections))
    print(tables["few_shot"].round(3).to_string(index=False))
    print(tables["cv"].round(3).to_string(index=False))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
