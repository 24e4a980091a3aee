"""Checks of a screen's design and input: guides vs targets, raw counts, controls confounded with batches."""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._keys import CONTROL, PERTURBATION_KEY

if TYPE_CHECKING:
    from anndata import AnnData

#: default guide-label pattern: the target gene, then ``_`` and a guide number (``ZAP70_1``, ``ZAP70_sg2``) or a
#: lower-case ``g`` and a number (``STAT2g2``, as in Papalexi 2021). ``-`` is not a separator because gene symbols
#: contain it (``NKX2-1``, ``HLA-A``); case matters (human ``SMG1`` is a gene). Pass ``pattern=`` for other schemes.
GUIDE_PATTERN = r"^(?P<target>.+?)(?:_(?:sg|g|guide)?\d+|g\d+)$"


def guide_targets(labels: pd.Series | list[str], *, pattern: str = GUIDE_PATTERN, control: str = CONTROL) -> pd.Series:
    """Target gene of each guide label (``"ZAP70_1" -> "ZAP70"``); labels that do not match are kept as they are."""
    rx = re.compile(pattern)
    out = {}
    for label in pd.unique(pd.Series(labels).astype(str)):
        m = rx.match(label) if label != control else None
        out[label] = next((g for g in m.groups() if g), label) if m else label
    return pd.Series(out, name="target")


def looks_guide_level(labels: pd.Series | list[str], *, pattern: str = GUIDE_PATTERN, control: str = CONTROL) -> bool:
    """Whether most labels look like guides of fewer targets (several guide labels per target)."""
    targets = guide_targets(labels, pattern=pattern, control=control)
    targets = targets[targets.index != control]
    if targets.empty:
        return False
    changed = (targets.index != targets.to_numpy()).mean()
    return bool(changed > 0.5 and targets.nunique() < len(targets))


def guides_per_target(
    labels: pd.Series | list[str], *, pattern: str = GUIDE_PATTERN, control: str = CONTROL
) -> pd.DataFrame:
    """The guides of each target gene: DataFrame indexed by target with ``n_guides`` and the guide labels."""
    mapping = guide_targets(labels, pattern=pattern, control=control)
    guides = mapping[mapping != control]
    table = pd.Series(guides.index, index=guides.to_numpy()).groupby(level=0).apply(list)
    return pd.DataFrame({"n_guides": table.map(len), "guides": table.map(", ".join)}).rename_axis("target")


def collapse_guides(
    adata: AnnData,
    guide_key: str,
    *,
    pattern: str = GUIDE_PATTERN,
    control: str = CONTROL,
    key_added: str = PERTURBATION_KEY,
    copy: bool = False,
) -> AnnData | None:
    """Write each cell's target gene (guides collapsed) to ``adata.obs[key_added]``.

    :func:`guides_per_target` lists which guides were collapsed into each target.

    Returns
    -------
    ``None``, or with ``copy=True`` an annotated copy of ``adata``.
    """
    adata = adata.copy() if copy else adata
    labels = adata.obs[guide_key].astype(str)
    adata.obs[key_added] = pd.Categorical(labels.map(guide_targets(labels, pattern=pattern, control=control)))
    return adata if copy else None


def looks_like_counts(X, *, n_rows: int = 500) -> tuple[bool, str]:
    """Whether ``X`` holds raw counts: integer values on a sample of rows, or a maximum above 50.

    Returns ``(is_counts, reason)``.
    """
    rows = X[: min(n_rows, X.shape[0])]
    values = rows.data if hasattr(rows, "data") and not isinstance(rows, np.ndarray) else np.asarray(rows).ravel()
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return False, "no values"
    if values.max() > 50:
        return True, f"maximum {values.max():.0f} > 50"
    nonzero = values[values != 0]
    if nonzero.size and np.all(nonzero == np.round(nonzero)) and nonzero.max() > 1:
        return True, "all values are integers"
    return False, f"non-integer values up to {values.max():.2f}"


def check_design(
    adata: AnnData,
    batch_key: str,
    *,
    perturbation_key: str = PERTURBATION_KEY,
    control: str = CONTROL,
    warn: bool = True,
) -> pd.DataFrame:
    """Whether control cells share batches (wells, lanes, donors) with perturbed cells.

    Control cells from batches without perturbed cells confound the perturbation with the batch: a perturbation's
    "effect" then includes the batch effect, which makes the non-control mean look strong. Warns, naming the key,
    when no control cell shares a batch with a perturbed cell, or when some batches have controls only.

    Returns
    -------
    DataFrame per batch: ``n_control``, ``n_perturbed``.
    """
    if batch_key not in adata.obs:
        msg = f"`adata.obs[{batch_key!r}]` not found; columns are {list(adata.obs.columns)}."
        raise KeyError(msg)
    is_ctrl = (adata.obs[perturbation_key].astype(str) == control).to_numpy()
    batch = adata.obs[batch_key].astype(str).to_numpy()
    table = (
        pd.DataFrame({"batch": batch, "control": is_ctrl})
        .groupby("batch")["control"]
        .agg(n_control="sum", n_perturbed=lambda c: int((~c).sum()))
    )
    shared = table[(table["n_control"] > 0) & (table["n_perturbed"] > 0)]
    if warn and shared.empty:
        warnings.warn(
            f"No control cell shares a batch of `adata.obs[{batch_key!r}]` with a perturbed cell: perturbation and "
            "batch are confounded, so every effect includes a batch effect (and the non-control mean looks strong). "
            "Compare within batches or correct the batch first.",
            UserWarning,
            stacklevel=2,
        )
    elif warn and (ctrl_only := table[(table["n_control"] > 0) & (table["n_perturbed"] == 0)]).shape[0]:
        warnings.warn(
            f"{len(ctrl_only)} batch(es) of `adata.obs[{batch_key!r}]` hold control cells only "
            f"({list(ctrl_only.index[:5])}); their controls are not matched to any perturbed cell.",
            UserWarning,
            stacklevel=2,
        )
    return table


def guide_agreement(
    adata: AnnData,
    guide_key: str,
    *,
    target_key: str = PERTURBATION_KEY,
    control: str = CONTROL,
    layer: str | None = None,
    min_cells: int = 5,
) -> pd.DataFrame:
    """Agreement of the guides of each target: mean pairwise Pearson correlation of their deltas.

    A guide's delta is its cells' mean minus the control mean over all genes. Guides of one target that disagree point to off-target effects, weak guides or too few cells.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised.
    guide_key
        ``obs`` column of guide labels.
    target_key
        ``obs`` column of the target of each cell (e.g. written by :func:`collapse_guides`).
    control
        Control label in ``target_key``.
    layer
        Layer to read instead of ``X``.
    min_cells
        Guides with fewer cells are left out.

    Returns
    -------
    DataFrame per target with two or more guides: ``n_guides``, ``min_cells`` (of its guides), ``mean_pearson``
    (mean over guide pairs of the Pearson correlation of their deltas).
    """
    X = adata.X if layer is None else adata.layers[layer]
    guides = adata.obs[guide_key].astype(str).to_numpy()
    targets = adata.obs[target_key].astype(str).to_numpy()

    def mean_of(mask):
        sub = X[mask]
        return np.asarray(sub.mean(axis=0)).ravel().astype(np.float64)

    ctrl = mean_of(targets == control)
    rows = {}
    for target in pd.unique(targets[targets != control]):
        names = [g for g in pd.unique(guides[targets == target]) if (guides == g).sum() >= min_cells]
        if len(names) < 2:
            continue
        deltas = np.stack([mean_of(guides == g) - ctrl for g in names])
        corr = np.corrcoef(deltas)
        pairs = corr[np.triu_indices(len(names), k=1)]
        rows[target] = {
            "n_guides": len(names),
            "min_cells": int(min((guides == g).sum() for g in names)),
            "mean_pearson": float(np.nanmean(pairs)),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("target")
