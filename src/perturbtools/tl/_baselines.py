"""The simple baselines every benchmark reports (numpy and scipy)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from ._base import EmbeddingInput, PerturbationModel, Predictions, table_from_state, table_state

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


class _MeanModel(PerturbationModel):
    """A model whose only output is a predicted mean per perturbation (perturbations x genes)."""

    def _predict(self, perturbations: list[str]) -> Predictions:
        return Predictions.from_arrays(self.data_.var_names, perturbations, mean=self._predict_mean(perturbations))

    def _predict_mean(self, perturbations: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _noncontrol_mean(self, train: list[str]) -> np.ndarray:
        idx = self.data_.index(train)
        weights = self.data_.n_cells[idx]
        return weights @ self.data_.mean[idx] / weights.sum()


class ControlMean(_MeanModel):
    """Predicts the control mean for every perturbation (Pearson delta is 0 by construction)."""

    _default_key: ClassVar[str] = "control_mean"

    def _fit(self, train, *, rng, **kwargs):
        pass

    def _predict_mean(self, perturbations):
        return np.tile(self.data_.control_mean, (len(perturbations), 1))


class NonControlMean(_MeanModel):
    """Cell-weighted mean of all non-control training cells (Märtens et al.; "mean model" of Wong et al.)."""

    _default_key: ClassVar[str] = "noncontrol_mean"

    def _fit(self, train, *, rng, **kwargs):
        self.mean_ = self._noncontrol_mean(train)

    def _predict_mean(self, perturbations):
        return np.tile(self.mean_, (len(perturbations), 1))

    def _get_state(self):
        return {"mean": self.mean_}

    def _set_state(self, state):
        self.mean_ = state["mean"]


class CrisprInformedMean(NonControlMean):
    """Non-control mean with each measured target gene set to 0x (CRISPRi/knockout) or 2x (CRISPRa) (Wong et al.).

    Parameters
    ----------
    adata
        Labelled AnnData.
    modality
        ``"CRISPRi"``, ``"CRISPRa"`` or ``"knockout"``; default: per perturbation from the labels
        (``pt.pp.deg_labels(modality=...)`` or ``modality_key=``), else the training perturbations' modality.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _default_key: ClassVar[str] = "crispr_mean"
    _FACTOR: ClassVar[dict[str, float]] = {"CRISPRi": 0.0, "knockout": 0.0, "CRISPRa": 2.0}

    def __init__(
        self, adata: AnnData, *, modality: Literal["CRISPRi", "CRISPRa", "knockout"] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(adata, modality=modality, **kwargs)

    def _fit(self, train, *, rng, **kwargs):
        super()._fit(train, rng=rng)
        known = {self.data_.modality[p] for p in train} - {"unknown"}
        # the fallback for predicted perturbations whose own modality is not in the labels (unseen ones) when no
        # `modality=` is given: the one modality of training, else unknown
        self.modality_ = next(iter(known)) if len(known) == 1 else "unknown"

    def _modality_of(self, perturbation: str) -> str:
        """The perturbation's own modality from the labels; else ``modality=``; else the training one."""
        fixed = self.init_params_.get("modality")
        own = self.data_.modality.get(perturbation, "unknown")
        modality = fixed or (own if own != "unknown" else self.modality_)
        if modality not in self._FACTOR:
            msg = (
                f"The CRISPR modality of {perturbation!r} is unknown (unlabelled, and the training data are "
                "unknown or mixed). Pass `modality=` here, or label with `pt.pp.deg_labels(adata, modality='CRISPRi')` "
                "/ `modality_key='perturbation_type'`."
            )
            raise ValueError(msg)
        return modality

    def _predict_mean(self, perturbations):
        out = np.tile(self.mean_, (len(perturbations), 1))
        pos = {g: i for i, g in enumerate(self.data_.var_names)}
        for row, p in enumerate(perturbations):
            factor = self._FACTOR[self._modality_of(p)]  # each perturbation's own modality (mixed screens)
            for g in self.data_.targets(p):
                if g in pos:
                    out[row, pos[g]] *= factor
        return out

    def _get_state(self):
        return {"mean": self.mean_, "modality": np.array(self.modality_)}

    def _set_state(self, state):
        self.mean_ = state["mean"]
        self.modality_ = str(state["modality"])


class RandomPerturbation(_MeanModel):
    """Predicts the pseudobulk of a training perturbation drawn at random (seeded; one draw per predicted label)."""

    _default_key: ClassVar[str] = "random_perturbation"

    def _fit(self, train, *, rng, **kwargs):
        self.seed_ = int(rng.integers(2**31))

    def _predict_mean(self, perturbations):
        idx = self.data_.index(self.train_perturbations_)
        rng = np.random.default_rng(self.seed_)
        return self.data_.mean[idx[rng.integers(len(idx), size=len(perturbations))]]

    def _get_state(self):
        return {"seed": np.array(self.seed_)}

    def _set_state(self, state):
        self.seed_ = int(state["seed"])


class _DeltaLookup(_MeanModel):
    """Shared by models that combine training deltas of single-gene perturbations."""

    def _single_deltas(self, train: list[str]) -> dict[str, np.ndarray]:
        delta = self.data_.delta
        out = {}
        for p, row in zip(train, self.data_.index(train), strict=True):
            genes = self.data_.targets(p)
            if len(genes) == 1:
                out[genes[0]] = delta[row]
        return out


class Additive(_DeltaLookup):
    """Additive model for combinations.

    Doubles are ``mu_c + delta_A + delta_B`` from the seen singles; a seen single is its own training profile; other
    perturbations fall back to the non-control mean of training.
    """

    _default_key: ClassVar[str] = "additive"

    def _fit(self, train, *, rng, **kwargs):
        self.singles_ = self._single_deltas(train)
        self.fallback_ = self._noncontrol_mean(train)

    def _predict_mean(self, perturbations):
        out = []
        for p in perturbations:
            genes = self.data_.targets(p)
            if genes and all(g in self.singles_ for g in genes):
                out.append(self.data_.control_mean + sum(self.singles_[g] for g in genes))
            else:
                out.append(self.fallback_)
        return np.vstack(out)

    def _get_state(self):
        return {"fallback": self.fallback_, **{f"single/{g}": d for g, d in self.singles_.items()}}

    def _set_state(self, state):
        self.fallback_ = state["fallback"]
        self.singles_ = {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("single/")}


def knn_weights(
    query: np.ndarray, train: np.ndarray, k: int, *, weighted: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` nearest training rows (Euclidean) and their weights ``exp(-d_i) / sum_j exp(-d_j)``.

    Weights are equal with ``weighted=False``; ``k`` is capped at the number of training rows; ties in distance go to
    the earlier training row.
    """
    # pairwise, query x train (a (query, train, d) difference array would take 8 GB at 2,000 x 8,000 x 64)
    dist = cdist(np.asarray(query, dtype=np.float64), np.asarray(train, dtype=np.float64))
    k = min(k, len(train))
    nn = np.argsort(dist, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(dist, nn, axis=1)
    w = np.exp(-(d - d.min(axis=1, keepdims=True))) if weighted else np.ones_like(d)
    return nn, w / w.sum(axis=1, keepdims=True)


class KNN(EmbeddingInput, _MeanModel):
    """k-nearest training perturbations in a gene-embedding space.

    Perturbation embedding = mean of the target genes' rows. ``k=1`` is Märtens et al.'s comparator; ``k=5`` with
    weights ``exp(-d_i) / sum_j exp(-d_j)`` is PerturbNet's. The predicted delta is the weighted mean of the
    neighbours' deltas.

    Parameters
    ----------
    adata
        Labelled AnnData.
    embedding
        Genes x d DataFrame, or an ``adata.uns`` / ``adata.varm`` key holding one.
    k
        Number of neighbours.
    weighted
        Weight neighbours by ``exp(-distance)``; otherwise equally.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _default_key: ClassVar[str] = "knn"

    def __init__(
        self,
        adata: AnnData,
        *,
        embedding: str | pd.DataFrame = "gene_emb",
        k: int = 1,
        weighted: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(adata, embedding=self._embedding_param(embedding), k=k, weighted=weighted, **kwargs)
        self._set_embedding(embedding)

    def _fit(self, train, *, rng, **kwargs):
        self.train_emb_ = self._embed(train)
        self.train_delta_ = self.data_.delta[self.data_.index(train)]

    def _predict_mean(self, perturbations):
        nn, w = knn_weights(
            self._embed(perturbations), self.train_emb_, self.init_params_["k"], weighted=self.init_params_["weighted"]
        )
        return self.data_.control_mean + np.einsum("qk,qkg->qg", w, self.train_delta_[nn])

    def _get_state(self):
        return {
            "train_emb": self.train_emb_,
            "train_delta": self.train_delta_,
            **table_state("embedding", self.embedding_),
        }

    def _set_state(self, state):
        self.train_emb_, self.train_delta_ = state["train_emb"], state["train_delta"]
        self.embedding_ = table_from_state(state, "embedding")


class Linear(EmbeddingInput, _MeanModel):
    """Linear model of Ahlmann-Eltze et al. (2024), as used in PerturbNet's comparison.

    With ``Y`` the genes x training-singles pseudobulk and ``b`` its row means, ``G`` the top-``n_components``
    principal directions of ``Y - b`` (genes x k) and ``P`` the perturbation embedding of the training singles,
    ``W = (G'G + λI)^-1 G'(Y - b) P (P'P + λI)^-1`` and a single is predicted as ``b + G W p'``. ``P`` is the rows of
    ``G`` of the perturbed genes (the paper's default), or, with ``embedding=``, rows of any gene embedding (the
    paper's variant with external embeddings; needed when targets are not measured). Doubles use
    ``X_AB = X_A + X_B - X_control``. A target without an embedding row is predicted as ``b`` (the training mean);
    ``n_fallback_`` counts those.

    Parameters
    ----------
    adata
        Labelled AnnData.
    n_components
        Number of principal components ``k``.
    ridge
        The ridge penalty λ.
    embedding
        Optional genes x d DataFrame (or ``adata.uns`` / ``adata.varm`` key) for ``P``.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _default_key: ClassVar[str] = "linear"

    def __init__(
        self,
        adata: AnnData,
        *,
        n_components: int = 10,
        ridge: float = 0.1,
        embedding: str | pd.DataFrame | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            adata, n_components=n_components, ridge=ridge, embedding=self._embedding_param(embedding), **kwargs
        )
        self._set_embedding(embedding)
        self.n_fallback_ = 0

    def _gene_rows(self) -> pd.DataFrame:
        if self.embedding_ is not None:
            return self.embedding_
        return pd.DataFrame(self.G_, index=self.data_.var_names)

    def _fit(self, train, *, rng, **kwargs):
        singles = [p for p in train if len(self.data_.targets(p)) == 1]
        Y = self.data_.mean[self.data_.index(singles)].T if singles else np.empty((len(self.data_.var_names), 0))
        b = Y.mean(axis=1, keepdims=True) if singles else self.data_.control_mean[:, None]
        k = min(self.init_params_["n_components"], Y.shape[1])
        U, _, _ = np.linalg.svd(Y - b, full_matrices=False)
        self.G_, self.b_ = U[:, :k], b.ravel()
        rows = self._gene_rows()
        usable = [i for i, p in enumerate(singles) if self.data_.targets(p)[0] in rows.index]
        if not usable:
            msg = "Linear: no training single has a measured target or an `embedding=` row; predicting b."
            logger.warning(msg)
            self.W_ = np.zeros((k, rows.shape[1]))
            return
        P = rows.loc[[self.data_.targets(singles[i])[0] for i in usable]].to_numpy(np.float64)
        lam = self.init_params_["ridge"]
        G, Yc = self.G_, (Y - b)[:, usable]
        left = np.linalg.solve(G.T @ G + lam * np.eye(k), G.T @ Yc)
        self.W_ = left @ P @ np.linalg.inv(P.T @ P + lam * np.eye(P.shape[1]))

    def _single(self, gene: str, rows: pd.DataFrame) -> np.ndarray:
        if gene not in rows.index:
            self.n_fallback_ += 1
            return self.b_
        return self.b_ + self.G_ @ self.W_ @ rows.loc[gene].to_numpy(np.float64)

    def _predict_mean(self, perturbations):
        rows = self._gene_rows()
        out = []
        for p in perturbations:
            singles = [self._single(g, rows) for g in self.data_.targets(p)]
            out.append(sum(singles) - (len(singles) - 1) * self.data_.control_mean)
        return np.vstack(out)

    def _get_state(self):
        state = {"G": self.G_, "W": self.W_, "b": self.b_}
        if self.embedding_ is not None:
            state |= table_state("embedding", self.embedding_)
        return state

    def _set_state(self, state):
        self.G_, self.W_, self.b_ = state["G"], state["W"], state["b"]
        self.embedding_ = table_from_state(state, "embedding")


class EmbeddingRidge(EmbeddingInput, _MeanModel):
    """Ridge regression from the PCA inputs of a gene embedding to expression changes (Märtens et al.'s comparator).

    Inputs are the top ``n_components`` principal components of the embedding (as for :class:`~perturbtools.tl.GPModel`),
    averaged over the targets of a combination; outputs are the deltas of all genes, centred on the training mean.

    Parameters
    ----------
    adata
        Labelled AnnData.
    embedding
        Genes x d DataFrame, a key in ``adata.uns`` / ``adata.varm``, or a list of those (concatenated).
    n_components
        Principal components of the embedding.
    alpha
        Ridge penalty.
    **kwargs
        ``labels_key``, ``split_key``.
    """

    _default_key: ClassVar[str] = "embedding_ridge"

    def __init__(
        self, adata: AnnData, *, embedding: Any = "gene_emb", n_components: int = 50, alpha: float = 1.0, **kwargs: Any
    ) -> None:

        keys = self._pca_embedding_param(embedding)
        super().__init__(adata, embedding=keys, n_components=n_components, alpha=alpha, **kwargs)
        self._set_pca_embedding(embedding, n_components)

    def _fit(self, train, *, rng, **kwargs):
        x = self._embed(train)
        delta = self.data_.delta[self.data_.index(train)]
        self.x_mean_, self.y_mean_ = x.mean(axis=0), delta.mean(axis=0)
        xc = x - self.x_mean_
        self.coef_ = np.linalg.solve(
            xc.T @ xc + self.init_params_["alpha"] * np.eye(x.shape[1]), xc.T @ (delta - self.y_mean_)
        )

    def _predict_mean(self, perturbations):
        return self.data_.control_mean + self.y_mean_ + (self._embed(perturbations) - self.x_mean_) @ self.coef_

    def _get_state(self):
        return {
            "coef": self.coef_,
            "x_mean": self.x_mean_,
            "y_mean": self.y_mean_,
            **table_state("inputs", self.embedding_),
        }

    def _set_state(self, state):
        self.coef_, self.x_mean_, self.y_mean_ = state["coef"], state["x_mean"], state["y_mean"]
        self.embedding_ = table_from_state(state, "inputs")
