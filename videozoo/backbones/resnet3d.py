"""3D ResNets: R(2+1)D-18, R3D-18 and MC3-18, and the VCOP-style R3D / R(2+1)D that CACL trains.

* Tran et al. A Closer Look at Spatiotemporal Convolutions for Action Recognition. CVPR 2018.
  :func:`r2plus1d_18`, :func:`r3d_18` and :func:`mc3_18` keep torchvision's parameter and buffer names
  (``stem.*``, ``layer1.0.conv1.0.*``, ..., ``fc.*``), so ``torchvision.models.video`` state dicts load
  unchanged and give the same outputs; the pre-pool map is ``(B, 512, T/8, H/16, W/16)``.
* Xu et al. Self-supervised Spatiotemporal Learning via Video Clip Order Prediction (VCOP). CVPR 2019, and
  Guo et al. Cross-Architecture Self-supervised Video Representation Learning (CACL). CVPR 2022.
  :func:`vcop_r3d` and :func:`vcop_r21d` keep the names of the official VCOP/CACL modules (``conv1``,
  ``bn1``, ``conv2.block1.*``, ``conv3.blocks.0.*``, ...): a CACL checkpoint converts by dropping the prefix
  ``module.encoder_q.base_network.``, a classifier by renaming ``linear.`` to ``fc.``.

The two families differ in details that change the weights: torchvision factorises R(2+1)D convs with one
mid width per block (computed from the block's input and output widths) and a fixed 45-channel stem, and
downsamples the shortcut with a plain 1x1x1 conv; VCOP factorises every conv with its own mid width
``⌊t·h·w·Cin·Cout / (h·w·Cin + t·Cout)⌋`` (stem included, with BN + ReLU inside) and factorises the shortcut too.
Both stride 2 in time, height and width at the start of stages 2-4 (MC3 only in space).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from videozoo.backbones.base import VideoBackbone

__all__ = ["VcopResNet", "VideoResNet", "mc3_18", "r2plus1d_18", "r3d_18", "vcop_r3d", "vcop_r21d"]

ConvMaker = Callable[[int, int, int, int], nn.Module]  # (in, out, mid, stride) -> conv


# ------------------------------------------------------------------------------------------------
# torchvision-layout blocks
# ------------------------------------------------------------------------------------------------
def conv3x3x3(cin: int, cout: int, mid: int, stride: int) -> nn.Module:
    """R3D: a full 3x3x3 conv (``mid`` unused)."""
    return nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x3x3(cin: int, cout: int, mid: int, stride: int) -> nn.Module:
    """MC3 upper stages: a spatial-only 1x3x3 conv, no temporal stride."""
    return nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)


def conv2plus1d(cin: int, cout: int, mid: int, stride: int) -> nn.Module:
    """R(2+1)D: 1x3x3 spatial conv to ``mid`` channels → BN → ReLU → 3x1x1 temporal conv."""
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
    )


class BasicBlock(nn.Module):
    """conv → BN → ReLU → conv → BN, plus the (downsampled) input, → ReLU; torchvision's names."""

    def __init__(self, cin: int, cout: int, conv: ConvMaker, stride: int = 1) -> None:
        super().__init__()
        mid = (cin * cout * 27) // (cin * 9 + 3 * cout)  # R(2+1)D mid width, shared by both convs
        self.conv1 = nn.Sequential(conv(cin, cout, mid, stride), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv(cout, cout, mid, 1), nn.BatchNorm3d(cout))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            time_stride = 1 if conv is conv1x3x3 else stride
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=(time_stride, stride, stride), bias=False), nn.BatchNorm3d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))  # (B, cout, T/s, H/s, W/s)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def basic_stem(cin: int, width: int) -> nn.Sequential:
    """R3D / MC3 stem: 3x7x7 conv, stride (1, 2, 2)."""
    return nn.Sequential(
        nn.Conv3d(cin, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def r2plus1d_stem(cin: int, width: int) -> nn.Sequential:
    """R(2+1)D stem: 1x7x7 conv to 45 channels (scaled with ``width``) → BN → ReLU → 3x1x1 conv."""
    mid = max(1, 45 * width // 64)
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, (3, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


# ------------------------------------------------------------------------------------------------
# VCOP / CACL-layout blocks (attribute names are those of the official checkpoints)
# ------------------------------------------------------------------------------------------------
class FullConv(nn.Module):
    """A plain 3D conv, wrapped so its weight is named ``temporal_spatial_conv.weight`` (VCOP R3D)."""

    def __init__(self, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel)
        self.temporal_spatial_conv = nn.Conv3d(
            cin, cout, tuple(kernel), stride=tuple(stride), padding=padding, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_spatial_conv(x)


class FactoredConv(nn.Module):
    """VCOP's (2+1)D conv: 1xhxw spatial conv → BN → ReLU → tx1x1 temporal conv.

    The mid width ``⌊t·h·w·Cin·Cout / (h·w·Cin + t·Cout)⌋`` matches the parameters of a full txhxw conv
    (Tran et al. 2018, section 3.5); VCOP computes it for every conv, 1x1x1 shortcuts included.
    """

    def __init__(self, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        (t, h, w), (st, sh, sw) = kernel, stride
        mid = (t * h * w * cin * cout) // (h * w * cin + t * cout)
        self.spatial_conv = nn.Conv3d(cin, mid, (1, h, w), stride=(1, sh, sw), padding=(0, h // 2, w // 2), bias=False)
        self.bn = nn.BatchNorm3d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.temporal_conv = nn.Conv3d(mid, cout, (t, 1, 1), stride=(st, 1, 1), padding=(t // 2, 0, 0), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_conv(self.relu(self.bn(self.spatial_conv(x))))


class VcopBlock(nn.Module):
    """VCOP's residual block: the first block of stages 2-4 strides 2 in t, h, w on both paths."""

    def __init__(self, cin: int, cout: int, conv: type[nn.Module], downsample: bool = False) -> None:
        super().__init__()
        s = (2, 2, 2) if downsample else (1, 1, 1)
        self.conv1 = conv(cin, cout, (3, 3, 3), s)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = conv(cout, cout, (3, 3, 3), (1, 1, 1))
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        if downsample:
            self.downsampleconv = conv(cin, cout, (1, 1, 1), s)
            self.downsamplebn = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))  # (B, cout, T/s, H/s, W/s)
        out += self.downsamplebn(self.downsampleconv(x)) if self.downsample else x
        return self.relu(out)


class VcopStage(nn.Module):
    """``block1`` (which may downsample) followed by ``blocks``, as VCOP names them."""

    def __init__(self, cin: int, cout: int, depth: int, conv: type[nn.Module], downsample: bool) -> None:
        super().__init__()
        self.block1 = VcopBlock(cin, cout, conv, downsample)
        self.blocks = nn.ModuleList(VcopBlock(cout, cout, conv) for _ in range(depth - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)
        for block in self.blocks:
            x = block(x)
        return x


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def _init_weights(model: nn.Module) -> None:
    """torchvision's video ResNet initialisation."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class VideoResNet(VideoBackbone):
    """torchvision's video ResNet-18 layout: ``stem``, ``layer1..4`` of two basic blocks each, ``fc``."""

    def __init__(
        self,
        stem: Callable[[int, int], nn.Module],
        convs: Sequence[ConvMaker],
        *,
        layers: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 0,
        dropout: float = 0.0,
        in_channels: int = 3,
        width: int = 64,
    ) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.in_channels = in_channels
        self.num_features = 8 * width
        self.stem = stem(in_channels, width)
        widths = [width * m for m in (1, 2, 4, 8)]
        cin = width
        for i, (conv, depth, cout) in enumerate(zip(convs, layers, widths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin, cout, conv, stride)] + [BasicBlock(cout, cout, conv) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self._init_head(num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w, T, H/2, W/2)
        x = self.layer1(x)  # (B, w, T, H/2, W/2)
        x = self.layer2(x)  # (B, 2w, T/2, H/4, W/4)   (MC3: T)
        x = self.layer3(x)  # (B, 4w, T/4, H/8, W/8)   (MC3: T)
        return self.layer4(x)  # (B, 8w, T/8, H/16, W/16) (MC3: T)


class VcopResNet(VideoBackbone):
    """VCOP's R3D / R(2+1)D: ``conv1`` (3x7x7, stride (1, 2, 2)) → ``bn1`` → ReLU → stages ``conv2..conv5``."""

    def __init__(
        self,
        conv: type[nn.Module],
        *,
        layers: Sequence[int],
        num_classes: int = 0,
        dropout: float = 0.0,
        in_channels: int = 3,
        width: int = 64,
    ) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.in_channels = in_channels
        self.num_features = 8 * width
        self.conv1 = conv(in_channels, width, (3, 7, 7), (1, 2, 2))
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        d1, d2, d3, d4 = layers
        self.conv2 = VcopStage(width, width, d1, conv, downsample=False)
        self.conv3 = VcopStage(width, 2 * width, d2, conv, downsample=True)
        self.conv4 = VcopStage(2 * width, 4 * width, d3, conv, downsample=True)
        self.conv5 = VcopStage(4 * width, 8 * width, d4, conv, downsample=True)
        self._init_head(num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, w, T, H/2, W/2)
        x = self.conv2(x)  # (B, w, T, H/2, W/2)
        x = self.conv3(x)  # (B, 2w, T/2, H/4, W/4)
        x = self.conv4(x)  # (B, 4w, T/4, H/8, W/8)
        return self.conv5(x)  # (B, 8w, T/8, H/16, W/16); 512x2x7x7 for 16x112²


# ------------------------------------------------------------------------------------------------
# registered constructors (videozoo.registry names them by import path)
# ------------------------------------------------------------------------------------------------
def r2plus1d_18(*, num_classes: int = 0, dropout: float = 0.0, in_channels: int = 3, width: int = 64) -> VideoResNet:
    """R(2+1)D-18 (Tran et al. CVPR 2018); state dicts interchangeable with torchvision's ``r2plus1d_18``."""
    return VideoResNet(
        r2plus1d_stem, [conv2plus1d] * 4, num_classes=num_classes, dropout=dropout, in_channels=in_channels, width=width
    )


def r3d_18(*, num_classes: int = 0, dropout: float = 0.0, in_channels: int = 3, width: int = 64) -> VideoResNet:
    """R3D-18 (Tran et al. CVPR 2018); state dicts interchangeable with torchvision's ``r3d_18``."""
    return VideoResNet(
        basic_stem, [conv3x3x3] * 4, num_classes=num_classes, dropout=dropout, in_channels=in_channels, width=width
    )


def mc3_18(*, num_classes: int = 0, dropout: float = 0.0, in_channels: int = 3, width: int = 64) -> VideoResNet:
    """MC3-18, 3D convs in stage 1 only (Tran et al. CVPR 2018); interchangeable with torchvision's ``mc3_18``."""
    return VideoResNet(
        basic_stem,
        [conv3x3x3] + [conv1x3x3] * 3,
        num_classes=num_classes,
        dropout=dropout,
        in_channels=in_channels,
        width=width,
    )


def vcop_r3d(
    *,
    num_classes: int = 0,
    dropout: float = 0.0,
    in_channels: int = 3,
    width: int = 64,
    layers: Sequence[int] = (3, 4, 6, 3),
) -> VcopResNet:
    """VCOP-style R3D (Xu et al. CVPR 2019) as CACL trains it (Guo et al. CVPR 2022: layers (3, 4, 6, 3))."""
    return VcopResNet(
        FullConv, layers=layers, num_classes=num_classes, dropout=dropout, in_channels=in_channels, width=width
    )


def vcop_r21d(
    *,
    num_classes: int = 0,
    dropout: float = 0.0,
    in_channels: int = 3,
    width: int = 64,
    layers: Sequence[int] = (1, 1, 1, 1),
) -> VcopResNet:
    """VCOP-style R(2+1)D-10 (Xu et al. CVPR 2019), CACL's R(2+1)D (Guo et al. CVPR 2022)."""
    return VcopResNet(
        FactoredConv, layers=layers, num_classes=num_classes, dropout=dropout, in_channels=in_channels, width=width
    )
