"""ResNet-9 on log-spectrograms: the audio network of GDT and STiCA.

Papers:
    Patrick, Asano, Kuznetsova, Feris, Vedaldi, Henriques. On Compositions of Transformations in Contrastive
    Self-Supervised Learning (GDT). ICCV 2021.
    Patrick, Asano, Huang, Misra, Metze, Henriques, Vedaldi. Space-Time Crop & Attend: Improving Cross-modal Video
    Representation Learning (STiCA). ICCV 2021.

A 2D ResNet with one BasicBlock per stage (``[1, 1, 1, 1]``): conv 7×7 stride 2 (1 → 64, no bias) → BN → ReLU →
max-pool 3/2 → stages of 64, 128, 256, 512 channels (strides 1, 2, 2, 2; 1x1 conv + BN shortcut where the shape
changes) → 512-d after global average pooling. The input is a 1-channel log-filterbank ``(B, 1, F, T)``, frequency
first (257 bins × 99 steps per second for STiCA); any duration runs.

Parameter names are torchvision's ResNet names, as in GDT's ``src/resnet.py``. A GDT checkpoint holds the network as
``audio_network.base.*``: strip that prefix and drop ``fc.weight``/``fc.bias`` (GDT keeps torchvision's unused
1000-way classifier, which its forward never applies). ``tests/fixtures/gdt_audio_keys.json`` records the official
names and shapes.
"""

from __future__ import annotations

import torch
from torch import nn

from videozoo.backbones.base import VideoBackbone

__all__ = ["ResNet9Audio", "resnet9_audio"]


# ================================================================================================
# Blocks
# ================================================================================================
class BasicBlock(nn.Module):
    """Two 3×3 convs (no bias) with BN; identity or 1x1-conv+BN shortcut; ReLU after the sum."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


# ================================================================================================
# Model
# ================================================================================================
class ResNet9Audio(VideoBackbone):
    """ResNet-9 on ``(B, C, F, T)`` spectrograms; pre-pool map ``(B, 8·width, F/32, T/32)`` (rounded up).

    Every layer pads, so any input of at least 1×1 runs (``min_input = (1, 1)``); GDT's 1 s clips (257×99) give a
    512×9×4 map.
    """

    input_layout = "b c f t"
    min_input = (1, 1)

    def __init__(self, *, num_classes: int = 0, dropout: float = 0.0, in_channels: int = 1, width: int = 64) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)  # (B, w, F/2, T/2)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # (B, w, F/4, T/4)
        self.layer1 = nn.Sequential(BasicBlock(width, width))  # (B, w, F/4, T/4)
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, stride=2))  # (B, 2w, F/8, T/8)
        self.layer3 = nn.Sequential(BasicBlock(2 * width, 4 * width, stride=2))  # (B, 4w, F/16, T/16)
        self.layer4 = nn.Sequential(BasicBlock(4 * width, 8 * width, stride=2))  # (B, 8w, F/32, T/32)
        self.num_features = 8 * width  # 512 at width 64
        for m in self.modules():  # torchvision's (and GDT's) ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, F, T) log-filterbank → (B, 512, F/32, T/32)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# ================================================================================================
# Constructors (registered in videozoo/registry.py)
# ================================================================================================
def resnet9_audio(*, num_classes: int = 0, dropout: float = 0.0, in_channels: int = 1, width: int = 64) -> ResNet9Audio:
    """GDT / STiCA audio ResNet-9 on 1-channel log-spectrograms, ``8 * width``-d (512 at the default width)."""
    return ResNet9Audio(num_classes=num_classes, dropout=dropout, in_channels=in_channels, width=width)
