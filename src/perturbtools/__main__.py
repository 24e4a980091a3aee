"""Command line: ``perturbtools benchmark`` and ``perturbtools check`` (or ``python -m perturbtools ...``)."""

from __future__ import annotations

import argparse
import sys


def _file_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("a user's h5ad (--dataset path/to/file.h5ad)")
    g.add_argument(
        "--perturbation-key", default="perturbation", help="obs column of perturbation labels (default: perturbation)"
    )
    g.add_argument("--control", default="control", help="control label in that column (default: control)")
    g.add_argument("--delimiter", default="+", help="separator of combination labels (default: +)")
    g.add_argument("--modality", default=None, help="crispri | crispra | knockout for every perturbation")
    g.add_argument("--modality-key", default=None, help="obs column with the modality per cell")
    g.add_argument(
        "--collapse-guides", action="store_true", help="labels are guides (ZAP70_1, ZAP70_2): benchmark targets"
    )
    g.add_argument(
        "--condition-key", default=None, help="obs column of conditions: benchmarked per condition vs its controls"
    )
    g.add_argument("--batch-key", default=None, help="obs column of wells/lanes/batches for the design check")
    g.add_argument("--counts-layer", default=None, help="layer with raw counts (X with counts is detected)")


def _options(args):
    from .bm._userfile import UserFileOptions

    return UserFileOptions(
        perturbation_key=args.perturbation_key, control=args.control, delimiter=args.delimiter, modality=args.modality,
        modality_key=args.modality_key, condition_key=args.condition_key, batch_key=args.batch_key,
        counts_layer=args.counts_layer, collapse_guides=args.collapse_guides,
    )  # fmt: skip


def _config(args):
    from .bm._run import BenchmarkConfig

    embeddings = tuple(e.strip() for e in args.embeddings.split(",") if e.strip())
    unknown = set(embeddings) - {"go", "text"}
    if unknown:
        msg = f"--embeddings: unknown {sorted(unknown)}; choose from go, text."
        raise SystemExit(msg)
    extra = {"user_options": _options(args), "verbose": args.verbose, "embeddings": embeddings}
    if args.models:
        extra["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.modality:
        extra["modality"] = args.modality
    if args.modality_key:
        extra["modality_key"] = args.modality_key
    if args.batch_key:
        extra["batch_key"] = args.batch_key  # controls matched within batch in the labels
    return BenchmarkConfig(
        n_splits=args.n_splits, quick=args.quick, perturbnet=not args.no_perturbnet,
        text_embedding=not args.no_text, seed=args.seed, extra=extra,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    from .bm._userfile import FILE_HELP

    parser = argparse.ArgumentParser(
        prog="perturbtools",
        description="Predict and evaluate genetic perturbation responses.",
        epilog=FILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "benchmark", help="run the full benchmark and write a report", epilog=FILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    check = sub.add_parser(
        "check", help="validate a user's h5ad and print what would run, in seconds", epilog=FILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    check.add_argument("dataset", help="path/to/data.h5ad")
    for p in (bench, check):
        if p is bench:
            p.add_argument(
                "--dataset", default="auto", help="auto | all | devel | papalexi | replogle | path/to/data.h5ad"
            )
            p.add_argument("--out", default="results", help="output folder (default: results)")
        p.add_argument(
            "--data-dir", default=None, help="data folder (default: $PERTURBTOOLS_DATA_DIR or ~/.cache/perturbtools)"
        )
        p.add_argument("--n-splits", type=int, default=5)
        p.add_argument("--quick", action="store_true", help="tiny training budgets (smoke test)")
        p.add_argument(
            "--models", default=None, help="comma-separated model names to run (default: all whose inputs exist)"
        )
        p.add_argument("--no-perturbnet", action="store_true", help="skip PerturbNet (the slowest model)")
        p.add_argument("--no-text", action="store_true", help="skip the text (gene-summary) embedding")
        p.add_argument("--embeddings", default="go,text", help="gene embeddings to use: go, text or go,text (default)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--quiet", action="store_true", help="no progress bars or time estimates")
        p.add_argument(
            "--verbose", action="store_true", help="show third-party logs and warnings (scvi-tools, Lightning)"
        )
        _file_options(p)
    args = parser.parse_args(argv)

    from . import settings

    if args.data_dir:
        settings.datasetdir = args.data_dir
    settings.progress_bar = not args.quiet
    settings.verbosity = "warning"
    config = _config(args)
    if args.command == "check":
        return _check(args.dataset, config)
    from .bm._run import run_benchmark

    try:
        run_benchmark(args.dataset, args.out, config=config)
    except (KeyError, ValueError, FileNotFoundError) as err:
        if args.verbose:
            raise
        print(f"perturbtools: {err} (run with --verbose for the traceback)", file=sys.stderr)
        return 2
    print(f"wrote {args.out}/report.md, metrics.csv, per_perturbation.csv, *.h5ad and figures/")
    return 0


def _check(path: str, config) -> int:
    """Validate the file and print the plan without training anything."""
    from .bm._recipes import MIN_EMBEDDING_SHARE, _models, embedding_share
    from .bm._userfile import plan, prepare_screen

    try:
        screen = prepare_screen(path, config.extra["user_options"])
    except (KeyError, ValueError, FileNotFoundError) as err:
        print(f"perturbtools check: {err}", file=sys.stderr)
        return 2
    from . import pp

    go = None
    if "go" not in config.extra["embeddings"]:
        config.extra["go_reason"] = "the GO embedding was not requested (`--embeddings`)"
    else:
        try:
            go = pp.go_embedding(n_components=64, rng=config.seed)
        except (FileNotFoundError, OSError) as err:
            screen.notes.append(f"GO embedding unavailable ({err}).")
    for name, a in screen.datasets.items():
        perts = [p for p in a.obs["perturbation"].astype(str).unique() if p != "control"]
        share = 0.0 if go is None else embedding_share(perts, go)
        embeddings = {"go": go} if go is not None and share >= MIN_EMBEDDING_SHARE else {}
        if go is not None and share < MIN_EMBEDDING_SHARE:
            screen.notes.append(
                f"{name}: the GO embedding covers {share:.0%} of the perturbations "
                f"(< {MIN_EMBEDDING_SHARE:.0%}): GO models are skipped."
            )
        counts = screen.counts
        models, skipped = _models(config, embeddings, counts=counts, perturbnet=config.perturbnet and counts)
        if config.perturbnet and not counts:
            skipped["perturbnet_go"] = "no raw counts (`--counts-layer`)"
        print(plan(name, a, models=models, skipped=skipped, n_splits=config.n_splits))
    for note in screen.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
