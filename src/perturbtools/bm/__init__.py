"""Benchmarks: cross-validation, learning curves, few-shot transfer, and the main job (decoupler's ``bm`` wing).

Everything here *uses* models (``pt.tl``) and metrics (``pt.metrics``); nothing below imports it.
"""

from __future__ import annotations

from ._cross_validation import CVResults, cross_validate
from ._curves import few_shot, learning_curve
from ._recipes import DATASETS, MODELS, DatasetRecipe, ModelRecipe
from ._run import BenchmarkConfig, run_benchmark

__all__ = [
    "DATASETS",
    "MODELS",
    "BenchmarkConfig",
    "CVResults",
    "DatasetRecipe",
    "ModelRecipe",
    "cross_validate",
    "few_shot",
    "learning_curve",
    "run_benchmark",
]
