"""Feature Crop: crops of a backbone's pre-pool feature map, drawn uniformly over every valid position (by default).

Paper:
    Patrick, Asano, Huang, Misra, Metze, Henriques, Vedaldi. Space-Time Crop & Attend: Improving Cross-modal Video
    Representation Learning (STiCA). ICCV 2021.

STiCA crops the map ``(B, D, T, H, W)`` that the backbone computed once per view, instead of cropping the input and
running the backbone again: any number of crops costs one backbone pass per view. For R(2+1)D-18 at 112² the map
is 512×T×7×7 and the official crops are 6×6 (large) and 4×4 (small) in space, 3 / 2 steps (T=4) or 6 / 4 (T=8) in
time. Here the sizes are fractions of the map, so any map gets crops of the same proportions:

    spatial   large 6/7, small 4/7 of H and of W     (7 → 6 and 4; 4 → 3 and 2)
    temporal  large 3/4, small 1/2 of T              (4 → 3 and 2; 8 → 6 and 4)

rounded half up, at least 1 and at most the whole axis.

A spatial crop keeps every time step, a temporal crop every position. Offsets are uniform over ``0 … size −
window`` inclusive (``placement="uniform"``, the default). The official ``get_fm_crop`` (main_stica.py:528-549)
draws ``np.random.randint(0, 7 - window)``, whose upper bound is exclusive: a large spatial crop always sits at
(0, 0), a large temporal crop at 0 for T=4, and small crops never touch the last row, column or step. That looks
like a bug, not a design (nothing in the paper asks for it); ``placement="official"`` reproduces it (offsets
uniform over ``0 … size − window − 1``, or 0 when the window fills the axis, where the official call would fail).

Everything here is a pure function of its arguments; randomness comes only from the ``torch.Generator`` passed in
(a CPU generator: offsets are Python ints, whatever device the map is on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from einops import rearrange

__all__ = [
    "PLACEMENTS",
    "SPATIAL_FRACTIONS",
    "TEMPORAL_FRACTIONS",
    "Crop",
    "apply_crops",
    "crop_length",
    "crop_size",
    "crop_starts",
    "gather_crops",
    "sample_crops",
    "sample_offsets",
]

SPATIAL_FRACTIONS = {"large": 6 / 7, "small": 4 / 7}  # of H and W: 6×6 and 4×4 of a 7×7 map
TEMPORAL_FRACTIONS = {"large": 3 / 4, "small": 1 / 2}  # of T: 3 and 2 of 4, 6 and 4 of 8


class Crop(NamedTuple):
    """A box on the (T, H, W) axes of a map: ``start`` and ``size`` per axis."""

    t: tuple[int, int]
    h: tuple[int, int]
    w: tuple[int, int]

    @property
    def size(self) -> tuple[int, int, int]:
        return self.t[1], self.h[1], self.w[1]

    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(start, start + size) for start, size in self)  # type: ignore[return-value]


def crop_length(size: int, fraction: float) -> int:
    """``fraction`` of an axis of ``size`` steps: rounded half up, at least 1, at most ``size``."""
    if size < 1 or not 0 < fraction <= 1:
        raise ValueError(f"crop_length needs size >= 1 and 0 < fraction <= 1, got {size}, {fraction}")
    return max(1, min(size, math.floor(fraction * size + 0.5)))


PLACEMENTS = ("uniform", "official")


def crop_size(shape: Sequence[int], *, fraction: float, temporal: bool) -> tuple[int, int, int]:
    """The (t, h, w) of a crop of a map whose (T, H, W) are ``shape`` (see :func:`sample_crops`)."""
    t, h, w = shape
    if temporal:
        return crop_length(t, fraction), h, w
    return t, crop_length(h, fraction), crop_length(w, fraction)


def sample_offsets(
    size: int, window: int, num: int, *, placement: str = "uniform", generator: torch.Generator | None = None
) -> list[int]:
    """``num`` offsets, each uniform over ``0 … size − window`` (both ends included); ``placement="official"``:
    over ``0 … size − window − 1`` (main_stica.py's exclusive ``randint`` bound), 0 for a window filling the axis."""
    if not 1 <= window <= size:
        raise ValueError(f"a window of {window} does not fit an axis of {size}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(map(repr, PLACEMENTS))}, got {placement!r}")
    high = size - window + 1 if placement == "uniform" else max(size - window, 1)
    return torch.randint(0, high, (num,), generator=generator).tolist()


def sample_crops(
    shape: Sequence[int],
    *,
    num: int,
    fraction: float,
    temporal: bool,
    placement: str = "uniform",
    generator: torch.Generator | None = None,
) -> list[Crop]:
    """``num`` crops of a map whose (T, H, W) are ``shape``.

    ``temporal=False``: spatial crops, ``fraction`` of H and of W, all time steps, height and width offsets drawn
    independently. ``temporal=True``: ``fraction`` of T, the whole frame. ``placement``: see :func:`sample_offsets`.
    """
    t, h, w = shape
    st, sh, sw = crop_size(shape, fraction=fraction, temporal=temporal)
    kw = dict(placement=placement, generator=generator)
    if temporal:
        return [Crop((s, st), (0, h), (0, w)) for s in sample_offsets(t, st, num, **kw)]
    tops = sample_offsets(h, sh, num, **kw)
    lefts = sample_offsets(w, sw, num, **kw)
    return [Crop((0, t), (top, sh), (left, sw)) for top, left in zip(tops, lefts)]


def apply_crops(features: torch.Tensor, crops: Sequence[Crop]) -> torch.Tensor:
    """Cut ``crops`` (all of one size) out of ``features`` (B, D, T, H, W) → (N·B, D, t, h, w), crop-major.

    Row ``n·B + b`` is crop ``n`` of sample ``b``; every sample of the batch gets the same boxes (as officially).
    Slicing is a view; the one copy is the stack that lets pooling and head take all N crops in one call.
    """
    if features.ndim != 5:
        raise ValueError(f"feature crops need a (B, D, T, H, W) map, got {tuple(features.shape)}")
    if len({c.size for c in crops}) != 1:
        raise ValueError(f"apply_crops takes crops of one size, got {sorted({c.size for c in crops})}")
    pieces = [features[(..., *crop.slices())] for crop in crops]  # N × (B, D, t, h, w)
    return rearrange(torch.stack(pieces), "n b d t h w -> (n b) d t h w")


def crop_starts(crops: Sequence[Crop], *, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, 3) long: the (t, h, w) start of each crop, for :func:`gather_crops`; copied to ``device`` without waiting."""
    starts = torch.tensor([[c.t[0], c.h[0], c.w[0]] for c in crops], dtype=torch.long).reshape(len(crops), 3)
    return starts.to(device, non_blocking=True)


def gather_crops(features: torch.Tensor, starts: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """:func:`apply_crops` with the positions as a tensor: ``starts`` (N, 3) long, every crop of (t, h, w) ``size``.

    Same rows, same values; the boxes enter as data rather than as Python slices, so a compiled step is one graph
    whatever the positions (slicing by Python ints specialises it on every new box) and nothing syncs on a GPU.
    """
    if features.ndim != 5:
        raise ValueError(f"feature crops need a (B, D, T, H, W) map, got {tuple(features.shape)}")
    index = [starts[:, axis, None] + torch.arange(n, device=starts.device) for axis, n in enumerate(size)]  # (N, n)
    it, ih, iw = index[0][:, :, None, None], index[1][:, None, :, None], index[2][:, None, None, :]
    crops = features[:, :, it, ih, iw]  # (B, D, N, t, h, w)
    return rearrange(crops, "b d n t h w -> (n b) d t h w")
