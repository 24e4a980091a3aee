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
        ``PERTURBTOOLS_DATA_DIR`` or ``~/.cache/perturbtools``. A relative path is resolved against the working
        directory when it is set (or, for the environment variable, when it is first read), so a later change of
        directory (e.g. a notebook kernel started elsewhere) does not move it.
    download
        Whether loaders may download a missing file. ``None`` (default): only into the default cache, i.e. when no
        folder was configured; a configured folder that lacks a file raises :class:`FileNotFoundError` instead.
    verbosity
        One of ``"error"``, ``"warning"``, ``"info"``, ``"debug"``.
    progress_bar
        Default for every ``show_progress_bar`` argument.
    """

    def __init__(self) -> None:
        self._datasetdir: Path | None = None
        self._env_dir: tuple[str, Path] | None = None
        self.download: bool | None = None
        self.progress_bar = True
        self._verbosity = "warning"
        self._handler: logging.Handler | None = None

    @property
    def datasetdir(self) -> Path:
        if self._datasetdir is not None:
            return self._datasetdir
        env = os.environ.get(DATA_DIR_ENV)
        if not env:
            return Path.home() / ".cache" / "perturbtools"
        if self._env_dir is None or self._env_dir[0] != env:  # resolve once per value, against the cwd of then
            self._env_dir = (env, Path(env).expanduser().resolve())
        return self._env_dir[1]

    @datasetdir.setter
    def datasetdir(self, path: str | os.PathLike | None) -> None:
        self._datasetdir = None if path is None else Path(path).expanduser().resolve()

    @property
    def datasetdir_configured(self) -> bool:
        """Whether a data folder was set (``datasetdir`` or ``PERTURBTOOLS_DATA_DIR``) rather than the default."""
        return self._datasetdir is not None or bool(os.environ.get(DATA_DIR_ENV))

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
