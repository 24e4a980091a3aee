"""Exact multi-output GP with shared RBF hyperparameters (torch, float64). Tensors in, tensors out."""

from __future__ import annotations

import math

import torch
from torch import nn


class SharedRBFGP(nn.Module):
    """Independent GPs for every output column sharing one RBF kernel (variance, lengthscale) and one noise variance.

    The summed log marginal likelihood over ``G`` outputs needs one Cholesky of the ``N x N`` kernel:
    ``-log p(Y) = 0.5 tr(K^-1 Y Y') + G sum(log diag L) + 0.5 N G log(2 pi)``. With a square root ``C`` of ``Y Y'``
    (``Y`` itself, or an ``N x N`` factor from one eigendecomposition when ``G > N``; :func:`gram_root`) the data
    term is ``|L^-1 C|_F^2``, one triangular solve: a step costs ``O(N^3)`` whatever the number of genes.
    Hyperparameters are fitted by :func:`fit_shared_rbf`.
    """

    def __init__(self, *, lengthscale: float, variance: float, noise: float, jitter: float) -> None:
        super().__init__()
        self.log_lengthscale = nn.Parameter(torch.tensor(math.log(lengthscale), dtype=torch.float64))
        self.log_variance = nn.Parameter(torch.tensor(math.log(variance), dtype=torch.float64))
        self.log_noise = nn.Parameter(torch.tensor(math.log(noise), dtype=torch.float64))
        self.jitter = jitter

    def noise(self) -> torch.Tensor:
        """Noise variance."""
        return torch.exp(self.log_noise)

    @property
    def hyperparameters(self) -> dict[str, float]:
        """Current lengthscale, variance and noise."""
        return {
            "lengthscale": float(torch.exp(self.log_lengthscale.detach())),
            "variance": float(torch.exp(self.log_variance.detach())),
            "noise": float(self.noise().detach()),
        }

    def kernel(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """RBF kernel ``variance * exp(-|x1 - x2|^2 / (2 lengthscale^2))``."""
        d2 = torch.cdist(x1, x2).pow(2)
        return torch.exp(self.log_variance) * torch.exp(-0.5 * d2 / torch.exp(2 * self.log_lengthscale))

    def _chol(self, x: torch.Tensor) -> torch.Tensor:
        K = self.kernel(x, x)
        K = K + (self.noise() + self.jitter) * torch.eye(len(x), dtype=x.dtype, device=x.device)
        return torch.linalg.cholesky(K)

    def neg_mll(self, x: torch.Tensor, C: torch.Tensor, n_outputs: int) -> torch.Tensor:
        """Negative log marginal likelihood summed over outputs, per output entry; ``C C' = Y Y'``."""
        L = self._chol(x)
        n = len(x)
        data = torch.linalg.solve_triangular(L, C, upper=False).pow(2).sum()
        nll = 0.5 * data + n_outputs * torch.log(torch.diagonal(L)).sum() + 0.5 * n * n_outputs * math.log(2 * math.pi)
        return nll / (n * n_outputs)

    def posterior(self, x: torch.Tensor, y: torch.Tensor, x_new: torch.Tensor, *, full_cov: bool = False):
        """Posterior mean ``(M, G)`` and latent variance ``(M,)`` (or ``(M, M)`` covariance), shared by all outputs."""
        L = self._chol(x)
        Ks = self.kernel(x_new, x)
        V = torch.linalg.solve_triangular(L, Ks.T, upper=False)
        if len(x_new) < y.shape[1]:  # K^-1 Ks' (N x M) before y: N^2 M + M N G flops instead of N^2 G
            mean = torch.linalg.solve_triangular(L.T, V, upper=True).T @ y
        else:
            mean = Ks @ torch.cholesky_solve(y, L)
        if full_cov:
            return mean, self.kernel(x_new, x_new) - V.T @ V
        return mean, (torch.exp(self.log_variance) - V.pow(2).sum(0)).clamp(min=0)


def gram_root(y: torch.Tensor) -> torch.Tensor:
    """A matrix ``C`` with ``C C' = y y'`` and at most ``N`` columns (``y`` itself when it has at most ``N`` columns)."""
    if y.shape[1] <= y.shape[0]:
        return y
    evals, evecs = torch.linalg.eigh(y @ y.T)
    return evecs * evals.clamp(min=0).sqrt()


class ProfiledNegMLL(torch.autograd.Function):
    """Per-entry negative log marginal likelihood with the kernel variance profiled out, and its analytic gradient.

    For ``K = s R`` (``R`` the unit-variance kernel plus the noise-to-variance ratio on the diagonal) the optimal
    variance is ``s* = q / (N G)`` with ``q = tr(R^-1 C C')``, and the profiled objective per entry is
    ``0.5 + 0.5 log(q / (N G)) + mean(log diag L) + 0.5 log(2 pi)``. Its gradient with respect to ``R`` is
    ``0.5 L^-T (I / N - A A' / q) L^-1`` with ``A = L^-1 C``: two triangular solves and one product, several times
    cheaper than back-propagating through the Cholesky factorisation.
    """

    @staticmethod
    def forward(ctx, R: torch.Tensor, C: torch.Tensor, n_outputs: int) -> torch.Tensor:
        n = R.shape[0]
        L = torch.linalg.cholesky(R)
        A = torch.linalg.solve_triangular(L, C, upper=False)
        q = A.pow(2).sum()
        ctx.save_for_backward(L, A, q)
        return (
            0.5
            + 0.5 * torch.log(q / (n * n_outputs))
            + torch.log(torch.diagonal(L)).mean()
            + 0.5 * math.log(2 * math.pi)
        )

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        L, A, q = ctx.saved_tensors
        n = L.shape[0]
        B = torch.eye(n, dtype=L.dtype, device=L.device) / n - (A @ A.T) / q
        X = torch.linalg.solve_triangular(L.T, B, upper=True)  # L^-T B
        W = torch.linalg.solve_triangular(L.T, X.T, upper=True).T  # L^-T B L^-1
        W = 0.25 * (W + W.T)  # symmetrised, times the 0.5 of the gradient
        return grad_out * W, None, None


def fit_shared_rbf(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lengthscale: float,
    max_iter: int,
    noise_ratio: float = 0.5,
    ratio_floor: float = 1e-4,
    jitter: float = 1e-6,
    tolerance: float = 1e-7,
) -> tuple[SharedRBFGP, list[float]]:
    """Fit lengthscale, variance and noise of a :class:`SharedRBFGP` by maximising the summed log marginal likelihood.

    The variance is profiled out in closed form (:class:`ProfiledNegMLL`), leaving L-BFGS two parameters: the
    lengthscale and the noise-to-variance ratio, floored at ``ratio_floor`` so the kernel stays well conditioned
    for near-duplicate inputs. The squared distances are computed once. L-BFGS (strong Wolfe line search) runs at
    most ``max_iter`` iterations and stops when the objective changes by less than ``tolerance``. ``jitter`` is
    relative to the kernel variance: the fitted GP adds ``jitter * variance`` to the diagonal.

    Returns
    -------
    The fitted GP and the per-entry negative log marginal likelihood at every L-BFGS evaluation.
    """
    n, g = y.shape
    C = gram_root(y)
    d2 = torch.cdist(x, x).pow(2)
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    log_ls = torch.tensor(math.log(lengthscale), dtype=x.dtype, device=x.device, requires_grad=True)
    log_ratio = torch.tensor(
        math.log(max(noise_ratio - ratio_floor, 1e-12)), dtype=x.dtype, device=x.device, requires_grad=True
    )

    def unit_kernel() -> torch.Tensor:
        ratio = ratio_floor + torch.exp(log_ratio)
        return torch.exp(-0.5 * d2 / torch.exp(2 * log_ls)) + (ratio + jitter) * eye

    opt = torch.optim.LBFGS(
        [log_ls, log_ratio], lr=1.0, max_iter=max_iter, tolerance_change=tolerance, line_search_fn="strong_wolfe"
    )
    history: list[float] = []

    def closure():
        opt.zero_grad()
        loss = ProfiledNegMLL.apply(unit_kernel(), C, g)
        loss.backward()
        history.append(loss.item())
        return loss

    opt.step(closure)
    with torch.no_grad():
        L = torch.linalg.cholesky(unit_kernel())
        s = float(torch.linalg.solve_triangular(L, C, upper=False).pow(2).sum()) / (n * g)
        ratio = ratio_floor + float(torch.exp(log_ratio))
        lengthscale = float(torch.exp(log_ls))
    gp = SharedRBFGP(lengthscale=lengthscale, variance=s, noise=s * ratio, jitter=s * jitter)
    return gp, history
