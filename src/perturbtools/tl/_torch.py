"""Small torch helpers shared by the torch models (imported only by them)."""

from __future__ import annotations

import numpy as np


def resolve_device(accelerator: str = "auto"):
    """``"auto"`` picks CUDA when available."""
    import torch

    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        msg = f"`accelerator={accelerator!r}` but CUDA is not available; use 'cpu' or 'auto'."
        raise RuntimeError(msg)
    return torch.device("cuda" if accelerator in ("gpu", "cuda") else accelerator)


def state_to_numpy(state: dict) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` as numpy arrays (saved with ``np.savez``, loaded without pickle)."""
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def state_from_numpy(state: dict[str, np.ndarray]) -> dict:
    """Inverse of :func:`state_to_numpy`."""
    import torch

    return {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
