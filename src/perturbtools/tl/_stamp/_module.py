"""STAMP's torch module: three subtask heads on gene embeddings. Tensors in, tensors out; no AnnData."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class GeneSpecificLinear(nn.Module):
    """One ``in_features -> 1`` linear map per gene (the paper's gene-specific output layer)."""

    def __init__(self, n_genes: int, in_features: int) -> None:
        super().__init__()
        bound = in_features**-0.5
        self.weight = nn.Parameter(torch.empty(n_genes, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_genes).uniform_(-bound, bound))

    def forward(self, h: torch.Tensor, genes: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, G, F) -> (B, G)``; or, with ``genes``, ``(n, F) -> (n,)`` for entries of those output genes."""
        if genes is None:
            return torch.einsum("bgf,gf->bg", h, self.weight) + self.bias
        return (h * self.weight[genes]).sum(-1) + self.bias[genes]


class STAMPModule(nn.Module):
    """The three heads of STAMP (Gao et al. 2024), as in the reference ``cell-stamp`` code.

    Head 1: ``d -> 1024 -> 2048 -> n_genes`` (ReLU, optional dropout), sigmoid = P(DEG).
    Head 2: per gene, ``[e_p, e_g] -> 128 -> 64 -> 32`` (ReLU) ``-> 1``, sigmoid = P(up). Its first layer is split as
    ``W_p e_p + W_g e_g + b`` so the gene part ``E W_g'`` is computed once per step, not per (perturbation, gene).
    Head 3: the 32-d features of head 2 ``-> 16 -> 8 -> 1`` (linear layers, no activation, as in the reference),
    ``exp()`` = fold change.

    Parameters
    ----------
    gene_embedding
        ``(n_genes, d)`` embeddings of the output genes (a buffer; rows flagged in ``learn_rows`` are parameters).
    learn_rows
        Boolean ``(n_genes,)``: output genes without an embedding get a learned row (initialised at 0).
    hidden1, dropout1, hidden2, hidden3
        Layer sizes (reference values by default) and head-1 dropout (see :class:`perturbtools.tl.STAMP`).
    gene_specific
        Use one output layer per gene for heads 2 and 3 instead of the shared one.
    """

    def __init__(
        self,
        gene_embedding: torch.Tensor,
        *,
        learn_rows: torch.Tensor | None = None,
        hidden1: tuple[int, int] = (1024, 2048),
        dropout1: float = 0.0,
        hidden2: tuple[int, int, int] = (128, 64, 32),
        hidden3: tuple[int, int] = (16, 8),
        gene_specific: bool = False,
    ) -> None:
        super().__init__()
        n_genes, d = gene_embedding.shape
        self.register_buffer("gene_embedding", gene_embedding.float())
        mask = torch.zeros(n_genes, dtype=torch.bool) if learn_rows is None else learn_rows.bool()
        self.register_buffer("learn_rows", mask)
        self.learned_embedding = nn.Parameter(torch.zeros(int(mask.sum()), d))
        self.head1 = nn.Sequential(
            nn.Linear(d, hidden1[0]), nn.ReLU(), nn.Dropout(dropout1),
            nn.Linear(hidden1[0], hidden1[1]), nn.ReLU(), nn.Dropout(dropout1),
            nn.Linear(hidden1[1], n_genes),
        )  # fmt: skip
        self.w_pert = nn.Linear(d, hidden2[0], bias=False)
        self.w_gene = nn.Linear(d, hidden2[0])
        # initialised as the one concatenated layer ``Linear(2d, hidden)`` they replace (fan-in 2d)
        bound = (2 * d) ** -0.5
        for p in (self.w_pert.weight, self.w_gene.weight, self.w_gene.bias):
            nn.init.uniform_(p, -bound, bound)
        self.head2_body = nn.Sequential(
            nn.ReLU(), nn.Linear(hidden2[0], hidden2[1]), nn.ReLU(), nn.Linear(hidden2[1], hidden2[2]), nn.ReLU()
        )
        self.head3_body = nn.Sequential(nn.Linear(hidden2[2], hidden3[0]), nn.Linear(hidden3[0], hidden3[1]))
        if gene_specific:
            self.head2_out = GeneSpecificLinear(n_genes, hidden2[2])
            self.head3_out = GeneSpecificLinear(n_genes, hidden3[1])
        else:
            self.head2_out = nn.Linear(hidden2[2], 1)
            self.head3_out = nn.Linear(hidden3[1], 1)

    def genes(self) -> torch.Tensor:
        """Output-gene embeddings with learned rows filled in."""
        if not bool(self.learn_rows.any()):
            return self.gene_embedding
        emb = self.gene_embedding.clone()
        emb[self.learn_rows] = self.learned_embedding
        return emb

    def _out(self, layer: nn.Module, h: torch.Tensor, genes: torch.Tensor | None) -> torch.Tensor:
        return layer(h, genes) if isinstance(layer, GeneSpecificLinear) else layer(h).squeeze(-1)

    def forward(
        self, pert_embedding: torch.Tensor, entries: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits of DEG and up, and log fold change.

        Without ``entries`` all three are ``(batch, n_genes)``. With ``entries = (rows, genes)`` (e.g. the DEGs of the
        batch, ``is_de.nonzero(as_tuple=True)``) heads 2 and 3 are evaluated only there and come back flat,
        ``(n_entries,)``: their losses only count true DEGs, so training needs nothing else (an exact shortcut; a
        few percent of the ``batch x n_genes`` work).
        """
        de_logit = self.head1(pert_embedding)
        pert_part, gene_part = self.w_pert(pert_embedding), self.w_gene(self.genes())
        if entries is None:
            h, genes = pert_part[:, None, :] + gene_part[None, :, :], None
        else:
            rows, genes = entries
            h = pert_part[rows] + gene_part[genes]
        feats = self.head2_body(h)
        direction_logit = self._out(self.head2_out, feats, genes)
        log_fc = self._out(self.head3_out, self.head3_body(feats), genes)
        return {"de_logit": de_logit, "direction_logit": direction_logit, "log_fc": log_fc}


def stamp_losses(
    out: dict[str, torch.Tensor],
    is_de: torch.Tensor,
    up: torch.Tensor,
    fc: torch.Tensor,
    weights: tuple[float, float, float] = (0.1, 0.5, 0.4),
) -> dict[str, torch.Tensor]:
    """The reference losses on one batch.

    L1: BCE over all entries, weight ``y * ((N - n_DE) / n_DE) / 4 + 1``. L2: BCE on true DEGs, up entries weighted
    ``N_DE / n_up`` and down entries ``N_DE / (N_DE - n_up)``, normalised by the weight sum. L3: MSE of the fold
    change on true DEGs. Total ``0.1 L1 + 0.5 L2 + 0.4 L3`` (``weights``).

    ``out["direction_logit"]`` and ``out["log_fc"]`` are either ``(batch, n_genes)`` or flat over the DEG entries in
    row-major order (``STAMPModule(x, entries=is_de.nonzero(as_tuple=True))``).
    """
    is_de = is_de.float()
    mask = is_de.bool()
    n_all = is_de.numel()
    n_mask = is_de.sum()
    n_de = n_mask.clamp(min=1)
    w1 = is_de * ((n_all - n_de) / n_de) / 4 + 1
    l1 = F.binary_cross_entropy_with_logits(out["de_logit"], is_de, weight=w1)
    direction_logit, log_fc = out["direction_logit"], out["log_fc"]
    if direction_logit.shape == is_de.shape:
        direction_logit, log_fc = direction_logit[mask], log_fc[mask]
    up, fc = up[mask].float(), fc[mask]
    n_up = up.sum().clamp(min=1)
    n_down = (n_mask - n_up).clamp(min=1)
    w2 = up * (n_mask / n_up) + (1 - up) * (n_mask / n_down)
    l2 = F.binary_cross_entropy_with_logits(direction_logit, up, weight=w2, reduction="sum") / w2.sum().clamp(min=1e-12)
    l3 = ((torch.exp(log_fc) - fc) ** 2).sum() / n_de
    total = weights[0] * l1 + weights[1] * l2 + weights[2] * l3
    return {"l1": l1, "l2": l2, "l3": l3, "total": total}
