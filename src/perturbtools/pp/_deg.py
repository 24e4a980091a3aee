"""STAMP's three subtask labels per perturbation (DEG, direction, fold change) written to ``adata.varm``."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .._keys import CONTROL, DELIMITER, PERTURBATION_KEY, label_keys
from .._perturbation_labels import parse_perturbation
from .._utils import _get_matrix, _progress, log1p_cp10k
from .._validation import (
    _as_anndata,
    _check_control,
    _check_layer,
    _check_obs_key,
    _check_unique_var_names,
    _check_values,
)
from ._deg_core import (
    LABEL_DTYPES,
    MIN_POSITIVES,
    STAT_BLOCK,
    _moments,
    collect_label_blocks,
    group_moments,
    iter_label_statistics,
)
from ._label_file import LabelFileWriter, check_label_file

if TYPE_CHECKING:
    import os

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
    normalize: bool = False,
    pval_cutoff: float = 0.01,
    fc_offset: float = 0.1,
    min_cells: int = 3,
    modality: Modality | None = None,
    modality_key: str | None = None,
    mod: str | None = None,
    condition_key: str | None = None,
    batch_key: str | None = None,
    key_added: str = "deg",
    copy: bool = False,
    chunk_size: int | None = None,
    show_progress_bar: bool | None = None,
    out: str | os.PathLike | None = None,
    perturbations_per_pass: int | None = None,
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
        Perturbations with fewer cells are skipped with a warning. At least 2 (a variance needs two cells).
    modality
        Perturbation modality of all perturbations; used by the CRISPR-informed baseline.
    modality_key
        Column of ``adata.obs`` with the modality per cell (e.g. ``"perturbation_type"``), instead of ``modality``.
    mod
        Modality of a MuData to use.
    condition_key
        Column of ``adata.obs`` with conditions (e.g. stimulated / unstimulated). Labels are computed per condition
        against that condition's control cells and written under ``f"{key_added}_{condition}"`` (one labels key per
        condition; ``adata.uns[key_added]["conditions"]`` maps condition to key). Models, CV and few-shot take one
        of those keys as ``labels_key``; transfer between conditions is ``few_shot(adata, adata,
        labels_key=..., source_labels_key=...)``.
    batch_key
        Column of ``adata.obs`` with batches (wells, lanes, donors). Each perturbation is tested against the control
        cells of the batches its own cells come from (all controls where those batches have fewer than 2);
        ``uns[key_added]["n_control_cells_matched"]`` records how many. The FC and direction use the matched control
        mean; ``var[f"{key_added}_control_mean"]`` (used by the expression metrics) stays the mean of all controls.
        See also :func:`perturbtools.pp.check_design`.
    key_added
        Prefix of every key written.
    copy
        Return a modified copy instead of writing into ``adata``.
    normalize
        ``X`` / the layer holds raw counts: log-normalise them on the fly, chunk by chunk (log1p of counts per 10,000
        per cell, as ``sc.pp.normalize_total(target_sum=1e4)`` then ``sc.pp.log1p``), never writing them back. The
        matrix is then always streamed in ``chunk_size`` rows. The labels equal those computed on the normalised
        matrix.
    chunk_size
        Rows read at a time. A backed AnnData (``anndata.read_h5ad(path, backed="r")``) or a dask array in ``X`` /
        the layer is always streamed (default 10,000 rows): memory holds one chunk plus ``2 x groups x genes``
        float64 sums, never the whole matrix, and the file is only read. Results equal the in-memory ones.
    show_progress_bar
        Progress bar over chunks when streaming (and over blocks of perturbations when writing ``out``).
    out
        Write the labels to this ``.h5ad`` file instead of into ``adata`` (which is then left unchanged), a block of
        perturbations at a time: the genes x perturbations tables (38 bytes per entry, 3 GB at 10,000 perturbations
        x 8,000 genes) are never all in memory. ``anndata.read_h5ad(out)`` gives ``var`` (genes and the control
        mean), ``varm`` and ``uns[key_added]`` equal to what the call without ``out`` writes; models take it as their
        ``adata``. The file appears only once complete. Not with ``condition_key`` or ``copy``.
    perturbations_per_pass
        Hold the float64 sums of at most this many perturbations (plus the control) at a time, reading the matrix once
        per pass: memory for the sums drops from ``16 x groups x genes`` bytes to ``16 x (perturbations_per_pass + 1)
        x genes`` (1.2 GiB to 0.6 GiB at 10,000 perturbations x 8,000 genes with 5,000 per pass), at the cost of one
        more read of the matrix per pass. With ``out`` for genome-scale screens; results are identical. The value
        checks (raw counts, negative values) judge the cells of the first pass. Not with ``batch_key``.

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
    if out is not None:
        if condition_key is not None or copy:
            msg = "`out` writes one labels file: it does not combine with `condition_key` or `copy=True`."
            raise ValueError(msg)
        check_label_file(out)
    if min_cells < 2:
        msg = f"`min_cells={min_cells}`: the Welch t-test needs at least 2 cells per perturbation; pass `min_cells>=2`."
        raise ValueError(msg)
    if condition_key is not None:
        return _deg_labels_per_condition(
            adata, perturbation_key, condition_key, key_added=key_added, copy=copy,
            kwargs={"control": control, "delimiter": delimiter, "layer": layer, "normalize": normalize, "pval_cutoff": pval_cutoff,
                    "fc_offset": fc_offset, "min_cells": min_cells, "modality": modality, "modality_key": modality_key,
                    "batch_key": batch_key},
        )  # fmt: skip
    _check_obs_key(adata, perturbation_key)
    if batch_key is not None:
        _check_obs_key(adata, batch_key)
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
    stream = {"chunk_size": chunk_size, "show_progress_bar": show_progress_bar,
              "transform": log1p_cp10k if normalize else None}  # fmt: skip
    n_cells = np.bincount(codes[codes >= 0], minlength=len(names)).astype(np.float64)
    ctrl = int(np.flatnonzero(names == control)[0])
    if n_cells[ctrl] < 2:
        msg = f"Only {int(n_cells[ctrl])} control cell(s) labelled {control!r}; the t-test needs at least 2."
        raise ValueError(msg)
    too_few = [str(p) for i, p in enumerate(names) if i != ctrl and 0 < n_cells[i] < min_cells]  # unused: dropped
    if too_few:
        warnings.warn(
            f"Skipping {len(too_few)} perturbation(s) with fewer than `min_cells={min_cells}` cells: {too_few[:10]}. "
            "Lower `min_cells` to keep them.",
            UserWarning,
            stacklevel=2,
        )
    keep = np.array([i for i, p in enumerate(names) if i != ctrl and n_cells[i] >= min_cells], dtype=int)
    if keep.size == 0:
        msg = f"No perturbation in `adata.obs[{perturbation_key!r}]` besides the control has >= {min_cells} cells."
        raise ValueError(msg)
    passes = _passes(keep, perturbations_per_pass)
    if len(passes) > 1 and batch_key is not None:
        msg = "`perturbations_per_pass` does not combine with `batch_key` (matched controls need every group at once)."
        raise ValueError(msg)
    held = [_read_pass(X, codes, len(names), passes[0], ctrl, single=len(passes) == 1, stream=stream)]
    moments, _, c = held[0]
    _check_values(
        X, where=f"`adata.{'X' if layer is None else f'layers[{layer!r}]'}`", expect_log=not normalize,
        summary=(moments.value_min, moments.value_max, moments.n_nonfinite),
    )  # fmt: skip
    mean_c, var_c, n_c = moments.mean[c].copy(), moments.var[c].copy(), moments.n[c]
    del moments  # the first pass's moments live on in `held` only until `blocks` takes them
    perts = [str(p) for p in names[keep]]
    n_p, n_control = n_cells[keep], int(n_cells[ctrl])
    mean_all_c = mean_c
    n_matched = None
    if batch_key is not None:
        mean_c, var_c, n_c, n_matched = _matched_controls(
            X, codes, len(names), adata.obs[batch_key], keep, ctrl, stream
        )
    if modality_key is not None:
        labels = names[codes]
    modalities = _modalities(adata, labels, perts, modality, modality_key)
    keys = label_keys(key_added)

    def blocks():
        """Statistics of every kept perturbation, ``STAT_BLOCK`` at a time, one read of ``X`` per pass."""
        offset = 0
        for k, block in enumerate(passes):
            m, rows, _ = (
                held.pop() if k == 0 else _read_pass(X, codes, len(names), block, ctrl, single=False, stream=stream)
            )
            for lo, hi, values in iter_label_statistics(
                m, rows, (mean_c, var_c, n_c), fc_offset=fc_offset, pval_cutoff=pval_cutoff, block=STAT_BLOCK
            ):
                yield offset + lo, offset + hi, values
            del m  # the moments of this pass (2 x groups x genes float64) are not needed past it
            offset += len(block)

    n_blocks = sum(-(-len(block) // STAT_BLOCK) for block in passes)
    n_de = np.zeros(len(perts), dtype=int)
    if out is None:
        stats = collect_label_blocks(blocks(), len(perts), X.shape[1])
        adata = adata.copy() if copy else adata
        for name, values in stats.items():
            adata.varm[getattr(keys, name)] = pd.DataFrame(values.T, index=adata.var_names, columns=perts)
        adata.var[keys.control_mean] = mean_all_c.astype(np.float32)
        n_de[:] = stats["is_de"].sum(axis=1)
    else:
        var = pd.DataFrame({keys.control_mean: mean_all_c.astype(np.float32)}, index=adata.var_names.copy())
        writer = LabelFileWriter(check_label_file(out, perts), var, perts, {n: getattr(keys, n) for n in LABEL_DTYPES})
        try:
            for lo, hi, values in _progress(blocks(), show_progress_bar=show_progress_bar, desc="writing labels",
                                            unit="block", total=n_blocks):  # fmt: skip
                writer.write(lo, values)
                n_de[lo:hi] = values["is_de"].sum(axis=1)
        except BaseException:
            writer.abort()
            raise
    uns = {
        "params": {
            "perturbation_key": perturbation_key,
            "control": control,
            "delimiter": delimiter,
            "layer": layer or "X",
            "normalize": bool(normalize),
            "pval_cutoff": pval_cutoff,
            "fc_offset": fc_offset,
            "min_cells": min_cells,
            "test": "welch_t",
            "correction": "benjamini-hochberg",
            "batch_key": batch_key,
        },
        "perturbations": perts,
        "targets": [delimiter.join(parse_perturbation(p, control=control, delimiter=delimiter)) for p in perts],
        "n_cells": n_p.astype(int),
        "n_de": n_de,
        "n_control_cells": n_control,
        **({} if n_matched is None else {"n_control_cells_matched": n_matched}),
        "modality": modalities,
    }
    if out is None:
        adata.uns[key_added] = uns
    else:
        writer.close(key_added, uns)
    _warn_few_degs(n_de, n_p, pval_cutoff, key_added)
    logger.info("added `.varm[%r]` ... `.varm[%r]` and `.uns[%r]`%s", keys.mean, keys.large_effect, key_added,
                "" if out is None else f" to {str(out)!r}")  # fmt: skip
    return adata if copy else None


def _passes(keep: np.ndarray, per_pass: int | None) -> list[np.ndarray]:
    """The kept groups split into passes of at most ``per_pass`` (one pass when ``None``)."""
    if per_pass is None or per_pass >= len(keep):
        return [keep]
    if per_pass < 1:
        msg = f"`perturbations_per_pass={per_pass}`: pass a positive number of perturbations (or None for one pass)."
        raise ValueError(msg)
    return [keep[lo : lo + per_pass] for lo in range(0, len(keep), per_pass)]


def _read_pass(X, codes, n_groups, block, ctrl, *, single: bool, stream: dict):
    """Moments from one read of ``X``: of every group when ``single``, else of ``block`` and the control only.

    Returns the moments, the rows of ``block`` in them and the row of the control.
    """
    if single:
        return group_moments(X, codes, n_groups, keep_sums=False, **stream), block, ctrl
    groups = np.append(block, ctrl)
    lut = np.full(n_groups, -1, dtype=np.int64)
    lut[groups] = np.arange(len(groups))
    sub = np.where(codes >= 0, lut[np.maximum(codes, 0)], -1)
    return group_moments(X, sub, len(groups), keep_sums=False, **stream), np.arange(len(block)), len(block)


def _warn_few_degs(n_de: np.ndarray, n_cells: np.ndarray, pval_cutoff: float, key_added: str) -> None:
    """Warn when most perturbations have almost no DEGs: their DE, direction and FC metrics will be undefined."""
    few = n_de < MIN_POSITIVES
    if few.mean() <= 0.5:
        return
    warnings.warn(
        f"{few.sum()} of {few.size} perturbations have fewer than {MIN_POSITIVES} DEGs at BH-adjusted p <= "
        f"{pval_cutoff} ({int(n_de.sum())} DEG entries in all; per-perturbation counts in "
        f"`adata.uns[{key_added!r}]['n_de']`). DE, direction and FC metrics are undefined for them. Likely causes: "
        f"few cells per perturbation (median {np.median(n_cells):.0f}) or shallow sequencing; a looser `pval_cutoff` "
        "gives more (less certain) DEGs.",
        UserWarning,
        stacklevel=3,
    )


def _matched_controls(X, codes, n_groups, batch: pd.Series, keep: np.ndarray, ctrl: int, stream: dict):
    """Control moments per perturbation from the controls of the batches that perturbation's cells come from.

    One pass of group sums over (group, batch); batches with fewer than 2 matched controls fall back to all controls.
    Returns per-perturbation control mean and variance (perturbations x genes), counts (perturbations x 1), and the
    number of matched control cells per perturbation.
    """
    bcodes = pd.Categorical(batch.astype(str)).codes.astype(np.int64)
    n_b = int(bcodes.max()) + 1
    m = group_moments(X, codes * n_b + bcodes, n_groups * n_b, **stream)
    n = m.n.reshape(n_groups, n_b)
    sums, sumsq = m.sums.reshape(n_groups, n_b, -1), m.sumsq.reshape(n_groups, n_b, -1)
    present = (n[keep] > 0).astype(float)  # perturbations x batches
    n_c, s_c, q_c = present @ n[ctrl], present @ sums[ctrl], present @ sumsq[ctrl]
    fallback = n_c < 2
    n_c[fallback], s_c[fallback], q_c[fallback] = n[ctrl].sum(), sums[ctrl].sum(axis=0), sumsq[ctrl].sum(axis=0)
    matched = _moments(n_c, s_c, q_c)
    return matched.mean, np.maximum(matched.var, 0.0), n_c[:, None], n_c.astype(int)


def _deg_labels_per_condition(adata, perturbation_key, condition_key, *, key_added, copy, kwargs):
    """Labels per condition against that condition's controls, one labels key per condition."""
    _check_obs_key(adata, condition_key)
    target = adata.copy() if copy else adata
    conditions = [str(c) for c in pd.unique(target.obs[condition_key].astype(str))]
    written = {}
    for cond in conditions:
        sub = target[(target.obs[condition_key].astype(str) == cond).to_numpy()].copy()
        key = f"{key_added}_{cond}"
        if (sub.obs[perturbation_key].astype(str) == kwargs["control"]).sum() < 2:
            warnings.warn(
                f"Condition {cond!r} of `adata.obs[{condition_key!r}]` has fewer than 2 control cells; it gets no labels.",
                UserWarning,
                stacklevel=3,
            )
            continue
        deg_labels(sub, perturbation_key, key_added=key, **kwargs)
        for field in label_keys(key):
            if field in sub.varm:
                target.varm[field] = sub.varm[field]
        target.var[label_keys(key).control_mean] = sub.var[label_keys(key).control_mean]
        target.uns[key] = sub.uns[key]
        written[cond] = key
    target.uns[key_added] = {
        "conditions": written,
        "params": {"condition_key": condition_key, "perturbation_key": perturbation_key},
    }
    logger.info("labels per condition under %s", list(written.values()))
    return target if copy else None


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
