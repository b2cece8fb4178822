"""THE registry: every backbone and every pretrained model of videozoo, with its metadata.

``hubconf.py``, :func:`videozoo.load`, :func:`videozoo.list_models`, ``docs/models.md`` and the
parametrised tests all read this table; no list of models is kept anywhere else.

Builders are named by import path (``"videozoo.backbones.s3d:s3d"``) and resolved on first use,
so that importing videozoo stays cheap and the backbones know nothing of the registry.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the registry is read without torch: `videozoo list` and `info` answer before torch could load
    from torch import nn

__all__ = [
    "InputSpec",
    "Metric",
    "ModelEntry",
    "UnknownModelError",
    "Weights",
    "get",
    "input_spec_from_config",
    "list_models",
    "register",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)  # GDT / STiCA / torchvision video models
KINETICS_STD = (0.225, 0.225, 0.225)


class UnknownModelError(KeyError):
    """An unknown model name; the message suggests the nearest registered names.

    ``name`` is the name asked for, ``suggestions`` the nearest registered names and ``count`` the number of
    models :func:`list_models` lists, so that a caller other than Python (the ``videozoo`` command) can word the
    same message its own way with :meth:`message`.
    """

    def __init__(self, name: str, suggestions: Sequence[str] = (), count: int = 0) -> None:
        super().__init__(name)
        self.name, self.suggestions, self.count = name, tuple(suggestions), count

    def message(self, lister: str = "videozoo.list_models()") -> str:
        """The message, pointing at ``lister`` as the way to see every name."""
        hint = f" Did you mean {', '.join(map(repr, self.suggestions))}?" if self.suggestions else ""
        return f"unknown model {self.name!r}.{hint} {lister} lists all {self.count} models."

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.message()


@dataclass(frozen=True)
class InputSpec:
    """What a model expects to see: how to sample, resize and normalise its input.

    Video: ``frames`` frames taken every ``stride`` native frames, or resampled to ``fps`` when set;
    short side resized to ``resize`` (or to ``(H, W)``), centre crop ``crop_size``, then
    ``(x / 255 - mean) / std``. Audio: ``seconds`` of mono audio at ``sample_rate`` as a
    log-filterbank of ``freq_bins`` bins (STiCA/GDT).
    """

    channels: Literal["rgb", "flow", "audio"] = "rgb"
    frames: int = 16
    stride: int = 1
    fps: float | None = None
    resize: int | tuple[int, int] = 128
    crop_size: int = 112
    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD
    sample_rate: int | None = None
    seconds: float | None = None
    freq_bins: int | None = None

    def describe(self) -> str:
        if self.channels == "audio":
            length = "the clip's length" if self.seconds is None else f"{self.seconds:g} s"
            return f"audio, {length} mono at {self.sample_rate} Hz, {self.freq_bins}-bin log filterbank"
        timing = f"{self.fps:g} fps" if self.fps else f"stride {self.stride}"
        resize = "x".join(map(str, self.resize)) if isinstance(self.resize, tuple) else f"short side {self.resize}"
        return f"{self.channels}, {self.frames} frames at {timing}, resize {resize}, crop {self.crop_size}"


def input_spec_from_config(config: Mapping[str, Any]) -> InputSpec | None:
    """The :class:`InputSpec` stored in a weights ``config.json`` (JSON lists turned back into tuples).

    Here, beside the class, so that the weights writer (``hub/weights.py``) and the card renderer (``hub/card.py``)
    both read it from below rather than from each other.
    """
    spec = config.get("input_spec")
    if not spec:
        return None
    known = {f.name for f in dataclasses.fields(InputSpec)}
    return InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k in known})


@dataclass(frozen=True)
class Metric:
    """A published number with the protocol it was measured under."""

    task: str  # e.g. "UCF101 split-1 finetune"
    metric: str  # e.g. "top-1"
    value: float
    protocol: str = ""
    source: str = ""  # where the number is printed


@dataclass(frozen=True)
class Weights:
    """Where the weights live: a Hub repo (``repo_id``) or a folder inside the installed videozoo package
    (``package``, for the small demo weights that must work offline). Neither set means "not yet published":
    ``how_to_get`` says how. Either way the file is checked against ``sha256`` before it is loaded."""

    repo_id: str | None = None
    revision: str | None = None
    filename: str = "model.safetensors"
    sha256: str | None = None
    package: str | None = None  # folder relative to the videozoo package, e.g. "assets/<name>"
    official_file: str | None = None  # the release that `videozoo convert` turns into these weights
    converter: str | None = None  # name of the converter for official_file
    recipe: str | None = None  # the command that reproduces them
    how_to_get: str = ""

    @property
    def published(self) -> bool:
        return self.repo_id is not None or self.package is not None

    @property
    def status(self) -> str:
        if self.package is not None:
            return "packaged with videozoo"
        if self.published:
            return "published on the Hub"
        if self.official_file:
            return "convert from the official file"
        return "reproduce with the recipe"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: Literal["backbone", "pretrained"]
    builder: str  # "module:function"
    arch: str  # the backbone entry whose architecture this is (itself for a backbone)
    config: dict[str, Any] = field(default_factory=dict)
    input_spec: InputSpec = InputSpec()
    description: str = ""
    paper: str = ""
    licence: str = "Apache-2.0"
    weights: Weights | None = None
    source: str = ""
    metrics: tuple[Metric, ...] = ()
    tiny: bool = False  # a shrunken variant for tests and smoke runs

    def builder_fn(self) -> Callable[..., nn.Module]:
        module, _, fn = self.builder.partition(":")
        return getattr(importlib.import_module(module), fn)

    def build(self, **overrides: Any) -> nn.Module:
        """Construct the architecture with random weights; ``overrides`` win over ``config``."""
        kwargs = {**self.config, **overrides}
        model = self.builder_fn()(**kwargs)
        model.zoo_name = self.name
        model.zoo_arch = self.arch
        model.zoo_config = {k: v for k, v in kwargs.items() if k != "num_classes"}
        return model

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (used by ``videozoo info`` and ``config.json``)."""
        return dataclasses.asdict(self)


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown name raises with the nearest suggestions."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.4)
        # the count is what list_models() (and `videozoo list`) shows: tiny test variants hidden
        raise UnknownModelError(name, close, len(list_models())) from None


def list_models(pattern: str = "*", pretrained: bool | None = None, *, tiny: bool | None = False) -> list[str]:
    """Sorted names matching the glob ``pattern``.

    ``pretrained=True`` keeps pretrained models, ``False`` bare backbones, ``None`` both.
    Tiny test variants are hidden unless ``tiny=None`` (all) or ``tiny=True`` (only them).
    """
    return sorted(
        e.name
        for e in _REGISTRY.values()
        if fnmatch.fnmatchcase(e.name, pattern)
        and (pretrained is None or (e.kind == "pretrained") == pretrained)
        and (tiny is None or e.tiny == tiny)
    )


def entries() -> list[ModelEntry]:
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


# ================================================================================================
# The table. Papers, official files and published numbers: ../shared/REFERENCE.md.
# ================================================================================================
COCLR = "Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning. NeurIPS 2020"
CACL = "Guo et al. Cross-Architecture Self-supervised Video Representation Learning. CVPR 2022"
STICA = "Patrick, Asano et al. Space-Time Crop & Attend: Improving Cross-modal Video Representation Learning. ICCV 2021"
GDT = (
    "Patrick, Asano et al. On Compositions of Transformations in Contrastive Self-Supervised Learning (GDT). ICCV 2021"
)
TORCHVISION = "Tran et al. A Closer Look at Spatiotemporal Convolutions for Action Recognition. CVPR 2018"
S3D_PAPER = "Xie et al. Rethinking Spatiotemporal Feature Learning (S3D). ECCV 2018"
VCOP = "Xu et al. Self-supervised Spatiotemporal Learning via Video Clip Order Prediction (VCOP). CVPR 2019"
C3D_PAPER = "Tran et al. Learning Spatiotemporal Features with 3D Convolutional Networks (C3D). ICCV 2015"

COCLR_RGB = InputSpec(
    channels="rgb", frames=32, stride=1, resize=128, crop_size=128, mean=IMAGENET_MEAN, std=IMAGENET_STD
)
COCLR_FLOW = dataclasses.replace(COCLR_RGB, channels="flow")
STICA_VIDEO = InputSpec(channels="rgb", frames=30, fps=30, resize=128, crop_size=112)
CACL_VIDEO = InputSpec(
    channels="rgb", frames=16, stride=2, resize=(128, 171), crop_size=112, mean=(0.0,) * 3, std=(1.0,) * 3
)
STICA_AUDIO = InputSpec(
    channels="audio", frames=1, sample_rate=24000, seconds=1.0, freq_bins=257, resize=257, crop_size=99
)


def _backbone(name: str, builder: str, *, spec: InputSpec, description: str, paper: str, **config: Any) -> None:
    register(
        ModelEntry(
            name=name,
            kind="backbone",
            builder=builder,
            arch=name,
            config=config,
            input_spec=spec,
            description=description,
            paper=paper,
            source="architecture only (random initialisation)",
        )
    )


def _tiny(name: str, arch: str, **config: Any) -> None:
    base = _REGISTRY[arch]
    register(
        dataclasses.replace(
            base,
            name=name,
            arch=name,
            config={**base.config, **config},
            tiny=True,
            description=f"tiny {arch} for tests and smoke runs",
        )
    )


_backbone(
    "r2plus1d_18",
    "videozoo.backbones.resnet3d:r2plus1d_18",
    spec=STICA_VIDEO,
    paper=TORCHVISION,
    description="R(2+1)D-18, state dicts interchangeable with torchvision.models.video.r2plus1d_18",
)
_backbone(
    "r3d_18",
    "videozoo.backbones.resnet3d:r3d_18",
    spec=InputSpec(),
    paper=TORCHVISION,
    description="R3D-18, state dicts interchangeable with torchvision.models.video.r3d_18",
)
_backbone(
    "mc3_18",
    "videozoo.backbones.resnet3d:mc3_18",
    spec=InputSpec(),
    paper=TORCHVISION,
    description="MC3-18, state dicts interchangeable with torchvision.models.video.mc3_18",
)
_backbone(
    "s3d",
    "videozoo.backbones.s3d:s3d",
    spec=COCLR_RGB,
    paper=S3D_PAPER,
    description="S3D in CoCLR's layout (no gating; gating=True gives S3D-G), 1024-d",
)
_backbone(
    "c3d",
    "videozoo.backbones.c3d:c3d",
    spec=CACL_VIDEO,
    paper=C3D_PAPER,
    description="C3D as used by VCOP and CACL (BN after every conv), 512-d",
)
_backbone(
    "r3d",
    "videozoo.backbones.resnet3d:vcop_r3d",
    spec=CACL_VIDEO,
    paper=VCOP,
    description="VCOP-style R3D (CACL), layer sizes configurable, (3, 4, 6, 3) by default, 512-d",
)
_backbone(
    "r21d",
    "videozoo.backbones.resnet3d:vcop_r21d",
    spec=CACL_VIDEO,
    paper=VCOP,
    description="VCOP-style R(2+1)D-10 (CACL), 512-d",
)
_backbone(
    "resnet9_audio",
    "videozoo.backbones.audio:resnet9_audio",
    spec=STICA_AUDIO,
    paper=GDT,
    description="ResNet-9 on 1-channel log-spectrograms (GDT / STiCA audio network), 512-d",
)
_backbone(
    "frame_transformer",
    "videozoo.backbones.frame_transformer:frame_transformer",
    spec=CACL_VIDEO,
    paper=CACL,
    description="CACL's video transformer: a timm 2D network per frame, 6 pre-norm blocks over frame tokens",
)

_tiny("r2plus1d_18_tiny", "r2plus1d_18", width=8)
_tiny("r3d_18_tiny", "r3d_18", width=8)
_tiny("mc3_18_tiny", "mc3_18", width=8)
_tiny("s3d_tiny", "s3d", width_mult=0.125)
_tiny("c3d_tiny", "c3d", width=8)
_tiny("r3d_tiny", "r3d", width=8, layers=(1, 1, 1, 1))
_tiny("r21d_tiny", "r21d", width=8)
_tiny("resnet9_audio_tiny", "resnet9_audio", width=8)
_tiny("frame_transformer_tiny", "frame_transformer", frame_model="test_resnet", dim=32, depth=2, heads=2, mlp_dim=64)


def _pretrained(
    name: str,
    arch: str,
    *,
    spec: InputSpec,
    weights: Weights,
    paper: str,
    description: str,
    licence: str,
    metrics: tuple[Metric, ...] = (),
    tiny: bool = False,
    **config: Any,
) -> None:
    base = _REGISTRY[arch]
    source = (
        f"converted from the official {weights.official_file}"
        if weights.official_file
        else f"reproduced by `{weights.recipe}`"
    )
    register(
        ModelEntry(
            name=name,
            kind="pretrained",
            builder=base.builder,
            arch=arch,
            config={**base.config, **config},
            input_spec=spec,
            description=description,
            paper=paper,
            licence=licence,
            weights=weights,
            source=source,
            metrics=metrics,
            tiny=tiny,
        )
    )


def _official(file: str, converter: str, name: str) -> Weights:
    return Weights(
        official_file=file,
        converter=converter,
        how_to_get=(
            f"The official checkpoint {file} is not yet converted and published. Convert it once with "
            f"`videozoo convert {file} --to {name} --out {name}/`, then `videozoo.load({name!r}, weights='{name}/')` "
            f"(or pass weights='{file}' to convert on the fly)."
        ),
    )


def _recipe(command: str) -> Weights:
    return Weights(
        recipe=command,
        how_to_get=(
            f"No official weights were released and videozoo has not published its reproduction yet. "
            f"Reproduce them with `{command}`, which ends by writing a weights directory for `weights=`."
        ),
    )


UCF_FT = "UCF101 finetune (split 1)"
UCF_RET = "UCF101 split-1 retrieval (test queries train)"
LINEAR = "UCF101 linear probe (split 1)"
HMDB_FT = "HMDB51 finetune (split 1)"
COCLR_RET = "pooled 1024-d, window-averaged (32 frames, stride 15), mean-centred, cosine; official README"
COCLR_FT = "Adam 1e-3 (backbone 1e-4), dropout 0.9, 10-crop over all windows; paper Table 2"
COCLR_RELEASES = {
    ("ucf101", "rgb"): "CoCLR-ucf101-rgb-128-s3d-ep182.tar",
    ("ucf101", "flow"): "CoCLR-ucf101-flow-128-s3d-epoch109.pth.tar",
    ("k400", "rgb"): "CoCLR-k400-rgb-128-s3d.pth.tar",
    ("k400", "flow"): "CoCLR-k400-flow-128-s3d.pth.tar",
}
COCLR_METRICS = {
    ("ucf101", "rgb"): (
        Metric(UCF_RET, "R@1", 51.8, COCLR_RET, "CoCLR README"),
        Metric(LINEAR, "top-1", 70.2, "frozen backbone, BN + linear; paper Table 2", "paper"),
        Metric(UCF_FT, "top-1", 81.4, COCLR_FT, "paper Table 2"),
        Metric(HMDB_FT, "top-1", 52.1, COCLR_FT, "paper Table 2"),
    ),
    ("ucf101", "flow"): (Metric(UCF_RET, "R@1", 48.4, COCLR_RET, "CoCLR README"),),
    ("k400", "rgb"): (
        Metric(UCF_RET, "R@1", 45.6, COCLR_RET, "CoCLR README"),
        Metric(UCF_FT, "top-1", 87.9, COCLR_FT, "paper Table 2"),
        Metric(HMDB_FT, "top-1", 54.6, COCLR_FT, "paper Table 2"),
        Metric(UCF_FT, "top-1 two-stream", 90.6, "RGB + flow logits averaged; " + COCLR_FT, "paper"),
        Metric(LINEAR, "top-1 two-stream", 77.8, "RGB + flow; frozen backbones", "paper"),
    ),
    ("k400", "flow"): (
        Metric(UCF_RET, "R@1", 44.4, COCLR_RET, "CoCLR README"),
        Metric(UCF_FT, "top-1", 85.3, COCLR_FT, "paper Table 2"),
        Metric(UCF_FT, "top-1 two-stream", 90.6, "RGB + flow logits averaged; " + COCLR_FT, "paper"),
        Metric(LINEAR, "top-1 two-stream", 77.8, "RGB + flow; frozen backbones", "paper"),
    ),
}
for (data, modality), file in COCLR_RELEASES.items():
    _pretrained(
        f"coclr_s3d_{data}_{modality}",
        "s3d",
        spec=COCLR_RGB if modality == "rgb" else COCLR_FLOW,
        weights=_official(file, "coclr", f"coclr_s3d_{data}_{modality}"),
        paper=COCLR,
        licence="Apache-2.0",
        description=f"CoCLR S3D, {modality} stream, pretrained on {data.upper()}",
        metrics=COCLR_METRICS[data, modality],
        in_channels=3,
    )
for modality, file, r1 in (
    ("rgb", "InfoNCE-ucf101-rgb-128-s3d-ep399.pth.tar", 33.1),
    ("flow", "InfoNCE-ucf101-f-128-s3d-ep396.pth.tar", 45.2),
):
    _pretrained(
        f"infonce_s3d_ucf101_{modality}",
        "s3d",
        spec=COCLR_RGB if modality == "rgb" else COCLR_FLOW,
        weights=_official(file, "coclr", f"infonce_s3d_ucf101_{modality}"),
        paper=COCLR,
        licence="Apache-2.0",
        description=f"InfoNCE (MoCo on video) S3D, {modality} stream, UCF101: CoCLR's stage 1",
        metrics=(Metric(UCF_RET, "R@1", r1, COCLR_RET, "CoCLR README"),),
    )

# The one set of weights inside the package (videozoo/assets/), so that `videozoo demo` shows retrieval by motion
# with no download. Trained in two minutes on synthetic moving shapes: a test and demo asset, not an encoder for
# real videos, hence tiny=True (hidden from list_models() like the tiny backbones; list_models(tiny=None) shows it).
SMOKE_RUN = (
    "python recipes/coclr.py --preset smoke --seed 0 --threads 1 --workers 1 --progress false --run_dir /tmp/demo-smoke"
)
SMOKE_RET = "synthetic motion clips, held-out group queries the training groups (32 queries, 96 gallery)"
SMOKE_PROTOCOL = "4 uniform clips of 8 frames at 32 px, pooled 64-d, clip-normalised, averaged, mean-centred, cosine"
_pretrained(
    "coclr_r3d_tiny_synthetic_rgb",
    "r3d_tiny",
    spec=InputSpec(channels="rgb", frames=8, resize=32, crop_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    weights=Weights(
        package="assets/coclr_r3d_tiny_synthetic_rgb",
        sha256="1defdad7c962b7aa2e1705a8a7a766f595cc490e46bc43b0cd6c632b31111ad3",
        recipe=SMOKE_RUN,
        how_to_get="Shipped inside the videozoo package (videozoo/assets/): videozoo.load(name) reads it, no download.",
    ),
    paper=COCLR,
    licence="Apache-2.0",
    description=(
        "A tiny R3D (r3d_tiny, 0.23 M parameters) trained for 36 InfoNCE + 300 CoCLR steps on synthetic moving "
        "shapes by the CoCLR smoke recipe: the demo's weights, not a video encoder for real clips"
    ),
    metrics=(
        Metric(SMOKE_RET, "R@1", 65.625, SMOKE_PROTOCOL, f"printed by `{SMOKE_RUN}` (random init: 46.875)"),
        Metric(SMOKE_RET, "R@5", 84.375, SMOKE_PROTOCOL, f"`{SMOKE_RUN}`, results.json (random init: 71.875)"),
    ),
    tiny=True,
)

GDT_FT = "video path finetuned, 30 frames; 3-fold mean; GDT/STiCA papers"
for data, file, ucf, hmdb in (
    ("k400", "gdt_K400.pth", 90.9, 62.3),
    ("ht100m", "gdt_HT100M.pth", 94.1, 67.4),
    ("ig65m", "gdt_IG65M.pth", 95.2, 72.8),
):
    _pretrained(
        f"gdt_r2plus1d_{data}",
        "r2plus1d_18",
        spec=STICA_VIDEO,
        weights=_official(file, "gdt", f"gdt_r2plus1d_{data}"),
        paper=GDT,
        licence="Apache-2.0",
        description=f"GDT audio-visual R(2+1)D-18 video encoder, pretrained on {data.upper()}",
        metrics=(
            Metric("UCF101 finetune (3-fold mean)", "top-1", ucf, GDT_FT, "GDT paper"),
            Metric("HMDB51 finetune (3-fold mean)", "top-1", hmdb, GDT_FT, "GDT paper"),
        ),
    )

STICA_FT = "video path + pooling + linear, SGD 12 epochs, 10x3 crops at 128; 3-fold mean; STiCA paper"
_pretrained(
    "stica_r2plus1d_k400",
    "r2plus1d_18",
    spec=dataclasses.replace(STICA_VIDEO, frames=60),
    weights=_recipe("python recipes/stica.py --preset k400"),
    paper=STICA,
    licence="Apache-2.0",
    description="STiCA R(2+1)D-18 video encoder, audio-visual pretraining on Kinetics-400",
    metrics=(
        Metric("UCF101 finetune (3-fold mean)", "top-1", 93.1, STICA_FT, "STiCA paper"),
        Metric("HMDB51 finetune (3-fold mean)", "top-1", 67.0, STICA_FT, "STiCA paper"),
    ),
)
for arch in ("c3d", "r3d", "r21d"):
    _pretrained(
        f"cacl_{arch}_ucf101",
        arch,
        spec=CACL_VIDEO,
        weights=_recipe(f"python recipes/cacl.py --preset ucf101 --backbone {arch}"),
        paper=CACL,
        licence="Apache-2.0",
        description=f"CACL {arch} 3D-CNN branch, pretrained on UCF101 split 1",
    )
