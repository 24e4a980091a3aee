"""STAMP as a ``pt.tl`` model: AnnData <-> tensors, training loop, model selection, predictions."""

from __future__ import annotations

import copy
import logging
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from ..._utils import _torch_seed
from ...pp._embeddings import embedding_coverage
from .._base import EmbeddingInput, FineTunable, PerturbationModel, Predictions, table_from_state, table_state
from .._torch import ModelSelection, fit_loop, resolve_device, state_from_numpy, state_to_numpy, torch_seeded

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from anndata import AnnData

logger = logging.getLogger(__name__)


class STAMP(EmbeddingInput, FineTunable, PerturbationModel):
    """STAMP: subtask decomposition (DEG? up or down? by how much?) on frozen gene embeddings (Gao et al. 2024).

    Parameters
    ----------
    adata
        Cells x genes AnnData labelled by :func:`perturbtools.pp.deg_labels`.
    embedding
        Genes x d DataFrame, or an ``adata.uns`` / ``adata.varm`` key holding one. It must cover every perturbed
        gene (a clear error names those it lacks); output genes without a row get a learned row
        (``missing_output_genes="learn"``) or raise (``"error"``).
    gene_specific
        One output layer per gene in heads 2 and 3 (the paper's variant; the reference code shares it).
    hidden1, hidden2, hidden3
        Layer sizes (reference defaults: (1024, 2048), (128, 64, 32), (16, 8)).
    dropout1
        Dropout in head 1. The reference code declares 0.9 but switches the model to eval mode at the first
        validation and never back, so its dropout acts in the first epoch only; the default 0 reproduces how it
        effectively trains (and its DE accuracy: ``benchmarks/bench_stamp_reference.py``). 0.9 is the declared value.
    missing_output_genes
        ``"learn"`` or ``"error"``.
    aliases
        Symbol/alias table (:func:`perturbtools.data.gene_aliases`) to map old symbols to embedding rows.
    **kwargs
        ``labels_key``, ``split_key``.

    Attributes
    ----------
    coverage_
        Per perturbed and output gene: whether the embedding covers it and through which row.
    history_
        Per-epoch training and validation losses.
    """

    _learns_de_labels = True

    _default_key: ClassVar[str] = "stamp"
    #: ``fit`` holds out validation perturbations for model selection unless given ``val_perturbations=[]``
    selects_on_validation: ClassVar[bool] = True
    _needs_expression: ClassVar[bool] = False  # learns from labels; heads 2-3 only where direction / FC exist

    def __init__(
        self,
        adata: AnnData,
        *,
        embedding: str | pd.DataFrame = "gene_emb",
        gene_specific: bool = False,
        hidden1: Sequence[int] = (1024, 2048),
        dropout1: float = 0.0,
        hidden2: Sequence[int] = (128, 64, 32),
        hidden3: Sequence[int] = (16, 8),
        missing_output_genes: str = "learn",
        aliases: pd.DataFrame | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            adata, embedding=self._embedding_param(embedding), gene_specific=gene_specific, hidden1=list(hidden1), dropout1=dropout1,
            hidden2=list(hidden2), hidden3=list(hidden3), missing_output_genes=missing_output_genes, **kwargs,
        )  # fmt: skip
        self.aliases = aliases
        self._set_embedding(embedding)
        self.module_ = None
        if self.embedding_ is not None:
            self._build()

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        import torch

        from ._module import STAMPModule

        cover = embedding_coverage(self.embedding_, self.data_.var_names, aliases=self.aliases)
        missing = cover.index[~cover["covered"]]
        if len(missing) and self.init_params_["missing_output_genes"] == "error":
            msg = (
                f"{len(missing)} output genes have no embedding (e.g. {list(missing[:10])}). Pass "
                "`missing_output_genes='learn'` to learn their rows, or use an embedding that covers `adata.var_names`."
            )
            raise KeyError(msg)
        if len(missing):
            logger.warning(
                "STAMP: %d of %d output genes lack an embedding; their rows are learned.", len(missing), len(cover)
            )
        rows = self.embedding_.reindex(cover["match"].where(cover["covered"], None)).to_numpy(np.float32)
        rows = np.nan_to_num(rows, nan=0.0)
        self.coverage_ = cover
        p = self.init_params_
        self.module_ = STAMPModule(
            torch.from_numpy(rows), learn_rows=torch.from_numpy(~cover["covered"].to_numpy(bool)),
            hidden1=tuple(p["hidden1"]), dropout1=p["dropout1"], hidden2=tuple(p["hidden2"]), hidden3=tuple(p["hidden3"]),
            gene_specific=p["gene_specific"],
        )  # fmt: skip

    def _embed(self, perturbations: Sequence[str]) -> np.ndarray:
        return super()._embed(perturbations).astype(np.float32)

    def _targets(self, perturbations: Sequence[str]):
        idx = self.data_.index(perturbations)
        return (
            self.data_.is_de[idx].astype(np.float32),
            (self.data_.direction[idx] > 0).astype(np.float32),
            np.nan_to_num(self.data_.fc[idx], nan=1.0).astype(np.float32),  # unused where FC is undefined (weight 0)
        )

    def _loss_weights(self) -> tuple[float, float, float]:
        """The reference weights (0.1, 0.5, 0.4); a subtask without labels (label-only data) gets weight 0."""
        sub = self.data_.subtasks
        w = (0.1, 0.5 if sub["direction"] else 0.0, 0.4 if sub["fc"] else 0.0)
        if w[1] == 0 and w[2] == 0:
            logger.info("STAMP: direction and fold-change labels are undefined here; only head 1 (DE) is trained.")
        return w

    # ------------------------------------------------------------------ training
    def fit(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        rng: int | np.random.Generator | None = 0,
        max_epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        val_perturbations: Sequence[str] | None = None,
        val_fraction: float = 0.1,
        early_stopping_patience: int | None = None,
        warm_start: bool = False,
        accelerator: str = "auto",
        show_progress_bar: bool | None = None,
    ) -> Self:
        """Train STAMP's three subtask heads on training perturbations, selecting the heads on validation perturbations.

        Parameters
        ----------
        perturbations
            Training perturbations; default: the split's ``train`` set, else every labelled perturbation.
        rng
            Seed or :class:`numpy.random.Generator`; ``0`` by default so results reproduce.
        max_epochs
            Epochs.
        batch_size
            Perturbations per batch (64 in the reference).
        lr, weight_decay
            AdamW settings (lr 1e-4 in the reference).
        val_perturbations
            Validation perturbations for model selection; default: the split's ``val`` set when fitting on the
            split, else ``val_fraction`` of ``train`` drawn at random (at least one).
        val_fraction
            Share of training perturbations held out for validation when none are given.
        early_stopping_patience
            Stop when neither validation L1 nor L3 improved for this many epochs (``None``: run all, as the reference).
        warm_start
            Continue from the current weights (fine-tuning) instead of re-initialising.
        accelerator
            ``"cpu"``, ``"cuda"`` or ``"auto"``.
        show_progress_bar
            Progress bar over epochs.

        Returns
        -------
        The fitted model.
        """
        return super().fit(
            perturbations,
            rng=rng,
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            val_perturbations=val_perturbations,
            val_fraction=val_fraction,
            early_stopping_patience=early_stopping_patience,
            warm_start=warm_start,
            accelerator=accelerator,
            show_progress_bar=show_progress_bar,
        )

    def _fit(
        self,
        train: list[str],
        *,
        rng: np.random.Generator,
        max_epochs: int,
        batch_size: int,
        lr: float,
        weight_decay: float,
        val_perturbations: Sequence[str] | None,
        val_fraction: float,
        early_stopping_patience: int | None,
        warm_start: bool,
        accelerator: str,
        show_progress_bar: bool | None,
    ) -> None:
        """Train on ``train`` (arguments: see :meth:`fit`)."""
        import torch

        from ._module import stamp_losses

        train = list(train)
        if val_perturbations is None and self._split("val") and set(train) == set(self._split("train") or []):
            val_perturbations = self._split("val")
        if val_perturbations is None and len(train) >= 2:
            n_val = max(1, round(val_fraction * len(train)))
            order = rng.permutation(len(train))
            val_perturbations = [train[i] for i in order[:n_val]]
            train = [train[i] for i in order[n_val:]]
        val = list(val_perturbations or [])
        self.train_perturbations_ = train  # what the weights were fitted on (validation perturbations excluded)
        device = resolve_device(accelerator)
        seed = _torch_seed(rng)
        with torch_seeded(seed, device):
            if not warm_start or self.module_ is None:
                self._build()
            module = self.module_.to(device)
            x_tr = torch.from_numpy(self._embed(train)).to(device)
            y_tr = [torch.from_numpy(a).to(device) for a in self._targets(train)]
            x_va = torch.from_numpy(self._embed(val)).to(device) if val else None
            y_va = [torch.from_numpy(a).to(device) for a in self._targets(val)] if val else None
            va_entries = y_va[0].nonzero(as_tuple=True) if val else None  # the validation DEGs, fixed across epochs
            weights = self._loss_weights()
            select_rest_by = "l3" if weights[2] > 0 else ("l2" if weights[1] > 0 else "l1")
            select_rest = bool(val) and float(y_va[0].sum()) > 0
            if val and not select_rest:
                warnings.warn(
                    f"STAMP: the {len(val)} validation perturbation(s) have no DEG, so heads 2-3 (direction, FC) "
                    "cannot be selected on them and are taken from the last epoch; head 1 is still selected by "
                    "validation L1. Pass `val_perturbations=` with DEGs to select them.",
                    UserWarning,
                    stacklevel=3,
                )
            if float(y_tr[0].sum()) == 0:  # the base class has warned if the whole training set has none
                logger.info("STAMP: the %d training perturbations have no DEG; no step is taken.", len(train))
            optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay, fused=True)

            def batch_loss(m, idx):
                b = idx.to(device)
                is_de = y_tr[0][b]
                if is_de.sum() == 0:  # the reference skips batches without any DEG
                    return None
                # heads 2 and 3 only at the batch's DEGs: the only entries their losses count
                out = m(x_tr[b], entries=is_de.nonzero(as_tuple=True))
                return stamp_losses(out, is_de, y_tr[1][b], y_tr[2][b], weights=weights)

            def val_loss(m):
                vl = stamp_losses(m(x_va, entries=va_entries), *y_va, weights=weights)
                return {k: vl[k] for k in ("l1", "l2", "l3")}

            history = fit_loop(
                module, batch_loss, len(train), optimizer=optimizer, val_loss=val_loss if val else None,
                selection=_HeadSelection(module, f"val_{select_rest_by}" if select_rest else None) if val else None,
                max_epochs=max_epochs, batch_size=batch_size, patience=early_stopping_patience, seed=seed,
                device=device, show_progress_bar=show_progress_bar, desc="STAMP", log_names=("l1", "l2", "l3"),
            )  # fmt: skip
        self.module_ = module
        self.history_ = history
        self.val_perturbations_ = val

    @classmethod
    def from_pretrained(cls, model: STAMP, adata: AnnData, **kwargs: Any) -> STAMP:
        """A copy of ``model``'s weights bound to ``adata`` (same genes), e.g. another cell line."""
        if model.module_ is None:
            msg = "The source model has no weights; fit it first."
            raise RuntimeError(msg)
        if list(adata.var_names) != list(model.data_.var_names):
            msg = "The target AnnData must have the same `var_names`, in the same order, as the pretrained model's."
            raise ValueError(msg)
        params = {**model.init_params_, **kwargs}
        params.pop("embedding", None)
        new = cls(adata, embedding=model.embedding_, aliases=model.aliases, **params)
        new.module_.load_state_dict(model.module_.state_dict())
        new.pretrained_on_ = list(model.train_perturbations_)
        new.is_fitted_ = True  # usable zero-shot; `fine_tune` continues from these weights
        return new

    # ------------------------------------------------------------------ prediction
    def _predict(self, perturbations: list[str], batch_size: int = 64) -> Predictions:
        import torch

        self.module_.eval()
        x = torch.from_numpy(self._embed(perturbations))
        parts = {"de_proba": [], "direction_proba": [], "logfc": []}
        with torch.no_grad():  # in batches: heads 2-3 hold a (batch, genes, 128) tensor
            for start in range(0, len(x), batch_size):
                out = self.module_(x[start : start + batch_size])
                parts["de_proba"].append(torch.sigmoid(out["de_logit"]).numpy())
                parts["direction_proba"].append(torch.sigmoid(out["direction_logit"]).numpy())
                parts["logfc"].append((out["log_fc"] / np.log(2)).numpy())
        arrays = {k: np.concatenate(v) if v else np.zeros((0, len(self.data_.var_names))) for k, v in parts.items()}
        return Predictions.from_arrays(self.data_.var_names, perturbations, **arrays)

    # ------------------------------------------------------------------ save / load
    def _get_state(self) -> dict[str, np.ndarray]:
        return {
            **{f"module/{k}": v for k, v in state_to_numpy(self.module_.state_dict()).items()},
            **table_state("embedding", self.embedding_),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.embedding_ = table_from_state(state, "embedding")
        self._build()
        module_state = {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("module/")}
        self.module_.load_state_dict(state_from_numpy(module_state))
        self.module_.eval()


class _HeadSelection(ModelSelection):
    """STAMP's two checkpoints, a :class:`ModelSelection` for :func:`fit_loop`.

    Head 1 comes from the epoch of lowest validation L1, the rest (shared layers, heads 2-3) from the epoch of lowest
    ``rest_key`` (validation L3, or L2 / L1 when those heads are off); with ``rest_key`` ``None`` (validation
    without DEGs) the rest is the last epoch's.
    """

    def __init__(self, module, rest_key: str | None) -> None:

        super().__init__(module, "val_l1")
        self.rest_key, self.best_rest, self.rest = rest_key, np.inf, copy.deepcopy(module.state_dict())

    def update(self, row: dict, module) -> bool:

        improved = super().update(row, module)
        if self.rest_key is not None and row[self.rest_key] < self.best_rest:
            self.best_rest, self.rest, improved = row[self.rest_key], copy.deepcopy(module.state_dict()), True
        return improved

    def restore(self, module) -> None:
        merged = dict(self.rest if self.rest_key is not None else module.state_dict())
        merged.update({k: v for k, v in self.state.items() if k.startswith("head1.")})
        module.load_state_dict(merged)
