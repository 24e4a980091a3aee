"""Distributional metrics between generated and real cells (PerturbNet's point is distributions, not means)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from .._keys import CONTROL
from .._utils import _as_rng, _to_dense
from ._resampling import etest as _etest
from ._resampling import holm

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (V-statistics) between samples in rows."""
    return float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())


def mmd(x: np.ndarray, y: np.ndarray, *, bandwidth: float | None = None) -> float:
    """Squared maximum mean discrepancy with an RBF kernel (biased estimate); bandwidth = median pooled distance."""
    z = np.vstack([x, y])
    if bandwidth is None:
        d = cdist(z, z)
        bandwidth = float(np.median(d[np.triu_indices(len(z), 1)])) or 1.0

    def k(a, b):
        return np.exp(-cdist(a, b, "sqeuclidean") / (2 * bandwidth**2))

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def distribution_distances(
    real: AnnData,
    generated: AnnData,
    *,
    perturbation_key: str = "perturbation",
    control: str = CONTROL,
    perturbations: Sequence[str] | None = None,
    n_pcs: int = 20,
    max_cells: int = 500,
    etest: bool = False,
    n_perm: int = 1000,
    rng: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Energy distance and MMD between generated and real cells of each perturbation, in a PCA space of real cells.

    Both AnnData must hold log1p(CP10k) in ``X`` over the same genes. The PCA is fitted on the real cells (at most
    5,000, drawn at random); at most ``max_cells`` cells per side are compared, drawn at random. Every draw comes from
    one generator seeded by ``rng``, so results are reproducible. As a reference scale, ``control_*`` columns give the same distances
    between the perturbation's real cells and the real cells labelled ``control`` (NaN where there are none).

    With ``etest=True``, scPerturb's E-test of generated vs real cells is added: ``e_distance`` (squared Euclidean,
    U-statistics), its permutation p-value ``etest_p`` (``n_perm`` relabellings) and the Holm-Šidák adjustment over
    perturbations ``etest_p_adj``. A small p-value means the generated cells are distinguishable from the real ones.

    Returns
    -------
    DataFrame indexed by perturbation: ``energy``, ``mmd``, ``control_energy``, ``control_mmd``, ``n_real``,
    ``n_generated`` (and the E-test columns).
    """
    from sklearn.decomposition import PCA

    rng = _as_rng(rng)
    if list(real.var_names) != list(generated.var_names):
        msg = "`real` and `generated` must have the same genes in the same order."
        raise ValueError(msg)
    labels_r = real.obs[perturbation_key].astype(str).to_numpy()
    labels_g = generated.obs[perturbation_key].astype(str).to_numpy()
    perts = list(perturbations) if perturbations is not None else sorted(set(labels_g) & set(labels_r))
    fit_idx = rng.choice(real.n_obs, size=min(real.n_obs, 5000), replace=False)
    pca = PCA(n_components=min(n_pcs, real.n_vars), random_state=int(rng.integers(2**31))).fit(
        _to_dense(real.X[fit_idx])
    )

    def pick(adata, labels, p):
        idx = np.flatnonzero(labels == p)
        idx = rng.choice(idx, size=min(len(idx), max_cells), replace=False)
        return pca.transform(_to_dense(adata.X[idx]))

    ctrl = pick(real, labels_r, control) if control in set(labels_r) else None
    rows = {}
    for p in perts:
        r, g = pick(real, labels_r, p), pick(generated, labels_g, p)
        rows[p] = {
            "energy": energy_distance(r, g), "mmd": mmd(r, g),
            "control_energy": energy_distance(r, ctrl) if ctrl is not None else np.nan,
            "control_mmd": mmd(r, ctrl) if ctrl is not None else np.nan,
            "n_real": len(r), "n_generated": len(g),
        }  # fmt: skip
        if etest:
            rows[p]["e_distance"], rows[p]["etest_p"] = _etest(g, r, n_perm=n_perm, rng=rng)
    out = pd.DataFrame.from_dict(rows, orient="index").rename_axis("perturbation")
    if etest:
        out["etest_p_adj"] = holm(out["etest_p"].to_numpy(), sidak=True)
    return out
