"""Locate or download a registered file under ``settings.datasetdir`` (pooch, sha256)."""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

from .._settings import DATA_DIR_ENV, settings
from ._registry import REGISTRY, DatasetFile

logger = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, *, registry: dict[str, DatasetFile] | None = None) -> Path:
    """Path of a registered dataset file, downloading it into ``settings.datasetdir`` if missing.

    A local file is used as it is when its sha256 matches the registry; a download is verified by pooch.

    Parameters
    ----------
    name
        Registry entry (see ``perturbtools.data._registry.REGISTRY``).
    registry
        Alternative registry (used by tests).

    Returns
    -------
    Path of the verified local file.
    """
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        msg = f"Unknown dataset {name!r}; choose one of {sorted(registry)}."
        raise KeyError(msg)
    entry = registry[name]
    folder = settings.datasetdir / entry.folder
    path = folder / entry.filename
    if path.exists():
        if entry.sha256 is not None and (digest := _sha256(path)) != entry.sha256:
            msg = f"{path} has sha256 {digest}, expected {entry.sha256}. Delete it to download a fresh copy."
            raise OSError(msg)
        return path
    may_download = settings.download if settings.download is not None else not settings.datasetdir_configured
    if not may_download:
        how = "a URL is registered" if entry.url else "no public URL is registered"
        msg = (
            f"{entry.filename} not found in the configured data folder {folder} "
            f"(`pt.settings.datasetdir` / ${DATA_DIR_ENV} = {settings.datasetdir}). Point it at the folder that holds "
            f"`{entry.folder}/{entry.filename}`"
            + ("; or set `pt.settings.download = True` to download it there." if entry.url else f" ({how}).")
        )
        raise FileNotFoundError(msg)
    if entry.url is None:
        msg = (
            f"{entry.filename} not found in {folder} and no public URL is registered for {name!r}. "
            f"Point `pt.settings.datasetdir` (or ${DATA_DIR_ENV}) at the folder that holds `{entry.folder}/`."
        )
        raise FileNotFoundError(msg)
    import pooch

    known = None if entry.sha256 is None else f"sha256:{entry.sha256}"
    if known is None:
        warnings.warn(
            f"No sha256 is registered for {name!r}; the download is not verified. Its hash is logged after download.",
            UserWarning,
            stacklevel=2,
        )
    logger.info("downloading %s to %s", entry.url, folder)
    out = Path(
        pooch.retrieve(
            entry.url, known_hash=known, fname=entry.filename, path=folder, progressbar=settings.progress_bar
        )
    )
    if known is None:
        logger.warning("sha256 of %s: %s", out, _sha256(out))
    return out
