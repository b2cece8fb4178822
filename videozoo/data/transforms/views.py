"""Views of a sample: CoCLR's two view regimes, several augmentations of one clip, and a dataset wrapper.

A dataset calls its ``transform`` on each clip on its own. Two official pipelines need more than that:

* CoCLR (TengdaHan/CoCLR ``main_nce.py:386-390``, ``utils/augmentation.py:380-432``) decides per sample whether the
  two views come from two clips or from one, and which views get the colour work: :class:`CoCLRViews`, applied to
  the whole sample through :class:`MapSamples`;
* STiCA (facebookresearch/GDT ``datasets/AVideoDataset.py:411-430``) augments one clip twice under one audio
  spectrogram: :class:`MultiView` as the dataset's transform, with ``num_views=1``, gives ``video`` (V, C, T, H, W)
  and a single ``audio`` per sample.

Random numbers come from torch's global generator, which :class:`~videozoo.training.SeededDataset` seeds per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from einops import rearrange

from videozoo.data.transforms.train import PairedTransform, VideoTrain

__all__ = ["VIEW_REGIMES", "CoCLRViews", "MapSamples", "MultiView"]

VIEW_REGIMES = ("two_clips", "official")


def _coin(p: float) -> bool:
    return float(torch.rand(())) < p


class CoCLRViews:
    """The two views of a CoCLR sample, from the two clips the dataset drew (``num_views=2``, no ``transform``).

    ``regime="two_clips"``: each clip gets its own strong augmentation (``transform``), the paper's description.
    ``regime="official"`` (``TransformController([TwoClipTransform(p=0.3), OneClipTransform], weights=[0.5, 0.5])``):
    with probability ``one_clip_p`` (0.5) one of the two clips, drawn at random, is used for both views, one view
    (drawn at random) strongly augmented and the other cropped and flipped only; otherwise each clip is strongly
    augmented with probability ``strong_p`` (0.3), else cropped and flipped only.

    ``transform`` is a :class:`VideoTrain` (``video`` only) or a :class:`PairedTransform` (``video`` and ``flow``
    share the crop and flip). Called on a sample whose ``video`` (and ``flow``) are uint8 (2, C, T, H, W), it returns
    the sample with both float (2, C, T, h, w) and, in the one-clip case, ``frame_indices`` of the clip used twice.
    """

    def __init__(
        self,
        transform: VideoTrain | PairedTransform,
        *,
        regime: str = "two_clips",
        strong_p: float = 0.3,
        one_clip_p: float = 0.5,
    ) -> None:
        if regime not in VIEW_REGIMES:
            raise ValueError(f"regime must be one of {', '.join(map(repr, VIEW_REGIMES))}, got {regime!r}")
        self.strong, self.regime, self.strong_p, self.one_clip_p = transform, regime, strong_p, one_clip_p
        if isinstance(transform, PairedTransform):
            self.weak: VideoTrain | PairedTransform = PairedTransform(
                transform.rgb.without_colour(),
                flow_mean=transform.flow_mean,
                flow_std=transform.flow_std,
                colour_on_flow=transform.colour_on_flow,
                negate_flow_x=transform.negate_flow_x,
            )
        else:
            self.weak = transform.without_colour()

    def __repr__(self) -> str:
        return f"CoCLRViews({self.strong!r}, regime={self.regime!r}, strong_p={self.strong_p})"

    def plan(self) -> tuple[tuple[int, int], tuple[bool, bool]]:
        """(clip of each view, strong augmentation for each view), drawn for one sample."""
        if self.regime == "two_clips":
            return (0, 1), (True, True)
        if _coin(self.one_clip_p):  # OneClipTransform: one view strong, the other crop + flip; one clip for both
            first_strong = _coin(0.5)
            clip = 0 if _coin(0.5) else 1
            return (clip, clip), (first_strong, not first_strong)
        return (0, 1), (_coin(self.strong_p), _coin(self.strong_p))  # TwoClipTransform(p=0.3)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        video, flow = sample["video"], sample.get("flow")
        if video.ndim != 5 or video.shape[0] != 2:
            raise ValueError(f"CoCLRViews needs the two clips of a sample, (2, C, T, H, W); got {tuple(video.shape)}")
        clips, strong = self.plan()
        videos, flows = [], []
        for clip, is_strong in zip(clips, strong):
            t = self.strong if is_strong else self.weak
            rgb = rearrange(video[clip], "c t h w -> t c h w")
            if flow is not None and isinstance(t, PairedTransform):
                out, out_flow = t(rgb, rearrange(flow[clip], "c t h w -> t c h w"))
                flows.append(out_flow)
            else:
                out = (t.rgb if isinstance(t, PairedTransform) else t)(rgb)
            videos.append(out)
        out = {**sample, "video": torch.stack(videos)}
        if flows:
            out["flow"] = torch.stack(flows)
        if "frame_indices" in sample and clips[0] == clips[1]:
            out["frame_indices"] = sample["frame_indices"][[clips[0], clips[1]]]
        return out


class MultiView:
    """``views`` augmentations of one clip, stacked: uint8 (T, C, H, W) -> float (V, C, T, h, w)."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor], views: int = 2) -> None:
        self.transform, self.views = transform, views

    def __repr__(self) -> str:
        return f"MultiView({self.transform!r}, views={self.views})"

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(clip) for _ in range(self.views)])


class MapSamples(torch.utils.data.Dataset):
    """``fn(dataset[i])``: a per-sample function over a dataset; other attributes (``num_failures``, ``classes``,
    ...) are the wrapped dataset's."""

    def __init__(self, dataset: Any, fn: Callable[[Any], Any]) -> None:
        self.dataset, self.fn = dataset, fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.fn(self.dataset[index])

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "fn") or name.startswith("__"):  # not set yet (unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"MapSamples({self.dataset!r}, {self.fn!r})"
