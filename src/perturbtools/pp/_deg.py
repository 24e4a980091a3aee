"""STAMP's three subtask labels per perturbation (DEG, direction, fold change) written to ``adata.varm``."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .._keys import CONTROL, DELIMITER, PERTURBATION_KEY, label_keys
from .._utils import _get_matrix
from .._validation import (
    _as_anndata,
    _check_control,
    _check_layer,
    _check_obs_key,
    _check_unique_var_names,
    _check_values,
)
from ._deg_core import bh_adjust, fold_change, group_moments, top_masks, welch_t
from ._perturbations import parse_perturbation

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

Modality = Literal["CRISPRi", "CRISPRa", "knockout"]
_MODALITY_ALIASES = {
    "crispri": "CRISPRi",
    "interference": "CRISPRi",
    "crispra": "CRISPRa",
    "activation": "CRISPRa",
    "knockout": "knockout",
    "ko": "knockout",
    "crispr": "knockout",
    "crisprko": "knockout",
    "crispr-cas9": "knockout",
}


def _normalise_modality(value: str) -> str:
    key = str(value).strip().lower()
    if key not in _MODALITY_ALIASES:
        msg = f"Unknown perturbation modality {value!r}; use one of 'CRISPRi', 'CRISPRa', 'knockout'."
        raise ValueError(msg)
    return _MODALITY_ALIASES[key]


def deg_labels(
    adata: AnnData,
    perturbation_key: str = PERTURBATION_KEY,
    *,
    control: str = CONTROL,
    delimiter: str = DELIMITER,
    layer: str | None = None,
    pval_cutoff: float = 0.01,
    fc_offset: float = 0.1,
    min_cells: int = 3,
    modality: Modality | None = None,
    modality_key: str | None = None,
    mod: str | None = None,
    key_added: str = "deg",
    copy: bool = False,
) -> AnnData | None:
    r"""STAMP subtask labels for every perturbation against control cells.

    One Welch t-test per gene and perturbation (cells of the perturbation vs control cells), computed in one pass of
    group sums over the (sparse) matrix. The scores and p-values equal
    ``scanpy.tl.rank_genes_groups(method="t-test", reference=control, use_raw=False)``.

    Parameters
    ----------
    adata
        Annotated data (cells x genes), log1p-normalised. A MuData needs ``mod``.
    perturbation_key
        Column of ``adata.obs`` with perturbation labels (``"A"``, ``"A+B"``, ``"A+ctrl"``).
    control
        Label of control cells in that column.
    delimiter
        Separator between the genes of a combination.
    layer
        Layer to use instead of ``.X``.
    pval_cutoff
        A gene is a DEG (level 1) where the BH-adjusted p-value is at most this.
    fc_offset
        Pseudo-value added to the log expression before the fold change (0.1 in STAMP).
    min_cells
        Perturbations with fewer cells are skipped with a warning.
    modality
        Perturbation modality of all perturbations; used by the CRISPR-informed baseline.
    modality_key
        Column of ``adata.obs`` with the modality per cell (e.g. ``"perturbation_type"``), instead of ``modality``.
    mod
        Modality of a MuData to use.
    key_added
        Prefix of every key written.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    Writes genes x perturbations :class:`~pandas.DataFrame` s into ``adata.varm``:

    ``{key_added}_mean``
        Mean expression of each perturbation.
    ``{key_added}_is_de``
        Level 1, bool: BH-adjusted p <= ``pval_cutoff``.
    ``{key_added}_direction``
        Level 2, int8: +1 (FC >= 1) or -1 on DEGs, 0 elsewhere.
    ``{key_added}_fc`` / ``{key_added}_logfc``
        Level 3: fold change and its log2.
    ``{key_added}_pvals`` / ``{key_added}_pvals_adj`` / ``{key_added}_scores``
        Welch p-value, BH-adjusted p-value, t-score.
    ``{key_added}_top20`` / ``_top40`` / ``_top50`` / ``_large_effect``
        Evaluation masks (top-20 by \\|t\\|; 20 highest + 20 lowest t; 50 highest t; top-50 with \\|log2 FC\\| >= 1).

    ``adata.var[f"{key_added}_control_mean"]`` holds the control mean and ``adata.uns[key_added]`` the parameters,
    perturbation names, target genes, cell counts and modality.
    """
    adata = _as_anndata(adata, mod=mod)
    _check_obs_key(adata, perturbation_key)
    _check_control(adata, perturbation_key, control)
    _check_layer(adata, layer)
    _check_unique_var_names(adata)
    if modality_key is not None:
        _check_obs_key(adata, modality_key)
    X = _get_matrix(adata, layer)
    column = adata.obs[perturbation_key]
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(str).astype("category")
    names = np.asarray(column.cat.categories.astype(str))
    codes = column.cat.codes.to_numpy(np.int64)
    labels = None  # built lazily (only modality_key needs per-cell labels)
    moments = group_moments(X, codes, len(names))
    _check_values(
        X, where=f"`adata.{'X' if layer is None else f'layers[{layer!r}]'}`",
        summary=(moments.value_min, moments.value_max, moments.n_nonfinite),
    )  # fmt: skip
    ctrl = int(np.flatnonzero(names == control)[0])
    too_few = [
        str(p) for i, p in enumerate(names) if i != ctrl and 0 < moments.n[i] < min_cells
    ]  # unused categories: dropped
    if moments.n[ctrl] < 2:
        msg = f"Only {int(moments.n[ctrl])} control cell(s) labelled {control!r}; the t-test needs at least 2."
        raise ValueError(msg)
    if too_few:
        warnings.warn(
            f"Skipping {len(too_few)} perturbation(s) with fewer than `min_cells={min_cells}` cells: {too_few[:10]}. "
            "Lower `min_cells` to keep them.",
            UserWarning,
            stacklevel=2,
        )
    keep = np.array([i for i, p in enumerate(names) if i != ctrl and moments.n[i] >= min_cells], dtype=int)
    if keep.size == 0:
        msg = f"No perturbation in `adata.obs[{perturbation_key!r}]` besides the control has >= {min_cells} cells."
        raise ValueError(msg)
    perts = [str(p) for p in names[keep]]
    mean_p, var_p, n_p = moments.mean[keep], moments.var[keep], moments.n[keep]
    mean_c, var_c, n_c = moments.mean[ctrl], moments.var[ctrl], moments.n[ctrl]

    scores, pvals = welch_t(mean_p, var_p, n_p[:, None], mean_c, var_c, n_c)
    pvals_adj = bh_adjust(pvals)
    with np.errstate(over="ignore"):  # raw counts (already warned about) overflow expm1
        fc = fold_change(mean_p, mean_c, offset=fc_offset)
        logfc = np.log2(fc)
    is_de = pvals_adj <= pval_cutoff
    direction = np.where(is_de, np.where(fc >= 1, 1, -1), 0).astype(np.int8)
    top20, top40, top50, large = top_masks(scores, logfc)

    if modality_key is not None:
        labels = names[codes]
    modalities = _modalities(adata, labels, perts, modality, modality_key)
    adata = adata.copy() if copy else adata
    keys = label_keys(key_added)
    with np.errstate(over="ignore"):
        fc32 = fc.astype(np.float32)
    frames = {
        keys.mean: mean_p.astype(np.float32),
        keys.is_de: is_de,
        keys.direction: direction,
        keys.fc: fc32,
        keys.logfc: logfc.astype(np.float32),
        keys.pvals: pvals,
        keys.pvals_adj: pvals_adj,
        keys.scores: scores.astype(np.float32),
        keys.top20: top20,
        keys.top40: top40,
        keys.top50: top50,
        keys.large_effect: large,
    }
    for key, values in frames.items():
        adata.varm[key] = pd.DataFrame(values.T, index=adata.var_names, columns=perts)
    adata.var[keys.control_mean] = mean_c.astype(np.float32)
    adata.uns[key_added] = {
        "params": {
            "perturbation_key": perturbation_key,
            "control": control,
            "delimiter": delimiter,
            "layer": layer or "X",
            "pval_cutoff": pval_cutoff,
            "fc_offset": fc_offset,
            "min_cells": min_cells,
            "test": "welch_t",
            "correction": "benjamini-hochberg",
        },
        "perturbations": perts,
        "targets": [delimiter.join(parse_perturbation(p, control=control, delimiter=delimiter)) for p in perts],
        "n_cells": n_p.astype(int),
        "n_control_cells": int(n_c),
        "modality": modalities,
    }
    logger.info("added `.varm[%r]` ... `.varm[%r]` and `.uns[%r]`", keys.mean, keys.large_effect, key_added)
    return adata if copy else None


def _modalities(adata, labels, perts, modality, modality_key) -> list[str]:
    if modality is not None and modality_key is not None:
        msg = "Pass either `modality` or `modality_key`, not both."
        raise ValueError(msg)
    if modality_key is None:
        value = "unknown" if modality is None else _normalise_modality(modality)
        return [value] * len(perts)
    col = adata.obs[modality_key].astype(str).to_numpy()
    out = []
    for p in perts:
        values, counts = np.unique(col[labels == p], return_counts=True)
        out.append(_normalise_modality(values[np.argmax(counts)]))
    return out
