"""Gaussian-process model on gene embeddings (Märtens et al. 2024) as a ``pt.tl`` model."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import pandas as pd
from scipy import stats

from ...pp._deg_core import fold_change
from .._base import EmbeddingInput, PerturbationModel, Predictions, table_from_state, table_state
from .._torch import resolve_device

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)


class GPModel(EmbeddingInput, PerturbationModel):
    """Exact multi-output GP from perturbation embeddings to expression changes, with calibrated uncertainty.

    Inputs are the top ``n_components`` principal components of a gene embedding (or of several concatenated;
    :func:`perturbtools.pp.reduce_embedding`), averaged over the targets of a combination. Outputs are the deltas
    ``mu_p - mu_c`` of all genes, centred on the training mean (so the prior mean is the non-control mean) and, by
    default, scaled by each gene's training standard deviation floored at its measurement standard error (a
    departure from the paper, which does not say how outputs are scaled: one shared kernel variance cannot fit genes
    whose deltas differ by orders of magnitude, and the per-gene scale is what makes the intervals calibrated). One RBF kernel (variance, lengthscale) and one noise
    variance are shared by all genes and fitted by maximising the summed log marginal likelihood (L-BFGS, variance
    profiled out; :func:`~perturbtools.tl._gp._module.fit_shared_rbf`), the
    lengthscale initialised at the median pairwise distance.

    Besides the posterior mean and variance, subtask predictions are derived from the predictive distribution
    ``delta ~ N(m, s^2)``: ``de_proba = P(|delta| > c * se_g)`` with ``se_g`` the gene's typical standard error of the
    t-test and ``c`` the smallest |t| that was called a DEG in training; ``direction_proba = P(delta > 0)``; ``logfc`` from
    the predicted mean.

    Parameters
    ----------
    adata
        Labelled AnnData.
    embedding
        Genes x d DataFrame, a key in ``adata.uns`` / ``adata.varm``, or a list of those (concatenated).
    n_components
        Principal components of the embedding used as inputs (50 in the paper).
    standardize
        Scale outputs per gene by their training standard deviation.
    max_fit_perturbations
        The kernel hyperparameters are fitted on at most this many training perturbations (a random subset drawn
        with ``rng``); the posterior then conditions on all of them. Each L-BFGS evaluation costs ``O(n^3)`` in the
        perturbations fitted on, so above a few thousand a subset gives about the same three hyperparameters (the
        test checks within 10% on simulated data) at a fraction of the time. ``None``: always all. Above the limit
        this departs from the paper, whose likelihood sums over every training perturbation (its largest training
        set is 1,400, below the default, so results at the paper's scale are unchanged).
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _default_key: ClassVar[str] = "gp"
    #: predictions carry a predictive variance (``mean_var``): conformal scores are normalised by the posterior SD
    predicts_variance: ClassVar[bool] = True

    def __init__(
        self,
        adata: AnnData,
        *,
        embedding: Any = "gene_emb",
        n_components: int = 50,
        standardize: bool = True,
        max_fit_perturbations: int | None = 2_000,
        **kwargs: Any,
    ) -> None:
        keys = self._pca_embedding_param(embedding)
        if max_fit_perturbations is not None and max_fit_perturbations < 2:
            msg = f"`max_fit_perturbations={max_fit_perturbations}`: fitting a kernel needs at least 2; pass None for all."
            raise ValueError(msg)
        super().__init__(
            adata, embedding=keys, n_components=n_components, standardize=standardize,
            max_fit_perturbations=max_fit_perturbations, **kwargs,
        )  # fmt: skip
        self._set_pca_embedding(embedding, n_components)

    def fit(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        rng: int | np.random.Generator | None = 0,
        max_epochs: int = 100,
        accelerator: str = "auto",
        show_progress_bar: bool | None = None,
    ) -> Self:
        """Fit the GP's kernel hyperparameters (shared over genes) on training perturbations by L-BFGS.

        Parameters
        ----------
        perturbations
            Training perturbations (at least 2: centred outputs of one perturbation are all zero and fit no kernel);
            default: the split's ``train`` set, else every labelled perturbation.
        rng
            Seed or :class:`numpy.random.Generator`; ``0`` by default so results reproduce.
        max_epochs
            L-BFGS iterations, each a pass over all training perturbations (the one name every family uses for the
            training budget).
        accelerator
            ``"cpu"``, ``"cuda"`` or ``"auto"``: where the hyperparameters are fitted (the fitted GP predicts on CPU).
        show_progress_bar
            Unused (the fit is a single L-BFGS run); kept for a uniform signature.

        Returns
        -------
        The fitted model.
        """
        return super().fit(
            perturbations, rng=rng, max_epochs=max_epochs, accelerator=accelerator, show_progress_bar=show_progress_bar
        )

    def _fit(
        self,
        train: list[str],
        *,
        rng: np.random.Generator,
        max_epochs: int,
        accelerator: str,
        show_progress_bar: bool | None,
    ) -> None:
        """Train on ``train`` (arguments: see :meth:`fit`)."""
        import torch

        from ._module import fit_shared_rbf

        if len(train) < 2:
            msg = f"GPModel needs at least 2 training perturbations to fit a kernel, got {len(train)}: {train}."
            raise ValueError(msg)
        idx = self.data_.index(train)
        x = self._embed(train)
        delta = self.data_.delta[idx]
        self._fit_de_threshold(idx)
        self.y_mean_ = delta.mean(axis=0)
        # per-gene scale, floored at the gene's measurement standard error: a gene that never varied in training
        # must not get a large predictive variance
        self.y_scale_ = (
            np.maximum(delta.std(axis=0), self.gene_se_)
            if self.init_params_["standardize"]
            else np.ones(delta.shape[1])
        )
        y = (delta - self.y_mean_) / self.y_scale_
        from scipy.spatial.distance import pdist

        limit = self.init_params_.get("max_fit_perturbations")
        sub = np.sort(rng.choice(len(x), limit, replace=False)) if limit and len(x) > limit else slice(None)
        med = float(np.median(pdist(x[sub])))
        device = resolve_device(accelerator)
        self.x_train_ = torch.from_numpy(x.astype(np.float64))  # the posterior conditions on these, on the CPU
        self.y_train_ = torch.from_numpy(y.astype(np.float64))
        xt, yt = self.x_train_.to(device), self.y_train_.to(device)
        rows = slice(None) if isinstance(sub, slice) else torch.from_numpy(sub).to(device)
        gp, history = fit_shared_rbf(xt[rows], yt[rows], lengthscale=max(med, 1e-3), max_iter=max_epochs)
        self.gp_ = gp.to("cpu")
        self.history_ = pd.DataFrame({"evaluation": range(len(history)), "neg_mll": history})
        logger.info("GP hyperparameters: %s", gp.hyperparameters)

    def _fit_de_threshold(self, idx: np.ndarray) -> None:
        """Typical standard error per gene and the critical |t| of DEG calls, from the training labels."""
        t = self.data_.scores[idx]
        delta = self.data_.delta[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.abs(delta / t)
        se[~np.isfinite(se)] = np.nan
        with warnings.catch_warnings():  # genes never changed in training have no finite standard error
            warnings.simplefilter("ignore", RuntimeWarning)
            gene_se = np.nanmedian(se, axis=0)
        fallback = np.nanmedian(gene_se) if np.isfinite(gene_se).any() else 1.0
        self.gene_se_ = np.where(np.isfinite(gene_se), gene_se, fallback)
        called = np.abs(t[self.data_.is_de[idx]])
        self.t_crit_ = float(called.min()) if called.size else float(stats.norm.ppf(1 - 0.01 / 2))

    def predict_distribution(self, perturbations: Sequence[str], *, full_cov: bool = False):
        """Predictive mean of the deltas ``(M, G)`` and variance ``(M, G)`` (noise included), on the data scale.

        With ``full_cov=True`` the second output is the ``(M, M)`` latent covariance on the standardised scale
        (shared by all genes; multiply by ``y_scale_**2`` per gene).
        """
        import torch

        x_new = torch.from_numpy(self._embed(perturbations).astype(np.float64))
        with torch.no_grad():
            mean, var = self.gp_.posterior(self.x_train_, self.y_train_, x_new, full_cov=full_cov)
        mean = mean.numpy() * self.y_scale_ + self.y_mean_
        if full_cov:
            return mean, var.numpy()
        noise = self.gp_.hyperparameters["noise"]
        return mean, (var.numpy()[:, None] + noise) * self.y_scale_**2

    def sample(
        self, perturbations: Sequence[str], n_samples: int = 100, *, rng: int | np.random.Generator | None = 0
    ) -> np.ndarray:
        """Joint posterior samples of the deltas, ``(n_samples, M, G)`` (correlated across perturbations; noise added)."""
        rng = np.random.default_rng(rng)
        mean, cov = self.predict_distribution(perturbations, full_cov=True)
        noise = self.gp_.hyperparameters["noise"]
        chol = np.linalg.cholesky(cov + (noise + 1e-9) * np.eye(len(cov)))
        z = rng.standard_normal((n_samples, len(cov), mean.shape[1]))
        return mean[None] + np.einsum("ij,sjg->sig", chol, z) * self.y_scale_

    def _predict(self, perturbations: list[str]) -> Predictions:
        delta, var = self.predict_distribution(perturbations)
        sd = np.sqrt(var)
        thr = self.t_crit_ * self.gene_se_
        de = stats.norm.sf((thr - delta) / sd) + stats.norm.cdf((-thr - delta) / sd)
        up = stats.norm.sf(-delta / sd)
        mean = np.maximum(self.data_.control_mean + delta, 0.0)  # log1p expression is non-negative
        logfc = np.log2(fold_change(mean, self.data_.control_mean, offset=self.data_.fc_offset))
        return Predictions.from_arrays(
            self.data_.var_names, perturbations, mean=mean, mean_var=var, de_proba=de, direction_proba=up, logfc=logfc
        )

    def _get_state(self) -> dict[str, np.ndarray]:
        hp = self.gp_.hyperparameters
        return {
            **table_state("inputs", self.embedding_),
            "x_train": self.x_train_.numpy(), "y_train": self.y_train_.numpy(), "y_mean": self.y_mean_, "y_scale": self.y_scale_,
            "hyper": np.array([hp["lengthscale"], hp["variance"], hp["noise"], self.gp_.jitter]), "gene_se": self.gene_se_, "t_crit": np.array(self.t_crit_),
        }  # fmt: skip

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        import torch

        from ._module import SharedRBFGP

        self.embedding_ = table_from_state(state, "inputs")
        ls, var, noise, jitter = (float(v) for v in state["hyper"])
        self.gp_ = SharedRBFGP(lengthscale=ls, variance=var, noise=noise, jitter=jitter)
        self.x_train_, self.y_train_ = torch.from_numpy(state["x_train"]), torch.from_numpy(state["y_train"])
        self.y_mean_, self.y_scale_ = state["y_mean"], state["y_scale"]
        self.gene_se_, self.t_crit_ = state["gene_se"], float(state["t_crit"])
