"""Perturbation-disjoint splits, k-fold over perturbations, and seen/unseen labels of test perturbations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._keys import CONTROL, DELIMITER
from .._perturbation_labels import parse_perturbation
from .._utils import _as_rng
from .._validation import _as_anndata

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from anndata import AnnData


def _labelled_perturbations(adata: AnnData, labels_key: str) -> list[str]:
    if labels_key not in adata.uns or "perturbations" not in adata.uns[labels_key]:
        msg = f"`adata.uns[{labels_key!r}]` not found. Run `pt.pp.deg_labels(adata, key_added={labels_key!r})` first."
        raise KeyError(msg)
    return [str(p) for p in adata.uns[labels_key]["perturbations"]]


def split_perturbations(
    adata: AnnData,
    *,
    labels_key: str = "deg",
    test_size: float = 0.2,
    val_size: float = 0.1,
    rng: int | np.random.Generator | None = 0,
    key_added: str = "split",
    copy: bool = False,
) -> AnnData | None:
    """Perturbation-disjoint train / validation / test split.

    Each perturbation (single or combination) lands in exactly one set.

    Parameters
    ----------
    adata
        Annotated data labelled by :func:`perturbtools.pp.deg_labels`.
    labels_key
        Key of those labels.
    test_size, val_size
        Fractions of perturbations in the test and validation sets.
    rng
        Seed or generator; ``0`` by default so results reproduce.
    key_added
        ``adata.uns`` key to write.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    Writes ``adata.uns[key_added] = {"train": [...], "val": [...], "test": [...], "params": {...}}``.
    """
    adata = _as_anndata(adata)
    perts = _labelled_perturbations(adata, labels_key)
    seed = rng if isinstance(rng, int) else None
    order = _as_rng(rng).permutation(len(perts))
    n_test = round(test_size * len(perts))
    n_val = round(val_size * len(perts))
    if n_test + n_val >= len(perts):
        msg = f"`test_size={test_size}` and `val_size={val_size}` leave no training perturbation out of {len(perts)}."
        raise ValueError(msg)
    shuffled = [perts[i] for i in order]
    adata = adata.copy() if copy else adata
    adata.uns[key_added] = {
        "test": sorted(shuffled[:n_test]),
        "val": sorted(shuffled[n_test : n_test + n_val]),
        "train": sorted(shuffled[n_test + n_val :]),
        "params": {"labels_key": labels_key, "test_size": test_size, "val_size": val_size, "rng": seed},
    }
    return adata if copy else None


def kfold_perturbations(
    perturbations: Sequence[str], n_splits: int = 5, *, rng: int | np.random.Generator | None = 0
) -> Iterator[tuple[list[str], list[str]]]:
    """K-fold over perturbations: yields ``(train, test)`` lists; every perturbation is tested exactly once."""
    perturbations = list(perturbations)
    if not 2 <= n_splits <= len(perturbations):
        msg = f"`n_splits={n_splits}` must lie between 2 and the number of perturbations ({len(perturbations)})."
        raise ValueError(msg)
    order = _as_rng(rng).permutation(len(perturbations))
    for fold in np.array_split(order, n_splits):
        test = set(fold.tolist())
        yield (
            [perturbations[i] for i in range(len(perturbations)) if i not in test],
            [perturbations[i] for i in sorted(test)],
        )


def unseen_labels(
    perturbations: Iterable[str],
    train: Iterable[str],
    *,
    control: str = CONTROL,
    delimiter: str = DELIMITER,
) -> pd.Series:
    """How many target genes of each perturbation were never perturbed in training.

    A gene counts as seen when any training perturbation (single or combination) targets it.

    Returns
    -------
    Series indexed by perturbation with values ``"0/1 unseen"``, ``"1/1 unseen"`` (singles) and ``"0/2 unseen"``,
    ``"1/2 unseen"``, ``"2/2 unseen"`` (doubles).
    """
    seen = {g for p in train for g in parse_perturbation(p, control=control, delimiter=delimiter)}
    out = {}
    for p in perturbations:
        genes = parse_perturbation(p, control=control, delimiter=delimiter)
        out[p] = f"{sum(g not in seen for g in genes)}/{len(genes)} unseen"
    return pd.Series(out, name="unseen", dtype="category")
