"""What the main job runs, as data: the models (with what each needs) and the datasets (with their sections)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import pp, tl
from .._keys import LABELS_KEY, embedding_key

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from ._run import BenchmarkConfig


@dataclass(frozen=True)
class ModelRecipe:
    """One model of the main job: a ``pt.tl`` class, its arguments, and what it needs to run."""

    name: str
    model: str  #: attribute of ``pt.tl``
    init: Mapping[str, Any] = field(default_factory=dict)
    #: ``fit`` argument -> :class:`BenchmarkConfig` attribute holding its value
    fit: Mapping[str, str] = field(default_factory=dict)
    #: ``"go"`` / ``"text"`` (that embedding covers the dataset), ``"torch"``, ``"perturbnet"`` (allowed here)
    needs: tuple[str, ...] = ()
    #: extra ``__init__`` arguments on data without raw counts
    init_without_counts: Mapping[str, Any] = field(default_factory=dict)

    def spec(self, cfg: BenchmarkConfig, *, counts: bool) -> Any:
        """The model spec ``cross_validate`` takes."""
        cls = getattr(tl, self.model)
        init = {**self.init, **({} if counts else self.init_without_counts)}
        if not self.fit:
            return (cls, init) if init else cls
        return cls, init, {**{arg: getattr(cfg, attr) for arg, attr in self.fit.items()}, "show_progress_bar": False}


GO, TEXT = embedding_key("go"), embedding_key("text")
#: every model of the main job, in report order
MODELS: tuple[ModelRecipe, ...] = (
    ModelRecipe("control_mean", "ControlMean"),
    ModelRecipe("noncontrol_mean", "NonControlMean"),
    ModelRecipe("crispr_informed_mean", "CrisprInformedMean"),
    ModelRecipe("random_perturbation", "RandomPerturbation"),
    ModelRecipe("additive", "Additive"),
    ModelRecipe("linear", "Linear"),
    ModelRecipe("linear_go", "Linear", {"embedding": GO}, needs=("go",)),
    ModelRecipe("knn1_go", "KNN", {"embedding": GO, "k": 1}, needs=("go",)),
    ModelRecipe("knn5_go", "KNN", {"embedding": GO, "k": 5}, needs=("go",)),
    ModelRecipe("gp_go", "GPModel", {"embedding": GO}, needs=("go", "torch")),
    ModelRecipe("knn1_text", "KNN", {"embedding": TEXT, "k": 1}, needs=("text", "torch")),
    ModelRecipe("gp_text", "GPModel", {"embedding": TEXT}, needs=("text", "torch")),
    ModelRecipe("gp_go_text", "GPModel", {"embedding": [GO, TEXT]}, needs=("go", "text", "torch")),
    ModelRecipe("stamp_go", "STAMP", {"embedding": GO}, {"max_epochs": "stamp_epochs", "lr": "stamp_lr"},
                needs=("go", "torch")),
    ModelRecipe("perturbnet_go", "PerturbNet", {"representation": "embedding", "embedding": GO, "n_blocks": 20},
                {"scvi_epochs": "scvi_epochs", "max_epochs": "perturbnet_epochs", "lr": "perturbnet_lr"},
                needs=("go", "torch", "perturbnet"), init_without_counts={"counts_layer": None, "pseudo_counts": True}),
)  # fmt: skip


def _skip_reason(need: str, cfg: BenchmarkConfig) -> str:
    if need == "go":
        return (
            cfg.extra.get("go_reason")
            or "the GO embedding covers too few of these perturbations (see the coverage note)"
        )
    if need == "text":
        return "the text embedding is not available or covers too few of these perturbations (see the coverage note)"
    if need == "torch":
        return "torch is not installed (`pip install 'perturbtools[all]'`)"
    return cfg.extra.get("perturbnet_reason") or (
        "PerturbNet switched off (`--no-perturbnet`)"
        if not cfg.perturbnet
        else "PerturbNet is run on the datasets with counts or the main CRISPRa set only (not this one)"
    )


def _has_torch() -> bool:
    from importlib.util import find_spec

    return find_spec("torch") is not None


def _models(
    cfg: BenchmarkConfig, embeddings: dict[str, pd.DataFrame], *, counts: bool, perturbnet: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """Model specs whose inputs exist, and ``{model: reason}`` for the ones skipped (never queued to crash later)."""
    have = set(embeddings) | ({"torch"} if _has_torch() else set()) | ({"perturbnet"} if perturbnet else set())
    models: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for recipe in MODELS:
        missing = [need for need in recipe.needs if need not in have]
        if missing:
            skipped[recipe.name] = _skip_reason(missing[0], cfg)
        else:
            models[recipe.name] = recipe.spec(cfg, counts=counts)
    return _select(models, skipped, cfg)


def _select(
    models: dict[str, Any], skipped: dict[str, str], cfg: BenchmarkConfig
) -> tuple[dict[str, Any], dict[str, str]]:
    wanted = cfg.extra.get("models")
    if not wanted:
        return models, skipped
    unknown = [m for m in wanted if m not in models and m not in skipped]
    if unknown:
        msg = f"Unknown model names {unknown}; choose from {sorted(set(models) | set(skipped))}."
        raise ValueError(msg)
    return {m: v for m, v in models.items() if m in wanted}, {m: r for m, r in skipped.items() if m in wanted}


#: an embedding is used on a dataset only if it covers at least this share of its perturbations
MIN_EMBEDDING_SHARE = 0.8


def embedding_share(perturbations: list[str], embedding: pd.DataFrame) -> float:
    """Share of ``perturbations`` whose every target gene has a row in ``embedding`` (0 for none)."""
    if not perturbations:
        return 0.0
    return float(np.mean([all(g in embedding.index for g in pp.parse_perturbation(p)) for p in perturbations]))


def _covered(adata, embeddings: dict[str, pd.DataFrame]) -> list[str]:
    """Perturbations every embedding covers: all models are scored on the same set."""
    perts = list(adata.uns[LABELS_KEY]["perturbations"])
    ok = []
    for p in perts:
        genes = pp.parse_perturbation(p)
        if all(g in e.index for e in embeddings.values() for g in genes):
            ok.append(p)
    return ok


def label_baselines(source) -> dict[str, Any]:
    """The label baselines of SPEC §12 (and the learned stacking of prior and source), as model specs."""
    return {
        "frequency_prior": tl.FrequencyPrior,
        "copy_source": (tl.SourceRanking, {"source": source}),
        "prior_source_combination": (tl.PriorSourceCombination, {"source": source}),
        "label_stacking": (tl.LabelStacking, {"source": source}),
    }


@dataclass(frozen=True)
class DatasetRecipe:
    """One dataset of the main job: how to load it, how to benchmark it, and which extra sections follow its CV."""

    name: str  #: name in the report and of the written h5ad
    loader: str  #: function of ``pt.data``
    loader_kwargs: Mapping[str, Any] = field(default_factory=dict)
    counts: bool = False  #: raw counts available (PerturbNet's scVI uses them)
    perturbnet: bool = True  #: PerturbNet runs here (when the run allows it)
    n_splits: int | None = None  #: folds; ``None``: the run's ``n_splits``
    #: after the CV: ``"gi"`` (genetic interactions of the doubles), ``"perturbnet_distributions"``, ``"learning_curve"``
    sections: tuple[str, ...] = ()


#: the datasets behind each ``--dataset`` name, benchmarked in this order
DATASETS: dict[str, tuple[DatasetRecipe, ...]] = {
    "devel": (
        DatasetRecipe("norman2019_k562", "perturbench_devel", {"cell_type": "k562"}, sections=("gi",)),
        *(
            DatasetRecipe(f"glioma_{line}", "perturbench_devel", {"cell_type": line}, perturbnet=False, n_splits=3)
            for line in ("A172", "T98G", "U87MG")
        ),
    ),
    "papalexi": (
        DatasetRecipe("papalexi2021_thp1", "papalexi2021_lowmoi", counts=True,
                      sections=("perturbnet_distributions", "learning_curve")),
    ),
}  # fmt: skip
#: few-shot transfer after a group's datasets: ``(source dataset, {target label: target dataset})``
FEW_SHOT: dict[str, tuple[str, dict[str, str]]] = {
    "devel": ("norman2019_k562", {line: f"glioma_{line}" for line in ("A172", "T98G", "U87MG")}),
}
#: models of the learning curve section
LEARNING_CURVE_MODELS = ("noncontrol_mean", "knn1_go", "gp_go")
LEARNING_CURVE_SIZES = (4, 8, 12, 16)
