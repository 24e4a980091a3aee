"""perturbtools: predict and evaluate responses of cells to genetic perturbations in AnnData."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import data, get, metrics, pl, pp, tl
from ._settings import settings

try:
    __version__ = version("perturbtools")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = ["data", "get", "metrics", "pl", "pp", "settings", "tl"]
