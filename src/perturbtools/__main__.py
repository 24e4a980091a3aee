"""Command line: ``perturbtools benchmark`` (or ``python -m perturbtools benchmark``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        prog="perturbtools", description="Predict and evaluate genetic perturbation responses."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("benchmark", help="run the full benchmark on real data and write a report")
    bench.add_argument(
        "--dataset", default="auto", help="auto | all | devel | papalexi | path/to/data.h5ad (default: auto)"
    )
    bench.add_argument("--out", default="results", help="output folder (default: results)")
    bench.add_argument(
        "--data-dir", default=None, help="data folder (default: $PERTURBTOOLS_DATA_DIR or ~/.cache/perturbtools)"
    )
    bench.add_argument("--n-splits", type=int, default=5)
    bench.add_argument("--quick", action="store_true", help="tiny training budgets (smoke test)")
    bench.add_argument("--no-perturbnet", action="store_true", help="skip PerturbNet (the slowest model)")
    bench.add_argument(
        "--perturbnet-on-log-data", action="store_true", help="also run PerturbNet on log data (scVI on pseudo-counts)"
    )
    bench.add_argument("--no-text", action="store_true", help="skip the text (gene-summary) embedding")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from . import settings
    from ._pipeline import BenchmarkConfig, run_benchmark

    if args.data_dir:
        settings.datasetdir = args.data_dir
    settings.progress_bar = not args.quiet
    settings.verbosity = "warning"
    config = BenchmarkConfig(
        n_splits=args.n_splits,
        quick=args.quick,
        perturbnet=not args.no_perturbnet,
        text_embedding=not args.no_text,
        seed=args.seed,
    )
    run_benchmark(args.dataset, args.out, config=config)
    print(f"wrote {args.out}/report.md, metrics.csv, per_perturbation.csv, *.h5ad and figures/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
