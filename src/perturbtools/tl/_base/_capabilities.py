"""Capability mixins: what a model family can do beyond ``fit`` / ``predict`` (scvi-tools-style mixins)."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from anndata import AnnData


class FineTunable:
    """A model whose weights can move to another AnnData with the same genes and continue training there.

    Used by :func:`perturbtools.bm.few_shot`: pretrain on a source cell line, ``from_pretrained`` on the target,
    ``fine_tune`` on ``n`` target perturbations.
    """

    @classmethod
    @abstractmethod
    def from_pretrained(cls, model: Any, adata: AnnData, **kwargs: Any) -> Self:
        """A copy of ``model``'s weights bound to ``adata`` (same ``var_names``), usable zero-shot."""

    def fine_tune(
        self, perturbations: Sequence[str], *, rng: int | np.random.Generator | None = 0, **train_kwargs: Any
    ) -> Self:
        """Continue training from the current weights on ``perturbations`` (``fit(..., warm_start=True)``)."""
        return self.fit(perturbations, rng=rng, warm_start=True, **train_kwargs)  # type: ignore[attr-defined]


class Generative:
    """A model that generates whole cells, not only mean responses."""

    @abstractmethod
    def sample(
        self, perturbations: Sequence[str], n_cells: int = 200, *, rng: int | np.random.Generator | None = 0
    ) -> AnnData:
        """``n_cells`` generated cells per perturbation as a new AnnData (``obs['perturbation']``, expression in ``X``)."""
