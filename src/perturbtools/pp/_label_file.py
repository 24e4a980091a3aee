"""Label tables written to an h5ad file a block of perturbations at a time (``deg_labels(..., out=path)``).

The file is what ``deg_labels`` would have written into the AnnData, as anndata encodes it: ``var`` (genes, with the
control mean), one genes x perturbations DataFrame per label in ``varm`` (one dataset per perturbation column) and
``uns[key_added]``; no cells. ``anndata.read_h5ad(path)`` reads it back, equal to the in-memory result.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

# anndata's encoding of a dense column, as h5py's low-level API writes attributes (variable-length UTF-8 scalars)
_ARRAY_ATTRS = {b"encoding-type": np.array("array", dtype=object), b"encoding-version": np.array("0.2.0", dtype=object)}
_STRING = h5py.h5t.py_create(h5py.string_dtype(), logical=True)
_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)


def check_label_file(out: str | os.PathLike, perturbations: Sequence[str] = ()) -> Path:
    """The output path, after checking it can be written and every perturbation name can be a dataset name."""
    path = Path(out)
    if path.suffix != ".h5ad":
        msg = f"`out={str(out)!r}`: label files are h5ad; give a path ending in '.h5ad'."
        raise ValueError(msg)
    if not path.parent.is_dir():
        msg = f"`out={str(out)!r}`: the folder {str(path.parent)!r} does not exist; create it first."
        raise FileNotFoundError(msg)
    bad = [p for p in perturbations if "/" in p or p in {".", "_index"}]
    if bad:
        msg = f"Perturbation names {bad[:5]} cannot be h5ad column names ('/' or reserved); rename them to write `out`."
        raise ValueError(msg)
    return path


class LabelFileWriter:
    """Write label tables into ``path`` block by block; the file appears only once complete (``.part`` until then).

    Parameters
    ----------
    path
        Output ``.h5ad`` file (replaced if present).
    var
        Genes (index) and their columns, e.g. the control mean.
    perturbations
        Column names of every table, in order.
    keys
        Label name (as in ``LABEL_DTYPES``) to its ``varm`` key.
    """

    def __init__(self, path: Path, var: pd.DataFrame, perturbations: Sequence[str], keys: Mapping[str, str]):
        from anndata import AnnData

        self.path, self.part = path, path.with_name(path.name + ".part")
        self.perturbations, self.keys = list(perturbations), dict(keys)
        skeleton = AnnData(obs=pd.DataFrame(index=pd.Index([], dtype=str)), var=var)
        for key in self.keys.values():
            skeleton.varm[key] = pd.DataFrame(index=var.index)  # no columns yet: written block by block
        skeleton.write_h5ad(self.part)
        self.file = h5py.File(self.part, "r+")
        try:
            self._track_column_order()
        except BaseException:
            self.abort()
            raise

    def _track_column_order(self) -> None:
        """Re-create each table's group with tracked link order and record its column order.

        As anndata does past 5,000 columns: the column-order attribute then goes to dense storage instead of hitting
        HDF5's 64 kB limit on an object header message.
        """
        order = np.array(self.perturbations, dtype=object)
        varm = self.file["varm"]
        for key in self.keys.values():
            table = varm.create_group(f"{key}.new", track_order=True)
            varm.copy(varm[key]["_index"], table, "_index")
            table.attrs.update(dict(varm[key].attrs))
            table.attrs["column-order"] = order
            del varm[key]
            varm.move(f"{key}.new", key)

    def write(self, lo: int, values: Mapping[str, np.ndarray]) -> None:
        """Write perturbations ``lo:lo + len(block)`` of each table (``{name: perturbations x genes}``).

        One dataset per column with anndata's array encoding attributes, through h5py's low-level API: the
        high-level calls cost twice as long, which at 10,000 perturbations x 12 tables is tens of seconds.
        """
        names = [p.encode() for p in self.perturbations[lo : lo + len(next(iter(values.values())))]]
        for name, block in values.items():
            group = self.file["varm"][self.keys[name]].id
            space = h5py.h5s.create_simple((block.shape[1],))
            dtype = h5py.h5t.py_create(block.dtype)
            for column, key in zip(block, names, strict=True):
                dataset = h5py.h5d.create(group, key, dtype, space)
                dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(column))
                for attr, value in _ARRAY_ATTRS.items():
                    h5py.h5a.create(dataset, attr, _STRING, _SCALAR).write(value)

    def close(self, uns_key: str, uns: dict) -> None:
        """Record ``uns[uns_key]``, then move the finished file into place (or drop it if that fails)."""
        from anndata.io import write_elem

        try:
            write_elem(self.file["uns"], uns_key, uns)
            self.file.close()
            self.part.replace(self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the unfinished file (an interrupted or failed run leaves no partial labels behind)."""
        self.file.close()
        self.part.unlink(missing_ok=True)
