"""Plotting: every function takes ``ax=`` where it draws one panel and returns the Axes (or Figure)."""

from ._metrics import deg_counts, metrics, model_scatter, prediction_scatter

__all__ = ["deg_counts", "metrics", "model_scatter", "prediction_scatter"]
