"""Evaluation transform: resize, centre (or multi-) crop, normalise. Deterministic."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as F

from videozoo.data.transforms import functional as VF


def _centre_offset(length: int, crop: int) -> int:
    return round((length - crop) / 2.0)  # torchvision's center_crop rounding, so 1 crop == middle of 3


class VideoEval:
    """uint8 (T, C, H, W) -> float (C, T, h, w), or (N, C, T, h, w) for ``num_crops`` N > 1.

    ``resize``: short side (int) or exact (H, W); ``crop_size``: int or (h, w). ``num_crops``:
    1 = centre; 3 = left/centre/right along the long side (top/middle/bottom for portrait), the spatial half of
    STiCA/SlowFast's 10 clips x 3 crops test; 5 = four corners + centre; 10 = those 5 and their mirror images
    (the 10-crop test of CoCLR's finetuning). Works for any channel count (RGB, grey, flow).
    """

    def __init__(
        self,
        *,
        resize: int | Sequence[int],
        crop_size: int | Sequence[int],
        mean: Sequence[float] | float,
        std: Sequence[float] | float,
        num_crops: int = 1,
    ) -> None:
        if num_crops not in (1, 3, 5, 10):
            raise ValueError(f"num_crops must be 1, 3, 5 or 10, got {num_crops}")
        self.resize = resize if isinstance(resize, int) else tuple(resize)
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self.mean, self.std, self.num_crops = mean, std, num_crops

    def __repr__(self) -> str:
        return (
            f"VideoEval(resize={self.resize!r}, crop_size={self.crop_size!r}, mean={self.mean!r}, "
            f"std={self.std!r}, num_crops={self.num_crops})"
        )

    def crop_boxes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(top, left) of each crop on the resized frame (for 1 and 3 crops; 5/10 follow torchvision five_crop)."""
        ch, cw = self.crop_size
        top, left = _centre_offset(height, ch), _centre_offset(width, cw)
        if self.num_crops == 1:
            return [(top, left)]
        if width >= height:  # crops slide along the long side, centred on the short one
            return [(top, 0), (top, left), (top, width - cw)]
        return [(0, left), (top, left), (height - ch, left)]

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        clip = VF.resize(clip, self.resize)  # (T, C, H', W'), uint8 kept: resampling uint8 is faster
        height, width = clip.shape[-2:]
        ch, cw = self.crop_size
        if ch > height or cw > width:
            raise ValueError(f"crop {self.crop_size} larger than the resized frame {(height, width)}")
        if self.num_crops in (5, 10):
            crops = list(F.ten_crop(clip, [ch, cw]) if self.num_crops == 10 else F.five_crop(clip, [ch, cw]))
        else:
            crops = [clip[..., t : t + ch, l_ : l_ + cw] for t, l_ in self.crop_boxes(height, width)]
        out = [VF.to_cthw(VF.normalize(VF.to_float(c), self.mean, self.std)) for c in crops]
        return out[0] if self.num_crops == 1 else torch.stack(out)  # (C, T, h, w) or (N, C, T, h, w)
