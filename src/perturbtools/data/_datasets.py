"""One function per dataset; each returns data with ``obs['perturbation']`` and ``'control'`` as control label."""

from __future__ import annotations

import io
import json
import pickle
import warnings
from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._keys import CONTROL, PERTURBATION_KEY
from ..pp._perturbations import standardize_perturbations
from ._fetch import fetch
from ._registry import REGISTRY

if TYPE_CHECKING:
    from pathlib import Path


def _read_h5ad(name: str) -> ad.AnnData:
    adata = ad.read_h5ad(fetch(name))
    shape = REGISTRY[name].shape
    if shape is not None and adata.shape != shape:
        warnings.warn(f"{name}: expected shape {shape}, got {adata.shape}.", UserWarning, stacklevel=3)
    return adata


def _log_normalise(adata: ad.AnnData) -> None:
    """Keep counts in ``layers['counts']`` and put log1p(CP10k) into ``X``."""
    counts = sparse.csr_matrix(adata.X, dtype=np.float32)
    adata.layers["counts"] = counts
    size = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(1e4, size, out=np.zeros_like(size, dtype=np.float64), where=size > 0)
    X = sparse.diags(scale) @ counts
    X.data = np.log1p(X.data)
    adata.X = sparse.csr_matrix(X, dtype=np.float32)
    adata.uns["log1p"] = {"base": None}


def perturbench_devel(cell_type: str | None = None) -> ad.AnnData:
    """Norman 2019 K562 CRISPRa subset and McFaline-Figueroa 2023 glioma CRISPRi lines (perturbench's devel file).

    5,961 cells x 500 HVGs, log1p-normalised, no counts. ``obs['cell_type']`` is ``k562`` (CRISPRa: 18 singles,
    15 doubles), ``A172``, ``T98G`` or ``U87MG`` (CRISPRi: 9 singles each); ``obs['perturbation_type']`` holds the
    modality. Each cell line has its own control cells.

    Parameters
    ----------
    cell_type
        Keep one cell line only.

    Returns
    -------
    AnnData with ``obs['perturbation']`` standardised (``"A+B"``, ``"control"``).
    """
    adata = _read_h5ad("perturbench_devel")
    if cell_type is not None:
        lines = adata.obs["cell_type"].cat.categories.tolist()
        if cell_type not in lines:
            msg = f"`cell_type={cell_type!r}` not in the devel data; choose one of {lines}."
            raise ValueError(msg)
        adata = adata[adata.obs["cell_type"] == cell_type].copy()
    standardize_perturbations(adata, "condition", control="control")
    return adata


def norman2019_subset() -> ad.AnnData:
    """The K562 CRISPRa part of :func:`perturbench_devel` (Norman 2019 singles and doubles)."""
    return perturbench_devel("k562")


def papalexi2021_lowmoi(*, assigned_only: bool = True, normalize: bool = True) -> ad.AnnData:
    """Papalexi 2021 THP-1 ECCITE-seq CRISPR knockouts (sceptredata's real low-MOI example; 299 genes, raw counts).

    Parameters
    ----------
    assigned_only
        Keep the 16,192 cells whose gRNA assignment passed (max gRNA UMI >= 80% of the cell's gRNA UMIs).
    normalize
        Move the counts to ``layers['counts']`` and put log1p(CP10k) into ``X``.

    Returns
    -------
    AnnData with ``obs['perturbation']`` (``'control'`` for non-targeting) and ``obs['perturbation_type'] = 'knockout'``.
    """
    adata = _read_h5ad("papalexi2021_lowmoi")
    if assigned_only:
        adata = adata[adata.obs["assignment_pass"].astype(bool)].copy()
    adata.obs["perturbation"] = pd.Categorical(adata.obs["perturbation"].astype(str))
    adata.obs["perturbation_type"] = "knockout"
    if normalize:
        _log_normalise(adata)
    return adata


def _public_h5ad(name: str, perturbation_key: str, control: str, delimiter: str, normalize: bool) -> ad.AnnData:
    adata = _read_h5ad(name)
    standardize_perturbations(adata, perturbation_key, control=control, delimiter=delimiter)
    if normalize:
        _log_normalise(adata)
    return adata


def norman2019(*, normalize: bool = True) -> ad.AnnData:
    """Full Norman 2019 K562 CRISPRa Perturb-seq (scPerturb h5ad, downloaded on first call; raw counts)."""
    return _public_h5ad("norman2019", PERTURBATION_KEY, CONTROL, "_", normalize)


def adamson2016(*, normalize: bool = True) -> ad.AnnData:
    """Adamson 2016 K562 CRISPRi UPR screen (scPerturb h5ad, downloaded on first call; raw counts)."""
    return _public_h5ad("adamson2016", PERTURBATION_KEY, CONTROL, "_", normalize)


def replogle2022(line: Literal["k562_essential", "rpe1"] = "k562_essential", *, normalize: bool = True) -> ad.AnnData:
    """Replogle 2022 genome-scale CRISPRi (K562 essential or RPE1; scPerturb h5ad, downloaded on first call)."""
    return _public_h5ad(f"replogle2022_{line}", PERTURBATION_KEY, CONTROL, "_", normalize)


def papalexi2021(*, normalize: bool = True) -> ad.AnnData:
    """Full Papalexi 2021 THP-1 ECCITE-seq RNA (scPerturb h5ad, downloaded on first call; raw counts)."""
    return _public_h5ad("papalexi2021", PERTURBATION_KEY, CONTROL, "_", normalize)


def go_annotations(*, drop_evidence: tuple[str, ...] = ()) -> pd.DataFrame:
    """Human gene -> GO term annotations (org.Hs.eg.db 3.16): columns ``symbol, entrez_id, go_id, evidence, ontology``.

    Parameters
    ----------
    drop_evidence
        Evidence codes to remove (PerturbNet removes ``("IEA", "ND", "NAS")``).
    """
    df = pd.read_csv(fetch("go_gene2go"), sep="\t")
    return df[~df["evidence"].isin(drop_evidence)].reset_index(drop=True) if drop_evidence else df


def go_parents() -> pd.DataFrame:
    """GO term graph: columns ``go_id, parent_go_id, relationship, ontology``."""
    return pd.read_csv(fetch("go_parents"), sep="\t")


def gene_aliases() -> pd.DataFrame:
    """Official symbol -> alias table (e.g. ``MAP3K21`` -> ``KIAA1804``)."""
    return pd.read_csv(fetch("gene_aliases"), sep="\t")


def gene_summaries() -> dict[str, str]:
    """NCBI gene-summary texts of 1,915 genes in GenePT's input format."""
    return json.loads(fetch("gene_summaries").read_text())


def genept_subset() -> pd.DataFrame:
    """Real GenePT (ada-002, 1536-d) vectors of 86 genes (genes x 1536), the all-zero ``ctrl`` row dropped."""
    df = pd.read_csv(fetch("genept_subset"), index_col=0)
    return df.drop(index="ctrl", errors="ignore")


class _SetsOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only builtin containers and strings; anything else is refused."""

    _ALLOWED = frozenset({("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"), ("builtins", "list")})

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        msg = f"Refusing to unpickle {module}.{name}: only sets, lists and dicts of strings are accepted."
        raise pickle.UnpicklingError(msg)


def _load_split_pickle(path: Path) -> dict[str, list[str]]:
    data = _SetsOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    return {k: sorted(v) for k, v in data.items()}


def published_splits(name: Literal["norman", "adamson", "replogle_k562_essential"] = "norman") -> dict[str, list[str]]:
    """Train / val / test perturbation splits of Wong et al. (Pfizer), GEARS-style labels (``"A+ctrl"``).

    Read with an unpickler that accepts only builtin containers of strings, never arbitrary objects.
    """
    return _load_split_pickle(fetch(f"splits_{name}"))
