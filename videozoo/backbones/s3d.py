"""S3D: separable 3D convolutions in an Inception network, in CoCLR's layout.

Papers:
    Xie, Sun, Huang, Tu, Murphy. Rethinking Spatiotemporal Feature Learning: Speed-Accuracy Trade-offs in Video
    Classification (S3D, S3D-G). ECCV 2018.
    Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning (CoCLR). NeurIPS 2020.

Layout (REFERENCE.md, "CoCLR"): ``Conv_1a`` (separable 7, stride 2) → max-pool → ``Conv_2b`` (1x1x1) → ``Conv_2c``
(separable 3) → max-pool → ``Mixed_3b..3c`` → max-pool 3/2 → ``Mixed_4b..4f`` → max-pool 2/2 → ``Mixed_5b..5c``,
1024 channels. A 3×32×128² clip gives a 1024×4×4×4 pre-pool map. Convolutions have no bias; BatchNorm keeps PyTorch's
defaults (eps 1e-5, momentum 0.1) as CoCLR trained it. ``gating=True`` adds S3D-G's self-gating after every branch.

Parameter names follow CoCLR's ``backbone/s3dg.py``, so a CoCLR checkpoint converts by a plain rename: take the keys
under ``encoder_q.0.``, strip that prefix, and drop the duplicate copies under ``block1.`` … ``block5.`` (the official
model registers every layer twice, as ``Conv_1a`` and as ``block1.0``; videozoo keeps the named copy). The same
architecture is torchvision's ``s3d`` (which uses BatchNorm eps 1e-3); ``tests/test_backbones_s3d.py`` maps its state
dict onto this one and checks equal outputs.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import nn

from videozoo.backbones.base import VideoBackbone
from videozoo.backbones.onednn_guard import temporal_conv

__all__ = ["S3D", "s3d"]


# ================================================================================================
# Blocks
# ================================================================================================
def _init_conv_bn(module: nn.Module) -> None:
    """CoCLR's initialisation: conv weights N(0, 0.01), BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Unit3d(nn.Module):
    """Conv3d (no bias) → BatchNorm → ReLU. CoCLR's ``BasicConv3d``: parameters ``conv.*``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class SepConv3d(nn.Module):
    """Separable k×k×k conv: spatial (1,k,k) conv+BN+ReLU, then temporal (k,1,1) conv+BN+ReLU.

    CoCLR's ``STConv3d``: parameters ``conv1.*``, ``bn1.*`` (spatial) and ``conv2.*``, ``bn2.*`` (temporal);
    ``stride`` applies to t, h and w alike (spatial part strides h, w; temporal part strides t).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        k, s, p = kernel_size, stride, kernel_size // 2
        self.conv1 = nn.Conv3d(in_channels, out_channels, (1, k, k), stride=(1, s, s), padding=(0, p, p), bias=False)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, (k, 1, 1), stride=(s, 1, 1), padding=(p, 0, 0), bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, C', T, H/s, W/s)
        # Conv_1a's (7, 1, 1) stride-2 conv crashes oneDNN on short clips: see backbones/onednn_guard.py.
        return self.relu(self.bn2(temporal_conv(self.conv2, x)))  # (B, C', T/s, H/s, W/s)


class SelfGating(nn.Module):
    """S3D-G feature gating: ``x * sigmoid(fc(mean_{t,h,w} x))``, one weight per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = reduce(x, "b c t h w -> b c", "mean")
        gate = torch.sigmoid(self.fc(context))
        return x * rearrange(gate, "b c -> b c 1 1 1")


class SepInception(nn.Module):
    """Inception block with separable 3×3×3 convs in branches 1 and 2.

    ``widths = [b0, b1_mid, b1_out, b2_mid, b2_out, b3]``: branch 0 a 1x1x1 conv; branches 1 and 2 a 1x1x1 conv then a
    separable 3x3x3 conv; branch 3 a 3x3x3 max-pool (stride 1) then a 1x1x1 conv; outputs concatenated on channels.
    """

    def __init__(self, in_channels: int, widths: list[int], gating: bool = False) -> None:
        super().__init__()
        b0, b1_mid, b1_out, b2_mid, b2_out, b3 = widths
        self.branch0 = nn.Sequential(Unit3d(in_channels, b0))
        self.branch1 = nn.Sequential(Unit3d(in_channels, b1_mid), SepConv3d(b1_mid, b1_out, 3))
        self.branch2 = nn.Sequential(Unit3d(in_channels, b2_mid), SepConv3d(b2_mid, b2_out, 3))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), Unit3d(in_channels, b3))
        self.out_channels = b0 + b1_out + b2_out + b3
        self.gating = gating
        if gating:
            self.gating_b0 = SelfGating(b0)
            self.gating_b1 = SelfGating(b1_out)
            self.gating_b2 = SelfGating(b2_out)
            self.gating_b3 = SelfGating(b3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        if self.gating:
            gates = (self.gating_b0, self.gating_b1, self.gating_b2, self.gating_b3)
            outs = [gate(out) for gate, out in zip(gates, outs)]
        return torch.cat(outs, dim=1)  # (B, b0 + b1_out + b2_out + b3, T, H, W)


# ================================================================================================
# Model
# ================================================================================================
# name → [b0, b1_mid, b1_out, b2_mid, b2_out, b3] at width_mult 1; each block's input width is the previous output.
_INCEPTION = {
    "Mixed_3b": [64, 96, 128, 16, 32, 32],  # → 256
    "Mixed_3c": [128, 128, 192, 32, 96, 64],  # → 480
    "Mixed_4b": [192, 96, 208, 16, 48, 64],  # → 512
    "Mixed_4c": [160, 112, 224, 24, 64, 64],  # → 512
    "Mixed_4d": [128, 128, 256, 24, 64, 64],  # → 512
    "Mixed_4e": [112, 144, 288, 32, 64, 64],  # → 528
    "Mixed_4f": [256, 160, 320, 32, 128, 128],  # → 832
    "Mixed_5b": [256, 160, 320, 32, 128, 128],  # → 832
    "Mixed_5c": [384, 192, 384, 48, 128, 128],  # → 1024
}
# The forward order: max-pools sit between the stages, exactly where CoCLR puts them.
_LAYERS = (
    "Conv_1a",
    "MaxPool_2a",
    "Conv_2b",
    "Conv_2c",
    "MaxPool_3a",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool_4a",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool_5a",
    "Mixed_5b",
    "Mixed_5c",
)


class S3D(VideoBackbone):
    """S3D (or S3D-G with ``gating=True``) in CoCLR's layout; pre-pool map ``(B, 1024, T/8, H/32, W/32)``.

    Any clip of at least 1 frame and any frame size run: inputs below ``min_input = (5, 17, 17)`` are replicate-padded
    (see :meth:`VideoBackbone.pad_to_minimum`), because ``MaxPool_5a`` (kernel 2, no padding, as in CoCLR) needs at
    least 2 steps on every axis, which takes 5 frames and 17 pixels at the input.
    """

    min_input = (5, 17, 17)

    def __init__(
        self,
        *,
        num_classes: int = 0,
        dropout: float = 0.0,
        in_channels: int = 3,
        gating: bool = False,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)

        def w(n: int) -> int:
            return max(1, round(n * width_mult))

        self.in_channels = in_channels
        self.gating = gating
        self.Conv_1a = SepConv3d(in_channels, w(64), 7, stride=2)  # (B, 64, T/2, H/2, W/2)
        self.MaxPool_2a = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))  # (B, 64, T/2, H/4, W/4)
        self.Conv_2b = Unit3d(w(64), w(64))
        self.Conv_2c = SepConv3d(w(64), w(192), 3)  # (B, 192, T/2, H/4, W/4)
        self.MaxPool_3a = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))  # (B, 192, T/2, H/8, W/8)
        channels = w(192)
        for name, widths in _INCEPTION.items():
            if name == "Mixed_4b":  # (B, 480, T/4, H/16, W/16) after the pool
                self.MaxPool_4a = nn.MaxPool3d(3, stride=2, padding=1)
            if name == "Mixed_5b":  # (B, 832, T/8, H/32, W/32) after the pool
                self.MaxPool_5a = nn.MaxPool3d(2, stride=2)
            block = SepInception(channels, [w(n) for n in widths], gating=gating)
            setattr(self, name, block)
            channels = block.out_channels
        self.num_features = channels  # 1024 at width_mult 1
        _init_conv_bn(self)
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, T, H, W) → (B, 1024, T/8, H/32, W/32)
        for name in _LAYERS:
            x = getattr(self, name)(x)
        return x


# ================================================================================================
# Constructors (registered in videozoo/registry.py)
# ================================================================================================
def s3d(
    *, num_classes: int = 0, dropout: float = 0.0, in_channels: int = 3, gating: bool = False, width_mult: float = 1.0
) -> S3D:
    """S3D as used by CoCLR (1024-d); ``gating=True`` gives S3D-G; ``width_mult`` scales every width."""
    return S3D(num_classes=num_classes, dropout=dropout, in_channels=in_channels, gating=gating, width_mult=width_mult)
