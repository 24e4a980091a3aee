"""Tools: models (baselines eager; torch models lazy), cross-validation, genetic interactions."""

from __future__ import annotations

from typing import Any

from ._base import LabelledData, PerturbationModel, Predictions, read_predictions
from ._baselines import KNN, Additive, ControlMean, CrisprInformedMean, Linear, NonControlMean, RandomPerturbation
from ._cv import CVResults, cross_validate

_LAZY = {"STAMP": "._stamp", "GPModel": "._gp", "PerturbNet": "._perturbnet", "GenotypeVAE": "._perturbnet"}


def __getattr__(name: str) -> Any:
    """Import torch-based models only on first access (``import perturbtools`` stays torch-free)."""
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name], __name__)
        except ImportError as err:
            msg = f"`pt.tl.{name}` needs optional dependencies: {err}. Install them with `pip install 'perturbtools[all]'`."
            raise ImportError(msg) from err
        return getattr(module, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "KNN",
    "Additive",
    "CVResults",
    "ControlMean",
    "CrisprInformedMean",
    "LabelledData",
    "Linear",
    "NonControlMean",
    "PerturbationModel",
    "Predictions",
    "RandomPerturbation",
    "cross_validate",
    "read_predictions",
]
