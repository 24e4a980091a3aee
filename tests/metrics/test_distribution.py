"""Distribution distances between real and generated cells: E-test wiring, defaults and the random protocol."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA

from perturbtools import metrics


def _adata(X: np.ndarray, labels: list[str], prefix: str) -> ad.AnnData:
    obs = pd.DataFrame({"perturbation": labels}, index=[f"{prefix}{i}" for i in range(len(labels))])
    return ad.AnnData(X, obs=obs)


def _e_distance_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """scPerturb's E-distance: squared Euclidean, within-sample means over distinct pairs."""
    nx, ny = len(x), len(y)
    within_x = cdist(x, x, "sqeuclidean").sum() / (nx * (nx - 1))
    within_y = cdist(y, y, "sqeuclidean").sum() / (ny * (ny - 1))
    return 2 * cdist(x, y, "sqeuclidean").mean() - within_x - within_y


@pytest.fixture
def shifted_and_matched():
    """Real control / A / B cells (4 genes); generated A far off, generated B from B's distribution."""
    rng = np.random.default_rng(7)
    real_X = np.vstack([rng.normal(0, 1, (30, 4)), rng.normal(1, 1, (30, 4)), rng.normal(-1, 1, (30, 4))])
    real = _adata(real_X, ["control"] * 30 + ["A"] * 30 + ["B"] * 30, "r")
    gen_X = np.vstack([rng.normal(6, 1, (30, 4)), rng.normal(-1, 1, (30, 4))])
    gen = _adata(gen_X, ["A"] * 30 + ["B"] * 30, "g")
    return real, gen


def test_etest_columns_by_hand(shifted_and_matched):
    """E-distance, permutation p-value and Holm-Šidák adjustment over perturbations, computed by hand."""
    real, gen = shifted_and_matched
    out = metrics.distribution_distances(real, gen, n_pcs=4, etest=True, n_perm=99)
    assert list(out.columns) == [
        "energy", "mmd", "control_energy", "control_mmd", "n_real", "n_generated", "e_distance", "etest_p",
        "etest_p_adj",
    ]  # fmt: skip
    assert out.index.name == "perturbation" and list(out.index) == ["A", "B"]
    for p in ("A", "B"):  # 4 of 4 PCs: a rotation of the centred cells, squared distances unchanged
        want = _e_distance_by_hand(real.X[real.obs["perturbation"] == p], gen.X[gen.obs["perturbation"] == p])
        assert out.loc[p, "e_distance"] == pytest.approx(want, rel=1e-9)
    # generated A lies 6 SD away: no relabelling reaches its E-distance, p = 1 / (1 + 99)
    assert out.loc["A", "etest_p"] == pytest.approx(0.01, rel=1e-12)
    p_b = out.loc["B", "etest_p"]
    assert 0.05 < p_b <= 1.0  # same distribution
    # the permutations continue the one seeded stream, after the draws of cells (see ``_by_hand``)
    rng = np.random.default_rng(0)
    fit_idx = rng.choice(real.n_obs, size=real.n_obs, replace=False)
    pca = PCA(n_components=4, random_state=int(rng.integers(2**31))).fit(real.X[fit_idx])

    def pick(adata, p):
        idx = np.flatnonzero(adata.obs["perturbation"].to_numpy() == p)
        return pca.transform(adata.X[rng.choice(idx, size=len(idx), replace=False)])

    pick(real, "control")
    for p in ("A", "B"):
        r, g = pick(real, p), pick(gen, p)
        assert out.loc[p, "etest_p"] == metrics.etest(g, r, n_perm=99, rng=rng)[1]
    # Holm-Šidák, m = 2: the smallest p is adjusted as 1 - (1 - p)^2, the next as max(previous, 1 - (1 - p)^1)
    adj_a = 1 - (1 - 0.01) ** 2
    assert out.loc["A", "etest_p_adj"] == pytest.approx(adj_a, rel=1e-12)
    assert out.loc["B", "etest_p_adj"] == pytest.approx(max(adj_a, p_b), rel=1e-12)


def test_etest_default_permutations_and_perturbation_subset(shifted_and_matched):
    """1,000 relabellings by default; ``perturbations=`` limits the rows."""
    real, gen = shifted_and_matched
    out = metrics.distribution_distances(real, gen, n_pcs=4, etest=True, perturbations=["A"])
    assert list(out.index) == ["A"]
    assert out.loc["A", "etest_p"] == pytest.approx(1 / 1001, rel=1e-12)
    assert "e_distance" not in metrics.distribution_distances(real, gen, n_pcs=4).columns  # off by default


def test_distribution_distances_mismatched_genes_name_the_fix(shifted_and_matched):
    real, gen = shifted_and_matched
    with pytest.raises(ValueError, match="same genes in the same order"):
        metrics.distribution_distances(real, gen[:, ::-1].copy())


def test_mmd_bandwidth_falls_back_to_one_when_the_median_distance_is_zero():
    """Most pooled pairs coincide (median distance 0): the RBF bandwidth is 1, by hand."""
    x, y = np.zeros((4, 1)), np.ones((1, 1))  # 10 pairs: 6 at distance 0, 4 at distance 1
    want = 1.0 + 1.0 - 2 * np.exp(-1 / 2)
    assert metrics.mmd(x, y) == pytest.approx(want, rel=1e-12)


def _by_hand(real, gen, *, n_pcs, max_cells, seed=0):
    """The documented random protocol of ``distribution_distances``, replayed with numpy and scikit-learn.

    One generator seeded with ``rng``: at most 5,000 real cells (without replacement) fit the PCA, whose
    ``random_state`` is the generator's next integer below 2**31; then at most ``max_cells`` cells per side are drawn,
    the control's first and, per perturbation, the real before the generated ones.
    """
    rng = np.random.default_rng(seed)
    fit_idx = rng.choice(real.n_obs, size=min(real.n_obs, 5000), replace=False)
    pca = PCA(n_components=n_pcs, random_state=int(rng.integers(2**31))).fit(real.X[fit_idx])

    def pick(adata, p):
        idx = np.flatnonzero(adata.obs["perturbation"].to_numpy() == p)
        return pca.transform(adata.X[rng.choice(idx, size=min(len(idx), max_cells), replace=False)])

    ctrl = pick(real, "control")
    r, g = pick(real, "A"), pick(gen, "A")
    return {"energy": metrics.energy_distance(r, g), "mmd": metrics.mmd(r, g), "control_energy":
            metrics.energy_distance(r, ctrl), "n_real": len(r)}  # fmt: skip


@pytest.mark.parametrize(
    ("n_control", "n_a", "n_genes", "n_pcs"),
    [
        (100, 520, 200, 20),  # > 500 cells of A: subsampled to the default 500; randomized PCA (seed matters)
        (4500, 510, 30, 20),  # 5,010 real cells: the PCA is fitted on 5,000 of them
    ],
)
def test_defaults_follow_the_seeded_protocol(n_control, n_a, n_genes, n_pcs):
    rng = np.random.default_rng(8)
    real_X = np.vstack([rng.normal(0, 1, (n_control, n_genes)), rng.normal(0.3, 1, (n_a, n_genes))])
    real = _adata(real_X, ["control"] * n_control + ["A"] * n_a, "r")
    gen = _adata(rng.normal(0.2, 1.1, (60, n_genes)), ["A"] * 60, "g")
    out = metrics.distribution_distances(real, gen, n_pcs=n_pcs).loc["A"]  # rng=0, max_cells=500
    want = _by_hand(real, gen, n_pcs=n_pcs, max_cells=500)
    assert out["n_real"] == want["n_real"] == 500
    for key in ("energy", "mmd", "control_energy"):
        assert out[key] == pytest.approx(want[key], rel=1e-9), key
    other = metrics.distribution_distances(real, gen, n_pcs=n_pcs, rng=1).loc["A"]
    assert other["energy"] != pytest.approx(out["energy"], rel=1e-9)  # the seed matters: the default is 0
