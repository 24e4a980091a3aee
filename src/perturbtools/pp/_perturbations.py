"""Parsing of perturbation labels (``"A"``, ``"A+B"``, GEARS-style ``"A+ctrl"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._keys import CONTROL, DELIMITER, PERTURBATION_KEY
from .._validation import _as_anndata, _check_obs_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from anndata import AnnData

_CONTROL_TOKENS = ("ctrl", "control", "non-targeting", "NT", "")


def parse_perturbation(
    label: str, *, control: str = CONTROL, delimiter: str = DELIMITER, control_tokens: Iterable[str] = _CONTROL_TOKENS
) -> tuple[str, ...]:
    """Target genes of one perturbation label.

    ``"A+B"`` gives ``("A", "B")``; ``"A+ctrl"`` and ``"ctrl+A"`` give ``("A",)``; the control gives ``()``.

    Parameters
    ----------
    label
        Perturbation label.
    control
        Label of control cells.
    delimiter
        Separator between genes of a combination.
    control_tokens
        Parts that stand for "no gene" in GEARS-style labels.

    Returns
    -------
    Target genes in the order written.
    """
    label = str(label)
    if label == control:
        return ()
    tokens = {control, *control_tokens}
    return tuple(part for part in label.split(delimiter) if part.strip() not in tokens)


def canonical_label(genes: Sequence[str], *, control: str = CONTROL, delimiter: str = DELIMITER) -> str:
    """Canonical label of a gene set: sorted genes joined by ``delimiter``; the control for no genes."""
    return delimiter.join(sorted(genes)) if len(genes) else control


def perturbation_genes(
    perturbations: Iterable[str], *, control: str = CONTROL, delimiter: str = DELIMITER
) -> dict[str, tuple[str, ...]]:
    """Map each perturbation label to its target genes."""
    return {p: parse_perturbation(p, control=control, delimiter=delimiter) for p in perturbations}


def standardize_perturbations(
    adata: AnnData,
    perturbation_key: str = PERTURBATION_KEY,
    *,
    control: str = CONTROL,
    delimiter: str = DELIMITER,
    key_added: str = PERTURBATION_KEY,
    copy: bool = False,
) -> AnnData | None:
    """Rewrite perturbation labels to one canonical form.

    ``"A+ctrl"`` becomes ``"A"``, ``"B+A"`` becomes ``"A+B"`` and the control label becomes ``"control"``, so every
    default of perturbtools works without arguments.

    Parameters
    ----------
    adata
        Annotated data (cells x genes).
    perturbation_key
        Column of ``adata.obs`` with the labels to read.
    control
        Control label in that column.
    delimiter
        Separator between genes of a combination in that column.
    key_added
        Column of ``adata.obs`` to write (categorical).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    Writes ``adata.obs[key_added]``; returns the copy if ``copy=True``.
    """
    adata = _as_anndata(adata)
    _check_obs_key(adata, perturbation_key)
    adata = adata.copy() if copy else adata
    values = adata.obs[perturbation_key].astype(str)
    mapping = {
        v: canonical_label(parse_perturbation(v, control=control, delimiter=delimiter), control=CONTROL)
        for v in pd.unique(values)
    }
    adata.obs[key_added] = pd.Categorical(values.map(mapping))
    return adata if copy else None


def n_targets(perturbations: Iterable[str], *, control: str = CONTROL, delimiter: str = DELIMITER) -> np.ndarray:
    """Number of target genes of each perturbation."""
    return np.array([len(parse_perturbation(p, control=control, delimiter=delimiter)) for p in perturbations])
