"""Gene embeddings: attach, resolve, check coverage, and average over the targets of a perturbation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._keys import CONTROL, DELIMITER
from .._perturbation_labels import parse_perturbation
from .._validation import _as_anndata

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)


def add_gene_embedding(
    adata: AnnData, embedding: pd.DataFrame, *, key_added: str = "gene_emb", copy: bool = False
) -> AnnData | None:
    """Attach a genes x d embedding table to ``adata.uns[key_added]``.

    The table may cover genes beyond ``adata.var_names`` (perturbed genes need not be measured).

    Parameters
    ----------
    adata
        Annotated data.
    embedding
        DataFrame indexed by gene symbol, one column per dimension.
    key_added
        ``adata.uns`` key to write.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    Writes ``adata.uns[key_added]`` (float32 DataFrame with string column names).
    """
    adata = _as_anndata(adata)
    emb = _clean_embedding(embedding)
    adata = adata.copy() if copy else adata
    adata.uns[key_added] = emb
    logger.info("added `.uns[%r]` (%d genes x %d dims)", key_added, *emb.shape)
    return adata if copy else None


def _clean_embedding(embedding: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(embedding, pd.DataFrame):
        msg = f"A gene embedding must be a DataFrame indexed by gene symbol, got {type(embedding).__name__}."
        raise TypeError(msg)
    values = embedding.to_numpy(dtype=np.float32)
    if not np.isfinite(values).all():
        msg = "The gene embedding contains NaN or infinite values; drop those genes or impute them first."
        raise ValueError(msg)
    emb = pd.DataFrame(values, index=embedding.index.astype(str), columns=[str(c) for c in embedding.columns])
    return emb[~emb.index.duplicated()]


def get_gene_embedding(adata: AnnData | None, embedding: str | pd.DataFrame) -> pd.DataFrame:
    """Resolve ``embedding``: a DataFrame, an ``adata.uns`` key holding one, or an ``adata.varm`` key (genes x d)."""
    if isinstance(embedding, pd.DataFrame):
        return _clean_embedding(embedding)
    if adata is not None and embedding in adata.uns and isinstance(adata.uns[embedding], pd.DataFrame):
        return _clean_embedding(adata.uns[embedding])
    if adata is not None and embedding in adata.varm:
        values = adata.varm[embedding]
        frame = values if isinstance(values, pd.DataFrame) else pd.DataFrame(np.asarray(values), index=adata.var_names)
        return _clean_embedding(frame)
    msg = (
        f"Gene embedding {embedding!r} not found in `adata.uns` or `adata.varm`. Attach one with "
        f"`pt.pp.add_gene_embedding(adata, df, key_added={embedding!r})` or pass the DataFrame."
    )
    raise KeyError(msg)


def embedding_coverage(
    embedding: pd.DataFrame, genes: Iterable[str], *, aliases: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Which genes an embedding covers, directly or through an alias.

    Parameters
    ----------
    embedding
        Genes x d table.
    genes
        Genes to look up (e.g. every perturbed gene).
    aliases
        Table with columns ``symbol`` and ``alias`` (see :func:`perturbtools.data.gene_aliases`).

    Returns
    -------
    DataFrame indexed by gene with columns ``covered`` (bool) and ``match`` (the embedding row used, or empty).
    """
    index = set(embedding.index)
    alias_map: dict[str, set[str]] = {}
    if aliases is not None:
        for sym, alias in aliases[["symbol", "alias"]].itertuples(index=False):
            alias_map.setdefault(str(alias), set()).add(str(sym))
            alias_map.setdefault(str(sym), set()).add(str(alias))
    rows = {}
    for g in dict.fromkeys(genes):
        match = g if g in index else next((a for a in sorted(alias_map.get(g, ())) if a in index), "")
        rows[g] = {"covered": bool(match), "match": match}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["covered", "match"])


def perturbation_embedding(
    embedding: pd.DataFrame,
    perturbations: Sequence[str],
    *,
    control: str = CONTROL,
    delimiter: str = DELIMITER,
    aliases: pd.DataFrame | None = None,
) -> np.ndarray:
    """Mean embedding of the target genes of each perturbation (perturbations x d).

    Raises a :class:`KeyError` naming every target gene without an embedding, never silent zeros.
    """
    targets = [parse_perturbation(p, control=control, delimiter=delimiter) for p in perturbations]
    genes = {g for t in targets for g in t}
    cover = embedding_coverage(embedding, genes, aliases=aliases)
    missing = cover.index[~cover["covered"]].tolist()
    if missing:
        msg = (
            f"{len(missing)} perturbed gene(s) have no embedding: {sorted(missing)[:20]}. Add them to the table, pass "
            "`aliases=pt.data.gene_aliases()` to map old symbols, or leave those perturbations out."
        )
        raise KeyError(msg)
    empty = [p for p, t in zip(perturbations, targets, strict=True) if not t]
    if empty:
        msg = f"Perturbations {empty[:5]} have no target gene (control?); they cannot be embedded."
        raise ValueError(msg)
    rows = cover["match"].to_dict()
    values = embedding.to_numpy(np.float64)
    pos = {g: i for i, g in enumerate(embedding.index)}
    return np.vstack([values[[pos[rows[g]] for g in t]].mean(axis=0) for t in targets])


def read_gene_embedding(path: str | Path, *, allow_pickle: bool = False) -> pd.DataFrame:
    """Read a genes x d embedding table from a file.

    csv/tsv(.gz) (first column = gene), parquet, npz (``genes`` + ``embedding``), or GenePT's pickled dict (only with
    ``allow_pickle=True``; never load pickles you do not trust).
    """
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".csv", ".csv.gz")):
        return _clean_embedding(pd.read_csv(path, index_col=0))
    if suffixes.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        return _clean_embedding(pd.read_csv(path, index_col=0, sep="\t"))
    if suffixes.endswith(".parquet"):
        return _clean_embedding(pd.read_parquet(path))
    if suffixes.endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            return _clean_embedding(pd.DataFrame(npz["embedding"], index=npz["genes"].astype(str)))
    if suffixes.endswith((".pkl", ".pickle")):
        if not allow_pickle:
            msg = f"{path} is a pickle; loading it can run arbitrary code. Pass `allow_pickle=True` only for trusted files."
            raise ValueError(msg)
        import pickle

        with path.open("rb") as fh:
            data = pickle.load(fh)
        frame = pd.DataFrame.from_dict(data, orient="index") if isinstance(data, dict) else pd.DataFrame(data)
        return _clean_embedding(frame)
    msg = f"Unknown embedding file type {path.name!r}; use csv, tsv, parquet, npz or (opt-in) pickle."
    raise ValueError(msg)
