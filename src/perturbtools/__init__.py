"""perturbtools: predict and evaluate responses of cells to genetic perturbations in AnnData."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import bm, data, get, metrics, pl, pp, tl
from ._settings import settings


def run_benchmark(*args, **kwargs):
    """Run the full benchmark (see :func:`perturbtools.bm.run_benchmark`)."""
    return bm.run_benchmark(*args, **kwargs)


try:
    __version__ = version("perturbtools")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = ["bm", "data", "get", "metrics", "pl", "pp", "run_benchmark", "settings", "tl"]
