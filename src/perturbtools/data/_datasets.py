"""One function per dataset; each returns data with ``obs['perturbation']`` and ``'control'`` as control label."""

from __future__ import annotations

import io
import json
import pickle
import warnings
from typing import TYPE_CHECKING, Literal, NamedTuple

import anndata as ad
import numpy as np
import pandas as pd

from .._keys import CONTROL, PERTURBATION_KEY
from .._utils import log_normalise
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
        log_normalise(adata)
    return adata


def _public_h5ad(name: str, perturbation_key: str, control: str, delimiter: str, normalize: bool) -> ad.AnnData:
    adata = _read_h5ad(name)
    standardize_perturbations(adata, perturbation_key, control=control, delimiter=delimiter)
    if normalize:
        log_normalise(adata)
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


class GIReference(NamedTuple):
    """Published Norman 2019 GI reference (:func:`norman2019_gi_reference`).

    ``scores``: the original authors' Theil–Sen fits of all 125 doubles in :func:`perturbtools.tl.gi_scores`'s
    column names (``c1 = ts_coef_first``, ``c2 = ts_coef_second``, ``magnitude = ts_norm2``, ``model_fit =
    corr_fit``, ``similarity = dcor``, ``equality_of_contribution = min(dcor_first, dcor_second) / max(...)``,
    ``dominance = abs_log_ts_ratio``), indexed by ``"A+B"`` (genes sorted; ``c1``/``c2`` follow the authors' gene
    order, given in ``gene_a``/``gene_b``); ``labels``: one published class per labelled double; ``scouter_scores``:
    Scouter's GEARS-style scores (``GI_scores_truth.csv``) in the same column names (no additive doubles);
    ``fits``: the raw ``regr_fits_final.csv``.
    """

    scores: pd.DataFrame
    labels: pd.Series
    scouter_scores: pd.DataFrame
    fits: pd.DataFrame


def _sorted_double(name: str, sep: str) -> str:
    return "+".join(sorted(name.split(sep)))


def norman2019_gi_reference() -> GIReference:
    """Published genetic-interaction fits and curated classes of the Norman 2019 K562 CRISPRa doubles.

    Returns
    -------
    :class:`GIReference` with scores named as :func:`perturbtools.tl.gi_scores` names them.
    """
    fits = pd.read_csv(fetch("norman2019_gi_fits"), index_col="name")
    genes = [n.split("_") for n in fits.index]
    eq = np.minimum(fits["dcor_first"], fits["dcor_second"]) / np.maximum(fits["dcor_first"], fits["dcor_second"])
    scores = pd.DataFrame(
        {
            "gene_a": [g[0] for g in genes],
            "gene_b": [g[1] for g in genes],
            "c1": fits["ts_coef_first"].to_numpy(),
            "c2": fits["ts_coef_second"].to_numpy(),
            "magnitude": fits["ts_norm2"].to_numpy(),
            "model_fit": fits["corr_fit"].to_numpy(),
            "similarity": fits["dcor"].to_numpy(),
            "equality_of_contribution": eq.to_numpy(),
            "dominance": fits["abs_log_ts_ratio"].to_numpy(),
        },
        index=pd.Index([_sorted_double(n, "_") for n in fits.index], name="perturbation"),
    )
    labels = pd.Series(json.loads(fetch("norman2019_gi_labels").read_text()), name="gi_class")
    labels.index = [_sorted_double(n, "+") for n in labels.index]
    pub = pd.read_csv(fetch("norman2019_gi_scores_scouter"))
    scouter = pd.DataFrame(
        {
            "c1": pub["c1"].to_numpy(),
            "c2": pub["c2"].to_numpy(),
            "magnitude": pub["mag"].to_numpy(),
            "model_fit": pub["corr_fit"].to_numpy(),
            "similarity": pub["dcor"].to_numpy(),
            "equality_of_contribution": pub["eq_contr"].to_numpy(),
            "dominance": pub["dominance"].to_numpy(),
            "gi_type": pub["gi_type"].to_numpy(),
        },
        index=pd.Index([_sorted_double(n, "+") for n in pub["perturbation"]], name="perturbation"),
    )
    return GIReference(scores, labels, scouter, fits)


def replogle2022_degsets(
    path: str | Path | None = None, *, which: Literal["up"] = "up"
) -> tuple[ad.AnnData, ad.AnnData]:
    """Up-regulated DEG sets of CRISPRi knockdowns measured in K562 and RPE1 (Replogle et al. 2022), as labels.

    Each knockdown's significant up-regulated genes (DESeq2 on pseudobulk, ranked by log2FC x -log10 padj) are its
    DEGs over the union gene universe; only up-regulation is present, so the direction and fold-change subtasks are
    undefined. ``scores`` hold minus the rank within the knockdown's top-1,000 ranking (``up_full``), lower than every
    ranked gene for the rest, so a ranking can be copied from one line to the other.

    Parameters
    ----------
    path
        A file of the same format (gzipped JSON ``{"k562": {KD: {"up": [...], "up_full": [...]}}, "rpe1": {...}}``),
        e.g. with more knockdowns; default: the registered file under ``settings.datasetdir``.
    which
        Gene sets to use as DEGs (only ``"up"`` exists).

    Returns
    -------
    ``(k562, rpe1)``: label-only AnnData (:func:`perturbtools.pp.labels_from_de_table`) with the same genes in the
    same order and the knockdowns both lines share, labelled under ``"deg"``; ``modality`` is CRISPRi.

    Examples
    --------
    Pretrain STAMP on K562, fine-tune on a few RPE1 knockdowns, predict the others' up-regulated genes:

    >>> import perturbtools as pt
    >>> k562, rpe1 = pt.data.replogle2022_degsets()  # doctest: +SKIP
    >>> go = pt.pp.go_embedding()  # doctest: +SKIP
    >>> for a in (k562, rpe1):  # doctest: +SKIP
    ...     pt.pp.add_gene_embedding(a, go, key_added="go")
    >>> kds = [k for k in rpe1.uns["deg"]["perturbations"] if k in go.index]  # doctest: +SKIP
    >>> model = pt.tl.STAMP(k562, embedding="go").fit(kds, max_epochs=30)  # doctest: +SKIP
    >>> tuned = pt.tl.STAMP.from_pretrained(model, rpe1).fine_tune(kds[:20], max_epochs=30)  # doctest: +SKIP
    >>> proba = tuned.predict(kds[20:], inplace=False).de_proba  # genes x knockdowns  # doctest: +SKIP

    Baselines on the same footing: ``pt.tl.FrequencyPrior(rpe1)``, ``pt.tl.SourceRanking(rpe1, source=k562)``,
    ``pt.tl.LabelStacking(rpe1, source=k562)``; curves with ``pt.bm.few_shot(k562, rpe1, ...)``.
    """
    import gzip
    from pathlib import Path as _Path

    from ..pp._de_table import labels_from_de_table

    file = fetch("replogle2022_degsets") if path is None else _Path(path)
    with gzip.open(file, "rt") as fh:
        raw = json.load(fh)
    missing = {"k562", "rpe1"} - set(raw)
    if missing:
        msg = f"{file} lacks the cell lines {sorted(missing)}; expected keys 'k562' and 'rpe1'."
        raise KeyError(msg)
    shared = sorted(set(raw["k562"]) & set(raw["rpe1"]))
    universe = sorted({g for line in ("k562", "rpe1") for kd in shared for g in raw[line][kd]["up_full"]})
    out = []
    for line in ("k562", "rpe1"):
        sets = {kd: raw[line][kd][which] for kd in shared}
        adata = labels_from_de_table(sets, genes=universe, significant="listed", direction="up", modality="crispri")
        ranks = {kd: raw[line][kd]["up_full"] for kd in shared}
        full = labels_from_de_table(ranks, genes=universe, significant="listed")
        adata.varm["deg_scores"] = full.varm["deg_scores"]
        adata.uns["deg"]["params"]["source"] = f"replogle2022_degsets:{line}"
        adata.uns["cell_line"] = line
        out.append(adata)
    return out[0], out[1]
