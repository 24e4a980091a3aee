"""Global settings: verbosity, dataset directory, progress bars."""

from __future__ import annotations

import logging
import os
from pathlib import Path

_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}
DATA_DIR_ENV = "PERTURBTOOLS_DATA_DIR"


class _Settings:
    """Package-wide settings (``pt.settings``).

    Attributes
    ----------
    datasetdir
        Folder where dataset loaders look for and cache files. Defaults to the environment variable
        ``PERTURBTOOLS_DATA_DIR`` or ``~/.cache/perturbtools``.
    verbosity
        One of ``"error"``, ``"warning"``, ``"info"``, ``"debug"``.
    progress_bar
        Default for every ``show_progress_bar`` argument.
    """

    def __init__(self) -> None:
        self._datasetdir: Path | None = None
        self.progress_bar = True
        self._verbosity = "warning"
        self._handler: logging.Handler | None = None

    @property
    def datasetdir(self) -> Path:
        if self._datasetdir is not None:
            return self._datasetdir
        env = os.environ.get(DATA_DIR_ENV)
        return Path(env) if env else Path.home() / ".cache" / "perturbtools"

    @datasetdir.setter
    def datasetdir(self, path: str | os.PathLike | None) -> None:
        self._datasetdir = None if path is None else Path(path)

    @property
    def verbosity(self) -> str:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, level: str) -> None:
        if level not in _LEVELS:
            msg = f"`verbosity={level!r}` is not one of {list(_LEVELS)}."
            raise ValueError(msg)
        self._verbosity = level
        logger = logging.getLogger("perturbtools")
        logger.setLevel(_LEVELS[level])
        if self._handler is None:
            self._handler = logging.StreamHandler()
            self._handler.setFormatter(logging.Formatter("%(levelname)s [%(name)s] %(message)s"))
            logger.addHandler(self._handler)


settings = _Settings()
logging.getLogger("perturbtools").addHandler(logging.NullHandler())
