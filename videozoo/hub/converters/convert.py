"""From an official checkpoint to a videozoo weights directory: detect, convert, check, write.

``convert_checkpoint`` reads an official file (``torch.load(weights_only=True)``), recognises its format, converts
it with that format's converter, and checks the result against the registry entry it is meant for: same
architecture, same provenance, every key and shape of the model. ``convert`` writes the weights directory
(``save_pretrained``) plus ``heads.safetensors``; ``read_torch_weights`` is what ``videozoo.load(NAME,
weights="file.pth")`` uses: an official checkpoint is converted on the fly, a plain state dict (torchvision's) is
taken as it is. Which checkpoint holds what: ``docs/converting.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videozoo import registry
from videozoo.hub.converters.base import ConversionError, Converted, HeadWeights, load_official_checkpoint, roots
from videozoo.hub.converters.cacl import convert_cacl
from videozoo.hub.converters.coclr import convert_coclr
from videozoo.hub.converters.gdt import convert_gdt
from videozoo.hub.converters.stica import convert_stica
from videozoo.hub.errors import ArchitectureMismatchError, WeightsFormatError
from videozoo.registry import Metric, ModelEntry

__all__ = [
    "FORMATS",
    "HEADS_NAME",
    "add_convert_arguments",
    "convert",
    "convert_checkpoint",
    "convert_if_official",
    "detect_format",
    "is_official_checkpoint",
    "is_plain_state_dict",
    "load_heads",
    "read_torch_weights",
    "run_convert_command",
]

FORMATS: dict[str, Callable[..., Converted]] = {
    "coclr": convert_coclr,
    "gdt": convert_gdt,
    "stica": convert_stica,
    "cacl": convert_cacl,
}
FORMAT_NAMES = {
    "coclr": "a CoCLR/InfoNCE checkpoint (TengdaHan/CoCLR; S3D)",
    "gdt": "a GDT checkpoint (facebookresearch/GDT main_gdt.py; R(2+1)D-18)",
    "stica": "a STiCA checkpoint (facebookresearch/GDT main_stica.py; R(2+1)D-18)",
    "cacl": "a CACL checkpoint (guoshengcv/CACL train_pretrain.py; C3D/R3D/R(2+1)D)",
}
HEADS_NAME = "heads.safetensors"
OFFICIAL_SUFFIXES = (".pth.tar", ".tar", ".pth", ".pt", ".ckpt")


# ------------------------------------------------------------------------------------------------
# recognising a checkpoint
# ------------------------------------------------------------------------------------------------
def detect_format(checkpoint: Any, *, source: str = "the checkpoint") -> str:
    """The converter for a loaded checkpoint, from its top-level entries and state-dict keys."""
    if isinstance(checkpoint, Mapping):
        model = checkpoint.get("model")
        if isinstance(model, Mapping) and (
            "lr_scheduler" in checkpoint or "args" in checkpoint or "video_network" in _roots(model)
        ):
            return "gdt"
        state = checkpoint.get("state_dict")
        if isinstance(state, Mapping):
            found = _roots(state)
            if "encoder_q" in found:
                return "coclr"
            if "video_network" in found:
                return "stica"
        tensors_only = checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
        if tensors_only and {"encoder_q", "encoder_transformer"} <= _roots(checkpoint):
            return "cacl"
    raise ConversionError(
        f"{source} is none of the official formats videozoo converts ({'; '.join(FORMAT_NAMES.values())}). "
        f"It holds: {_describe(checkpoint)}"
    )


def is_official_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``torch.save`` file (by name, or by its first bytes), not safetensors."""
    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file():
        return False
    if path.name.endswith(OFFICIAL_SUFFIXES):
        return True
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head.startswith(b"\x80\x02\x8a")  # zip / legacy torch.save


# ------------------------------------------------------------------------------------------------
# converting
# ------------------------------------------------------------------------------------------------
def convert_checkpoint(
    source: str | os.PathLike[str], *, to: str | ModelEntry | None = None, format: str | None = None
) -> Converted:
    """Read and convert an official checkpoint; with ``to``, check it fits that registry entry.

    ``format`` (``"coclr"``, ``"gdt"``, ``"stica"``, ``"cacl"``) skips detection. Raises
    :class:`~videozoo.hub.ArchitectureMismatchError` for a checkpoint of another architecture or method than
    ``to``, and :class:`ConversionError` (a :class:`~videozoo.hub.WeightsFormatError`) naming any unexpected
    key, missing key or wrong shape.
    """
    path = Path(source).expanduser()
    return _convert_loaded(load_official_checkpoint(path), path, to=to, format=format)


def _convert_loaded(checkpoint: Any, path: Path, *, to: str | ModelEntry | None, format: str | None) -> Converted:
    """:func:`convert_checkpoint` of a checkpoint already read from ``path``."""
    from videozoo.hub.weights import sha256_file

    entry = registry.get(to) if isinstance(to, str) else to
    fmt = format or detect_format(checkpoint, source=path.name)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}")
    converted = FORMATS[fmt](checkpoint, source=path.name)
    if entry is not None:
        _check_entry(converted, entry, source=path.name)
        _check_shapes(
            converted.state_dict,
            _meta_state(entry.build),
            what=f"the {entry.name} backbone",
            names=converted.official_names,
            source=path.name,
        )
    for name, head in converted.heads.items():
        _check_shapes(
            head.state_dict,
            _meta_state(lambda h=head: h.build(weights=False)),
            what=f"head {name!r}",
            names={},
            source=path.name,
        )
    converted.info.update(file=path.name, sha256=sha256_file(path))
    return converted


def convert(
    source: str | os.PathLike[str],
    *,
    to: str,
    out: str | os.PathLike[str],
    format: str | None = None,
    heads: bool = True,
    metrics: Iterable[Metric | Mapping[str, Any]] | None = None,
) -> Path:
    """Convert an official checkpoint into a weights directory for the registry entry ``to``.

    Writes ``model.safetensors``, ``config.json`` (with ``converted_from``: source file, its sha256, what was
    kept and dropped) and the model card; with ``heads``, also ``heads.safetensors`` (:func:`load_heads`).
    ``metrics`` default to the registry's published numbers when ``source`` is the entry's official file, and
    to none otherwise (they were measured for the release, not for another checkpoint).
    """
    from videozoo.hub.weights import CONFIG_NAME, load_state_dict_strict, save_pretrained, sha256_file

    entry = registry.get(to)
    path = Path(source).expanduser()
    converted = convert_checkpoint(path, to=entry, format=format)
    official = bool(entry.weights and entry.weights.official_file == path.name)
    if metrics is None:
        metrics = entry.metrics if official else ()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {**converted.summary(), "official_release": official}
    if heads and converted.heads:
        write_heads(converted.heads, out / HEADS_NAME)
        summary |= {"heads_file": HEADS_NAME, "heads_sha256": sha256_file(out / HEADS_NAME)}
    model = entry.build()
    load_state_dict_strict(model, converted.state_dict)
    card = {"source": _provenance(converted, entry, out=out)}
    if heads and converted.heads:
        card["heads"] = f"{HEADS_NAME}: " + "; ".join(f"`{k}` ({h.description})" for k, h in converted.heads.items())
    save_pretrained(model, out, metrics=metrics, card=card, entry=entry)
    config = json.loads((out / CONFIG_NAME).read_text())
    config["converted_from"] = summary
    tmp = out / f".{CONFIG_NAME}.converted.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, out / CONFIG_NAME)
    return out


def convert_if_official(weights: str | os.PathLike[str] | None, entry: str | ModelEntry) -> Any:
    """A :class:`~videozoo.hub.LoadedWeights` converted on the fly when ``weights`` is an official checkpoint
    file (``.pth``, ``.tar``, ``.pth.tar``, ...), else ``None``."""
    if not _is_torch_file(weights):
        return None
    entry = registry.get(entry) if isinstance(entry, str) else entry
    return _as_loaded(convert_checkpoint(weights, to=entry), entry, Path(weights).expanduser())


def read_torch_weights(weights: str | os.PathLike[str] | None, entry: str | ModelEntry) -> Any:
    """For ``videozoo.load``: a :class:`~videozoo.hub.LoadedWeights` from a ``torch.save`` file, else ``None``.

    An official release is converted on the fly (:func:`convert_if_official`). A plain state dict, ``{name:
    tensor}`` as ``model.state_dict()`` gives it (torchvision's ``r2plus1d_18``, ``r3d_18``, ``mc3_18``, or a
    videozoo model's), is taken as it is: with no ``config.json`` to name its architecture, the strict key check
    of ``load_state_dict_strict`` decides whether it fits. Read with ``torch.load(weights_only=True)``.
    """
    from videozoo.hub.weights import LoadedWeights

    if not _is_torch_file(weights):
        return None
    entry = registry.get(entry) if isinstance(entry, str) else entry
    path = Path(weights).expanduser()
    checkpoint = load_official_checkpoint(path)
    if is_plain_state_dict(checkpoint) and _official_format(checkpoint) is None:
        return LoadedWeights(state_dict=dict(checkpoint), config=None, path=path)
    return _as_loaded(_convert_loaded(checkpoint, path, to=entry, format=None), entry, path)


def is_plain_state_dict(checkpoint: Any) -> bool:
    """Whether a loaded checkpoint is ``{str: Tensor}`` and nothing else (what ``model.state_dict()`` saves)."""
    return (
        isinstance(checkpoint, Mapping)
        and bool(checkpoint)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.items())
    )


def _official_format(checkpoint: Any) -> str | None:
    """The official format of ``checkpoint``, or None (CACL's are plain state dicts too, so ask first)."""
    try:
        return detect_format(checkpoint)
    except ConversionError:
        return None


def _is_torch_file(weights: Any) -> bool:
    return isinstance(weights, str | os.PathLike) and is_official_checkpoint(weights)


def _as_loaded(converted: Converted, entry: ModelEntry, path: Path) -> Any:
    from videozoo.hub.weights import LoadedWeights

    config = {
        "name": entry.name,
        "architecture": entry.arch,
        "builder_config": {k: v for k, v in entry.config.items() if k != "num_classes"},
        "num_classes": 0,
        "converted_from": converted.summary(),
    }
    return LoadedWeights(state_dict=converted.state_dict, config=config, path=path, sha256=converted.info["sha256"])


# ------------------------------------------------------------------------------------------------
# heads
# ------------------------------------------------------------------------------------------------
def write_heads(heads: Mapping[str, HeadWeights], file: Path) -> None:
    """``heads.safetensors``: tensors as ``<head>.<param>``, each head's builder and config in the metadata."""
    from safetensors.torch import save_file

    tensors = {
        f"{name}.{k}": v.detach().to("cpu").contiguous().clone()
        for name, h in heads.items()
        for k, v in h.state_dict.items()
    }
    specs = {
        name: {"builder": h.builder, "config": h.config, "description": h.description} for name, h in heads.items()
    }
    tmp = file.with_name(f".{file.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "videozoo_heads": json.dumps(specs)})
    os.replace(tmp, file)


def read_heads(file: Path) -> dict[str, HeadWeights]:
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        specs = json.loads((f.metadata() or {}).get("videozoo_heads", "null") or "null")
        if not isinstance(specs, dict):
            raise WeightsFormatError(f"{file} has no videozoo_heads metadata: it was not written by videozoo convert")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    return {
        name: HeadWeights(
            builder=spec["builder"],
            config=spec["config"],
            description=spec.get("description", ""),
            state_dict={k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")},
        )
        for name, spec in specs.items()
    }


def load_heads(source: str | os.PathLike[str], *, to: str | None = None) -> dict[str, nn.Module]:
    """The modules that came with a release, with their weights, in eval mode.

    ``source`` is a directory written by :func:`convert` (or its ``heads.safetensors``), or an official
    checkpoint, converted on the fly (``to`` then checks it against a registry entry). Keys are ``projection``
    (CoCLR), ``video_head``/``audio_head``/``audio_backbone`` (GDT, STiCA), ``pooling`` (STiCA),
    ``contrast_head``/``order_head`` (CACL).
    """
    path = Path(source).expanduser()
    if path.is_dir() or path.suffix == ".safetensors":
        file = path / HEADS_NAME if path.is_dir() else path
        if not file.is_file():
            raise WeightsFormatError(f"no {HEADS_NAME} in {path}: convert with heads (the default) to keep them")
        heads = read_heads(file)
    else:
        heads = convert_checkpoint(path, to=to).heads
    return {name: head.build() for name, head in heads.items()}


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------
def expected_format(entry: ModelEntry) -> str | None:
    """The converter an entry's weights come from: its ``weights.converter``, else its method's; None for backbones."""
    if entry.weights is not None and entry.weights.converter:
        return entry.weights.converter
    method = entry.name.split("_", 1)[0]
    return method if entry.kind == "pretrained" and method in FORMATS else None


def _check_entry(converted: Converted, entry: ModelEntry, *, source: str) -> None:
    want = expected_format(entry)
    if converted.arch == entry.arch and want in (None, converted.format):
        return
    fits = [
        e.name
        for e in registry.entries()
        if e.arch == converted.arch and not e.tiny and expected_format(e) in (None, converted.format)
    ]
    what = f"{source} is {FORMAT_NAMES[converted.format]}, {converted.variant}, architecture {converted.arch!r}"
    if converted.arch != entry.arch:
        why = f"but {entry.name!r} is a {entry.arch!r} model"
    else:
        why = f"but {entry.name!r} holds weights converted from {FORMAT_NAMES[want]}"
    raise ArchitectureMismatchError(f"{what}, {why}. Convert it with --to one of: {', '.join(fits)}.")


def _meta_state(build: Callable[[], nn.Module]) -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return build().state_dict()


def _check_shapes(
    state: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    *,
    what: str,
    names: Mapping[str, str],
    source: str,
) -> None:
    """Every key of the model present with its shape, nothing else; errors use the file's key names."""
    missing = [k for k in own if k not in state]
    unexpected = [names.get(k, k) for k in state if k not in own]
    wrong = [
        f"{names.get(k, k)} {tuple(state[k].shape)} (videozoo {k} {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{len(missing)} missing: {_short(missing)}" if missing else "",
            f"{len(unexpected)} unexpected: {_short(unexpected)}" if unexpected else "",
            f"{len(wrong)} of wrong shape: {_short(wrong)}" if wrong else "",
        ]
        raise ConversionError(f"{source}: the converted weights do not fit {what}: " + "; ".join(p for p in parts if p))


def _short(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f", ... and {len(items) - n} more" if len(items) > n else "")


def _roots(state: Mapping[Any, Any]) -> set[str]:
    keys = {str(k) for k in state}
    if keys and all(k.startswith("module.") for k in keys):
        keys = {k[len("module.") :] for k in keys}
    return roots(dict.fromkeys(keys))


def _describe(checkpoint: Any) -> str:
    if not isinstance(checkpoint, Mapping):
        return f"a {type(checkpoint).__name__}"
    keys = [str(k) for k in checkpoint]
    inner = next((v for v in checkpoint.values() if isinstance(v, Mapping) and v), None)
    sample = f"; first keys of its state dict: {[str(k) for k in list(inner)[:4]]}" if inner is not None else ""
    return f"top-level entries {keys[:8]}{sample}"


def _provenance(converted: Converted, entry: ModelEntry, *, out: Path) -> str:
    file, sha = converted.info["file"], converted.info["sha256"]
    dropped = "; ".join(f"`{k}`: {why}" for k, why in converted.dropped.items())
    return (
        f"Converted from the official checkpoint `{file}` (sha256 `{sha}`) with "
        f"`videozoo convert {file} --to {entry.name} --out {out.name}/` (converter `{converted.format}`, "
        f"{converted.variant}). Every key of the file is accounted for. Dropped: {dropped}. The converter's "
        "outputs equal the official model code's on the same clip (videozoo docs/converting.md)."
    )


# ------------------------------------------------------------------------------------------------
# command line (wired into `videozoo convert` by videozoo/cli.py)
# ------------------------------------------------------------------------------------------------
def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="the official checkpoint (.pth, .tar, .pth.tar)")
    parser.add_argument("--to", required=True, help="registry name, e.g. coclr_s3d_ucf101_rgb")
    parser.add_argument("--out", required=True, type=Path, help="weights directory to write")
    parser.add_argument("--format", choices=sorted(FORMATS), default=None, help="skip detecting the format")
    parser.add_argument("--no-heads", action="store_true", help="do not write heads.safetensors")


def run_convert_command(args: argparse.Namespace) -> int:
    out = convert(args.source, to=args.to, out=args.out, format=args.format, heads=not args.no_heads)
    config = json.loads((out / "config.json").read_text())
    summary = config["converted_from"]
    print(f"converted {summary['file']} ({summary['format']}, {summary['variant']}) → {out}/")
    print(f"  source sha256 : {summary['sha256']}")
    print(f"  weights sha256: {config['sha256']}")
    print(f"  heads         : {', '.join(summary['heads']) or 'none'}")
    for pattern, why in summary["dropped"].items():
        print(f"  dropped       : {pattern}: {why}")
    print(f"load it: videozoo.load({args.to!r}, weights={str(out)!r})")
    return 0
