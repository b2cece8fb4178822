"""CACL's video transformer: a 2D network on every frame, then a small ViT over the frame tokens.

Paper:
    Guo, Xie, Zhou, Wang, Yang, Li, Zhao. Cross-Architecture Self-supervised Video Representation Learning (CACL).
    CVPR 2022.

Layout (official ``models/video_transformer.py`` of guoshengcv/CACL): a frozen 2D ResNet-50 embeds every frame
(2048-d) → linear to ``dim`` (768) → a learned CLS token is prepended and a learned positional embedding for
``max_frames + 1`` tokens (33) added → ``depth`` (6) pre-norm ViT blocks (``heads`` 6, MLP ``mlp_dim`` 3072, GELU;
qkv without bias, LayerNorm eps 1e-5) → final LayerNorm → the CLS token (768-d). Here the frame network is any timm
model, created with ``timm.create_model(frame_model, pretrained=frame_pretrained, num_classes=0)``.

Contract notes:

* ``forward_features(x)`` returns the whole normalised token sequence ``(B, T + 1, dim)``, CLS first; ``forward``
  pools by taking the CLS token, so ``num_features = dim``.
* The frame network is frozen by default (``freeze_frame_model=True``): its parameters do not require grad, it runs
  under ``torch.no_grad()``, and it stays in eval mode even when the module is put in ``.train()``. Only eval mode
  keeps its BatchNorm running statistics (those of its own pretraining) from drifting toward the video batches while
  its weights cannot adapt: the features it hands the transformer would otherwise change under it, and a MoCo key
  encoder copied from it would see different statistics. CACL does the same (``eval()`` on every forward).
* Positional embedding: a clip of ``T ≤ max_frames`` frames uses the first ``T + 1`` embeddings (frames keep their
  absolute positions). A longer clip linearly interpolates the ``max_frames`` frame embeddings to ``T`` positions
  (``F.interpolate(mode="linear", align_corners=False)``, the CLS embedding unchanged).
* CACL feeds the clip and its shuffled copy together as one 32-token sequence (two 16-frame clips); that belongs to
  the method, not to this backbone, which embeds whatever ``(B, C, T, H, W)`` clip it is given.
"""

from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videozoo.backbones.base import VideoBackbone

__all__ = ["FrameTransformer", "frame_transformer"]


# ================================================================================================
# Blocks
# ================================================================================================
class Attention(nn.Module):
    """Multi-head self-attention, fused qkv projection (no bias, as CACL) and an output projection."""

    def __init__(self, dim: int, heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, N, D) → q, k, v: (B, h, N, D/h)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(rearrange(x, "b h n d -> b n (h d)")))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm ViT block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def create_frame_model(name: str, *, pretrained: bool = False, in_channels: int = 3) -> nn.Module:
    """``timm.create_model(name, pretrained=..., num_classes=0)``; an unknown name raises with suggestions.

    ``in_channels`` other than 3 goes to timm as ``in_chans``, which adapts the stem (and pretrained stem weights).
    """
    import timm  # imported here: importing timm takes seconds, and only this backbone needs it

    if ":" not in name and not timm.is_model(name):  # "hf-hub:org/model" names go to timm as they are
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"frame_model={name!r} is not a timm model.{hint} timm.list_models('*pattern*') lists them.")
    extra = {} if in_channels == 3 else {"in_chans": in_channels}
    return timm.create_model(name, pretrained=pretrained, num_classes=0, **extra)


# ================================================================================================
# Model
# ================================================================================================
class FrameTransformer(VideoBackbone):
    """A timm 2D network per frame → linear → CLS + positions → pre-norm ViT blocks; CLS token, ``dim``-d."""

    def __init__(
        self,
        *,
        num_classes: int = 0,
        dropout: float = 0.0,
        in_channels: int = 3,
        frame_model: str = "resnet50",
        frame_pretrained: bool = False,
        freeze_frame_model: bool = True,
        dim: int = 768,
        depth: int = 6,
        heads: int = 6,
        mlp_dim: int = 3072,
        max_frames: int = 32,
    ) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.in_channels = in_channels
        self.max_frames = max_frames
        self.freeze_frame_model = freeze_frame_model
        self.frame_model = create_frame_model(frame_model, pretrained=frame_pretrained, in_channels=in_channels)
        frame_dim = getattr(self.frame_model, "head_hidden_size", None) or self.frame_model.num_features
        if freeze_frame_model:
            self.frame_model.requires_grad_(False)
            self.frame_model.eval()
        self.embed_head = nn.Linear(frame_dim, dim)  # (2048 → 768 in CACL)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, max_frames + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self._init_head(num_classes)

    def train(self, mode: bool = True) -> FrameTransformer:
        """As :meth:`nn.Module.train`, but a frozen frame network stays in eval mode (see the module docstring)."""
        super().train(mode)
        if self.freeze_frame_model:
            self.frame_model.eval()
        return self

    def position_embedding(self, num_frames: int) -> torch.Tensor:
        """``(1, num_frames + 1, dim)``: the first ones, or the frame ones linearly interpolated past ``max_frames``."""
        if num_frames <= self.max_frames:
            return self.pos_embed[:, : num_frames + 1]
        cls_pos, frame_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]  # (1, 1, D), (1, max_frames, D)
        frame_pos = rearrange(frame_pos, "one t d -> one d t")
        frame_pos = F.interpolate(frame_pos, size=num_frames, mode="linear", align_corners=False)
        return torch.cat([cls_pos, rearrange(frame_pos, "one d t -> one t d")], dim=1)

    def embed_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` → frame tokens ``(B, T, dim)``."""
        b = x.shape[0]
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_frame_model):
            feats = self.frame_model(frames)  # (B·T, frame_dim)
        return rearrange(self.embed_head(feats), "(b t) d -> b t d", b=b)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised token sequence ``(B, T + 1, dim)``, CLS token first."""
        tokens = self.embed_frames(x)  # (B, T, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        tokens = torch.cat([cls, tokens], dim=1) + self.position_embedding(tokens.shape[1])  # (B, T + 1, D)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, 0]  # the CLS token, (B, D)


# ================================================================================================
# Constructors (registered in videozoo/registry.py)
# ================================================================================================
def frame_transformer(
    *,
    num_classes: int = 0,
    dropout: float = 0.0,
    in_channels: int = 3,
    frame_model: str = "resnet50",
    frame_pretrained: bool = False,
    freeze_frame_model: bool = True,
    dim: int = 768,
    depth: int = 6,
    heads: int = 6,
    mlp_dim: int = 3072,
    max_frames: int = 32,
) -> FrameTransformer:
    """CACL's video transformer over any timm frame network; ``dim``-d (768 by default)."""
    return FrameTransformer(
        num_classes=num_classes,
        dropout=dropout,
        in_channels=in_channels,
        frame_model=frame_model,
        frame_pretrained=frame_pretrained,
        freeze_frame_model=freeze_frame_model,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        max_frames=max_frames,
    )
