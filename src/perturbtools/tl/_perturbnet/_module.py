"""PerturbNet's torch modules: GenotypeVAE and the conditional invertible network (cINN). No AnnData."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class GenotypeVAEModule(nn.Module):
    """VAE on binary GO-annotation vectors.

    Encoder ``n_terms -> 512 -> 256 -> latent`` (BatchNorm, LeakyReLU 0.2, dropout 0.2), sigmoid decoder; loss = BCE + KL.
    """

    def __init__(
        self, n_terms: int, n_latent: int = 10, hidden: tuple[int, int] = (512, 256), dropout: float = 0.2
    ) -> None:
        super().__init__()

        def block(i, o):
            return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.LeakyReLU(0.2), nn.Dropout(dropout)]

        self.encoder = nn.Sequential(*block(n_terms, hidden[0]), *block(hidden[0], hidden[1]))
        self.mu = nn.Linear(hidden[1], n_latent)
        self.logvar = nn.Linear(hidden[1], n_latent)
        self.decoder = nn.Sequential(
            *block(n_latent, hidden[1]), *block(hidden[1], hidden[0]), nn.Linear(hidden[0], n_terms)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.decoder(z)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        return {"loss": rec + kl, "reconstruction": rec, "kl": kl, "mu": mu}


class ActNorm(nn.Module):
    """Per-dimension affine normalisation, initialised from the first training batch."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                self.bias.copy_(-x.mean(0))
                self.log_scale.copy_(-torch.log(x.std(0) + 1e-6))
                self.initialized.fill_(True)
        return (x + self.bias) * torch.exp(self.log_scale), self.log_scale.sum().expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class AffineCoupling(nn.Module):
    """Affine coupling: the scale/shift of the second half is a function of the first half and the condition."""

    def __init__(self, dim: int, cond_dim: int, hidden: int = 64, clamp: float = 2.0) -> None:
        super().__init__()
        self.d1 = dim // 2
        self.clamp = clamp
        self.net = nn.Sequential(
            nn.Linear(self.d1 + cond_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * (dim - self.d1)),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _st(self, x1: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(torch.cat([x1, c], dim=1)).chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[:, : self.d1], x[:, self.d1 :]
        s, t = self._st(x1, c)
        return torch.cat([x1, x2 * torch.exp(s) + t], dim=1), s.sum(1)

    def inverse(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, : self.d1], y[:, self.d1 :]
        s, t = self._st(y1, c)
        return torch.cat([y1, (y2 - t) * torch.exp(-s)], dim=1)


class ConditionalINN(nn.Module):
    """Conditional invertible network: ``n_blocks`` of (ActNorm, affine coupling, fixed permutation).

    Conditioned on an MLP embedding of the perturbation representation. ``forward`` maps cell latents ``z`` to
    ``v ~ N(0, I)``; ``inverse`` generates.
    """

    def __init__(
        self, dim: int, cond_in: int, *, n_blocks: int = 20, cond_dim: int = 10, hidden: int = 64, seed: int = 0
    ) -> None:
        super().__init__()
        self.cond_net = nn.Sequential(nn.Linear(cond_in, 64), nn.ReLU(), nn.Linear(64, cond_dim))
        self.norms = nn.ModuleList(ActNorm(dim) for _ in range(n_blocks))
        self.couplings = nn.ModuleList(AffineCoupling(dim, cond_dim, hidden) for _ in range(n_blocks))
        gen = torch.Generator().manual_seed(seed)
        perms = torch.stack([torch.randperm(dim, generator=gen) for _ in range(n_blocks)])
        self.register_buffer("perms", perms)
        self.register_buffer("inverse_perms", torch.argsort(perms, dim=1))

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cond_net(cond)
        logdet = torch.zeros(len(z), device=z.device)
        for norm, coupling, perm in zip(self.norms, self.couplings, self.perms, strict=True):
            z, ld1 = norm(z)
            z, ld2 = coupling(z, c)
            z = z[:, perm]
            logdet = logdet + ld1 + ld2
        return z, logdet

    def inverse(self, v: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = self.cond_net(cond)
        for norm, coupling, inv in zip(
            reversed(self.norms), reversed(self.couplings), reversed(self.inverse_perms), strict=True
        ):
            v = v[:, inv]
            v = coupling.inverse(v, c)
            v = norm.inverse(v)
        return v

    def nll(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per dimension: ``0.5 |v|^2 + 0.5 log(2 pi) - logdet / dim``."""
        v, logdet = self(z, cond)
        dim = z.shape[1]
        return (0.5 * v.pow(2).sum(1) - logdet).mean() / dim + 0.5 * math.log(2 * math.pi)


class StateClassifier(nn.Module):
    """Small MLP from cell latents to cell-state logits (for integrated gradients)."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
