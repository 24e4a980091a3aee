"""GI classes from published scores: cross-validated single-class calls vs baselines, and the shipped default.

    PERTURBTOOLS_DATA_DIR=../shared/data python benchmarks/bench_gi_classifier.py [--write-default]

Scores: Norman et al.'s own Theil-Sen fits (``regr_fits_final.csv``) of the doubles that carry a published class
(``gi_class_labels_dev53.json``), and, as a second check, Scouter's GEARS-style scores of the labelled doubles it
has (no additive doubles). 10 x repeated stratified 5-fold CV over doubles; every classifier (z-scoring included) is
fitted on the training folds only; nothing is tuned (the methods run with the defaults fixed in ``GIClassifier``).

Writes to benchmarks/results/:
- gi_classifier_cv.csv: accuracy and macro-F1 per method (mean, 2.5/97.5% quantiles over repeats)
- gi_classifier_per_class.csv: precision / recall / F1 per class and method
- gi_classifier_confusion.csv and .png: confusion matrix of the logistic classifier (summed over repeats)
With --write-default, fits the logistic classifier on all labelled doubles and writes the shipped
src/perturbtools/tl/gi_classifier_default.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import perturbtools as pt

OUT = Path(__file__).parent / "results"
DEFAULT = Path(__file__).parents[1] / "src" / "perturbtools" / "tl" / "gi_classifier_default.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-default", action="store_true")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    ref = pt.data.norman2019_gi_reference()
    labelled = [d for d in ref.labels.index if d in ref.scores.index]
    missing = sorted(set(ref.labels.index) - set(ref.scores.index))
    print(f"{len(labelled)} of {len(ref.labels)} labelled doubles have a Norman fit (missing: {missing})")

    tables, classes = [], []
    for source, scores in (("norman_fits", ref.scores), ("scouter_scores", ref.scouter_scores)):
        labels = ref.labels.loc[[d for d in ref.labels.index if d in scores.index]]
        cv = pt.tl.gi_classifier_cv(scores, labels, n_repeats=args.repeats, rng=0)
        tables.append(cv.summary.assign(scores=source, n_classes=labels.nunique()))
        classes.append(cv.per_class.assign(scores=source))
        if source == "norman_fits":
            cv.confusion.to_csv(OUT / "gi_classifier_confusion.csv")
            ax = pt.pl.gi_confusion(cv.confusion)
            ax.set_title(f"logistic, {len(labels)} doubles, {args.repeats}x5-fold CV (Norman fits)")
            ax.figure.savefig(OUT / "gi_classifier_confusion.png", dpi=110, bbox_inches="tight")
    summary = pd.concat(tables, ignore_index=True)
    summary.to_csv(OUT / "gi_classifier_cv.csv", index=False)
    pd.concat(classes, ignore_index=True).to_csv(OUT / "gi_classifier_per_class.csv", index=False)
    print(summary.round(3).to_string(index=False))

    if args.write_default:
        clf = pt.tl.GIClassifier("logistic").fit(ref.scores.loc[labelled], ref.labels.loc[labelled])
        row = summary[(summary.scores == "norman_fits") & (summary.method == "logistic")].set_index("metric")
        clf.meta_ = {
            "trained_on": "Norman 2019 regr_fits_final.csv (Theil-Sen fits), doubles with a published class "
            "(gi_class_labels_dev53.json, Scouter's curation of Norman 2019 Fig. 4f / GEARS)",
            "n_doubles": len(labelled),
            "cv": f"{args.repeats}x stratified 5-fold over doubles",
            "cv_accuracy": round(float(row.loc["accuracy", "mean"]), 4),
            "cv_macro_f1": round(float(row.loc["macro_f1", "mean"]), 4),
            "made_by": "benchmarks/bench_gi_classifier.py --write-default",
        }
        clf.save(DEFAULT)
        print(f"wrote {DEFAULT}")


if __name__ == "__main__":
    main()
