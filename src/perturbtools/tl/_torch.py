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


def train_loop(
    module,
    loss_fn,
    tensors: tuple,
    *,
    val_tensors: tuple | None = None,
    max_epochs: int = 50,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    patience: int | None = None,
    seed: int = 0,
    device=None,
    show_progress_bar: bool | None = None,
    desc: str = "training",
):
    """Mini-batch training with early stopping on validation loss; restores the best weights.

    ``loss_fn(module, *batch) -> scalar tensor``. Returns a history DataFrame (``epoch, train_loss, val_loss``).
    """
    import copy

    import pandas as pd
    import torch

    from .._utils import _progress

    device = device or torch.device("cpu")
    module.to(device)
    gen = torch.Generator().manual_seed(seed)
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    opt = opt_cls(module.parameters(), lr=lr)
    n = len(tensors[0])
    best, best_state, stale, rows = np.inf, copy.deepcopy(module.state_dict()), 0, []
    for epoch in _progress(range(max_epochs), show_progress_bar=show_progress_bar, desc=desc):
        module.train()
        order = torch.randperm(n, generator=gen)
        total, steps = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue
            loss = loss_fn(module, *(t[idx].to(device) for t in tensors))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        row = {"epoch": epoch, "train_loss": total / max(steps, 1)}
        if val_tensors is not None and len(val_tensors[0]):
            module.eval()
            with torch.no_grad():
                row["val_loss"] = float(loss_fn(module, *(t.to(device) for t in val_tensors)))
            if row["val_loss"] < best:
                best, best_state, stale = row["val_loss"], copy.deepcopy(module.state_dict()), 0
            else:
                stale += 1
        rows.append(row)
        if patience is not None and stale >= patience:
            break
    if val_tensors is not None and np.isfinite(best):
        module.load_state_dict(best_state)
    module.to("cpu").eval()
    return pd.DataFrame(rows)
