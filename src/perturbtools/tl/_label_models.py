"""Models that learn which genes a perturbation changes from labels alone (no cells): DE probabilities only.

They work on any labelled AnnData, including label-only data from :func:`perturbtools.pp.labels_from_de_table`
(published DE tables, ranked gene sets). SPEC §12: the target line's gene-frequency prior (the label analogue of the
non-control mean), the source line's ranking of the same perturbation ("copy"), and their combination; plus a
kNN classifier on gene embeddings and a stacking model that learns how to weigh prior and source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy.special import expit

from .._labelled import LabelledData
from .._predictions import Predictions
from ._base import EmbeddingInput, PerturbationModel
from ._base._model import table_from_state, table_state
from ._baselines import knn_weights

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


def _percentile(scores: np.ndarray) -> np.ndarray:
    """Rank of each gene within its row, scaled to (0, 1] (ties share their mean rank); higher = more DE."""
    from scipy.stats import rankdata

    return rankdata(scores, axis=1) / scores.shape[1]


def _smoothed_frequency(is_de: np.ndarray, pseudocount: float) -> np.ndarray:
    """Share of rows (perturbations) in which each gene is a DEG, with ``pseudocount`` DEG and non-DEG added."""
    return (np.asarray(is_de).sum(axis=0) + pseudocount) / (len(is_de) + 2 * pseudocount)


def _de_predictions(model: PerturbationModel, perturbations: list[str], proba: np.ndarray) -> Predictions:
    return Predictions.from_arrays(model.data_.var_names, perturbations, de_proba=proba)


class FrequencyPrior(PerturbationModel):
    """Gene-frequency prior: P(gene is a DEG) = its share among the training perturbations' DEG sets.

    The label analogue of the non-control mean: the same probabilities for every perturbation. Smoothed with
    ``pseudocount`` (add ``pseudocount`` DEG and non-DEG observations per gene), which changes no ranking.

    Parameters
    ----------
    adata
        Labelled AnnData (cells or label-only).
    pseudocount
        Additive smoothing.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _learns_de_labels = True

    _default_key: ClassVar[str] = "frequency_prior"
    _needs_expression: ClassVar[bool] = False

    def __init__(self, adata: AnnData, *, pseudocount: float = 0.5, **kwargs: Any) -> None:
        super().__init__(adata, pseudocount=pseudocount, **kwargs)

    def _fit(self, train, *, rng, **kwargs):
        self.freq_ = _smoothed_frequency(self.data_.is_de[self.data_.index(train)], self.init_params_["pseudocount"])

    def _predict(self, perturbations):
        return _de_predictions(self, perturbations, np.tile(self.freq_, (len(perturbations), 1)))

    def _get_state(self):
        return {"freq": self.freq_}

    def _set_state(self, state):
        self.freq_ = state["freq"]


class _SourceMixin:
    """Reads a source dataset's labels (same genes), e.g. another cell line, for transfer baselines."""

    def _init_source(self, source: AnnData | None, source_labels_key: str) -> None:
        if source is None:
            self.source_ = None  # restored by ``load``
            return
        src = LabelledData.from_adata(source, source_labels_key)
        if list(src.var_names) != list(self.data_.var_names):
            msg = "`source` must have the same `var_names` in the same order as `adata`; subset both to shared genes."
            raise ValueError(msg)
        self._set_source(src.perturbations, src.scores, src.is_de)

    def _set_source(self, perts, scores, is_de) -> None:
        self.source_ = {
            "perturbations": [str(p) for p in perts],
            "percentile": _percentile(np.asarray(scores, dtype=np.float64)),
            "freq": np.asarray(is_de, dtype=np.float64).mean(axis=0),
        }

    def _source_percentile(self, perturbations: list[str]) -> np.ndarray:
        """Source ranking of each perturbation (percentile of its scores); the source frequency where absent."""
        lookup = {p: i for i, p in enumerate(self.source_["perturbations"])}
        fallback = _percentile(self.source_["freq"][None])[0]
        return np.stack([self.source_["percentile"][lookup[p]] if p in lookup else fallback for p in perturbations])

    def _source_state(self) -> dict[str, np.ndarray]:
        return {
            "source_perturbations": np.asarray(self.source_["perturbations"], dtype=str),
            "source_percentile": self.source_["percentile"],
            "source_freq": self.source_["freq"],
        }

    def _restore_source(self, state) -> None:
        self.source_ = {
            "perturbations": [str(p) for p in state["source_perturbations"]],
            "percentile": state["source_percentile"],
            "freq": state["source_freq"],
        }


class SourceRanking(_SourceMixin, PerturbationModel):
    """Copy ("copy" baseline): each perturbation's gene ranking in a source dataset (e.g. the same knockdown in another cell line).

    ``de_proba`` is the percentile of each gene's source score (DE statistic, or minus its rank) within that
    perturbation; a perturbation absent from the source gets the source's gene frequencies. Needs no target
    training data (usable at n = 0).

    Parameters
    ----------
    adata
        Target labelled AnnData.
    source
        Source labelled AnnData with the same genes.
    source_labels_key
        Labels key of ``source``.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _default_key: ClassVar[str] = "source_ranking"
    _needs_expression: ClassVar[bool] = False
    needs_training: ClassVar[bool] = False

    def __init__(
        self, adata: AnnData, *, source: AnnData | None = None, source_labels_key: str = "deg", **kwargs: Any
    ) -> None:
        super().__init__(adata, source_labels_key=source_labels_key, **kwargs)
        self._init_source(source, source_labels_key)

    def _fit(self, train, *, rng, **kwargs):
        pass

    def _predict(self, perturbations):
        return _de_predictions(self, perturbations, self._source_percentile(perturbations))

    def _get_state(self):
        return self._source_state()

    def _set_state(self, state):
        self._restore_source(state)


class PriorSourceCombination(_SourceMixin, PerturbationModel):
    """Combination of the target frequency prior and the source ranking: the mean of their percentiles.

    ``de_proba = weight * percentile(prior) + (1 - weight) * percentile(source ranking)``, a fixed rank average
    (nothing is learned from the target beyond the prior itself). See :class:`LabelStacking` for learned weights.

    Parameters
    ----------
    adata
        Target labelled AnnData.
    source
        Source labelled AnnData with the same genes.
    weight
        Weight of the prior.
    pseudocount
        Smoothing of the prior.
    source_labels_key
        Labels key of ``source``.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _learns_de_labels = True

    _default_key: ClassVar[str] = "prior_source"
    _needs_expression: ClassVar[bool] = False

    def __init__(
        self,
        adata: AnnData,
        *,
        source: AnnData | None = None,
        weight: float = 0.5,
        pseudocount: float = 0.5,
        source_labels_key: str = "deg",
        **kwargs: Any,
    ) -> None:
        super().__init__(adata, weight=weight, pseudocount=pseudocount, source_labels_key=source_labels_key, **kwargs)
        self._init_source(source, source_labels_key)

    def _fit(self, train, *, rng, **kwargs):
        self.freq_ = _smoothed_frequency(self.data_.is_de[self.data_.index(train)], self.init_params_["pseudocount"])

    def _predict(self, perturbations):
        w = self.init_params_["weight"]
        prior = _percentile(self.freq_[None])[0]
        source = self._source_percentile(perturbations)
        return _de_predictions(self, perturbations, w * prior + (1 - w) * source)

    def _get_state(self):
        return {"freq": self.freq_, **self._source_state()}

    def _set_state(self, state):
        self.freq_ = state["freq"]
        self._restore_source(state)


class LabelStacking(_SourceMixin, PerturbationModel):
    """Learned combination of the target prior and the source ranking: logistic regression over (perturbation, gene).

    Features per entry: logit of the target frequency prior (leave-one-out within the training perturbations, so a
    perturbation's own labels never feed its features), the source percentile, and the logit of the source
    frequency. Fitted on the training perturbations' entries with balanced class weights; it learns how much to
    trust the source line from as few as a handful of target perturbations.

    Parameters
    ----------
    adata
        Target labelled AnnData.
    source
        Source labelled AnnData with the same genes.
    C
        Inverse regularisation of the logistic regression.
    pseudocount
        Smoothing of the priors.
    source_labels_key
        Labels key of ``source``.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _learns_de_labels = True

    _default_key: ClassVar[str] = "label_stacking"
    _needs_expression: ClassVar[bool] = False

    def __init__(
        self,
        adata: AnnData,
        *,
        source: AnnData | None = None,
        C: float = 1.0,
        pseudocount: float = 0.5,
        source_labels_key: str = "deg",
        **kwargs: Any,
    ) -> None:
        super().__init__(adata, C=C, pseudocount=pseudocount, source_labels_key=source_labels_key, **kwargs)
        self._init_source(source, source_labels_key)

    def _features(self, prior: np.ndarray, perturbations: list[str]) -> np.ndarray:
        src = self._source_percentile(perturbations)
        a = self.init_params_["pseudocount"]
        n_src = len(self.source_["perturbations"])
        sfreq = (self.source_["freq"] * n_src + a) / (n_src + 2 * a)  # the smoothed frequency, from the stored share
        logit = lambda p: np.log(p) - np.log1p(-p)
        prior = np.broadcast_to(prior, src.shape)
        return np.stack([logit(prior), src, np.broadcast_to(logit(sfreq), src.shape)], axis=-1).reshape(-1, 3)

    def _fit(self, train, *, rng, **kwargs):
        from sklearn.linear_model import LogisticRegression

        a = self.init_params_["pseudocount"]
        y = self.data_.is_de[self.data_.index(train)]
        n = len(train)
        self.freq_ = _smoothed_frequency(y, a)
        loo = (y.sum(axis=0)[None] - y + a) / (n - 1 + 2 * a)  # leave-one-out prior of each training perturbation
        x = self._features(loo, list(train))
        target = y.reshape(-1)
        if target.all() or not target.any():
            msg = f"LabelStacking needs DEGs and non-DEGs among the {n} training perturbations' entries."
            raise ValueError(msg)
        est = LogisticRegression(C=self.init_params_["C"], class_weight="balanced", max_iter=1000).fit(x, target)
        self.coef_, self.intercept_ = est.coef_[0], float(est.intercept_[0])

    def _predict(self, perturbations):
        x = self._features(self.freq_[None], perturbations)
        logits = x @ self.coef_ + self.intercept_
        proba = 1.0 / (1.0 + np.exp(-logits))
        return _de_predictions(self, perturbations, proba.reshape(len(perturbations), -1))

    def _get_state(self):
        return {
            "freq": self.freq_,
            "coef": self.coef_,
            "intercept": np.array([self.intercept_]),
            **self._source_state(),
        }

    def _set_state(self, state):
        self.freq_, self.coef_, self.intercept_ = state["freq"], state["coef"], float(state["intercept"][0])
        self._restore_source(state)


class KNNLabels(EmbeddingInput, PerturbationModel):
    """kNN classifier in a gene-embedding space: P(DEG) = weighted share of the k nearest training perturbations.

    Perturbation embedding = mean of the target genes' rows; weights ``exp(-d_i)`` normalised (as
    :class:`~perturbtools.tl.KNN`); mixed with the training frequency prior by ``prior_weight`` so that genes no
    neighbour has as a DEG keep a ranking.

    Parameters
    ----------
    adata
        Labelled AnnData.
    embedding
        Genes x d DataFrame, or an ``adata.uns`` / ``adata.varm`` key holding one.
    k
        Number of neighbours.
    prior_weight
        Weight of the frequency prior in the mixture.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _learns_de_labels = True

    _default_key: ClassVar[str] = "knn_labels"
    _needs_expression: ClassVar[bool] = False

    def __init__(
        self,
        adata: AnnData,
        *,
        embedding: str | pd.DataFrame = "gene_emb",
        k: int = 10,
        prior_weight: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(adata, embedding=self._embedding_param(embedding), k=k, prior_weight=prior_weight, **kwargs)
        self._set_embedding(embedding)

    def _fit(self, train, *, rng, **kwargs):
        self.train_emb_ = self._embed(train)
        self.train_de_ = self.data_.is_de[self.data_.index(train)].astype(np.float64)

    def _predict(self, perturbations):
        nn, w = knn_weights(self._embed(perturbations), self.train_emb_, self.init_params_["k"])
        knn = np.einsum("qk,qkg->qg", w, self.train_de_[nn])
        pw = self.init_params_["prior_weight"]
        return _de_predictions(self, perturbations, (1 - pw) * knn + pw * self.train_de_.mean(axis=0))

    def _get_state(self):
        return {"train_emb": self.train_emb_, "train_de": self.train_de_, **table_state("embedding", self.embedding_)}

    def _set_state(self, state):
        self.train_emb_, self.train_de_ = state["train_emb"], state["train_de"]
        self.embedding_ = table_from_state(state, "embedding")


class EmbeddingLogistic(EmbeddingInput, PerturbationModel):
    """Logistic regression per gene on the perturbation's gene embedding: P(gene g is a DEG | e_p).

    One L2-regularised logistic regression per output gene, all sharing the design (the perturbation embeddings,
    standardised, optionally reduced to ``n_components`` principal components of the training perturbations) and
    fitted jointly by L-BFGS (the losses are separable, so this equals fitting each gene alone). A gene never a DEG
    in training gets its intercept only (the prior).

    Parameters
    ----------
    adata
        Labelled AnnData.
    embedding
        Genes x d DataFrame, or an ``adata.uns`` / ``adata.varm`` key holding one.
    C
        Inverse L2 strength per gene (sklearn's convention: loss + ``||w||² / (2 C)``).
    n_components
        PCA components of the training perturbation embeddings (capped at ``n_train - 1``).
    max_iter
        L-BFGS iterations of the joint fit.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _learns_de_labels = True

    _default_key: ClassVar[str] = "embedding_logistic"
    _needs_expression: ClassVar[bool] = False

    def __init__(
        self,
        adata: AnnData,
        *,
        embedding: str | pd.DataFrame = "gene_emb",
        C: float = 1.0,
        n_components: int = 20,
        max_iter: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            adata,
            embedding=self._embedding_param(embedding),
            C=C,
            n_components=n_components,
            max_iter=max_iter,
            **kwargs,
        )
        self._set_embedding(embedding)

    def _design(self, perturbations) -> np.ndarray:
        return self._project(self._embed(perturbations))

    def _project(self, e: np.ndarray) -> np.ndarray:
        return (e - self.center_) @ self.components_.T

    def _fit(self, train, *, rng, **kwargs):
        from scipy.optimize import minimize

        e = self._embed(train)
        self.center_ = e.mean(axis=0)
        k = max(1, min(self.init_params_["n_components"], len(train) - 1, e.shape[1]))
        _, sv, vt = np.linalg.svd(e - self.center_, full_matrices=False)
        scale = np.where(sv[:k] > 0, sv[:k] / np.sqrt(max(len(train) - 1, 1)), 1.0)
        self.components_ = vt[:k] / scale[:, None]  # unit-variance principal components
        x = self._project(e)
        y = self.data_.is_de[self.data_.index(train)].astype(np.float64)
        g = y.shape[1]
        lam = 1.0 / (2.0 * self.init_params_["C"])
        prior = _smoothed_frequency(y, 0.5)

        def loss(theta):
            w = theta[: k * g].reshape(k, g)
            b = theta[k * g :]
            z = x @ w + b
            # sum over entries of log(1 + e^z) - y z, plus the L2 penalty on w (not on the intercepts)
            value = np.logaddexp(0.0, z).sum() - (y * z).sum() + lam * (w**2).sum()
            r = expit(z) - y
            return value, np.concatenate([(x.T @ r + 2 * lam * w).ravel(), r.sum(axis=0)])

        theta0 = np.concatenate([np.zeros(k * g), np.log(prior) - np.log1p(-prior)])
        res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": self.init_params_["max_iter"]})
        self.coef_ = res.x[: k * g].reshape(k, g)
        self.intercept_ = res.x[k * g :]

    def _predict(self, perturbations):
        z = self._design(perturbations) @ self.coef_ + self.intercept_
        return _de_predictions(self, perturbations, expit(z))

    def _get_state(self):
        return {"center": self.center_, "components": self.components_, "coef": self.coef_, "intercept": self.intercept_,
                **table_state("embedding", self.embedding_)}  # fmt: skip

    def _set_state(self, state):
        self.center_, self.components_ = state["center"], state["components"]
        self.coef_, self.intercept_ = state["coef"], state["intercept"]
        self.embedding_ = table_from_state(state, "embedding")
