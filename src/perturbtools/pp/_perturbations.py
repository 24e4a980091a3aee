"""Perturbation labels in AnnData: standardise ``obs`` labels to the package's grammar (``_perturbation_labels``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from .._keys import CONTROL, DELIMITER, PERTURBATION_KEY
from .._perturbation_labels import canonical_label, parse_perturbation
from .._validation import _as_anndata, _check_obs_key

if TYPE_CHECKING:
    from anndata import AnnData


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
