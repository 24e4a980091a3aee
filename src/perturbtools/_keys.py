"""The naming scheme: every ``obs``/``var``/``varm``/``uns`` key written by perturbtools is built here."""

from __future__ import annotations

from typing import NamedTuple

PERTURBATION_KEY = "perturbation"
CONTROL = "control"
DELIMITER = "+"


class LabelKeys(NamedTuple):
    """``varm`` keys written by :func:`perturbtools.pp.deg_labels` (genes x perturbations frames)."""

    mean: str
    is_de: str
    direction: str
    fc: str
    logfc: str
    pvals: str
    pvals_adj: str
    scores: str
    top20: str
    top40: str
    top50: str
    large_effect: str
    control_mean: str  # a ``var`` column


def label_keys(prefix: str) -> LabelKeys:
    """Keys of the label frames written under ``prefix``."""
    return LabelKeys(*(f"{prefix}_{f}" for f in LabelKeys._fields))


class PredictionKeys(NamedTuple):
    """``varm`` keys written by a model's ``predict`` (genes x perturbations frames)."""

    mean: str
    de_proba: str
    direction_proba: str
    logfc: str
    mean_var: str


def prediction_keys(prefix: str) -> PredictionKeys:
    """Keys of the prediction frames written under ``prefix``."""
    return PredictionKeys(*(f"{prefix}_{f}" for f in PredictionKeys._fields))


class Subtask(NamedTuple):
    """One STAMP subtask's name in every place: its label frame, its prediction frame, its metrics."""

    label: str  # a LabelKeys field
    prediction: str  # a PredictionKeys field
    metrics: tuple[str, ...]  # per-perturbation columns of ``pt.metrics.evaluate`` (also ``pooled_*``, ``*_top40``)


#: The one vocabulary of the three subtasks (SPEC §1): ``de`` (is the gene a DEG), ``direction`` (up or down, on
#: true DEGs), ``fc`` (by what fold change, on true DEGs). Metric names end in the subtask's name.
SUBTASKS: dict[str, Subtask] = {
    "de": Subtask("is_de", "de_proba", ("roc_auc_de", "pr_auc_de")),
    "direction": Subtask("direction", "direction_proba", ("roc_auc_direction", "pr_auc_direction")),
    "fc": Subtask("fc", "logfc", ("pearson_fc", "mse_fc")),
}


def interval_key(prefix: str, level: float, bound: str) -> str:
    """``varm`` key of the ``bound`` (``"lower"`` / ``"upper"``) of a ``level`` prediction interval, e.g. ``gp_lower90``."""
    return f"{prefix}_{bound}{round(level * 100):02d}"


def gi_key(prefix: str) -> str:
    """``uns`` key of genetic-interaction scores computed from the result ``prefix``."""
    return f"{prefix}_gi"


#: ``key_added`` of the main job's labels and of its cross-validated predictions
LABELS_KEY = "deg"
CV_KEY = "cv"


def embedding_key(name: str) -> str:
    """``uns`` / ``varm`` key under which the main job stores the gene embedding ``name`` (e.g. ``emb_go``)."""
    return f"emb_{name}"


def cv_prediction_key(cv_key: str, model: str) -> str:
    """``key_added`` of a model's out-of-fold predictions written by ``pt.bm.cross_validate(key_added=cv_key)``."""
    return f"{cv_key}_{model}"
