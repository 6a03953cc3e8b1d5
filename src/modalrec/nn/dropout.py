"""Dropout with a cheaper mask on CPU.

``torch.nn.Dropout`` draws its mask with ``bernoulli_``, which costs ~19 ns per element on one CPU thread
here, against ~6 ns for ``torch.rand`` (6.5M elements: 122 ms vs 42 ms; the whole ``F.dropout`` 186 ms). In
FindRec the masks over the experts' outputs ([B, H, L, E, d]) made dropout 12% of a training step.
:class:`Dropout` keeps each element with probability 1 - p and scales by 1 / (1 - p), exactly the same
distribution as ``nn.Dropout``, from a uniform draw compared with p.
"""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same parameters, state dict and distribution) with a mask from ``torch.rand``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = self.scaled_mask(x)
        return x if keep is None else x * keep

    def scaled_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """The multiplier of ``x`` (0 or 1 / (1 - p) per element, drawn as ``forward`` draws it); None = identity."""
        if not self.training or self.p == 0.0:
            return None
        if self.p >= 1.0:
            return torch.zeros_like(x)
        keep = torch.rand(x.shape, device=x.device).ge_(self.p)  # 1.0 / 0.0 in place: no bool tensor to convert
        return keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))
