"""The settings of a fine-tuning run, defined once: :class:`FinetuneConfig` and the papers' protocols.

Three entry points read them, so a default or a protocol is changed in one place:

    videozoo.finetune(model, train, val, config=FinetuneConfig(...), protocol="stica", epochs=20)
    python recipes/finetune.py --preset stica --epochs 20            # parse_config over a FinetuneConfig subclass
    videozoo finetune my_videos/train --val my_videos/val --model ... --protocol stica --epochs 20

The config is nested where that groups what a reader looks for together (``optim``, ``data``, ``evaluation``,
``run``); every key also has a flat name, its last part (``lr`` for ``optim.lr``), which is what the keyword
arguments of :func:`videozoo.finetune`, the recipe's ``--key`` and the command's ``--flag`` use. Flat names are
unique by construction: :data:`FLAT_NAMES` is computed when this module is imported and a field whose last part
repeats another's fails the import (:func:`videozoo.training.config.flat_names`).

:data:`FINETUNE_PROTOCOLS` is the one table of the papers' fine-tuning settings, each value with where it comes
from (``docs/methods/presets.md`` is generated from it): ``protocol=`` of the API, ``--preset`` of the recipe and
``--protocol`` of the command all read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from videozoo.data.transforms.presets import Sourced
from videozoo.eval.video_predict import TEST_PROTOCOLS
from videozoo.training.config import _flat_fields, _get, _replace, add_arguments, flat_names

__all__ = [
    "FINETUNE_PROTOCOLS",
    "FLAT_NAMES",
    "KEYS",
    "Data",
    "Evaluation",
    "FinetuneConfig",
    "Optimisation",
    "Run",
    "add_finetune_arguments",
    "config_from_args",
    "resolve_config",
]


# -- the settings ----------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Optimisation:
    """How the new head and the pretrained layers are trained (``optim``)."""

    epochs: int = 10  # passes over the training videos
    batch_size: int = 8  # clips per step (per process under torchrun)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # adam | adamw | sgd (with momentum)
    lr: float = 1e-3  # the new head's learning rate
    backbone_lr: float | None = None  # the pretrained layers' learning rate; none: lr * backbone_lr_mult
    backbone_lr_mult: float = 0.1  # the papers train the pretrained layers ten times more gently than the head
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-3  # on every parameter, as the papers do
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"  # after the warm-up; evaluated every step
    milestones: tuple[float, ...] = ()  # multistep: epochs at which the learning rate is multiplied by gamma
    gamma: float = 0.1  # multistep: the factor at each milestone
    warmup_epochs: float = 0.0  # linear warm-up from zero, in epochs
    label_smoothing: float = 0.0  # of the cross-entropy
    grad_clip: float | None = None  # clip the gradient norm to this; none: no clipping


@dataclass(kw_only=True)
class Data:
    """What the model sees of each video (``data``). Unset clip fields come from the model's input spec."""

    clips_per_video: int = 1  # random training clips per video per epoch (STiCA: 10)
    frames: int | None = None  # clip length; none: the model's (videozoo.model_info) ...
    stride: int | None = None  # ... frame stride ...
    fps: float | None = None  # ... frame rate, which replaces the stride where the model samples by time ...
    resize: int | tuple[int, int] | None = None  # ... short side (or H,W) before cropping ...
    crop_size: int | None = None  # ... and crop side; whatever is changed is saved with the model
    class_names: tuple[str, ...] | None = None  # the head's class names where the training data names none
    num_workers: int = 4  # DataLoader workers per process


@dataclass(kw_only=True)
class Evaluation:
    """Which epoch is kept, and how the kept model is tested on ``val`` at the end (``evaluation``)."""

    select: Literal["best", "last"] = "best"  # best: the epoch of best clip-level val accuracy | last: no selection
    eval_every: int = 1  # epochs between the quick clip-level checks on val (the last epoch is always checked)
    video_eval: bool = True  # test the kept model video-level on val; false: report its clip-level accuracy
    test: str | None = None  # coclr | cacl | stica (TEST_PROTOCOLS); none: the model's own paper's, else 10x3
    test_clips: int | None = None  # change the test protocol's clips per video ...
    test_crops: int | None = None  # ... crops per clip (1, 3, 5, 10) ...
    test_sampling: Literal["uniform", "linspace", "segments", "sliding"] | None = None  # ... clip placement ...
    test_step: int | None = None  # ... frames between sliding windows ...
    test_average: Literal["prob", "logit"] | None = None  # ... and what is averaged: probabilities or logits


@dataclass(kw_only=True)
class Run:
    """Where the run writes, and how it runs (``run``)."""

    out_dir: str = "runs/finetune"  # checkpoints, TensorBoard, history.json, results.json, model/
    resume: bool | str = True  # true: go on from out_dir's last checkpoint if any | false: start over | a checkpoint
    save: bool = True  # save the kept model to out_dir/model (safetensors, config.json, model card)
    task: str | None = None  # what the model was tuned on, in its metrics and card; none: e.g. "UCF101 split-1"
    card: dict[str, Any] | None = None  # more model-card fields, e.g. {"recipe_command": "..."}
    seed: int = 0  # data order, augmentation and the new head's initialisation
    max_steps: int | None = None  # stop after this many steps (smoke runs; running again resumes)
    device: str | None = None  # cpu | cuda | cuda:N | mps; none: the training engine's choice (CUDA when there)
    amp: Literal["auto", "bf16", "fp16"] | None = "auto"  # autocast; auto: bf16 on CUDA, float32 on the CPU
    channels_last: bool | Literal["auto"] = "auto"  # channels-last-3d memory format; auto: on CUDA only
    compile: bool | Literal["auto"] = "auto"  # torch.compile the model; auto: on CUDA (the classifier is verified)
    progress: bool = True  # progress bars and a line per epoch
    tensorboard: bool = True  # write TensorBoard logs to out_dir/tb


@dataclass(kw_only=True)
class FinetuneConfig:
    """Every setting of :func:`videozoo.finetune` but the model, the data and a training transform object.

    ``weights`` / ``pretrained`` apply to a model given by name; the rest to any model.
    """

    weights: str | None = None  # weights dir, .safetensors, Hub repo id or official checkpoint; none: registered
    pretrained: bool = True  # false: start from random weights (a baseline, or to try the pipeline)
    freeze: Literal["backbone"] | None = None  # backbone: train the head only, BatchNorm frozen (a linear probe)
    dropout: float = 0.5  # before the new linear head
    optim: Optimisation = field(default_factory=Optimisation)
    data: Data = field(default_factory=Data)
    evaluation: Evaluation = field(default_factory=Evaluation)
    run: Run = field(default_factory=Run)


FLAT_NAMES: dict[str, str] = flat_names(FinetuneConfig)  # {"lr": "optim.lr", ...}; a clash fails this import
KEYS: dict[str, Any] = _flat_fields(FinetuneConfig)  # {"optim.lr": float, ...}: every key and its type


# -- the papers' protocols ---------------------------------------------------------------------------------------
# Flat names; each value with its source (official files at the commits of videozoo.training.presets.OFFICIAL).
# Read by finetune(protocol=...), recipes/finetune.py --preset and `videozoo finetune --protocol`.
S = Sourced
_COCLR_FT = "CoCLR eval/main_classifier.py:134-141 (--train_what ft): the backbone at lr / 10"
_GDT_FT = "GDT scripts/run_finetune.sh"
_CACL_TEST = "CACL datasets/ucf101.py:107 linspace clip starts; train_finetune.py:173-177 logits averaged"
FINETUNE_PROTOCOLS: dict[str, dict[str, Sourced]] = {
    "coclr": {
        "optimizer": S("adam", "CoCLR eval/main_classifier.py:48 --optim adam; :156-157 Adam(params, lr, wd)"),
        "lr": S(1e-3, "CoCLR eval/main_classifier.py:49 --lr 1e-3"),
        "backbone_lr": S(1e-4, _COCLR_FT),
        "weight_decay": S(1e-3, "CoCLR eval/main_classifier.py:51 --wd 1e-3"),
        "dropout": S(0.9, "CoCLR eval/main_classifier.py:52 --dropout 0.9, used with --train_what ft (:106-109)"),
        "batch_size": S(32, "CoCLR README.md:95 --batch_size 32"),
        "epochs": S(500, "CoCLR README.md:95 --epochs 500"),
        "schedule": S("multistep", "CoCLR eval/main_classifier.py:721-726: x0.1 at each --schedule epoch"),
        "milestones": S((400, 450), "CoCLR README.md:95 --schedule 400 450"),
        "gamma": S(0.1, "CoCLR eval/main_classifier.py:724 ratio 0.1"),
        "test": S("coclr", "CoCLR README.md:99-102 --ten_crop: 10 crops over every 32-frame window (TEST_PROTOCOLS)"),
    },
    "cacl": {
        "optimizer": S("sgd", "CACL train_finetune.py:426-431 optim.SGD"),
        "lr": S(0.1, "CACL README.md:49-50 --lr 0.1 (REFERENCE.md)"),
        "backbone_lr": S(
            0.1,
            "CACL train_finetune.py:426-431: one --lr below conv4; conv4, conv5 and the linear "
            "layer at a constant --ft_lr 1e-3, which videozoo does not reproduce (docs/methods/cacl.md)",
        ),
        "momentum": S(0.9, "CACL train_finetune.py:227 --momentum 0.9"),
        "weight_decay": S(5e-4, "CACL train_finetune.py:228 --wd 5e-4"),
        "dropout": S(0.0, "CACL models/c3d.py:62, models/r3d.py:161: a plain nn.Linear head"),
        "batch_size": S(64, "CACL README.md:49 --bs 64"),
        "epochs": S(150, "CACL README.md:49 --epochs 150"),
        "schedule": S("cosine", "CACL README.md:50 --cos; train_finetune.py:49-51"),
        "test": S("cacl", _CACL_TEST),
    },
    # train_finetune.py run with its own argparse defaults (the `cacl` protocol is its README command). Not
    # reproduced: conv4/conv5/linear stay at --ft_lr 1e-3 throughout (their schedule line is commented out, :56-58)
    "cacl_released_defaults": {
        "optimizer": S("sgd", "CACL train_finetune.py:426-431 optim.SGD"),
        "lr": S(1e-3, "CACL train_finetune.py:225 --lr 1e-3"),
        "backbone_lr": S(1e-3, "CACL train_finetune.py:225-226 --lr and --ft_lr both 1e-3"),
        "momentum": S(0.9, "CACL train_finetune.py:227 --momentum 0.9"),
        "weight_decay": S(5e-4, "CACL train_finetune.py:228 --wd 5e-4"),
        "dropout": S(0.0, "CACL models/c3d.py:62, models/r3d.py:161: a plain nn.Linear head"),
        "batch_size": S(8, "CACL train_finetune.py:236 --bs 8"),
        "epochs": S(180, "CACL train_finetune.py:234 --epochs 180"),
        "schedule": S("multistep", "CACL train_finetune.py:52-54: x0.1 from each --schedule epoch"),
        "milestones": S((119, 149), "CACL train_finetune.py:232 --schedule 120 150, counted from epoch 1 (:235)"),
        "gamma": S(0.1, "CACL train_finetune.py:54 lr *= 0.1"),
        "test": S("cacl", _CACL_TEST),
    },
    "stica": {
        "optimizer": S("sgd", f"{_GDT_FT}:32 OPTIM_NAME='sgd'"),
        "lr": S(0.0025, f"{_GDT_FT}:33 HEAD_LR=0.0025"),
        "backbone_lr": S(0.00025, f"{_GDT_FT}:34 BASE_LR=0.00025"),
        "momentum": S(0.9, f"{_GDT_FT}:36 MOMENTUM=0.9"),
        "weight_decay": S(0.005, f"{_GDT_FT}:35 WEIGHT_DECAY=0.005; eval_video.py:754 --wd-base 0.005"),
        "dropout": S(0.0, f"{_GDT_FT}:43 USE_DROPOUT='False'"),
        "batch_size": S(32, f"{_GDT_FT}:30 BATCH_SIZE=32"),
        "epochs": S(12, f"{_GDT_FT}:31 NUM_EPOCHS=12"),
        "schedule": S("multistep", "GDT eval_video.py:365-382: MultiStepLR inside GradualWarmupScheduler"),
        "milestones": S((6, 10), f"{_GDT_FT}:40 LR_MIL='6,10'; eval_video.py:365 counts them after the warm-up"),
        "gamma": S(0.05, f"{_GDT_FT}:37 LR_GAMMA=0.05"),
        "warmup_epochs": S(2, f"{_GDT_FT}:39 LR_WARM_UP_EPOCHS=2"),
        "clips_per_video": S(10, f"{_GDT_FT}:56 MAX_TRAIN_CLIPS_PER_VID=10 (--train-clips-per-video, :116)"),
        "test": S("stica", f"{_GDT_FT}:57 MAX_VAL_CLIPS_PER_VID=10, :54 NUM_SPATIAL_CROPS=3; logits (TEST_PROTOCOLS)"),
    },
}


# -- resolving: config, then protocol, then keyword overrides -------------------------------------------------------
# A mapping given for these keywords sets the fields it names (how finetune() took them before the config existed).
_MAPPING_KEYWORDS = {
    "input_spec": {k: f"data.{k}" for k in ("frames", "stride", "fps", "resize", "crop_size")},
    "test": {k: f"evaluation.test_{k}" for k in ("clips", "crops", "sampling", "step", "average")},
}


def resolve_config(
    config: FinetuneConfig | None = None, *, protocol: str | None = None, **overrides: Any
) -> FinetuneConfig:
    """``config`` (default: :class:`FinetuneConfig`'s defaults), then the protocol's values, then ``overrides``.

    Overrides are flat names (``lr=0.01``) or keys (``**{"optim.lr": 0.01}``); values may be :class:`Sourced`
    (``**FINETUNE_PROTOCOLS["stica"]``). ``input_spec={"frames": 32}`` and ``test={"clips": 1}`` set the fields
    they name (``frames``, ``test_clips``). An unknown name raises ``TypeError`` with the nearest valid one; a
    value outside a field's choices, or a count below 1, ``ValueError``.
    """
    if config is None:
        config = FinetuneConfig()
    elif not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    values = _protocol_values(protocol) if protocol is not None else {}
    for name, value in overrides.items():
        values.update(_override(name, value))
    resolved = _replace(_finetune_part(config), values)
    _check(resolved)
    return resolved


def _protocol_values(name: str) -> dict[str, Any]:
    if name not in FINETUNE_PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(FINETUNE_PROTOCOLS)}, got {name!r}")
    values: dict[str, Any] = {}
    for key, value in FINETUNE_PROTOCOLS[name].items():
        values.update(_override(key, value))
    return values


def _override(name: str, value: Any) -> dict[str, Any]:
    """``{key: value}`` for one keyword: a flat name or a key, or a mapping for ``input_spec`` / ``test``."""
    value = value.value if isinstance(value, Sourced) else value
    if name in _MAPPING_KEYWORDS and (isinstance(value, Mapping) or name == "input_spec"):
        fields = _MAPPING_KEYWORDS[name]
        unknown = sorted(set(value or {}) - set(fields))
        if unknown:
            raise TypeError(f"{name}= takes the keys {', '.join(fields)}; got {', '.join(map(repr, unknown))}")
        return {fields[k]: v for k, v in (value or {}).items()}
    key = FLAT_NAMES.get(name, name)
    if key not in KEYS:
        known = [*FLAT_NAMES, *(k for k in KEYS if "." not in k), *_MAPPING_KEYWORDS]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(f"finetune() got an unexpected keyword argument {name!r}{hint}")
    return {key: value}


def _finetune_part(config: FinetuneConfig) -> FinetuneConfig:
    """A recipe's config extends FinetuneConfig with its own keys (dataset, root, ...): keep the fine-tuning ones."""
    if type(config) is FinetuneConfig:
        return config
    return FinetuneConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(FinetuneConfig)})


_AT_LEAST_ONE = (
    "optim.epochs",
    "optim.batch_size",
    "data.clips_per_video",
    "evaluation.eval_every",
    "evaluation.test_clips",
    "evaluation.test_crops",
)


def _check(config: FinetuneConfig) -> None:
    """Refuse a value outside a field's choices, or a count below one, before anything is loaded."""
    for key, tp in KEYS.items():
        value = _get(config, key)
        choices = _choices(tp)
        if choices is not None and value not in choices:
            raise ValueError(f"{_name(key)} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if key in _AT_LEAST_ONE and value is not None and value < 1:
            raise ValueError(f"{_name(key)} must be at least 1, got {value!r}")
    if config.evaluation.test is not None and config.evaluation.test not in TEST_PROTOCOLS:
        raise ValueError(f"test must be one of {', '.join(TEST_PROTOCOLS)} or none, got {config.evaluation.test!r}")


def _choices(tp: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal[...]`` (or ``Literal[...] | None``) field allows; None for any other type."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        return args
    literals = [a for a in args if typing.get_origin(a) is Literal]
    if literals and all(a is type(None) or typing.get_origin(a) is Literal for a in args):
        return (*typing.get_args(literals[0]), *((None,) if type(None) in args else ()))
    return None


def _name(key: str) -> str:
    return key.rpartition(".")[2]


# -- the `videozoo finetune` command ---------------------------------------------------------------------------
# Its flags are the config's flat names (--lr, --batch-size, --no-save); these older spellings stay.
_CLI_SPELLINGS = {"out_dir": ["--out"], "num_workers": ["--workers"]}


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``videozoo finetune``: the data, the model, a protocol, and every FinetuneConfig key."""
    p.add_argument("train", help="training videos: a folder with one sub-folder per class, or a path,label list")
    p.add_argument("--val", default=None, help="validation videos, the same way; tested video-level at the end")
    p.add_argument("--model", required=True, help="model name, or a directory written by save_pretrained")
    p.add_argument(
        "--protocol",
        choices=tuple(FINETUNE_PROTOCOLS),
        default=None,
        help="a paper's fine-tuning protocol (docs/finetune.md); the options below override it",
    )
    p.add_argument(
        "--random-init",
        dest="pretrained",
        action="store_const",
        const=False,
        default=argparse.SUPPRESS,
        help="start from random weights (as --no-pretrained)",
    )
    p.add_argument(
        "--freeze-backbone",
        dest="freeze",
        action="store_const",
        const="backbone",
        default=argparse.SUPPRESS,
        help="train the head only, a linear probe (as --freeze backbone)",
    )
    # progress is the common --quiet / --no-progress of the commands that show progress bars
    add_arguments(p, FinetuneConfig(), skip={"progress"}, spellings=_CLI_SPELLINGS)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The FinetuneConfig of a ``videozoo finetune`` command line: the protocol, then the flags given."""
    names = set(FLAT_NAMES) | {k for k in KEYS if "." not in k}
    given = {name: value for name, value in vars(args).items() if name in names}
    if getattr(args, "quiet", False):
        given["progress"] = False
    return resolve_config(protocol=args.protocol, **given)
