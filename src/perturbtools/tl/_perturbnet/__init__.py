from __future__ import annotations

from ._model import GenotypeVAE, PerturbationEncoder, PerturbNet
from ._module import ConditionalINN, GenotypeVAEModule

__all__ = ["ConditionalINN", "GenotypeVAE", "GenotypeVAEModule", "PerturbNet", "PerturbationEncoder"]
