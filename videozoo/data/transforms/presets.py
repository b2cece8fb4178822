"""Per-method augmentation presets, with the numbers of REFERENCE.md and the official code.

- CoCLR (Han et al., NeurIPS 2020; TengdaHan/CoCLR main_nce.py / main_coclr.py): random resized crop area
  0.2-1, aspect 3/4-4/3, 128²; jitter (0.4, 0.4, 0.4, 0.1) p 0.8; grey p 0.2 as a random channel copied to all
  three; blur sigma 0.1-2 p 0.5; flip p 0.5; ImageNet mean/std (on flow too).
- CACL (Guo et al., CVPR 2022; guoshengcv/CACL train_pretrain.py): Resize(128, 171), RandomCrop(112), jitter
  (0.4, 0.4, 0.4, 0.1) p 0.8, RandomGrayscale p 0.2, flip; no blur; no normalisation (ToTensor only).
- STiCA (Patrick, Asano et al., ICCV 2021; facebookresearch/GDT datasets/video_transforms.py): random resized crop
  area 0.14-1 at 112², flip, jitter brightness/contrast/saturation 0.4 (no hue) p 0.8, grey p 0.2, blur p 0.5;
  mean 0.45, std 0.225.
docs/data_processing.md lists where the official code does something else (and how to get that here).
"""

from __future__ import annotations

from videozoo.data.transforms.eval import VideoEval
from videozoo.data.transforms.functional import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD
from videozoo.data.transforms.train import VideoTrain

TRAIN_PRESETS: dict[str, dict] = {
    "coclr": dict(crop_size=128, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8,
                  grey_p=0.2, grey_mode="channel_copy", blur_p=0.5, blur_sigma=(0.1, 2.0), flip_p=0.5,
                  mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "cacl": dict(crop_size=112, scale=None, resize=(128, 171), jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8,
                 grey_p=0.2, grey_mode="luma", blur_p=0.0, flip_p=0.5, mean=0.0, std=1.0),
    "stica": dict(crop_size=112, scale=(0.14, 1.0), ratio=(3 / 4, 4 / 3), jitter=(0.4, 0.4, 0.4, 0.0), jitter_p=0.8,
                  grey_p=0.2, grey_mode="luma", blur_p=0.5, blur_sigma=(0.1, 2.0), flip_p=0.5,
                  mean=KINETICS_MEAN, std=KINETICS_STD),
}

EVAL_PRESETS: dict[str, dict] = {
    "coclr": dict(resize=128, crop_size=128, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "cacl": dict(resize=(128, 171), crop_size=112, mean=0.0, std=1.0),
    "stica": dict(resize=128, crop_size=128, mean=KINETICS_MEAN, std=KINETICS_STD, num_crops=3),  # 10 clips x 3 crops
}


def preset(name: str, **overrides) -> VideoTrain:
    """The training augmentation of method ``name`` ("coclr", "cacl", "stica"); keywords override one number."""
    if name not in TRAIN_PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {sorted(TRAIN_PRESETS)}")
    return VideoTrain(**{**TRAIN_PRESETS[name], **overrides})


def eval_preset(name: str, **overrides) -> VideoEval:
    """The evaluation transform that goes with method ``name``."""
    if name not in EVAL_PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {sorted(EVAL_PRESETS)}")
    return VideoEval(**{**EVAL_PRESETS[name], **overrides})


def coclr_train(**overrides) -> VideoTrain:
    return preset("coclr", **overrides)


def cacl_train(**overrides) -> VideoTrain:
    return preset("cacl", **overrides)


def stica_train(**overrides) -> VideoTrain:
    return preset("stica", **overrides)
