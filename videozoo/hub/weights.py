"""Weights on disk: the safetensors + ``config.json`` + model card directory, read back without pickle.

A weights directory written by :func:`save_pretrained` holds::

    model.safetensors   the full state dict (safetensors, metadata {"format": "pt", "videozoo_arch": ...})
    config.json         name, architecture, builder config, classes, input spec, metrics, sha256 of the weights
    README.md           a Hugging Face model card

It is exactly what gets uploaded to the Hub, so a local directory and a Hub repo are read by the
same code (:func:`videozoo.hub.read_weights`). Format details: ``docs/weights.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videozoo.hub.errors import ArchitectureMismatchError, ChecksumError, WeightsFormatError
from videozoo.registry import InputSpec, Metric, ModelEntry, UnknownModelError, get

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "LoadedWeights",
    "check_architecture",
    "input_spec_from_config",
    "load_state_dict_strict",
    "read_local_weights",
    "save_pretrained",
    "sha256_file",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT_VERSION = 1
HEAD_PREFIX = "fc."  # the classifier is always `fc` (backbones/base.py)
_MAX_LISTED = 10  # keys listed per category in a strict-loading error
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


@dataclass
class LoadedWeights:
    """A state dict read from safetensors, with the ``config.json`` that came with it (if any)."""

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)  # the safetensors header metadata
    sha256: str | None = None  # set when the file was hashed (verified downloads, expected_sha256)

    @property
    def architecture(self) -> str | None:
        """The architecture the weights were saved from: config.json first, safetensors metadata second."""
        if self.config and self.config.get("architecture"):
            return self.config["architecture"]
        return self.metadata.get("videozoo_arch")


# ------------------------------------------------------------------------------------------------
# hashing
# ------------------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_size`` pieces so large checkpoints never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, *, hint: str = "") -> str:
    """Hash ``path`` and raise :class:`ChecksumError` with both digests unless it equals ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"sha256 mismatch for {path} ({path.stat().st_size} bytes): expected {expected.lower()}, "
            f"got {actual}. The file is corrupted, truncated or not the published one.{hint}",
            expected=expected.lower(),
            actual=actual,
        )
    return actual


# ------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------
def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike[str],
    *,
    metrics: Iterable[Metric | Mapping[str, Any]] = (),
    class_names: Iterable[str] | None = None,
    card: Mapping[str, Any] | None = None,
    entry: ModelEntry | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a ``README.md`` model card into ``directory``.

    ``model`` is anything built by the registry (it carries ``zoo_name``, ``zoo_arch`` and
    ``zoo_config``); ``entry`` defaults to its registry entry and supplies the input spec, paper,
    licence and provenance. ``metrics`` are the numbers measured for *these* weights (``Metric``
    or dicts with the same fields), ``class_names`` the labels of the head, and ``card`` extra
    card fields such as ``{"recipe_command": ..., "data": ..., "epochs": ...}``.

    The three files are first written to temporary files in ``directory`` and only then renamed
    over the old ones, so an interrupted save never leaves a partial ``model.safetensors``.
    Returns the directory.
    """
    from safetensors import torch as st  # looked up at call time: tests simulate a failing writer

    from videozoo.hub.card import render_card

    name, arch, builder_config = _zoo_identity(model, entry)
    if entry is None:
        try:
            entry = get(name)
        except UnknownModelError:
            entry = None
    num_classes = _num_classes(model)
    names = list(class_names) if class_names is not None else None
    if names is not None and num_classes and len(names) != num_classes:
        raise ValueError(f"{len(names)} class_names given for a head with {num_classes} classes")
    state_dict = _state_dict_for_saving(model)
    spec = getattr(model, "input_spec", None)  # a model may carry its own spec; else the registry's
    spec = spec if isinstance(spec, InputSpec) else (entry.input_spec if entry else None)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        tmp = _stage(directory, WEIGHTS_NAME, lambda p: st.save_file(
            state_dict, str(p), metadata={"format": "pt", "videozoo_arch": arch, "videozoo_name": name}))
        staged.append((tmp, directory / WEIGHTS_NAME))
        config = {
            "format_version": FORMAT_VERSION,
            "videozoo_version": _videozoo_version(),
            "name": name,
            "architecture": arch,
            "builder_config": _jsonable(builder_config, "builder_config"),
            "num_classes": num_classes,
            "num_features": getattr(model, "num_features", None),
            "class_names": names,
            "input_spec": _jsonable(dataclasses.asdict(spec), "input_spec") if spec else None,
            "metrics": [_metric_dict(m) for m in metrics],
            "weights_file": WEIGHTS_NAME,
            "sha256": sha256_file(tmp),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "card": _jsonable(dict(card or {}), "card"),
        }
        text = json.dumps(config, indent=2) + "\n"
        staged.append((_stage(directory, CONFIG_NAME, lambda p: p.write_text(text)), directory / CONFIG_NAME))
        readme = render_card(config, entry=entry, directory=directory)
        staged.append((_stage(directory, CARD_NAME, lambda p: p.write_text(readme)), directory / CARD_NAME))
        for tmp_path, final in staged:
            os.replace(tmp_path, final)
    finally:
        for tmp_path, _ in staged:
            tmp_path.unlink(missing_ok=True)  # no-op after a successful replace
    return directory


def _stage(directory: Path, name: str, write: Callable[[Path], Any]) -> Path:
    """Write a temporary sibling of ``directory / name``, fsynced; removed again if writing fails.

    Same directory so that the final ``os.replace`` is an atomic rename on one file system.
    The name is unique per call (several processes may save into one directory), and the file
    keeps the usual umask permissions: a 0600 weights file would be unreadable to colleagues.
    """
    tmp = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb"):  # created here, so it gets the umask's permissions ...
            pass
        mode = tmp.stat().st_mode & 0o777
        write(tmp)
        os.chmod(tmp, mode)  # ... which some writers (safetensors: 0600) would otherwise narrow
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _zoo_identity(model: nn.Module, entry: ModelEntry | None) -> tuple[str, str, dict[str, Any]]:
    name = getattr(model, "zoo_name", None) or (entry.name if entry else None)
    arch = getattr(model, "zoo_arch", None) or (entry.arch if entry else None)
    if not name or not arch:
        raise ValueError(
            f"{type(model).__name__} has no zoo_name/zoo_arch: build it with videozoo.create_model(...) or "
            "videozoo.load(...), or pass entry=videozoo.registry.get(<architecture name>)."
        )
    config = getattr(model, "zoo_config", None)
    if config is None:
        config = {k: v for k, v in (entry.config if entry else {}).items() if k != "num_classes"}
    return name, arch, dict(config)


def _num_classes(model: nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    fc = getattr(model, "fc", None)
    return fc.out_features if isinstance(fc, nn.Linear) else 0


def _state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict as contiguous CPU tensors that share no memory.

    safetensors refuses aliased tensors (tied weights, a module registered twice); rather than
    dropping the aliases (which would make strict loading report them missing) each alias gets
    its own copy, so the file holds every key the model's ``state_dict()`` has.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr and ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def _metric_dict(m: Metric | Mapping[str, Any]) -> dict[str, Any]:
    d = dataclasses.asdict(m) if isinstance(m, Metric) else dict(m)
    missing = {"task", "metric", "value"} - d.keys()
    if missing:
        raise ValueError(f"metric {d} lacks {sorted(missing)}")
    return {"task": d["task"], "metric": d["metric"], "value": d["value"], "protocol": d.get("protocol") or "",
            "source": d.get("source") or "", **d}


def _jsonable(value: Any, where: str) -> Any:
    """``value`` with tuples as lists and paths as strings; anything else non-JSON is an error."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{where} holds a {type(value).__name__} ({value!r}), which config.json cannot store")


def _videozoo_version() -> str:
    import videozoo  # at call time: hub is imported while videozoo/__init__ is still running

    return getattr(videozoo, "__version__", "unknown")


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_local_weights(
    path: str | os.PathLike[str], *, expected_sha256: str | None = None, filename: str = WEIGHTS_NAME
) -> LoadedWeights:
    """Read a weights directory or a ``.safetensors`` file (see :func:`videozoo.hub.read_weights`)."""
    path = Path(path).expanduser()
    if path.is_dir():
        file = path / filename
        if not file.is_file():
            found = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
            raise WeightsFormatError(
                f"no {filename} in {path} (it holds: {', '.join(found[:10]) or 'nothing'}). Expected a directory "
                "written by videozoo.save_pretrained; official .pth/.tar checkpoints are converted once with "
                "`videozoo convert`."
            )
    elif path.is_file():
        file = path
    else:
        raise WeightsFormatError(f"weights file {path} does not exist (expected {filename} or a directory with it)")
    header = check_safetensors(file)
    sha = verify_sha256(file, expected_sha256) if expected_sha256 else None
    config = read_config(file.parent / CONFIG_NAME, weights_file=file.name)
    return LoadedWeights(state_dict=load_safetensors(file), config=config, path=file,
                         metadata=dict(header.get("__metadata__") or {}), sha256=sha)


def check_safetensors(file: Path) -> dict[str, Any]:
    """Validate the safetensors framing of ``file`` and return its JSON header.

    The checks run on the first bytes only, so a truncated download or a pickle checkpoint gets
    a message saying what it is, instead of a bare parser error from deep inside safetensors.
    """
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsFormatError(f"{file} is {size} bytes, too short to be safetensors (expected {file.name} "
                                     "written by videozoo.save_pretrained); the file is empty or truncated")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            raise WeightsFormatError(f"{file} is not a safetensors file: {_sniff(head)}")
        if 8 + n > size:
            raise WeightsFormatError(f"{file} is truncated: its safetensors header alone needs {8 + n} bytes but the "
                                     f"file has {size} (an interrupted download or copy?)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WeightsFormatError(f"{file} is not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise WeightsFormatError(f"{file} is not a safetensors file: its header is not a JSON object")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise WeightsFormatError(f"{file} has a malformed safetensors header (a tensor without data_offsets)") from None
    if 8 + n + end != size:
        raise WeightsFormatError(
            f"{file} is truncated or padded: its header describes {8 + n + end} bytes but the file has {size} "
            "(an interrupted download or copy?). Delete it and download or save it again."
        )
    return header


def _sniff(head: bytes) -> str:
    """Name what a non-safetensors file most likely is, and what to do with it."""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return ("it looks like a torch.save checkpoint (zip/pickle). videozoo never unpickles weights: convert "
                "official checkpoints once with `videozoo convert`, then load the resulting directory")
    if head.startswith(b"version "):
        return "it is a Git LFS pointer, not the file itself (run `git lfs pull` in the clone)"
    if head.lstrip().startswith((b"<", b"{")):
        return "it is a text file (an HTML error page or JSON saved in place of the weights?)"
    return "its first 8 bytes are not a plausible safetensors header length"


def load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """Load all tensors of an already validated file; parser errors become :class:`WeightsFormatError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsFormatError(f"{file} could not be read as safetensors: {err}") from err


def read_config(path: Path, *, weights_file: str | None = None) -> dict[str, Any] | None:
    """``config.json`` beside a weights file, or None when there is none or it describes another file."""
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsFormatError(f"{path} is not valid JSON ({err}); expected the config.json written by "
                                 "videozoo.save_pretrained") from None
    if not isinstance(config, dict):
        raise WeightsFormatError(f"{path} must hold a JSON object, found {type(config).__name__}")
    if weights_file and config.get("weights_file", weights_file) != weights_file:
        return None  # e.g. an extra export next to model.safetensors: this config is not about it
    return config


def input_spec_from_config(config: Mapping[str, Any]) -> InputSpec | None:
    """The :class:`InputSpec` stored in a ``config.json`` (JSON lists turned back into tuples)."""
    spec = config.get("input_spec")
    if not spec:
        return None
    known = {f.name for f in dataclasses.fields(InputSpec)}
    return InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k in known})


# ------------------------------------------------------------------------------------------------
# loading into a model
# ------------------------------------------------------------------------------------------------
def check_architecture(config: Mapping[str, Any] | LoadedWeights | None, entry_or_name: ModelEntry | str | nn.Module,
                       ) -> None:
    """Raise :class:`ArchitectureMismatchError` if the weights were saved from another architecture.

    ``config`` is a weights ``config.json`` (or a :class:`LoadedWeights`); without an
    ``architecture`` there is nothing to check and the strict key check has the last word.
    """
    if isinstance(config, LoadedWeights):
        source, got, saved_as = config.path, config.architecture, (config.config or {}).get("name")
    elif config:
        source, got, saved_as = "the weights", config.get("architecture"), config.get("name")
    else:
        return
    if not got:
        return
    if isinstance(entry_or_name, nn.Module):
        target, want = getattr(entry_or_name, "zoo_name", type(entry_or_name).__name__), \
            getattr(entry_or_name, "zoo_arch", None)
    else:
        entry = get(entry_or_name) if isinstance(entry_or_name, str) else entry_or_name
        target, want = entry.name, entry.arch
    if want is not None and got != want:
        raise ArchitectureMismatchError(
            f"{source} were saved from {saved_as or got!r} (architecture {got!r}), but they are being loaded into "
            f"{target!r}, whose architecture is {want!r}. Load them with videozoo.load({saved_as or got!r}, "
            "weights=...) instead, or pick weights made for this model."
        )


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                           allow_head_mismatch: bool = False) -> list[str]:
    """Load ``state_dict`` into ``model`` and fail loudly, listing exactly what does not fit.

    Missing keys, unexpected keys and shape mismatches are reported together (at most ten of each,
    with counts) in one :class:`WeightsFormatError`. With ``allow_head_mismatch`` the classifier
    (``fc.*``) is exempt: a checkpoint head that is absent, extra or of another size is skipped
    and the model keeps its freshly initialised head (used when the caller asks for a new
    ``num_classes``). Returns the head keys that were skipped.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [k for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    skipped: list[str] = []
    if allow_head_mismatch:
        def is_head(k: str) -> bool:
            return k.startswith(HEAD_PREFIX)

        skipped = [k for k in missing + unexpected + wrong_shape if is_head(k)]
        missing, unexpected, wrong_shape = ([k for k in ks if not is_head(k)] for ks in (missing, unexpected,
                                                                                           wrong_shape))
    if missing or unexpected or wrong_shape:
        raise WeightsFormatError(_key_report(model, state_dict, own, missing, unexpected, wrong_shape))
    to_load = {k: v for k, v in state_dict.items() if k not in skipped}
    result = model.load_state_dict(to_load, strict=False)
    leftover = [k for k in [*result.missing_keys, *result.unexpected_keys] if k not in skipped]
    if leftover:  # cannot happen with a plain module; guards modules that override load_state_dict
        raise WeightsFormatError(f"load_state_dict left keys unmatched: {_listing(leftover)}")
    return skipped


def _key_report(model: nn.Module, state_dict: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
                missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    name = getattr(model, "zoo_name", None) or type(model).__name__
    lines = [f"the state dict does not fit {name} ({len(state_dict)} keys given, the model has {len(own)}):"]
    if missing:
        lines.append(f"  {len(missing)} missing: {_listing(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected: {_listing(unexpected)}")
    if wrong_shape:
        shapes = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong_shape]
        lines.append(f"  {len(wrong_shape)} of wrong shape: {_listing(shapes)}")
    prefixes = {k.split(".", 1)[0] for k in unexpected}
    if unexpected and prefixes <= {"module", "encoder_q", "backbone", "model", "video_network"}:
        lines.append(f"  hint: every unexpected key starts with {sorted(prefixes)}: this is a training checkpoint "
                     "(DDP/method wrapper); convert it with `videozoo convert` instead of loading it directly")
    elif all(k.startswith(HEAD_PREFIX) for k in missing + unexpected + wrong_shape):
        lines.append("  hint: only the classifier (fc.*) differs: pass num_classes to get a new head "
                     "(allow_head_mismatch=True)")
    return "\n".join(lines)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
