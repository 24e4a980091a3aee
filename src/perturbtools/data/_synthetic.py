"""A public Perturb-seq simulator with known ground truth (for tests, docs and scale benchmarks)."""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from .._keys import CONTROL
from .._utils import _as_rng

INTERACTIONS = ("additive", "synergistic", "suppressive", "epistatic", "redundant", "neomorphic")


def _double_effect(kind: str, d_a: np.ndarray, d_b: np.ndarray, novel: np.ndarray) -> np.ndarray:
    if kind == "additive":
        return d_a + d_b
    if kind == "synergistic":
        return 1.8 * (d_a + d_b)
    if kind == "suppressive":
        return 0.4 * (d_a + d_b)
    if kind == "epistatic":
        return 1.0 * d_a + 0.05 * d_b
    if kind == "redundant":
        return 0.5 * (d_a + d_b)
    return d_a + d_b + novel  # neomorphic


def _design(rng, n_genes, n_perturbations, n_programs, modality, effect_size, embedding_noise):
    """Genes, program loadings, gene embedding, baseline log rates and the singles' log effects.

    Targets beyond ``n_genes`` are unmeasured genes (their own program loadings, no own-gene effect), as in genome-wide
    screens that perturb more genes than they measure.
    """
    genes = np.array([f"G{i:05d}" for i in range(n_genes)])
    loadings = (rng.random((n_genes, n_programs)) < 2.0 / n_programs) * rng.uniform(0.5, 1.5, (n_genes, n_programs))
    signs = rng.choice([-1.0, 1.0], size=n_programs)
    embedding = np.hstack([loadings, np.zeros((n_genes, 8))]) + embedding_noise * rng.standard_normal(
        (n_genes, n_programs + 8)
    )
    base = rng.normal(0.0, 1.2, n_genes)

    targets = rng.choice(n_genes, size=min(n_perturbations, n_genes), replace=False)
    n_unmeasured = n_perturbations - targets.size
    unmeasured = (rng.random((n_unmeasured, n_programs)) < 2.0 / n_programs) * rng.uniform(
        0.5, 1.5, (n_unmeasured, n_programs)
    )
    own = np.log(0.1) if modality in ("CRISPRi", "knockout") else np.log(4.0)
    sign = -1.0 if modality in ("CRISPRi", "knockout") else 1.0
    effects: dict[str, np.ndarray] = {}
    for name, target_loadings, t in [
        *((genes[t], loadings[t], t) for t in targets),
        *((f"U{i:05d}", unmeasured[i], None) for i in range(n_unmeasured)),
    ]:
        shared = loadings @ (target_loadings * signs)
        d = sign * effect_size * shared / max(np.abs(shared).max(), 1e-12)
        if t is not None:
            d[t] = own
        effects[name] = d
    return genes, loadings, embedding, base, effects


def _sample_counts(rng, rate: np.ndarray, size: int, library_size: float, dispersion: float) -> sparse.csr_matrix:
    """Negative-binomial (gamma-Poisson) counts of ``size`` cells with expression proportions ``rate`` (one row or one per cell)."""
    lib = library_size * rng.lognormal(0.0, 0.3, size)
    mu = lib[:, None] * np.atleast_2d(rate)
    lam = rng.gamma(dispersion, mu / dispersion)
    return sparse.csr_matrix(rng.poisson(lam).astype(np.float32))


def _log1p_cp10k(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """The simulator's log1p(CP10k): the scaled counts are cast to float32 before ``log1p``.

    :func:`perturbtools._utils.log1p_cp10k` takes ``log1p`` in float64; using it here would change simulated values in
    the last float32 bit, and with them every result computed on simulated data.
    """
    totals = np.asarray(counts.sum(axis=1)).ravel()
    X = sparse.diags(np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)) @ counts
    X = sparse.csr_matrix(X, dtype=np.float32)
    X.data = np.log1p(X.data)
    return X


def synthetic(
    n_cells: int = 2000,
    n_genes: int = 200,
    n_perturbations: int = 20,
    *,
    n_doubles: int = 0,
    n_programs: int = 8,
    modality: Literal["CRISPRi", "CRISPRa", "knockout"] = "CRISPRi",
    control_fraction: float = 0.2,
    effect_size: float = 0.8,
    embedding_noise: float = 0.3,
    library_size: float = 3000.0,
    dispersion: float = 5.0,
    rng: int | np.random.Generator | None = 0,
) -> ad.AnnData:
    """Simulate single-cell CRISPR screens with gene programs and known effects.

    Each gene loads on a few of ``n_programs`` programs. Perturbing gene ``g`` scales its own expression (x0.1 for
    CRISPRi/knockout, x4 for CRISPRa) and shifts every gene in proportion to how many programs it shares with ``g``.
    Doubles combine the singles' log effects by a known interaction type (one of ``INTERACTIONS``). Counts are
    negative binomial; ``X`` is log1p(CP10k).

    Parameters
    ----------
    n_cells
        Number of cells, split evenly over the control and all perturbations.
    n_genes
        Number of genes (perturbed genes are among them).
    n_perturbations
        Number of single-gene perturbations.
    n_doubles
        Number of two-gene perturbations drawn among pairs of the singles' genes.
    n_programs
        Number of gene programs.
    modality
        CRISPR modality.
    control_fraction
        Fraction of cells that are controls.
    effect_size
        Scale of downstream log effects.
    embedding_noise
        Noise added to program loadings to form the gene embedding in ``uns['synthetic']['gene_embedding']``.
    library_size
        Mean total counts per cell.
    dispersion
        Negative-binomial inverse dispersion.
    rng
        Seed or :class:`numpy.random.Generator`; ``0`` by default so results reproduce.

    Returns
    -------
    AnnData with ``X`` (CSR float32, log1p CP10k), ``layers['counts']``, ``obs['perturbation']``,
    ``obs['perturbation_type']``, ``varm['synthetic_effect']`` (true log effects, genes x perturbations) and
    ``uns['synthetic']`` (``gene_embedding`` DataFrame, ``interactions`` DataFrame of doubles, parameters).
    """
    rng = _as_rng(rng)
    if n_perturbations > n_genes:
        msg = f"`n_perturbations={n_perturbations}` exceeds `n_genes={n_genes}`: every target must be a measured gene."
        raise ValueError(msg)
    genes, _, embedding, base, effects = _design(
        rng, n_genes, n_perturbations, n_programs, modality, effect_size, embedding_noise
    )

    singles = list(effects)
    pairs = [(i, j) for i in range(n_perturbations) for j in range(i + 1, n_perturbations)]
    chosen = rng.choice(len(pairs), size=min(n_doubles, len(pairs)), replace=False) if n_doubles else []
    rows = []
    for k, idx in enumerate(chosen):
        a, b = sorted((singles[pairs[idx][0]], singles[pairs[idx][1]]))
        kind = INTERACTIONS[k % len(INTERACTIONS)]
        novel = effect_size * rng.standard_normal(n_genes) * (rng.random(n_genes) < 0.2)
        d = _double_effect(kind, effects[a], effects[b], novel)
        d[genes == a] = effects[a][genes == a]
        d[genes == b] = effects[b][genes == b]
        effects[f"{a}+{b}"] = d
        rows.append({"perturbation": f"{a}+{b}", "gene_a": a, "gene_b": b, "interaction": kind})

    labels = [CONTROL, *effects]
    n_ctrl = round(control_fraction * n_cells)
    per_pert = np.array_split(np.arange(n_cells - n_ctrl), len(effects))
    sizes = [n_ctrl, *(len(p) for p in per_pert)]
    obs_labels = np.repeat(labels, sizes)
    log_rate = np.vstack([base + (0 if lab == CONTROL else effects[lab]) for lab in labels])
    rate = np.exp(log_rate)
    rate /= rate.sum(axis=1, keepdims=True)

    blocks = [_sample_counts(rng, rate[i], size, library_size, dispersion) for i, size in enumerate(sizes)]
    counts = sparse.vstack(blocks, format="csr")
    X = _log1p_cp10k(counts)

    order = rng.permutation(n_cells)
    obs = pd.DataFrame(
        {"perturbation": pd.Categorical(obs_labels[order], categories=labels), "perturbation_type": modality},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(X=X[order], obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = counts[order]
    adata.varm["synthetic_effect"] = pd.DataFrame(
        np.column_stack(list(effects.values())), index=genes, columns=list(effects)
    )
    adata.uns["synthetic"] = {
        "gene_embedding": pd.DataFrame(embedding, index=genes, columns=[f"e{i}" for i in range(embedding.shape[1])]),
        "interactions": pd.DataFrame(rows, columns=["perturbation", "gene_a", "gene_b", "interaction"]),
        "params": {
            "n_programs": n_programs,
            "modality": modality,
            "effect_size": effect_size,
            "dispersion": dispersion,
        },
    }
    return adata


def write_synthetic_h5ad(
    path,
    n_cells: int,
    n_genes: int,
    n_perturbations: int,
    *,
    chunk_size: int = 10_000,
    n_programs: int = 8,
    modality: Literal["CRISPRi", "CRISPRa", "knockout"] = "CRISPRi",
    control_fraction: float = 0.05,
    effect_size: float = 0.8,
    library_size: float = 1000.0,
    dispersion: float = 5.0,
    show_progress_bar: bool | None = None,
    rng: int | np.random.Generator | None = 0,
) -> None:
    """Write a screen of any size from the :func:`synthetic` model to h5ad, ``chunk_size`` cells at a time.

    For scale benchmarks: memory holds one chunk (``chunk_size x n_genes`` draws) and the perturbations' expression
    proportions, never the whole matrix. Cells come in random order (as barcodes do); ``X`` is CSR float32
    log1p(CP10k), ``obs['perturbation']`` holds the labels. Unlike :func:`synthetic`, ``n_perturbations`` may exceed
    ``n_genes`` (the extra targets are unmeasured genes), there are no doubles, and no counts layer is written.

    Parameters
    ----------
    path
        Output ``.h5ad`` file (overwritten).
    n_cells, n_genes, n_perturbations, n_programs, modality, control_fraction, effect_size, library_size, dispersion
        As in :func:`synthetic`.
    chunk_size
        Cells simulated and written at a time.
    show_progress_bar
        Show a progress bar (default: when the logging level is INFO or lower).
    rng
        Seed or :class:`numpy.random.Generator`.
    """
    import h5py
    from anndata.io import sparse_dataset, write_elem

    from .._utils import _progress

    rng = _as_rng(rng)
    genes, _, _, base, effects = _design(rng, n_genes, n_perturbations, n_programs, modality, effect_size, 0.0)
    labels = np.array([CONTROL, *effects])
    n_ctrl = round(control_fraction * n_cells)
    per_pert = np.array_split(np.arange(n_cells - n_ctrl), len(effects))
    codes = rng.permutation(np.repeat(np.arange(len(labels)), [n_ctrl, *(len(p) for p in per_pert)]))
    rate = np.exp(base[None, :] + np.vstack([np.zeros(n_genes), *effects.values()]))
    rate /= rate.sum(axis=1, keepdims=True)
    obs = pd.DataFrame(
        {"perturbation": pd.Categorical.from_codes(codes, categories=labels), "perturbation_type": modality},
        index=pd.Index([f"cell{i}" for i in range(n_cells)]),
    )
    with h5py.File(path, "w") as f:
        write_elem(f, "obs", obs)
        write_elem(f, "var", pd.DataFrame(index=genes))
        for key in ("layers", "obsm", "varm", "obsp", "varp", "uns"):
            write_elem(f, key, {})
        starts = range(0, n_cells, chunk_size)
        for start in _progress(starts, show_progress_bar=show_progress_bar, desc="writing cells", unit="chunk"):
            rows = codes[start : start + chunk_size]
            block = _log1p_cp10k(_sample_counts(rng, rate[rows], rows.size, library_size, dispersion))
            if start == 0:
                write_elem(f, "X", block)
            else:
                sparse_dataset(f["X"]).append(block)
