"""A user's own screen for the main job: validate, standardise, split by condition, and say what will run."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import pp
from .._keys import CONTROL, PERTURBATION_KEY
from ..pp._design import check_design, collapse_guides, guides_per_target, looks_guide_level, looks_like_counts

logger = logging.getLogger(__name__)

FILE_HELP = """\
What the h5ad file must contain:
  obs[PERTURBATION_KEY]  one label per cell: a target gene ("ZAP70"), a combination ("A+B"), or the control label;
                         guide-level labels ("ZAP70_1") are collapsed to targets with --collapse-guides
  X or a layer           log-normalised expression (log1p CP10k) or raw counts (detected and log-normalised, counts
                         kept for PerturbNet)
optional: obs[MODALITY_KEY] (CRISPRi / CRISPRa / knockout per cell), obs[CONDITION_KEY] (e.g. stimulated /
unstimulated: benchmarked per condition against that condition's controls), obs[BATCH_KEY] (wells or lanes: the
design check warns when controls share no batch with perturbed cells)."""


@dataclass
class UserFileOptions:
    """How to read a user's screen (the command line's options)."""

    perturbation_key: str = PERTURBATION_KEY
    control: str = CONTROL
    delimiter: str = "+"
    modality: str | None = None
    modality_key: str | None = None
    condition_key: str | None = None
    batch_key: str | None = None
    counts_layer: str | None = None
    collapse_guides: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class PreparedScreen:
    """A screen ready for the main job: one AnnData per condition, with what was found and done."""

    datasets: dict[str, Any]
    counts: bool
    notes: list[str]
    guides: pd.DataFrame | None = None
    design: pd.DataFrame | None = None


def _fail(msg: str) -> None:
    raise ValueError(msg)


def prepare_screen(path: str | Path, opts: UserFileOptions, *, backed: bool = False) -> PreparedScreen:
    """Read, validate and standardise a user's screen; clear errors name the option to change."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        _fail(f"{path} does not exist.")
    adata = ad.read_h5ad(path, backed="r" if backed else None)
    obs = adata.obs
    notes: list[str] = []
    if opts.perturbation_key not in obs:
        candidates = [c for c in obs.columns if obs[c].dtype.name in ("category", "object")]
        _fail(
            f"`obs[{opts.perturbation_key!r}]` not found in {path.name}. Pass `--perturbation-key` with the column of "
            f"perturbation labels; text columns here: {candidates[:15]}."
        )
    for key, flag in (
        (opts.modality_key, "--modality-key"),
        (opts.condition_key, "--condition-key"),
        (opts.batch_key, "--batch-key"),
    ):
        if key is not None and key not in obs:
            _fail(f"`obs[{key!r}]` ({flag}) not found in {path.name}; columns: {list(obs.columns)[:20]}.")
    labels = obs[opts.perturbation_key]
    if labels.isna().any():
        _fail(
            f"{int(labels.isna().sum())} cells have no label in `obs[{opts.perturbation_key!r}]` (NaN); drop or label "
            "them first."
        )
    labels = labels.astype(str)
    if opts.collapse_guides:
        from ..pp._design import guide_targets

        labels = labels.map(guide_targets(labels, control=opts.control))
    if opts.control not in set(labels):
        common = labels.value_counts().index[:8].tolist()
        what = "targets of" if opts.collapse_guides else ""
        _fail(
            f"Control label {opts.control!r} not among the {what} labels of `obs[{opts.perturbation_key!r}]`; pass `--control`. Most common: {common}."
        )
    if backed:
        return PreparedScreen({}, False, notes)
    adata = adata.to_memory() if getattr(adata, "isbacked", False) else adata
    guides = None
    if opts.collapse_guides:
        collapse_guides(adata, opts.perturbation_key, control=opts.control, key_added="_target")
        guides = guides_per_target(adata.obs[opts.perturbation_key].astype(str), control=opts.control)
        notes.append(f"Guides collapsed to targets: {int(guides['n_guides'].sum())} guides -> {len(guides)} targets.")
        source_key = "_target"
    else:
        if looks_guide_level(labels, control=opts.control):
            notes.append(
                f"`obs[{opts.perturbation_key!r}]` looks guide-level (e.g. {labels[labels != opts.control].iloc[0]!r}): "
                "each guide is benchmarked as its own perturbation. Pass `--collapse-guides` to benchmark targets."
            )
        source_key = opts.perturbation_key
    counts = False
    if opts.counts_layer is not None:
        if opts.counts_layer not in adata.layers:
            _fail(f"`layers[{opts.counts_layer!r}]` (--counts-layer) not found; layers: {list(adata.layers)}.")
        adata.layers["counts"] = adata.layers[opts.counts_layer]
        counts = True
    is_counts, why = looks_like_counts(adata.X)
    if is_counts:
        from .._utils import log_normalise

        log_normalise(adata)  # counts -> layers['counts'], X = log1p(CP10k)
        counts = True
        notes.append(
            f"`X` holds raw counts ({why}): log-normalised (log1p CP10k) for labels and models; counts kept for PerturbNet."
        )
    pp.standardize_perturbations(adata, source_key, control=opts.control, delimiter=opts.delimiter)
    if guides is not None:  # agreement of the guides of each target, on the log-normalised data
        agreement = pp.guide_agreement(adata, opts.perturbation_key, target_key=PERTURBATION_KEY)
        guides = guides.join(agreement[["mean_pearson"]].rename(columns={"mean_pearson": "guide_agreement_pearson"}))
    design = None
    if opts.batch_key is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            design = check_design(adata, opts.batch_key)
        notes += [f"Design check: {w.message}" for w in caught]
    if opts.condition_key is None:
        datasets = {path.stem: adata}
    else:
        datasets = {}
        for cond in pd.unique(adata.obs[opts.condition_key].astype(str)):
            sub = adata[(adata.obs[opts.condition_key].astype(str) == cond).to_numpy()].copy()
            if (sub.obs[PERTURBATION_KEY] == CONTROL).sum() == 0:
                notes.append(f"Condition {cond!r} has no control cells and is skipped.")
                continue
            datasets[f"{path.stem}_{cond}"] = sub
        notes.append(
            f"Benchmarked per condition of `obs[{opts.condition_key!r}]` ({', '.join(datasets)}), each against its own "
            "control cells."
        )
    return PreparedScreen(datasets, counts, notes, guides, design)


def plan(name: str, adata: Any, *, models: dict[str, Any], skipped: dict[str, str], n_splits: int) -> str:
    """What the main job will run on one prepared dataset, with a rough time estimate."""
    perts = adata.obs[PERTURBATION_KEY].astype(str)
    n_pert = perts[perts != CONTROL].nunique()
    n_ctrl = int((perts == CONTROL).sum())
    seconds = estimate_seconds(adata.n_obs, adata.n_vars, n_pert, list(models), n_splits)
    lines = [
        f"{name}: {adata.n_obs} cells x {adata.n_vars} genes, {n_pert} perturbations, {n_ctrl} control cells",
        f"  will run ({n_splits}-fold CV, about {seconds:.0f} s on 2 CPU cores): {', '.join(models)}",
    ]
    lines += [f"  skipped {m}: {reason}" for m, reason in skipped.items()]
    return "\n".join(lines)


#: rough CPU seconds per fold, from the committed real-data runs (a guide for the time estimate, not a promise)
_COST = {"stamp": 20.0, "gp": 3.0, "perturbnet": 120.0, "linear": 0.5, "knn": 0.2}


def estimate_seconds(n_cells: int, n_genes: int, n_perturbations: int, models: list[str], n_splits: int) -> float:
    """Rough time of the CV section: per-fold cost per model family, scaled by genes and perturbations."""
    scale = max(n_genes / 500, 0.2) * max(n_perturbations / 30, 0.3)
    total = 0.0
    for m in models:
        family = next((f for f in _COST if m.startswith(f)), None)
        per_fold = _COST.get(family, 0.1) * (n_cells / 20_000 if family == "perturbnet" else 1.0)
        total += per_fold * n_splits * scale
    return total + 2.0 * n_splits
