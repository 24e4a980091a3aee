"""PerturbNet on scVI (Yu et al. 2025): perturbation representation -> cINN -> scVI latent -> counts."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from ... import _scvi
from ..._utils import _as_rng, _torch_seed
from .._base import EmbeddingInput, Generative, PerturbationModel, Predictions, table_from_state, table_state
from .._torch import resolve_device, state_from_numpy, state_to_numpy, torch_seeded, torch_threads, train_loop

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)

#: scVI's default training budget in :meth:`PerturbNet.fit`
SCVI_EPOCHS = 100


class PerturbationEncoder(Protocol):
    """Plug-in perturbation representation: target-gene tuples in, an ``(n, d)`` array out.

    Protein-sequence encoders (e.g. ESM over the targets' sequences from ``symbol2uniprot``) or SMILES encoders fit
    here; perturbtools ships no weights.
    """

    def __call__(self, targets: Sequence[tuple[str, ...]]) -> np.ndarray: ...


def _check_latents(adata: AnnData, key: str) -> None:
    """A clear error unless ``adata.obsm[key]`` holds finite latent codes for every cell."""
    if key not in adata.obsm:
        msg = f"`adata.obsm[{key!r}]` not found; store scVI latents there (`adata.obsm[{key!r}] = model.get_latent_representation()`) or pass `scvi_model=`."
        raise KeyError(msg)
    z = np.asarray(adata.obsm[key])
    if z.ndim != 2 or z.shape[0] != adata.n_obs or not np.isfinite(z).all():
        msg = f"`adata.obsm[{key!r}]` must be a finite (n_cells, n_latent) array; got shape {z.shape}."
        raise ValueError(msg)


class GenotypeVAE:
    """GenotypeVAE: PerturbNet's perturbation representation.

    A VAE on binary GO-annotation vectors of gene sets (union over targets), trained on single genes and random gene
    pairs.

    Parameters
    ----------
    go
        :func:`perturbtools.pp.go_matrix` output (genes x terms); default: human GO with IEA/ND/NAS evidence removed
        and terms with at least ``min_genes`` genes.
    n_latent
        Latent dimension (10).
    min_genes
        Minimum genes per GO term when ``go`` is built here.
    aliases
        Symbol/alias table (:func:`perturbtools.data.gene_aliases`) to map old symbols (e.g. ``MARCH8``).
    """

    def __init__(self, go=None, *, n_latent: int = 10, min_genes: int = 5, aliases: pd.DataFrame | None = None) -> None:
        from ...pp._gene_embeddings import PERTURBNET_DROPPED_EVIDENCE, go_matrix
        from ._module import GenotypeVAEModule

        self.go = go if go is not None else go_matrix(drop_evidence=PERTURBNET_DROPPED_EVIDENCE, min_genes=min_genes)
        self.gene_index = {g: i for i, g in enumerate(self.go.genes)}
        if aliases is not None:
            for sym, alias in aliases[["symbol", "alias"]].itertuples(index=False):
                if sym in self.gene_index and alias not in self.gene_index:
                    self.gene_index[str(alias)] = self.gene_index[sym]
        self.n_latent = n_latent
        self.module_ = GenotypeVAEModule(self.go.matrix.shape[1], n_latent=n_latent)
        self.history_ = None

    def vectors(self, gene_sets: Sequence[Sequence[str]]) -> np.ndarray:
        """Binary GO vectors (union over each set's genes); a clear error for genes without GO terms."""
        missing = sorted({g for s in gene_sets for g in s if g not in self.gene_index})
        if missing:
            msg = f"{len(missing)} gene(s) have no GO annotation: {missing[:20]}. Leave those perturbations out or use `embedding=`."
            raise KeyError(msg)
        rows = np.repeat(np.arange(len(gene_sets)), [len(s) for s in gene_sets])
        cols = [self.gene_index[g] for s in gene_sets for g in s]
        indicator = sparse.csr_matrix(
            (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(gene_sets), len(self.go.genes))
        )
        return ((indicator @ self.go.matrix.astype(np.float32)) > 0).toarray().astype(np.float32)

    def fit(self, *, n_doubles: int = 20_000, max_epochs: int = 20, batch_size: int = 256, lr: float = 1e-3,
            rng: int | np.random.Generator | None = 0, show_progress_bar: bool | None = None) -> GenotypeVAE:  # fmt: skip
        """Train on every annotated single gene and ``n_doubles`` random pairs (10% held out for early stopping)."""
        import torch

        rng = _as_rng(rng)
        genes = list(self.go.genes)
        pairs = rng.integers(0, len(genes), size=(n_doubles, 2))
        sets = [[g] for g in genes] + [[genes[a], genes[b]] for a, b in pairs if a != b]
        X = torch.from_numpy(self.vectors(sets))
        order = torch.from_numpy(rng.permutation(len(X)))
        n_val = max(1, len(X) // 10)
        seed = _torch_seed(rng)
        with torch_seeded(seed):
            self.history_ = train_loop(
                self.module_, lambda m, x: m(x)["loss"], (X[order[n_val:]],), val_tensors=(X[order[:n_val]],),
                max_epochs=max_epochs, batch_size=batch_size, lr=lr, patience=5, seed=seed, show_progress_bar=show_progress_bar, desc="GenotypeVAE",
            )  # fmt: skip
        return self

    def transform(self, gene_sets: Sequence[Sequence[str]]) -> np.ndarray:
        """Posterior means (n_sets x n_latent)."""
        import torch

        self.module_.eval()
        with torch.no_grad():
            return self.module_.encode(torch.from_numpy(self.vectors(gene_sets)))[0].numpy()


class PerturbNet(EmbeddingInput, Generative, PerturbationModel):
    """PerturbNet on scVI: a conditional invertible network from perturbation representations to scVI's latent space.

    Cells are represented by an ``scvi.model.SCVI`` (ZINB, 10 latent dims; trained here on ``counts_layer`` unless a
    trained one is passed). Perturbations are represented by a :class:`GenotypeVAE` (``representation="genotype_vae"``)
    or by the mean of a gene embedding over targets (``embedding=``). The cINN is trained on posterior samples of
    the latent codes of perturbed cells; generation draws ``v ~ N(0, I)``, inverts the flow given the
    perturbation, and decodes with library sizes drawn from training cells. :meth:`sample` returns generated cells;
    :meth:`predict` writes their pseudobulk (log1p CP10k means) through the shared path.

    Log-normalised data without counts (e.g. perturbench's devel file): pass ``counts_layer=None`` and
    ``pseudo_counts=True`` to train scVI on ``round(expm1(X))``. Those pseudo-counts are CP10k-scaled, so every cell
    has nearly the same library size and the ZINB likelihood is misspecified: treat results as approximate.

    Latents only (``latent_key="X_scVI"``, no ``scvi_model``): the cINN is trained on ``adata.obsm[latent_key]``
    (e.g. computed elsewhere and stored in the file) and no scVI is trained. Without a decoder, generated cells get
    the expression ``X`` of their ``n_neighbors`` nearest real cells in latent space, drawn only from control and
    training-perturbation cells (never the held-out ones); :meth:`sample` then has no ``counts`` layer. This
    nearest-cell decoder can only recombine observed states: prefer a trained ``scvi_model`` where one exists.

    Parameters
    ----------
    adata
        Cells x genes AnnData labelled by :func:`perturbtools.pp.deg_labels`.
    scvi_model
        A trained ``scvi.model.SCVI`` on the same cells and genes (else one is trained at :meth:`fit`).
    representation
        ``"genotype_vae"``, ``"embedding"``, or a :class:`PerturbationEncoder` plug-in: any callable mapping a list of
        target-gene tuples to an ``(n, d)`` array (e.g. a protein-sequence model over the targets' UniProt sequences,
        or a SMILES encoder for chemical perturbations; weights supplied by the user).
    genotype_vae
        A fitted :class:`GenotypeVAE` (else one is trained at :meth:`fit`).
    embedding
        Gene embedding for ``representation="embedding"``.
    counts_layer
        Layer with raw counts for scVI.
    pseudo_counts
        Use ``round(expm1(X))`` as counts (log data only; see above).
    n_blocks, cond_dim, hidden
        cINN size (20 blocks, 10-d condition in the reference).
    n_latent
        scVI latent dimension.
    latent_key
        ``adata.obsm`` key of precomputed scVI latents to use without an scVI model (see above).
    n_neighbors
        Cells averaged by the nearest-cell decoder (``latent_key`` without ``scvi_model``).
    **kwargs
        ``labels_key``, ``split_key``, ``perturbation_key`` (obs column of cell labels; default: the labels' one).
    """

    _default_key: ClassVar[str] = "perturbnet"

    def __init__(
        self,
        adata: AnnData,
        *,
        scvi_model: Any = None,
        representation: str = "genotype_vae",
        genotype_vae: GenotypeVAE | None = None,
        embedding: str | pd.DataFrame | None = None,
        counts_layer: str | None = "counts",
        pseudo_counts: bool = False,
        n_blocks: int = 20,
        cond_dim: int = 10,
        hidden: int = 64,
        n_latent: int = 10,
        latent_key: str | None = None,
        n_neighbors: int = 10,
        **kwargs: Any,
    ) -> None:
        encoder = representation if callable(representation) else None
        if encoder is not None:
            representation = "encoder"
        elif representation not in ("genotype_vae", "embedding"):
            msg = f"`representation={representation!r}` must be 'genotype_vae', 'embedding' or a PerturbationEncoder."
            raise ValueError(msg)
        if representation == "embedding" and embedding is None:
            msg = "`representation='embedding'` needs `embedding=` (a gene-embedding DataFrame or key)."
            raise ValueError(msg)
        if latent_key is not None:
            _check_latents(adata, latent_key)
            n_latent = int(adata.obsm[latent_key].shape[1])
        elif counts_layer is None and not pseudo_counts and scvi_model is None:
            msg = (
                "PerturbNet needs raw counts for scVI: pass `counts_layer=`, a trained `scvi_model=`, "
                "`latent_key=` (precomputed latents in `adata.obsm`), or `pseudo_counts=True` for log data."
            )
            raise ValueError(msg)
        if (
            latent_key is None
            and counts_layer is not None
            and counts_layer not in adata.layers
            and scvi_model is None
            and not pseudo_counts
        ):
            msg = f"`adata.layers[{counts_layer!r}]` not found; put raw counts there, or pass `pseudo_counts=True` for log data."
            raise KeyError(msg)
        super().__init__(adata, representation=representation, embedding=self._embedding_param(embedding), counts_layer=counts_layer, pseudo_counts=pseudo_counts,
                         n_blocks=n_blocks, cond_dim=cond_dim, hidden=hidden, n_latent=n_latent, latent_key=latent_key,
                         n_neighbors=n_neighbors, **kwargs)  # fmt: skip
        self.perturbation_key_ = str(self.adata.uns[self.data_keys_["labels_key"]]["params"]["perturbation_key"])
        self.scvi_model_ = scvi_model
        self.encoder_ = encoder
        self.genotype_vae_ = genotype_vae
        self._set_embedding(embedding)

    # ------------------------------------------------------------------ representations
    def _cells(self) -> AnnData:
        a = self.adata
        if self.init_params_["pseudo_counts"]:
            X = a.X.copy() if sparse.issparse(a.X) else sparse.csr_matrix(a.X)
            X.data = np.round(np.expm1(X.data))
            a = ad.AnnData(X=X, obs=a.obs[[self.perturbation_key_]].copy(), var=pd.DataFrame(index=a.var_names))
            a.layers["counts"] = a.X
        return a

    def _uses_decoder(self) -> bool:
        """Whether generated latents are decoded by scVI (else by the nearest-cell decoder)."""
        return self.scvi_model_ is not None

    def _latents(self, *, give_mean: bool = False) -> np.ndarray:
        """Latent codes of the cells: ``adata.obsm[latent_key]``, else scVI posterior samples (or means)."""
        key = self.init_params_.get("latent_key")
        if key is not None:
            return np.asarray(self.adata.obsm[key], dtype=np.float32)
        return _scvi.sample_latent(self.scvi_model_, give_mean=give_mean)

    def _layer(self) -> str | None:
        return "counts" if self.init_params_["pseudo_counts"] else self.init_params_["counts_layer"]

    def representations(self, perturbations: Sequence[str]) -> np.ndarray:
        """Perturbation representations (GenotypeVAE means or mean gene embeddings), perturbations x d."""
        if self.init_params_["representation"] == "encoder":
            if self.encoder_ is None:
                msg = "This PerturbNet used a custom encoder; pass it again: `model.encoder_ = encoder`."
                raise RuntimeError(msg)
            out = np.asarray(self.encoder_([self.data_.targets(p) for p in perturbations]), dtype=np.float32)
            if out.shape[0] != len(perturbations) or out.ndim != 2:
                msg = f"The encoder returned shape {out.shape}; expected ({len(perturbations)}, d)."
                raise ValueError(msg)
            return out
        if self.init_params_["representation"] == "embedding":
            return self._embed(perturbations).astype(np.float32)
        return self.genotype_vae_.transform([self.data_.targets(p) for p in perturbations]).astype(np.float32)

    # ------------------------------------------------------------------ training
    def _train_scvi(self, *, scvi_epochs: int, accelerator: str, seed: int) -> Any:
        """Train scVI on every cell of ``adata`` (unsupervised: it sees no perturbation label)."""
        return _scvi.train_scvi(self._cells(), layer=self._layer(), n_latent=self.init_params_["n_latent"],
                                max_epochs=scvi_epochs, accelerator=accelerator, seed=seed)  # fmt: skip

    @classmethod
    def fold_independent_setup(
        cls, adata: AnnData, init_kwargs: dict[str, Any], fit_kwargs: dict[str, Any], *, labels_key: str, seed: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Train scVI and the GenotypeVAE once for every fold of a protocol, not once per fold.

        Neither sees a perturbation label (scVI learns from all cells, the GenotypeVAE from GO annotations), so no
        fold needs its own. Each is skipped when ``init_kwargs`` already give it (``scvi_model`` or ``latent_key``;
        ``genotype_vae``); ``scvi_epochs``, ``accelerator`` and ``genotype_vae_kwargs`` are read from ``fit_kwargs``.
        """
        init_kwargs = dict(init_kwargs)
        model = cls(adata, labels_key=labels_key, **init_kwargs)
        if init_kwargs.get("scvi_model") is None and init_kwargs.get("latent_key") is None:
            init_kwargs["scvi_model"] = model._train_scvi(
                scvi_epochs=fit_kwargs.get("scvi_epochs", SCVI_EPOCHS),
                accelerator=fit_kwargs.get("accelerator", "auto"),
                seed=seed,
            )
        if model.init_params_["representation"] == "genotype_vae" and init_kwargs.get("genotype_vae") is None:
            init_kwargs["genotype_vae"] = model._train_genotype_vae(
                fit_kwargs.get("genotype_vae_kwargs"), seed=seed, show_progress_bar=fit_kwargs.get("show_progress_bar")
            )
        return init_kwargs, fit_kwargs

    @staticmethod
    def _train_genotype_vae(kwargs: dict | None, *, seed: int, show_progress_bar: bool | None) -> GenotypeVAE:
        return GenotypeVAE(n_latent=10).fit(rng=seed, show_progress_bar=show_progress_bar, **(kwargs or {}))

    def fit(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        rng: int | np.random.Generator | None = 0,
        scvi_epochs: int = SCVI_EPOCHS,
        genotype_vae_kwargs: dict | None = None,
        max_epochs: int = 50,
        batch_size: int = 128,
        lr: float = 4.5e-6,
        early_stopping_patience: int | None = 5,
        val_fraction: float = 0.1,
        accelerator: str = "auto",
        show_progress_bar: bool | None = None,
    ) -> Self:
        """Train scVI (if needed), the GenotypeVAE (if needed) and the cINN on training perturbations.

        Parameters
        ----------
        perturbations
            Training perturbations; default: the split's ``train`` set, else every labelled perturbation.
        rng
            Seed or :class:`numpy.random.Generator`; ``0`` by default so results reproduce.
        scvi_epochs
            Epochs of scVI when it is trained here (on all cells: scVI is unsupervised and sees no labels).
        genotype_vae_kwargs
            Arguments of :meth:`GenotypeVAE.fit` when it is trained here.
        max_epochs, batch_size, lr
            cINN training (reference: 50 epochs, batch 128, Adam lr 4.5e-6). On CPU the cINN trains on one torch
            thread (restored after): as fast as two alone, 3x faster on a machine whose other cores are busy.
        early_stopping_patience
            Early stopping on the NLL of held-out training cells (the flow overfits fast); ``None`` disables it.
        val_fraction
            Share of training cells held out for early stopping.
        accelerator
            ``"cpu"``, ``"cuda"`` or ``"auto"``.
        show_progress_bar
            Progress bars.

        Returns
        -------
        The fitted model.
        """
        return super().fit(
            perturbations,
            rng=rng,
            scvi_epochs=scvi_epochs,
            genotype_vae_kwargs=genotype_vae_kwargs,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            early_stopping_patience=early_stopping_patience,
            val_fraction=val_fraction,
            accelerator=accelerator,
            show_progress_bar=show_progress_bar,
        )

    def _fit(
        self,
        train: list[str],
        *,
        rng: np.random.Generator,
        scvi_epochs: int,
        genotype_vae_kwargs: dict | None,
        max_epochs: int,
        batch_size: int,
        lr: float,
        early_stopping_patience: int | None,
        val_fraction: float,
        accelerator: str,
        show_progress_bar: bool | None,
    ) -> None:
        """Train on ``train`` (arguments: see :meth:`fit`)."""
        import torch

        from ._module import ConditionalINN

        seed = _torch_seed(rng)
        device = resolve_device(accelerator)
        if self.scvi_model_ is None and self.init_params_.get("latent_key") is None:
            self.scvi_model_ = self._train_scvi(scvi_epochs=scvi_epochs, accelerator=accelerator, seed=seed)
        if self.init_params_["representation"] == "genotype_vae" and self.genotype_vae_ is None:
            self.genotype_vae_ = self._train_genotype_vae(
                genotype_vae_kwargs, seed=seed, show_progress_bar=show_progress_bar
            )
        labels = self.adata.obs[self.perturbation_key_].astype(str).to_numpy()
        with torch_seeded(seed):  # posterior samples: the same for the same seed, also with a shared scVI model
            latent = self._latents()
        cells = np.flatnonzero(np.isin(labels, train))
        if self._uses_decoder():
            # library sizes of the training perturbations' cells only (never of held-out cells scVI also saw)
            self.log_library_ = _scvi.log_library(self.scvi_model_, self._cells())[cells]
        else:  # nearest-cell decoder: control and training cells only
            self.reference_cells_ = np.flatnonzero(np.isin(labels, [*train, self.data_.control]))
        reps = dict(zip(train, self.representations(train), strict=True))
        cond = np.stack([reps[p] for p in labels[cells]])
        order = rng.permutation(len(cells))
        n_val = max(1, round(val_fraction * len(cells))) if early_stopping_patience is not None else 0
        z, c = torch.from_numpy(latent[cells][order]), torch.from_numpy(cond[order])
        # one CPU thread: the cINN's layers are too small to gain from more, which spin-wait on a busy machine
        with torch_seeded(seed), torch_threads(1 if device.type == "cpu" else None):
            self.flow_ = ConditionalINN(z.shape[1], c.shape[1], n_blocks=self.init_params_["n_blocks"], cond_dim=self.init_params_["cond_dim"],
                                        hidden=self.init_params_["hidden"], seed=seed)  # fmt: skip
            self.history_ = train_loop(
                self.flow_, lambda m, zz, cc: m.nll(zz, cc), (z[n_val:], c[n_val:]), val_tensors=(z[:n_val], c[:n_val]) if n_val else None,
                max_epochs=max_epochs, batch_size=batch_size, lr=lr, patience=early_stopping_patience, seed=seed, device=device,
                show_progress_bar=show_progress_bar, desc="PerturbNet cINN",
            )  # fmt: skip
        self.sample_seed_ = seed

    # ------------------------------------------------------------------ generation
    def sample_latent(
        self, perturbations: Sequence[str], n_cells: int = 200, *, rng: int | np.random.Generator | None = 0
    ) -> np.ndarray:
        """Generated scVI latents, ``(len(perturbations) * n_cells, n_latent)``, perturbation-major."""
        import torch

        rng = _as_rng(rng)
        cond = np.repeat(self.representations(perturbations), n_cells, axis=0)
        v = rng.standard_normal((len(cond), self.flow_.perms.shape[1])).astype(np.float32)
        self.flow_.eval()
        with torch.no_grad():
            return self.flow_.inverse(torch.from_numpy(v), torch.from_numpy(cond)).numpy()

    def sample(
        self, perturbations: Sequence[str], n_cells: int = 200, *, rng: int | np.random.Generator | None = 0
    ) -> AnnData:
        """Generate cells for any perturbation.

        Returns
        -------
        A new AnnData: ``obs['perturbation']``, ``obsm['X_scVI']`` (generated latents), ``layers['counts']``
        (decoded counts with library sizes drawn from training cells) and ``X`` = log1p(CP10k).
        """
        from ..._utils import log_normalise

        rng = _as_rng(rng)
        z = self.sample_latent(perturbations, n_cells, rng=rng)
        obs = pd.DataFrame(
            {"perturbation": pd.Categorical(np.repeat(list(perturbations), n_cells))},
            index=[f"gen{i}" for i in range(len(z))],
        )
        if not self._uses_decoder():
            X = self._nearest_cell_expression(z)
            out = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=self.data_.var_names))
            out.obsm[self.init_params_["latent_key"]] = z
            return out
        lib = rng.choice(self.log_library_, size=len(z), replace=True)
        counts = _scvi.decode_counts(self.scvi_model_, z, lib, seed=_torch_seed(rng))
        out = ad.AnnData(
            X=sparse.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame(index=self.data_.var_names)
        )
        log_normalise(out)
        out.obsm["X_scVI"] = z
        return out

    def _nearest_cell_expression(self, z: np.ndarray) -> np.ndarray:
        """Mean ``X`` of the ``n_neighbors`` reference cells nearest to each latent code (no-decoder path)."""
        from sklearn.neighbors import NearestNeighbors

        ref = self.reference_cells_
        k = min(int(self.init_params_["n_neighbors"]), len(ref))
        nn = NearestNeighbors(n_neighbors=k).fit(self._latents()[ref])
        idx = nn.kneighbors(z, return_distance=False)
        X = self.adata.X[ref]
        weights = sparse.csr_matrix(
            (np.full(idx.size, 1.0 / k), (np.repeat(np.arange(len(z)), k), idx.ravel())), shape=(len(z), len(ref))
        )
        out = weights @ X
        return np.asarray(out.toarray() if sparse.issparse(out) else out, dtype=np.float32)

    def _predict(self, perturbations: list[str], n_cells: int = 300) -> Predictions:
        gen = self.sample(perturbations, n_cells, rng=self.sample_seed_)
        codes = gen.obs["perturbation"].cat.codes.to_numpy()
        order = list(gen.obs["perturbation"].cat.categories)
        from ...pp._deg_core import group_moments

        means = group_moments(gen.X, codes, len(order)).mean
        mean = means[[order.index(p) for p in perturbations]]
        return Predictions.from_arrays(self.data_.var_names, perturbations, mean=mean)

    # ------------------------------------------------------------------ interpretation
    def integrated_gradients(
        self,
        perturbation: str,
        *,
        state_key: str,
        target: str,
        n_noise: int = 64,
        n_steps: int = 32,
        rng: int | np.random.Generator | None = 0,
    ) -> pd.Series:
        """Integrated gradients (captum) of a cell-state classifier's score w.r.t. the perturbation representation.

        Attributions are per GO term for the GenotypeVAE, per embedding dimension otherwise.

        A small classifier of ``adata.obs[state_key]`` from scVI latents is trained; the attributed function is the
        mean probability of ``target`` over cells generated from ``n_noise`` fixed noise draws. The baseline is the
        all-zero representation input.

        Returns
        -------
        Attributions indexed by GO term (or embedding dimension), sorted by absolute value. ``attrs["score"]`` and
        ``attrs["baseline_score"]`` hold the function at the input and at the baseline: the attributions sum to their
        difference up to the ``n_steps`` Riemann error (IG's completeness).
        """
        import torch
        from captum.attr import IntegratedGradients

        from ._module import StateClassifier

        if state_key not in self.adata.obs:
            msg = f"`adata.obs[{state_key!r}]` not found; pass a column of cell states (e.g. Leiden clusters)."
            raise KeyError(msg)
        states = self.adata.obs[state_key].astype(str)
        classes = sorted(states.unique())
        if target not in classes:
            msg = f"`target={target!r}` not among the states {classes}."
            raise ValueError(msg)
        rng = _as_rng(rng)
        seed = _torch_seed(rng)
        z = torch.from_numpy(self._latents(give_mean=True))
        y = torch.from_numpy(np.array([classes.index(s) for s in states]))
        with torch_seeded(seed):
            clf = StateClassifier(z.shape[1], len(classes))
            train_loop(
                clf,
                lambda m, zz, yy: torch.nn.functional.cross_entropy(m(zz), yy),
                (z, y),
                max_epochs=30,
                lr=1e-2,
                seed=seed,
                show_progress_bar=False,
            )
        genes = [self.data_.targets(perturbation)]
        if self.init_params_["representation"] == "genotype_vae":
            x = torch.from_numpy(self.genotype_vae_.vectors(genes))
            names = list(self.genotype_vae_.go.terms)
            encoder = self.genotype_vae_.module_.eval()

            def to_rep(inp):
                return encoder.encode(inp)[0]
        else:
            x = torch.from_numpy(self.representations([perturbation]))
            names = [f"dim{i}" for i in range(x.shape[1])]

            def to_rep(inp):
                return inp

        v = torch.from_numpy(rng.standard_normal((n_noise, self.flow_.perms.shape[1])).astype(np.float32))
        flow = self.flow_.eval()
        k = classes.index(target)

        def score(inp):
            rep = to_rep(inp)  # (B, d)
            cells = flow.inverse(v.repeat(len(rep), 1), rep.repeat_interleave(n_noise, dim=0))
            return torch.softmax(clf(cells), dim=1)[:, k].reshape(len(rep), n_noise).mean(1)

        baseline = torch.zeros_like(x)
        attr = IntegratedGradients(score).attribute(x, baselines=baseline, n_steps=n_steps)
        out = pd.Series(attr.detach().numpy().ravel(), index=names, name=f"IG {perturbation} -> {target}")
        out = out.reindex(out.abs().sort_values(ascending=False).index)
        with torch.no_grad():  # completeness: the attributions sum to about score - baseline_score
            out.attrs |= {"score": float(score(x)[0]), "baseline_score": float(score(baseline)[0])}
        return out

    # ------------------------------------------------------------------ save / load
    def _get_state(self) -> dict[str, np.ndarray]:
        state = {f"flow/{k}": v for k, v in state_to_numpy(self.flow_.state_dict()).items()}
        if self.scvi_model_ is not None:
            params, scvi_state = _scvi.export_scvi(self.scvi_model_)
            state |= {f"scvi/{k}": v for k, v in scvi_state.items()}
            state["scvi_params"] = np.array(json.dumps(params))
        if self._uses_decoder():
            state["log_library"] = self.log_library_
        else:
            state["reference_cells"] = np.asarray(self.adata.obs_names[self.reference_cells_], dtype=str)
        state["sample_seed"] = np.array(self.sample_seed_)
        if self.genotype_vae_ is not None:
            gv = self.genotype_vae_
            state |= {f"gvae/{k}": v for k, v in state_to_numpy(gv.module_.state_dict()).items()}
            coo = gv.go.matrix.tocoo()
            state |= {
                "go_rows": coo.row,
                "go_cols": coo.col,
                "go_genes": np.asarray(gv.go.genes, dtype=str),
                "go_terms": np.asarray(gv.go.terms, dtype=str),
            }
        if self.embedding_ is not None:
            state |= table_state("embedding", self.embedding_)
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        from ...pp._gene_embeddings import GOMatrix
        from ._module import ConditionalINN

        if "scvi_params" in state:
            self.scvi_model_ = _scvi.restore_scvi(
                self._cells(),
                json.loads(str(state["scvi_params"])),
                {k[5:]: v for k, v in state.items() if k.startswith("scvi/")},
            )
        if "log_library" in state:
            self.log_library_ = state["log_library"]
        if "reference_cells" in state:
            _check_latents(self.adata, self.init_params_["latent_key"])
            names = pd.Index(state["reference_cells"].astype(str))
            pos = self.adata.obs_names.get_indexer(names)
            if (pos < 0).any():
                msg = f"{int((pos < 0).sum())} reference cells of the saved model are not in `adata.obs_names`; load it with the AnnData it was fitted on."
                raise KeyError(msg)
            self.reference_cells_ = pos
        self.sample_seed_ = int(state["sample_seed"])
        if "go_genes" in state:
            genes, terms = pd.Index(state["go_genes"].astype(str)), pd.Index(state["go_terms"].astype(str))
            mat = sparse.csr_matrix(
                (np.ones(len(state["go_rows"]), dtype=bool), (state["go_rows"], state["go_cols"])),
                shape=(len(genes), len(terms)),
            )
            self.genotype_vae_ = GenotypeVAE(
                GOMatrix(mat, genes, terms), n_latent=self.init_params_.get("n_latent", 10)
            )
            self.genotype_vae_.module_.load_state_dict(
                state_from_numpy({k[5:]: v for k, v in state.items() if k.startswith("gvae/")})
            )
            self.genotype_vae_.module_.eval()
        self.embedding_ = table_from_state(state, "embedding")
        flow_state = {k[5:]: v for k, v in state.items() if k.startswith("flow/")}
        dim = flow_state["perms"].shape[1]
        cond_in = flow_state["cond_net.0.weight"].shape[1]
        p = self.init_params_
        self.flow_ = ConditionalINN(dim, cond_in, n_blocks=p["n_blocks"], cond_dim=p["cond_dim"], hidden=p["hidden"])
        self.flow_.load_state_dict(state_from_numpy(flow_state))
        self.flow_.eval()
