"""Learned item-item graphs over content (LATTICE, Zhang et al., MM 2021, Sec. 3.1; reused by MICRO).

Per modality m, a frozen graph from the raw features (Eqs. 1-3: cosine kNN, D^-1/2 S D^-1/2) is
mixed with a graph learned from projected features e~_i = W_m e_i + b_m (Eqs. 4-5, same kNN and
normalisation): A^m = lambda * A_frozen^m + (1 - lambda) * A_learned^m (Eq. 6). The modalities are
combined with weights, A = sum_m alpha_m A^m (Eq. 7; LATTICE learns softmax-normalised alpha).

Graphs are edge lists (rows, cols, weights) so the learned weights stay differentiable; the kNN
*structure* of the learned graphs is recomputed by :meth:`LearnedItemGraph.refresh` (no gradient
flows through a top-k choice), the edge weights on it every forward pass. With ``grad_first_batch``
(the authors' LATTICE and MICRO code) the weights are computed with gradient once after each refresh
and reused detached until the next one, so the projections learn only in an epoch's first batch.
"""

from __future__ import annotations

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from modalrec.nn.edges import edge_spmm, edges_of, symmetric_edge_norm
from modalrec.nn.knn import cosine_knn

Edges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class LearnedItemGraph(nn.Module):
    """Per-modality item graphs mixing a frozen content kNN graph with a learned one."""

    def __init__(
        self,
        frozen: list[sp.csr_matrix],
        feature_dims: list[int],
        dim: int,
        k: int,
        skip: float,
        grad_first_batch: bool = False,
    ):
        super().__init__()
        if not 0.0 <= skip <= 1.0:
            raise ValueError(f"the frozen-graph weight lambda must be in [0, 1], got {skip}")
        self.k, self.skip, self.n_items = k, skip, frozen[0].shape[0]
        self.grad_first_batch = grad_first_batch
        self._reused: dict[int, torch.Tensor] = {}  # modality -> detached learned weights since the last refresh
        self.projections = nn.ModuleList(nn.Linear(d, dim) for d in feature_dims)  # W_m, b_m (Eq. 4)
        for m, graph in enumerate(frozen):
            for name, tensor in zip(("rows", "cols", "values"), edges_of(graph)):
                self.register_buffer(f"frozen_{name}_{m}", tensor, persistent=False)
            self.register_buffer(f"learned_rows_{m}", torch.zeros(0, dtype=torch.long), persistent=False)
            self.register_buffer(f"learned_cols_{m}", torch.zeros(0, dtype=torch.long), persistent=False)

    def refresh(self, features: list[torch.Tensor]) -> None:
        """Recompute the kNN structure of every learned graph from the current projections."""
        self._reused.clear()
        with torch.no_grad():
            for m, (proj, f) in enumerate(zip(self.projections, features)):
                knn = cosine_knn(proj(f).cpu(), self.k)
                rows, cols, _ = edges_of(knn)
                setattr(self, f"learned_rows_{m}", rows.to(f.device))
                setattr(self, f"learned_cols_{m}", cols.to(f.device))

    def modality_graph(self, m: int, features: list[torch.Tensor]) -> Edges:
        """A^m = lambda A_frozen^m + (1 - lambda) A_learned^m (Eq. 6), as one edge list."""
        rows, cols = getattr(self, f"learned_rows_{m}"), getattr(self, f"learned_cols_{m}")
        if rows.numel() == 0:
            self.refresh(features)
            rows, cols = getattr(self, f"learned_rows_{m}"), getattr(self, f"learned_cols_{m}")
        if m in self._reused and torch.is_grad_enabled():
            learned = self._reused[m]
        else:
            h = F.normalize(self.projections[m](features[m]), dim=1)
            similarity = (h[rows] * h[cols]).sum(-1).clamp_min(0)  # Eq. 5 on the kNN edges, negatives clipped
            learned = symmetric_edge_norm(rows, cols, similarity, self.n_items)
            if self.grad_first_batch and torch.is_grad_enabled():
                self._reused[m] = learned.detach()
        frozen = [getattr(self, f"frozen_{name}_{m}") for name in ("rows", "cols", "values")]
        return (
            torch.cat([frozen[0], rows]),
            torch.cat([frozen[1], cols]),
            torch.cat([self.skip * frozen[2], (1 - self.skip) * learned]),
        )

    def forward(self, features: list[torch.Tensor], alpha: torch.Tensor) -> Edges:
        """A = sum_m alpha_m A^m (Eq. 7) as one edge list, for modality weights ``alpha`` [M]."""
        parts = [self.modality_graph(m, features) for m in range(len(self.projections))]
        return (
            torch.cat([p[0] for p in parts]),
            torch.cat([p[1] for p in parts]),
            torch.cat([a * p[2] for a, p in zip(alpha, parts)]),
        )

    def propagate(self, edges: Edges, x: torch.Tensor, layers: int) -> torch.Tensor:
        """h^(l) = A h^(l-1), ``layers`` times (Eqs. 8-9); returns h^(layers)."""
        for _ in range(layers):
            x = edge_spmm(*edges, x, self.n_items)
        return x
