"""Clip-level image ops: one set of parameters for every frame of a clip.

Every op takes a clip laid out ``(..., C, H, W)`` (usually ``(T, C, H, W)``): torchvision.transforms.v2 functional
ops treat the leading axes as a batch of images, so calling them once on the whole clip is what makes an
augmentation consistent across time. Float clips are in [0, 1] until :func:`normalize`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as F
from einops import rearrange

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)  # STiCA/GDT (and torchvision's video models) normalise with 0.45 / 0.225
KINETICS_STD = (0.225, 0.225, 0.225)

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def to_float(clip: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is returned as float32 unchanged."""
    return clip.float().div_(255) if clip.dtype == torch.uint8 else clip.float()


def normalize(clip: torch.Tensor, mean: Sequence[float] | float, std: Sequence[float] | float) -> torch.Tensor:
    """(x - mean) / std over the channel axis (-3); scalars apply to every channel, so 1-channel clips work too."""
    channels = clip.shape[-3]
    mean_t, std_t = (per_channel(v, channels, name).to(clip) for v, name in ((mean, "mean"), (std, "std")))
    return (clip - mean_t) / std_t


def per_channel(value: Sequence[float] | float, channels: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(f"{name} has {t.numel()} values but the clip has {channels} channels")
    return rearrange(t, "c -> c 1 1")


def to_cthw(clip: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) -> (C, T, H, W), the layout models take (DESIGN.md)."""
    return rearrange(clip, "... t c h w -> ... c t h w")


def resize_short_side(size: int, height: int, width: int) -> tuple[int, int]:
    """Output (H, W) when the short side becomes ``size``, aspect kept (same rounding as torchvision's resize)."""
    short, long = sorted((height, width))
    new_long = int(size * long / short)
    return (size, new_long) if height <= width else (new_long, size)


def resize(clip: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Short side to ``size`` (int) or exactly (H, W) (pair); antialiased bilinear, uint8 or float."""
    out = resize_short_side(size, *clip.shape[-2:]) if isinstance(size, int) else tuple(size)
    if tuple(out) == tuple(clip.shape[-2:]):
        return clip
    return F.resize(clip, list(out), antialias=True)


GREY_WEIGHTS = {
    "luma": (0.2989, 0.587, 0.114),  # ITU-R 601 on (R, G, B), torchvision's rgb_to_grayscale
    "bgr": (0.114, 0.587, 0.299),  # GDT's grayscale: 0.299 on channel 2, 0.114 on channel 0, on RGB frames
}


def grey_level(clip: torch.Tensor, weights: str = "luma") -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W): the weighted channel sum (``GREY_WEIGHTS``), no clamping."""
    w = torch.tensor(GREY_WEIGHTS[weights], dtype=clip.dtype, device=clip.device)
    return (clip * rearrange(w, "c -> c 1 1")).sum(-3, keepdim=True)


def grey(clip: torch.Tensor, *, mode: str = "luma", channel: int = 0, weights: str = "luma") -> torch.Tensor:
    """Grey a clip keeping its channel count.

    ``luma``: ITU-R 601 luma (torchvision ``rgb_to_grayscale``), what SimCLR/MoCo and CACL's RandomGrayscale do;
    ``weights="bgr"`` applies those weights in reverse channel order, as GDT/STiCA's ``grayscale`` on RGB frames.
    ``channel_copy``: CoCLR's ``RandomGray`` (utils/augmentation.py) copies one colour channel, drawn at random,
    into all three — "actually it is a channel splitting, not strictly grayscale", as its docstring says.
    """
    channels = clip.shape[-3]
    if channels == 1:
        return clip
    if mode == "luma":
        if weights == "luma":
            return F.rgb_to_grayscale(clip, num_output_channels=channels)
        return grey_level(clip, weights).expand_as(clip).contiguous()
    if mode == "channel_copy":
        return clip[..., [channel] * channels, :, :]
    raise ValueError(f"grey mode must be 'luma' or 'channel_copy', got {mode!r}")


def channel_gain(clip: torch.Tensor, gains: Sequence[float]) -> torch.Tensor:
    """Scale each channel of a float [0, 1] clip (T, 3, H, W) by its gain and clip to [0, 1]: a colour cast."""
    return (clip * per_channel(gains, clip.shape[-3], "gains").to(clip)).clamp(0, 1)


def colour_jitter(
    clip: torch.Tensor,
    factors: dict[str, float],
    order: Sequence[str],
    *,
    grey_weights: str = "luma",
    clamp: bool = True,
) -> torch.Tensor:
    """Brightness/contrast/saturation/hue with given factors in the given order (torchvision semantics).

    Contrast blends towards each frame's mean grey level, as per-frame image jitter does; the factors, not the
    per-frame statistics, are what is shared across the clip. Saturation and hue leave 1-channel clips unchanged.
    With ``grey_weights="bgr"`` or ``clamp=False`` the three blends are computed here (GDT/STiCA's ``color_jitter``:
    brightness ``f·x``, contrast ``f·x + (1 − f)·mean(grey)``, saturation ``f·x + (1 − f)·grey``), clamped to
    [0, 1] only with ``clamp``; hue then needs ``clamp`` (pixels in [0, 1]).
    """
    own = grey_weights != "luma" or not clamp
    for name in order:
        if name not in factors:
            continue
        if clip.shape[-3] == 1 and name in ("saturation", "hue"):
            continue
        f = factors[name]
        if not own or (name == "hue" and clamp):
            clip = getattr(F, f"adjust_{name}")(clip, f)
            continue
        if name == "hue":
            raise ValueError("hue jitter needs [0, 1] pixels (clamp=True)")
        if name == "brightness":
            clip = f * clip
        else:
            g = grey_level(clip, grey_weights) if clip.shape[-3] == 3 else clip
            target = g.mean(dim=(-3, -2, -1), keepdim=True) if name == "contrast" else g
            clip = f * clip + (1 - f) * target
        if clamp:
            clip = clip.clamp(0, 1)
    return clip


def blur_kernel_size(sigma: float) -> int:
    """Odd kernel covering ±3 sigma: past that a Gaussian holds < 0.3 % of its mass."""
    return 2 * math.ceil(3 * sigma) + 1


def blur(clip: torch.Tensor, sigma: float | Sequence[float], kernel_size: int | None = None) -> torch.Tensor:
    """Gaussian blur; ``sigma`` a scalar or (sigma_x, sigma_y). Kernel capped so reflect padding fits the image."""
    sx, sy = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    k = kernel_size or blur_kernel_size(max(sx, sy))
    cap = 2 * ((min(clip.shape[-2:]) - 1) // 2) + 1  # reflect padding needs pad < image side
    k = max(1, min(k, cap))
    return F.gaussian_blur(clip, kernel_size=[k, k], sigma=[float(sx), float(sy)])
