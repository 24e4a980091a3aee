"""Preprocessing: subtask labels, pseudobulks, splits, gene embeddings."""

from __future__ import annotations

from .._perturbation_labels import canonical_label, parse_perturbation, perturbation_genes
from ._de_table import labels_from_de_table
from ._deg import deg_labels
from ._design import (
    check_design,
    collapse_guides,
    guide_agreement,
    guide_targets,
    guides_per_target,
    looks_guide_level,
    looks_like_counts,
)
from ._embeddings import (
    add_gene_embedding,
    embedding_coverage,
    get_gene_embedding,
    perturbation_embedding,
    read_gene_embedding,
)
from ._gene_embeddings import go_embedding, go_matrix, pca_embedding, reduce_embedding, scvi_embedding, text_embedding
from ._perturbations import standardize_perturbations
from ._pseudobulk import pseudobulk
from ._split import kfold_perturbations, split_perturbations, unseen_labels

__all__ = [
    "add_gene_embedding",
    "canonical_label",
    "check_design",
    "collapse_guides",
    "deg_labels",
    "embedding_coverage",
    "get_gene_embedding",
    "go_embedding",
    "go_matrix",
    "guide_agreement",
    "guide_targets",
    "guides_per_target",
    "kfold_perturbations",
    "labels_from_de_table",
    "looks_guide_level",
    "looks_like_counts",
    "parse_perturbation",
    "pca_embedding",
    "perturbation_embedding",
    "perturbation_genes",
    "pseudobulk",
    "read_gene_embedding",
    "reduce_embedding",
    "scvi_embedding",
    "split_perturbations",
    "standardize_perturbations",
    "text_embedding",
    "unseen_labels",
]
