from __future__ import annotations

from ._model import GPModel
from ._module import SharedRBFGP

__all__ = ["GPModel", "SharedRBFGP"]
