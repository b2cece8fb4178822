"""Transformer temporal pooling of STiCA: attend over the time steps of a pre-pool feature map.

Paper:
    Patrick, Asano, Huang, Misra, Metze, Henriques, Vedaldi. Space-Time Crop & Attend: Improving Cross-modal Video
    Representation Learning (STiCA). ICCV 2021.

The official pooling (facebookresearch/GDT, ``model.py`` ``Stica_TransformerFMCrop`` and ``src/transformer.py``),
written out:

* pool space to 1×1, keeping the time steps: ``(B, D, T, H, W) → (B, T, D)``;
* ``depth`` **post-norm** layers, each
  ``x = LN₁(x + Dropout(MHA(x)))`` then ``x = LN₂(x + W₂ GELU(W₁ x + b₁) + b₂)``, LayerNorm eps 1e-12;
* ``MHA`` has query and key projections only (``q_lin``, ``k_lin``, with bias); the values are the input tokens
  themselves and the heads are concatenated without an output projection (``value_output_proj=True`` adds both, the
  official ``qkv_mha`` option). Per head ``softmax(q kᵀ / √(D/heads)) v``; ``dropout`` acts on the attention weights
  and on the attention output; the FFN has no dropout (the official FFN is built without it);
* no positional embedding and no CLS token: the output is token 0 (the first time step), ``(B, D)``.

``depth=0`` is plain average pooling over space and time (the official ``num_layer=0`` path).
Parameter names are the official ones (``transformer.{i}.mha.q_lin`` …), so a STiCA checkpoint's
``video_pooling.2.*`` keys load after stripping that prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

__all__ = ["TransformerPooling"]


# ================================================================================================
# Blocks
# ================================================================================================
class QKAttention(nn.Module):
    """Multi-head self-attention with query/key projections; value and output projections optional (identity)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, value_output_proj: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.dropout = dropout
        self.q_lin = nn.Linear(dim, dim)
        self.k_lin = nn.Linear(dim, dim)
        self.v_lin = nn.Linear(dim, dim) if value_output_proj else nn.Identity()
        self.out_lin = nn.Linear(dim, dim) if value_output_proj else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, N, D); each projection split into heads: (B, h, N, D/h)
        q, k, v = (
            rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (self.q_lin(x), self.k_lin(x), self.v_lin(x))
        )
        context = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_lin(rearrange(context, "b h n d -> b n (h d)"))  # (B, N, D)


class FFN(nn.Module):
    """``lin2(GELU(lin1(x)))``, exact (erf) GELU."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden_dim)
        self.lin2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class PostNormLayer(nn.Module):
    """One post-norm transformer layer: ``LN₁(x + Drop(MHA(x)))``, then ``LN₂(x + FFN(x))``."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, eps: float, value_output_proj: bool) -> None:
        super().__init__()
        self.mha = QKAttention(dim, heads, dropout=dropout, value_output_proj=value_output_proj)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.ffn = FFN(dim, ffn_dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.mha(x)))
        return self.norm2(x + self.ffn(x))


# ================================================================================================
# Module
# ================================================================================================
class TransformerPooling(nn.Module):
    """STiCA's transformer temporal pooling: ``(B, D, T, H, W)`` or ``(B, T, D)`` → ``(B, D)``.

    Args:
        dim: feature width D (512 for R(2+1)D-18).
        depth: number of post-norm layers (STiCA: 2); 0 means average pooling.
        heads: attention heads (STiCA: 4).
        ffn_dim: hidden width of the GELU FFN (STiCA: 2048).
        dropout: on the attention weights and the attention output (STiCA: 0).
        eps: LayerNorm epsilon (STiCA: 1e-12).
        value_output_proj: add value and output projections (the official ``qkv_mha``; off in STiCA).
        time_steps: ``None`` keeps the T steps of the input. An integer resamples time to that many steps with
            adaptive average pooling first, as the official code does (``AdaptiveAvgPool3d((4, 1, 1))`` for 1 s
            clips), which repeats steps of temporal crops shorter than that.
    """

    def __init__(
        self,
        *,
        dim: int = 512,
        depth: int = 2,
        heads: int = 4,
        ffn_dim: int = 2048,
        dropout: float = 0.0,
        eps: float = 1e-12,
        value_output_proj: bool = False,
        time_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.depth = depth
        self.time_steps = time_steps
        self.transformer = nn.ModuleList(
            PostNormLayer(dim, heads, ffn_dim, dropout, eps, value_output_proj) for _ in range(depth)
        )
        for m in self.modules():  # the official initialisation (BERT-style)
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The time-step tokens ``(B, T, D)`` of a pre-pool map ``(B, D, T, H, W)`` (or of ``(B, T, D)`` as given)."""
        if x.ndim == 5 and x.shape[1] == self.dim:
            x = reduce(x, "b d t h w -> b t d", "mean")
        elif not (x.ndim == 3 and x.shape[2] == self.dim):
            raise ValueError(
                f"TransformerPooling(dim={self.dim}) expects (B, {self.dim}, T, H, W) or "
                f"(B, T, {self.dim}), got {tuple(x.shape)}"
            )
        if self.time_steps is not None:
            x = rearrange(x, "b t d -> b d t")
            x = rearrange(F.adaptive_avg_pool1d(x, self.time_steps), "b d t -> b t d")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens(x)  # (B, T, D)
        if self.depth == 0:
            return x.mean(dim=1)  # (B, D)
        for layer in self.transformer:
            x = layer(x)  # (B, T, D)
        return x[:, 0]  # (B, D): token 0, no CLS token
