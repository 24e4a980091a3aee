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
    """

    def __init__(
        self,
        lengthscale: float = 1.0,
        variance: float = 1.0,
        noise: float = 0.1,
        jitter: float = 1e-6,
        noise_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.noise_floor = noise_floor
        self.log_lengthscale = nn.Parameter(torch.tensor(math.log(lengthscale), dtype=torch.float64))
        self.log_variance = nn.Parameter(torch.tensor(math.log(variance), dtype=torch.float64))
        self.log_noise = nn.Parameter(torch.tensor(math.log(max(noise - noise_floor, 1e-12)), dtype=torch.float64))
        self.jitter = jitter

    def noise(self) -> torch.Tensor:
        """Noise variance, ``noise_floor + exp(log_noise)`` (the floor keeps K well conditioned for near-duplicate inputs)."""
        return self.noise_floor + torch.exp(self.log_noise)

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
        mean = Ks @ torch.cholesky_solve(y, L)
        V = torch.linalg.solve_triangular(L, Ks.T, upper=False)
        if full_cov:
            return mean, self.kernel(x_new, x_new) - V.T @ V
        return mean, (torch.exp(self.log_variance) - V.pow(2).sum(0)).clamp(min=0)


def gram_root(y: torch.Tensor) -> torch.Tensor:
    """A matrix ``C`` with ``C C' = y y'`` and at most ``N`` columns (``y`` itself when it has at most ``N`` columns)."""
    if y.shape[1] <= y.shape[0]:
        return y
    evals, evecs = torch.linalg.eigh(y @ y.T)
    return evecs * evals.clamp(min=0).sqrt()
