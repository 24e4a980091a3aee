"""Tools: models (baselines eager; torch models lazy), conformal intervals, genetic interactions.

Cross-validation, learning curves and few-shot moved to :mod:`perturbtools.bm`; their old names here still work for
one release, with a :class:`FutureWarning`.
"""

from __future__ import annotations

from typing import Any

from ._base import (
    EmbeddingInput,
    FineTunable,
    Generative,
    LabelledData,
    PerturbationModel,
    Predictions,
    read_predictions,
)
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
    gi_interval_coverage,
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

_LAZY = {
    "STAMP": "._stamp",
    "GPModel": "._gp",
    "PerturbNet": "._perturbnet",
    "GenotypeVAE": "._perturbnet",
    "PerturbationEncoder": "._perturbnet",
}


#: moved to ``pt.bm``; kept here as aliases until 0.3
_MOVED_TO_BM = ("CVResults", "cross_validate", "few_shot", "learning_curve")


def __getattr__(name: str) -> Any:
    """Import torch-based models only on first access (``import perturbtools`` stays torch-free)."""
    if name in _MOVED_TO_BM:
        import warnings

        from .. import bm

        warnings.warn(
            f"`pt.tl.{name}` moved to `pt.bm.{name}`; the old name will be removed in perturbtools 0.3.",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(bm, name)
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
    "ControlMean",
    "CrisprInformedMean",
    "EmbeddingInput",
    "EmbeddingLogistic",
    "EmbeddingRidge",
    "FineTunable",
    "FrequencyPrior",
    "GIClassifier",
    "GIClassifierCV",
    "Generative",
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
    "distance_correlation",
    "gi_accuracy",
    "gi_class_proba",
    "gi_classifier_cv",
    "gi_features",
    "gi_interval_coverage",
    "gi_intervals",
    "gi_precision_at_k",
    "gi_precision_sets",
    "gi_score_agreement",
    "gi_scores",
    "gi_scores_core",
    "gi_subtypes",
    "read_predictions",
    "theil_sen",
    "threshold_classes",
]
