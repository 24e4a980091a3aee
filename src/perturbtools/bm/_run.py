"""The main job: one call from AnnData to a full benchmark report (labels, CV of every model, GI, few-shot, plots)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import data as datasets
from .. import metrics, pl, pp, tl
from .._keys import CV_KEY, LABELS_KEY, cv_prediction_key, embedding_key, label_keys
from .._settings import settings
from ._cross_validation import CVResults, cross_validate
from ._curves import few_shot, learning_curve
from ._recipes import (
    DATASETS,
    FEW_SHOT,
    LEARNING_CURVE_MODELS,
    LEARNING_CURVE_SIZES,
    MIN_EMBEDDING_SHARE,
    MODELS,
    _covered,
    _models,
    embedding_share,
    label_baselines,
)
from ._report import Report, _quiet_third_party, _say, _summary_table, _undefined_notes

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkConfig:
    """Settings of :func:`run_benchmark`; ``quick`` shrinks every training budget (for tests and smoke runs)."""

    n_splits: int = 5
    quick: bool = False
    perturbnet: bool = True
    text_embedding: bool = True
    stamp_epochs: int = 150
    stamp_lr: float = 1e-3
    perturbnet_epochs: int = 50  #: cINN epochs at most; early stopping (patience 5, held-out training cells) ends it
    perturbnet_lr: float = 1e-3
    scvi_epochs: int = 25
    shots: tuple[int, ...] = (0, 2, 4, 6)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.quick:
            self.stamp_epochs, self.perturbnet_epochs, self.scvi_epochs = 5, 3, 3
            self.shots = (0, 2)


def _with_ceiling(name, adata, perts, summary, cfg, report) -> pd.DataFrame:
    """The CV summary with the split-half noise ceiling and scores normalised between the mean baseline and it."""
    baseline = "noncontrol_mean"
    if baseline not in set(summary["model"]) or label_keys(LABELS_KEY).mean not in adata.varm:
        return summary
    start = time.perf_counter()
    per, pooled = metrics.noise_ceiling(adata, n_repeats=2 if cfg.quick else 5, rng=cfg.seed)
    per = per.loc[per.index.intersection(perts)]
    report.text(
        f"{name}: noise ceiling from {per.attrs['n_repeats']} split-half replicates of {len(per)} perturbations "
        f"({time.perf_counter() - start:.0f} s); correlations Spearman-Brown corrected, errors variance corrected, "
        "AUCs and the rank metric as measured on halves (see `pt.metrics.noise_ceiling`)."
    )
    return metrics.normalised_scores(summary, metrics.ceiling_summary(per, pooled), baseline=baseline)


def _benchmark_one(
    name: str,
    adata,
    cfg: BenchmarkConfig,
    report: Report,
    embeddings: dict[str, pd.DataFrame],
    *,
    counts: bool,
    perturbnet: bool,
    n_splits: int,
) -> dict[str, Any]:
    """Labels, CV of all models, calibration; returns what later steps need."""
    modality = cfg.extra.get("modality")
    modality_key = cfg.extra.get("modality_key", "perturbation_type" if modality is None else None)
    if modality_key is not None and modality_key not in adata.obs:
        modality_key = None
    batch_key = cfg.extra.get("batch_key")
    pp.deg_labels(
        adata, modality_key=modality_key, modality=modality if modality_key is None else None, batch_key=batch_key
    )
    if batch_key is not None:
        report.text(
            f"{name}: each perturbation is tested against the control cells of its own batches of `obs[{batch_key!r}]`."
        )
    labelled = list(adata.uns[LABELS_KEY]["perturbations"])
    kept = {}
    for key, emb in embeddings.items():
        share = embedding_share(labelled, emb)
        if share >= MIN_EMBEDDING_SHARE:
            kept[key] = emb
        else:
            report.text(
                f"{name}: the {key} embedding covers only {share:.0%} of the perturbations and is not used here."
            )
    embeddings = kept
    for key, emb in embeddings.items():
        pp.add_gene_embedding(adata, emb, key_added=embedding_key(key))
    perts = _covered(adata, embeddings)
    dropped = sorted(set(adata.uns[LABELS_KEY]["perturbations"]) - set(perts))
    models, skipped = _models(cfg, embeddings, counts=counts, perturbnet=perturbnet)
    if skipped:
        report.table(f"{name}: models skipped", pd.DataFrame({"reason": skipped}).rename_axis("model"))
    report.text(f"## {name}\n\n{adata.n_obs} cells x {adata.n_vars} genes, {len(adata.uns['deg']['perturbations'])} labelled perturbations "
                f"({int((adata.varm[label_keys(LABELS_KEY).is_de]).to_numpy().sum())} DEG entries). Scored on the {len(perts)} perturbations every embedding "
                f"covers{f' (left out: {dropped})' if dropped else ''}; {n_splits}-fold CV over perturbations, control = the real control cells.")  # fmt: skip
    from ._userfile import estimate_seconds

    guess = estimate_seconds(adata.n_obs, adata.n_vars, len(perts), list(models), n_splits)
    _say(f"[{name}] {n_splits}-fold CV of {len(models)} models on {len(perts)} perturbations: about {guess:.0f} s")
    start = time.perf_counter()
    cross_validate(
        adata,
        models,
        perturbations=perts,
        n_splits=n_splits,
        rng=cfg.seed,
        key_added=CV_KEY,
        inplace=True,  # the out-of-fold predictions are GI-scored below
        show_progress_bar=settings.progress_bar,
    )
    res = CVResults.from_adata(adata, CV_KEY)
    report.text(f"CV of {len(models)} models took {time.perf_counter() - start:.0f} s.")
    summary = _with_ceiling(name, adata, perts, res.summary, cfg, report)
    report.table(
        f"{name}: mean [95% bootstrap CI] over perturbations (pooled_*: over folds); rank among the held-out "
        "predictions of the fold (denominator N - 1, 0.5 = constant predictor); last row: the noise ceiling",
        _summary_table(summary),
    )
    notes = _undefined_notes(summary)
    if notes:
        report.text(f"{name}: undefined or partly undefined metrics (min_positives={metrics.MIN_POSITIVES}): " + notes)
    if "normalised" in summary:
        base = summary.attrs["baseline"]
        norm = summary[summary["metric"].isin(metrics.KEY_METRICS)].pivot(
            index="model", columns="metric", values="normalised"
        )
        report.table(f"{name}: normalised score (model - {base}) / (noise ceiling - {base}): 0 = {base}, 1 = ceiling",
                     norm[[m for m in metrics.KEY_METRICS if m in norm.columns]])  # fmt: skip
    report.summaries.append(summary.assign(dataset=name))
    report.per_perturbation.append(res.per_perturbation.assign(dataset=name))
    shown = [m for m in metrics.PLOT_METRICS if m in set(summary["metric"])]
    report.figure(pl.metrics(summary, shown), f"{name}_metrics")
    if "gp_go" in models:
        cal = metrics.calibration(adata, cv_prediction_key(CV_KEY, "gp_go"), levels=(0.5, 0.8, 0.9, 0.95))
        report.table(f"{name}: GP (GO) interval coverage on held-out perturbations", cal.set_index("level"))
        report.figure(pl.calibration(cal), f"{name}_gp_calibration")
    if "stamp_go" in models:
        report.figure(
            pl.model_scatter(res.per_perturbation, "noncontrol_mean", "stamp_go", metric="pearson_delta"),
            f"{name}_stamp_vs_mean",
        )
    return {"res": res, "perts": perts, "models": models}


def _gi_classifier_section(report: Report, cfg: BenchmarkConfig) -> tuple[tl.GIClassifier, pd.Series]:
    """Cross-validated single-class GI calls on the published scores.

    Returns the shipped classifier and the published classes (empty where the reference is not available).
    """
    clf = tl.GIClassifier.default()
    try:
        ref = datasets.norman2019_gi_reference()
    except (FileNotFoundError, OSError) as err:
        report.text(
            f"GI classifier: the published reference is not available here ({err}); the shipped classifier is used."
        )
        return clf, pd.Series(dtype=object)
    labels = ref.labels.loc[[d for d in ref.labels.index if d in ref.scores.index]]
    cv = tl.gi_classifier_cv(ref.scores, labels, n_repeats=3 if cfg.quick else 10, rng=cfg.seed)
    report.text(
        "## Genetic interactions: one class per double\n\n"
        "Published GI classes (Norman 2019 Fig. 4f, curated; reused by GEARS and Scouter) are one class per double. "
        f"`pt.tl.GIClassifier` learns them from z-scored GI scores. Cross-validated on Norman et al.'s own fits of the "
        f"{len(labels)} labelled doubles that have one (stratified 5-fold, repeated): accuracy and macro-F1 beside the "
        "majority class and the six GEARS thresholds used as a rule (first set a double falls in, else additive). "
        f"The shipped default (`GIClassifier.default()`) is the logistic model fitted on all {len(labels)}."
    )
    wide = cv.summary.assign(
        cell=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(cv.summary["mean"], cv.summary["q025"], cv.summary["q975"], strict=True)]
    ).pivot(index="method", columns="metric", values="cell")  # fmt: skip
    report.table("GI classifier, cross-validated on published scores: mean [2.5%, 97.5% over repeats]", wide)
    f1 = cv.per_class.pivot(index="class", columns="method", values="f1")
    report.table("GI classifier: F1 per class (pooled over repeats)", f1)
    report.figure(pl.gi_confusion(cv.confusion), "gi_classifier_confusion")
    return clf, ref.labels


def _gi_section(
    name: str, adata, models: dict[str, Any], report: Report, clf: tl.GIClassifier, published: pd.Series
) -> None:
    observed = tl.gi_scores(adata, show_progress_bar=False)
    n_genes = observed["n_genes"]
    report.text(
        f"### {name}: genetic interactions\n\nScores on log expression minus the control mean (GEARS definitions, "
        f"magnitude = L2 norm of (c1, c2): a literal sum has magnitude 1.41), over genes expressed in the controls "
        f"({n_genes.min()}-{n_genes.max()} genes per double, targets excluded; GEARS used 2,967 on the full Norman "
        "data). Classes from the shipped classifier, which was trained on Norman et al.'s fits of the full data: "
        "a shift in score scale between those fits and this subset moves the calls."
    )
    calls = {"published": published.reindex(observed.index).fillna("-"), "observed": clf.predict(observed)}
    predicted_scores = {}
    for model in models:
        try:
            predicted_scores[model] = tl.gi_scores(adata, cv_prediction_key(CV_KEY, model), show_progress_bar=False)
        except (KeyError, ValueError) as err:
            logger.info("GI from %s skipped: %s", model, err)
            continue
        calls[model] = clf.predict(predicted_scores[model]).reindex(observed.index)
    report.table(
        f"{name}: GI scores from observed expression",
        observed.drop(columns=["gene_a", "gene_b"]).astype({"n_genes": str}),
    )
    table = pd.DataFrame(calls).fillna("-")
    report.table(
        f"{name}: one GI class per double: published, from observed scores, from each model's out-of-fold predictions",
        table,
    )
    labelled = [d for d in observed.index if d in published.index]
    if labelled:
        hits = {
            c: int((table.loc[labelled, c] == table.loc[labelled, "published"]).sum())
            for c in table.columns
            if c != "published"
        }
        report.text(f"Doubles with a published class: {len(labelled)} ({', '.join(labelled)}). Calls equal to it: "
                    + ", ".join(f"{c} {n}/{len(labelled)}" for c, n in hits.items()) + ".")  # fmt: skip
    report.figure(pl.gi_scores(observed, classes=calls["observed"]), f"{name}_gi_observed")
    if predicted_scores:
        agreement = pd.concat(
            {m: tl.gi_score_agreement(s, observed)[["spearman", "mae"]] for m, s in predicted_scores.items()}, axis=1
        )
        agreement.columns = [f"{m}:{stat}" for m, stat in agreement.columns]
        report.table(
            f"{name}: agreement of GI scores from out-of-fold predictions with observed scores "
            f"(Spearman and MAE over {len(observed)} doubles)",
            agreement.T,
        )
        if len(observed) > 10:
            prec = pd.DataFrame({m: tl.gi_precision_at_k(s, observed, k=10) for m, s in predicted_scores.items()})
            report.table(f"{name}: GEARS Precision@10 per subtype set (evaluation sets, not classes)", prec.T)
        else:
            report.text(
                f"GEARS Precision@10 is not shown: with {len(observed)} doubles, k would be capped at "
                f"{len(observed)} (by {10 - len(observed)}) and every model would select all doubles, so every "
                "column would be identical. Score agreement above replaces it."
            )
    if "gp_go" in models:
        doubles = list(observed.index)
        rest = [
            p
            for p in adata.uns[LABELS_KEY]["perturbations"]
            if p not in doubles and all(g in adata.uns[embedding_key("go")].index for g in pp.parse_perturbation(p))
        ]
        gp = tl.GPModel(adata, embedding=embedding_key("go")).fit(rest)
        iv = tl.gi_intervals(gp, doubles, n_samples=60, max_subpopulation=20_000, show_progress_bar=False)
        _gi_conformal_section(name, adata, gp, rest, doubles, iv, observed, report)
        wide = (
            iv[iv["score"].isin(["magnitude", "model_fit", "similarity"])]
            .assign(
                interval=lambda d: [
                    f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in zip(d["median"], d["low"], d["high"], strict=True)
                ]
            )
            .pivot(index="perturbation", columns="score", values="interval")
        )
        proba = tl.gi_class_proba(
            gp, doubles, classifier=clf, n_samples=60, max_subpopulation=20_000, show_progress_bar=False
        )
        wide = wide.join(proba[["call"]].rename(columns={"call": "class (GP posterior)"}))
        wide["P(class)"] = proba[clf.classes_].max(axis=1)
        report.table(
            f"{name}: GI scores predicted by the GP (GO) with 90% posterior intervals and the class most often called "
            "over posterior samples (doubles unseen in training)",
            wide,
        )


def _gi_conformal_section(name, adata, gp, train, doubles, posterior_iv, observed, report: Report) -> None:
    """GI intervals from conformal-calibrated draws beside the GP posterior's; coverage of the observed scores."""
    conformal = tl.conformal_intervals(
        adata, (tl.GPModel, {"embedding": embedding_key("go")}), train=train, test=doubles, levels=[0.9],
        inplace=False, show_progress_bar=False,
    )  # fmt: skip
    calibrated = tl.gi_intervals(
        gp, doubles, n_samples=60, max_subpopulation=20_000, conformal=conformal, show_progress_bar=False
    )
    table = tl.gi_interval_coverage({"GP posterior": posterior_iv, "conformal (CV+)": calibrated}, observed)
    report.table(
        f"{name}: coverage of the observed GI scores of the {len(doubles)} unseen doubles by 90% intervals, from "
        "the GP's posterior draws and from the same draws calibrated to the conformal intervals of expression "
        "(`gi_intervals(..., conformal=)`); 95% Clopper-Pearson interval of the coverage over doubles",
        table,
    )


def _few_shot_section(
    source, source_perts: list[str], targets: dict[str, Any], cfg: BenchmarkConfig, report: Report
) -> pd.DataFrame:
    rows = []
    for line, target in targets.items():
        spec = (
            tl.STAMP,
            {"embedding": embedding_key("go")},
            {"max_epochs": cfg.stamp_epochs, "lr": cfg.stamp_lr, "show_progress_bar": False},
        )
        table = few_shot(source, target, spec, shots=cfg.shots, n_splits=3, baselines={"noncontrol_mean": tl.NonControlMean},
                            finetune_kwargs={"max_epochs": max(cfg.stamp_epochs // 3, 2), "lr": cfg.stamp_lr, "show_progress_bar": False},
                            source_perturbations=source_perts, rng=cfg.seed, show_progress_bar=False)  # fmt: skip
        rows.append(table.assign(target=line))
    table = pd.concat(rows, ignore_index=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    pl.few_shot(table, metric="pooled_roc_auc_de", ax=axes[0])
    pl.few_shot(table, metric="pearson_delta", ax=axes[1])
    report.figure(fig, "few_shot_k562_to_glioma")
    agg = table.groupby(["strategy", "n"])[["pooled_roc_auc_de", "pooled_roc_auc_direction", "pearson_delta"]].mean()
    report.table("Few-shot K562 (CRISPRa) -> A172 / T98G / U87MG (CRISPRi), STAMP (GO): mean over lines and folds", agg)
    return table


REPLOGLE_SHOTS = (0, 5, 10, 20, 40, 80, 160)


def replogle_transfer(
    cfg: BenchmarkConfig, *, embeddings: dict[str, pd.DataFrame], report: Report | None = None
) -> dict[str, pd.DataFrame]:
    """Few-shot K562 -> RPE1 and within-line CV on the Replogle 2022 DEG sets (label-only data, subtask 1 on up-genes).

    Few-shot: STAMP pretrained on every K562 knockdown, fine-tuned on n RPE1 knockdowns (nested draws) vs trained
    from scratch on them, against the label baselines (target frequency prior, copy of the K562 ranking, their
    combination, learned stacking, kNN on GO), 5 knockdown-disjoint RPE1 folds. Per-knockdown AUROC / average
    precision; paired Wilcoxon and t-tests of each strategy against the frequency prior at every n. CV: 5-fold over
    knockdowns within each line, per embedding, on the knockdowns it covers. Nothing is tuned on the test folds:
    every setting is the package default or fixed below.
    """
    k562, rpe1 = datasets.replogle2022_degsets()
    go = embeddings["go"]
    for a in (k562, rpe1):
        for name, emb in embeddings.items():
            pp.add_gene_embedding(a, emb, key_added=embedding_key(name))
    kds = list(rpe1.uns[LABELS_KEY]["perturbations"])
    coverage = pd.DataFrame(
        {name: [np.mean([kd in emb.index for kd in kds]), sum(kd in emb.index for kd in kds)] for name, emb in embeddings.items()},
        index=["share", "n"],
    ).T.rename_axis("embedding")  # fmt: skip
    covered = [kd for kd in kds if kd in go.index]
    epochs = 5 if cfg.quick else 30
    stamp_fit = {"max_epochs": epochs, "lr": cfg.stamp_lr, "show_progress_bar": False}
    shots = (0, 5, 10) if cfg.quick else REPLOGLE_SHOTS
    n_splits = 2 if cfg.quick else 5
    baselines = {**label_baselines(k562), "knn_go": (tl.KNNLabels, {"embedding": embedding_key("go")})}
    start = time.perf_counter()
    _, per = few_shot(
        k562, rpe1, (tl.STAMP, {"embedding": embedding_key("go")}, stamp_fit), shots=shots, baselines=baselines,
        n_splits=n_splits, source_perturbations=covered, perturbations=covered, return_per_perturbation=True,
        rng=cfg.seed, show_progress_bar=False,
    )  # fmt: skip
    few_seconds = time.perf_counter() - start
    rows = []
    for (strategy, n), g in per.groupby(["strategy", "n"]):
        ref = per[(per["strategy"] == "frequency_prior") & (per["n"] == n)].set_index(["fold", "perturbation"])
        row = {"strategy": strategy, "n": n, "n_knockdowns": len(g)}
        for metric in ("roc_auc_de", "pr_auc_de"):
            mean, low, high, _ = metrics.bootstrap_ci(g[metric].to_numpy(), rng=cfg.seed)  # stays within [0, 1]
            row |= {metric: mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high}
            if len(ref) and strategy != "frequency_prior":
                cmp = metrics.compare(g.set_index(["fold", "perturbation"])[metric], ref[metric])
                row |= {f"{metric}_diff_vs_prior": cmp["mean_difference"], f"{metric}_wilcoxon_p": cmp["wilcoxon_p"],
                        f"{metric}_ttest_p": cmp["ttest_p"]}  # fmt: skip
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["strategy", "n"]).reset_index(drop=True)

    cv_rows = []
    cv_start = time.perf_counter()
    for line, a in (("k562", k562), ("rpe1", rpe1)):
        for emb_name, emb in embeddings.items():
            perts = [kd for kd in kds if kd in emb.index]
            models = {
                "frequency_prior": tl.FrequencyPrior,
                f"knn_{emb_name}": (tl.KNNLabels, {"embedding": embedding_key(emb_name)}),
                f"logistic_{emb_name}": (tl.EmbeddingLogistic, {"embedding": embedding_key(emb_name)}),
            }
            if emb_name == "go":
                models["stamp_go"] = (tl.STAMP, {"embedding": embedding_key("go")}, stamp_fit)
            res = cross_validate(a, models, perturbations=perts, n_splits=n_splits, rng=cfg.seed,
                                 show_progress_bar=False)  # fmt: skip
            s = res.summary[res.summary["metric"].isin(["roc_auc_de", "pr_auc_de"])]
            cv_rows.append(s.assign(line=line, embedding=emb_name, n_knockdowns=len(perts)))
    cv = pd.concat(cv_rows, ignore_index=True)
    cv = cv[["line", "embedding", "n_knockdowns", "model", "metric", "mean", "ci_low", "ci_high", "n"]]
    cv_seconds = time.perf_counter() - cv_start
    if report is not None:
        _replogle_report(report, table, per, cv, coverage, few_seconds, cv_seconds, len(covered), n_splits)
    return {"few_shot": table, "few_shot_per_knockdown": per, "cv": cv, "coverage": coverage.reset_index()}


def _replogle_report(report, table, per, cv, coverage, few_seconds, cv_seconds, n_covered, n_splits) -> None:
    report.text(
        "## Replogle 2022 K562 -> RPE1: learning which genes a knockdown up-regulates (label-only data)\n\n"
        f"Published up-regulated DEG sets of the knockdowns measured in both lines (DESeq2; no cells): subtask 1 only, "
        f"direction and fold change are undefined here. {n_covered} knockdowns covered by the GO embedding. "
        f"Few-shot: STAMP (GO) pretrained on K562, fine-tuned on n RPE1 knockdowns vs from scratch, beside the label "
        f"baselines; {n_splits} knockdown-disjoint RPE1 folds, every test knockdown scored once per n; "
        "mean [95% percentile-bootstrap CI] over knockdowns; paired Wilcoxon p of the difference to the RPE1 frequency "
        f"prior at the same n ({few_seconds:.0f} s)."
    )
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    curve = per.rename(columns={"roc_auc_de": "auroc", "pr_auc_de": "average_precision"})
    pl.few_shot(curve, metric="average_precision", ax=axes[0])  # mean and 95% CI over test knockdowns
    pl.few_shot(curve, metric="auroc", ax=axes[1])
    for ax in axes:
        ax.set_xscale("symlog", linthresh=5)
        ax.set_xticks(sorted(curve["n"].unique()), [str(n) for n in sorted(curve["n"].unique())])
    axes[1].get_legend().remove()
    axes[0].legend(fontsize=7, loc="lower right")
    report.figure(fig, "few_shot_k562_to_rpe1")
    show = table.assign(
        auroc=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(table["roc_auc_de"], table["roc_auc_de_ci_low"], table["roc_auc_de_ci_high"], strict=True)],
        ap=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(table["pr_auc_de"], table["pr_auc_de_ci_low"], table["pr_auc_de_ci_high"], strict=True)],
    )  # fmt: skip
    show["AP - prior"] = [f"{d:+.3f}" if np.isfinite(d) else "-" for d in show["pr_auc_de_diff_vs_prior"]]
    show["Wilcoxon p"] = [f"{p:.2g}" if np.isfinite(p) else "-" for p in show["pr_auc_de_wilcoxon_p"]]
    cols = ["strategy", "n", "n_knockdowns", "auroc", "ap", "AP - prior", "Wilcoxon p"]
    report.table(
        "Few-shot K562 -> RPE1: per-knockdown AUROC and average precision (AP)", show[cols].set_index("strategy")
    )
    learned = table[
        table["strategy"].isin(["pretrained", "scratch", "label_stacking", "knn_go"])
        & (table["n"] <= 40)
        & (table["pr_auc_de_diff_vs_prior"] > 0)
        & (table["pr_auc_de_wilcoxon_p"] < 0.05)
    ]
    if len(learned):
        best = learned.sort_values("n").iloc[0]
        report.text(
            f"Goal (a learned model beats the RPE1 frequency prior on AP with paired p < 0.05 at some n <= 40): met. "
            f"Smallest n: {best['strategy']} at n = {int(best['n'])}, AP +{best['pr_auc_de_diff_vs_prior']:.3f} "
            f"(Wilcoxon p = {best['pr_auc_de_wilcoxon_p']:.2g}). All such (strategy, n): "
            + ", ".join(f"{r.strategy}@{int(r.n)}" for r in learned.itertuples())
            + "."
        )
    else:
        sub = table[table["strategy"].isin(["pretrained", "scratch", "label_stacking", "knn_go"]) & (table["n"] <= 40)]
        best = sub.sort_values("pr_auc_de_diff_vs_prior").iloc[-1] if len(sub) else None
        miss = (
            ""
            if best is None
            else f" Closest: {best['strategy']} at n = {int(best['n'])}, AP difference {best['pr_auc_de_diff_vs_prior']:+.3f} (p = {best['pr_auc_de_wilcoxon_p']:.2g})."
        )
        report.text(
            "Goal (a learned model beats the RPE1 frequency prior on AP with paired p < 0.05 at some n <= 40): not met."
            + miss
        )
    report.table("Embedding coverage of the knockdown genes", coverage)
    cv = cv.assign(
        cell=[
            f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(cv["mean"], cv["ci_low"], cv["ci_high"], strict=True)
        ]
    )
    wide = cv.pivot_table(index=["line", "embedding", "model"], columns="metric", values="cell", aggfunc="first")
    report.table(
        f"Replogle 2022: {n_splits}-fold CV over knockdowns within each line (unseen knockdowns; {cv_seconds:.0f} s)",
        wide.reset_index().set_index("line"),
    )


def run_benchmark(
    dataset: str = "auto",
    out: str | Path = "results",
    *,
    config: BenchmarkConfig | None = None,
) -> pd.DataFrame:
    """Run the whole pipeline and write ``out/``.

    Writes one h5ad per dataset, ``metrics.csv``, ``per_perturbation.csv``, ``figures/*.png`` and ``report.md``.

    Parameters
    ----------
    dataset
        ``"devel"`` (Norman 2019 K562 subset + three glioma lines), ``"papalexi"`` (THP-1 knockouts, counts),
        ``"replogle"`` (Replogle 2022 K562/RPE1 DEG sets: few-shot transfer on labels), ``"all"`` (all three),
        ``"auto"`` (every dataset found locally, else the downloadable devel file), or a path to a
        labelled-ready h5ad with ``obs['perturbation']`` (and ``layers['counts']`` for PerturbNet).
    out
        Output folder.
    config
        :class:`BenchmarkConfig`.

    Returns
    -------
    The long metrics table written to ``metrics.csv``.
    """
    cfg = config or BenchmarkConfig()
    with _quiet_third_party(cfg.extra.get("verbose", False)):
        return _run(dataset, Path(out), cfg)


def _run(dataset: str, out: Path, cfg: BenchmarkConfig) -> pd.DataFrame:
    report = Report(out)
    started = time.perf_counter()
    names = _resolve(dataset)
    wanted = cfg.extra.get("embeddings", ("go", "text"))
    embeddings = {}
    if "go" in wanted:
        embeddings["go"] = pp.go_embedding(n_components=64, rng=cfg.seed)
    else:
        cfg.extra["go_reason"] = "the GO embedding was not requested (`--embeddings`)"
    if cfg.text_embedding and "text" in wanted:
        try:
            embeddings["text"] = pp.text_embedding(show_progress_bar=False)
        except ImportError as err:
            logger.warning("text embedding skipped: %s", err)
    report.text(f"# perturbtools benchmark report\n\nGenerated by `perturbtools benchmark` (perturbtools {__import__('perturbtools').__version__}); "
                f"data folder `{settings.datasetdir}`; settings `{json.dumps({k: v for k, v in cfg.__dict__.items() if k != 'extra'}, default=str)}`.\n"
                "Every number below was computed by this run.")  # fmt: skip
    with_gi = any("gi" in r.sections for name in names for r in DATASETS.get(name, ()))
    clf, published = _gi_classifier_section(report, cfg) if with_gi else (None, None)
    for name in names:
        if name == "replogle":
            if "go" not in embeddings:
                report.text(
                    "## Replogle 2022 K562 -> RPE1\n\nSkipped: the section needs the GO embedding (`--embeddings go`)."
                )
                continue
            tables = replogle_transfer(cfg, embeddings=embeddings, report=report)
            for key, frame in tables.items():
                frame.to_csv(out / f"replogle2022_{key}.csv", index=False)
            continue
        if name not in DATASETS:
            _user_screen(name, cfg, report, embeddings, out)
            report.flush()
            continue
        done = {}
        for recipe in DATASETS[name]:
            adata = getattr(datasets, recipe.loader)(**recipe.loader_kwargs)
            info = _benchmark_one(recipe.name, adata, cfg, report, embeddings, counts=recipe.counts,
                                  perturbnet=cfg.perturbnet and recipe.perturbnet,
                                  n_splits=recipe.n_splits or cfg.n_splits)  # fmt: skip
            for section in recipe.sections:
                _SECTIONS[section](recipe.name, adata, info, cfg, report, clf=clf, published=published)
            done[recipe.name] = adata, info
            report.flush()
        if name in FEW_SHOT:
            source, targets = FEW_SHOT[name]
            few = _few_shot_section(done[source][0], done[source][1]["perts"],
                                    {label: done[t][0] for label, t in targets.items()}, cfg, report)  # fmt: skip
            few.to_csv(out / "few_shot.csv", index=False)
        for stem, (adata, _) in done.items():
            adata.write_h5ad(out / f"{stem}.h5ad")
        report.flush()
    report.text(f"\nTotal run time: {time.perf_counter() - started:.0f} s.")
    report.flush()
    return pd.concat(report.summaries, ignore_index=True) if report.summaries else pd.DataFrame()


def _learning_curve_section(name, adata, info, cfg, report, **_) -> None:
    specs = {
        r.name: r.spec(cfg, counts=False)
        for r in MODELS
        if r.name in LEARNING_CURVE_MODELS and r.name in info["models"]
    }
    lc = learning_curve(adata, specs, train_sizes=list(LEARNING_CURVE_SIZES), perturbations=info["perts"],
                        n_splits=cfg.n_splits, rng=cfg.seed, show_progress_bar=False)  # fmt: skip
    report.figure(pl.learning_curve(lc, metric="pearson_delta"), f"{name}_learning_curve")


def _perturbnet_section(name, adata, info, cfg, report, **_) -> None:
    if cfg.perturbnet and "perturbnet_go" in info["models"]:
        _perturbnet_distributions(name, adata, info["perts"], cfg, report)


def _gi_section_of(name, adata, info, cfg, report, *, clf, published) -> None:
    _gi_section(name, adata, info["models"], report, clf, published)


_SECTIONS = {
    "gi": _gi_section_of,
    "perturbnet_distributions": _perturbnet_section,
    "learning_curve": _learning_curve_section,
}


def _user_screen(
    path: str, cfg: BenchmarkConfig, report: Report, embeddings: dict[str, pd.DataFrame], out: Path
) -> None:
    """A user's h5ad: validated and standardised (`_userfile`), then benchmarked per condition."""
    from ._userfile import UserFileOptions, prepare_screen

    opts = cfg.extra.get("user_options") or UserFileOptions()
    screen = prepare_screen(path, opts)
    report.text(f"## {Path(path).name}\n\n" + "\n".join(f"- {n}" for n in screen.notes))
    if screen.guides is not None:
        report.table("Guides per target", screen.guides)
    if screen.design is not None:
        report.table(f"Design check: cells per batch of `obs[{opts.batch_key!r}]`", screen.design)
    perturbnet = cfg.perturbnet and screen.counts
    if cfg.perturbnet and not screen.counts:
        cfg.extra["perturbnet_reason"] = "no raw counts (PerturbNet's scVI needs counts: `--counts-layer`)"
    for stem, a in screen.datasets.items():
        _benchmark_one(
            stem, a, cfg, report, embeddings, counts=screen.counts, perturbnet=perturbnet, n_splits=cfg.n_splits
        )
        report.flush()
        a.write_h5ad(out / f"{stem}.h5ad")


def _perturbnet_distributions(name: str, adata, perts: list[str], cfg: BenchmarkConfig, report: Report) -> None:
    """One held-out split: generated vs real cells of unseen perturbations (energy distance, MMD)."""
    rng = np.random.default_rng(cfg.seed)
    test = sorted(rng.choice(perts, size=max(2, len(perts) // 5), replace=False).tolist())
    train = [p for p in perts if p not in test]
    model = tl.PerturbNet(adata, representation="embedding", embedding=embedding_key("go")).fit(
        train,
        scvi_epochs=cfg.scvi_epochs,
        max_epochs=cfg.perturbnet_epochs,
        lr=cfg.perturbnet_lr,
        show_progress_bar=False,
        rng=cfg.seed,
    )
    start = time.perf_counter()
    gen = model.sample(test, n_cells=300, rng=cfg.seed)
    rate = gen.n_obs / (time.perf_counter() - start)
    dist = metrics.distribution_distances(adata, gen, n_pcs=20)
    report.table(
        f"{name}: PerturbNet generated vs real cells of unseen perturbations (PCA-20); control_* = real perturbed vs real control",
        dist,
    )
    report.text(f"PerturbNet sampling throughput on this machine: {rate:.0f} cells/s (CPU).")


def _resolve(dataset: str) -> list[str]:
    local = {
        "devel": (settings.datasetdir / "perturbench_devel" / "devel.h5ad").exists(),
        "replogle": (
            settings.datasetdir
            / "replogle2022_k562_rpe1_degsets"
            / "replogle2022_k562_rpe1_dev351_up_signatures.json.gz"
        ).exists(),
        "papalexi": (
            settings.datasetdir / "papalexi2021_sceptre_lowmoi" / "papalexi2021_thp1_lowmoi_299genes.h5ad"
        ).exists(),
    }
    if dataset == "auto":
        found = [k for k, v in local.items() if v]
        return found or ["devel"]  # devel is downloadable
    if dataset == "all":
        return ["devel", "papalexi", "replogle"]
    if dataset in ("devel", "papalexi", "replogle") or Path(dataset).exists():
        return [dataset]
    msg = f"Unknown dataset {dataset!r}: use 'auto', 'all', 'devel', 'papalexi', 'replogle' or a path to an h5ad file."
    raise ValueError(msg)
