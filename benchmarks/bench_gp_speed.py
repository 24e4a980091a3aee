"""GP fit + predict at the paper's scale: 5-fold CV over 1,800 perturbations x 2,000 genes (synthetic), 2 CPU cores.

    python benchmarks/bench_gp_speed.py

The labels are built directly from simulated pseudobulk deltas (cells are not needed to time the GP). Writes
benchmarks/results/gp_speed.csv. Goal: the whole 5-fold CV in under 60 s.

For a ratio, one fold's hyperparameter fit is also timed the plain way (L-BFGS on all three hyperparameters with
autograd through the Cholesky, as gpytorch would do it) against ``fit_shared_rbf`` (variance profiled out, analytic
gradient), on the same standardised outputs; both must reach the same optimum.
"""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

import perturbtools as pt
from perturbtools._keys import label_keys

OUT = Path(__file__).parent / "results"


def labelled(n_perts: int = 1800, n_genes: int = 2000, d: int = 64, rng: int = 0) -> ad.AnnData:
    """A labelled AnnData (varm frames as `pt.pp.deg_labels` writes them) from a low-rank model of deltas."""
    rng = np.random.default_rng(rng)
    genes = [f"G{i}" for i in range(n_genes)]
    emb = rng.normal(size=(n_genes, d))
    targets = rng.choice(n_genes, n_perts, replace=False)
    W = rng.normal(size=(d, n_genes)) / np.sqrt(d)
    delta = np.tanh(emb[targets] @ W) * 0.5 + 0.1 * rng.normal(size=(n_perts, n_genes))
    mu_c = rng.gamma(1.0, 1.0, n_genes)
    mean = np.maximum(mu_c + delta, 0)
    se = np.full((n_perts, n_genes), 0.05)
    t = (mean - mu_c) / se
    perts = [genes[i] for i in targets]
    a = ad.AnnData(np.zeros((2, n_genes), dtype=np.float32), var=pd.DataFrame(index=genes))
    keys = label_keys("deg")
    from scipy import stats

    p = 2 * stats.norm.sf(np.abs(t))
    padj = pt.pp._deg_core.bh_adjust(p)
    fc = pt.pp._deg_core.fold_change(mean, mu_c)
    frames = {keys.mean: mean, keys.is_de: padj <= 0.01, keys.direction: np.sign(mean - mu_c).astype(np.int8) * (padj <= 0.01), keys.fc: fc,
              keys.logfc: np.log2(fc), keys.pvals: p, keys.pvals_adj: padj, keys.scores: t}  # fmt: skip
    top = pt.pp._deg_core.top_masks(t, np.log2(fc))
    frames |= dict(zip((keys.top20, keys.top40, keys.top50, keys.large_effect), top, strict=True))
    for k, v in frames.items():
        a.varm[k] = pd.DataFrame(np.asarray(v).T, index=genes, columns=perts)
    a.var[keys.control_mean] = mu_c
    a.uns["deg"] = {"params": {"perturbation_key": "perturbation", "control": "control", "delimiter": "+", "fc_offset": 0.1},
                    "perturbations": perts, "n_cells": np.full(n_perts, 100), "modality": ["CRISPRi"] * n_perts}  # fmt: skip
    a.uns["gene_emb"] = pd.DataFrame(emb, index=genes)
    return a


def _autograd_fit(xt, yt, lengthscale: float, max_iter: int = 100) -> tuple[float, int]:
    """The plain fit: L-BFGS over (lengthscale, variance, noise), autograd through the Cholesky. Returns (nll, evals)."""
    import torch

    from perturbtools.tl._gp._module import SharedRBFGP, gram_root

    gp = SharedRBFGP(lengthscale=lengthscale, variance=1.0, noise=0.5)
    C = gram_root(yt)
    opt = torch.optim.LBFGS(gp.parameters(), lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")
    history = []

    def closure():
        opt.zero_grad()
        loss = gp.neg_mll(xt, C, yt.shape[1])
        loss.backward()
        history.append(loss.item())
        return loss

    opt.step(closure)
    return history[-1], len(history)


def fit_comparison(a: ad.AnnData) -> dict[str, float]:
    """Time one fold's hyperparameter fit both ways on the same inputs."""
    import torch
    from scipy.spatial.distance import pdist

    from perturbtools.tl._gp._module import fit_shared_rbf

    m = pt.tl.GPModel(a, n_components=50)
    perts = list(a.uns["deg"]["perturbations"])
    train = list(np.random.default_rng(0).choice(perts, int(0.8 * len(perts)), replace=False))
    idx = m.data_.index(train)
    delta = m.data_.delta[idx]
    y = (delta - delta.mean(0)) / delta.std(0)
    x = m._x(train)
    xt, yt = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y.astype(np.float64))
    med = float(np.median(pdist(x)))
    start = time.perf_counter()
    _, history = fit_shared_rbf(xt, yt, lengthscale=med)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    ref_nll, ref_evals = _autograd_fit(xt, yt, med)
    ref = time.perf_counter() - start
    return {"fold_fit_s": ours, "fold_fit_evals": len(history), "fold_fit_nll": history[-1],
            "fold_fit_autograd_s": ref, "fold_fit_autograd_evals": ref_evals, "fold_fit_autograd_nll": ref_nll,
            "fit_speedup_vs_autograd": ref / ours}  # fmt: skip


def main() -> None:
    import torch

    a = labelled()
    start = time.perf_counter()
    res = pt.bm.cross_validate(
        a, {"gp": (pt.tl.GPModel, {"n_components": 50})}, n_splits=5, rng=0, show_progress_bar=False
    )
    total = time.perf_counter() - start
    fit_predict = res.timings["seconds"].sum()
    s = res.summary.set_index("metric")["mean"]
    row = {"n_perturbations": 1800, "n_genes": 2000, "folds": 5, "torch_threads": torch.get_num_threads(), "cv_total_s": total,
           "fit_predict_s": fit_predict, "goal_met": total < 60, "pearson_delta": s["pearson_delta"],
           "pooled_roc_auc_de": s["pooled_roc_auc_de"], **fit_comparison(a)}  # fmt: skip
    print(pd.Series(row).to_string())
    OUT.mkdir(exist_ok=True)
    pd.DataFrame([row]).to_csv(OUT / "gp_speed.csv", index=False)


if __name__ == "__main__":
    main()
