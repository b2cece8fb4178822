"""Training augmentation of a clip, and of an RGB clip with its flow clip.

One :class:`ClipParams` is drawn per clip and applied to all its frames: a clip of identical frames stays
identical across time. Splitting ``params`` from ``apply`` is what lets an RGB clip and its flow clip share crop
and flip (CoCLR, Han et al., NeurIPS 2020) while colour ops touch RGB only.

Random numbers come from torch's generator: DataLoader workers seed it differently per worker, whereas a
``random``/``numpy`` state copied into forked workers repeats the same augmentations in every worker.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torchvision.transforms.v2.functional as F

from videozoo.data.transforms import functional as VF
from videozoo.data.transforms.functional import IMAGENET_MEAN, IMAGENET_STD, JITTER_OPS


@dataclass(frozen=True)
class ClipParams:
    """Random parameters of one clip. The crop box is in fractions of the frame (top, left, height, width) so
    that it carries over to a flow clip stored at another resolution."""

    box: tuple[float, float, float, float]
    flip: bool = False
    jitter: dict[str, float] | None = None
    jitter_order: tuple[str, ...] = ()
    grey: bool = False
    grey_channel: int = 0
    blur_sigma: tuple[float, float] | None = None
    gains: tuple[float, float, float] | None = None


def _uniform(low: float, high: float, generator: torch.Generator | None = None) -> float:
    return float(torch.empty(()).uniform_(low, high, generator=generator))


def _bernoulli(p: float, generator: torch.Generator | None = None) -> bool:
    return p > 0 and float(torch.rand((), generator=generator)) < p


def _jitter_range(value: float | Sequence[float], centre: float) -> tuple[float, float] | None:
    """torchvision's ColorJitter convention: v -> [max(0, c - v), c + v]; 0 means "off"."""
    if isinstance(value, (int, float)):
        if value == 0:
            return None
        return (max(0.0, centre - value), centre + value) if centre else (-value, value)
    return (float(value[0]), float(value[1]))


def sample_box(
    height: int,
    width: int,
    *,
    scale: Sequence[float],
    ratio: Sequence[float],
    fallback: str = "center",
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """Random resized crop box (top, left, h, w) in pixels.

    ``fallback="center"`` (torchvision's RandomResizedCrop rule): area fraction ~ U(scale), log aspect ~ U(log
    ratio); 10 tries, then the largest centred box of an allowed aspect. ``fallback="resize_full"`` (CoCLR's
    ``RandomSizedCrop(consistent=False)``, utils/augmentation.py:99-137): one try, aspect ~ U(ratio) and the box
    transposed with p 0.5; a box that does not fit is not retried: the whole frame is taken (and stretched to the
    crop size).
    """
    area = height * width
    if fallback == "resize_full":
        target = area * _uniform(*scale, generator=generator)
        aspect = _uniform(*ratio, generator=generator)
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if _bernoulli(0.5, generator):
            w, h = h, w
        if w > width or h > height:
            return 0, 0, height, width
        top = int(torch.randint(0, height - h + 1, (), generator=generator))
        left = int(torch.randint(0, width - w + 1, (), generator=generator))
        return top, left, h, w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(*scale, generator=generator)
        aspect = math.exp(_uniform(*log_ratio, generator=generator))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _to_pixels(box: tuple[float, float, float, float], height: int, width: int) -> tuple[int, int, int, int]:
    top, left, h, w = box
    t, l_ = round(top * height), round(left * width)
    return t, l_, max(1, min(round(h * height), height - t)), max(1, min(round(w * width), width - l_))


CHOICES = {
    "grey_mode": ("luma", "channel_copy"),
    "grey_weights": ("luma", "bgr"),
    "crop_fallback": ("center", "resize_full"),
}


class VideoTrain:
    """Training augmentation: uint8 (T, C, H, W) -> normalised float (C, T, crop, crop).

    Spatial: ``scale`` set -> random resized crop (area ``scale``, aspect ``ratio``) of the frame (after the
    optional ``resize``), a box that does not fit handled by ``crop_fallback`` ("center": torchvision's 10 tries
    then a centred box; "resize_full": CoCLR's one try, then the whole frame, see :func:`sample_box`);
    ``scale=None`` -> ``resize`` then a plain random crop of ``crop_size`` (CACL's Resize(128, 171) +
    RandomCrop(112)). The box is mapped back to the input frame, so the clip is resampled once (``antialias``:
    antialiased bilinear, else plain bilinear as ``F.interpolate``). Then an optional colour cast (``channel_gain``
    g > 0: each channel times ``exp(u)``, ``u ~ U(-g, g)`` drawn per channel and clip, the per-video colour grading
    of real footage as an augmentation; off in the papers' presets), then, in CoCLR's order: colour jitter (p
    ``jitter_p``, ops in random order), grey (p ``grey_p``, ``grey_mode`` "luma" or CoCLR's "channel_copy"),
    Gaussian blur (p ``blur_p``, sigma ~ U(``blur_sigma``); ``blur_fixed_xy=True`` is GDT/STiCA's kornia call: an
    11x11 kernel with sigma ``blur_sigma[0]`` down the rows and ``blur_sigma[1]`` along them), horizontal flip (p
    ``flip_p``), ``(x - mean) / std``. ``jitter`` = (brightness, contrast, saturation, hue) with torchvision's
    ColorJitter meaning.

    Switches for GDT/STiCA's pipeline (``datasets/video_transforms.py``): ``grey_weights="bgr"`` applies the luma
    weights 0.299/0.587/0.114 to the channels in reverse order (the official grey, also inside contrast and
    saturation jitter); ``normalise_first=True`` normalises before jitter, grey and blur, which then run on
    normalised values without clamping (brightness scales around the mean instead of around black; no hue).
    """

    def __init__(
        self,
        *,
        crop_size: int | Sequence[int] = 128,
        scale: Sequence[float] | None = (0.2, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        resize: int | Sequence[int] | None = None,
        crop_fallback: str = "center",
        jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        grey_p: float = 0.2,
        grey_mode: str = "luma",
        grey_weights: str = "luma",
        blur_p: float = 0.5,
        blur_sigma: Sequence[float] = (0.1, 2.0),
        blur_fixed_xy: bool = False,
        flip_p: float = 0.5,
        mean: Sequence[float] | float = IMAGENET_MEAN,
        std: Sequence[float] | float = IMAGENET_STD,
        channel_gain: float = 0.0,
        normalise_first: bool = False,
        antialias: bool = True,
    ) -> None:
        if channel_gain < 0:
            raise ValueError(f"channel_gain must be >= 0 (the half-width of the log channel gains), got {channel_gain}")
        if scale is None and resize is None:
            raise ValueError("a plain random crop (scale=None) needs resize= (e.g. (128, 171) for CACL)")
        for name, value in (("grey_mode", grey_mode), ("grey_weights", grey_weights), ("crop_fallback", crop_fallback)):
            if value not in CHOICES[name]:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, CHOICES[name]))}, got {value!r}")
        if normalise_first and len(jitter) > 3 and jitter[3]:
            raise ValueError("normalise_first (GDT's order) has no hue jitter (hue needs [0, 1] pixels)")
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self.scale, self.ratio, self.resize, self.crop_fallback = scale, tuple(ratio), resize, crop_fallback
        self.jitter = tuple(jitter)
        self.jitter_p, self.grey_p, self.grey_mode, self.grey_weights = jitter_p, grey_p, grey_mode, grey_weights
        self.blur_p, self.blur_sigma, self.blur_fixed_xy = blur_p, tuple(blur_sigma), blur_fixed_xy
        self.flip_p, self.mean, self.std, self.channel_gain = flip_p, mean, std, channel_gain
        self.normalise_first, self.antialias = normalise_first, antialias
        self._ranges = {name: _jitter_range(v, 0.0 if name == "hue" else 1.0) for name, v in zip(JITTER_OPS, jitter)}

    def __repr__(self) -> str:
        keys = (
            "crop_size",
            "scale",
            "ratio",
            "resize",
            "crop_fallback",
            "jitter",
            "jitter_p",
            "grey_p",
            "grey_mode",
            "grey_weights",
            "blur_p",
            "blur_sigma",
            "blur_fixed_xy",
            "flip_p",
            "mean",
            "std",
            "channel_gain",
            "normalise_first",
            "antialias",
        )
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"

    def without_colour(self) -> VideoTrain:
        """Same crop and flip, no colour/grey/blur: CoCLR's "null transform", given to part of its views."""
        out = copy.copy(self)
        out.jitter_p = out.grey_p = out.blur_p = out.channel_gain = 0.0
        return out

    def params(self, height: int, width: int, *, generator: torch.Generator | None = None) -> ClipParams:
        """Draw one clip's parameters for frames of size (height, width)."""
        g = generator
        if self.resize is None:
            rh, rw = height, width
        elif isinstance(self.resize, int):
            rh, rw = VF.resize_short_side(self.resize, height, width)
        else:
            rh, rw = self.resize
        if self.scale is not None:
            top, left, h, w = sample_box(
                rh, rw, scale=self.scale, ratio=self.ratio, fallback=self.crop_fallback, generator=g
            )
        else:
            h, w = min(self.crop_size[0], rh), min(self.crop_size[1], rw)
            top = int(torch.randint(0, rh - h + 1, (), generator=g))
            left = int(torch.randint(0, rw - w + 1, (), generator=g))
        box = (top / rh, left / rw, h / rh, w / rw)
        jitter, order = None, ()
        if _bernoulli(self.jitter_p, g):
            jitter = {n: _uniform(*r, generator=g) for n, r in self._ranges.items() if r is not None}
            order = tuple(JITTER_OPS[i] for i in torch.randperm(4, generator=g).tolist() if JITTER_OPS[i] in jitter)
        is_grey = _bernoulli(self.grey_p, g)
        grey_channel = int(torch.randint(0, 3, (), generator=g))
        sigma = None
        if _bernoulli(self.blur_p, g):
            s = _uniform(*self.blur_sigma, generator=g)
            # (sigma along x = width, sigma along y = height); kornia <= 0.5 puts its first sigma on the rows
            sigma = (self.blur_sigma[1], self.blur_sigma[0]) if self.blur_fixed_xy else (s, s)
        flip = _bernoulli(self.flip_p, g)
        gains = None
        if self.channel_gain:  # drawn last and only when on: the presets' other draws stay as they were
            gains = tuple(math.exp(_uniform(-self.channel_gain, self.channel_gain, generator=g)) for _ in range(3))
        return ClipParams(
            box=box,
            flip=flip,
            jitter=jitter,
            jitter_order=order,
            grey=is_grey,
            grey_channel=grey_channel,
            blur_sigma=sigma,
            gains=gains,
        )

    def geometry(self, clip: torch.Tensor, params: ClipParams) -> torch.Tensor:
        """Crop + resize + flip: (T, C, H, W) -> (T, C, crop_h, crop_w), dtype kept."""
        top, left, h, w = _to_pixels(params.box, *clip.shape[-2:])
        clip = F.resized_crop(clip, top, left, h, w, list(self.crop_size), antialias=self.antialias)
        return F.horizontal_flip(clip) if params.flip else clip

    def colour(self, clip: torch.Tensor, params: ClipParams, *, normalised: bool = False) -> torch.Tensor:
        """Cast, jitter, grey, blur on a float [0, 1] clip (T, C, H, W); with ``normalised`` (the clip already
        normalised, GDT's order) jitter, grey and blur without clamping, and no cast."""
        if not normalised and params.gains is not None and clip.shape[-3] == 3:
            clip = VF.channel_gain(clip, params.gains)
        if params.jitter:
            clip = VF.colour_jitter(
                clip, params.jitter, params.jitter_order, grey_weights=self.grey_weights, clamp=not normalised
            )
        if params.grey:
            clip = VF.grey(clip, mode=self.grey_mode, channel=params.grey_channel, weights=self.grey_weights)
        if params.blur_sigma is not None:
            clip = VF.blur(clip, params.blur_sigma, kernel_size=11 if self.blur_fixed_xy else None)
        return clip

    def apply(
        self,
        clip: torch.Tensor,
        params: ClipParams,
        *,
        colour: bool = True,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
    ) -> torch.Tensor:
        """uint8/float (T, C, H, W) -> float (C, T, crop_h, crop_w) with the given parameters."""
        clip = VF.to_float(self.geometry(clip, params))  # crop first: colour ops then run on fewer pixels
        mean, std = self.mean if mean is None else mean, self.std if std is None else std
        if self.normalise_first:  # GDT/STiCA: the colour ops run on normalised values (the cast, ours, before)
            if colour and params.gains is not None and clip.shape[-3] == 3:
                clip = VF.channel_gain(clip, params.gains)
            clip = VF.normalize(clip, mean, std)
            return VF.to_cthw(self.colour(clip, params, normalised=True) if colour else clip)
        if colour:
            clip = self.colour(clip, params)
        return VF.to_cthw(VF.normalize(clip, mean, std))

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return self.apply(clip, self.params(*clip.shape[-2:]))


class PairedTransform:
    """Augment an RGB clip and its flow clip of the same sample with one crop and one flip (CoCLR).

    Colour ops run on RGB only unless ``colour_on_flow`` (the official CoCLR code, main_coclr.py, augments the
    RGB+flow sequence as one clip, so jitter/grey/blur reach the flow images too). Flipping a flow image mirrors
    the field without negating x (as CoCLR does); ``negate_flow_x`` maps the stored x channel v -> 255 - v on a
    flip, which is the physically right field. Flow is normalised with ``flow_mean``/``flow_std`` (CoCLR: the
    ImageNet values, like RGB; the default).
    """

    def __init__(
        self,
        rgb: VideoTrain,
        *,
        flow_mean: Sequence[float] | float | None = None,
        flow_std: Sequence[float] | float | None = None,
        colour_on_flow: bool = False,
        negate_flow_x: bool = False,
    ) -> None:
        self.rgb, self.colour_on_flow, self.negate_flow_x = rgb, colour_on_flow, negate_flow_x
        self.flow_mean = rgb.mean if flow_mean is None else flow_mean
        self.flow_std = rgb.std if flow_std is None else flow_std

    def __call__(self, rgb: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rgb uint8 (T, 3, H, W), flow uint8 (T, 3, H', W') -> both float (C, T, crop, crop)."""
        params = self.rgb.params(*rgb.shape[-2:])
        if params.flip and self.negate_flow_x:
            flow = flow.clone()
            flow[:, 0] = 255 - flow[:, 0] if flow.dtype == torch.uint8 else 1 - flow[:, 0]
        rgb_out = self.rgb.apply(rgb, params)
        flow_params = (
            params if self.colour_on_flow else replace(params, jitter=None, grey=False, blur_sigma=None, gains=None)
        )
        flow_out = self.rgb.apply(flow, flow_params, mean=self.flow_mean, std=self.flow_std)
        return rgb_out, flow_out
