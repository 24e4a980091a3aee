"""How a model is named for the benchmark protocols: a class, with its ``__init__`` and ``fit`` arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: ``Model``, ``(Model, init_kwargs)`` or ``(Model, init_kwargs, fit_kwargs)``
ModelSpec = type | tuple[type, Mapping[str, Any]] | tuple[type, Mapping[str, Any], Mapping[str, Any]]


def unpack_spec(spec: ModelSpec) -> tuple[type, dict, dict]:
    """``(class, init_kwargs, fit_kwargs)`` of a :data:`ModelSpec`."""
    if isinstance(spec, type):
        return spec, {}, {}
    cls, *rest = spec
    return cls, dict(rest[0]) if rest else {}, dict(rest[1]) if len(rest) > 1 else {}
