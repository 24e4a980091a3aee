"""Model inputs shared by the families: a gene embedding per perturbation, PCA-reduced embedding inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...pp._embeddings import get_gene_embedding, perturbation_embedding
from ...pp._gene_embeddings import reduce_embedding

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class EmbeddingInput:
    """A gene embedding as model input: each perturbation is the mean of its target genes' rows."""

    def _set_embedding(self, embedding: str | pd.DataFrame | None) -> None:
        # ``embedding=None`` happens only in ``load``, which restores the table from the saved state
        self.embedding_ = None if embedding is None else get_gene_embedding(self.adata, embedding)

    def _embed(self, perturbations) -> np.ndarray:
        return perturbation_embedding(
            self.embedding_, perturbations, control=self.data_.control, delimiter=self.data_.delimiter
        )


def pca_inputs(adata, embedding, n_components: int) -> tuple[list[str] | None, pd.DataFrame | None]:
    """Resolve one embedding or a list (DataFrames or ``uns``/``varm`` keys) into PCA inputs.

    Returns the keys to save as a hyperparameter (``None`` when a DataFrame was passed; ``load`` restores the inputs
    from the saved state) and the reduced table (``None`` when ``embedding`` is ``None``, as during ``load``).
    """
    names = list(embedding) if isinstance(embedding, list | tuple) else [embedding]
    keys = [e if isinstance(e, str) else None for e in names]
    if all(n is None for n in names):
        return None, None
    tables = [get_gene_embedding(adata, e) for e in names]
    return (keys if None not in keys else None), reduce_embedding(tables, n_components=n_components)
