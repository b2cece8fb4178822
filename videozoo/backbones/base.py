"""The backbone contract every videozoo encoder honours (DESIGN.md, "Contracts").

A backbone exposes:

* ``num_features`` - width of the pooled embedding;
* ``forward_features(x)`` - the pre-pool feature map, e.g. ``(B, D, T', H', W')`` for video;
* ``forward(x)`` - the pooled embedding ``(B, D)``, or logits ``(B, num_classes)`` once a head is set;
* ``reset_head(num_classes)`` - replace the classifier (``0`` removes it).

Methods and evaluation code use only these four; they never reach into ``.fc``. The classifier is
always called ``fc`` so that torchvision state dicts of the shared architectures load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InputShapeError", "VideoBackbone"]


_LAYOUT_HINTS = {
    "b c t h w": "Video clips are (batch, channels, frames, height, width); a single (C, T, H, W) clip needs "
    ".unsqueeze(0), and decoded (T, C, H, W) frames go through videozoo.transforms_for(model) first.",
    "b c f t": "Spectrograms are (batch, 1, frequency bins, time steps); a single (1, F, T) log-filterbank "
    "needs .unsqueeze(0).",
}


class InputShapeError(ValueError):
    """Raised when a tensor does not have the layout a backbone expects."""


class VideoBackbone(nn.Module):
    """Base class: input validation, global pooling, the optional ``fc`` head.

    Subclasses set ``num_features``, ``in_channels`` and implement :meth:`forward_features`.
    ``input_layout`` names the axes of the expected input, ``"b c t h w"`` for video and
    ``"b c f t"`` for spectrograms; ``min_input`` gives the smallest size per spatio-temporal axis
    the architecture can take *after* :meth:`pad_to_minimum` (shorter inputs are padded, see there).
    """

    num_features: int
    in_channels: int
    input_layout: str = "b c t h w"
    min_input: tuple[int, ...] = (1, 32, 32)

    def __init__(self, *, num_classes: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc: nn.Module = nn.Identity()

    # -- contract -------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pre-pool feature map for a checked input."""
        raise NotImplementedError

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pool of a feature map ``(B, D, ...)`` to ``(B, D)``."""
        return features.flatten(2).mean(dim=2)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.pool(self.forward_features(self.check_input(x))))

    def reset_head(self, num_classes: int, *, dropout: float | None = None) -> None:
        """Start a new linear classifier with ``num_classes`` outputs (0: pooled embedding)."""
        self.num_classes = num_classes
        if dropout is not None:
            self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        device = next(self.parameters()).device
        self.fc = nn.Linear(self.num_features, num_classes, device=device) if num_classes else nn.Identity()

    def _init_head(self, num_classes: int) -> None:
        """Called by subclasses at the end of ``__init__`` once ``num_features`` is known."""
        if num_classes:
            self.fc = nn.Linear(self.num_features, num_classes)

    # -- input handling -------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``x`` against ``input_layout`` and ``in_channels``; pad if below ``min_input``."""
        axes = self.input_layout.split()
        if not isinstance(x, torch.Tensor) or x.ndim != len(axes) or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputShapeError(
                f"{type(self).__name__} expects a float tensor ({', '.join(a.upper() for a in axes)}) "
                f"with C={self.in_channels}, got {got}. {_LAYOUT_HINTS.get(self.input_layout, '')}"
            )
        if not x.is_floating_point():
            raise InputShapeError(
                f"{type(self).__name__} expects a float tensor, got {x.dtype}; normalise uint8 frames "
                "with videozoo.transforms_for(model)."
            )
        return self.pad_to_minimum(x)

    def pad_to_minimum(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad the trailing axes up to ``min_input`` so any clip length and size runs.

        Padding repeats the last frame (and the border pixels): a 1-frame clip becomes a still
        video, which is what a 3D network trained on motion should see for it.
        """
        sizes = x.shape[2:]
        missing = [max(0, m - s) for m, s in zip(self.min_input, sizes, strict=True)]
        if not any(missing):
            return x
        pad: list[int] = []
        for extra in reversed(missing):  # F.pad lists the last axis first
            pad += [0, extra]
        return F.pad(x, pad, mode="replicate")
