"""Tools: models (baselines eager; torch models lazy), cross-validation, genetic interactions."""

from __future__ import annotations

from typing import Any

from ._base import LabelledData, PerturbationModel, Predictions, read_predictions
from ._baselines import (
    KNN,
    Additive,
    ControlMean,
    CrisprInformedMean,
    EmbeddingRidge,
    Linear,
    NonControlMean,
    RandomPerturbation,
)
from ._calibrator import ProbabilityCalibrator
from ._conformal import conformal_intervals
from ._gi import (
    gi_accuracy,
    gi_class_proba,
    gi_intervals,
    gi_precision_at_k,
    gi_precision_sets,
    gi_score_agreement,
    gi_scores,
    gi_subtypes,
)
from ._gi_classifier import GIClassifier, GIClassifierCV, gi_classifier_cv, gi_features, threshold_classes
from ._gi_core import distance_correlation, gi_scores_core, theil_sen
from ._label_models import (
    EmbeddingLogistic,
    FrequencyPrior,
    KNNLabels,
    LabelStacking,
    PriorSourceCombination,
    SourceRanking,
)
from ._protocols import CVResults, cross_validate, few_shot, learning_curve

_LAZY = {
    "STAMP": "._stamp",
    "GPModel": "._gp",
    "PerturbNet": "._perturbnet",
    "GenotypeVAE": "._perturbnet",
    "PerturbationEncoder": "._perturbnet",
}


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
    "EmbeddingLogistic",
    "EmbeddingRidge",
    "FrequencyPrior",
    "GIClassifier",
    "GIClassifierCV",
    "KNNLabels",
    "LabelStacking",
    "LabelledData",
    "Linear",
    "NonControlMean",
    "PerturbationModel",
    "Predictions",
    "PriorSourceCombination",
    "ProbabilityCalibrator",
    "RandomPerturbation",
    "SourceRanking",
    "conformal_intervals",
    "cross_validate",
    "distance_correlation",
    "few_shot",
    "gi_accuracy",
    "gi_class_proba",
    "gi_classifier_cv",
    "gi_features",
    "gi_intervals",
    "gi_precision_at_k",
    "gi_precision_sets",
    "gi_score_agreement",
    "gi_scores",
    "gi_scores_core",
    "gi_subtypes",
    "learning_curve",
    "read_predictions",
    "theil_sen",
    "threshold_classes",
]
