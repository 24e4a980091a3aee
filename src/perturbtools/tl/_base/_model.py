"""Base class of every ``pt.tl`` model: one ``fit`` / ``predict`` / ``save`` / ``load`` for all families."""

from __future__ import annotations

import json
import logging
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import pandas as pd

from ..._labelled import LabelledData
from ..._predictions import Predictions, write_predictions
from ..._utils import _as_rng
from ..._validation import _as_anndata, _check_fitted

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)

_STATE_FILE = "model.npz"
_META_FILE = "model.json"


class PerturbationModel(ABC):
    """Base class of all ``pt.tl`` models.

    Hyperparameters go to ``__init__`` and are saved; training arguments go to :meth:`fit`. Subclasses implement
    ``_fit``, ``_predict`` and, for :meth:`save`, ``_get_state`` / ``_set_state`` (arrays only, no pickle).

    Parameters
    ----------
    adata
        Cells x genes AnnData labelled by :func:`perturbtools.pp.deg_labels`.
    labels_key
        ``key_added`` of those labels.
    split_key
        ``adata.uns`` key of a split from :func:`perturbtools.pp.split_perturbations`, used when :meth:`fit` and
        :meth:`predict` get no perturbations.
    """

    _default_key: ClassVar[str] = "model"
    #: whether the family learns from expression means (cells); label-only data then raise a clear error
    _needs_expression: ClassVar[bool] = True
    #: whether ``fit`` needs at least one training perturbation (``False`` for models that transfer from a source)
    needs_training: ClassVar[bool] = True
    #: whether ``fit`` holds out validation perturbations for model selection (``val_perturbations``, e.g. STAMP)
    selects_on_validation: ClassVar[bool] = False
    #: whether the family learns from the DEG labels (a warning when the training perturbations have none)
    _learns_de_labels: ClassVar[bool] = False

    def __init__(self, adata: AnnData, *, labels_key: str = "deg", split_key: str = "split", **hparams: Any) -> None:
        self.adata = _as_anndata(adata)
        self.data_ = LabelledData.from_adata(self.adata, labels_key)
        if self._needs_expression and self.data_.label_only:
            msg = (
                f"{type(self).__name__} learns from expression, but the labels under {labels_key!r} have no cells "
                "(label-only data, e.g. from `pt.pp.labels_from_de_table`): there are no means to fit. Use a model "
                "that learns from labels (`pt.tl.STAMP`, `FrequencyPrior`, `KNNLabels`, `SourceRanking`, "
                "`PriorSourceCombination`, `LabelStacking`)."
            )
            raise ValueError(msg)
        self.data_keys_ = {"labels_key": labels_key, "split_key": split_key}
        self.init_params_ = hparams
        self.is_fitted_ = False
        self.train_perturbations_: list[str] = []
        self.history_ = None

    def __repr__(self) -> str:
        state = f"fitted on {len(self.train_perturbations_)} perturbations" if self.is_fitted_ else "not fitted"
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.init_params_.items())}) [{state}]"

    # ---------------------------------------------------------------- fit / predict
    def _split(self, part: str) -> list[str] | None:
        split = self.adata.uns.get(self.data_keys_["split_key"])
        return None if split is None else [str(p) for p in split[part]]

    def _split_part(self, part: str) -> list[str]:
        """The split's ``part``; every labelled perturbation when there is no split; an error when it is empty."""
        split = self._split(part)
        if split is None:
            return list(self.data_.perturbations)
        if not split:
            key = self.data_keys_["split_key"]
            msg = (
                f"The {part} set of the split `adata.uns[{key!r}]` is empty: nothing to {'train on' if part == 'train' else 'predict'}. "
                "Pass perturbations explicitly, or re-split with `pt.pp.split_perturbations`."
            )
            raise ValueError(msg)
        return split

    def fit(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        rng: int | np.random.Generator | None = 0,
        **train_kwargs: Any,
    ) -> Self:
        """Fit on training perturbations.

        Parameters
        ----------
        perturbations
            Training perturbations; default: the split's ``train`` set, else every labelled perturbation.
        rng
            Seed or :class:`numpy.random.Generator`; ``0`` by default so results reproduce.
        **train_kwargs
            Training arguments of the model family.

        Returns
        -------
        The fitted model.
        """
        train = list(perturbations) if perturbations is not None else self._split_part("train")
        self.data_.index(train)  # clear error for unlabelled perturbations
        if not train and self.needs_training:
            msg = "No training perturbations."
            raise ValueError(msg)
        self.train_perturbations_ = train
        if self._learns_de_labels and train and not self.data_.is_de[self.data_.index(train)].any():
            self._warn_no_degs(train)
        self._fit(train, rng=_as_rng(rng), **train_kwargs)
        self.is_fitted_ = True
        return self

    @classmethod
    def fold_independent_setup(
        cls, adata: AnnData, init_kwargs: dict[str, Any], fit_kwargs: dict[str, Any], *, labels_key: str, seed: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Work that uses no perturbation label, done once before the folds of a protocol instead of in every fold.

        :func:`perturbtools.bm.cross_validate` and :func:`perturbtools.bm.learning_curve` call it once per model
        with the model's ``__init__`` and ``fit`` arguments and build every fold's model from what it returns. A
        family overrides it only for steps that would give every fold the same kind of result from the same data
        (e.g. :class:`perturbtools.tl.PerturbNet` trains its unsupervised scVI once). Default: nothing.

        Returns
        -------
        ``(init_kwargs, fit_kwargs)`` for the folds.
        """
        return init_kwargs, fit_kwargs

    def _warn_no_degs(self, train: list[str]) -> None:
        key = self.data_keys_["labels_key"]
        params = dict(self.adata.uns[key].get("params", {}))
        threshold = (
            f"BH-adjusted p <= {params['pval_cutoff']}" if "pval_cutoff" in params else "the labels' DEG threshold"
        )
        warnings.warn(
            f"{type(self).__name__}: none of the {len(train)} training perturbations has a DEG in the labels "
            f"`adata.uns[{key!r}]` ({self.adata.n_obs} cells x {self.adata.n_vars} genes, {threshold}); its DE "
            "output is learnt from all-negative labels. Check `adata.uns[labels_key]['n_de']`, loosen the threshold "
            "(`pt.pp.deg_labels(..., pval_cutoff=)`) or use data with more cells per perturbation.",
            UserWarning,
            stacklevel=3,
        )

    def predict(
        self, perturbations: Sequence[str] | None = None, *, key_added: str | None = None, inplace: bool = True
    ) -> Predictions | None:
        """Predict perturbations, seen or unseen, singles or combinations.

        Parameters
        ----------
        perturbations
            Labels to predict (need not be in the data); default: the split's ``test`` set, else every labelled one.
        key_added
            Prefix of the keys written (default: the model's name, e.g. ``"stamp"``).
        inplace
            Write into ``adata.varm`` / ``adata.uns``; else return the :class:`Predictions`.

        Returns
        -------
        With ``inplace=False``, the predictions; else writes ``adata.varm[f"{key_added}_{field}"]`` for each field of
        :class:`Predictions` the model produces, and ``adata.uns[key_added]`` (params, training and predicted
        perturbations, labels key).
        """
        _check_fitted(self)
        perts = list(perturbations) if perturbations is not None else self._split_part("test")
        preds = self._predict(perts)
        if not inplace:
            return preds
        write_predictions(self.adata, preds, key_added or self._default_key, params=self._params())
        return None

    def _params(self) -> dict[str, Any]:
        return {
            "model": type(self).__name__,
            "params": {k: v for k, v in self.init_params_.items() if v is not None},
            "labels_key": self.data_keys_["labels_key"],
            "train_perturbations": list(self.train_perturbations_),
        }

    @abstractmethod
    def _fit(self, train: list[str], *, rng: np.random.Generator, **train_kwargs: Any) -> None: ...

    @abstractmethod
    def _predict(self, perturbations: list[str]) -> Predictions: ...

    # ---------------------------------------------------------------- save / load
    def _get_state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:  # noqa: B027
        pass

    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Save hyperparameters (JSON) and fitted state (``.npz`` of arrays; no pickle) into ``dir_path``."""
        _check_fitted(self)
        path = Path(dir_path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            msg = f"{path} exists and is not empty; pass `overwrite=True`."
            raise FileExistsError(msg)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "class": type(self).__name__,
            "init_params": self.init_params_,
            "data_keys": self.data_keys_,
            "train_perturbations": self.train_perturbations_,
            "var_names": self.data_.var_names.tolist(),
        }
        (path / _META_FILE).write_text(json.dumps(meta, indent=1, default=_json_default))
        np.savez(path / _STATE_FILE, **self._get_state())

    @classmethod
    def load(cls, dir_path: str | Path, adata: AnnData) -> Self:
        """Load a model saved by :meth:`save` onto ``adata`` (same genes, labelled under the same key)."""
        path = Path(dir_path)
        meta = json.loads((path / _META_FILE).read_text())
        if meta["class"] != cls.__name__:
            msg = f"{path} holds a {meta['class']}, not a {cls.__name__}; use `pt.tl.{meta['class']}.load`."
            raise TypeError(msg)
        model = cls(adata, **meta["data_keys"], **meta["init_params"])
        if model.data_.var_names.tolist() != meta["var_names"]:
            msg = "`adata.var_names` differ from those the model was trained on; subset or reorder `adata` to match."
            raise ValueError(msg)
        with np.load(path / _STATE_FILE, allow_pickle=False) as state:
            model._set_state(dict(state))
        model.train_perturbations_ = list(meta["train_perturbations"])
        model.is_fitted_ = True
        return model


def table_state(name: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A genes-indexed table as two ``.npz`` arrays: ``name`` (values) and ``f"{name}_genes"`` (index)."""
    return {name: frame.to_numpy(), f"{name}_genes": frame.index.to_numpy(dtype=str)}


def table_from_state(state: dict[str, np.ndarray], name: str) -> pd.DataFrame | None:
    """Inverse of :func:`table_state`; ``None`` when the table was not saved."""
    if name not in state:
        return None
    return pd.DataFrame(state[name], index=state[f"{name}_genes"].astype(str))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    msg = f"Hyperparameter of type {type(obj).__name__} cannot be saved as JSON."
    raise TypeError(msg)
