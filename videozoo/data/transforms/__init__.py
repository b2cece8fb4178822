"""Video augmentations: same random parameters for every frame of a clip.

Train (:class:`VideoTrain`, :func:`preset`), paired RGB+flow (:class:`PairedTransform`), batched on any device
(:class:`BatchedVideoAugment`), views of a sample (:class:`CoCLRViews`, :class:`MultiView`, :class:`MapSamples`)
and evaluation (:class:`VideoEval`). Inputs are uint8 (T, C, H, W) clips, outputs float (C, T, H, W) normalised,
the layout models take.
"""

from videozoo.data.transforms.batched import BatchedVideoAugment
from videozoo.data.transforms.eval import VideoEval
from videozoo.data.transforms.functional import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD
from videozoo.data.transforms.presets import (
    EVAL_PRESETS,
    RELEASED,
    TRAIN_PRESETS,
    Sourced,
    cacl_train,
    coclr_train,
    eval_preset,
    preset,
    stica_train,
)
from videozoo.data.transforms.train import ClipParams, PairedTransform, VideoTrain
from videozoo.data.transforms.views import VIEW_REGIMES, CoCLRViews, MapSamples, MultiView

__all__ = [
    "EVAL_PRESETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "RELEASED",
    "TRAIN_PRESETS",
    "VIEW_REGIMES",
    "BatchedVideoAugment",
    "ClipParams",
    "CoCLRViews",
    "MapSamples",
    "MultiView",
    "PairedTransform",
    "Sourced",
    "VideoEval",
    "VideoTrain",
    "cacl_train",
    "coclr_train",
    "eval_preset",
    "preset",
    "stica_train",
]
