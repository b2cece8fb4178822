"""Per-method augmentation presets, each value with where it comes from (:class:`Sourced`).

``preset(name)`` builds the :class:`~videozoo.data.transforms.VideoTrain` of a method. ``"coclr"``, ``"cacl"``,
``"stica"`` follow the papers (REFERENCE.md); ``"<method>_released"`` adds the switches that reproduce the official
code's data pipeline (TengdaHan/CoCLR, guoshengcv/CACL, facebookresearch/GDT):

- CoCLR: a box that does not fit is not retried: the whole frame is resized (``crop_fallback="resize_full"``,
  ``utils/augmentation.py:99-140``). The views regime and colour on flow are the recipe's (``recipes/coclr.py``).
- CACL: the paper's and the code's augmentation agree (``train_pretrain.py:455-465``).
- STiCA: normalised before the colour ops, which then run unclamped on normalised values (``normalise_first``),
  grey weights applied as if the frames were BGR (``grey_weights="bgr"``), a fixed anisotropic 11×11 blur
  (``blur_fixed_xy``), crops resized without antialiasing (``datasets/video_transforms.py:568-627``).

Sources name the paper or ``<repository> <file>:<line>`` at the commits listed in docs/methods/presets.md, which is
generated from these values and the recipes' presets (``python -m videozoo.training.presets``).
docs/data_processing.md lists where the official code does something else (and how to get that here).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from videozoo.data.transforms.eval import VideoEval
from videozoo.data.transforms.functional import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD
from videozoo.data.transforms.train import VideoTrain


class Sourced(NamedTuple):
    """A preset value and where it comes from: ``"paper ..."``, ``"<repo> <file>:<line>"`` or ``"our choice: ..."``.

    Used by the augmentation presets here and by the recipes' presets (``videozoo.training.presets.src``); whatever
    reads a preset uses ``.value``; ``python -m videozoo.training.presets`` writes the sources into a table.
    """

    value: Any
    source: str


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without their sources."""
    return {k: v.value if isinstance(v, Sourced) else v for k, v in values.items()}


S = Sourced
CAST = "our choice: the colour-cast augmentation is videozoo's (for the smoke data); off, as in the paper"
TRAIN_PRESETS: dict[str, dict[str, Sourced]] = {
    "coclr": dict(
        crop_size=S(128, "paper: 128x128 inputs; CoCLR main_nce.py:59 --img_dim 128"),
        scale=S((0.2, 1.0), "paper; CoCLR main_nce.py:374 RandomSizedCrop(bottom_area=0.2)"),
        ratio=S((3 / 4, 4 / 3), "CoCLR utils/augmentation.py:105 uniform(3/4, 4/3)"),
        resize=S(None, "CoCLR dataset/lmdb_dataset.py:499-500: the frames as stored"),
        crop_fallback=S("center", "our choice: torchvision's rule (10 tries, then the largest centred box) keeps the "
                        "aspect of the scene; the official stretches the whole frame (crop_fallback='resize_full')"),
        antialias=S(True, "CoCLR utils/augmentation.py:137: PIL bicubic resize (antialiased); here antialiased "
                    "bilinear"),
        jitter=S((0.4, 0.4, 0.4, 0.1), "paper; CoCLR main_nce.py:376 ColorJitter(0.4, 0.4, 0.4, 0.1)"),
        jitter_p=S(0.8, "paper; CoCLR main_nce.py:377 RandomApply(p=0.8)"),
        grey_p=S(0.2, "paper; CoCLR main_nce.py:378 RandomGray(p=0.2)"),
        grey_mode=S("channel_copy", "CoCLR utils/augmentation.py:211-216: one colour channel copied into all three "
                    "(drawn per frame there, per clip here)"),
        grey_weights=S("luma", "CoCLR utils/augmentation.py:279-288: torchvision's adjust_contrast/saturation on "
                       "PIL images (luma)"),
        blur_p=S(0.5, "paper; CoCLR main_nce.py:379 RandomApply(GaussianBlur, p=0.5)"),
        blur_sigma=S((0.1, 2.0), "paper; CoCLR main_nce.py:379 GaussianBlur([.1, 2.])"),
        blur_fixed_xy=S(False, "CoCLR utils/augmentation.py:366-368: PIL GaussianBlur(radius=sigma), sigma random"),
        flip_p=S(0.5, "paper; CoCLR main_nce.py:380, utils/augmentation.py:158 threshold 0.5"),
        channel_gain=S(0.0, CAST),
        normalise_first=S(False, "CoCLR main_nce.py:207-209: normalised on the GPU, after the augmentation"),
        mean=S(IMAGENET_MEAN, "paper: ImageNet mean/std, on flow too; CoCLR main_nce.py:208"),
        std=S(IMAGENET_STD, "paper; CoCLR main_nce.py:209"),
    ),
    "cacl": dict(
        crop_size=S(112, "paper; CACL train_pretrain.py:457 RandomCrop(112)"),
        scale=S(None, "paper; CACL train_pretrain.py:456-457: Resize then a plain random crop"),
        resize=S((128, 171), "paper; CACL train_pretrain.py:456 Resize((128, 171))"),
        ratio=S((3 / 4, 4 / 3), "unused: no random resized crop (scale=None)"),
        crop_fallback=S("center", "unused: no random resized crop (scale=None)"),
        antialias=S(True, "CACL train_pretrain.py:456: PIL resize (antialiased)"),
        jitter=S((0.4, 0.4, 0.4, 0.1), "paper; CACL train_pretrain.py:459 ColorJitter(0.4, 0.4, 0.4, 0.1)"),
        jitter_p=S(0.8, "paper; CACL train_pretrain.py:460 RandomApply(p=0.8)"),
        grey_p=S(0.2, "paper; CACL train_pretrain.py:461 RandomGrayscale(p=0.2)"),
        grey_mode=S("luma", "CACL train_pretrain.py:461 torchvision RandomGrayscale (ITU-R 601 luma)"),
        grey_weights=S("luma", "CACL train_pretrain.py:459-461: torchvision on PIL images (luma)"),
        blur_p=S(0.0, "CACL train_pretrain.py:462: the blur is commented out"),
        blur_sigma=S((0.1, 2.0), "unused (blur_p=0); CACL train_pretrain.py:462 the commented-out GaussianBlur"),
        blur_fixed_xy=S(False, "unused (blur_p=0)"),
        flip_p=S(0.5, "paper; CACL train_pretrain.py:463 RandomHorizontalFlip()"),
        channel_gain=S(0.0, CAST),
        normalise_first=S(False, "CACL train_pretrain.py:464-465: no normalisation"),
        mean=S(0.0, "CACL train_pretrain.py:464-465: ToTensor only, no normalisation"),
        std=S(1.0, "CACL train_pretrain.py:464-465: ToTensor only, no normalisation"),
    ),
    "stica": dict(
        crop_size=S(112, "paper; GDT main_stica.py:581 --train_crop_size 112"),
        scale=S((0.14, 1.0), "paper; GDT datasets/AVideoDataset.py:420 min_scale, max_scale = 0.14, 1.0"),
        ratio=S((3 / 4, 4 / 3), "GDT datasets/video_transforms.py:83 ratio=(3/4, 4/3)"),
        resize=S(None, "GDT datasets/video_transforms.py:591: the decoded frames"),
        crop_fallback=S("center", "GDT datasets/video_transforms.py:47-78: torchvision's rule (10 tries, then a "
                        "centred box)"),
        jitter=S((0.4, 0.4, 0.4, 0.0), "paper; GDT datasets/video_transforms.py:606 color_jitter(0.4, 0.4, 0.4): no "
                 "hue"),
        jitter_p=S(0.8, "paper; GDT datasets/video_transforms.py:604 uniform() >= 0.2"),
        grey_p=S(0.2, "paper; GDT datasets/video_transforms.py:610 uniform() >= 0.8"),
        grey_mode=S("luma", "GDT datasets/video_transforms.py:336-355: a weighted sum copied into three channels"),
        channel_gain=S(0.0, CAST),
        grey_weights=S("luma", "our choice: ITU-R 601 on RGB frames; the official applies the weights as if the "
                       "frames were BGR (datasets/video_transforms.py:350, grey_weights='bgr')"),
        normalise_first=S(False, "our choice: colour ops on [0, 1] pixels, as torchvision's; the official normalises "
                          "first (datasets/video_transforms.py:583-584, normalise_first=True)"),
        antialias=S(True, "our choice: antialiased resizing; the official interpolates without "
                    "(datasets/video_transforms.py:114-116)"),
        blur_p=S(0.5, "paper; GDT datasets/video_transforms.py:615 uniform() >= 0.5"),
        blur_sigma=S((0.1, 2.0), "our choice: SimCLR's random sigma in [0.1, 2] for the paper's 'Gaussian blur'; "
                     "the official fixes (sigma_x, sigma_y) = (0.1, 2.0) (datasets/video_transforms.py:522)"),
        blur_fixed_xy=S(False, "our choice (see blur_sigma); blur_fixed_xy=True is the official kornia call"),
        flip_p=S(0.5, "paper; GDT datasets/video_transforms.py:592 horizontal_flip(0.5)"),
        mean=S(KINETICS_MEAN, "GDT datasets/video_transforms.py:12 MEAN=[0.45, 0.45, 0.45]"),
        std=S(KINETICS_STD, "GDT datasets/video_transforms.py:13 STD=[0.225, 0.225, 0.225]"),
    ),
}  # fmt: skip
RELEASED: dict[str, dict[str, Sourced]] = {  # what "<method>_released" changes
    "coclr": dict(
        crop_fallback=S("resize_full", "CoCLR utils/augmentation.py:119-137: with consistent=False one box is drawn; "
                        "if it does not fit, the whole frame is resized to 128x128"),
    ),
    "cacl": {},
    "stica": dict(
        normalise_first=S(True, "GDT datasets/video_transforms.py:583-584: normalised before the crop and the colour "
                          "ops, which then run unclamped (brightness scales around the mean)"),
        grey_weights=S("bgr", "GDT datasets/video_transforms.py:350: 0.299 * channel 2 + 0.114 * channel 0 on RGB "
                       "frames"),
        antialias=S(False, "GDT datasets/video_transforms.py:114-116: F.interpolate(mode='bilinear')"),
        blur_fixed_xy=S(True, "GDT datasets/video_transforms.py:522: kornia GaussianBlur2d((11, 11), (0.1, 2.0)), "
                        "sigma 0.1 down the rows and 2.0 along them (kornia <= 0.5 kernel layout)"),
    ),
}  # fmt: skip
for _name, _switches in RELEASED.items():
    TRAIN_PRESETS[f"{_name}_released"] = {**TRAIN_PRESETS[_name], **_switches}

EVAL_PRESETS: dict[str, dict] = {
    "coclr": dict(resize=128, crop_size=128, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "cacl": dict(resize=(128, 171), crop_size=112, mean=0.0, std=1.0),
    "stica": dict(resize=128, crop_size=128, mean=KINETICS_MEAN, std=KINETICS_STD, num_crops=3),  # 10 clips x 3 crops
}


def preset(name: str, **overrides) -> VideoTrain:
    """The training augmentation of method ``name`` ("coclr", "cacl", "stica", or "<method>_released");
    keywords override one value."""
    if name not in TRAIN_PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose from {sorted(TRAIN_PRESETS)}")
    return VideoTrain(**{**plain(TRAIN_PRESETS[name]), **overrides})


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
