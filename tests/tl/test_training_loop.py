"""The one training loop (``tl/_torch.fit_loop``) and its model-selection hook, on a model whose losses are known."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from perturbtools.tl._torch import ModelSelection, fit_loop, torch_threads  # noqa: E402


class _Scalar(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.0))


def _run(val_targets, *, patience=None, selection=None):
    """Plain SGD (lr 0.25) of (w - 1)^2 on one batch: w goes 0 -> 0.5 -> 0.75 -> ...; validation (w - t_epoch)^2."""
    m = _Scalar()
    opt = torch.optim.SGD(m.parameters(), lr=0.25)
    epochs = iter(range(len(val_targets)))
    history = fit_loop(
        m, lambda mod, idx: {"total": (mod.w - 1) ** 2, "mse": (mod.w - 1) ** 2}, 4, optimizer=opt,
        val_loss=lambda mod: {"loss": (mod.w - val_targets[next(epochs)]) ** 2}, selection=selection,
        max_epochs=len(val_targets), batch_size=4, patience=patience, show_progress_bar=False,
    )  # fmt: skip
    return m, history


def test_keeps_the_weights_of_the_best_validation_epoch():
    # w after epochs 1..4: 0.5, 0.75, 0.875, 0.9375; validation targets make epoch 2 (w = 0.75) the best
    m, history = _run([0.0, 0.75, 0.0, 0.0])
    assert m.w.item() == pytest.approx(0.75)
    np.testing.assert_allclose(history["train_mse"], [1.0, 0.25, 0.0625, 0.015625])  # loss before each step
    np.testing.assert_allclose(history["val_loss"], [0.25, 0.0, 0.875**2, 0.9375**2])


def test_patience_stops_after_epochs_without_improvement():
    _, history = _run([0.5, 0.0, 0.0, 0.0, 0.0], patience=2)
    assert list(history["epoch"]) == [0, 1, 2]  # best at epoch 0, then two epochs without improvement


def test_a_custom_selection_hook_decides_what_is_kept():
    class Last(ModelSelection):
        def update(self, row, module):
            return True

        def restore(self, module):
            pass

    m, _ = _run([0.0, 0.75, 0.0, 0.0], selection=Last(_Scalar()))
    assert m.w.item() == pytest.approx(0.9375)  # the last epoch's weights


def test_torch_seeded_is_reproducible_and_restores_the_callers_state():
    from perturbtools.tl._torch import torch_seeded

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with torch_seeded(7, "cpu"):
        a = torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is untouched
    with torch_seeded(7):
        b = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(a, b) and torch.equal(a, torch.rand(3))  # the same as seeding torch by hand


def test_torch_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):  # restored on errors too
        raise RuntimeError
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
