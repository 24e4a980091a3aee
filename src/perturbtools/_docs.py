"""Shared docstring fragments."""

from __future__ import annotations

doc_rng = """\
rng
    Seed or :class:`numpy.random.Generator`; ``0`` by default so results reproduce."""

doc_perturbation_key = """\
perturbation_key
    Column of ``adata.obs`` with perturbation labels (``"A"``, ``"A+B"``, ``"A+ctrl"``)."""


def _doc_params(**kwds):
    """Format placeholders in a docstring (scanpy style)."""

    def dec(obj):
        obj.__doc__ = obj.__doc__.format_map(kwds)
        return obj

    return dec
