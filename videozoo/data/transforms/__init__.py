"""Video augmentations: same random parameters for every frame of a clip.

Train (:class:`VideoTrain`, :func:`preset`), paired RGB+flow (:class:`PairedTransform`), batched on any device
(:class:`BatchedVideoAugment`) and evaluation (:class:`VideoEval`). Inputs are uint8 (T, C, H, W) clips, outputs
float (C, T, H, W) normalised, the layout models take.
"""

from videozoo.data.transforms.batched import BatchedVideoAugment
from videozoo.data.transforms.eval import VideoEval
from videozoo.data.transforms.functional import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD
from videozoo.data.transforms.presets import (
    EVAL_PRESETS,
    TRAIN_PRESETS,
    cacl_train,
    coclr_train,
    eval_preset,
    preset,
    stica_train,
)
from videozoo.data.transforms.train import ClipParams, PairedTransform, VideoTrain

__all__ = [
    "EVAL_PRESETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "TRAIN_PRESETS",
    "BatchedVideoAugment",
    "ClipParams",
    "PairedTransform",
    "VideoEval",
    "VideoTrain",
    "cacl_train",
    "coclr_train",
    "eval_preset",
    "preset",
    "stica_train",
]
