"""Small torch helpers shared by the torch models (imported only by them)."""

from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def torch_seeded(seed: int, device=None):
    """Run the block with torch's global generator seeded by ``seed``; the caller's RNG state is restored after.

    The one place the torch families seed torch (``torch.random.fork_rng`` + ``torch.manual_seed``). ``device``: the
    training device (only its generator is forked, besides the CPU's); ``None`` forks every visible device.
    """
    import torch

    kwargs = {} if device is None else {"devices": [] if torch.device(device).type == "cpu" else [device]}
    with torch.random.fork_rng(**kwargs):
        torch.manual_seed(seed)
        yield


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` intra-op CPU threads (``None``: unchanged); the caller's setting is restored after.

    For models of many tiny operations (PerturbNet's cINN): one thread is as fast as two alone, and 3x faster when
    another process competes for the cores (``benchmarks/bench_cinn_threads.py``), where threads spin-wait.
    """
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def state_to_numpy(state: dict) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` as numpy arrays (saved with ``np.savez``, loaded without pickle)."""
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def state_from_numpy(state: dict[str, np.ndarray]) -> dict:
    """Inverse of :func:`state_to_numpy`."""
    import torch

    return {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}


class ModelSelection:
    """Model-selection hook of :func:`fit_loop`: which weights to keep. Default: the epoch of lowest ``val_loss``."""

    def __init__(self, module, key: str = "val_loss") -> None:
        import copy

        self.key, self.best, self.state = key, np.inf, copy.deepcopy(module.state_dict())

    def update(self, row: dict, module) -> bool:
        """After an epoch with validation losses in ``row``: keep the weights if they improved; ``True`` if so."""
        import copy

        if row[self.key] < self.best:
            self.best, self.state = row[self.key], copy.deepcopy(module.state_dict())
            return True
        return False

    def restore(self, module) -> None:
        """At the end of training: load the kept weights (only if any epoch was validated)."""
        if np.isfinite(self.best):
            module.load_state_dict(self.state)


def fit_loop(
    module,
    batch_loss,
    n: int,
    *,
    optimizer,
    val_loss=None,
    selection: ModelSelection | None = None,
    max_epochs: int = 50,
    batch_size: int = 128,
    patience: int | None = None,
    seed: int = 0,
    device=None,
    show_progress_bar: bool | None = None,
    desc: str = "training",
    log_names: tuple[str, ...] = (),
):
    """The one mini-batch training loop of the torch families, with early stopping and a model-selection hook.

    Parameters
    ----------
    module
        The ``torch.nn.Module`` to train (moved to ``device``; back on CPU in eval mode at the end).
    batch_loss
        ``batch_loss(module, idx) -> {"total": tensor, name: tensor, ...}`` for the training rows ``idx`` (a CPU
        index tensor), or ``None`` to skip the batch. ``total`` is minimised; every other entry is logged as
        ``train_{name}`` (mean over the epoch's steps).
    n
        Number of training rows (shuffled every epoch by a generator seeded with ``seed``).
    optimizer
        A torch optimizer over ``module``'s parameters.
    val_loss
        ``val_loss(module) -> {name: float}`` on the validation data, logged as ``val_{name}`` after every epoch.
    selection
        Which weights to keep (:class:`ModelSelection`, default: lowest ``val_loss``); ignored without ``val_loss``.
    max_epochs, batch_size
        Budget and batch size.
    patience
        Stop after this many epochs without an improvement the selection accepted; ``None``: run all epochs.
    log_names
        Training losses logged even in an epoch without a step (as 0).

    Returns
    -------
    The history, one row per epoch (``epoch``, ``train_*``, ``val_*``).
    """
    import pandas as pd
    import torch

    from .._utils import _progress

    device = device or torch.device("cpu")
    module.to(device)
    gen = torch.Generator().manual_seed(seed)
    if val_loss is not None and selection is None:
        selection = ModelSelection(module)
    stale, rows = 0, []
    for epoch in _progress(range(max_epochs), show_progress_bar=show_progress_bar, desc=desc):
        module.train()
        order = torch.randperm(n, generator=gen)
        sums = dict.fromkeys(log_names, 0.0)
        steps = 0
        for start in range(0, n, batch_size):
            losses = batch_loss(module, order[start : start + batch_size])
            if losses is None:
                continue
            optimizer.zero_grad()
            losses["total"].backward()
            optimizer.step()
            for k, v in losses.items():
                if k != "total":
                    sums[k] = sums.get(k, 0.0) + v.item()
            steps += 1
        row = {"epoch": epoch, **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()}}
        if val_loss is not None:
            module.eval()
            with torch.no_grad():
                row |= {f"val_{k}": float(v) for k, v in val_loss(module).items()}
            stale = 0 if selection.update(row, module) else stale + 1
        rows.append(row)
        if patience is not None and stale >= patience:
            break
    if val_loss is not None:
        selection.restore(module)
    module.to("cpu").eval()
    return pd.DataFrame(rows)


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
    """:func:`fit_loop` on tensors: ``loss_fn(module, *batch) -> scalar``, lowest validation loss kept.

    Returns a history DataFrame (``epoch, train_loss, val_loss``).
    """
    import torch

    device = device or torch.device("cpu")
    opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer](module.parameters(), lr=lr)

    def batch_loss(m, idx):
        if len(idx) < 2:
            return None
        loss = loss_fn(m, *(t[idx].to(device) for t in tensors))
        return {"total": loss, "loss": loss}

    has_val = val_tensors is not None and len(val_tensors[0])
    val = (lambda m: {"loss": loss_fn(m, *(t.to(device) for t in val_tensors))}) if has_val else None
    return fit_loop(module, batch_loss, len(tensors[0]), optimizer=opt, val_loss=val, max_epochs=max_epochs,
                    batch_size=batch_size, patience=patience, seed=seed, device=device,
                    show_progress_bar=show_progress_bar, desc=desc, log_names=("loss",))  # fmt: skip
