"""Model inputs shared by the families: a gene embedding per perturbation, optionally PCA-reduced."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...pp._embeddings import get_gene_embedding, perturbation_embedding
from ...pp._gene_embeddings import reduce_embedding

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class EmbeddingInput:
    """Capability: a gene embedding as model input; each perturbation is the mean of its target genes' rows.

    A family calls :meth:`_embedding_param` for the hyperparameter it records (the ``uns`` / ``varm`` key, or
    ``None`` for a DataFrame, which ``load`` restores from the saved state), then :meth:`_set_embedding` (or
    :meth:`_set_pca_embedding`) once ``self.adata`` exists, and :meth:`_embed` to turn perturbations into rows.
    Old gene symbols are mapped through ``self.aliases`` when a family sets it.
    """

    aliases: pd.DataFrame | None = None

    @staticmethod
    def _embedding_param(embedding: Any) -> Any:
        """The embedding as a saved hyperparameter: its key(s), or ``None`` when a DataFrame is among them."""
        if isinstance(embedding, list | tuple):
            keys = [e if isinstance(e, str) else None for e in embedding]
            return None if None in keys else keys
        return embedding if isinstance(embedding, str) else None

    @classmethod
    def _pca_embedding_param(cls, embedding: Any) -> list[str] | None:
        """The hyperparameter of a PCA-reduced input: always a list of keys (``None`` when a DataFrame is among them)."""
        return cls._embedding_param(_as_list(embedding))

    def _set_embedding(self, embedding: str | pd.DataFrame | None) -> None:
        # ``embedding=None`` happens only in ``load``, which restores the table from the saved state
        self.embedding_ = None if embedding is None else get_gene_embedding(self.adata, embedding)

    def _set_pca_embedding(self, embedding: Any, n_components: int) -> None:
        """One embedding or a list (DataFrames or keys), concatenated and reduced to ``n_components`` PCs."""
        names = _as_list(embedding)
        if all(n is None for n in names):
            self.embedding_ = None
            return
        tables = [get_gene_embedding(self.adata, e) for e in names]
        self.embedding_ = reduce_embedding(tables, n_components=n_components)

    def _embed(self, perturbations) -> np.ndarray:
        """Perturbations x d float64 rows: the mean embedding of each perturbation's target genes."""
        return perturbation_embedding(
            self.embedding_,
            perturbations,
            control=self.data_.control,
            delimiter=self.data_.delimiter,
            aliases=self.aliases,
        )


def _as_list(embedding: Any) -> list:
    """One embedding (DataFrame, key or ``None``) or a list of them, as a list."""
    return list(embedding) if isinstance(embedding, list | tuple) else [embedding]
