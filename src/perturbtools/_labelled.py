"""Read-only view of what ``pt.pp.deg_labels`` wrote: everything a model or metric needs, as arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._keys import label_keys
from ._perturbation_labels import parse_perturbation
from ._validation import _as_anndata, _check_result

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from anndata import AnnData


_ALL_SUBTASKS = {"expression": True, "de": True, "direction": True, "fc": True}


@dataclass(frozen=True)
class LabelledData:
    """Labels of one AnnData as perturbation x gene arrays (rows follow ``perturbations``)."""

    var_names: pd.Index
    perturbations: list[str]
    mean: np.ndarray
    control_mean: np.ndarray
    is_de: np.ndarray
    direction: np.ndarray
    fc: np.ndarray
    scores: np.ndarray
    top20: np.ndarray
    top40: np.ndarray
    top50: np.ndarray
    large_effect: np.ndarray
    n_cells: np.ndarray
    modality: dict[str, str]
    hvg: np.ndarray
    control: str
    delimiter: str
    fc_offset: float
    #: which labels exist: ``expression`` (means from cells), ``de``, ``direction``, ``fc``; label-only data
    #: (:func:`perturbtools.pp.labels_from_de_table`) lack some of them
    subtasks: dict[str, bool] = field(default_factory=lambda: dict(_ALL_SUBTASKS))

    @classmethod
    def from_adata(cls, adata: AnnData, labels_key: str = "deg") -> LabelledData:
        """Collect the labels written under ``labels_key``."""
        adata = _as_anndata(adata)
        conditions = (
            adata.uns.get(labels_key, {}).get("conditions") if isinstance(adata.uns.get(labels_key), dict) else None
        )
        if conditions is not None:
            msg = (
                f"The labels under {labels_key!r} are per condition: pass one of "
                f"{[str(k) for k in dict(conditions).values()]} as `labels_key`."
            )
            raise KeyError(msg)
        keys = label_keys(labels_key)
        for key in (keys.mean, keys.is_de, keys.fc):
            _check_result(adata, key, producer=f"pt.pp.deg_labels(adata, key_added={labels_key!r})")
        uns = adata.uns[labels_key]
        perts = [str(p) for p in uns["perturbations"]]
        params = uns["params"]

        def frame(key: str) -> np.ndarray:
            return adata.varm[key][perts].to_numpy().T

        hvg = (
            adata.var["highly_variable"].to_numpy(bool)
            if "highly_variable" in adata.var
            else np.ones(adata.n_vars, dtype=bool)
        )
        return cls(
            var_names=adata.var_names.copy(),
            perturbations=perts,
            mean=frame(keys.mean).astype(np.float64),
            control_mean=adata.var[keys.control_mean].to_numpy(np.float64),
            is_de=frame(keys.is_de).astype(bool),
            direction=frame(keys.direction).astype(np.int8),
            fc=frame(keys.fc).astype(np.float64),
            scores=frame(keys.scores).astype(np.float64),
            top20=frame(keys.top20).astype(bool),
            top40=frame(keys.top40).astype(bool),
            top50=frame(keys.top50).astype(bool),
            large_effect=frame(keys.large_effect).astype(bool),
            n_cells=np.asarray(uns["n_cells"], dtype=np.float64),
            modality=dict(zip(perts, (str(m) for m in uns["modality"]), strict=True)),
            hvg=hvg,
            control=str(params["control"]),
            delimiter=str(params["delimiter"]),
            fc_offset=float(params["fc_offset"]),
            subtasks={**_ALL_SUBTASKS, **{k: bool(v) for k, v in dict(uns.get("subtasks", {})).items()}},
        )

    @property
    def label_only(self) -> bool:
        """Labels without cells (e.g. from published DE tables): no expression means to score or learn from."""
        return not self.subtasks["expression"]

    @property
    def delta(self) -> np.ndarray:
        """Mean minus control mean (perturbations x genes)."""
        return self.mean - self.control_mean

    def index(self, perturbations: Sequence[str]) -> np.ndarray:
        """Row positions of ``perturbations``; a clear error for unknown ones."""
        lookup = {p: i for i, p in enumerate(self.perturbations)}
        missing = [p for p in perturbations if p not in lookup]
        if missing:
            msg = f"Perturbations {missing[:10]} have no labels; labelled ones are e.g. {self.perturbations[:5]}."
            raise KeyError(msg)
        return np.array([lookup[p] for p in perturbations], dtype=int)

    def targets(self, perturbation: str) -> tuple[str, ...]:
        """Target genes of a perturbation label."""
        return parse_perturbation(perturbation, control=self.control, delimiter=self.delimiter)
