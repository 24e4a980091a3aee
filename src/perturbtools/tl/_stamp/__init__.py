from __future__ import annotations

from ._model import STAMP
from ._module import STAMPModule, stamp_losses

__all__ = ["STAMP", "STAMPModule", "stamp_losses"]
