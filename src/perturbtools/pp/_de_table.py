"""Labels from published differential-expression results (tables or ranked gene sets), without cells."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from .._keys import CONTROL, DELIMITER, label_keys
from .._perturbation_labels import parse_perturbation
from ._deg_core import top_masks

logger = logging.getLogger(__name__)

#: column names recognised in DE tables, first match wins (scanpy ``rank_genes_groups_df``, DESeq2, edgeR, limma,
#: Seurat ``FindMarkers``)
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "perturbation": ("perturbation", "group", "contrast", "condition", "target", "knockdown"),
    "gene": ("gene", "names", "gene_symbol", "symbol", "feature", "gene_name", "gene_id"),
    "logfc": ("log2FoldChange", "logfoldchanges", "logFC", "log2fc", "avg_log2FC", "log2_fold_change"),
    "pvals_adj": ("padj", "pvals_adj", "FDR", "adj.P.Val", "p_val_adj", "qvalue", "q_value"),
    "stat": ("stat", "scores", "t", "statistic", "z", "F", "LR"),
    "rank": ("rank",),
    "direction": ("direction",),
}


def _find(table: pd.DataFrame, field: str, given: str | None) -> str | None:
    if given is not None:
        if given not in table.columns:
            msg = f"Column {given!r} (for {field}) is not in the table; columns are {list(table.columns)}."
            raise KeyError(msg)
        return given
    return next((c for c in COLUMN_ALIASES[field] if c in table.columns), None)


def _sets_to_table(sets: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    rows = [(str(p), str(g), r + 1) for p, genes in sets.items() for r, g in enumerate(genes)]
    return pd.DataFrame(rows, columns=["perturbation", "gene", "rank"])


def labels_from_de_table(
    table: pd.DataFrame | Mapping[str, Sequence[str]],
    *,
    genes: Sequence[str] | None = None,
    perturbation_col: str | None = None,
    gene_col: str | None = None,
    logfc_col: str | None = None,
    pvals_adj_col: str | None = None,
    stat_col: str | None = None,
    rank_col: str | None = None,
    direction_col: str | None = None,
    significant: Literal["listed", "pvals_adj"] | None = None,
    pval_cutoff: float = 0.01,
    direction: Literal["up", "down"] | None = None,
    control: str = CONTROL,
    delimiter: str = DELIMITER,
    modality: str = "unknown",
    key_added: str = "deg",
) -> ad.AnnData:
    """Labels from published DE results: the structure :func:`deg_labels` writes, on an AnnData with no cells.

    Accepts a long table (one row per perturbation and gene) as exported by scanpy
    (``sc.get.rank_genes_groups_df(adata, group=None)``: ``group, names, scores, logfoldchanges, pvals,
    pvals_adj``), DESeq2 (``log2FoldChange, stat, pvalue, padj``), edgeR (``logFC, FDR``) or limma, or a dict of
    ranked gene sets ``{perturbation: [gene, ...]}`` (most changed first). Columns are found by the names in
    ``COLUMN_ALIASES`` unless given.

    What is derived from what (nothing is invented):

    - DE mask: ``pvals_adj <= pval_cutoff`` when adjusted p-values are given (``significant="pvals_adj"``, the
      default then); otherwise every listed gene is a DEG (``significant="listed"``, the default for gene sets and
      for tables without adjusted p-values). Genes of the universe not listed for a perturbation are not DEGs.
    - direction: the sign of ``logfc`` (+1 for ``logfc >= 0``, as ``fc >= 1`` in :func:`deg_labels`; 0 for a DEG
      whose ``logfc`` is missing), or a ``direction`` column with up/down or +1/-1, else the ``direction`` argument
      when every listed gene went one way. Without any of them the direction subtask is undefined.
    - fold change: ``2 ** logfc`` where a log2 fold change is given; else undefined (NaN).
    - scores: ``stat``, else ``logfc``, else minus the rank; they set the top-20/40/50 masks. Unlisted genes score
      below every listed one.
    - means: undefined (no cells): expression metrics and models that learn from expression cannot be used.

    Undefined subtasks are recorded in ``uns[key_added]['subtasks']`` and reported as undefined by the metrics.

    Parameters
    ----------
    table
        Long DE table or ``{perturbation: ranked genes}``.
    genes
        Gene universe (``var_names``), default: every gene in the table.
    perturbation_col, gene_col, logfc_col, pvals_adj_col, stat_col, rank_col, direction_col
        Column names, if not the recognised ones.
    significant
        Which rows are DEGs (see above).
    pval_cutoff
        Adjusted p-value cutoff with ``significant="pvals_adj"``.
    direction
        Direction of every listed gene when the table has none (e.g. ``"up"`` for up-regulated gene sets). Only
        used when DEGs exist in one direction only: the direction subtask stays undefined then (nothing to rank).
    control, delimiter
        Label grammar of the perturbations (``"A+B"``).
    modality
        CRISPRi / CRISPRa / knockout of every perturbation, if known.
    key_added
        Prefix of the keys written.

    Returns
    -------
    AnnData with 0 cells and the genes as ``var``: ``varm[f"{key_added}_is_de"]``, ``_direction``, ``_fc``,
    ``_logfc``, ``_pvals_adj``, ``_scores``, ``_top20``, ``_top40``, ``_top50``, ``_large_effect``, ``_mean``
    (NaN), ``_pvals`` (NaN) as genes x perturbations frames, ``var[f"{key_added}_control_mean"]`` (NaN) and
    ``uns[key_added]`` (params, perturbations, ``subtasks``, ``n_de``).
    """
    frame = _sets_to_table(table) if isinstance(table, Mapping) else pd.DataFrame(table)
    pcol = _find(frame, "perturbation", perturbation_col)
    gcol = _find(frame, "gene", gene_col)
    if pcol is None or gcol is None:
        msg = (
            f"The table needs a perturbation and a gene column (found {pcol!r}, {gcol!r} among {list(frame.columns)}). "
            "Pass `perturbation_col=` and `gene_col=`."
        )
        raise KeyError(msg)
    lcol, qcol = _find(frame, "logfc", logfc_col), _find(frame, "pvals_adj", pvals_adj_col)
    scol, rcol, dcol = (
        _find(frame, "stat", stat_col),
        _find(frame, "rank", rank_col),
        _find(frame, "direction", direction_col),
    )
    if significant is None:
        significant = "pvals_adj" if qcol is not None else "listed"
    if significant == "pvals_adj" and qcol is None:
        msg = "`significant='pvals_adj'` but the table has no adjusted p-value column; pass `pvals_adj_col=`."
        raise KeyError(msg)
    frame = frame.dropna(subset=[pcol, gcol])
    frame = frame.assign(**{pcol: frame[pcol].astype(str), gcol: frame[gcol].astype(str)})
    if frame.duplicated([pcol, gcol]).any():
        dup = frame[frame.duplicated([pcol, gcol], keep=False)].head(3)[[pcol, gcol]].to_numpy().tolist()
        msg = f"The table lists some (perturbation, gene) pairs twice, e.g. {dup}; keep one row per pair."
        raise ValueError(msg)
    perts = [p for p in dict.fromkeys(frame[pcol]) if p != control]
    universe = pd.Index(list(dict.fromkeys(genes if genes is not None else frame[gcol])), dtype=str)
    outside = set(frame[gcol]) - set(universe)
    if outside:
        logger.warning("%d genes of the table are outside `genes` and are ignored.", len(outside))
        frame = frame[frame[gcol].isin(universe)]
    n_p, n_g = len(perts), len(universe)
    row = pd.Index(perts).get_indexer(frame[pcol])
    col = universe.get_indexer(frame[gcol])
    keep = row >= 0
    row, col, frame = row[keep], col[keep], frame[keep]

    def dense(values, fill=np.nan, dtype=np.float64):
        out = np.full((n_p, n_g), fill, dtype=dtype)
        out[row, col] = values
        return out

    listed = dense(True, False, bool)
    padj = dense(frame[qcol].to_numpy(np.float64)) if qcol else np.full((n_p, n_g), np.nan)
    is_de = listed if significant == "listed" else (padj <= pval_cutoff)
    logfc = dense(frame[lcol].to_numpy(np.float64)) if lcol else np.full((n_p, n_g), np.nan)
    sign = np.zeros((n_p, n_g), dtype=np.int8)
    if lcol:
        # a log2 FC of 0 goes up (FC >= 1, as in deg_labels); a missing one leaves the direction unknown (0)
        sign = np.where(logfc >= 0, 1, np.where(logfc < 0, -1, 0)).astype(np.int8)
    elif dcol:
        raw = frame[dcol].astype(str).str.lower().map({"up": 1, "+1": 1, "1": 1, "down": -1, "-1": -1})
        sign = dense(raw.fillna(0).to_numpy(), 0, np.int8)
    elif direction is not None:
        sign = np.where(listed, 1 if direction == "up" else -1, 0).astype(np.int8)
    direction_arr = np.where(is_de, sign, 0).astype(np.int8)
    up, down = (direction_arr > 0).sum(), (direction_arr < 0).sum()
    has_direction = bool((lcol or dcol) and up > 0 and down > 0)
    if scol:
        scores = dense(frame[scol].to_numpy(np.float64))
    elif lcol:
        scores = logfc.copy()
    else:
        ranks = (
            frame[rcol].to_numpy(np.float64) if rcol else frame.groupby(pcol, sort=False).cumcount().to_numpy() + 1.0
        )
        scores = dense(-ranks)
    floor = np.nanmin(scores) - 1 if np.isfinite(scores).any() else -1.0
    scores = np.where(np.isnan(scores), floor, scores)
    fc = 2.0**logfc
    top20, top40, top50, large = top_masks(scores, np.nan_to_num(logfc))

    adata = ad.AnnData(obs=pd.DataFrame(index=pd.Index([], dtype=str)), var=pd.DataFrame(index=universe))
    keys = label_keys(key_added)
    frames = {
        keys.mean: np.full((n_p, n_g), np.nan, np.float32),
        keys.is_de: is_de,
        keys.direction: direction_arr,
        keys.fc: fc.astype(np.float32),
        keys.logfc: logfc.astype(np.float32),
        keys.pvals: np.full((n_p, n_g), np.nan),
        keys.pvals_adj: padj,
        keys.scores: scores.astype(np.float32),
        keys.top20: top20,
        keys.top40: top40,
        keys.top50: top50,
        keys.large_effect: large,
    }
    for key, values in frames.items():
        adata.varm[key] = pd.DataFrame(values.T, index=universe, columns=perts)
    adata.var[keys.control_mean] = np.full(n_g, np.nan, np.float32)
    subtasks = {"expression": False, "de": True, "direction": has_direction, "fc": bool(lcol)}
    adata.uns[key_added] = {
        "params": {
            "source": "de_table",
            "control": control,
            "delimiter": delimiter,
            "significant": significant,
            "pval_cutoff": pval_cutoff,
            "fc_offset": 0.0,
            "columns": {
                k: v
                for k, v in {
                    "perturbation": pcol,
                    "gene": gcol,
                    "logfc": lcol,
                    "pvals_adj": qcol,
                    "stat": scol,
                    "rank": rcol,
                    "direction": dcol,
                }.items()
                if v
            },
        },
        "perturbations": perts,
        "targets": [delimiter.join(parse_perturbation(p, control=control, delimiter=delimiter)) for p in perts],
        "n_cells": np.zeros(n_p, dtype=int),
        "n_control_cells": 0,
        "modality": [modality] * n_p,
        "subtasks": subtasks,
        "n_de": is_de.sum(axis=1).astype(int),
    }
    undefined = [k for k, v in subtasks.items() if not v]
    logger.info("labels of %d perturbations x %d genes from a DE table; undefined: %s", n_p, n_g, undefined)
    return adata
