"""C3D with batch norm, as VCOP and CACL train it.

* Tran et al. Learning Spatiotemporal Features with 3D Convolutional Networks (C3D). ICCV 2015: eight 3x3x3
  convs of widths 64, 128, 256, 256, 512, 512, 512, 512 between max pools.
* Xu et al. Self-supervised Spatiotemporal Learning via Video Clip Order Prediction (VCOP). CVPR 2019, and
  Guo et al. Cross-Architecture Self-supervised Video Representation Learning (CACL). CVPR 2022: BN after every
  conv (the conv keeps its bias), pool1 (1, 2, 2), pools 2-4 (2, 2, 2), no pool5 and no fc6/fc7: conv5b is
  averaged globally to 512-d. The pre-pool map is ``(B, 512, T/8, H/16, W/16)``, 512x2x7x7 for 16x112²
  (CACL's 9216-d retrieval feature is that map max-pooled by (1, 2, 2) and flattened).

Module names are those of the official VCOP/CACL code (``conv1``, ``bn1``, ..., ``conv5b``, ``bn5b``): a CACL
checkpoint converts by dropping the prefix ``module.encoder_q.base_network.``, a classifier by renaming
``linear.`` to ``fc.``.
"""

from __future__ import annotations

import torch
from torch import nn

from videozoo.backbones.base import VideoBackbone

__all__ = ["C3D", "c3d"]


def conv_bn(cin: int, cout: int) -> tuple[nn.Conv3d, nn.BatchNorm3d]:
    """A 3x3x3 conv with bias and its batch norm."""
    return nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout)


class C3D(VideoBackbone):
    """C3D-BN, all widths scaled by ``width / 64``."""

    min_input = (8, 32, 32)  # three (2, 2, 2) pools need 8 frames

    def __init__(self, *, num_classes: int = 0, dropout: float = 0.0, in_channels: int = 3, width: int = 64) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.in_channels = in_channels
        self.num_features = 8 * width
        w1, w2, w3, w4 = width, 2 * width, 4 * width, 8 * width
        self.conv1, self.bn1 = conv_bn(in_channels, w1)
        self.pool1 = nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2))
        self.conv2, self.bn2 = conv_bn(w1, w2)
        self.pool2 = nn.MaxPool3d(2, stride=2)
        self.conv3a, self.bn3a = conv_bn(w2, w3)
        self.conv3b, self.bn3b = conv_bn(w3, w3)
        self.pool3 = nn.MaxPool3d(2, stride=2)
        self.conv4a, self.bn4a = conv_bn(w3, w4)
        self.conv4b, self.bn4b = conv_bn(w4, w4)
        self.pool4 = nn.MaxPool3d(2, stride=2)
        self.conv5a, self.bn5a = conv_bn(w4, w4)
        self.conv5b, self.bn5b = conv_bn(w4, w4)
        self.relu = nn.ReLU(inplace=True)
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu(self.bn1(self.conv1(x))))  # (B, w, T, H/2, W/2)
        x = self.pool2(self.relu(self.bn2(self.conv2(x))))  # (B, 2w, T/2, H/4, W/4)
        x = self.relu(self.bn3a(self.conv3a(x)))  # (B, 4w, T/2, H/4, W/4)
        x = self.pool3(self.relu(self.bn3b(self.conv3b(x))))  # (B, 4w, T/4, H/8, W/8)
        x = self.relu(self.bn4a(self.conv4a(x)))  # (B, 8w, T/4, H/8, W/8)
        x = self.pool4(self.relu(self.bn4b(self.conv4b(x))))  # (B, 8w, T/8, H/16, W/16)
        x = self.relu(self.bn5a(self.conv5a(x)))  # (B, 8w, T/8, H/16, W/16)
        return self.relu(self.bn5b(self.conv5b(x)))  # (B, 8w, T/8, H/16, W/16)


def c3d(*, num_classes: int = 0, dropout: float = 0.0, in_channels: int = 3, width: int = 64) -> C3D:
    """C3D-BN (Tran et al. ICCV 2015) in the VCOP/CACL layout (Xu et al. CVPR 2019; Guo et al. CVPR 2022), 512-d."""
    return C3D(num_classes=num_classes, dropout=dropout, in_channels=in_channels, width=width)
