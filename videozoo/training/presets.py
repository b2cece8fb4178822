"""What the pretraining recipes share in their configuration, and where every preset value comes from.

* :class:`Synthetic` and :class:`Augment`: the nested configuration of the smoke runs' synthetic data
  (``--synthetic.videos-per-class``) and of the training augmentation (``--aug.jitter-p``), one definition for
  the three recipes. ``field(**augment("coclr"))`` is a recipe's ``aug`` field, whose defaults are the preset
  of that name (:data:`videozoo.data.transforms.TRAIN_PRESETS`).
* Provenance: a recipe's default is ``sourced(value, "where it comes from")``, a preset's value ``src(value,
  "...")`` (a :class:`~videozoo.data.transforms.presets.Sourced`); the augmentation presets carry theirs.
  ``python -m videozoo.training.presets`` writes every key of every paper and released preset, its value and
  its source into docs/methods/presets.md (a test fails when that file is stale), and the fine-tuning protocols
  (:data:`videozoo.eval.finetune_config.FINETUNE_PROTOCOLS`) after them.

A source names the paper (the text wins in a paper preset), an official file and line (``<repo> <file>:<line>``
at the commits of :data:`OFFICIAL`), or says ``our choice: <why>``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from videozoo.data.transforms.presets import RELEASED, TRAIN_PRESETS, Sourced, plain

__all__ = [
    "OFFICIAL",
    "RUN_KEYS",
    "Augment",
    "Sourced",
    "Synthetic",
    "augment",
    "load_recipe",
    "provenance",
    "released_aug",
    "render",
    "sourced",
    "src",
]

OFFICIAL = {  # the official repositories the sources' file:line refer to, at these commits
    "CoCLR": ("TengdaHan/CoCLR", "45f200e0b7c1c75ae1f230c1fabb04cac105ff30"),
    "CACL": ("guoshengcv/CACL", "ab1a10cc9d1e1714754ebcd6129ca6ea0382f6f8"),
    "GDT": ("facebookresearch/GDT", "873e630fa3a11d7df1415f2ccd309023af8e1bed"),
}
# Keys that say how and where a run goes, not what it trains: shown as "run setting" without a source.
RUN_KEYS = {
    "data", "annotations", "flow", "split", "dataset", "workers", "threads", "amp", "channels_last", "compile",
    "max_steps", "ckpt_every_minutes", "log_every", "progress", "evaluate", "eval_clips", "eval_protocol",
    "eval_data", "seed", "run_dir", "flow_size", "decode_size", "backbone", "audio_backbone", "transformer",
    "frame_model", "sync_bn",
}  # fmt: skip
RUN_PREFIXES = ("synthetic.",)


def src(value: Any, source: str) -> Sourced:
    """A preset value with where it comes from."""
    return Sourced(value, source)


def sourced(value: Any, source: str) -> Any:
    """A recipe default with where it comes from: ``lr: float = sourced(1e-3, "paper; CoCLR main_nce.py:47")``."""
    return field(default=value, metadata={"source": source})


# ==================================================================================================
# the nested configuration the three recipes share
# ==================================================================================================
@dataclass
class Synthetic:
    enabled: bool = False  # write a synthetic motion dataset into run_dir instead of --data (the smoke runs)
    videos_per_class: int = 12  # generated videos per class (8 classes)
    clips_per_group: int = 2  # clips cut from one "source video"; group 1 of each class is held out for testing
    frames: int = 32  # frames per generated video
    size: int = 64  # rendered frame side, pixels
    scenes: int | None = 2  # scenes shared by every class (None: one per group and class; see synthetic.py)
    colour_cast: float = 0.0  # per-video colour grade: each channel x exp(U(-c, c)) (see synthetic.py)
    object_size: tuple[float, float] = (0.14, 0.22)  # object radius range, fraction of the side
    objects: tuple[int, int] = (1, 2)  # fewest and most moving objects per scene

    def make(self, root: str | Path, *, seed: int, audio: bool = False) -> Path:
        """Write the dataset into ``root`` (UCF101 layout, split files beside the videos) unless it is there."""
        from videozoo.data.synthetic import make_synthetic_dataset

        root = Path(root)
        if not (root / "testlist01.txt").is_file():
            make_synthetic_dataset(root, videos_per_class=self.videos_per_class, clips_per_group=self.clips_per_group,
                                   frames=self.frames, size=(self.size, self.size), scenes=self.scenes,
                                   colour_cast=self.colour_cast, object_size=self.object_size, objects=self.objects,
                                   audio=audio, seed=seed)  # fmt: skip
        return root


@dataclass
class Augment:
    """The keywords of :class:`~videozoo.data.transforms.VideoTrain` but mean/std (the method's, fixed)."""

    crop_size: int = 128  # output side, pixels
    scale: tuple[float, float] | None = (0.2, 1.0)  # random resized crop area; none: resize then a plain crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect range
    resize: tuple[int, int] | None = None  # (H, W) before cropping (CACL)
    crop_fallback: Literal["center", "resize_full"] = "center"  # a box that does not fit: retry, or the whole frame
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8  # colour jitter with this probability
    grey_p: float = 0.2  # greyscale
    grey_mode: Literal["luma", "channel_copy"] = "luma"  # weighted sum, or CoCLR's random channel copied
    grey_weights: Literal["luma", "bgr"] = "luma"  # bgr: GDT's weights in reverse channel order
    blur_p: float = 0.5  # Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # sigma range, pixels (blur_fixed_xy: sigma down, along rows)
    blur_fixed_xy: bool = False  # GDT/STiCA's fixed anisotropic 11x11 kornia blur
    flip_p: float = 0.5  # horizontal flip; 0 where direction is the label (the synthetic classes are mirror pairs)
    channel_gain: float = 0.0  # colour-cast augmentation: each channel x exp(U(-g, g)) per clip (0: off)
    normalise_first: bool = False  # GDT/STiCA: normalise, then jitter/grey/blur unclamped
    antialias: bool = True  # antialiased resizing of the crop (GDT/STiCA: plain bilinear)

    @classmethod
    def of(cls, name: str) -> Augment:
        """The augmentation preset ``name`` (``TRAIN_PRESETS``) as a config."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in plain(TRAIN_PRESETS[name]).items() if k in names})

    def build(self, name: str, **overrides: Any):
        """The :class:`VideoTrain`: preset ``name`` (for mean/std) with these values."""
        from videozoo.data.transforms import preset

        return preset(name, **{**dataclasses.asdict(self), **overrides})


def released_aug(name: str) -> dict[str, Sourced]:
    """The switches of augmentation preset ``<name>_released``, as a recipe preset's ``aug.*`` keys with sources."""
    return {f"aug.{k}": v for k, v in RELEASED[name].items()}


def augment(name: str) -> dict[str, Any]:
    """A recipe's ``aug`` field, ``field(**augment(name))``: defaults from the augmentation preset ``name``, whose
    sources the table shows."""
    return {"default_factory": lambda: Augment.of(name), "metadata": {"augment_preset": name}}


# ==================================================================================================
# provenance: every key of a preset, its value and its source
# ==================================================================================================
def _comments(cls: type) -> dict[str, str]:
    from videozoo.training.config import _field_comments

    return _field_comments(cls)


def provenance(config_cls: type, presets: dict[str, dict[str, Any]], name: str) -> dict[str, tuple[Any, str]]:
    """``{key: (value, source)}`` for every key of preset ``name`` applied to ``config_cls``'s defaults."""
    from videozoo.training.config import _flat_fields

    defaults = config_cls()
    comments = _comments(config_cls)
    meta: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(config_cls):
        meta[f.name] = dict(f.metadata)
    preset = presets.get(name, {})
    out: dict[str, tuple[Any, str]] = {}
    for key in _flat_fields(config_cls):
        head, _, rest = key.partition(".")
        value: Any = defaults
        for part in key.split("."):
            value = getattr(value, part)
        source = meta.get(head, {}).get("source", "")
        if rest and "augment_preset" in meta.get(head, {}):
            entry = TRAIN_PRESETS[meta[head]["augment_preset"]].get(rest)
            source = entry.source if isinstance(entry, Sourced) else ""
        if key in preset:
            entry = preset[key]
            value, source = (entry.value, entry.source) if isinstance(entry, Sourced) else (entry, "")
        if not source and (key in RUN_KEYS or key.startswith(RUN_PREFIXES)):
            comment = comments.get(key, "")
            source = "run setting" + (f": {comment}" if comment else "")
        out[key] = (value, source)
    return out


def load_recipe(path: str | Path) -> ModuleType:
    """Import ``recipes/<name>.py`` as a module (its ``main()`` is not run)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _groups(presets: dict[str, Any]) -> dict[str, list[str]]:
    """Paper presets with their released variants: ``{"ucf101": ["ucf101", "ucf101_released", ...]}``."""
    groups: dict[str, list[str]] = {}
    for name in presets:
        base = name.split("_released")[0]
        if base in presets and name != "smoke":
            groups.setdefault(base, []).append(name)
    return groups


def _value(value: Any) -> str:
    """A value as the command line would take it: ``0.75``, ``(0.2, 1.0)``, ``none``."""
    if isinstance(value, (tuple, list)):
        text = "(" + ", ".join(_value(v).strip("`") for v in value) + ("," if len(value) == 1 else "") + ")"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif value is None:
        text = "none"
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = json.dumps(value, default=str).strip('"')
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


HEADER = """# Presets and where their values come from

Generated from the recipes' presets (`recipes/coclr.py`, `recipes/cacl.py`, `recipes/stica.py`), the
augmentation presets (`videozoo/data/transforms/presets.py`) and the fine-tuning protocols
(`videozoo/eval/finetune_config.py`) by `python -m videozoo.training.presets`; do not edit by hand (a test fails
when this file is stale).

Each recipe has a **paper preset** (the paper's text wins where it and the code disagree) and a **`_released`
preset that reproduces the official code** as its README or launch script runs it. Every key of each is listed
with its value and its source: the paper, an official file and line, or "our choice" with the reason. In the
released columns, *same* means the paper preset's value and source. Run settings (paths, workers, logging) have
no source. Any key can be overridden: `python recipes/coclr.py --preset ucf101_released --aug.flip-p 0`;
`--print-config` prints the resolved configuration.

Official code, at the commits the line numbers refer to:
"""


def render(recipes: dict[str, ModuleType]) -> str:
    lines = [HEADER]
    lines += [
        f"- {short}: [{repo}](https://github.com/{repo}/tree/{commit}) @ `{commit[:7]}`"
        for short, (repo, commit) in OFFICIAL.items()
    ]
    lines.append("")
    for name, module in recipes.items():
        lines += [f"## `recipes/{name}.py`", ""]
        if module.__doc__:
            lines += [module.__doc__.strip().splitlines()[0], ""]
        for base, members in _groups(module.PRESETS).items():
            rows = {m: provenance(module.Config, module.PRESETS, m) for m in members}
            lines += [f"### `--preset {base}`" + "".join(f", `{m}`" for m in members[1:]), ""]
            lines += ["| key | " + " | ".join(f"`{m}`" for m in members) + " |", "|---|" + "---|" * len(members)]
            for key in rows[base]:
                cells = []
                for m in members:
                    value, source = rows[m][key]
                    if m != base and rows[m][key] == rows[base][key]:
                        cells.append("same")
                    else:
                        cells.append(_value(value) + (f" — {_cell(source)}" if source else ""))
                lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
            lines.append("")
    lines += render_finetune_protocols()
    return "\n".join(lines).rstrip() + "\n"


FINETUNE_INTRO = """The papers' fine-tuning settings, one table read by `videozoo.finetune(..., protocol=NAME)`,
`python recipes/finetune.py --preset NAME` and `videozoo finetune ... --protocol NAME`. Keys are the flat names of
`FinetuneConfig` (`videozoo/eval/finetune_config.py`); a key a protocol does not set keeps the default, shown beside
it. Any key can be overridden: `videozoo.finetune(model, train, val, protocol="stica", epochs=20)`."""


def render_finetune_protocols() -> list[str]:
    """The fine-tuning protocols as markdown lines: per protocol, every key it sets, its value, source and default."""
    from videozoo.eval.finetune_config import FINETUNE_PROTOCOLS, FLAT_NAMES, FinetuneConfig
    from videozoo.training.config import _get

    defaults = FinetuneConfig()
    lines = ["## `videozoo.finetune` protocols (`FINETUNE_PROTOCOLS`)", "", FINETUNE_INTRO, ""]
    for name, protocol in FINETUNE_PROTOCOLS.items():
        lines += [f"### `protocol={name!r}`", "", "| key | value | source | default |", "|---|---|---|---|"]
        for key, entry in protocol.items():
            value, source = (entry.value, entry.source) if isinstance(entry, Sourced) else (entry, "")
            default = _get(defaults, FLAT_NAMES.get(key, key))
            lines.append(f"| `{key}` | {_value(value)} | {_cell(source)} | {_value(default)} |")
        lines.append("")
    return lines


RECIPES = ("coclr", "cacl", "stica")


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[2]
    target = Path(argv[0]) if argv else root / "docs" / "methods" / "presets.md"
    recipes = {name: load_recipe(root / "recipes" / f"{name}.py") for name in RECIPES}
    target.write_text(render(recipes))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
