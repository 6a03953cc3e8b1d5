"""Self-attention blocks for sequence models: causal stacks for left-to-right models (SASRec and its multimodal
kin) and a bidirectional stack for cloze models (BERT4Rec).

A block is multi-head scaled dot-product self-attention followed by a point-wise two-layer
feed-forward network, each wrapped in dropout, a residual connection and layer normalisation, in
either order:

- pre-LN  (``norm_first=True``):  x = x + Drop(f(LN(x)))   (SASRec, Sec. III-C; GPT-2)
- post-LN (``norm_first=False``): x = LN(x + Drop(f(x)))   (the original Transformer; BERT4Rec, RecBole)

In a causal stack position t attends to positions <= t that are not padding; a pre-LN stack ends with one
more LayerNorm (:class:`CausalTransformer`). In a bidirectional stack every position attends to every
non-padding position (:class:`BidirectionalTransformer`). The blocks are the same; only the mask differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def causal_attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """Boolean mask [B, 1, L, L], True where query t may attend to key s: s <= t and s is not padding.

    Every query may also attend to itself, so a row is never fully masked (padding queries and empty
    sequences stay finite instead of turning into NaN); their outputs are meaningless and ignored.
    """
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    diagonal = torch.eye(length, dtype=torch.bool, device=valid.device)
    return (causal & valid[:, None, None, :]) | diagonal


def padding_attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """Boolean mask [B, 1, L, L], True where query t may attend to key s: s is not padding (or s == t, so a
    padding query's row is never fully masked)."""
    length = valid.shape[1]
    diagonal = torch.eye(length, dtype=torch.bool, device=valid.device)
    return valid[:, None, None, :] | diagonal


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with an explicit boolean mask."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``mask`` [B, 1, L, L] bool (True = may attend), or None for plain causal attention (the fused kernel)."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=mask is None
        )
        return self.out(attended.transpose(1, 2).reshape(batch, length, dim))


class FeedForward(nn.Module):
    """Point-wise two-layer network applied to every position: W2 Drop(act(W1 x))."""

    def __init__(self, dim: int, inner_dim: int, dropout: float, activation: str = "relu"):
        super().__init__()
        activations = {"relu": nn.ReLU(), "gelu": nn.GELU()}
        if activation not in activations:
            raise ValueError(f"unknown activation '{activation}'; choose one of {sorted(activations)}")
        self.net = nn.Sequential(
            nn.Linear(dim, inner_dim), activations[activation], nn.Dropout(dropout), nn.Linear(inner_dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CausalSelfAttentionBlock(nn.Module):
    """Self-attention + feed-forward, each with dropout, residual and LayerNorm (pre- or post-LN)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        norm_first: bool = True,
        inner_dim: int | None = None,
        activation: str = "relu",
        attention_dropout: float | None = None,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadSelfAttention(dim, heads, dropout if attention_dropout is None else attention_dropout)
        self.feed_forward = FeedForward(dim, inner_dim or dim, dropout, activation)
        self.attention_norm = nn.LayerNorm(dim)
        self.feed_forward_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), mask))
            return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class TransformerStack(nn.Module):
    """A stack of blocks over right-padded sequences under the mask ``attention_mask(valid)`` of the subclass;
    padding positions output zeros. ``attention_mask`` may return None: plain causal attention.
    ``attention_dropout`` (None = ``dropout``) drops attention weights; at 0, SDPA can run its fused kernel on CPU,
    which never materialises the [B, heads, L, L] weights (with dropout it falls back to the unfused path)."""

    attention_mask: staticmethod[[torch.Tensor], torch.Tensor | None] = staticmethod(causal_attention_mask)

    def __init__(
        self,
        dim: int,
        heads: int,
        layers: int,
        dropout: float,
        norm_first: bool = True,
        inner_dim: int | None = None,
        activation: str = "relu",
        attention_dropout: float | None = None,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            CausalSelfAttentionBlock(dim, heads, dropout, norm_first, inner_dim, activation, attention_dropout)
            for _ in range(layers)
        )
        self.final_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [B, L, d] (padding rows may hold anything), valid [B, L] bool -> [B, L, d]."""
        mask = self.attention_mask(valid)
        keep = valid.unsqueeze(-1).to(x.dtype)
        x = x * keep
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.final_norm(x) * keep


def no_mask(valid: torch.Tensor) -> None:
    """Plain causal attention needs no mask over RIGHT-padded sequences: a real position t only has real
    positions at s <= t, so ``is_causal`` equals :func:`causal_attention_mask` at every real position (padding
    positions differ, and are zeroed), and it lets SDPA run its fused (flash) kernel."""
    return None


class CausalTransformer(TransformerStack):
    """Position t reads positions <= t (SASRec), through SDPA's fused causal kernel (see :func:`no_mask`)."""

    attention_mask = staticmethod(no_mask)


class BidirectionalTransformer(TransformerStack):
    """Every position reads the whole non-padding sequence (BERT4Rec); post-LN GELU blocks by default, as BERT."""

    attention_mask = staticmethod(padding_attention_mask)

    def __init__(
        self,
        dim: int,
        heads: int,
        layers: int,
        dropout: float,
        norm_first: bool = False,
        inner_dim: int | None = None,
        activation: str = "gelu",
    ):
        super().__init__(dim, heads, layers, dropout, norm_first, inner_dim, activation)
