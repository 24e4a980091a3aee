"""Datasets: a simulator with known ground truth and loaders of real data (local folder or download)."""

from __future__ import annotations

from ._datasets import (
    GIReference,
    adamson2016,
    gene_aliases,
    gene_summaries,
    genept_subset,
    go_annotations,
    go_parents,
    norman2019,
    norman2019_gi_reference,
    norman2019_subset,
    papalexi2021,
    papalexi2021_lowmoi,
    perturbench_devel,
    published_splits,
    replogle2022,
    replogle2022_degsets,
)
from ._fetch import fetch
from ._synthetic import INTERACTIONS, synthetic, write_synthetic_h5ad

__all__ = [
    "INTERACTIONS",
    "GIReference",
    "adamson2016",
    "fetch",
    "gene_aliases",
    "gene_summaries",
    "genept_subset",
    "go_annotations",
    "go_parents",
    "norman2019",
    "norman2019_gi_reference",
    "norman2019_subset",
    "papalexi2021",
    "papalexi2021_lowmoi",
    "perturbench_devel",
    "published_splits",
    "replogle2022",
    "replogle2022_degsets",
    "synthetic",
    "write_synthetic_h5ad",
]
